"""The packaged UPT / RmLR presets load and build (R50/R101 on the meta device: no memory, no forward)."""
import pytest
import torch

from hoikit.config import load_config
from hoikit.data.metadata import hicodet_meta, vcoco_meta
from hoikit.errors import ConfigError
from hoikit.models.rmlr.build import build_rmlr


@pytest.mark.parametrize("name", ["upt_r50_hicodet", "rmlr_r50_hicodet", "rmlr_r101_hicodet", "rmlr_r50_vcoco"])
def test_preset_builds(name):
    cfg = load_config(name)
    cfg.model.detr.checkpoint = ""
    meta = vcoco_meta() if "vcoco" in name else hicodet_meta()
    with torch.device("meta"):
        model = build_rmlr(cfg, meta)
    tops = {k.split(".")[0] for k in model.state_dict()}
    if name.startswith("upt"):
        assert len(model.state_dict()) == 766 and tops == {"detector", "interaction_head"}
    else:
        assert {"ire", "fusion", "cml_ire", "cml_irm"} <= tops
        assert cfg.model.rmlr.text_dim == 384                      # all-MiniLM-L6-v2, read from config.json
        assert model.weights == dict(hoi=2.0, s_m=1.0, w_m=1.0, s_a=0.1, w_a=0.1)   # Table 7 best row


def test_unknown_ablation_and_missing_text_encoder_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="wo_everything"):   # refused when the config loads
        load_config("rmlr_r50_hicodet", ["model.rmlr.ablation=wo_everything", "model.detr.checkpoint=''"])
    cfg = load_config("rmlr_r50_hicodet", [f"model.rmlr.text.path={tmp_path}", "model.detr.checkpoint=''"])
    with pytest.raises(ConfigError) as e, torch.device("meta"):
        build_rmlr(cfg, hicodet_meta())
    assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)


@pytest.mark.parametrize("key", ["ire_pool", "word_scope", "word_context", "word_target", "detections"])
def test_unknown_open_reading_is_a_config_error_at_load_time(key):
    # plain: the switch is not even used, still refused (when the config loads, before any build)
    with pytest.raises(ConfigError, match=rf"config key 'model.rmlr.{key}': Invalid value 'bogus'"):
        load_config(None, ["model.arch=rmlr", "model.rmlr.ablation=plain", f"model.rmlr.{key}=bogus"])


def test_a_frozen_detector_trained_at_another_scale_is_named_in_a_warning():
    """synth_rmlr feeds its detector 384 px images; the 256 px detector (synth_deformable.pt) in its place
    gets a warning naming the scales it was trained at and the overrides that match them."""
    import warnings
    from pathlib import Path

    import hoikit
    from hoikit.data.metadata import DatasetMeta
    from hoikit.io.checkpoint import load_checkpoint

    assets = Path(hoikit.__file__).parent / "assets"
    meta = DatasetMeta.from_dict(load_checkpoint(assets / "synth_rmlr.pt")["meta"])
    plain = ["model.rmlr.ablation=plain"]
    with warnings.catch_warnings(record=True) as caught:     # the preset's own detector at its own scale: silent
        warnings.simplefilter("always")
        build_rmlr(load_config("synth_rmlr", plain), meta)
    assert not [w for w in caught if "trained at" in str(w.message)]
    import hoikit.io.checkpoint as C
    from hoikit.models import deformable_weights

    reads = []                                                # the detector file is read once (weights and scales)
    def counting(path, *a, **k):
        reads.append(Path(path).name)
        return load_checkpoint(path, *a, **k)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(C, "load_checkpoint", counting)
        mp.setattr(deformable_weights, "load_checkpoint", counting)
        with pytest.warns(UserWarning, match=r"trained at test_scale 256 \(this run: 384\), max_size 320 \(this run: 480\)"
                                             r".* data\.test_scale=256$"):
            build_rmlr(load_config("synth_rmlr", plain + [f"model.detr.checkpoint={assets / 'synth_deformable.pt'}"]),
                       meta)
    assert reads == ["synth_deformable.pt"]
