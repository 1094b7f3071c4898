"""Tiny fixtures for the UPT / RmLR tests: a 3-object / 3-verb dataset, a tiny random DETR and a
tiny randomly initialised BERT (WordPiece vocabulary) saved to a temporary directory."""
import pytest
import torch

from hoikit.config import Config
from rmlr_tiny import make_tiny_meta

WORDS = ["person", "ball", "cup", "hold", "kick", "drink", "with", "##s"]


@pytest.fixture(scope="session")
def tiny_meta():
    return make_tiny_meta()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer

    d = tmp_path_factory.mktemp("tiny_bert")
    vocab = d / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    tok = BertTokenizer(str(vocab))
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32, max_position_embeddings=64))
    tok.save_pretrained(str(d))
    model.save_pretrained(str(d))
    return d
