"""Converters: released checkpoints (official DETR, Hugging Face DETR, UPT, Deformable DETR /
H-Deformable-DETR) -> hoikit checkpoints, as small functions: the key mapping and architecture
inference come from the family's reader in ``models/`` (``detr_weights``, ``deformable_weights``,
``rmlr/upt_weights``), the file format from :mod:`hoikit.io.checkpoint`; this package adds the config
and class metadata that a hoikit checkpoint stores. Never imports the engine; argument parsing and
printing are in ``hoikit/commands/convert_*.py``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional

from torch import Tensor

from ..config import Config, to_dict
from ..data.metadata import DatasetMeta, hicodet_meta, vcoco_meta
from ..errors import CheckpointError
from ..io.checkpoint import checkpoint_dict, save_checkpoint


def class_meta(classes: Optional[str], num_classes: int, path: str, names: Optional[List[str]] = None) -> Dict:
    """The checkpoint meta of a detector: ``classes`` = hicodet / vcoco tables, generic ``class_<i>``, or
    None = the source's own names (Hugging Face ``id2label``) when it has them, else generic.

    Raises:
        CheckpointError: the tables' class count differs from the file's ``num_classes``.
    """
    if classes is None and names:
        person = names.index("person") if "person" in names else 0
        return DatasetMeta("detector", list(names), person_label=person).to_dict()
    if classes in (None, "generic"):
        return DatasetMeta("detector", [f"class_{i}" for i in range(num_classes)]).to_dict()
    meta = hicodet_meta() if classes == "hicodet" else vcoco_meta()
    if len(meta.objects) != num_classes:
        raise CheckpointError(f"{path}: key 'class_embed.weight' has {num_classes} + 1 rows but --classes "
                              f"{classes} names {len(meta.objects)} classes")
    return meta.to_dict()


def write_converted(out, cfg: Config, meta: Dict, state_dict: Mapping[str, Tensor], src, source_format: str,
                    prefix: str = "") -> Path:
    """Write a converted hoikit checkpoint: ``cfg``, ``meta``, the weights (keys prefixed by ``prefix``)
    and ``source = {path, format}``, atomically."""
    return save_checkpoint(checkpoint_dict(to_dict(cfg), meta, {prefix + k: v for k, v in state_dict.items()},
                                           source={"path": str(src), "format": source_format}), out)
