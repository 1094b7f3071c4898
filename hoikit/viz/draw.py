"""Pictures of predictions (PIL only): boxes, human-object links with captions such as
"person ride bicycle 0.87", and scene-graph overlays with labelled arrows.

Small images are upscaled first (long side at least ``MIN_LONG_SIDE``) so text stays readable;
boxes are given in original-image pixels and scaled with the picture.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFont

MIN_LONG_SIDE = 640          # pictures are drawn at least this large
FONT_FRACTION = 1 / 32       # font size relative to the long side
MIN_FONT = 14
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128)]
HUMAN_COLOR = (0, 130, 200)
OBJECT_COLOR = (245, 130, 48)



def score_text(score: float) -> str:
    """Two decimals, or two significant digits below 0.01 (UPT / RmLR triplet scores carry the detector
    prior s_h^2.8 x s_o^2.8 and can be small): ``0.90``, ``0.04``, ``0.0042``."""
    return f"{score:.2f}" if score >= 0.01 else f"{score:.2g}"

def _canvas(image: Image.Image) -> Tuple[Image.Image, float]:
    image = image.convert("RGB")
    scale = max(1.0, MIN_LONG_SIDE / max(image.size))
    if scale > 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    else:
        image = image.copy()
    return image, scale


def font_for(image: Image.Image) -> ImageFont.ImageFont:
    """PIL's default (scalable) font at a size readable on this picture."""
    size = max(MIN_FONT, int(max(image.size) * FONT_FRACTION))
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def _scaled(box: Sequence[float], s: float) -> List[float]:
    return [float(v) * s for v in box]


def _centre(box: Sequence[float]) -> Tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def caption(draw: ImageDraw.ImageDraw, xy: Tuple[float, float], text: str, color, font) -> None:
    """Text on a filled box of ``color`` (white text), kept inside the picture."""
    w, h = draw.im.size
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    tw, th = x1 - x0 + 6, y1 - y0 + 6
    x = min(max(0, xy[0]), max(0, w - tw))
    y = min(max(0, xy[1]), max(0, h - th))
    draw.rectangle([x, y, x + tw, y + th], fill=color)
    draw.text((x + 3 - x0, y + 3 - y0), text, fill=(255, 255, 255), font=font)


def triplet_text(t: Dict) -> str:
    """``subject verb object score``; for RmLR / UPT triplets ``subject verb object 0.17 (s=0.0067)``: the
    confidence (``hoikit.engine.inference.triplet_confidence``), then the ranking score."""
    text = f"{t['subject']} {t['verb']} {t['object']}"
    if "confidence" in t:
        return f"{text} {score_text(t['confidence'])} (s={score_text(t['score'])})"
    return f"{text} {score_text(t['score'])}"


def draw_hoi(image: Image.Image, result: Dict, max_triplets: int = 8) -> Image.Image:
    """Boxes, human-object links and "subject verb object score" captions of ``result["triplets"]``
    (detections are drawn thin when there are no triplets)."""
    canvas, s = _canvas(image)
    draw = ImageDraw.Draw(canvas)
    font = font_for(canvas)
    lw = max(2, round(max(canvas.size) / 200))
    triplets = result.get("triplets", [])[:max_triplets]
    if not triplets:
        for det in result.get("detections", [])[:20]:
            b = _scaled(det["box"], s)
            draw.rectangle(b, outline=OBJECT_COLOR, width=max(1, lw // 2))
            caption(draw, (b[0], b[1]), f"{det['label']} {det['score']:.2f}", OBJECT_COLOR, font)
        return canvas
    for i, t in enumerate(triplets):
        color = PALETTE[i % len(PALETTE)]
        bh, bo = _scaled(t["subject_box"], s), _scaled(t["object_box"], s)
        draw.rectangle(bh, outline=HUMAN_COLOR, width=lw)
        draw.rectangle(bo, outline=OBJECT_COLOR, width=lw)
        ch, co = _centre(bh), _centre(bo)
        draw.line([ch, co], fill=color, width=lw)
        r = 2 * lw
        for c in (ch, co):
            draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=color)
    x0, y0, x1, y1 = draw.textbbox((0, 0), "Ag", font=font)
    line_h = y1 - y0 + 10
    for i, t in enumerate(triplets):  # captions last so lines never cover them; stacked top-left
        color = PALETTE[i % len(PALETTE)]
        caption(draw, (4, 4 + i * line_h), triplet_text(t), color, font)
    return canvas


def _arrow(draw, start, end, color, width) -> None:
    draw.line([start, end], fill=color, width=width)
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    size = 5 * width
    left = (end[0] - size * math.cos(angle - 0.4), end[1] - size * math.sin(angle - 0.4))
    right = (end[0] - size * math.cos(angle + 0.4), end[1] - size * math.sin(angle + 0.4))
    draw.polygon([end, left, right], fill=color)


def draw_scene_graph(image: Image.Image, result: Dict, max_relations: int = 10) -> Image.Image:
    """Entity boxes and labelled arrows subject -> object for ``result["scene_graph"]["relations"]``."""
    canvas, s = _canvas(image)
    draw = ImageDraw.Draw(canvas)
    font = font_for(canvas)
    lw = max(2, round(max(canvas.size) / 220))
    rels = result.get("scene_graph", {}).get("relations", [])[:max_relations]
    labelled = set()
    for i, r in enumerate(rels):
        color = PALETTE[i % len(PALETTE)]
        bs, bo = _scaled(r["subject_box"], s), _scaled(r["object_box"], s)
        for b, name in ((bs, r["subject"]), (bo, r["object"])):
            draw.rectangle(b, outline=(255, 255, 255), width=lw)
            if tuple(b) not in labelled:
                labelled.add(tuple(b))
                caption(draw, (b[0], b[1]), name, (60, 60, 60), font)
        _arrow(draw, _centre(bs), _centre(bo), color, lw)
    for i, r in enumerate(rels):
        color = PALETTE[i % len(PALETTE)]
        (x0, y0), (x1, y1) = _centre(_scaled(r["subject_box"], s)), _centre(_scaled(r["object_box"], s))
        caption(draw, ((x0 + x1) / 2, (y0 + y1) / 2), f"{r['predicate']} {r['score']:.2f}", color, font)
    return canvas
