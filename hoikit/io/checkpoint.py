"""hoikit checkpoints: the file format, the one safe reader, atomic writes and strict state-dict loading.

This is the only module that reads or writes checkpoint files; models, converters, the engine and the
commands all go through it. It imports only torch / numpy / safetensors / yaml and hoikit's bottom layer.

Layout (docs/architecture.md, "Checkpoints")::

    {"format": "hoikit", "version": 1, "config": dict, "meta": dict, "model": state_dict,
     # converted files: "source": {"path", "format"}
     # training checkpoints only:
     "optimizer", "scheduler", "scaler", "epoch", "iteration", "step", "rng", "best", "best_epoch"}

``epoch``/``iteration`` is the position of the NEXT batch to train (iteration 0 = start of
``epoch``); ``rng`` holds Python / NumPy / torch (and CUDA) generator states. Everything is stored
as tensors or Python builtins so :func:`read_file` can use ``torch.load(weights_only=True)``.

A model directory (``hoikit export --format dir``) is the same checkpoint without pickle::

    DIR/config.yaml          the hoikit config the model was built with (plain YAML, yaml.safe_load)
    DIR/model.safetensors    the inference weights; header metadata: format, version, arch
    DIR/classes.json         the class tables (the checkpoint's ``meta``)

:func:`load_checkpoint` reads either and returns the same dict.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, ConfigError
from ..paths import packaged

FORMAT = "hoikit"
VERSION = 1

# The one allow-list of globals a file may contain beyond torch's weights_only defaults (tensors, dicts,
# lists, tuples, str/int/float/bool/None, OrderedDict): ``argparse.Namespace``, the ``args`` of official
# DETR / Deformable DETR training files (an attribute container, nothing runs). hoikit itself writes
# builtins only. Anything else in a file is refused, never unpickled.
SAFE_GLOBALS = (argparse.Namespace,)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
DIR_FILES = {"config": "config.yaml", "weights": "model.safetensors", "classes": "classes.json"}


def _first_line(e: Exception) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


# ----------------------------------------------------------------------------------------------
# reading

def read_file(path: os.PathLike, map_location="cpu") -> object:
    """Read any ``.pt``/``.pth``/``.bin`` (weights-only pickle with :data:`SAFE_GLOBALS`) or
    ``.safetensors`` file, hoikit's or not, and return what it holds.

    Raises:
        CheckpointError: missing file, unreadable file, or content outside the allow-list (naming the global).
    """
    path = packaged(path)   # hoikit/assets/... from any directory
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: cannot read safetensors file ({_first_line(e)})") from None
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's weights-only unpickler names the offending global ("Unsupported global: GLOBAL x.y")
        unsafe = [ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln]
        if unsafe:
            raise CheckpointError(f"{path}: refused to load (not weights-only safe): "
                                  f"{unsafe[0].split(' was not')[0]}") from None
        raise CheckpointError(f"{path}: cannot read checkpoint (corrupt or not a torch file)") from None
    except Exception as e:  # truncated zip, wrong magic, ...
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: "
                              f"{_first_line(e) if str(e).strip() else 'corrupt'})") from None


def load_checkpoint(path: os.PathLike, map_location="cpu", require_format: bool = True) -> Dict:
    """Read a hoikit checkpoint file (:func:`read_file`) or a model directory (:func:`read_model_dir`).

    Args:
        require_format: refuse anything that is not a hoikit checkpoint (``format``, ``model``, ``config``);
            False returns whatever the file holds (converters read released files this way).

    Raises:
        CheckpointError: missing/unreadable file, unsafe content, or not a hoikit checkpoint.
    """
    path = packaged(path)
    if path.is_dir():
        if not is_model_dir(path):
            raise CheckpointError(f"{path}: a directory but not a hoikit model directory "
                                  "(needs config.yaml and model.safetensors; hoikit export --format dir)")
        return read_model_dir(path)
    state = read_file(path, map_location)
    if require_format and (not isinstance(state, dict) or state.get("format") != FORMAT):
        raise CheckpointError(f"{path}: not a hoikit checkpoint (key 'format' != '{FORMAT}'); "
                              f"convert it with `hoikit convert`")
    for key in ("model", "config"):
        if require_format and key not in state:
            raise CheckpointError(f"{path}: checkpoint has no key '{key}'")
    return state


# ----------------------------------------------------------------------------------------------
# writing

def stored_input_scales(source) -> Dict:
    """``{"scales": [...], "max_size": int, "test_scale": int}`` (the keys present) of the config stored in
    a hoikit checkpoint (a file or an already read dict); empty for another format."""
    ck = source if isinstance(source, Mapping) else load_checkpoint(source, require_format=False)
    data = ck.get("config", {}).get("data", {}) if isinstance(ck, dict) and ck.get("format") == FORMAT else {}
    out: Dict = {}
    if data.get("scales"):
        out["scales"] = [int(s) for s in data["scales"]]
    out.update({k: int(data[k]) for k in ("max_size", "test_scale") if data.get(k)})
    return out


def detector_input_overrides(source) -> List[str]:
    """The image scales the detector in ``source`` (a file, or a checkpoint already read with
    :func:`load_checkpoint`) was trained at, as dotted overrides
    (``data.scales`` / ``data.max_size`` / ``data.test_scale`` of the config stored in a hoikit
    checkpoint), so that a model built on the frozen detector feeds it images at that scale: the 256 px
    SynthHOI detector run at 384 px drops from AP50 68.66 to 58.4 (docs/synthhoi-training.md). Empty for
    a file that stores no hoikit config (an official DETR / Deformable DETR release: the preset's scales
    apply)."""
    return _as_overrides(stored_input_scales(source))


def _as_overrides(stored: Dict) -> List[str]:
    """:func:`stored_input_scales`'s dict as dotted overrides."""
    out = []
    if "scales" in stored:
        out.append("data.scales=[" + ",".join(str(s) for s in stored["scales"]) + "]")
    out += [f"data.{k}={stored[k]}" for k in ("max_size", "test_scale") if k in stored]
    return out


