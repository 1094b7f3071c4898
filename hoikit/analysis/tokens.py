"""Interaction information loss of DETR human tokens (RmLR Fig. 1 / Appendix E).

Controlled SynthHOI-style images are rendered with the SynthHOI figure code on one fixed background:

* group "same place": one person at the same spot in different poses (arms down, holding forward,
  arm raised, kicking, looking down, waving) with a ball at the same spot;
* group "same action": the same holding pose at different horizontal positions (ball moved along).

For each image the DETR human token is the last decoder output ``hs[-1]`` of the query whose box best
overlaps the rendered person. Pairwise cosine similarity and Euclidean distance are averaged within
each group. RmLR's claim: tokens of people at the same place doing different things are MORE similar
than tokens of people doing the same thing at different places (the token encodes location, not the
interaction). ``hoikit analyze tokens`` runs :func:`token_similarity` and :func:`plot_token_similarity`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.synth.canvas import background, disc, draw_prims, tight_box
from ..data.synth.figures import Person, Pose, stand_on_ground
from ..structures import box_iou

# pose name -> (arms [(shoulder, elbow)] x2, legs [(hip, knee)] x2, gaze pitch); angles as in synth/figures.py
POSES = {
    "arms down": ([(10, 10), (-10, 10)], [(3, 0), (-3, 0)], 0),
    "hold forward": ([(80, 0), (70, 10)], [(3, 0), (-3, 0)], 20),
    "raise arm": ([(170, 0), (-10, 10)], [(3, 0), (-3, 0)], -20),
    "kick": ([(30, 20), (-30, 20)], [(70, 0), (-5, 0)], 30),
    "look down": ([(10, 10), (-10, 10)], [(3, 0), (-3, 0)], 45),
    "wave": ([(150, 40), (-10, 10)], [(3, 0), (-3, 0)], 0),
}
POSITIONS = (0.2, 0.32, 0.44, 0.56, 0.68, 0.8)  # person hip x as a fraction of the width (same-action group)
SAME_PLACE_X = 0.44
# group name -> the (pose, hip x fraction) of its images
GROUPS = {"same place, different actions": [(p, SAME_PLACE_X) for p in POSES],
          "different places, same action": [("hold forward", x) for x in POSITIONS]}


def render(pose_name: str, x_frac: float, size: int) -> Tuple[Image.Image, np.ndarray]:
    """One controlled image (``size`` wide, ``0.75 size`` high) and its person box ``[4]`` (original pixels)."""
    w, h = size, int(size * 0.75)
    image = background(np.random.default_rng(0), w, h, horizon=0.45 * h)  # same background everywhere
    arms, legs, pitch = POSES[pose_name]
    person = Person(hip=np.array([0.0, 0.0]), height=0.7 * h,
                    pose=Pose(facing=1, arms=[tuple(map(float, a)) for a in arms],
                              legs=[tuple(map(float, l)) for l in legs], gaze_pitch=float(pitch)))
    stand_on_ground(person, x_frac * w, 0.95 * h)
    prims = person.prims()
    ball = disc((x_frac * w + 0.22 * person.height, 0.95 * h - 0.06 * person.height), 0.05 * person.height,
                (220, 40, 40))
    draw = ImageDraw.Draw(image)
    draw_prims(draw, prims)
    draw_prims(draw, [ball])
    return image, np.asarray(tight_box(prims, w, h), np.float32)


MATCHES = ("score", "iou")


def human_token(predictor, image, person_box: np.ndarray, match: str = "score") -> Tuple[np.ndarray, float]:
    """The last decoder output ``hs[-1]`` of one query for the rendered person: ``([D], IoU of its box)``.

    Every query has one detection (the detector's ``per_query_detections``: DETR's best
    softmax class, Deformable DETR's best sigmoid class), in query order, which is what the two-stage HOI
    heads read. ``match="score"``: the highest-scoring query labelled person whose box has IoU >= 0.5 with
    ``person_box`` (the human detection UPT / RmLR would keep after NMS); ``"iou"``: the query whose box
    overlaps ``person_box`` best, whatever its label and score. When no person query reaches IoU 0.5,
    ``"score"`` falls back to ``"iou"``. (A detector with duplicate queries, e.g. Deformable DETR, has
    several person queries on one person; they need not share a token.)
    """
    if match not in MATCHES:
        raise ValueError(f"match: {match!r} is not one of {MATCHES}")
    tensor, _ = predictor.preprocess(image)
    detr = predictor.model.detr
    with torch.no_grad():
        out = detr([tensor.to(predictor.device)])
    size = torch.tensor([[image.width, image.height]], dtype=torch.float32)
    det = detr.per_query_detections({k: out[k].float().cpu() for k in ("pred_logits", "pred_boxes")}, size)[0]
    iou = box_iou(person_box[None], det["boxes"].numpy())[0]
    q = int(np.argmax(iou))
    if match == "score":
        person = (det["labels"].numpy() == predictor.meta_hoi.person_label) & (iou >= 0.5)
        if person.any():
            q = int(np.flatnonzero(person)[np.argmax(det["scores"].numpy()[person])])
    return out["hs"][-1, 0, q].float().cpu().numpy(), float(iou[q])


def pair_stats(tokens: Sequence[np.ndarray]) -> Dict:
    """Cosine similarity and Euclidean distance over all pairs ``i < j`` of ``tokens`` (each ``[D]``):
    means, standard deviations, the pair count and the per-pair values (row-major order)."""
    t = np.stack(tokens)
    n = len(t)
    unit = t / np.linalg.norm(t, axis=1, keepdims=True)
    iu = np.triu_indices(n, 1)
    cos = (unit @ unit.T)[iu]
    dist = np.linalg.norm(t[:, None] - t[None], axis=-1)[iu]
    return {"cosine_mean": float(cos.mean()), "cosine_std": float(cos.std()), "distance_mean": float(dist.mean()),
            "distance_std": float(dist.std()), "pairs": int(len(cos)), "cosine": cos.tolist(), "distance": dist.tolist()}


def image_name(pose: str, x: float) -> str:
    """File name of one rendered image in ``token_similarity``'s ``image_dir``."""
    return f"{pose.replace(' ', '_')}_{int(100 * x)}.png"


def image_names() -> List[str]:
    """Every file name :func:`token_similarity` writes into its ``image_dir``."""
    return sorted({image_name(pose, x) for items in GROUPS.values() for pose, x in items})


def token_similarity(predictor, size: int, image_dir: Optional[Path] = None, match: str = "score") -> Dict[str, Dict]:
    """Render every group's images, take each image's human token, and return per group
    :func:`pair_stats` plus ``matched_iou_mean`` and the image descriptions. With ``image_dir`` the
    rendered images are saved there as ``<pose>_<100 x>.png``. ``match``: which query is the person's
    (:func:`human_token`)."""
    result = {}
    for group, items in GROUPS.items():
        tokens, ious = [], []
        for pose, x in items:
            image, box = render(pose, x, size)
            if image_dir is not None:
                image.save(Path(image_dir) / image_name(pose, x))
            tok, iou = human_token(predictor, image, box, match)
            tokens.append(tok)
            ious.append(iou)
        result[group] = {**pair_stats(tokens), "matched_iou_mean": sum(ious) / len(ious),
                         "images": [f"{p} @ x={x:.2f}" for p, x in items]}
    return result


def plot_token_similarity(result: Dict[str, Dict], path) -> None:
    """Box plots of the pairwise cosine similarities and distances of each group, saved to ``path``."""
    import matplotlib  # plotting only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    names: List[str] = list(result)
    for ax, key, title in ((axes[0], "cosine", "cosine similarity"), (axes[1], "distance", "Euclidean distance")):
        ax.boxplot([result[n][key] for n in names])
        ax.set_xticks([1, 2], [n.replace(", ", ",\n") for n in names], fontsize=8)
        ax.set_title(f"human tokens: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
