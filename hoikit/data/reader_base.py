"""Helpers every dataset reader shares: problem logging, JSON / .npz loading, array and box checks,
image headers and decoding.

Every reader validates its file while parsing. With ``strict=True`` (training, evaluation)
the first problem raises :class:`~hoikit.errors.DataError`; with ``strict=False``
(``hoikit data check``) problems are collected in ``reader.problems`` and the offending
items (a pair, a box, an image's annotation) are left out, so statistics can still be printed.
Every message is one line naming the file, the image index and the field at fault.

The readers (hicodet.py, vcoco.py, visual_genome.py, custom.py, coco.py) import this module;
readers.py (``open_reader``) imports the readers, so neither imports the other back.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from ..errors import DataError


@dataclass
class Problem:
    """One validation finding.

    Attributes:
        severity: "error" (the data is wrong) or "warning" (suspicious but usable).
        message: one line naming the file, the image index and the field.
    """

    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


class ProblemLog:
    """Collects problems of one annotation file, or raises on the first error when strict.

    Args:
        path: the file being read (named in every message).
        strict: raise DataError on the first error instead of collecting it.
    """

    def __init__(self, path, strict: bool = True):
        self.path = str(path)
        self.strict = strict
        self.problems: List[Problem] = []

    def _where(self, index: Optional[int], field: str) -> str:
        parts = [self.path]
        if index is not None:
            parts.append(f"image {index}")
        if field:
            parts.append(f"field '{field}'")
        return ": ".join(parts)

    def error(self, index: Optional[int], field: str, message: str) -> None:
        """Record (or, when strict, raise) an error about ``field`` of image ``index``."""
        text = f"{self._where(index, field)}: {message}"
        if self.strict:
            raise DataError(text)
        self.problems.append(Problem("error", text))

    def warning(self, index: Optional[int], field: str, message: str) -> None:
        self.problems.append(Problem("warning", f"{self._where(index, field)}: {message}"))

    @property
    def num_errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)


def load_json(path, what: str = "annotation file") -> Any:
    """Read a JSON file; a missing or unparsable file is a one-line DataError (``what`` names the
    kind of file in the "not found" message)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: {what} not found")
    try:
        with open(p, "r") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot read ({e})") from None


