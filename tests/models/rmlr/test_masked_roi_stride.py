"""The masked RoI (Eq. 5) places feature cells with the backbone's true stride (issue 12, item 2).

A padded side that is not a multiple of the stride gives a map of ``ceil(side / s)`` cells; dividing
the padded side by the number of cells (the old rule) shrinks the cell pitch and moves the cells at
the bottom / right edges away from the pixels they were computed from."""
import torch

import hoikit.models.rmlr.relation_encoder as relation_encoder
from hoikit.models.backbone import build_backbone
from rmlr_tiny import build_tiny

torch.set_num_threads(1)


def test_backbones_report_their_true_stride():
    for name, dilation, stride in (("tiny", False, 16), ("small", False, 16), ("resnet18", False, 32),
                                   ("resnet18", True, 16)):
        bb = build_backbone(name, dilation)
        x = torch.zeros(1, 3, 481, 1333)
        with torch.no_grad():
            feats, _ = bb(x, torch.zeros(1, 481, 1333, dtype=torch.bool))
        assert bb.stride == stride
        assert tuple(feats.shape[-2:]) == (-(-481 // stride), -(-1333 // stride))   # ceil(side / stride)


def test_box_in_the_bottom_right_corner_of_a_481_x_1333_image_selects_the_cells_under_it(tiny_meta, monkeypatch):
    """Tiny backbone: stride 16 -> a 31 x 84 map (481 / 16 = 30.06, 1333 / 16 = 83.3). A cell (r, c)
    covers [16c, 16c + 16) x [16r, 16r + 16); its centre is (16c + 8, 16r + 8). Boxes: person
    x 1280..1333, y 440..481 and ball x 1296..1333, y 456..481: centres inside the person box are
    columns 80..82 (1288, 1304, 1320; 1336 > 1333) and rows 27..29 (440, 456, 472; 488 > 481). With
    the old pitch 481 / 31 = 15.52 px the selected cells were rows 28..30 and columns 82..83."""
    seen = []
    original = relation_encoder.pair_region_mask

    def spy(*args, **kw):
        out = original(*args, **kw)
        seen.append(out)
        return out

    monkeypatch.setattr(relation_encoder, "pair_region_mask", spy)
    model = build_tiny(tiny_meta, "wo_cl", detections="oracle").eval()
    image = torch.randn(3, 481, 1333)
    target = dict(boxes=torch.tensor([[1280., 440., 1333., 481.], [1296., 456., 1333., 481.]]),
                  labels=torch.tensor([0, 1]), hois=torch.tensor([[0, 1, 0]]))
    with torch.no_grad():
        model([image], [target])
    assert len(seen) == 1
    mask = seen[0]
    assert tuple(mask.shape) == (1, 31, 84)                      # one pair (person, ball), the C5 grid
    expected = torch.zeros(31, 84)
    expected[27:30, 80:83] = 1
    assert torch.equal(mask[0], expected)
