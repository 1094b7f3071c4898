"""``hoikit predict IMAGE_OR_DIR_OR_VIDEO (--checkpoint CKPT | --onnx DIR) [--threshold 0.2] [--out DIR]``.

``--onnx DIR`` runs a model exported by ``hoikit export --format onnx`` with onnxruntime
(DETR, UPT, RmLR; the extra ``pip install 'hoikit[onnx]'``); the JSON is the same.

Writes ``DIR/<name>.json`` (named triplets, boxes, scores; SG2HOI+: also the scene graph) and
``DIR/<name>.png`` (boxes, human-object links, captions); SG2HOI+ adds ``DIR/<name>_graph.png``.
A video is read frame by frame when imageio or PyAV is installed; a directory of frames always works.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Tuple

DESCRIPTION = __doc__
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v"}


def add_arguments(parser) -> None:
    parser.add_argument("input", help="an image, a directory of images (e.g. video frames) or a video file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="hoikit checkpoint (hoikit train / demo / convert)")
    source.add_argument("--onnx", metavar="DIR", help="directory written by 'hoikit export --format onnx' (onnxruntime)")
    parser.add_argument("--threshold", type=float, default=0.2, help="minimum score kept (default 0.2)")
    parser.add_argument("--out", default="predictions", help="output directory (default ./predictions)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--max-triplets", type=int, default=8, help="triplets drawn per picture")


def video_frames(path: Path) -> Iterator[Tuple[str, "object"]]:
    """(name, RGB ndarray) per frame, via imageio or PyAV; HoikitError when neither is installed."""
    from ..errors import DataError

    try:
        import imageio.v3 as iio
        for i, frame in enumerate(iio.imiter(path)):
            yield f"{path.stem}_{i:06d}", frame
        return
    except ImportError:
        pass
    try:
        import av
    except ImportError:
        raise DataError(f"{path}: reading videos needs imageio (pip install imageio[ffmpeg]) or av; "
                        "or extract the frames into a directory and pass that") from None
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            yield f"{path.stem}_{i:06d}", frame.to_ndarray(format="rgb24")


def iter_inputs(path: Path):
    """(name, image path or array) for an image, a directory of images or a video."""
    from ..errors import DataError

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise DataError(f"{path}: directory has no images ({', '.join(sorted(IMAGE_EXTS))})")
        return ((p.stem, p) for p in files)
    if not path.exists():
        raise DataError(f"{path}: input not found")
    if path.suffix.lower() in VIDEO_EXTS:
        return video_frames(path)
    return iter([(path.stem, path)])


def run(args) -> int:
    from ..engine.inference import Predictor, to_pil
    from ..viz.draw import draw_hoi, draw_scene_graph

    if args.onnx:
        from ..deploy.onnx_runtime import OnnxPredictor

        predictor = OnnxPredictor(args.onnx)
    else:
        predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for name, image in iter_inputs(Path(args.input)):
        pil = to_pil(image)
        result = predictor.predict(pil, threshold=args.threshold)
        result["image"] = str(image) if isinstance(image, Path) else name
        (out / f"{name}.json").write_text(json.dumps(result, indent=1))
        draw_hoi(pil, result, args.max_triplets).save(out / f"{name}.png")
        if "scene_graph" in result:
            draw_scene_graph(pil, result).save(out / f"{name}_graph.png")
        top = result["triplets"][0] if result["triplets"] else None
        desc = f"{top['subject']} {top['verb']} {top['object']} {top['score']:.2f}" if top else (
            f"{len(result['detections'])} detections")
        print(f"{name}: {len(result['triplets'])} triplets (top: {desc})")
        n += 1
    print(f"wrote {n} JSON files and pictures to {out}")
    return 0
