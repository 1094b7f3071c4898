"""A deliberately simple loop implementation of the official HICO-DET evaluation.

Written line by line from ``ywchao/ho-rcnn`` ``evaluation/eval_one.m`` and
``VOCevaldet_bboxpair.m`` as ``../shared/specs/evaluation.md`` describes them, with the
official 1-based ``+1`` pixel arithmetic (not the continuous form hoikit uses), Python's
stable ``sorted`` for MATLAB's stable ``sort`` and ``torch.linspace`` for MATLAB's
``0:0.1:1``. Independent of ``hoikit.eval``: tests and the benchmark compare against it.
Slow by design (pure Python, one detection and one ground-truth pair at a time).
"""
from __future__ import annotations

import torch

MIN_OVERLAP = 0.5
THRESHOLDS = torch.linspace(0, 1, 11, dtype=torch.float64).tolist()  # = MATLAB 0:0.1:1


def _overlap(bb, bbgt):
    """IoU with the official inclusive-pixel arithmetic (both boxes 1-based inclusive)."""
    iw = min(bb[2], bbgt[2]) - max(bb[0], bbgt[0]) + 1
    ih = min(bb[3], bbgt[3]) - max(bb[1], bbgt[1]) + 1
    if iw > 0 and ih > 0:
        ua = ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
              - iw * ih)
        return iw * ih / ua
    return 0.0


