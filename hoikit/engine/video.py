"""Video inference: ``hoikit predict clip.mp4 --checkpoint CKPT --out DIR``.

Frames are decoded with PyAV (the ``video`` extra), every ``every``-th frame is predicted in batches of
``batch_size`` by a :class:`~hoikit.engine.inference.Predictor`, and three files are written::

    DIR/<stem>_annotated.mp4   boxes, human-object links and "person ride bicycle 0.87" captions per frame
                               (frame rate = source rate / every, so the clip keeps its duration)
    DIR/<stem>_frames.jsonl    one JSON object per predicted frame: {"frame", "time", + Predictor.predict fields}
    DIR/<stem>_summary.json    the video (size, rate, frames), the settings, frames/s, and per triplet
                               (subject, verb, object) the frames it appears in, its best score, first/last time

A file that is not a decodable video gives one :class:`~hoikit.errors.DataError` line naming it. Outputs of an
earlier run are kept: the next run writes ``<stem>-2_*`` (:func:`output_paths`).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError
from ..extras import require
from ..viz.draw import draw_hoi
from ..viz.video import VideoWriter

OUTPUT_SUFFIXES = {"video": "_annotated.mp4", "frames": "_frames.jsonl", "summary": "_summary.json"}


@dataclass
class VideoInfo:
    """What the container says about its first video stream (``frames`` = 0 when it does not say)."""
    path: str
    width: int
    height: int
    fps: float
    frames: int
    codec: str


def _av():
    return require("av", extra="video", purpose="reading videos")


def _decode_error(path: Path, e: Exception, where: str = "") -> DataError:
    msg = getattr(e, "strerror", None) or (str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    return DataError(f"{path}: cannot decode video{where} ({msg})")


def open_video(path: os.PathLike):
    """Open ``path`` with PyAV; returns ``(container, stream, info)``; one-line DataError if it is no video."""
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: video not found")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise _decode_error(path, e) from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: has no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    info = VideoInfo(str(path), int(stream.width), int(stream.height), float(rate), int(stream.frames or 0),
                     stream.codec_context.name)
    return container, stream, info


def read_frames(path: os.PathLike, every: int = 1, max_frames: int = 0) -> Iterator[Tuple[int, float, np.ndarray]]:
    """``(frame index, time in s, [H, W, 3] uint8 RGB)`` for frames 0, every, 2*every, ... of ``path``.

    Args:
        every: keep one frame in ``every`` (all frames are decoded: inter-frame codecs need them).
        max_frames: stop after this many kept frames (0 = all).
    """
    av = _av()
    path = Path(path)
    container, stream, info = open_video(path)
    kept, index = 0, -1
    try:
        frames = container.decode(stream)
        while max_frames <= 0 or kept < max_frames:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except (av.error.FFmpegError, ValueError) as e:
                raise _decode_error(path, e, f" after frame {index}") from None
            index += 1
            if index % every:
                continue
            t = float(frame.time) if frame.time is not None else index / info.fps
            kept += 1
            yield index, t, frame.to_ndarray(format="rgb24")
    finally:
        container.close()
    if kept == 0:
        raise DataError(f"{path}: no frame could be decoded")


def output_paths(video: os.PathLike, out_dir: os.PathLike) -> Dict[str, Path]:
    """The three output files of ``video`` in ``out_dir`` (see module docstring).

    Earlier outputs are never replaced: when one of ``<stem>_annotated.mp4`` / ``_frames.jsonl`` /
    ``_summary.json`` exists, the stem becomes ``<stem>-2``, ``<stem>-3``, ... (the first free one for all three).
    """
    video, out_dir = Path(video), Path(out_dir)
    n = 1
    while True:
        stem = video.stem if n == 1 else f"{video.stem}-{n}"
        paths = {k: out_dir / f"{stem}{s}" for k, s in OUTPUT_SUFFIXES.items()}
        if not any(p.exists() for p in paths.values()):
            return paths
        n += 1


class TripletTally:
    """Per (subject, verb, object): frames it appears in, best score, first and last time."""

    def __init__(self):
        self.rows: Dict[Tuple[str, str, str], Dict] = {}
        self.detections: Dict[str, int] = {}

    def add(self, t: float, result: Dict) -> None:
        seen = set()
        for tr in result.get("triplets", []):
            key = (tr["subject"], tr["verb"], tr["object"])
            row = self.rows.setdefault(key, {"subject": key[0], "verb": key[1], "object": key[2], "frames": 0,
                                             "max_score": 0.0, "first_time": t, "last_time": t})
            row["max_score"] = max(row["max_score"], tr["score"])
            row["last_time"] = t
            if key not in seen:
                row["frames"] += 1
                seen.add(key)
        for label in {d["label"] for d in result.get("detections", [])}:
            self.detections[label] = self.detections.get(label, 0) + 1

    def summary(self) -> Dict:
        rows = sorted(self.rows.values(), key=lambda r: (-r["frames"], -r["max_score"]))
        rows = [{**r, "first_time": round(r["first_time"], 3), "last_time": round(r["last_time"], 3)} for r in rows]
        return {"triplets": rows, "detections": dict(sorted(self.detections.items(), key=lambda kv: -kv[1]))}


def _batches(frames: Iterator, size: int) -> Iterator[List]:
    batch: List = []
    for item in frames:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_video(predictor, video: os.PathLike, out_dir: os.PathLike, *, threshold: float = 0.2, every: int = 1,
                  max_frames: int = 0, batch_size: int = 8, max_triplets: int = 8,
                  min_confidence: Optional[float] = None, progress: Optional[Callable[[int, int], None]] = None) -> Dict:
    """Predict every ``every``-th frame of ``video`` and write the annotated video, per-frame JSON and summary.

    Args:
        predictor: a :class:`~hoikit.engine.inference.Predictor`.
        every: predict one frame in ``every``. max_frames: stop after this many predicted frames (0 = all).
        batch_size: frames per forward pass. max_triplets: triplets drawn per frame.
        min_confidence: RmLR / UPT triplets kept by confidence (:meth:`Predictor.predict`); None: by score.
        progress: ``progress(frames_done, frames_expected)`` after each batch (``frames_expected`` = 0 if unknown).

    Returns:
        the summary dict (also written to ``<stem>_summary.json``).
    """
    if every < 1 or batch_size < 1 or max_frames < 0:
        raise ConfigError(f"--every {every}, --batch-size {batch_size}, --max-frames {max_frames}: "
                          "every and batch size must be >= 1, max frames >= 0")
    video, out_dir = Path(video), Path(out_dir)
    container, stream, info = open_video(video)   # fail fast, before creating any output
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    container.close()
    expected = -(-info.frames // every) if info.frames else 0
    expected = min(expected, max_frames) if max_frames and expected else (max_frames or expected)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(video, out_dir)
    tmp_jsonl = paths["frames"].with_name(f".{paths['frames'].name}.tmp{os.getpid()}")
    tally, done, start = TripletTally(), 0, time.perf_counter()
    if progress is not None:
        progress(0, expected)
    try:
        with VideoWriter(paths["video"], Fraction(rate) / every) as writer, open(tmp_jsonl, "w") as jsonl:
            for batch in _batches(read_frames(video, every, max_frames), batch_size):
                results = predictor.predict_batch([f for _, _, f in batch], threshold, max_triplets=100,
                                                  min_confidence=min_confidence)
                for (index, t, frame), result in zip(batch, results):
                    result = {"frame": index, "time": round(t, 4), **result}
                    result.pop("image", None)
                    jsonl.write(json.dumps(result) + "\n")
                    tally.add(t, result)
                    writer.write(draw_hoi(Image.fromarray(frame), result, max_triplets))
                done += len(batch)
                if progress is not None:
                    progress(done, expected)
        os.replace(tmp_jsonl, paths["frames"])
    finally:
        if tmp_jsonl.exists():
            tmp_jsonl.unlink()
    seconds = time.perf_counter() - start
    summary = {"video": asdict(info), "arch": predictor.arch, "threshold": threshold,
               "min_confidence": min_confidence, "every": every,
               "max_frames": max_frames, "batch_size": batch_size, "frames_predicted": done,
               "seconds": round(seconds, 3), "frames_per_second": round(done / max(seconds, 1e-9), 3),
               "outputs": {k: str(p) for k, p in paths.items()}, **tally.summary()}
    paths["summary"].write_text(json.dumps(summary, indent=1))
    return summary

