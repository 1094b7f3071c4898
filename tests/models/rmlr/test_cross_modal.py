"""CML word-level alignment (RmLR Eq. 13-17) with word_scope=pair when the text was truncated."""
import warnings

import pytest
import torch

import hoikit.models.rmlr.cross_modal as cm
from hoikit.losses.distillation import l1_distance
from hoikit.models.rmlr.text_knowledge import encode_knowledge
from hoikit.models.text import FrozenTextEncoder

SENTENCES = ["person hold ball", "person kick ball", "person drink cup"]


@pytest.fixture
def truncated_text(tiny_bert_dir):
    # max_length 7: [CLS] person hold ball [SEP] person [SEP] -> sub-sentence 2 owns no word
    text = encode_knowledge(FrozenTextEncoder(tiny_bert_dir, max_length=7), [SENTENCES], "joint")[0]
    assert text.word_owner.tolist() == [0, 0, 0, 1]
    return text


def test_pair_without_words_is_left_out_of_the_word_loss_and_warned_once(truncated_text, monkeypatch):
    monkeypatch.setattr(cm, "_warned_truncation", False, raising=False)
    torch.manual_seed(0)
    branch = cm.CrossModalBranch(in_dim=8, text_dim=16, cml_dim=8, sa_layers=1, ca_layers=1, nheads=2,
                                 dropout=0.0, word_scope="pair").eval()
    tokens = torch.randn(4, 8)
    rows, text_rows = torch.tensor([3, 0, 1]), torch.tensor([0, 1, 2])     # pair 1 <-> truncated sub-sentence 2
    with pytest.warns(RuntimeWarning, match=r"1 of 3 associated pairs.*model\.rmlr\.text\.max_length"):
        out = branch([tokens], [rows], [text_rows], [truncated_text], sentence_level=False)
    with torch.no_grad():
        va = branch.self_attend(tokens)[rows]
        words, owner = truncated_text.words, truncated_text.word_owner
        # attention restricted by a mask == plain attention over the owned words only
        own = [branch.cross_attend(va[i:i + 1], words[owner == k], None)[0] for i, k in enumerate([0, 1])]
        expected = l1_distance(va[:2], torch.stack(own))
    assert torch.allclose(out["word"], expected, atol=1e-6)
    v, enhanced = out["aligned"][0]
    assert torch.allclose(enhanced[:2], torch.stack(own), atol=1e-6)
    assert torch.equal(enhanced[2], v[2])                                  # no words: no language added
    with warnings.catch_warnings():                                        # once per process
        warnings.simplefilter("error")
        branch([tokens], [rows], [text_rows], [truncated_text], sentence_level=False)


def test_image_whose_pairs_all_lost_their_words_adds_no_word_loss(truncated_text, monkeypatch):
    monkeypatch.setattr(cm, "_warned_truncation", True, raising=False)
    torch.manual_seed(0)
    branch = cm.CrossModalBranch(8, 16, cml_dim=8, sa_layers=1, ca_layers=1, nheads=2, dropout=0.0,
                                 word_scope="pair").eval()
    out = branch([torch.randn(2, 8)], [torch.tensor([0, 1])], [torch.tensor([2, 2])], [truncated_text],
                 sentence_level=False)
    assert out["aligned"] == [None]
    assert float(out["word"].detach()) == 0.0 and out["word"].requires_grad        # the zero still reaches every parameter
