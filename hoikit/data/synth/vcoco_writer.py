"""SynthHOI in the V-COCO formats.

* Training JSON in fredzzhang/vcoco layout (``instances_vcoco_{split}.json``): ``annotations`` per
  image (``boxes_h``, ``boxes_o`` xyxy continuous pixels, ``actions`` into ``classes``, ``objects``
  into ``objects``, ``file_name``), ``classes`` ("action role" names, agent-only actions dropped),
  ``objects`` (``background`` at 0, ``person`` = 1), ``images`` (image ids), ``action_to_object``.
* Official-style ground truth of s-gupta/v-coco: ``vcoco_{split}.json`` is a list with one dict per
  action (keys in the official order: image_id, ann_id, role_object_id, label, action_name,
  role_name, include); every list runs over all V-COCO-annotated persons of the split;
  ``role_object_id`` is stored flat, role-major (the official loader reshapes it to
  ``(len(role_name), N).T``), with the person's own ann id for the agent role and 0 = no object.
  ``instances_{split}.json`` is COCO format with ALL persons and objects, ``{split}.ids`` the image ids.
* Annotated persons: V-COCO labels only part of COCO's people. SynthHOI annotates a person when its box
  is at least ``MIN_PERSON_FRAC`` of the image height; smaller people stay in the COCO file only, so
  the evaluator's "unannotated person" path is exercised.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from .classes import HOI_ID, OBJ, OBJECTS, PERSON, VCOCO_ACTIONS, VCOCO_AGENT_ONLY, VCOCO_ROLE, VERB, VERBS
from .records import split_records, to_coco, write_json

MIN_PERSON_FRAC = 0.3
VCOCO_OBJECTS = ["background"] + OBJECTS          # person = 1
CLASSES = [f"{v} {VCOCO_ROLE[v]}" for v in VERBS]  # one role per verb
ACTION_TO_OBJECT = [sorted(1 + o for (o, vv) in HOI_ID if vv == VERB[v]) for v in VERBS]


def ann_id(record: Dict, entity: int) -> int:
    """COCO annotation id of entity ``entity`` of an image (unique over the dataset)."""
    return record["image_id"] * 100 + entity + 1


def annotated_persons(record: Dict) -> List[int]:
    out = []
    for i, (lab, b) in enumerate(zip(record["labels"], record["boxes"])):
        if lab == PERSON and (b[3] - b[1]) >= MIN_PERSON_FRAC * record["height"]:
            out.append(i)
    return out


def training_dict(records: List[Dict]) -> Dict:
    annotations = []
    for r in records:
        keep = set(annotated_persons(r))
        a = {"boxes_h": [], "boxes_o": [], "actions": [], "objects": [], "file_name": r["file_name"]}
        for h, o, v in r["hois"]:
            if h in keep:
                a["boxes_h"].append([float(x) for x in r["boxes"][h]])
                a["boxes_o"].append([float(x) for x in r["boxes"][o]])
                a["actions"].append(v)
                a["objects"].append(r["labels"][o] + 1)
        annotations.append(a)
    return {"annotations": annotations, "classes": CLASSES, "objects": VCOCO_OBJECTS,
            "images": [r["image_id"] for r in records], "action_to_object": ACTION_TO_OBJECT}


def official_gt(records: List[Dict]) -> List[Dict]:
    people = [(r, i) for r in records for i in annotated_persons(r)]
    out = []
    for action in VCOCO_ACTIONS:
        agent_only = action in VCOCO_AGENT_ONLY
        labels, roles = [], []
        for r, i in people:
            if agent_only:
                labels.append(int(action in r["agent_actions"][i]))
                continue
            objs = sorted(o for h, o, v in r["hois"] if h == i and v == VERB[action])
            labels.append(int(bool(objs)))
            roles.append(ann_id(r, objs[0]) if objs else 0)
        ids = [ann_id(r, i) for r, i in people]
        d = {"image_id": [r["image_id"] for r, _ in people], "ann_id": ids,
             "role_object_id": ids + ([] if agent_only else roles), "label": labels, "action_name": action,
             "role_name": ["agent"] if agent_only else ["agent", VCOCO_ROLE[action]],
             "include": [[]] if agent_only else
             [[], [OBJECTS[o] for (o, vv) in sorted(HOI_ID) if vv == VERB[action]]]}
        out.append(d)
    return out


def coco_instances(records: List[Dict]) -> Dict:
    images, annotations = [], []
    for r in records:
        images.append({"id": r["image_id"], "file_name": r["file_name"], "width": r["width"], "height": r["height"]})
        for i, (lab, b) in enumerate(zip(r["labels"], r["boxes"])):
            xywh = to_coco(b)
            annotations.append({"id": ann_id(r, i), "image_id": r["image_id"], "category_id": lab + 1, "bbox": xywh,
                                "area": xywh[2] * xywh[3], "iscrowd": 0, "ignore": 0})
    categories = [{"id": k + 1, "name": n, "supercategory": "person" if k == OBJ["person"] else "object"}
                  for k, n in enumerate(OBJECTS)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_vcoco(records: List[Dict], out: Path) -> Dict[str, Path]:
    """Write the training JSONs and the official-style ground truth for both splits into ``out``."""
    paths = {}
    for split in ("train", "test"):
        recs = split_records(records, split)
        paths[f"vcoco_train_json_{split}"] = write_json(out / f"instances_vcoco_{split}.json", training_dict(recs))
        paths[f"vcoco_gt_{split}"] = write_json(out / f"vcoco_{split}.json", official_gt(recs))
        paths[f"coco_{split}"] = write_json(out / f"instances_{split}.json", coco_instances(recs))
        ids = out / f"{split}.ids"
        ids.write_text("".join(f"{r['image_id']}\n" for r in recs))
        paths[f"vcoco_ids_{split}"] = ids
    return paths
