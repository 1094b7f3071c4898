"""Every Table 2 row trains under DistributedDataParallel (issue 12, item 1): a row builds only the
modules its losses use, so every trainable parameter gets a gradient at every step (DDP without
``find_unused_parameters`` raises otherwise)."""
from pathlib import Path

import pytest
import torch

from ddp_harness import assert_ranks_equal_and_trained, run_ddp
from hoikit.models.rmlr.build import ABLATIONS
from rmlr_tiny import build_tiny, targets_from_detections, tiny_images

torch.set_num_threads(1)
ROWS = sorted(ABLATIONS)


@pytest.mark.parametrize("ablation", ROWS)
@pytest.mark.parametrize("word_target", ["joint", "detached"])
def test_every_trainable_parameter_gets_a_gradient_in_every_row(ablation, word_target, tiny_meta, tiny_bert_dir):
    model = build_tiny(tiny_meta, ablation, tiny_bert_dir, word_target=word_target)
    images = tiny_images()
    targets = targets_from_detections(model, images)
    sum(model(images, targets).values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_table2_rows_train_two_steps_under_two_process_gloo_ddp(tmp_path, tiny_bert_dir):
    factory = str(Path(__file__).with_name("rmlr_tiny.py")) + ":ddp_case"
    results = run_ddp(tmp_path, factory, ROWS, factory_args=[str(tiny_bert_dir)], steps=2)
    for row in ROWS:
        assert_ranks_equal_and_trained(results[row], row)
