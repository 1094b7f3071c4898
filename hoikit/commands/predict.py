"""``hoikit predict IMAGE_OR_DIR_OR_VIDEO (--checkpoint CKPT | --onnx DIR) [--threshold 0.2] [--min-confidence 0.1] [--out DIR]``.

Which triplets are kept: RmLR / UPT triplets by their ``confidence`` (>= ``--min-confidence``, default 0.1,
the demo's: the ranking score ``sigmoid x (s_h s_o)^2.8`` is far below any fixed threshold with a
focal-loss detector's box scores; ``--min-confidence -1`` keeps them by score instead); SG2HOI+ triplets
and relations, and every model's detections, by score (>= ``--threshold``).

``--onnx DIR`` runs a model exported by ``hoikit export --format onnx`` with onnxruntime
(DETR, Deformable DETR, UPT, RmLR; the extra ``pip install 'hoikit[onnx]'``); the JSON is the same.

Writes ``DIR/<name>.json`` (named triplets, boxes, scores; SG2HOI+: also the scene graph) and
``DIR/<name>.png`` (boxes, human-object links, captions); SG2HOI+ adds ``DIR/<name>_graph.png``.
A video file (needs the 'video' extra: pip install "hoikit[video]") gives ``DIR/<stem>_annotated.mp4``,
``DIR/<stem>_frames.jsonl`` (one JSON per predicted frame) and ``DIR/<stem>_summary.json``; frames are
predicted in batches (--batch-size), one in --every, at most --max-frames. A directory of frames always works.

Inputs are never written over: when ``--out`` is the input's own directory, the outputs go into its
``predictions/`` subfolder (and the command says so). Files already in ``--out`` are not replaced
either: the command refuses before predicting anything unless ``--overwrite`` is given (a video's
outputs take the first free ``<stem>-2``, ``<stem>-3``, ... instead). Two inputs with the same stem (``a.jpg``,
``a.png``) get distinct output names (``a_jpg``, ``a_png``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from ..errors import DataError
from . import refuse_existing
from ..viz.draw import triplet_text

DESCRIPTION = __doc__
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v"}
SAFE_SUBDIR = "predictions"             # where outputs go when --out is the input directory
OUTPUT_SUFFIXES = (".json", ".png", "_graph.png")   # what one input writes: NAME + suffix


def add_arguments(parser) -> None:
    parser.add_argument("input", help="an image, a directory of images (e.g. video frames) or a video file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="hoikit checkpoint (hoikit train / demo / convert)")
    source.add_argument("--onnx", metavar="DIR", help="directory written by 'hoikit export --format onnx' (onnxruntime)")
    parser.add_argument("--threshold", type=float, default=0.2,
                        help="minimum score of the detections, SG2HOI+ triplets and relations kept (default 0.2)")
    parser.add_argument("--min-confidence", type=float, default=0.1,
                        help="RmLR / UPT: minimum triplet confidence kept (default 0.1); a negative value "
                             "keeps their triplets by score (>= --threshold) instead")
    parser.add_argument("--out", default="predictions", help="output directory (default ./predictions)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--max-triplets", type=int, default=8, help="triplets drawn per picture")
    parser.add_argument("--every", type=int, default=1, help="video: predict one frame in N (default 1)")
    parser.add_argument("--max-frames", type=int, default=0, help="video: stop after N predicted frames (0 = all)")
    parser.add_argument("--batch-size", type=int, default=8, help="video: frames per forward pass (default 8)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the outputs of an earlier run in --out (default: refuse, nothing is written)")


def iter_inputs(path: Path):
    """(name, image path) for an image or a directory of images (video files go to :func:`run_video`)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise DataError(f"{path}: directory has no images ({', '.join(sorted(IMAGE_EXTS))})")
        return zip(output_names(files), files)
    if not path.exists():
        raise DataError(f"{path}: input not found")
    return iter([(path.stem, path)])


def output_names(files: List[Path]) -> List[str]:
    """One output name per input file, unique even on case-insensitive file systems.

    The stem (``a.jpg`` -> ``a``) when no other input shares it, else stem and extension
    (``a_jpg``, ``a_png``); a name whose outputs (:data:`OUTPUT_SUFFIXES`) would meet another's
    (``x`` writes ``x_graph.png``, as does ``x_graph``) gets ``_2``, ``_3``, ...
    """
    stems: Dict[str, int] = {}
    for f in files:
        stems[f.stem.casefold()] = stems.get(f.stem.casefold(), 0) + 1
    taken, names = set(), []
    for f in files:
        base = f.stem if stems[f.stem.casefold()] == 1 else f"{f.stem}_{f.suffix.lstrip('.')}"
        name, k = base, 1
        while any((name + s).casefold() in taken for s in OUTPUT_SUFFIXES):
            k += 1
            name = f"{base}_{k}"
        taken.update((name + s).casefold() for s in OUTPUT_SUFFIXES)
        names.append(name)
    return names


