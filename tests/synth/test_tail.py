"""SynthHOI long tail: the test split oversamples tail intents by exactly TEST_TAIL_BOOST."""
import numpy as np

from hoikit.data.synth import classes as C


def test_intent_weights_are_distributions():
    for split in ("train", "test"):
        w = np.array(C.intent_weights(split))
        assert w.shape == (len(C.INTENTS),) and (w > 0).all()
        assert abs(w.sum() - 1.0) < 1e-12


def test_train_weights_are_the_plan():
    raw = np.array([i.weight for i in C.INTENTS])
    assert np.allclose(C.intent_weights("train"), raw / raw.sum())


def test_test_split_boosts_only_the_tail():
    raw = np.array([i.weight for i in C.INTENTS])
    tail = raw < C.TAIL_WEIGHT
    assert 5 <= tail.sum() < len(raw) // 2        # a tail exists and is not the bulk
    ratio = np.array(C.intent_weights("test")) / np.array(C.intent_weights("train"))
    # relative odds tail : head grow by exactly the boost; heads share one common factor
    assert np.allclose(ratio[tail] / ratio[~tail][0], C.TEST_TAIL_BOOST)
    assert np.allclose(ratio[~tail], ratio[~tail][0])
