"""Deliberately simple loop implementation of SGDet recall (Scene-Graph-Benchmark sgg_eval.py).

Written from specs/evaluation.md ("Scene graph generation"): per image, rank pairs, build triplets,
``pred_to_gt`` lists by looping over ground truths and predictions, recall@K from
``union(pred_to_gt[:K])``; mean recall collected per image then per predicate; zero-shot recall
over the listed triplets. Slow on purpose; used only to cross-check hoikit.eval.sgg.
"""
import numpy as np


def iou(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    one = np.float32(1)
    w = max(min(a[2], b[2]) - max(a[0], b[0]) + one, np.float32(0))
    h = max(min(a[3], b[3]) - max(a[1], b[1]) + one, np.float32(0))
    inter = np.float32(w * h)
    return np.float32(inter / ((a[2] - a[0] + one) * (a[3] - a[1] + one) + (b[2] - b[0] + one) * (b[3] - b[1] + one) - inter))


def pred_to_gt(gt, triplets):
    """triplets: list of (subject box, object box, subject label, predicate, object label)."""
    out = []
    for sb, ob, sl, p, ol in triplets:
        hits = []
        for g, (s, o, gp) in enumerate(gt.relations):
            if (gt.labels[s], gp, gt.labels[o]) == (sl, p, ol) and iou(gt.boxes[s], sb) >= 0.5 \
                    and iou(gt.boxes[o], ob) >= 0.5:
                hits.append(g)
        out.append(hits)
    return out


def evaluate(predictions, ground_truth, num_predicates, zeroshot=(), longtail=None):
    zs = {tuple(int(v) for v in t) for t in zeroshot}  # (subject, object, predicate), 0-based
    res = {}
    per = {m: {k: dict(rec=[], zs=[], cls=[[] for _ in range(num_predicates)]) for k in (20, 50, 100)}
           for m in ("", "ng-")}
    n = 0
    for index, pred in predictions:
        gt = ground_truth[index]
        if len(gt.relations) == 0 or len(pred.pairs) == 0:
            continue
        n += 1
        s = pred.scores
        ranked = []
        for r, (a, b) in enumerate(pred.pairs):
            row = list(pred.predicate_scores[r][1:])
            p = row.index(max(row))  # first maximum
            ranked.append((np.float32(np.float32(row[p] * s[a]) * s[b]), r, p))
        ranked.sort(key=lambda t: -t[0])  # Python's sort is stable
        gc = [(pred.boxes[pred.pairs[r][0]], pred.boxes[pred.pairs[r][1]], pred.labels[pred.pairs[r][0]], p,
               pred.labels[pred.pairs[r][1]]) for _, r, p in ranked]
        cand = []
        for _, r, _ in ranked:
            a, b = pred.pairs[r]
            for p in range(num_predicates):
                cand.append((np.float32(np.float32(s[a] * s[b]) * pred.predicate_scores[r][p + 1]), len(cand), a, b, p))
        cand.sort(key=lambda t: -t[0])
        ng = [(pred.boxes[a], pred.boxes[b], pred.labels[a], p, pred.labels[b]) for _, _, a, b, p in cand[:100]]
        zs_idx = [g for g, (a, b, p) in enumerate(gt.relations) if (gt.labels[a], gt.labels[b], p) in zs]
        for mode, trips in (("", gc), ("ng-", ng)):
            p2g = pred_to_gt(gt, trips)
            for k in (20, 50, 100):
                match = set()
                for hits in p2g[:k]:
                    match |= set(hits)
                d = per[mode][k]
                d["rec"].append(len(match) / len(gt.relations))
                if zs_idx:
                    d["zs"].append(len(match & set(zs_idx)) / len(zs_idx))
                for c in range(num_predicates):
                    count = sum(1 for rel in gt.relations if rel[2] == c)
                    if count:
                        d["cls"][c].append(sum(1 for g in match if gt.relations[g][2] == c) / count)
    res["images"] = n
    for mode in ("", "ng-"):
        for k in (20, 50, 100):
            d = per[mode][k]
            cls = [np.mean(v) if v else 0.0 for v in d["cls"]]
            res[f"{mode}R@{k}"] = np.mean(d["rec"]) if d["rec"] else float("nan")
            res[f"{mode}zR@{k}"] = np.mean(d["zs"]) if d["zs"] else float("nan")
            res[f"{mode}mR@{k}"] = sum(cls) / num_predicates
            for g, ids in (longtail or {}).items():
                res[f"{mode}mR@{k}_{g}"] = np.mean([cls[i] for i in ids])
    return res
