"""``hoikit train CONFIG [key=value ...] [--resume | --overwrite] [--output-dir DIR]``.

One process on CPU or GPU, or many with ``torchrun --nproc_per_node N -m hoikit.cli train ...``
(DDP: gloo on CPU, nccl on GPU). Writes ``config.yaml``, ``last.pt`` (every epoch and every
``train.checkpoint_every`` steps, atomically),
``best.pt``, ``log.csv``, ``eval.csv`` and ``curves.png`` into the output directory.

An output directory that already holds a run is never written over silently: continue it with
``--resume``, train into a new ``--output-dir``, or pass ``--overwrite`` to delete that run's
files first.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import ConfigError

DESCRIPTION = __doc__
# what a training run writes into its output directory (engine/run.py, engine/logging.py,
# viz/plots.py); any of them there means the directory holds a run
RUN_FILES = ("config.yaml", "last.pt", "best.pt", "log.csv", "eval.csv", "curves.png")
RUN_DIRS = ("tb",)


def add_arguments(parser) -> None:
    parser.add_argument("config", help="YAML file or packaged preset name (e.g. synth_rmlr)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=2e-4 train.epochs=5")
    parser.add_argument("--resume", action="store_true",
                        help="continue exactly from OUTPUT_DIR/last.pt with the run's own config (stored there); "
                             "overrides may change only epochs (longer), max_steps, logging, evaluation, device")
    parser.add_argument("--output-dir", default=None, help="run directory (default: the config's output_dir)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run already in the output directory (its checkpoints and logs) and start afresh")


def existing_run_files(out: Path) -> list:
    """The files and folders of a previous run in ``out`` (empty when there is none)."""
    return [out / n for n in RUN_FILES + RUN_DIRS if (out / n).exists()]


def check_output_dir(out: Path, resume: bool, overwrite: bool, is_main: bool = True) -> None:
    """Refuse to train into a directory that holds a run unless ``resume`` or ``overwrite``;
    with ``overwrite``, delete that run's files (only those hoikit writes) on the main process.

    Raises:
        ConfigError: a run is there and neither flag is given, or both flags are given.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: --resume continues the run in "
                          f"{out}, --overwrite deletes it")
    found = existing_run_files(out)
    if not found or resume:
        return
    if not overwrite:
        names = ", ".join(p.name for p in found)
        raise ConfigError(f"{out} already holds a run ({names}); continue it with --resume, train into a new "
                          "--output-dir, or delete it with --overwrite")
    if is_main:
        for p in found:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def run(args) -> int:
    from ..config import load_config
    from ..engine import distributed as D
    from ..training import train

    cfg = load_config(args.config, args.overrides)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    # every process checks before any writes (init_distributed in train() is the rendezvous)
    check_output_dir(Path(cfg.output_dir), args.resume, args.overwrite, os.environ.get("RANK", "0") == "0")
    if args.resume:  # the run's own config from its last.pt, command-line overrides checked key by key
        from ..engine.resume import resume_config

        out_dir = cfg.output_dir
        cfg = resume_config(out_dir, args.overrides)
        cfg.output_dir = out_dir          # where its last.pt is, even if the run was moved
    try:
        state, data = train(cfg, args.resume)
        if D.is_main_process():
            out = cfg.output_dir
            best = f", best {data.primary}={state.best:.2f} (epoch {state.best_epoch + 1})" if state.best is not None else ""
            print(f"done: {state.step} steps{best}; checkpoints in {out}/last.pt"
                  + (f" and {out}/best.pt" if state.best is not None else "") + f"; logs {out}/log.csv")
    finally:
        D.cleanup()
    return 0