def detector_scale_mismatch(data_cfg, source, stored: Optional[Dict] = None) -> Optional[str]:
    """A one-line warning when a frozen detector (``source``: a hoikit detector checkpoint) was trained
    at another evaluation scale than ``data_cfg`` (``data.test_scale`` / ``data.max_size``) feeds it, naming
    the overrides that match it; None when they agree or the file stores no hoikit config. Training
    scales (``data.scales``) may differ on purpose (augmentation), so only the test-time scale counts.
    A source that is not a hoikit file (an official release, a Hugging Face DETR folder) has nothing to say.
    ``stored``: the scales already read from ``source`` (the ``input_scales`` of the detector loaders' info
    dict), so that the file is not read a second time; ``source`` then only names it in the message."""
    if stored is None:
        try:
            stored = stored_input_scales(source)
        except CheckpointError:     # the detector loader accepted it; it is just not a hoikit checkpoint
            return None
    differ = [f"{k} {stored[k]} (this run: {getattr(data_cfg, k)})" for k in ("test_scale", "max_size")
              if k in stored and int(getattr(data_cfg, k)) != stored[k]]
    if not differ:
        return None
    name = "<checkpoint>" if isinstance(source, Mapping) else str(source)
    return (f"model.detr.checkpoint {name}: the detector was trained at {', '.join(differ)}; a frozen detector "
            f"fed another scale detects worse (the 256 px SynthHOI detector at 384 px: AP50 68.66 -> 58.4). "
            f"To match it: {' '.join(_as_overrides(stored))}")


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


def checkpoint_dict(config: dict, meta: dict, state_dict: Mapping[str, torch.Tensor], **extra) -> Dict:
    """A hoikit checkpoint dict (``format``, ``version``, ``config``, ``meta``, ``model`` + ``extra`` keys)
    from a state dict (stored detached, on the CPU, contiguous)."""
    return {"format": FORMAT, "version": VERSION, "config": config, "meta": meta,
            "model": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, **extra}


def model_checkpoint(model: torch.nn.Module, config: dict, meta: dict, **extra) -> Dict:
    """The minimal inference checkpoint dict of ``model`` (:func:`checkpoint_dict` of its state dict)."""
    return checkpoint_dict(config, meta, model.state_dict(), **extra)


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


def training_checkpoint(model, optimizer, scheduler, scaler, *, config: dict, meta: dict, epoch: int,
                        iteration: int, step: int, best: Optional[float], best_epoch: int) -> Dict:
    """Everything :func:`hoikit.engine.trainer.fit` needs to continue bit-exactly."""
    return model_checkpoint(
        model, config, meta,
        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
        scaler=scaler.state_dict() if scaler is not None else {},
        epoch=int(epoch), iteration=int(iteration), step=int(step), rng=rng_state(),
        best=None if best is None else float(best), best_epoch=int(best_epoch))


