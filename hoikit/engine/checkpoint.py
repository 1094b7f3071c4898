"""hoikit checkpoints: atomic writes, safe loads, checked model state.

Layout (docs/architecture.md, "Checkpoints")::

    {"format": "hoikit", "version": 1, "config": dict, "meta": dict, "model": state_dict,
     # training checkpoints only:
     "optimizer", "scheduler", "scaler", "epoch", "iteration", "step", "rng", "best", "best_epoch"}

``epoch``/``iteration`` is the position of the NEXT batch to train (iteration 0 = start of
``epoch``); ``rng`` holds Python / NumPy / torch (and CUDA) generator states. Everything is stored
as tensors or Python builtins so :func:`load_checkpoint` can use ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np
import torch

from ..errors import CheckpointError
from ..paths import packaged
from .model_dir import is_model_dir, read_model_dir

FORMAT = "hoikit"
VERSION = 1

# Globals a hoikit checkpoint may contain beyond torch's weights_only defaults (tensors, dicts,
# lists, tuples, str/int/float/bool/None, OrderedDict). hoikit writes builtins only, so the
# allow-list is deliberately empty; anything else in a file is refused, never unpickled.
SAFE_GLOBALS: tuple = ()


def save_checkpoint(state: Mapping, path: os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a temp file in the same directory, flushed and
    fsync'ed, then ``os.replace``. A crash at any point leaves the previous ``path`` intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: os.PathLike, map_location="cpu", require_format: bool = True) -> Dict:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and the :data:`SAFE_GLOBALS`, or a model
    directory (config.yaml + model.safetensors + classes.json, :mod:`hoikit.engine.model_dir`) without pickle.

    Raises:
        CheckpointError: missing/unreadable file, unsafe content, or not a hoikit checkpoint.
    """
    path = packaged(path)   # hoikit/assets/... from any directory
    if path.is_dir():
        if not is_model_dir(path):
            raise CheckpointError(f"{path}: a directory but not a hoikit model directory "
                                  "(needs config.yaml and model.safetensors; hoikit export --format dir)")
        return read_model_dir(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's weights-only unpickler names the offending global ("Unsupported global: GLOBAL x.y")
        unsafe = [ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln]
        if unsafe:
            raise CheckpointError(f"{path}: refused to load (not weights-only safe): {unsafe[0].split(' was not')[0]}") from None
        raise CheckpointError(f"{path}: cannot read checkpoint (corrupt or not a torch file)") from None
    except Exception as e:  # truncated zip, wrong magic, ...
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else 'corrupt'})") from None
    if require_format and (not isinstance(state, dict) or state.get("format") != FORMAT):
        raise CheckpointError(f"{path}: not a hoikit checkpoint (key 'format' != '{FORMAT}'); "
                              f"convert it with `hoikit convert`")
    for key in ("model", "config"):
        if require_format and key not in state:
            raise CheckpointError(f"{path}: checkpoint has no key '{key}'")
    return state


def load_model_state(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strictly copy ``state_dict`` into ``model``: every key present, no extra key, same shapes.

    Raises:
        CheckpointError: naming the first missing / unexpected / misshapen key (as ``model.<key>``).
    """
    from ..models.checkpoints import check_state_dict

    check_state_dict(model, state_dict, source, key_prefix="model.")
    model.load_state_dict(state_dict, strict=True)


def rng_state() -> Dict:
    """Python, NumPy, torch CPU (and CUDA) generator states, as weights-only-safe objects."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def model_checkpoint(model: torch.nn.Module, config: dict, meta: dict, **extra) -> Dict:
    """The minimal inference checkpoint dict (``format``, ``version``, ``config``, ``meta``, ``model``)."""
    return {"format": FORMAT, "version": VERSION, "config": config, "meta": meta,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **extra}


def training_checkpoint(model, optimizer, scheduler, scaler, *, config: dict, meta: dict, epoch: int,
                        iteration: int, step: int, best: Optional[float], best_epoch: int) -> Dict:
    """Everything :func:`hoikit.engine.trainer.fit` needs to continue bit-exactly."""
    return model_checkpoint(
        model, config, meta,
        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
        scaler=scaler.state_dict() if scaler is not None else {},
        epoch=int(epoch), iteration=int(iteration), step=int(step), rng=rng_state(),
        best=None if best is None else float(best), best_epoch=int(best_epoch))
