"""benchmarks/gpu_sg2hoi_grid.py: the text-table lookup that stands in for the offline encoder on a GPU
machine, and the data hash that says whether that machine generated the same SynthHOI."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
_spec = importlib.util.spec_from_file_location("gpu_sg2hoi_grid", BENCH / "gpu_sg2hoi_grid.py")
grid = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grid)


def test_lookup_returns_the_stored_rows_in_prompt_order_and_names_a_missing_prompt(tmp_path, monkeypatch):
    from hoikit.models.sg2hoi import semantics

    monkeypatch.setattr(semantics, "offline_text_encoder", semantics.offline_text_encoder)   # restored after
    table = {"a photo of a cup": torch.tensor([1.0, 2.0]), "a photo of a ball": torch.tensor([3.0, 4.0])}
    torch.save(table, tmp_path / "texts.pt")
    grid.install_lookup(str(tmp_path / "texts.pt"))
    encode = semantics.offline_text_encoder(None)
    got = encode(["a photo of a ball", "a photo of a cup", "a photo of a ball"])
    assert torch.equal(got, torch.tensor([[3.0, 4.0], [1.0, 2.0], [3.0, 4.0]]))
    with pytest.raises(KeyError, match="a photo of a kite"):
        encode(["a photo of a cup", "a photo of a kite"])
    (tmp_path / "texts.pt").unlink()                 # the table was read once, when installed
    assert torch.equal(encode(["a photo of a cup"]), torch.tensor([[1.0, 2.0]]))


def test_data_hash_sees_a_changed_byte_and_a_renamed_file(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "0.jpg").write_bytes(b"\x00\x01")
    (tmp_path / "anno.json").write_text("{}")
    h = grid.data_hash(tmp_path)
    assert grid.data_hash(tmp_path) == h
    (tmp_path / "images" / "0.jpg").write_bytes(b"\x00\x02")
    changed = grid.data_hash(tmp_path)
    assert changed != h
    (tmp_path / "images" / "0.jpg").rename(tmp_path / "images" / "1.jpg")
    assert grid.data_hash(tmp_path) not in (h, changed)
