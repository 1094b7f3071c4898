import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

from hoikit.paths import shared_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real annotation files (HICO-DET, V-COCO, VG); skipped only if absent."""
    p = shared_data_dir()
    if not p.exists():
        pytest.skip(f"shared data not found at {p} (set HOIKIT_SHARED)")
    return p
