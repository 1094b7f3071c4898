"""V-COCO role AP (Scenario 1 / 2) and agent AP, exactly as s-gupta/v-coco ``vsrl_eval.py``.

Procedure (specs/evaluation.md, "V-COCO"): per image and action(-role), detections sorted by
score are assigned to the ground-truth person of largest IoU among ALL COCO persons (first max
in file order); a detection landing on a person without V-COCO labels is skipped; TP iff the
person has the action, person IoU >= 0.5, role overlap >= 0.5 and the person is not yet covered.
A missing ground-truth role counts as overlap 1 in Scenario 2 and, in Scenario 1, only when the
predicted role box is empty. AP = VOC all-point. Boxes, scores and IoUs are float32.

The official script scans every detection for every image; here all detections of an
action(-role) are matched at once with array operations (same decisions, same tie order).
Differences from the official script (it crashes instead): an action-role without any detection
gets AP 0; an action without positives gets AP NaN (role mean = nanmean, agent mean = nansum/26,
the official formulas); detections on images outside the split or without persons are ignored.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..data.readers import load_json
from ..errors import DataError
from ..structures import box_iou_plus1_rows
from .ap import voc_ap_all_point
from .vcoco_records import (ACTIONS, VCOCODetections, action_role_columns, load_detections,
                            official_roles, pairs_to_detections, records_to_detections)

__all__ = ["VCOCOGroundTruth", "VCOCODetections", "load_ground_truth", "evaluate",
           "voc_ap_official", "records_to_detections", "pairs_to_detections", "load_detections",
           "format_table", "results_percent"]

IOU_THRESHOLD = 0.5  # ovr_thresh of vsrl_eval.py


@dataclass
class VCOCOGroundTruth:
    """Ground truth of one V-COCO split (I images, Np COCO persons, C = 25 action-roles).

    Attributes:
        image_ids: int64 ``[I]`` in ``<split>.ids`` order (the official image order).
        person_start: int64 ``[I + 1]``; persons of image i are rows ``person_start[i]:[i+1]``.
        person_boxes: float32 ``[Np, 4]`` official boxes (``x2 = x + max(0, w - 1)``, clipped).
        person_actions: int8 ``[Np, 26]``: 1 / 0 for V-COCO persons, -1 for unannotated ones.
        role_boxes: float32 ``[Np, C, 4]`` role-object box per action-role, all -1 if missing.
        roles: role names per action (agent first).
    """

    image_ids: np.ndarray
    person_start: np.ndarray
    person_boxes: np.ndarray
    person_actions: np.ndarray
    role_boxes: np.ndarray
    roles: List[List[str]]

    @property
    def npos(self) -> np.ndarray:
        """float32 ``[26]`` positive agents per action (including those with missing roles)."""
        return (self.person_actions == 1).sum(0).astype(np.float32)


def _coco_box(bbox, width, height) -> List[float]:
    """COCO xywh -> official inclusive xyxy clipped to the image (vsrl_eval.py, float64)."""
    x1, y1 = float(bbox[0]), float(bbox[1])
    x2, y2 = x1 + max(0.0, float(bbox[2]) - 1.0), y1 + max(0.0, float(bbox[3]) - 1.0)
    clip = lambda v, m: min(m - 1.0, max(0.0, v))  # noqa: E731
    return [clip(x1, width), clip(y1, height), clip(x2, width), clip(y2, height)]


def _read_vsrl(path: Path):
    """Annotated persons and their positive actions from s-gupta/v-coco ``vcoco_<split>.json``.

    Returns:
        ``(annotated, positives)``: the ann ids of V-COCO persons (those of action 0) and
        ``{ann_id: {action: [role object ann ids]}}`` for every label-1 row.
    """
    vsrl = load_json(path, "V-COCO file")
    if not isinstance(vsrl, list) or not all(isinstance(d, dict) for d in vsrl):
        raise DataError(f"{path}: expected a list of the 26 per-action dicts of s-gupta/v-coco")
    if [d.get("action_name") for d in vsrl] != list(ACTIONS):
        raise DataError(f"{path}: expected the 26 official actions in order, got "
                        f"{[d.get('action_name') for d in vsrl]}")
    positives: Dict[int, Dict[int, List[int]]] = {}
    for a, d in enumerate(vsrl):
        try:
            n = len(d["ann_id"])
            rid = np.asarray(d["role_object_id"], dtype=np.int64).reshape(len(d["role_name"]), n).T
            labels = np.asarray(d["label"]).reshape(-1)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: action {ACTIONS[a]!r}: needs 'ann_id', 'label', 'role_name' and "
                            f"'role_object_id' of matching sizes ({type(e).__name__}: {e})") from None
        for row in np.flatnonzero(labels == 1):
            ann = int(d["ann_id"][row])
            if a in positives.setdefault(ann, {}):
                raise DataError(f"{path}: ann_id {ann} has label 1 twice for action {ACTIONS[a]!r}")
            positives[ann][a] = rid[row, 1:].tolist()
    return set(int(a) for a in vsrl[0]["ann_id"]), positives


#: COCO annotation fields the ground truth reads
ANNOTATION_FIELDS = ("id", "image_id", "category_id", "bbox", "area")


def _read_coco(path: Path):
    """``({image id: (W, H)}, person category id, {image id: [annotation]})`` of COCO instances."""
    coco = load_json(path, "COCO instances file")
    try:
        images = {int(im["id"]): (float(im["width"]), float(im["height"])) for im in coco["images"]}
        person_cat = int(coco["categories"][0]["id"])  # contiguous class 1 of vsrl_eval.py
        annotations = coco["annotations"]
    except (KeyError, TypeError, IndexError) as e:
        raise DataError(f"{path}: not a COCO instances file (missing {e})") from None
    anns_of: Dict[int, list] = {}
    for i, ann in enumerate(annotations):
        missing = [k for k in ANNOTATION_FIELDS if k not in ann] if isinstance(ann, dict) else ["(not a dict)"]
        if missing:
            raise DataError(f"{path}: annotations[{i}] has no '{missing[0]}' (COCO needs {', '.join(ANNOTATION_FIELDS)})")
        anns_of.setdefault(int(ann["image_id"]), []).append(ann)
    return images, person_cat, anns_of


def load_ground_truth(vcoco_json, coco_json, ids_file, image_ids: Optional[Sequence[int]] = None) -> VCOCOGroundTruth:
    """Build the official ground truth from vcoco_<split>.json + COCO instances + <split>.ids.

    Args:
        vcoco_json: s-gupta/v-coco ``vcoco_<split>.json`` (26 per-action dicts).
        coco_json: COCO-format instances with every annotation of the split's images.
        ids_file: ``<split>.ids`` (one COCO image id per line, the evaluation order).
        image_ids: evaluate only these images (default: all of ``ids_file``).
    """
    vcoco_json, coco_json, ids_file = Path(vcoco_json), Path(coco_json), Path(ids_file)
    annotated, positives = _read_vsrl(vcoco_json)
    images, person_cat, anns_of = _read_coco(coco_json)
    if not ids_file.is_file():
        raise DataError(f"{ids_file}: file not found")
    try:
        ids = np.loadtxt(ids_file, dtype=np.float64, ndmin=1).astype(np.int64)
    except ValueError as e:
        raise DataError(f"{ids_file}: not a list of image ids ({e})") from None
    if image_ids is not None:
        keep = set(int(i) for i in image_ids)
        ids = ids[np.isin(ids, list(keep))]
    roles = official_roles()
    cols = action_role_columns(roles)
    starts, boxes, actions, role_boxes = [0], [], [], []
    for img in ids.tolist():
        if img not in images:
            raise DataError(f"{coco_json}: image id {img} of {ids_file} has no entry in 'images'")
        w, h = images[img]
        valid = {}  # ann id -> clean box, every category (role objects can be anything)
        persons = []
        for ann in anns_of.get(img, []):
            if ann.get("ignore", 0) == 1:
                continue
            box = _coco_box(ann["bbox"], w, h)
            if ann["area"] > 0 and box[2] > box[0] and box[3] > box[1]:
                valid[int(ann["id"])] = box
                if int(ann["category_id"]) == person_cat:
                    persons.append(int(ann["id"]))
        for ann_id in persons:
            boxes.append(valid[ann_id])
            act = np.full(len(ACTIONS), -1 if ann_id not in annotated else 0, np.int8)
            rb = np.full((len(cols), 4), -1.0, np.float32)
            for a, role_ids in positives.get(ann_id, {}).items() if ann_id in annotated else ():
                act[a] = 1
                for k, obj in enumerate(role_ids):
                    if obj in (0, -1):  # role not annotated
                        continue
                    if obj not in valid:
                        raise DataError(f"{vcoco_json}: role object ann_id {obj} of person {ann_id} "
                                        f"({ACTIONS[a]}) is not a valid annotation of image {img} in {coco_json}")
                    rb[[c for c, (ca, ck, _) in enumerate(cols) if ca == a and ck == k][0]] = valid[obj]
            actions.append(act)
            role_boxes.append(rb)
        starts.append(len(boxes))
    np_ = len(boxes)
    return VCOCOGroundTruth(ids, np.asarray(starts, np.int64), np.asarray(boxes, np.float32).reshape(np_, 4),
                            np.asarray(actions, np.int8).reshape(np_, len(ACTIONS)),
                            np.asarray(role_boxes, np.float32).reshape(np_, len(cols), 4), roles)


def voc_ap_official(tp: np.ndarray, fp: np.ndarray, npos: float) -> float:
    """VOC all-point AP from tp/fp in ranked order, with vsrl_eval.py's float32 recall/precision."""
    a_tp = np.cumsum(tp.astype(np.float32))
    a_fp = np.cumsum(fp.astype(np.float32))
    rec = a_tp / float(npos)
    prec = a_tp / np.maximum(a_tp + a_fp, np.float32(np.finfo(np.float64).eps))
    return float(np.float32(voc_ap_all_point(rec, prec)))  # role_ap / agent_ap arrays are float32


