import numpy as np
import pytest
import torch
from PIL import Image

from hoikit.data import transforms as T


def _image(w=64, h=48, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _target(boxes, hois=(), relations=()):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return dict(boxes=boxes, labels=torch.arange(len(boxes)),
                hois=torch.tensor(hois, dtype=torch.int64).reshape(-1, 3),
                relations=torch.tensor(relations, dtype=torch.int64).reshape(-1, 3))


def test_flip_twice_is_identity_and_flip_maps_x():
    img, tgt = _image(), _target([[2, 3, 10, 20], [30.5, 0, 64, 48]], [[0, 1, 2]])
    f_img, f_tgt = T.hflip(img, tgt)
    assert f_tgt["boxes"].tolist() == [[54, 3, 62, 20], [0, 0, 33.5, 48]]  # x1' = W - x2, x2' = W - x1
    np.testing.assert_array_equal(np.asarray(f_img)[:, ::-1], np.asarray(img))
    g_img, g_tgt = T.hflip(f_img, f_tgt)
    np.testing.assert_array_equal(np.asarray(g_img), np.asarray(img))
    assert torch.equal(g_tgt["boxes"], tgt["boxes"]) and torch.equal(g_tgt["hois"], tgt["hois"])


@pytest.mark.parametrize("size, shorter, max_size, expected", [
    ((640, 480), 800, 1333, (1066, 800)),
    ((480, 640), 800, 1333, (800, 1066)),
    ((1000, 200), 800, 1333, (1330, 266)),  # long side capped: shorter = floor(1333 * 200 / 1000)
    ((100, 100), 32, None, (32, 32)),
])
def test_resized_size_hand_cases(size, shorter, max_size, expected):
    assert T.resized_size(size, shorter, max_size) == expected


def test_resized_long_side_never_exceeds_max():
    rng = np.random.default_rng(0)
    for _ in range(500):
        w, h = (int(x) for x in rng.integers(16, 3000, 2))
        out = T.resized_size((w, h), int(rng.integers(32, 900)), 1333)
        assert max(out) <= 1333


def test_resize_scales_boxes_by_image_factors():
    torch.manual_seed(0)
    img, tgt = _image(64, 48), _target([[2, 3, 10, 20], [30.5, 0, 64, 48]])
    for _ in range(5):
        r_img, r_tgt = T.RandomResize([24, 40, 100], max_size=120)(img, tgt)
        sw, sh = r_img.size[0] / 64, r_img.size[1] / 48
        expected = tgt["boxes"] * torch.tensor([sw, sh, sw, sh])
        assert torch.allclose(r_tgt["boxes"], expected) and max(r_img.size) <= 120


def test_color_jitter_keeps_geometry_and_normalize_values():
    torch.manual_seed(0)
    img, tgt = _image(), _target([[2, 3, 10, 20]])
    j_img, j_tgt = T.ColorJitter(0.4, 0.4, 0.4)(img, tgt)
    assert j_img.size == img.size and j_tgt is tgt
    x, _ = T.ToTensorNormalize()(Image.new("RGB", (5, 4), (255, 0, 128)), tgt)
    assert x.shape == (3, 4, 5) and x.dtype == torch.float32
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    assert torch.allclose(x[:, 0, 0], torch.tensor(expected))


def test_crop_drops_pairs_of_removed_entities_and_renumbers():
    # entity 0 lies outside the crop, 1 and 2 inside; pair (0, 1) and relation (2, 0) must go
    tgt = _target([[0, 0, 10, 10], [20, 20, 40, 40], [30, 25, 60, 45]], [[0, 1, 3], [1, 2, 4]], [[2, 0, 1], [2, 1, 7]])
    img, out = T.crop(_image(64, 48), tgt, (15, 15, 40, 30))
    assert img.size == (40, 30)
    assert out["labels"].tolist() == [1, 2]
    assert out["boxes"].tolist() == [[5, 5, 25, 25], [15, 10, 40, 30]]  # shifted by (15, 15), clipped to 40x30
    assert out["hois"].tolist() == [[0, 1, 4]] and out["relations"].tolist() == [[1, 0, 7]]


def test_random_crop_property_no_degenerate_or_dangling_pairs():
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    crop = T.RandomSizeCrop(8, 40)
    for _ in range(300):
        n = int(rng.integers(1, 8))
        xy = rng.uniform(0, 60, (n, 2))
        wh = rng.uniform(0.5, 30, (n, 2))
        boxes = np.concatenate([xy, np.minimum(xy + wh, 64)], 1)
        pairs = rng.integers(0, n, (int(rng.integers(0, 10)), 2))
        hois = np.concatenate([pairs, rng.integers(0, 5, (len(pairs), 1))], 1)
        tgt = _target(boxes.tolist(), hois.tolist(), hois[:, [1, 0, 2]].tolist())
        img, out = crop(_image(64, 64), tgt)
        w, h = img.size
        b = out["boxes"]
        assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()
        assert (b >= 0).all() and (b[:, [0, 2]] <= w).all() and (b[:, [1, 3]] <= h).all()
        kept = set(out["labels"].tolist())  # labels carry the original entity index
        for key, rows in (("hois", hois), ("relations", hois[:, [1, 0, 2]])):
            r = out[key]
            assert ((r[:, :2] >= 0) & (r[:, :2] < len(b))).all()
            # exactly the pairs whose two entities survived, in order, with original identities
            expected = [row for row in rows.tolist() if row[0] in kept and row[1] in kept]
            got = [[int(out["labels"][s]), int(out["labels"][o]), int(v)] for s, o, v in r.tolist()]
            assert got == expected


def test_make_transforms_train_and_test_output():
    torch.manual_seed(0)
    tgt = _target([[2, 3, 30, 40]], [[0, 0, 1]])
    train = T.make_transforms(True, [32, 40], 64, 48, crop_resize=(30, 40), crop_size=(20, 30))
    for _ in range(10):
        x, out = train(_image(64, 48), tgt)
        assert x.ndim == 3 and x.shape[0] == 3 and max(x.shape[1:]) <= 64
        if len(out["hois"]):
            assert out["hois"][:, :2].max() < len(out["boxes"])
    x, out = T.make_transforms(False, [32], 64, 48)(_image(64, 48), tgt)
    assert tuple(x.shape) == (3, 48, 64) and torch.equal(out["boxes"], tgt["boxes"])