def _read_stored_npz(path: Path, keys) -> Optional[Dict[str, np.ndarray]]:
    """The arrays ``keys`` of an uncompressed .npz read straight from the file (one copy, as
    ``np.fromfile``; ``np.load`` copies each member twice through zipfile). None when a member is
    compressed, holds objects, is missing or looks unusual: the caller then uses ``np.load``."""
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
            members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            if any(k not in members or members[k].compress_type != zipfile.ZIP_STORED for k in keys):
                return None
            out = {}
            for k in keys:
                f.seek(members[k].header_offset)
                local = f.read(30)            # zip local file header: name and extra lengths at 26..29
                if local[:4] != b"PK\x03\x04":
                    return None
                f.seek(members[k].header_offset + 30 + int.from_bytes(local[26:28], "little")
                       + int.from_bytes(local[28:30], "little"))
                version = np.lib.format.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    return None
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                if dtype.hasobject:
                    return None
                count = int(np.prod(shape, dtype=np.int64))
                a = np.fromfile(f, dtype=dtype, count=count)
                if a.size != count:
                    return None
                out[k] = a.reshape(shape[::-1]).T if fortran else a.reshape(shape)
            return out
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def load_npz(path, keys) -> Dict[str, np.ndarray]:
    """The arrays ``keys`` of a ``.npz`` file (no pickle); a missing, unreadable or incomplete file
    is a one-line DataError naming the file (and the first missing array)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    fast = _read_stored_npz(p, keys)
    if fast is not None:
        return fast
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(f"{p}: missing array '{missing[0]}' (needs {', '.join(keys)})")
            return {k: z[k] for k in keys}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{p}: not a readable .npz of plain arrays ({first})") from None


def require_keys(obj: Any, keys, path, what: str = "file", index: Optional[int] = None) -> None:
    """Raise DataError if ``obj`` is not a dict holding every key of ``keys``."""
    where = f"{path}: image {index}" if index is not None else str(path)
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object for the {what}, got {type(obj).__name__}")
    for k in keys:
        if k not in obj:
            raise DataError(f"{where}: missing key '{k}' in the {what}")


def as_array(value, shape_tail, dtype, log: ProblemLog, index: int, field: str) -> Optional[np.ndarray]:
    """Convert ``value`` to an array of shape ``[N, *shape_tail]``, logging a bad shape.

    Returns:
        the array, or None when the value is not numeric or has the wrong shape.
    """
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        log.error(index, field, "not a numeric array")
        return None
    if arr.size == 0:
        return np.zeros((0, *shape_tail), dtype=dtype)
    if arr.ndim != 1 + len(shape_tail) or tuple(arr.shape[1:]) != tuple(shape_tail):
        want = "N" if not shape_tail else "N x " + " x ".join(map(str, shape_tail))
        log.error(index, field, f"expected shape {want}, got {list(arr.shape)}")
        return None
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        log.error(index, field, "contains NaN or infinity")
        return None
    return arr


def empty_pairs(keys) -> Dict[str, np.ndarray]:
    """Zero-length pair arrays: ``boxes*`` keys float32 ``[0, 4]``, the others int64 ``[0]``."""
    return {k: np.zeros((0, 4), np.float32) if k.startswith("boxes") else np.zeros(0, np.int64) for k in keys}


def pair_arrays(ann: Dict, keys, count_key: str, log: ProblemLog, index: int) -> Optional[Dict[str, np.ndarray]]:
    """The per-pair arrays of one image's annotation (HICO-DET / V-COCO JSON), checked.

    Args:
        ann: the image's annotation dict.
        keys: the pair keys; ``boxes*`` keys become float32 ``[K, 4]``, the others int64 ``[K]``.
        count_key: the key whose length ``K`` every other key must have.

    Returns:
        ``{key: array}``, or None after logging a missing key, a bad shape or a length mismatch.
    """
    for k in keys:
        if k not in ann:
            log.error(index, k, "missing key")
            return None
    arrs = {k: as_array(ann[k], (4,) if k.startswith("boxes") else (),
                        np.float32 if k.startswith("boxes") else np.int64, log, index, k) for k in keys}
    if any(v is None for v in arrs.values()):
        return None
    n = len(arrs[count_key])
    for k in keys:
        if len(arrs[k]) != n:
            log.error(index, k, f"has {len(arrs[k])} entries but '{count_key}' has {n}")
            return None
    return arrs


def merge_entities(boxes_h: np.ndarray, boxes_o: np.ndarray, objects: np.ndarray, person: int):
    """Unique entities of a list of pairs.

    Args:
        boxes_h, boxes_o: float32 ``[K, 4]`` boxes of the pairs' humans and objects.
        objects: int64 ``[K]`` object classes; humans have class ``person``.
    Returns:
        boxes float32 ``[N, 4]``, labels int64 ``[N]``, human index ``[K]``, object index ``[K]``.
        Identical (box, class) entries share one entity, in order of first appearance.
    """
    index: Dict[tuple, int] = {}
    boxes: List[np.ndarray] = []
    labels: List[int] = []

    def entity(box, label):
        key = (tuple(box.tolist()), int(label))
        if key not in index:
            index[key] = len(boxes)
            boxes.append(box)
            labels.append(int(label))
        return index[key]

    hi = [entity(b, person) for b in boxes_h]
    oi = [entity(b, o) for b, o in zip(boxes_o, objects)]
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64),
            np.asarray(hi, np.int64), np.asarray(oi, np.int64))


def check_boxes(boxes: np.ndarray, log: ProblemLog, index: int, field: str,
                size: Optional[tuple] = None, slack: float = 1.0, shown: Optional[np.ndarray] = None) -> np.ndarray:
    """Boolean ``[N]`` mask of valid xyxy boxes; logs x2 < x1, y2 < y1 and boxes far outside the image.

    Args:
        boxes: float ``[N, 4]`` xyxy in the reader's internal (continuous) convention.
        size: ``(W, H)``; boxes leaving the image by more than ``slack`` pixels are warned about.
        shown: the boxes as written in the file (for messages), default ``boxes``.
    """
    shown = boxes if shown is None else shown
    ok = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    for i in np.nonzero(~ok)[0]:
        log.error(index, f"{field}[{i}]", f"box {np.round(shown[i], 2).tolist()} has x2 < x1 or y2 < y1")
    if size is not None and len(boxes):
        w, h = size
        out = ok & ((boxes[:, 0] < -slack) | (boxes[:, 1] < -slack) | (boxes[:, 2] > w + slack) | (boxes[:, 3] > h + slack))
        for i in np.nonzero(out)[0]:
            log.warning(index, f"{field}[{i}]", f"box {np.round(shown[i], 2).tolist()} leaves the {w}x{h} image")
    return ok


def check_range(values: np.ndarray, n: int, log: ProblemLog, index: int, field: str, low: int = 0) -> np.ndarray:
    """Boolean ``[N]`` mask of ``low <= values < n`` for 1-D ``values``; logs every value out of range."""
    values = np.asarray(values).reshape(-1)
    ok = (values >= low) & (values < n)
    for i in np.nonzero(~ok)[0]:
        log.error(index, f"{field}[{i}]", f"value {values[i].item()} out of range [{low}, {n})")
    return ok


def header_size(path) -> Optional[tuple]:
    """``(W, H)`` of an image file from its header (pixels are not decoded), None if unreadable."""
    try:
        with Image.open(path) as im:
            return tuple(im.size)
    except (OSError, ValueError):
        return None


def decode_image(path) -> Tuple[Optional[Image.Image], str]:
    """Decode every pixel of an image file (a truncated JPEG / PNG opens fine and fails only here).

    Returns:
        ``(RGB image, "")``, or ``(None, the decoder's message)``, e.g. ``OSError: image file is
        truncated (5 bytes not processed)``.
    """
    try:
        with Image.open(path) as im:
            return im.convert("RGB"), ""
    except Exception as e:   # PIL raises OSError, SyntaxError, ValueError, zlib.error, DecompressionBombError...
        return None, f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'no detail'}"