def _to_official(box):
    """Continuous (x1, y1, x2, y2) -> official 1-based inclusive: 0-based inclusive (x1, y1, x2-1, y2-1), +1."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 + 1, y1 + 1, x2, y2)


def voc_eval_class(dets, gt_of_image, npos):
    """VOCevaldet_bboxpair for one class.

    Args:
        dets: list of (image, bb_h, bb_o, conf) in image-by-image input order, boxes official.
        gt_of_image: {image: [(bb_h, bb_o), ...]} in file order.
        npos: number of ground-truth pairs of the class.

    Returns:
        (ap, final recall).
    """
    taken = {i: [False] * len(g) for i, g in gt_of_image.items()}
    order = sorted(range(len(dets)), key=lambda d: -dets[d][3])  # stable, like MATLAB sort(-conf)
    tp, fp = [], []
    for d in order:
        i, bb_1, bb_2, _ = dets[d]
        ov_max, j_max = float("-inf"), None
        for j, (bbgt_1, bbgt_2) in enumerate(gt_of_image.get(i, [])):
            min_ov = min(_overlap(bb_1, bbgt_1), _overlap(bb_2, bbgt_2))
            if min_ov > ov_max:
                ov_max, j_max = min_ov, j
        if ov_max >= MIN_OVERLAP and not taken[i][j_max]:
            tp.append(1)
            fp.append(0)
            taken[i][j_max] = True
        else:
            tp.append(0)
            fp.append(1)
    rec, prec, ctp, cfp = [], [], 0, 0
    for a, b in zip(tp, fp):
        ctp += a
        cfp += b
        rec.append(ctp / npos if npos else float("nan"))
        prec.append(ctp / (cfp + ctp))
    ap = 0.0
    for t in THRESHOLDS:
        ps = [p for r, p in zip(rec, prec) if r >= t]
        ap = ap + (max(ps) if ps else 0.0) / 11
    return ap, (rec[-1] if rec else 0.0)


def evaluate_reference(anno, image, hoi, score, box_h, box_o, classes=None, skip_empty=False):
    """Per-class AP (fractions) for Default and Known-Object.

    Args:
        anno: the parsed HICO-DET annotation dict.
        image, hoi, score, box_h, box_o: detections (sequences; boxes continuous pixels).
        classes: evaluate only these HOI classes (default: all).
        skip_empty: drop detections in ``anno["empty"]`` images.

    Returns:
        {"default": {hoi: ap}, "known_object": {hoi: ap}, "recall": {hoi: final recall}}.
    """
    num_classes = len(anno["correspondence"])
    hoi_object = {h: o for h, o, _ in anno["correspondence"]}
    classes = range(num_classes) if classes is None else classes
    empty = set(anno.get("empty", []))
    gt = {c: {} for c in classes}
    npos = {c: 0 for c in classes}
    images_with_object = {}
    for i, a in enumerate(anno["annotation"]):
        for h, o, bh, bo in zip(a["hoi"], a["object"], a["boxes_h"], a["boxes_o"]):
            images_with_object.setdefault(o, set()).add(i)
            if h in gt:
                gt[h].setdefault(i, []).append((tuple(bh), tuple(bo)))
                npos[h] += 1
    # eval_one.m: per class, the detections image by image in stored order
    per_class = {c: [] for c in classes}
    for n in sorted(range(len(image)), key=lambda n: int(image[n])):  # stable: input order within an image
        c = int(hoi[n])
        if c in per_class and not (skip_empty and int(image[n]) in empty):
            per_class[c].append((int(image[n]), _to_official(box_h[n]), _to_official(box_o[n]), float(score[n])))
    out = {"default": {}, "known_object": {}, "recall": {}}
    for c in classes:
        out["default"][c], out["recall"][c] = voc_eval_class(per_class[c], gt[c], npos[c])
        keep = images_with_object.get(hoi_object[c], set())
        dets_ko = [d for d in per_class[c] if d[0] in keep]
        out["known_object"][c] = voc_eval_class(dets_ko, gt[c], npos[c])[0]
    return out


def make_detections(anno, num, seed=0, true_fraction=0.5, jitter=0.15, score_decimals=3):
    """Synthetic detections over a HICO-DET file: jittered ground truth plus random false positives.

    Args:
        anno: parsed annotation dict.
        num: total number of detections.
        seed: numpy seed (fixed -> identical detections).
        true_fraction: share of detections that are jittered copies of ground-truth pairs
            (several copies of one pair give duplicates).
        jitter: std of the box-corner noise relative to the box size (some copies fall below 0.5).
        score_decimals: scores are rounded, so many ties occur (exercises the tie order).

    Returns:
        dict ``image`` int64, ``hoi`` int64, ``score`` float64 ``[num]``, ``box_h``, ``box_o``
        float32 ``[num, 4]`` (continuous pixels), in random order.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    img, hoi, bh, bo = [], [], [], []
    for i, a in enumerate(anno["annotation"]):
        img += [i] * len(a["hoi"])
        hoi += a["hoi"]
        bh += a["boxes_h"]
        bo += a["boxes_o"]
    img, hoi = np.asarray(img), np.asarray(hoi)
    shift = np.array([1.0, 1.0, 0.0, 0.0])
    bh, bo = np.asarray(bh) - shift, np.asarray(bo) - shift
    n_true = int(num * true_fraction)
    n_fp = num - n_true
    idx = rng.integers(0, len(img), n_true)

    def jittered(b):
        wh = np.concatenate([b[:, 2:] - b[:, :2]] * 2, axis=1)
        return b + rng.normal(0, jitter, b.shape) * wh

    # false positives: half in (image, class) cells that have ground truth, half anywhere
    size = np.asarray(anno["size"], dtype=np.float64)
    cell = rng.integers(0, len(img), n_fp)
    anywhere = rng.random(n_fp) < 0.5
    fp_img = np.where(anywhere, rng.integers(0, len(anno["filenames"]), n_fp), img[cell])
    fp_hoi = np.where(anywhere, rng.integers(0, len(anno["correspondence"]), n_fp), hoi[cell])

    def random_box(n):
        wh = size[fp_img][:n]
        x1y1 = rng.random((n, 2)) * wh * 0.7
        return np.concatenate([x1y1, x1y1 + (0.05 + rng.random((n, 2)) * 0.3) * wh], axis=1)

    out = dict(image=np.concatenate([img[idx], fp_img]), hoi=np.concatenate([hoi[idx], fp_hoi]),
               score=np.round(rng.random(num), score_decimals),
               box_h=np.concatenate([jittered(bh[idx]), random_box(n_fp)]).astype(np.float32),
               box_o=np.concatenate([jittered(bo[idx]), random_box(n_fp)]).astype(np.float32))
    perm = rng.permutation(num)
    return {k: v[perm] for k, v in out.items()}
