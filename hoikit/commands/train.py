"""``hoikit train CONFIG [key=value ...] [--resume] [--output-dir DIR]``.

One process on CPU or GPU, or many with ``torchrun --nproc_per_node N -m hoikit.cli train ...``
(DDP: gloo on CPU, nccl on GPU). Writes ``config.yaml``, ``last.pt`` (every epoch and every
``train.checkpoint_every`` steps, atomically),
``best.pt``, ``log.csv``, ``eval.csv`` and ``curves.png`` into the output directory.
"""
from __future__ import annotations

DESCRIPTION = __doc__


def add_arguments(parser) -> None:
    parser.add_argument("config", help="YAML file or packaged preset name (e.g. synth_rmlr)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=2e-4 train.epochs=5")
    parser.add_argument("--resume", action="store_true",
                        help="continue exactly from OUTPUT_DIR/last.pt with the run's own config (stored there); "
                             "overrides may change only epochs (longer), max_steps, logging, evaluation, device")
    parser.add_argument("--output-dir", default=None, help="run directory (default: the config's output_dir)")


def train(cfg, resume: bool = False, with_eval: bool = True):
    """Train ``cfg`` (datasets, model, evaluator from the config). Returns ``(TrainState, TrainingData)``.

    ``with_eval=False`` skips every evaluation (callers that evaluate themselves, e.g. ``hoikit demo``).
    """
    from pathlib import Path

    from ..config import to_yaml
    from ..data.dataset import collate
    from ..engine import distributed as D
    from ..engine.datasets import build_training_data
    from ..engine.trainer import fit, seed_everything
    from ..models.build import build_model, meta_to_dict

    info = D.init_distributed(cfg.train.device)
    data = build_training_data(cfg, with_eval=with_eval)
    seed_everything(cfg.seed)  # identical initial weights on every rank
    model = build_model(cfg, data.meta)
    out = Path(cfg.output_dir)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(to_yaml(cfg))  # after build: builders may fill derived fields
    state = fit(cfg, model, data.train_set, collate_fn=collate, meta=meta_to_dict(cfg.model.arch, data.meta),
                eval_set=data.eval_set, make_evaluator=data.make_evaluator, primary_metric=data.primary, evals=data.evals,
                resume=resume, info=info)
    if info.is_main:
        from ..viz.plots import plot_training_curves

        plot_training_curves(out, out / "curves.png")
    return state, data


def run(args) -> int:
    from ..config import load_config
    from ..engine import distributed as D

    cfg = load_config(args.config, args.overrides)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    if args.resume:  # the run's own config from its last.pt, command-line overrides checked key by key
        from ..engine.resume import resume_config

        cfg = resume_config(cfg.output_dir, args.overrides)
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
