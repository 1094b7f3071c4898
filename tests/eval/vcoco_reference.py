"""Deliberately simple loop implementation of the official V-COCO evaluation.

Written straight from specs/evaluation.md ("V-COCO", the description of s-gupta/v-coco
vsrl_eval.py): per image, per action(-role), scan the image's records sorted by
``np.argsort(scores)[::-1]``, argmax over all persons, skip unannotated persons, covered flags,
float32 everywhere, VOC all-point AP. Slow on purpose; used only to cross-check
hoikit.eval.vcoco on small inputs. Reads the files itself (no code shared with hoikit).
"""
import json

import numpy as np


def load_gt(vcoco_json, coco_json, ids_file):
    vsrl = json.load(open(vcoco_json))
    coco = json.load(open(coco_json))
    ids = [int(float(x)) for x in open(ids_file).read().split()]
    actions = [d["action_name"] for d in vsrl]
    roles = [d["role_name"] for d in vsrl]
    person_cat = coco["categories"][0]["id"]
    imgs = {im["id"]: im for im in coco["images"]}
    db = []
    for img in ids:
        w, h = imgs[img]["width"], imgs[img]["height"]
        objs = []
        for ann in coco["annotations"]:
            if ann["image_id"] != img or ann.get("ignore", 0) == 1:
                continue
            x1, y1 = ann["bbox"][0], ann["bbox"][1]
            x2 = x1 + max(0.0, ann["bbox"][2] - 1.0)
            y2 = y1 + max(0.0, ann["bbox"][3] - 1.0)
            x1, x2 = [min(w - 1.0, max(0.0, v)) for v in (x1, x2)]
            y1, y2 = [min(h - 1.0, max(0.0, v)) for v in (y1, y2)]
            if ann["area"] > 0 and x2 > x1 and y2 > y1:
                objs.append((ann["id"], ann["category_id"], [x1, y1, x2, y2]))
        ann_ids = [o[0] for o in objs]
        persons = []
        for ann_id, cat, box in objs:
            if cat != person_cat:
                continue
            if ann_id not in vsrl[0]["ann_id"]:
                persons.append((np.array(box, np.float32), None, None))
                continue
            labels = [0] * len(actions)
            role_boxes = [[None, None] for _ in actions]
            for a, d in enumerate(vsrl):
                n = len(d["ann_id"])
                for row in range(n):
                    if d["ann_id"][row] == ann_id and d["label"][row] == 1:
                        labels[a] = 1
                        for j in range(1, len(d["role_name"])):
                            rid = d["role_object_id"][j * n + row]
                            if rid not in (0, -1):
                                role_boxes[a][j - 1] = np.array(objs[ann_ids.index(rid)][2], np.float32)
            persons.append((np.array(box, np.float32), labels, role_boxes))
        db.append((img, persons))
    return db, actions, roles


def iou(gt, det):
    """get_overlap of vsrl_eval.py for one pair, float32."""
    gt, det = np.asarray(gt, np.float32), np.asarray(det, np.float32)
    one, zero = np.float32(1), np.float32(0)
    iw = max(min(gt[2], det[2]) - max(gt[0], det[0]) + one, zero)
    ih = max(min(gt[3], det[3]) - max(gt[1], det[1]) + one, zero)
    inter = np.float32(iw * ih)
    uni = (det[2] - det[0] + one) * (det[3] - det[1] + one) + (gt[2] - gt[0] + one) * (gt[3] - gt[1] + one) - inter
    return np.float32(inter / uni)


def voc_ap(tp, fp, npos):
    tp = np.cumsum(np.array(tp, np.float32))
    fp = np.cumsum(np.array(fp, np.float32))
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.float32(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])))


def evaluate(db, actions, roles, records, scenario=1, role=True):
    """Returns {name: AP} for action-roles (role=True) or agents (role=False)."""
    names, tp, fp, sc, npos = [], {}, {}, {}, {}
    for a, act in enumerate(actions):
        npos[act] = sum(1 for _, ps in db for p in ps if p[1] is not None and p[1][a] == 1)
        slots = range(len(roles[a]) - 1) if role else [None]
        for r in slots:
            names.append((a, r))
            tp[(a, r)], fp[(a, r)], sc[(a, r)] = [], [], []
    for img, persons in db:
        recs = [d for d in records if d["image_id"] == img]
        for a, r in names:
            key = actions[a] + "_" + (roles[a][r + 1] if role else "agent")
            vals = [d.get(key, [np.nan] * 5 if role else np.nan) for d in recs]
            scores = np.array([v[4] if role else v for v in vals], np.float32)
            keep = [k for k in range(len(recs)) if not np.isnan(scores[k])]
            scores = scores[keep]
            covered = [False] * len(persons)
            for j in scores.argsort()[::-1]:
                d, v = recs[keep[j]], vals[keep[j]]
                ovs = [iou(p[0], d["person_box"]) for p in persons]
                jmax = int(np.argmax(ovs))
                if persons[jmax][1] is None:
                    continue
                ov_role = 1.0
                if role:
                    gt_role = persons[jmax][2][a][r]
                    pbox = np.array(v[:4], np.float32)
                    if gt_role is None:
                        if scenario == 1:
                            ov_role = 1.0 if (np.all(pbox == 0) or np.all(np.isnan(pbox))) else 0.0
                    else:
                        ov_role = iou(gt_role, pbox)
                sc[(a, r)].append(scores[j])
                if persons[jmax][1][a] == 1 and ovs[jmax] >= 0.5 and ov_role >= 0.5 and not covered[jmax]:
                    covered[jmax] = True
                    tp[(a, r)].append(1)
                    fp[(a, r)].append(0)
                else:
                    tp[(a, r)].append(0)
                    fp[(a, r)].append(1)
    out = {}
    for a, r in names:
        name = actions[a] + ("-" + roles[a][r + 1] if role else "")
        if npos[actions[a]] == 0:
            out[name] = float("nan")
            continue
        if not sc[(a, r)]:
            out[name] = 0.0
            continue
        idx = np.array(sc[(a, r)], np.float32).argsort()[::-1]
        out[name] = voc_ap(np.array(tp[(a, r)])[idx], np.array(fp[(a, r)])[idx], npos[actions[a]])
    return out
