"""Loading DETR weights from official / UPT / HuggingFace / bare / hoikit files, strictly and safely."""
import argparse
import pickle

import pytest
import torch
from safetensors.torch import save_file

from hoikit.cli import main as cli_main
from hoikit.config import DETRConfig
from hoikit.errors import CheckpointError
from hoikit.convert.detr import load_detr
from hoikit.io.checkpoint import read_file as read_checkpoint_file
from hoikit.models.detr_weights import infer_detr_config, load_detr_weights
from hoikit.models.hf_detr import detr_to_hf, hf_to_detr
from hoikit.models.detr import build_detr

TINY = dict(backbone="tiny", hidden_dim=32, nheads=4, enc_layers=1, dec_layers=2, dim_feedforward=64,
            num_queries=6, num_classes=5)


@pytest.fixture(scope="module")
def weights():
    """A tiny DETR state dict with every tensor random (so a wrong mapping cannot pass)."""
    torch.manual_seed(0)
    return {k: torch.randn(v.shape) for k, v in build_detr(DETRConfig(**TINY)).state_dict().items()}


def write(path, obj):
    if str(path).endswith(".safetensors"):
        save_file(obj, str(path))
    else:
        torch.save(obj, path)
    return path


def assert_same(model, weights):
    sd = model.state_dict()
    assert sd.keys() == weights.keys()
    for k, v in weights.items():
        assert torch.equal(sd[k], v), k


def make_file(kind, tmp_path, weights):
    if kind == "official":
        args = argparse.Namespace(dilation=False, nheads=4, hidden_dim=32, lr=1e-4, backbone="tiny")
        return write(tmp_path / "detr-official.pth", {"model": weights, "args": args, "epoch": 3})
    if kind == "upt":
        sd = {"detector." + k: v for k, v in weights.items()}
        sd["interaction_head.box_pair_predictor.weight"] = torch.randn(117, 1024)   # must be ignored
        return write(tmp_path / "upt.pth", {"model_state_dict": sd, "optim_state_dict": {}, "epoch": 20})
    if kind == "huggingface":
        return write(tmp_path / "pytorch_model.bin", detr_to_hf(weights))
    if kind == "huggingface_safetensors":
        return write(tmp_path / "model.safetensors", detr_to_hf(weights))
    if kind == "bare":
        return write(tmp_path / "bare.pth", {"module._orig_mod." + k: v for k, v in weights.items()})
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,fmt", [("official", "official"), ("upt", "upt"), ("huggingface", "huggingface"),
                                      ("huggingface_safetensors", "huggingface"), ("bare", "bare")])
def test_every_format_loads_strictly(kind, fmt, tmp_path, weights):
    path = make_file(kind, tmp_path, weights)
    model, info = load_detr(path)
    assert info["format"] == fmt
    assert (info["backbone"], info["num_classes"], info["num_queries"]) == ("tiny", 5, 6)
    assert (info["enc_layers"], info["dec_layers"], info["hidden_dim"], info["dim_feedforward"]) == (1, 2, 32, 64)
    assert_same(model, weights)


