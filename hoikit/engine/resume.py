"""What ``--resume`` restores and what it lets a command line change.

A resumed run continues with the configuration stored in its ``last.pt`` (the config the run used,
with every override it was started with). Command-line overrides are applied on top of it, and only
the keys of :data:`RESUMABLE` may differ from the stored values; anything else (data, model, seed,
batch size, learning rates, optimizer, schedule shape, ...) is refused with one line naming the key
and both values, because changing it would silently make the resumed run a different experiment
(a ``train.lr`` override, for instance, would be overwritten by the optimizer state of the
checkpoint). ``train.epochs`` may grow (the schedule is stretched to the new length from the current
step on), never shrink.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ..config import Config, apply_overrides, from_dict, to_dict
from ..errors import ConfigError
from ..io.checkpoint import load_checkpoint

#: keys (or whole sections, ending in ".") that may differ between a run and its resumption: where the
#: run lives, when it stops, how often it logs / evaluates / checkpoints, where it runs, how it is
#: evaluated; none changes the arithmetic of a training step
RESUMABLE = ("name", "output_dir", "train.epochs", "train.max_steps", "train.eval_every", "train.log_every",
             "train.tensorboard", "train.checkpoint_every", "train.device", "data.num_workers", "eval.")


def _flatten(d: dict, prefix: str = "") -> Dict[str, object]:
    out: Dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _resumable(key: str) -> bool:
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def config_changes(stored: Config, new: Config) -> List[Tuple[str, object, object]]:
    """``(key, stored value, new value)`` of every leaf that differs, in config order."""
    a, b = _flatten(to_dict(stored)), _flatten(to_dict(new))
    return [(k, a.get(k), b.get(k)) for k in b if a.get(k) != b.get(k)]


def check_resume_changes(stored: Config, new: Config, source: str) -> List[Tuple[str, object, object]]:
    """Refuse any change a resumed run may not make.

    Args:
        stored: the config of the run (from its checkpoint).
        new: the config the resumed run would use.
        source: the checkpoint file (for the message).

    Returns:
        the allowed changes ``(key, stored value, new value)`` (to log).

    Raises:
        ConfigError: the first key that may not change on resume, with both values.
    """
    changes = config_changes(stored, new)
    for key, old, value in changes:
        if not _resumable(key):
            raise ConfigError(
                f"--resume: {key}={value!r} differs from the run's {key}={old!r} ({source}); on resume only "
                f"{', '.join(r.rstrip('.') + ('*' if r.endswith('.') else '') for r in RESUMABLE)} may change: "
                f"drop the override, or start a new run (another --output-dir)")
        if key == "train.epochs" and value < old:
            raise ConfigError(f"--resume: train.epochs={value} is shorter than the run's train.epochs={old} "
                              f"({source}); epochs may only grow on resume (train.max_steps stops earlier)")
    return changes


def resume_config(output_dir: str, overrides: Sequence[str]) -> Config:
    """The config a ``--resume`` of the run in ``output_dir`` trains with: the one stored in its
    ``last.pt`` (the run's own overrides included) with the command-line ``overrides`` applied;
    ``output_dir`` is where the run is now.

    Raises:
        CheckpointError: no readable ``last.pt``.
        ConfigError: an override of a key that may not change on resume (:func:`check_resume_changes`).
    """
    path = Path(output_dir) / "last.pt"
    stored = stored_config(load_checkpoint(path), str(path))
    new = apply_overrides(stored, overrides)
    new.output_dir = str(output_dir)
    check_resume_changes(stored, new, str(path))
    return new


def stored_config(checkpoint: dict, source: str) -> Config:
    """The typed config saved in a hoikit checkpoint.

    Raises:
        ConfigError: the stored config does not fit today's schema (naming the checkpoint).
    """
    try:
        return from_dict(checkpoint["config"])
    except Exception as e:  # an unknown / mistyped key of an older or foreign file
        raise ConfigError(f"{source}: stored config does not load: {str(e).splitlines()[0]}") from None
