"""UPT checkpoint compatibility: the 766 keys of UPT-R50 (HICO-DET), conversion, strict loading."""
import pytest
import torch

from hoikit.config import Config
from hoikit.data.metadata import hicodet_meta
from hoikit.errors import CheckpointError
from hoikit.models.rmlr.build import build_rmlr
from hoikit.convert.upt import convert_upt_checkpoint, load_upt
from hoikit.models.rmlr.upt_weights import hoikit_to_upt, upt_to_hoikit
from hoikit.paths import shared_data_dir


def _reference_keys():
    p = shared_data_dir().parent / "specs" / "upt_r50_hicodet_keys.txt"
    if not p.exists():
        pytest.skip(f"{p} not found")
    rows = [line.split("\t") for line in p.read_text().splitlines() if line.strip()]
    return {k: tuple(int(x) for x in s.strip("()").split(",") if x.strip()) for k, s in rows}


def test_upt_r50_hicodet_keys_both_directions():
    ref = _reference_keys()
    assert len(ref) == 766
    cfg = Config()
    cfg.model.rmlr.ablation = "plain"
    cfg.model.detr.num_classes = 80
    with torch.device("meta"):
        model = build_rmlr(cfg, hicodet_meta())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    upt = {k: tuple(v.shape) for k, v in hoikit_to_upt(model.state_dict()).items()}
    assert upt == ref                                                   # hoikit -> UPT
    back = upt_to_hoikit({"module." + k: torch.empty(s, device="meta") for k, s in ref.items()})
    assert {k: tuple(v.shape) for k, v in back.items()} == ours         # UPT -> hoikit
    assert sum(k.startswith("detector.") for k in ours) == 458


def _tiny_upt_file(tmp_path, shape_bug=False, bare=False, replace=None):
    cfg = Config()
    d = cfg.model.detr
    d.backbone, d.hidden_dim, d.enc_layers, d.dec_layers, d.dim_feedforward, d.num_queries, d.num_classes = \
        "tiny", 32, 1, 1, 64, 12, 80
    cfg.model.rmlr.ablation, cfg.model.rmlr.representation_size = "plain", 64
    torch.manual_seed(0)
    model = build_rmlr(cfg, hicodet_meta())
    sd = dict(model.state_dict())
    if shape_bug:
        sd["interaction_head.spatial_head.2.weight"] = torch.zeros(7, 7)
    sd.update(replace or {})
    path = tmp_path / "upt-tiny.pt"
    torch.save(sd if bare else {"model_state_dict": sd, "optim_state_dict": {}, "epoch": 3}, path)
    return path, model


def test_bare_state_dict_is_accepted(tmp_path):
    """torch.save(model.state_dict()) of UPT (no model_state_dict wrapper), also DDP-prefixed."""
    path, ref = _tiny_upt_file(tmp_path, bare=True)
    model, info = load_upt(path)
    assert info["num_verbs"] == 117 and info["representation_size"] == 64
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    torch.save({"module." + k: v for k, v in ref.state_dict().items()}, tmp_path / "ddp.pt")
    load_upt(tmp_path / "ddp.pt")
    torch.save({"epoch": 3, "weights": [1, 2]}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a UPT checkpoint"):
        load_upt(tmp_path / "other.pt")


@pytest.mark.parametrize("key, shape, size, good, bad", [
    # the tensor a dimension used to be read from, misshapen: the error names it, not a correct key
    ("interaction_head.box_pair_predictor.weight", (117, 99), "representation_size", 64, 99),
    ("detector.class_embed.weight", (81, 48), "hidden_dim", 32, 48),
    ("detector.transformer.encoder.layers.0.linear1.weight", (80, 32), "dim_feedforward", 64, 80),
])
def test_misshapen_key_that_sets_a_dimension_is_named_with_the_shapes_each_key_implies(tmp_path, key, shape, size,
                                                                                      good, bad):
    path, _ = _tiny_upt_file(tmp_path, replace={key: torch.zeros(shape)})
    for fn in (load_upt, lambda p: convert_upt_checkpoint(p, tmp_path / "out.pth")):
        with pytest.raises(CheckpointError) as e:
            fn(path)
        msg = str(e.value)
        assert "\n" not in msg and f"keys disagree on {size}" in msg
        odd, rest = msg.split(": keys disagree on ")[1].split("; ")
        assert odd.startswith(f"{size}: '{key}' {shape} imply {size} = {bad}")
        assert rest.endswith(f"imply {size} = {good}") and key not in rest


def test_convert_and_strict_load(tmp_path, capsys):
    from hoikit.commands import convert

    path, ref = _tiny_upt_file(tmp_path)
    info = convert_upt_checkpoint(path, tmp_path / "out.pth")
    assert info["num_verbs"] == 117 and info["dataset"] == "hicodet" and info["detr"]["backbone"] == "tiny"
    ck = torch.load(tmp_path / "out.pth", weights_only=True)
    assert ck["format"] == "hoikit" and ck["config"]["model"]["rmlr"]["ablation"] == "plain"
    # UPT's 80-class HICO-DET detectors predict COCO-80 order (person 0), mapped by name to HICO's objects
    assert ck["config"]["model"]["rmlr"]["detector_classes"] == "coco80"
    model, _ = load_upt(path)
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    import argparse
    parser = argparse.ArgumentParser()
    convert.add_arguments(parser)
    args = parser.parse_args(["upt", "--src", str(path), "--out", str(tmp_path / "o2.pth")])
    assert convert.run(args) == 0
    assert "all matched" in capsys.readouterr().out


def test_misshapen_key_fails_with_one_line(tmp_path):
    path, _ = _tiny_upt_file(tmp_path, shape_bug=True)
    with pytest.raises(CheckpointError) as e:
        convert_upt_checkpoint(path, tmp_path / "out.pth")
    msg = str(e.value)
    assert "\n" not in msg and "interaction_head.spatial_head.2.weight" in msg and "(7, 7)" in msg


def test_missing_key_and_missing_file(tmp_path):
    path, model = _tiny_upt_file(tmp_path)
    sd = dict(model.state_dict())
    sd.pop("interaction_head.mbf_g.fc_3.15.bias")
    torch.save({"model_state_dict": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="interaction_head.mbf_g.fc_3.15.bias"):
        load_upt(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_upt(tmp_path / "nope.pt")
