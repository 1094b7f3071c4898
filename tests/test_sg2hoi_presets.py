"""SG2HOI+ presets: the paper's FULL model (SG2HOI+pool) and one file per ablation row of
Tables VI-VIII, each equal to FULL except for its row's switch."""
import pytest

from hoikit.config import load_config, to_dict
from hoikit.models.sg2hoi.build import distill_source

FULL = ("sg2hoi_r50_hicodet", "sg2hoi_r50_vcoco", "sg2hoi_r101_vg_hicodet")
# paper row -> (preset, the switch that makes it), written from the paper's row descriptions
ROWS = {
    "-FETR (VIII)": ("sg2hoi_r50_hicodet_no_fetr", {"model.sg2hoi.feature_transform": False}),
    "-QUTR (VIII)": ("sg2hoi_r50_hicodet_no_qutr", {"model.sg2hoi.query_transform": False}),
    "-R2ITR (VIII)": ("sg2hoi_r50_hicodet_no_r2itr", {"model.sg2hoi.r2i": False}),
    "RELQ (VIII)": ("sg2hoi_r50_hicodet_relq", {"model.sg2hoi.relq": True}),
    "-HSS (VI)": ("sg2hoi_r50_hicodet_no_hss", {"model.sg2hoi.hss": "none"}),
    "HSSD (VI)": ("sg2hoi_r50_hicodet_hssd", {"model.sg2hoi.hss": "det"}),
    "HSSG (VI)": ("sg2hoi_r50_hicodet_hssg", {"model.sg2hoi.hss": "glove"}),
    "-VLpool (VII)": ("sg2hoi_r50_hicodet_no_vlpool", {"model.sg2hoi.vl_distill": "none"}),
    "VLl2 (VII)": ("sg2hoi_r50_hicodet_vll2", {"model.sg2hoi.vl_loss": "l2"}),
}


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("preset", FULL)
def test_presets_are_the_full_model_sg2hoi_pool(preset):
    sg = load_config(preset).model.sg2hoi
    assert sg.variant == "pool" and distill_source(sg.variant, sg.vl_distill) == "pool"
    assert (sg.hss, sg.vl_loss, sg.r2i, sg.feature_transform, sg.query_transform, sg.relq) == \
        ("full", "l1", True, True, True, False)


def test_hico_presets_keep_the_top_100_triplets():
    assert load_config("sg2hoi_r50_hicodet").eval.max_detections == 100
    assert load_config("sg2hoi_r101_vg_hicodet").eval.max_detections == 100


@pytest.mark.parametrize("row", sorted(ROWS))
def test_each_ablation_row_is_a_file_that_differs_from_full_only_by_its_switch(row):
    preset, switch = ROWS[row]
    full, abl = flat(to_dict(load_config("sg2hoi_r50_hicodet"))), flat(to_dict(load_config(preset)))
    diff = {k: abl[k] for k in full if abl[k] != full[k]}
    assert diff == {"name": preset, "output_dir": f"runs/{preset}", **switch}
