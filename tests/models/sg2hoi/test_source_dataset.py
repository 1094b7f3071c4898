"""The dataset an image comes from travels in its target from the reader (``Sample.task``), so a
VG150 image whose relations were all cropped away still trains the relation set loss (towards
no-relation) and the segmentation loss; before, the source was guessed from the annotations."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from sg2hoi_tiny import tiny_cfg
from hoikit.data.dataset import HOIDataset, collate
from hoikit.data.metadata import DatasetMeta
from hoikit.data.transforms import Compose, ToTensorNormalize, crop
from hoikit.data.visual_genome import VisualGenomeReader
from hoikit.errors import DataError
from hoikit.models.sg2hoi.build import build_sg2hoi
from hoikit.models.sg2hoi.model import batch_source

_spec = importlib.util.spec_from_file_location("data_conftest", Path(__file__).parents[2] / "data" / "conftest.py")
data_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(data_fixtures)

# one VG image, 200 x 100: an airplane (1, left) 'on' (31) a man (78, right); the relation needs both boxes
IMAGE = dict(image_id=21, width=200, height=100, split=2, rels=[(0, 1, 31)],
             objects=[(1, 200, 200, 200, 300), (78, 700, 250, 300, 300)])   # cx, cy, w, h on the 1024 side


def _vg_dataset(tmp_path, shared_data, transforms):
    h5, image_data = data_fixtures.write_vg(tmp_path, [IMAGE], with_corrupt=False)
    images = data_fixtures.blank_images(tmp_path / "img", [("21.jpg", (200, 100))])
    reader = VisualGenomeReader(h5, shared_data / "vg" / "VG-SGG-dicts-with-attri.json", image_data, "test",
                                images=images)
    return HOIDataset(reader, transforms)


def test_readers_put_their_task_in_the_target(tmp_path, shared_data):
    ds = _vg_dataset(tmp_path, shared_data, None)
    _, t = ds[0]
    assert t["task"] == "sgg" and len(t["relations"]) == 1


def test_vg_image_cropped_to_no_relation_keeps_set_and_segmentation_losses(tmp_path, shared_data):
    left = lambda img, t: crop(img, t, (0, 0, 60, 100))        # noqa: E731  keeps the airplane only
    ds = _vg_dataset(tmp_path, shared_data, Compose([left, ToTensorNormalize()]))
    images, targets = collate([ds[0]])
    t = targets[0]
    assert len(t["boxes"]) == 1 and len(t["relations"]) == 0 and t["task"] == "sgg"
    vg = ds.meta
    hoi = DatasetMeta(name="hoi-tiny", objects=["person", "horse", "cup"], verbs=["ride"], person_label=0,
                      correspondence=[[0, 1, 0]])
    cfg = tiny_cfg("", variant="rand")
    torch.manual_seed(0)
    model = build_sg2hoi(cfg, DatasetMeta(name="vg", objects=vg.objects, predicates=vg.predicates), hoi,
                         task=cfg.train.task).train()
    losses = model(images, targets)
    assert {"loss_seg", "loss_rel_box", "loss_rel_cls", "loss_rel_pred"} <= set(losses)
    assert not any(k.startswith("loss_hoi") for k in losses)
    assert float(losses["loss_rel_pred"].detach()) > 0                         # every query pushed to no-relation
    assert float(losses["loss_rel_box"].detach()) == 0                         # no matched tuple
    # the segmentation loss: BCE of the remaining airplane box (and background) on the valid cells
    assert torch.isfinite(losses["loss_seg"]) and float(losses["loss_seg"].detach()) > 0
    losses["loss_rel_pred"].backward()
    assert model.rel_decoder.query_embed.weight.grad.abs().sum() > 0


def test_a_two_dataset_model_refuses_a_target_without_task():
    assert batch_source({"task": "hoi"}) == "hoi" and batch_source({}, only="sgg") == "sgg"
    with pytest.raises(DataError, match="image 3 has task=None"):
        batch_source({"index": 3, "relations": torch.tensor([[0, 1, 0]])})
