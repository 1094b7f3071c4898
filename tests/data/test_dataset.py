import json

import pytest
import torch
from PIL import Image

from hoikit.config import DataConfig
from hoikit.data.dataset import HOIDataset, build_reader, build_transforms, collate
from hoikit.errors import DataError


@pytest.fixture
def tiny_hico(tmp_path, hico_test_json, image_writer):
    """First 4 images of the real HICO-DET test file, with blank images of the recorded sizes (the 4th missing)."""
    d = dict(hico_test_json)
    n = 4
    for k in ("annotation", "filenames", "size"):
        d[k] = d[k][:n]
    d["empty"] = [i for i in d["empty"] if i < n]
    anno = tmp_path / "instances_test2015.json"
    anno.write_text(json.dumps(d))
    image_writer(tmp_path / "images", list(zip(d["filenames"][:3], d["size"][:3])))  # image 3 missing
    return DataConfig(format="hicodet", test_anno=str(anno), test_images=str(tmp_path / "images"),
                      train_anno=str(anno), train_images=str(tmp_path / "images"),
                      scales=[64, 80], max_size=128, test_scale=96), d


def test_dataset_items_follow_the_batch_contract(tiny_hico):
    cfg, d = tiny_hico
    ds = HOIDataset(build_reader(cfg, "test"), build_transforms(cfg, train=False))
    image, target = ds[0]
    # 640 x 427, shorter side 96 would give a 143-px long side > max_size 128:
    # shorter = floor(128 * 427 / 640) = 85, long = int(85 * 640 / 427) = 127
    w, h = d["size"][0]
    assert image.shape == (3, 85, 127) and image.dtype == torch.float32
    assert target["orig_size"].tolist() == [w, h] and target["size"].tolist() == [127, 85]
    # boxes scale with the image: entity 0 = human [320, 306, 359, 349] 1-based -> [319, 305, 359, 349]
    sx, sy = 127 / w, 85 / h
    assert torch.allclose(target["boxes"][0], torch.tensor([319 * sx, 305 * sy, 359 * sx, 349 * sy]))
    assert target["hois"].tolist() == [[0, 2, 87], [1, 2, 87]] and target["index"] == 0
    images, targets = collate([ds[0], ds[1]])
    assert len(images) == 2 and images[1].shape[0] == 3 and targets[1]["index"] == 1


def test_training_items_keep_pairs_valid(tiny_hico):
    cfg, _ = tiny_hico
    torch.manual_seed(0)
    ds = HOIDataset(build_reader(cfg, "train"), build_transforms(cfg, train=True))
    for _ in range(4):
        for i in range(3):
            image, t = ds[i]
            assert max(image.shape[1:]) <= cfg.max_size
            b = t["boxes"]
            assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()
            assert (t["hois"][:, :2] < len(b)).all()


def test_missing_and_corrupt_images_name_file_and_index(tiny_hico):
    cfg, d = tiny_hico
    ds = HOIDataset(build_reader(cfg, "test"))
    with pytest.raises(DataError, match=r"HICO_test2015_00000004.jpg: image 3 not found"):
        ds[3]
    bad = f"{cfg.test_images}/{d['filenames'][1]}"
    open(bad, "wb").write(b"not a jpeg")
    with pytest.raises(DataError, match=r"HICO_test2015_00000002.jpg: image 1 cannot be read"):
        ds[1]


def test_size_mismatch_rescales_boxes(tiny_hico):
    cfg, d = tiny_hico
    w, h = d["size"][0]
    Image.new("RGB", (w // 2, h), (0, 0, 0)).save(f"{cfg.test_images}/{d['filenames'][0]}")
    with pytest.warns(UserWarning, match="boxes rescaled"):
        _, t = HOIDataset(build_reader(cfg, "test"))[0]
    assert torch.allclose(t["boxes"][0], torch.tensor([319 * (w // 2) / w, 305, 359 * (w // 2) / w, 349]))


def test_build_reader_errors():
    with pytest.raises(DataError, match="data.test_anno"):
        build_reader(DataConfig(format="hicodet"), "test")
    with pytest.raises(DataError, match="unknown dataset format 'openimages'"):
        build_reader(DataConfig(format="openimages", test_anno="x.json"), "test")
    with pytest.raises(DataError, match="has no 'val' split"):
        build_reader(DataConfig(format="hicodet", test_anno="x.json"), "val")
