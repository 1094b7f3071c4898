"""HOIPrediction.triplets: hand-computed expansion, and an empty correspondence table."""
import numpy as np

from hoikit.structures import HOIPrediction


def _pred():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]], np.float32)
    # pair 0: person 0 with object 1 (class 2); pair 1: person 0 with object 2 (class 1)
    return HOIPrediction(boxes=boxes, labels=np.array([0, 2, 1]), box_scores=np.ones(3, np.float32),
                         pairs=np.array([[0, 1], [0, 2]]),
                         verb_scores=np.array([[0.9, 0.1, 0.6], [0.3, 0.8, 0.05]], np.float32))


def test_triplets_keep_only_listed_object_verb_combinations():
    corr = np.array([[0, 2, 0], [1, 2, 2], [2, 1, 1], [3, 1, 2]])   # (hoi, object, verb)
    t = _pred().triplets(corr, threshold=0.2)
    # >= 0.2: pair 0 verbs 0 (0.9), 2 (0.6); pair 1 verbs 0 (0.3, object 1 has no verb 0), 1 (0.8)
    assert t["pair"].tolist() == [0, 0, 1] and t["verb"].tolist() == [0, 2, 1] and t["hoi"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(t["score"], [0.9, 0.6, 0.8])
    assert t["box_o"].tolist() == [[5, 5, 20, 20], [5, 5, 20, 20], [1, 1, 2, 2]]


def test_empty_correspondence_table_gives_no_triplets():
    for corr in (np.zeros((0, 3), np.int64), []):
        t = _pred().triplets(corr)
        assert all(len(v) == 0 for v in t.values())
        assert t["box_h"].shape == (0, 4) and t["hoi"].dtype == np.int64
