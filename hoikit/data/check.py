"""Dataset validation and statistics behind ``hoikit data check``.

The reader is opened in lenient mode (``strict=False``): every problem of the annotation file is
collected (one line naming file, image index and field) instead of stopping at the first. With an
image directory, every image is decoded in full, in parallel (a truncated JPEG or PNG has a valid
header and fails only when its pixels are read), to find missing or undecodable files and sizes
that disagree with the annotation. A problem that makes the whole file unusable
(unparsable JSON, a missing top-level key) still raises :class:`~hoikit.errors.DataError`.
"""
from __future__ import annotations

import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

from tqdm import tqdm

from ..structures import hoi_lookup
from .metadata import RARE_THRESHOLD
from .reader_base import Problem, decode_image
from .readers import open_reader

@dataclass
class CheckReport:
    """Statistics and problems of one dataset split.

    Attributes:
        stats: flat dict of counts (images, pairs, relations, classes present, ...).
        problems: every finding, in file order.
    """

    stats: Dict = field(default_factory=dict)
    problems: List[Problem] = field(default_factory=list)

    @property
    def num_errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)

    def to_dict(self) -> Dict:
        return dict(stats=self.stats, errors=self.num_errors,
                    warnings=len(self.problems) - self.num_errors,
                    problems=[dict(severity=p.severity, message=p.message) for p in self.problems])

    def format(self, max_problems: int = 20) -> str:
        """Human-readable summary: statistics, then the first ``max_problems`` problems."""
        width = max(len(k) for k in self.stats) if self.stats else 0
        lines = [f"{k.replace('_', ' '):<{width}}  {v:,}" if isinstance(v, int) else f"{k.replace('_', ' '):<{width}}  {v}"
                 for k, v in self.stats.items()]
        lines.append(f"{'errors':<{width}}  {self.num_errors:,}")
        lines.append(f"{'warnings':<{width}}  {len(self.problems) - self.num_errors:,}")
        for p in self.problems[:max_problems]:
            lines.append(str(p))
        if len(self.problems) > max_problems:
            lines.append(f"... and {len(self.problems) - max_problems:,} more problems (--json OUT lists all)")
        return "\n".join(lines)


def _decode(path: Path):
    """``("missing" | "unreadable" | "ok", (W, H) or the decoder's message)`` of one image file."""
    if not path.is_file():
        return "missing", None
    image, why = decode_image(path)
    return ("unreadable", why) if image is None else ("ok", image.size)


def check_images(reader, problems: List[Problem], workers: int = 0, progress: bool = True) -> Dict[str, int]:
    """Decode every image fully (a truncated file passes a header check) on ``workers`` threads
    (0 = one per CPU; PIL releases the GIL while decoding), with a progress bar on stderr; log
    missing and undecodable files (with the decoder's message) and sizes that disagree with the annotation."""
    samples = [reader[i] for i in range(len(reader))]
    workers = workers or os.cpu_count() or 1
    missing = unreadable = mismatched = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_decode, [Path(s.image_path) for s in samples], chunksize=16)
        bar = tqdm(results, total=len(samples), desc="decoding images", unit="img", disable=not progress,
                   file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
        for i, (status, info) in enumerate(bar):
            s = samples[i]
            path = Path(s.image_path)
            if status == "missing":
                missing += 1
                problems.append(Problem("error", f"{path}: image {i} not found"))
            elif status == "unreadable":
                unreadable += 1
                problems.append(Problem("error", f"{path}: image {i} cannot be read ({info})"))
            elif tuple(s.size) != (0, 0) and tuple(info) != tuple(s.size):
                mismatched += 1
                problems.append(Problem("warning", f"{path}: image {i}: field 'size': file is {info[0]}x{info[1]}, "
                                                   f"annotation says {s.size[0]}x{s.size[1]}"))
    return dict(missing_images=missing, unreadable_images=unreadable, size_mismatches=mismatched)


def check_dataset(format: str, anno, images=None, workers: int = 0, progress: bool = True, **kw) -> CheckReport:
    """Validate one dataset split and count what it holds.

    Args:
        format: "hicodet", "synth", "vcoco", "vg" or "custom".
        anno: annotation file (vg: the h5).
        images: image directory; when given, every image is decoded (see :func:`check_images`).
        workers, progress: decoding threads (0 = one per CPU) and progress bar.
        **kw: reader options (vg: dicts, image_data, split; custom: classes).
    """
    reader = open_reader(format, anno, images, strict=False, **kw)
    meta = reader.meta
    problems = list(reader.problems)
    n_pairs = n_rel = n_ent = n_empty = 0
    obj_count, verb_count, hoi_count, pred_count = Counter(), Counter(), Counter(), Counter()
    lut = hoi_lookup(meta.correspondence, len(meta.objects), len(meta.verbs))
    for i in range(len(reader)):
        s = reader[i]
        n_ent += len(s.boxes)
        n_pairs += len(s.hois)
        n_rel += len(s.relations)
        # "empty": no pairs / relations (HOI and scene-graph files); no boxes (detection-only files)
        n_empty += not (len(s.hois) or len(s.relations)) if (meta.verbs or meta.predicates) else not len(s.boxes)
        obj_count.update(s.labels.tolist())
        if len(s.hois):
            verbs = s.hois[:, 2]
            verb_count.update(verbs.tolist())
            if len(meta.correspondence):
                hoi_count.update(h for h in lut[s.labels[s.hois[:, 1]], verbs].tolist() if h >= 0)
        pred_count.update(s.relations[:, 2].tolist())
    stats = dict(format=format, annotation=str(anno), images=len(reader), empty_images=n_empty, entities=n_ent)
    if meta.verbs:
        stats.update(pairs=n_pairs, verbs_present=f"{len(verb_count)} / {len(meta.verbs)}")
    if meta.predicates:
        stats.update(relations=n_rel, predicates_present=f"{len(pred_count)} / {len(meta.predicates)}")
    stats["object_classes_present"] = f"{len(obj_count)} / {len(meta.objects)}"
    if len(meta.correspondence):
        stats["hoi_classes_present"] = f"{len(hoi_count)} / {meta.num_hois}"
        stats["rare_classes"] = len(meta.rare)
        stats[f"hoi_classes_under_{RARE_THRESHOLD}_here"] = sum(hoi_count[h] < RARE_THRESHOLD for h in range(meta.num_hois))
    stats["box_errors"] = sum(p.severity == "error" and ("x2 < x1" in p.message or "positive width" in p.message)
                             for p in problems)
    if images:
        stats.update(check_images(reader, problems, workers, progress))
    return CheckReport(stats=stats, problems=problems)
