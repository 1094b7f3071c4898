"""Nothing the user has is lost, every command works from any directory, every bad value is one line
(issue 13, items 1-3, 9-11, 13): end to end through ``hoikit.cli.main``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hoikit.cli import main
from hoikit.config import load_config, to_dict
from hoikit.data.metadata import DatasetMeta
from hoikit.io.checkpoint import load_checkpoint, model_checkpoint, save_checkpoint
from hoikit.recipes import build_model, meta_to_dict

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from hoikit.data.synth import generate_synthhoi

    root = tmp_path_factory.mktemp("safety") / "synth"
    generate_synthhoi(root, 8, 4, seed=3, size=64, workers=1)
    return root


def tiny_detr_args(root, out):
    """``hoikit train`` arguments of a one-step DETR run on the tiny SynthHOI (a few seconds on CPU)."""
    return ["train", "synth_detr", f"data.root={root}", "data.scales=[64]",
            "data.max_size=64", "data.test_scale=64", "model.detr.checkpoint=", "model.detr.hidden_dim=32",
            "model.detr.nheads=2", "model.detr.enc_layers=1", "model.detr.dec_layers=1",
            "model.detr.dim_feedforward=64", "model.detr.num_queries=5", "model.detr.dense_loss_coef=0",
            "train.epochs=1", "train.batch_size=4", "train.max_steps=1", "train.warmup_iters=0",
            "train.log_every=1", "train.eval_every=1", "--output-dir", str(out)]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hoikit: error: "), err
    return lines[0]


# ---------------------------------------------------------------------------------------------- 1
def _old_run(out: Path) -> dict:
    out.mkdir(parents=True)
    files = {"last.pt": b"old last", "best.pt": b"old best", "log.csv": b"epoch,step\n1,10\n",
             "eval.csv": b"epoch,step,mAP\n1,10,3.0\n", "config.yaml": b"name: old\n"}
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


def test_train_refuses_a_directory_that_holds_a_run(tmp_path, synth_root, capsys):
    out = tmp_path / "run"
    files = _old_run(out)
    assert main(tiny_detr_args(synth_root, out)) == 2
    line = one_error_line(capsys)
    assert str(out) in line and "--resume" in line and "--output-dir" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files   # nothing touched


def test_train_overwrite_replaces_the_whole_old_run(tmp_path, synth_root, capsys):
    out = tmp_path / "run"
    _old_run(out)
    (out / "notes.txt").write_text("mine")                           # not a run file: kept
    assert main(tiny_detr_args(synth_root, out) + ["--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "best.pt").exists() or load_checkpoint(out / "best.pt")["step"] == 1  # no stale best.pt
    assert load_checkpoint(out / "last.pt")["step"] == 1
    assert "name: old" not in (out / "config.yaml").read_text()
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[1] == "1"           # header + the new run's step 1 only
    assert main(tiny_detr_args(synth_root, out) + ["--overwrite", "--resume"]) == 2
    assert "contradict" in one_error_line(capsys)


# ------------------------------------------------------------------------------------------ 2, 3, 13
META = DatasetMeta(name="toy", objects=["person", "bicycle", "cup"], verbs=["ride", "hold", "look at"],
                   person_label=0, correspondence=[[0, 1, 0], [1, 1, 1], [2, 2, 1], [3, 2, 2]], rare=[3])


@pytest.fixture(scope="module")
def detr_ckpt(tmp_path_factory):
    """A tiny random DETR checkpoint (predict writes JSON + a picture per image)."""
    cfg = load_config(None, ["model.arch=detr", "data.test_scale=64", "data.max_size=128", "model.detr.backbone=tiny",
                             "model.detr.hidden_dim=32", "model.detr.nheads=2", "model.detr.enc_layers=1",
                             "model.detr.dec_layers=1", "model.detr.dim_feedforward=64", "model.detr.num_queries=5"])
    torch.manual_seed(0)
    model = build_model(cfg, META)
    path = tmp_path_factory.mktemp("ck") / "detr.pt"
    save_checkpoint(model_checkpoint(model, to_dict(cfg), meta_to_dict("detr", META)), path)
    return path


def _image(path: Path, value: int) -> bytes:
    Image.fromarray(np.full((40, 60, 3), value, np.uint8)).save(path)
    return path.read_bytes()


def test_predict_never_writes_over_its_inputs(tmp_path, detr_ckpt, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    before = {n: _image(frames / n, v) for n, v in (("f0.png", 10), ("f1.png", 200), ("f2.jpg", 90))}
    assert main(["predict", str(frames), "--checkpoint", str(detr_ckpt), "--out", str(frames)]) == 0
    out = capsys.readouterr().out
    assert f"writing into {frames / 'predictions'}" in out
    assert {n: (frames / n).read_bytes() for n in before} == before          # inputs untouched
    assert sorted(p.name for p in frames.iterdir()) == ["f0.png", "f1.png", "f2.jpg", "predictions"]
    assert sorted(p.name for p in (frames / "predictions").iterdir()) == [
        "f0.json", "f0.png", "f1.json", "f1.png", "f2.json", "f2.png"]
    assert "wrote 3 JSON files and 3 pictures" in out
    # one image, --out its own directory (cwd-relative '.')
    single = tmp_path / "one"
    single.mkdir()
    data = _image(single / "a.png", 50)
    cwd = os.getcwd()
    os.chdir(single)
    try:
        assert main(["predict", "a.png", "--checkpoint", str(detr_ckpt), "--out", "."]) == 0
    finally:
        os.chdir(cwd)
    assert (single / "a.png").read_bytes() == data and (single / "predictions" / "a.png").is_file()
    # --out naming an existing file: one line, nothing written
    capsys.readouterr()
    assert main(["predict", str(single / "a.png"), "--checkpoint", str(detr_ckpt), "--out", str(single / "a.png")]) == 2
    assert "is a file" in one_error_line(capsys) and (single / "a.png").read_bytes() == data


def test_predict_outputs_are_unique_per_input_and_counted_on_disk(tmp_path, detr_ckpt, capsys):
    images = tmp_path / "in"
    images.mkdir()
    for name, value in (("a.jpg", 10), ("a.png", 240), ("b.png", 120), ("b_graph.png", 60), ("B.bmp", 30)):
        _image(images / name, value)
    out = tmp_path / "out"
    assert main(["predict", str(images), "--checkpoint", str(detr_ckpt), "--out", str(out)]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    files = sorted(p.name for p in out.iterdir())
    jsons = [f for f in files if f.endswith(".json")]
    assert len(jsons) == 5 and len(files) == 10                              # one JSON + one picture each
    assert summary == f"wrote 5 JSON files and 5 pictures to {out}"
    by_input = {Path(json.loads((out / f).read_text())["image"]).name: f for f in jsons}
    assert sorted(by_input) == ["B.bmp", "a.jpg", "a.png", "b.png", "b_graph.png"]   # each input has its own JSON
    assert by_input["a.jpg"] == "a_jpg.json" and by_input["a.png"] == "a_png.json"
    # 'b' and 'B' share a stem on case-insensitive file systems; 'b_graph' is the graph-picture name of 'b'
    assert len({v.casefold() for v in by_input.values()}) == 5


def test_predict_refuses_to_replace_earlier_outputs_unless_told(tmp_path, detr_ckpt, capsys):
    images = tmp_path / "in"
    images.mkdir()
    _image(images / "a.png", 10)
    _image(images / "b.png", 200)
    out = tmp_path / "out"
    out.mkdir()
    mine = (out / "b.json")
    mine.write_text("the user's own notes")                 # a file that happens to carry an output's name
    args = ["predict", str(images), "--checkpoint", str(detr_ckpt), "--out", str(out)]
    capsys.readouterr()
    assert main(args) == 2
    line = one_error_line(capsys)
    assert "b.json is already there" in line and "--overwrite" in line and "nothing was written" in line
    assert sorted(p.name for p in out.iterdir()) == ["b.json"] and mine.read_text() == "the user's own notes"
    assert main(args + ["--overwrite"]) == 0
    assert json.loads(mine.read_text())["image"].endswith("b.png")
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.png", "b.json", "b.png"]


def test_predict_on_a_corrupt_video_is_one_line(tmp_path, detr_ckpt, capsys):
    pytest.importorskip("av")
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    assert main(["predict", str(bad), "--checkpoint", str(detr_ckpt), "--out", str(tmp_path / "o")]) == 2
    assert str(bad) in one_error_line(capsys)


# ---------------------------------------------------------------------------------------------- 9
def test_readme_paths_work_from_any_directory(tmp_path, synth_root, monkeypatch, capsys):
    """`hoikit train configs/synth_rmlr.yaml` from a directory that is not the repository: the preset
    and its default detector (hoikit/assets/synth_deformable_384.pt) come from the package; a file of that
    name in the working directory wins."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    assert not Path("configs").exists() and not Path("hoikit").exists()
    args = ["train", "configs/synth_rmlr.yaml", "model.rmlr.ablation=plain", f"data.root={synth_root}",
            "data.scales=[64]", "data.max_size=64", "data.test_scale=64", "train.max_steps=1", "train.batch_size=2",
            "train.eval_every=100", "--output-dir", "run"]
    assert main(args) == 0, capsys.readouterr().err
    trained = load_checkpoint(work / "run" / "last.pt")["model"]
    shipped = load_checkpoint(REPO / "hoikit" / "assets" / "synth_deformable_384.pt")["model"]
    frozen = {k[len("detector."):]: v for k, v in trained.items() if k.startswith("detector.")}
    detr = {k.split("detr.", 1)[-1]: v for k, v in shipped.items()}
    common = set(frozen) & set(detr)
    assert len(common) > 50 and all(torch.equal(frozen[k], detr[k].to(frozen[k].dtype)) for k in common)
    # an explicit file of that name in the working directory wins (here a broken one: named in the error)
    (work / "hoikit" / "assets").mkdir(parents=True)
    (work / "hoikit" / "assets" / "synth_deformable_384.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(args[:-1] + ["run2"]) == 2
    line = one_error_line(capsys)
    assert "hoikit/assets/synth_deformable_384.pt" in line and str(REPO) not in line


# --------------------------------------------------------------------------------------------- 11
@pytest.mark.parametrize("device", ["cuda", "gpu", "cuda:1"])
def test_a_missing_gpu_is_one_line_naming_the_devices_there(tmp_path, detr_ckpt, synth_root, device, monkeypatch,
                                                            capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)   # a machine without CUDA, whatever runs this
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    image = tmp_path / "a.png"
    _image(image, 50)
    runs = [["predict", str(image), "--checkpoint", str(detr_ckpt), "--out", str(tmp_path / "o"), "--device", device],
            ["test", "--checkpoint", str(detr_ckpt), "--device", device, "--out", str(tmp_path / "t")],
            tiny_detr_args(synth_root, tmp_path / "run")[:-2] + [f"train.device={device}", "--output-dir",
                                                                str(tmp_path / "run")]]
    for argv in runs:
        assert main(argv) == 2, argv
        line = one_error_line(capsys)
        assert f"device '{device}'" in line and "CUDA is not available" in line and "it has: cpu" in line, line


# --------------------------------------------------------------------------------------------- 10
@pytest.mark.parametrize("override,key,value,allowed", [
    ("train.batch_size=0", "train.batch_size", "0", ">= 1"),
    ("train.lr=-1e-4", "train.lr", "-0.0001", ">= 0"),
    ("train.lr=nan", "train.lr", "nan", ">= 0"),
    ("data.num_workers=-1", "data.num_workers", "-1", ">= 0"),
    ("data.scales=[64,0]", "data.scales[1]", "0", ">= 1"),
    ("train.epochs=-1", "train.epochs", "-1", ">= 1"),
    ("model.detr.dropout=1.5", "model.detr.dropout", "1.5", "in [0, 1)"),
    ("eval.threshold=2", "eval.threshold", "2.0", "in [0, 1]"),
    ("train.log_every=-5", "train.log_every", "-5", ">= 0"),
])
def test_out_of_range_values_are_one_line(tmp_path, synth_root, override, key, value, allowed, capsys):
    out = tmp_path / "run"
    assert main(tiny_detr_args(synth_root, out)[:-2] + [override, "--output-dir", str(out)]) == 2
    line = one_error_line(capsys)
    assert f"config key '{key}' = {value} is out of range (allowed: {allowed})" in line, line
    assert not out.exists()                                            # refused before anything was written


def test_keys_that_constrain_each_other(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)   # were a check missing, the preset's data/synthhoi would be generated here
    for argv, text in ((["model.detr.hidden_dim=30"], "'model.detr.hidden_dim' = 30 is not a multiple of 'model.detr.nheads' = 8"),
                       (["model.detr.hidden_dim=9", "model.detr.nheads=3"], "'model.detr.hidden_dim' = 9 is odd"),
                       (["model.rmlr.min_instances=16"], "'model.rmlr.min_instances' = 16 is out of range (allowed: <= "
                                                         "model.rmlr.max_instances = 15)"),
                       (["data.scales=[]"], "'data.scales': the list is empty")):
        assert main(["train", "synth_rmlr", *argv, "data.synth_train=2", "data.synth_test=1"]) == 2
        assert text in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_every_numeric_key_has_a_range():
    """A new numeric config key must get a range (or be listed here as taking any value)."""
    from dataclasses import fields, is_dataclass

    from hoikit.config import RANGES, Config

    any_value = {"seed"}
    numeric = []

    def walk(obj, prefix):
        for f in fields(obj):
            v = getattr(obj, f.name)
            if is_dataclass(v):
                walk(v, f"{prefix}{f.name}.")
            elif (isinstance(v, (int, float)) and not isinstance(v, bool)) or (
                    isinstance(v, list) and v and isinstance(v[0], (int, float))):
                numeric.append(prefix + f.name)

    walk(Config(), "")
    assert len(numeric) > 80
    assert sorted(set(numeric) - set(RANGES) - any_value) == []
    assert sorted(set(RANGES) - set(numeric)) == []


# --------------------------------------------------------------------------------------------- 12
def test_training_names_the_broken_image_and_can_skip_it(tmp_path, synth_root, recwarn, capsys):
    import shutil

    root = tmp_path / "synth"
    shutil.copytree(synth_root, root)
    bad = sorted((root / "images" / "train").iterdir())[5]
    bad.write_bytes(bad.read_bytes()[:len(bad.read_bytes()) // 2])     # truncated: the header still reads
    # one epoch = every training image (8 images, batch 4, no max_steps)
    args = tiny_detr_args(root, tmp_path / "a")[:-2] + ["train.max_steps=0"]
    assert main(args + ["--output-dir", str(tmp_path / "a")]) == 2
    line = one_error_line(capsys)
    assert str(bad) in line and "OSError: image file is truncated" in line and "data.skip_unreadable" in line, line
    assert main(args + ["data.skip_unreadable=true", "--output-dir", str(tmp_path / "b")]) == 0
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 2                 # the whole epoch ran
    skipped = [str(w.message) for w in recwarn if "skipped" in str(w.message)]
    assert len(skipped) == 1 and str(bad) in skipped[0] and "image file is truncated" in skipped[0], skipped


def test_skip_unreadable_uses_the_next_readable_image(tmp_path):
    """Deterministic replacement (resume stays exact); a dataset with no readable image is one line."""
    from hoikit.data.dataset import HOIDataset
    from hoikit.errors import DataError
    from hoikit.structures import Sample

    class Reader:
        meta = META

        def __init__(self, paths):
            self.paths = paths

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, i):
            z = np.zeros((0, 4), np.float32)
            return Sample(index=i, file_name=self.paths[i].name, image_path=str(self.paths[i]), size=(0, 0), boxes=z,
                          labels=np.zeros(0, np.int64), hois=np.zeros((0, 3), np.int64),
                          relations=np.zeros((0, 3), np.int64))

    paths = [tmp_path / f"{i}.png" for i in range(4)]
    for i, p in enumerate(paths):
        _image(p, 60 * i)
    for i in (1, 3):
        paths[i].write_bytes(b"\x89PNG garbage")
    ds = HOIDataset(Reader(paths), skip_unreadable=True)
    with pytest.warns(UserWarning, match="1.png: image 1 cannot be read"):
        assert ds[1][1]["index"] == 2
    assert ds[3][1]["index"] == 0 and ds[0][1]["index"] == 0                          # wraps around
    with pytest.raises(DataError, match="image 1 cannot be read") as e:
        HOIDataset(Reader(paths))[1]
    assert "data.skip_unreadable" not in str(e.value)                                     # evaluation sets: no hint
    with pytest.raises(DataError, match="none of the 2 images can be read"):
        HOIDataset(Reader(paths[1::2]), skip_unreadable=True)[0]