def argsort_desc_per_segment(values: np.ndarray, seg_start: np.ndarray, seg_len: np.ndarray) -> np.ndarray:
    """``np.argsort(values[s:s + n])[::-1] + s`` for every segment, written into its own range.

    Segments of equal length are sorted together as the rows of one 2-D array: ``np.argsort``
    along the last axis runs the same 1-D kernel on every row, so the order of equal values is
    exactly that of one call per segment (numpy's default sort is not stable; vsrl_eval.py's tie
    order depends on it). Cost: one vectorised call per distinct segment length.

    Args:
        values: ``[N]`` sort keys (float32 scores).
        seg_start: int64 ``[S]`` first index of each segment; segments are disjoint ranges.
        seg_len: int64 ``[S]`` segment lengths.

    Returns:
        int64 ``[N]``: at the positions of each segment, the indices of that segment in
        descending order (reversed default argsort); positions outside every segment are -1.
    """
    out = np.full(len(values), -1, np.int64)
    by_len = np.argsort(seg_len, kind="stable")
    lens = seg_len[by_len]
    for grp in np.split(by_len, np.flatnonzero(lens[1:] != lens[:-1]) + 1):
        n = int(seg_len[grp[0]]) if len(grp) else 0
        if n == 0:
            continue
        first = seg_start[grp][:, None]
        rows = first + np.arange(n)
        out[rows] = first + np.argsort(values[rows], axis=1)[:, ::-1]
    return out