# ----------------------------------------------------------------------------------------------
# strict state-dict loading

def strip_wrappers(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Remove DataParallel/DDP ``module.`` and ``torch.compile`` ``_orig_mod.`` prefixes anywhere in front."""
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in WRAPPER_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out


def check_state_dict(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], path: str = "checkpoint",
                     key_prefix: str = "") -> None:
    """Raise :class:`CheckpointError` naming the first missing, unexpected or misshapen key and the file.

    Args:
        key_prefix: written before each key in messages (``"model."`` for the weights inside a
            hoikit checkpoint, so the message names the key as it is stored in the file).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    if missing:
        raise CheckpointError(f"{path}: key '{key_prefix}{missing[0]}' missing ({len(missing)} missing keys)")
    if extra:
        raise CheckpointError(f"{path}: unexpected key '{key_prefix}{extra[0]}' ({len(extra)} unexpected keys)")
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: key '{key_prefix}{k}' has shape {tuple(sd[k].shape)}, "
                                  f"the model expects {tuple(v.shape)}")


def load_model_state(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint",
                     key_prefix: str = "model.") -> None:
    """Strictly copy ``state_dict`` into ``model``: every key present, no extra key, same shapes.

    Args:
        source: the file, named in errors. key_prefix: see :func:`check_state_dict` (default: the
            weights of a hoikit checkpoint, stored under ``model``; ``""`` for a bare state dict).

    Raises:
        CheckpointError: naming the file and the first missing / unexpected / misshapen key.
    """
    check_state_dict(model, state_dict, source, key_prefix)
    model.load_state_dict(state_dict, strict=True)


# ----------------------------------------------------------------------------------------------
# model directories (`hoikit export --format dir`, `Predictor.save`)

def is_model_dir(path: os.PathLike) -> bool:
    """True when ``path`` is a directory holding ``model.safetensors`` and ``config.yaml``."""
    p = Path(path)
    return p.is_dir() and (p / DIR_FILES["weights"]).is_file() and (p / DIR_FILES["config"]).is_file()


def _read_text(path: Path, parse, what: str):
    if not path.is_file():
        raise CheckpointError(f"{path}: model directory has no {path.name} ({what})")
    try:
        return parse(path.read_text())
    except (ValueError, yaml.YAMLError) as e:
        raise CheckpointError(f"{path}: cannot parse {what} ({_first_line(e)})") from None


def read_model_dir(path: os.PathLike) -> Dict:
    """Read a model directory as a checkpoint dict (no pickle: YAML, JSON and safetensors only).

    Raises:
        CheckpointError: a missing or unreadable file, naming it.
    """
    path = Path(path)
    config = _read_text(path / DIR_FILES["config"], yaml.safe_load, "the hoikit config")
    meta = _read_text(path / DIR_FILES["classes"], json.loads, "the class tables")
    weights = path / DIR_FILES["weights"]
    if not weights.is_file():
        raise CheckpointError(f"{weights}: model directory has no {weights.name} (the weights)")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: cannot read safetensors file ({_first_line(e)})") from None
    if not isinstance(config, dict) or not isinstance(meta, dict):
        raise CheckpointError(f"{path}: {DIR_FILES['config']} and {DIR_FILES['classes']} must each hold a mapping")
    return {"format": FORMAT, "version": VERSION, "config": config, "meta": meta, "model": state}


def write_model_dir(out: os.PathLike, config: Dict, meta: Dict, state_dict: Dict[str, torch.Tensor]) -> Dict[str, Path]:
    """Write the three files into a new directory ``out`` (refused if it exists and is not empty).

    Files are written into a temporary sibling directory renamed into place at the end, so a failure
    leaves nothing behind. Returns ``{"config": path, "weights": path, "classes": path}``.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not an empty directory; choose another --out (nothing overwritten)")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        (tmp / DIR_FILES["config"]).write_text(yaml.safe_dump(config, sort_keys=False))
        (tmp / DIR_FILES["classes"]).write_text(json.dumps(meta, indent=1))
        # clone: safetensors refuses tensors sharing storage (tied / view weights)
        weights = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
        arch = str(config.get("model", {}).get("arch", ""))
        save_file(weights, str(tmp / DIR_FILES["weights"]),
                  metadata={"format": FORMAT, "version": str(VERSION), "arch": arch})
        if out.exists():
            out.rmdir()   # empty (checked above)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {k: out / name for k, name in DIR_FILES.items()}
