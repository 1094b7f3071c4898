"""benchmarks/export_checkpoint.py: training-only detector parameters (DN-DETR's label embedding,
H-DETR's one-to-many query rows) are not shipped, and the export predicts like the trained model."""
import importlib.util
from pathlib import Path

import pytest
import torch

from hoikit.config import Config, DETRConfig, to_dict
from hoikit.data.metadata import DatasetMeta
from hoikit.io.checkpoint import model_checkpoint, save_checkpoint
from hoikit.engine.inference import model_from_checkpoint
from hoikit.recipes import RECIPES

_spec = importlib.util.spec_from_file_location("export_checkpoint",
                                               Path(__file__).parents[2] / "benchmarks" / "export_checkpoint.py")
export_checkpoint = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export_checkpoint)


DEFORMABLE = dict(type="deformable", backbone="small_res", num_feature_levels=3, with_box_refine=True, two_stage=True,
                  mixed_selection=True)


@pytest.mark.parametrize("kw", [DEFORMABLE, dict(type="detr", backbone="tiny")])
def test_export_drops_dn_modules_and_one_to_many_rows_and_predicts_the_same(tmp_path, kw):
    torch.manual_seed(0)
    cfg = Config()
    cfg.model.arch = "detr"
    cfg.model.detr = DETRConfig(num_classes=4, hidden_dim=32, nheads=4, enc_layers=1, dec_layers=2, dim_feedforward=64,
                                dropout=0.0, num_queries=6, num_queries_one2many=5, dn_number=2, **kw)
    meta = DatasetMeta("t", ["person", "ball", "cup", "box"])
    det = RECIPES["detr"].build_model(cfg, meta).eval()
    assert "detr.dn_label_embed.weight" in det.state_dict()
    assert ("detr.dn_box_embed.layers.0.weight" in det.state_dict()) == (kw["type"] == "detr")
    src, out = tmp_path / "train.pt", tmp_path / "ship.pt"
    save_checkpoint(model_checkpoint(det, to_dict(cfg), meta.to_dict(), epoch=1, step=3), src)
    export_checkpoint.export(src, out)
    ck = torch.load(out, map_location="cpu", weights_only=False)
    assert not [k for k in ck["model"] if ".dn_" in k]
    assert ck["model"]["detr.query_embed.weight"].shape == (6, 32)
    assert ck["config"]["model"]["detr"]["dn_number"] == 0
    assert ck["config"]["model"]["detr"]["num_queries_one2many"] == 0
    shipped, _, _ = model_from_checkpoint(str(out))      # strict load of the slim file
    img = [torch.randn(3, 64, 64)]
    with torch.no_grad():
        a, b = det(img)[0], shipped.eval()(img)[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
