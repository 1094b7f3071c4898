"""Writing annotated videos (PyAV, the ``video`` extra): frames drawn by :func:`hoikit.viz.draw.draw_hoi`.

The file is encoded into a temporary file next to the target and moved into place only when complete,
so a failed run never leaves a truncated video or replaces an existing one half-way.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..extras import require

# H.264 plays everywhere; PyAV's wheels bundle libx264. MPEG-4 part 2 is the fallback of FFmpeg builds without it.
CODECS = ("libx264", "mpeg4")
PIX_FMT = "yuv420p"  # 4:2:0 chroma: width and height must be even
# annotation overlays on CPU: "veryfast" encodes several times faster than x264's default "medium" at the same
# constant quality (crf 23 = x264's default)
X264_OPTIONS = {"preset": "veryfast", "crf": "23"}


def even_size(image: Image.Image) -> Image.Image:
    """``image`` padded with black by at most one pixel right / bottom so both sides are even (yuv420p)."""
    w, h = image.size
    if w % 2 == 0 and h % 2 == 0:
        return image
    out = Image.new("RGB", (w + w % 2, h + h % 2))
    out.paste(image, (0, 0))
    return out


class VideoWriter:
    """Append RGB PIL frames of one fixed size to an ``.mp4`` file.

    Args:
        path: output file (replaced atomically on :meth:`close`).
        fps: frame rate of the written video (a Fraction keeps NTSC rates such as 30000/1001 exact).

    Use as a context manager; on an exception the temporary file is removed and ``path`` is untouched.
    """

    def __init__(self, path: os.PathLike, fps: Fraction):
        self.av = require("av", extra="video", purpose="writing videos")
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp{os.getpid()}{self.path.suffix}")
        self.fps = Fraction(fps).limit_denominator(100000) if fps else Fraction(25)
        self.container = None
        self.stream = None
        self.size: Optional[tuple] = None
        self.frames = 0

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open(self, size) -> None:
        av = self.av
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        for name in CODECS:
            try:
                self.stream = self.container.add_stream(name, rate=self.fps)
                break
            except (av.codec.codec.UnknownCodecError, ValueError):
                continue
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = PIX_FMT
        if self.stream.codec_context.name == "libx264":
            self.stream.options = dict(X264_OPTIONS)
        self.size = size

    def write(self, image: Image.Image) -> None:
        """Encode one frame; every frame must have the size of the first (after :func:`even_size`)."""
        image = even_size(image.convert("RGB"))
        if self.container is None:
            self._open(image.size)
        elif image.size != self.size:
            image = image.resize(self.size, Image.BILINEAR)
        frame = self.av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> Optional[Path]:
        """Flush the encoder and move the file into place; returns the path (None when no frame was written)."""
        if self.container is None:
            return None
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        self.container = None
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # the encoder may already be broken; the file is discarded anyway
                pass
            self.container = None
        if self.tmp.exists():
            self.tmp.unlink()
