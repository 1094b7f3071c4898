"""Model directories: the Hugging Face style form of a trained model, loadable without pickle.

``hoikit export --checkpoint CKPT --format dir --out DIR`` (or ``hoikit.load(CKPT).save(DIR)``) writes::

    DIR/config.yaml          the hoikit config the model was built with (plain YAML, yaml.safe_load)
    DIR/model.safetensors    the inference weights (RmLR without its training-only modules);
                             header metadata: format, version, arch
    DIR/classes.json         the class tables: object / verb / predicate names, HOI correspondence, rare classes
                             (the checkpoint's ``meta``; SG2HOI+: {"hoi": ..., "sgg": ...})

``hoikit.load(DIR)``, ``hoikit predict --checkpoint DIR`` and every command reading a checkpoint through
:func:`hoikit.engine.checkpoint.load_checkpoint` accept such a directory: :func:`read_model_dir` returns the
same dict as a checkpoint file (``format``, ``version``, ``config``, ``meta``, ``model``).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict

import torch
import yaml

from ..errors import CheckpointError, ConfigError

FILES = {"config": "config.yaml", "weights": "model.safetensors", "classes": "classes.json"}
DIR_FORMAT, DIR_VERSION = "hoikit", 1   # as in hoikit.engine.checkpoint (which imports this module)


def is_model_dir(path: os.PathLike) -> bool:
    """True when ``path`` is a directory holding ``model.safetensors`` and ``config.yaml``."""
    p = Path(path)
    return p.is_dir() and (p / FILES["weights"]).is_file() and (p / FILES["config"]).is_file()


def _read_text(path: Path, parse, what: str):
    if not path.is_file():
        raise CheckpointError(f"{path}: model directory has no {path.name} ({what})")
    try:
        return parse(path.read_text())
    except (ValueError, yaml.YAMLError) as e:
        raise CheckpointError(f"{path}: cannot parse {what} ({str(e).strip().splitlines()[0]})") from None


def read_model_dir(path: os.PathLike) -> Dict:
    """Read a model directory as a checkpoint dict (no pickle: YAML, JSON and safetensors only).

    Raises:
        CheckpointError: a missing or unreadable file, naming it.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config = _read_text(path / FILES["config"], yaml.safe_load, "the hoikit config")
    meta = _read_text(path / FILES["classes"], json.loads, "the class tables")
    weights = path / FILES["weights"]
    if not weights.is_file():
        raise CheckpointError(f"{weights}: model directory has no {weights.name} (the weights)")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: cannot read safetensors file ({str(e).strip().splitlines()[0]})") from None
    if not isinstance(config, dict) or not isinstance(meta, dict):
        raise CheckpointError(f"{path}: {FILES['config']} and {FILES['classes']} must each hold a mapping")
    return {"format": DIR_FORMAT, "version": DIR_VERSION, "config": config, "meta": meta, "model": state}


def write_model_dir(out: os.PathLike, config: Dict, meta: Dict, state_dict: Dict[str, torch.Tensor]) -> Dict[str, Path]:
    """Write the three files into a new directory ``out`` (refused if it exists and is not empty).

    Files are written into a temporary sibling directory renamed into place at the end, so a failure
    leaves nothing behind. Returns ``{"config": path, "weights": path, "classes": path}``.
    """
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not an empty directory; choose another --out (nothing overwritten)")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        (tmp / FILES["config"]).write_text(yaml.safe_dump(config, sort_keys=False))
        (tmp / FILES["classes"]).write_text(json.dumps(meta, indent=1))
        # clone: safetensors refuses tensors sharing storage (tied / view weights)
        weights = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
        arch = str(config.get("model", {}).get("arch", ""))
        save_file(weights, str(tmp / FILES["weights"]),
                  metadata={"format": DIR_FORMAT, "version": str(DIR_VERSION), "arch": arch})
        if out.exists():
            out.rmdir()   # empty (checked above)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {k: out / name for k, name in FILES.items()}

