"""Zero-shot HOI settings: hold a set of HOI classes out of training, report Unseen / Seen / Full mAP.

Settings (``data.zero_shot``; shared/specs/zero-shot.md): ``rf_uc`` (rare first, unseen combination),
``nf_uc`` (non-rare first), ``uo`` (unseen object), ``uv`` (unseen verb). The unseen lists ship in
``hoikit/classes/zero_shot.json``: HICO-DET's are GEN-VLKT's ``hico_unseen_index``; SynthHOI has
its own ``rf_uc`` and ``uv`` lists (docs/synthhoi.md, "Zero-shot settings").

Training follows GEN-VLKT's ``--del_unseen`` (YueLiao/gen-vlkt ``datasets/hico.py``): a human-object
pair with at least one unseen HOI annotation loses *all* its annotations (its seen verbs too), and an
image left without any annotation leaves the training set. The test set is unchanged.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from ..errors import ConfigError
from ..structures import Sample
from .metadata import load_class_file
from .reader_base import merge_entities

SETTINGS = {"rf_uc": "RF-UC (rare first, unseen combination)", "nf_uc": "NF-UC (non-rare first, unseen combination)",
            "uo": "UO (unseen object)", "uv": "UV (unseen verb)"}


def unseen_hois(setting: str, num_hois: int, dataset: Optional[str] = None) -> np.ndarray:
    """The unseen HOI classes of ``setting``, sorted int64.

    Args:
        setting: rf_uc | nf_uc | uo | uv.
        num_hois: number of HOI classes of the dataset (600 = HICO-DET); picks the lists when
            ``dataset`` is not given.
        dataset: ``hicodet`` | ``synth`` (a key of ``hoikit/classes/zero_shot.json``).
    """
    if setting not in SETTINGS:
        raise ConfigError(f"data.zero_shot: '{setting}' is not one of {' | '.join(SETTINGS)}")
    tables = {k: v for k, v in load_class_file("zero_shot").items() if not k.startswith("_")}
    if dataset is None:
        dataset = next((k for k, v in tables.items() if v["num_hois"] == num_hois), None)
        if dataset is None:
            raise ConfigError(f"data.zero_shot: no unseen lists for a dataset of {num_hois} HOI classes "
                              f"(hoikit/classes/zero_shot.json has {', '.join(tables)})")
    table = tables.get(dataset)
    if table is None or setting not in table:
        have = ", ".join(k for k in (table or {}) if k in SETTINGS)
        raise ConfigError(f"data.zero_shot: '{setting}' is not defined for {dataset} (defined: {have or 'none'})")
    if table["num_hois"] != num_hois:
        raise ConfigError(f"data.zero_shot: {dataset}'s lists are for {table['num_hois']} HOI classes, "
                          f"the dataset has {num_hois}")
    return np.array(sorted(table[setting]), dtype=np.int64)


def pair_ids(boxes_h: np.ndarray, boxes_o: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """``[K]`` int64 id of each row's pair: rows with the same human box, object box and object class
    share an id (the entity pairs of :func:`~hoikit.data.reader_base.merge_entities`; GEN-VLKT's
    (subject_id, object_id))."""
    if len(objects) == 0:
        return np.zeros(0, np.int64)
    rows = np.concatenate([boxes_h.reshape(-1, 4), boxes_o.reshape(-1, 4),
                           np.asarray(objects, np.float64).reshape(-1, 1)], 1)
    return np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def seen_pair_rows(boxes_h: np.ndarray, boxes_o: np.ndarray, objects: np.ndarray, hoi: np.ndarray,
                   unseen: np.ndarray) -> np.ndarray:
    """Rows kept in training: ``[K]`` bool, False for every row of a pair with an unseen annotation.

    Args:
        boxes_h, boxes_o: ``[K, 4]`` pair boxes; objects, hoi: ``[K]`` (one row per annotated HOI).
        unseen: the unseen HOI classes.
    """
    pair = pair_ids(boxes_h, boxes_o, objects)
    return ~np.isin(pair, pair[np.isin(hoi, unseen)])


class SeenPairsReader:
    """A HICO-DET-format reader restricted to the seen pairs of a zero-shot setting (training split).

    Args:
        reader: a :class:`~hoikit.data.hicodet.HICODetReader` (HICO-DET or SynthHOI).
        setting: rf_uc | nf_uc | uo | uv.

    Attributes:
        unseen: the unseen HOI classes. indices: kept image indices of ``reader``.
        stats: ``images``, ``images_dropped``, ``annotations``, ``annotations_dropped``,
        ``unseen_annotations`` (rows of an unseen class), ``pairs_dropped``.
    """

    def __init__(self, reader, setting: str, dataset: Optional[str] = None):
        self.reader, self.setting = reader, setting
        self.meta = reader.meta
        self.unseen = unseen_hois(setting, reader.meta.num_hois,
                                  dataset or ("synth" if reader.meta.name == "synth" else None))
        self.indices: List[int] = []
        self._pairs: Dict[int, dict] = {}
        stats = dict(images=len(reader), images_dropped=0, annotations=0, annotations_dropped=0,
                     unseen_annotations=0, pairs_dropped=0)
        for i in range(len(reader)):
            p = reader.pairs(i)
            pair = pair_ids(p["boxes_h"], p["boxes_o"], p["object"])
            unseen_rows = np.isin(p["hoi"], self.unseen)
            keep = ~np.isin(pair, pair[unseen_rows])                   # as seen_pair_rows
            stats["annotations"] += len(keep)
            stats["annotations_dropped"] += int((~keep).sum())
            stats["unseen_annotations"] += int(unseen_rows.sum())
            stats["pairs_dropped"] += len(np.unique(pair[~keep]))
            if keep.any():
                self.indices.append(i)
                self._pairs[i] = {k: v[keep] for k, v in p.items()}
            else:
                stats["images_dropped"] += 1
        self.stats = stats

    def __len__(self) -> int:
        return len(self.indices)

    def summary(self) -> str:
        """One line for the training log."""
        s = self.stats
        return (f"zero-shot {self.setting}: {len(self.unseen)} unseen HOI classes; training drops "
                f"{s['annotations_dropped']} of {s['annotations']} annotations ({s['pairs_dropped']} pairs, "
                f"{s['unseen_annotations']} of them unseen-class annotations) and {s['images_dropped']} of "
                f"{s['images']} images")

    def pairs(self, index: int) -> dict:
        """Seen pairs of the ``index``-th kept image (same keys as ``HICODetReader.pairs``)."""
        return self._pairs[self.indices[index]]

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self.indices):
            raise IndexError(index)
        sample = self.reader[self.indices[index]]
        p = self.pairs(index)
        boxes, labels, hi, oi = merge_entities(p["boxes_h"], p["boxes_o"], p["object"], self.meta.person_label)
        sample.boxes, sample.labels = boxes, labels
        sample.hois = np.stack([hi, oi, p["verb"]], 1)
        return sample
