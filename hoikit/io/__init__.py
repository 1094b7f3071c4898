"""File formats at the bottom of hoikit: :mod:`hoikit.io.checkpoint` (checkpoint files and model directories).
Modules here import only torch, safetensors, yaml, numpy and hoikit's bottom-layer modules (``errors``,
``paths``), never ``data``, ``models``, ``engine``, ``convert`` or ``commands``."""
