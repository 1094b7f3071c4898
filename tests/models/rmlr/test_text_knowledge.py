"""Word tokens of the [SEP]-joined annotation text and the sub-sentence that owns each (RmLR Eq. 7-8)."""
import pytest
import torch
from torch import nn

from hoikit.errors import DataError
from hoikit.models.rmlr.text_knowledge import encode_knowledge
from hoikit.models.text import FrozenTextEncoder, TextBatch

CLS, SEP, PAD = 2, 3, 0


class HandBuiltEncoder(nn.Module):
    """Returns fixed token sequences per text; hidden[b, t] = (b, t) so a word's position is readable.
    Special-token mask as WordPiece tokenisers give it: [CLS], the final [SEP] and padding only
    (a [SEP] typed into the text is not flagged)."""

    sep_token = "[SEP]"

    def __init__(self, table):
        super().__init__()
        self.table, self.dummy = table, nn.Linear(1, 1)
        self.tokenizer = type("Tok", (), {"sep_token_id": SEP})()

    @property
    def model(self):
        return self

    @property
    def dim(self):
        return 2

    def forward(self, texts):
        rows = [self.table[t] for t in texts]
        T = max(len(r) for r in rows)
        ids = torch.tensor([r + [PAD] * (T - len(r)) for r in rows])
        att = (ids != PAD).long()
        special = ids == CLS
        for b, r in enumerate(rows):
            special[b, len(r) - 1] = True                      # the final [SEP] the tokenizer appended
        special |= att == 0
        hidden = torch.stack(torch.meshgrid(torch.arange(len(rows)), torch.arange(T), indexing="ij"), -1).float()
        return TextBatch(hidden=hidden, attention_mask=att, special=special, input_ids=ids)


def test_owners_of_a_hand_built_joint_sequence():
    # three sub-sentences with 2, 1, 2 tokens: [CLS] a b [SEP] c [SEP] d e [SEP] (+ padding in the batch)
    s = ["a b", "c", "d e"]
    table = {"a b": [CLS, 10, 11, SEP], "c": [CLS, 12, SEP], "d e": [CLS, 13, 14, SEP], "x": [CLS, 15, SEP],
             "a b [SEP] c [SEP] d e": [CLS, 10, 11, SEP, 12, SEP, 13, 14, SEP]}
    enc = HandBuiltEncoder(table)
    texts = encode_knowledge(enc, [s, ["x"]], "joint")
    t = texts[0]
    # words at positions 1, 2 (a b), 4 (c), 6, 7 (d e); the typed separators at 3 and 5 are not words
    assert t.word_owner.tolist() == [0, 0, 1, 2, 2]
    assert t.words[:, 1].tolist() == [1.0, 2.0, 4.0, 6.0, 7.0]
    assert t.words[:, 0].tolist() == [0.0] * 5                 # row 0 of the joint batch
    assert t.cls.tolist() == [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]   # E_cls: position 0 of each sub-sentence
    assert texts[1].word_owner.tolist() == [0]


def test_words_after_the_last_sub_sentence_are_dropped_not_clamped():
    # a tokenizer that emits one separator too many: token 12 would be owner 2 of only 2 sub-sentences
    table = {"a": [CLS, 10, SEP], "b": [CLS, 11, SEP], "a [SEP] b": [CLS, 10, SEP, 11, SEP, 12, SEP]}
    t = encode_knowledge(HandBuiltEncoder(table), [["a", "b"]], "joint")[0]
    assert t.word_owner.tolist() == [0, 1]
    assert t.words[:, 1].tolist() == [1.0, 3.0]