def output_dir(out: Path, input_path: Path) -> Path:
    """``out``, or ``out/predictions`` when ``out`` is the directory the inputs are in (so that no
    picture lands on an input image and a second run does not read the first run's pictures)."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: is a file, not a directory (nothing was written)")
    in_dir = input_path if input_path.is_dir() else input_path.parent
    if out.exists() and out.resolve() == in_dir.resolve():
        safe = out / SAFE_SUBDIR
        print(f"--out {out} is the input directory: writing into {safe} so that no input is overwritten")
        return safe
    return out


def run(args) -> int:
    from ..engine.inference import Predictor, to_pil
    from ..viz.draw import draw_hoi, draw_scene_graph

    if args.onnx:
        from ..deploy.onnx_runtime import OnnxPredictor

        predictor = OnnxPredictor(args.onnx)
    else:
        predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    if Path(args.input).suffix.lower() in VIDEO_EXTS and Path(args.input).is_file():
        return run_video(args, predictor)
    out = output_dir(Path(args.out), Path(args.input))
    inputs = list(iter_inputs(Path(args.input)))
    if not args.overwrite:
        refuse_existing([out / f"{n}{s}" for n, _ in inputs for s in OUTPUT_SUFFIXES], "--out")
    out.mkdir(parents=True, exist_ok=True)
    written = set()
    for name, image in inputs:
        pil = to_pil(image)
        result = predictor.predict(pil, threshold=args.threshold, min_confidence=_min_confidence(args))
        result["image"] = str(image) if isinstance(image, Path) else name
        paths = [out / f"{name}{suffix}" for suffix in OUTPUT_SUFFIXES]
        paths[0].write_text(json.dumps(result, indent=1))
        best = _best_below_threshold(predictor, pil, result)
        draw_hoi(pil, best or result, args.max_triplets).save(paths[1])
        if "scene_graph" in result:
            draw_scene_graph(pil, result).save(paths[2])
        written.update(paths[:3 if "scene_graph" in result else 2])
        print(f"{name}: {_summary(result, best, args)}")
    on_disk = [p for p in written if p.is_file()]   # what is there now, not what was attempted
    n_json = sum(p.suffix == ".json" for p in on_disk)
    print(f"wrote {n_json} JSON files and {len(on_disk) - n_json} pictures to {out}")
    return 0


def _min_confidence(args):
    """The ``min_confidence`` of :meth:`Predictor.predict`: None (keep by score) when negative."""
    return None if args.min_confidence < 0 else args.min_confidence


def _describe(t: dict) -> str:
    return triplet_text(t)


def _best_below_threshold(predictor, pil, result: dict, k: int = 3):
    """An HOI model's ``k`` best triplets when none was kept (None otherwise): the picture shows them,
    with their scores, rather than nothing."""
    if result["triplets"] or result.get("arch") == "detr" or not result["detections"]:
        return None
    best = predictor.predict(pil, threshold=0.0, max_triplets=k)
    return best if best["triplets"] else None


def _summary(result: dict, best, args) -> str:
    if result["triplets"]:
        return f"{len(result['triplets'])} triplets (top: {_describe(result['triplets'][0])})"
    if best:
        by_confidence = "confidence" in best["triplets"][0] and args.min_confidence >= 0
        kept_by, option = ((f"confidence >= {args.min_confidence:g}", "--min-confidence") if by_confidence
                           else (f">= {args.threshold:g}", "--threshold"))
        return (f"0 triplets {kept_by}; best {', '.join(_describe(t) for t in best['triplets'])} "
                f"(drawn; lower {option} to keep them in the JSON)")
    return f"0 triplets ({len(result['detections'])} detections)"


def run_video(args, predictor) -> int:
    """Annotated video + per-frame JSON + summary (hoikit.engine.video), with a progress bar."""
    from tqdm import tqdm

    from ..engine.video import predict_video

    bar = None

    def progress(done: int, expected: int) -> None:   # first called once the video opened
        nonlocal bar
        if bar is None:
            bar = tqdm(desc=Path(args.input).name, total=expected or None, unit="frame", dynamic_ncols=True)
        bar.update(done - bar.n)

    try:
        s = predict_video(predictor, args.input, args.out, threshold=args.threshold, every=args.every,
                          max_frames=args.max_frames, batch_size=args.batch_size, max_triplets=args.max_triplets,
                          min_confidence=_min_confidence(args), progress=progress)
    except BaseException:
        if bar is not None:
            bar.leave = False   # erase the bar: the error stays the only line
        raise
    finally:
        if bar is not None:
            bar.close()
    top = s["triplets"][0] if s["triplets"] else None
    desc = f"{top['subject']} {top['verb']} {top['object']} in {top['frames']} frames" if top else "no triplet"
    print(f"{s['frames_predicted']} frames in {s['seconds']:.1f} s ({s['frames_per_second']:.2f} frames/s); "
          f"most frequent: {desc}")
    for path in s["outputs"].values():
        print(f"wrote {path}")
    return 0
