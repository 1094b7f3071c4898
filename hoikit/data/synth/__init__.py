"""SynthHOI: a procedural HOI / scene-graph dataset written in the real formats (docs/synthhoi.md)."""
from .generate import generate_synthhoi  # noqa: F401
from .scene import make_image  # noqa: F401