def test_truncated_joint_text_with_a_real_wordpiece_tokenizer(tiny_bert_dir):
    torch.manual_seed(0)
    enc = FrozenTextEncoder(tiny_bert_dir, max_length=7)
    s = ["person hold ball", "person kick ball", "person drink cup"]
    t = encode_knowledge(enc, [s], "joint")[0]
    # 7 tokens: [CLS] person hold ball [SEP] person [SEP]; sub-sentence 2 is truncated away entirely
    joint = enc([" [SEP] ".join(s)])
    assert joint.input_ids[0].tolist() == [2, 5, 8, 6, 3, 5, 3]
    assert t.word_owner.tolist() == [0, 0, 0, 1]
    assert torch.equal(t.words, joint.hidden[0, [1, 2, 3, 5]])
    # untruncated: 3 words per sub-sentence, none of the two typed separators
    t = encode_knowledge(FrozenTextEncoder(tiny_bert_dir, max_length=64), [s], "joint")[0]
    assert t.word_owner.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_separator_inside_a_sub_sentence_is_a_data_error(tiny_bert_dir):
    enc = FrozenTextEncoder(tiny_bert_dir)
    with pytest.raises(DataError, match=r"image 1 .*'person hold \[SEP\] ball'"):
        encode_knowledge(enc, [["person hold ball"], ["person hold [SEP] ball"]], "joint")


def test_vcoco_sentences_are_natural_text_not_role_tokens():
    """Issue 12 item 4: V-COCO action-role classes become natural <subject, verb, object> text."""
    from hoikit.data.metadata import vcoco_meta
    from hoikit.models.rmlr.text_knowledge import image_sentences

    m = vcoco_meta()
    objects = m.objects
    rows = [("hold obj", "cup", "person holds a cup"),
            ("talk_on_phone instr", "cell phone", "person talks on a cell phone"),
            ("hit instr", "baseball bat", "person hits with a baseball bat"),
            ("look obj", "umbrella", "person looks at an umbrella"),
            ("ski instr", "skis", "person skis on skis"),
            ("work_on_computer instr", "laptop", "person works on a laptop")]
    labels = torch.tensor([m.person_label] + [objects.index(o) for _, o, _ in rows])
    hois = torch.tensor([[0, i + 1, m.verbs.index(v)] for i, (v, _, _) in enumerate(rows)])
    got = image_sentences(hois, labels, objects, m.verbs, m.person_label, m.extra["phrases"], m.extra["plural_objects"])
    assert got == [s for _, _, s in rows]
    assert len(m.extra["phrases"]) == len(m.verbs) == 24
    for phrase in m.extra["phrases"]:
        assert phrase.count("{obj}") == 1 and not any(t in phrase.split() for t in ("obj", "instr"))
        assert "_" not in phrase


def test_action_role_names_without_a_phrase_table_lose_their_role_token():
    from hoikit.models.rmlr.text_knowledge import triplet_sentence

    assert triplet_sentence("person", "talk_on_phone instr", "cell phone") == "person talk on phone cell phone"
    assert triplet_sentence("person", "ride", "bicycle") == "person ride bicycle"       # HICO-DET unchanged


def test_rmlr_training_encodes_the_phrase_table_sentences(tiny_meta, tiny_bert_dir, monkeypatch):
    import dataclasses

    import hoikit.models.rmlr.model as rmlr_model
    from rmlr_tiny import build_tiny, targets_from_detections, tiny_images

    meta = dataclasses.replace(tiny_meta, extra={"phrases": ["holds {obj}", "kicks {obj}", "drinks from {obj}"]})
    seen = []
    original = rmlr_model.encode_knowledge

    def spy(encoder, sentences, *a, **kw):
        seen.append(sentences)
        return original(encoder, sentences, *a, **kw)

    monkeypatch.setattr(rmlr_model, "encode_knowledge", spy)
    model = build_tiny(meta, "full", tiny_bert_dir)
    images = tiny_images()
    targets = targets_from_detections(model, images)            # one "hold" (verb 0) per image
    model(images, targets)
    objs = [meta.objects[int(t["labels"][1])] for t in targets]
    assert seen == [[[f"person holds a {o}"] for o in objs]]