class _Matcher:
    """Per-detection person assignment, shared by every action(-role) column.

    Detections are grouped by image (split order) and kept in file order inside an image, the
    order in which vsrl_eval.py collects an image's records; "grouped index" below means a row
    of that order (``det`` maps it back to the record row).
    """

    def __init__(self, gt: VCOCOGroundTruth, dets: VCOCODetections):
        # image id -> split position (the last one for a repeated id, as a dict would keep)
        sorter = np.argsort(gt.image_ids, kind="stable")
        sorted_ids = gt.image_ids[sorter]
        img = np.full(len(dets), -1, np.int64)
        if len(sorted_ids) and len(dets):
            at = np.searchsorted(sorted_ids, dets.image_id, side="right") - 1
            found = (at >= 0) & (sorted_ids[np.maximum(at, 0)] == dets.image_id)
            img[found] = sorter[at[found]]
        npers = np.diff(gt.person_start)
        ok = img >= 0
        ok[ok] = npers[img[ok]] > 0
        # detections grouped by image (official image order), file order inside an image
        self.det = np.flatnonzero(ok)[np.argsort(img[ok], kind="stable")]
        self.img = img[self.det]
        self.n_images = len(gt.image_ids)
        counts = npers[self.img]
        seg = np.concatenate(([0], np.cumsum(counts)))
        det_rep = np.repeat(np.arange(len(self.det)), counts)
        person = gt.person_start[self.img][det_rep] + (np.arange(seg[-1]) - seg[:-1][det_rep])
        iou = box_iou_plus1_rows(gt.person_boxes[person], dets.person_box[self.det][det_rep])
        if len(self.det):
            ovmax = np.maximum.reduceat(iou, seg[:-1])  # NaN propagates, like ndarray.max
            hit = (iou == ovmax[det_rep]) | (np.isnan(iou) & np.isnan(ovmax[det_rep]))
            local = np.where(hit, np.arange(seg[-1]) - seg[:-1][det_rep], np.iinfo(np.int64).max)
            jloc = np.minimum.reduceat(local, seg[:-1])  # first maximum (np.argmax)
        else:
            ovmax, jloc = np.zeros(0, np.float32), np.zeros(0, np.int64)
        self.person = gt.person_start[self.img] + jloc  # global person row
        self.person_ok = ovmax >= IOU_THRESHOLD
        self.ignored = gt.person_actions[self.person, 0] == -1 if len(self.det) else np.zeros(0, bool)
        self.gt = gt

    def ranking(self, scores: np.ndarray):
        """Official order of one column: ``scores [n]`` float32 per grouped detection.

        Returns ``(seq, rank)``: ``seq`` = detections in vsrl_eval.py's append order (images in
        split order, per image ``np.argsort(scores)[::-1]`` over its non-NaN scores,
        unannotated-person hits dropped) and ``rank`` = ``np.argsort(scores[seq])[::-1]`` (the
        final ranking, same tie order).
        """
        valid = np.flatnonzero(~np.isnan(scores))
        s = scores[valid]
        count = np.bincount(self.img[valid], minlength=self.n_images)  # img is non-decreasing
        start = np.concatenate(([0], np.cumsum(count)[:-1]))
        seq = valid[argsort_desc_per_segment(s, start, count)]
        seq = seq[~self.ignored[seq]]  # detections on unannotated persons: neither TP nor FP
        return seq, np.argsort(scores[seq])[::-1]  # vsrl_eval.py: a_sc.argsort()[::-1]

    def ap(self, seq: np.ndarray, rank: np.ndarray, matches: np.ndarray, npos: float) -> float:
        """AP of one column from :meth:`ranking` and ``matches`` (grouped indices whose action
        label is 1 and whose IoUs are >= 0.5, i.e. TP unless the person is already covered)."""
        if npos == 0:
            return float("nan")
        if len(seq) == 0:
            return 0.0  # the official script crashes here
        is_match = np.zeros(len(self.ignored), bool)
        is_match[matches] = True
        pos = np.flatnonzero(is_match[seq])  # candidates, positions in append order
        # the first candidate (in append order) of each person is TP (covered), later ones FP
        _, first = np.unique(self.person[seq[pos]], return_index=True)
        tp = np.zeros(len(seq), bool)
        tp[pos[first]] = True
        tp_ranked = tp[rank]
        return voc_ap_official(tp_ranked, ~tp_ranked, npos)