def test_convert_cli_writes_a_loadable_hoikit_checkpoint(tmp_path, weights, capsys):
    src = make_file("official", tmp_path, weights)
    out = tmp_path / "converted.pth"
    assert cli_main(["convert", "detr", "--src", str(src), "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert "source format: official" in report and "tiny" in report and "num_classes:   5" in report
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["format"] == "hoikit" and ckpt["config"]["model"]["arch"] == "detr"
    assert ckpt["config"]["model"]["detr"]["num_classes"] == 5 and ckpt["config"]["model"]["detr"]["nheads"] == 4
    assert all(k.startswith("detr.") for k in ckpt["model"]) and len(ckpt["meta"]["objects"]) == 5
    model, info = load_detr(out)
    assert info["format"] == "hoikit"
    assert_same(model, weights)


def test_missing_file_is_an_error_never_a_random_init(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_detr_weights(build_detr(DETRConfig(**TINY)), tmp_path / "nope.pth")
    assert cli_main(["convert", "detr", "--src", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "o.pth")]) == 2


def _one_line_naming(err, *words):
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_extra_and_misshapen_keys_are_named(tmp_path, weights):
    model = build_detr(DETRConfig(**TINY))
    missing = dict(weights)
    del missing["transformer.decoder.layers.1.norm3.bias"]
    with pytest.raises(CheckpointError) as e:
        load_detr_weights(model, write(tmp_path / "missing.pth", {"model": missing}))
    _one_line_naming(e, "missing.pth", "transformer.decoder.layers.1.norm3.bias", "missing")
    extra = {**weights, "transformer.encoder.norm.weight": torch.ones(32)}
    with pytest.raises(CheckpointError) as e:
        load_detr_weights(model, write(tmp_path / "extra.pth", {"model": extra}))
    _one_line_naming(e, "extra.pth", "transformer.encoder.norm.weight", "unexpected")
    bad = {**weights, "bbox_embed.layers.1.weight": torch.ones(32, 31)}
    with pytest.raises(CheckpointError) as e:
        load_detr_weights(model, write(tmp_path / "bad.pth", {"model": bad}))
    _one_line_naming(e, "bad.pth", "bbox_embed.layers.1.weight", "(32, 31)", "(32, 32)")
    # a checkpoint for another number of classes does not silently load either
    other = build_detr(DETRConfig(**{**TINY, "num_classes": 7}))
    with pytest.raises(CheckpointError) as e:
        load_detr_weights(other, write(tmp_path / "ok.pth", {"model": weights}))
    _one_line_naming(e, "class_embed.weight", "(6, 32)", "(8, 32)")


EXECUTED = []


def _side_effect():
    EXECUTED.append(True)
    return "pwned"


class Malicious:
    def __reduce__(self):
        return (_side_effect, ())


def test_unsafe_pickle_is_refused_without_running_it(tmp_path, weights):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": weights, "payload": Malicious()}, f, protocol=2)
    torch.save({"model": weights, "payload": Malicious()}, tmp_path / "evil2.pth")
    for p in (path, tmp_path / "evil2.pth"):
        with pytest.raises(CheckpointError) as e:
            read_checkpoint_file(p)
        _one_line_naming(e, p.name, "refused")
    assert EXECUTED == []


def test_hf_mapping_round_trip_and_hand_checked_names():
    with torch.device("meta"):
        sd = build_detr(DETRConfig(backbone="resnet50", num_classes=91)).state_dict()
    hf = detr_to_hf(sd)
    # 36 in_proj tensors (6 encoder x 2 + 6 decoder x 2 x 2) each become 3: 458 + 36 * 2
    assert len(hf) == 458 + 72
    samples = {
        "model.backbone.conv_encoder.model.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "model.backbone.conv_encoder.model.bn1.running_var": (64,),
        "model.encoder.layers.0.self_attn.q_proj.weight": (256, 256),
        "model.encoder.layers.0.self_attn.v_proj.bias": (256,),
        "model.encoder.layers.2.final_layer_norm.weight": (256,),
        "model.encoder.layers.5.fc1.weight": (2048, 256),
        "model.decoder.layers.3.encoder_attn.k_proj.weight": (256, 256),
        "model.decoder.layers.3.encoder_attn_layer_norm.bias": (256,),
        "model.decoder.layers.0.final_layer_norm.weight": (256,),
        "model.decoder.layernorm.weight": (256,),
        "model.input_projection.weight": (256, 2048, 1, 1),
        "model.query_position_embeddings.weight": (100, 256),
        "class_labels_classifier.weight": (92, 256),
        "bbox_predictor.layers.2.bias": (4,),
    }
    for k, shape in samples.items():
        assert tuple(hf[k].shape) == shape, k
    back = hf_to_detr(hf)
    assert list(sorted(back)) == list(sorted(sd)) and all(back[k].shape == sd[k].shape for k in sd)


def test_hf_split_puts_q_k_v_rows_in_order(weights):
    hf = detr_to_hf(weights)
    w = weights["transformer.decoder.layers.1.multihead_attn.in_proj_weight"]
    assert torch.equal(hf["model.decoder.layers.1.encoder_attn.q_proj.weight"], w[:32])
    assert torch.equal(hf["model.decoder.layers.1.encoder_attn.k_proj.weight"], w[32:64])
    assert torch.equal(hf["model.decoder.layers.1.encoder_attn.v_proj.weight"], w[64:])
    back = hf_to_detr(hf)
    assert all(torch.equal(back[k], v) for k, v in weights.items()) and back.keys() == weights.keys()
    del hf["model.decoder.layers.1.encoder_attn.k_proj.weight"]
    with pytest.raises(CheckpointError, match="k_proj"):
        hf_to_detr(hf)


@pytest.mark.parametrize("name,layer3,bottleneck", [("resnet18", 2, False), ("resnet34", 6, False),
                                                    ("resnet50", 6, True), ("resnet101", 23, True)])
def test_backbone_and_classes_are_inferred(name, layer3, bottleneck):
    with torch.device("meta"):
        sd = build_detr(DETRConfig(backbone=name, num_classes=80, num_queries=50)).state_dict()
    info = infer_detr_config(sd)
    assert (info["backbone"], info["num_classes"], info["num_queries"]) == (name, 80, 50)
    assert info["dilation_known"] is False and info["nheads"] == 8
    info = infer_detr_config(sd, argparse.Namespace(dilation=True, nheads=8))
    assert info["dilation"] is True and info["dilation_known"] is True


def test_dc5_from_official_release_file_name(tmp_path, weights):
    from hoikit.models.detr_weights import read_detr_weights
    _, info = read_detr_weights(write(tmp_path / "detr-r50-dc5-f0fb7ef5.pth", {"model": weights}))
    assert info["dilation"] is True
    _, info = read_detr_weights(write(tmp_path / "detr-r50-e632da11.pth", {"model": weights}))
    assert info["dilation"] is False and info["dilation_known"] is False
    assert info["input_scales"] == {}                  # an official release stores no hoikit image scales


@pytest.mark.parametrize("backbone,layer_type,depths", [("resnet18", "basic", [2, 2, 2, 2]),
                                                        ("resnet50", "bottleneck", [3, 4, 6, 3])])
def test_outputs_equal_the_transformers_detr_reference(backbone, layer_type, depths):
    """Independent reference: transformers' DetrForObjectDetection with random weights (BN statistics
    included), mapped by hf_to_detr, gives the same outputs as hoikit's DETR on a padded batch.
    (auxiliary_loss=False: transformers 5 feeds the normed output to the next decoder layer when it is
    True, which the official DETR does not do.)"""
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hidden = [64, 128, 256, 512] if layer_type == "basic" else [256, 512, 1024, 2048]
    cfg = tf.DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                        backbone_config=tf.ResNetConfig(layer_type=layer_type, depths=depths, hidden_sizes=hidden,
                                                        embedding_size=64, out_features=["stage4"]),
                        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=6,
                        num_labels=5, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                        auxiliary_loss=False)
    ref = tf.DetrForObjectDetection(cfg).eval()
    sd = {k: (torch.rand_like(v) + 0.5) if k.endswith("running_var") else torch.randn_like(v) * 0.1
          for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd)
    mine = build_detr(DETRConfig(backbone=backbone, hidden_dim=32, nheads=4, enc_layers=1, dec_layers=2,
                                 dim_feedforward=64, num_queries=6, num_classes=5, dropout=0.0)).eval()
    mine.load_state_dict(hf_to_detr(sd), strict=True)
    images = [torch.randn(3, 96, 64), torch.randn(3, 64, 96)]
    from hoikit.models.detr import nested_tensor_from_images
    x, pad = nested_tensor_from_images(images)
    with torch.no_grad():
        a = mine(images)
        b = ref(pixel_values=x, pixel_mask=(~pad).long())
    assert torch.allclose(a["pred_logits"], b.logits, atol=1e-5)
    assert torch.allclose(a["pred_boxes"], b.pred_boxes, atol=1e-5)
    assert torch.allclose(a["hs"][-1], b.last_hidden_state, atol=1e-5)


@pytest.mark.parametrize("backbone,convs", [("tiny", 4), ("small", 8)])
def test_small_trainable_backbones_are_recognised_from_their_keys(tmp_path, backbone, convs):
    cfg = DETRConfig(**{**TINY, "backbone": backbone})
    sd = build_detr(cfg).state_dict()
    conv_keys = [k for k, v in sd.items() if k.startswith("backbone.0.body.layers.") and v.dim() == 4]
    assert len(conv_keys) == convs     # tiny: one 3x3 conv per stage, small: two
    model, info = load_detr(write(tmp_path / "bare.pth", sd))
    assert info["backbone"] == backbone
    assert_same(model, sd)
    # a body with a convolution missing matches neither layout: one line naming the keys
    broken = {k: v for k, v in sd.items() if not k.startswith(f"backbone.0.body.layers.{3 * (convs - 1)}.")}
    with pytest.raises(CheckpointError, match=r"backbone\.0\.body\.layers"):
        load_detr(write(tmp_path / "broken.pth", broken))


def test_huggingface_model_directory_converts_with_its_class_names(tmp_path, capsys):
    """A transformers ``save_pretrained`` directory (config.json + model.safetensors, native ResNet-18 names
    under the Hub prefix) converts strictly, keeps id2label as class names, and gives the reference outputs."""
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = tf.DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                        backbone_config=tf.ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], embedding_size=64,
                                                        hidden_sizes=[64, 128, 256, 512], out_features=["stage4"]),
                        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=5,
                        dropout=0.0, auxiliary_loss=False, id2label={0: "N/A", 1: "person", 2: "bicycle", 3: "cup"})
    ref = tf.DetrForObjectDetection(cfg).eval()
    ref.load_state_dict({k: (torch.rand_like(v) + 0.5) if k.endswith("running_var") else torch.randn_like(v) * 0.1
                         for k, v in ref.state_dict().items()})
    ref.save_pretrained(tmp_path / "hf")
    assert cli_main(["convert", "detr", "--src", str(tmp_path / "hf"), "--out", str(tmp_path / "d.pth")]) == 0
    assert "class names:   N/A, person, bicycle, cup" in capsys.readouterr().out
    stored = torch.load(tmp_path / "d.pth", weights_only=True)
    assert stored["meta"]["objects"] == ["N/A", "person", "bicycle", "cup"] and stored["meta"]["person_label"] == 1
    mine, info = load_detr(tmp_path / "d.pth")
    assert info["backbone"] == "resnet18" and info["nheads"] == 4
    images = [torch.randn(3, 64, 80)]
    with torch.no_grad():
        a = mine.eval()(images)
        b = ref(pixel_values=torch.stack(images), pixel_mask=torch.ones(1, 64, 80, dtype=torch.long))
    assert torch.allclose(a["pred_logits"], b.logits, atol=1e-5)
    assert torch.allclose(a["pred_boxes"], b.pred_boxes, atol=1e-5)


def test_huggingface_directory_errors_name_the_file(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match=r"config.json: key 'model_type' is 'bert', expected 'detr'"):
        load_detr(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "detr"}')
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin next to config.json"):
        load_detr(tmp_path)