def evaluate(gt: VCOCOGroundTruth, dets: VCOCODetections) -> Dict:
    """Official V-COCO evaluation.

    Args:
        gt: ground truth from :func:`load_ground_truth`.
        dets: detections (records as columns, :class:`VCOCODetections`).

    Returns:
        dict with fractions in [0, 1]: ``agent_ap`` {action: AP}, ``mean_agent_ap`` (sum / 26),
        ``scenario_1`` / ``scenario_2``: {``role_ap`` {"action-role": AP}, ``mean_role_ap`` (25 roles),
        ``mean_role_ap_no_point`` (24 roles)}, and ``npos`` {action: count}.
    """
    m = _Matcher(gt, dets)
    npos = gt.npos
    acts = gt.person_actions[m.person] if len(m.det) else np.zeros((0, len(ACTIONS)), np.int8)
    # grouped detections with the action's label 1 on a person with IoU >= 0.5, per action
    positive = [np.flatnonzero((acts[:, a] == 1) & m.person_ok) for a in range(len(ACTIONS))]
    out: Dict = {"npos": {a: int(npos[i]) for i, a in enumerate(ACTIONS)}, "agent_ap": {}}
    for a, name in enumerate(ACTIONS):
        seq, rank = m.ranking(dets.agent_scores[m.det, a])
        out["agent_ap"][name] = m.ap(seq, rank, positive[a], float(npos[a]))
    ap = np.array(list(out["agent_ap"].values()), np.float32)
    out["mean_agent_ap"] = float(np.nansum(ap) / len(ACTIONS))
    cols = action_role_columns(gt.roles)
    role_ap = {1: {}, 2: {}}
    for c, (a, _, name) in enumerate(cols):
        # role boxes only for the positives: every other detection is FP whatever its role box
        cand = positive[a]
        pred, gtb = dets.role_boxes[m.det[cand], c], gt.role_boxes[m.person[cand], c]
        missing = np.all(gtb == -1, axis=1)
        role_ok = box_iou_plus1_rows(gtb, pred) >= IOU_THRESHOLD
        seq, rank = m.ranking(dets.role_scores[m.det, c])
        # missing role: Scenario 1 correct only when no role box is predicted; Scenario 2 always
        empty = np.all(pred == 0, axis=1) | np.all(np.isnan(pred), axis=1)
        role_ap[1][name] = m.ap(seq, rank, cand[np.where(missing, empty, role_ok)], float(npos[a]))
        role_ap[2][name] = m.ap(seq, rank, cand[missing | role_ok], float(npos[a]))
    for scenario in (1, 2):
        # official layout: float32 [26, 2] with NaN where an action has no such role
        table = np.full((len(ACTIONS), 2), np.nan, np.float32)
        for (a, k, name) in cols:
            table[a, k] = role_ap[scenario][name]
        with warnings.catch_warnings():  # all-NaN (tiny subsets) -> NaN, no warning
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = float(np.nanmean(table))
            table[ACTIONS.index("point"), 0] = np.nan
            out[f"scenario_{scenario}"] = {"role_ap": role_ap[scenario], "mean_role_ap": mean,
                                           "mean_role_ap_no_point": float(np.nanmean(table))}
    return out


def format_table(res: Dict) -> str:
    """Per-role and summary table (percent, two decimals)."""
    lines = [f"{'action-role':>24}  {'S1 AP':>7}  {'S2 AP':>7}  #pos"]
    for name, v in res["scenario_1"]["role_ap"].items():
        lines.append(f"{name:>24}  {100 * v:7.2f}  {100 * res['scenario_2']['role_ap'][name]:7.2f}  "
                     f"{res['npos'][name.split('-')[0]]}")
    lines.append("")
    for s in (1, 2):
        r = res[f"scenario_{s}"]
        lines.append(f"Role mAP Scenario {s}: {100 * r['mean_role_ap']:.2f} (25 roles incl. point-instr)  "
                     f"{100 * r['mean_role_ap_no_point']:.2f} (24 roles, no point-instr)")
    lines.append(f"Agent mAP: {100 * res['mean_agent_ap']:.2f} (sum over 26 actions / 26)")
    return "\n".join(lines)


def _percent(x):
    if isinstance(x, dict):
        return {k: _percent(v) for k, v in x.items()}
    return 100.0 * x  # NaN -> null in write_json


def results_percent(res: Dict) -> Dict:
    """The results of :func:`evaluate` with every AP in percent (``npos`` counts unchanged): the
    layout ``hoikit eval vcoco --json`` writes."""
    return {k: (_percent(v) if k != "npos" else v) for k, v in res.items()}
