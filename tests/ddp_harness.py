"""Two-process gloo DDP harness: train models with hoikit's trainer and compare the ranks' weights.

Used by the Table 2 (RmLR) and ablation (SG2HOI+) DDP tests. A *factory* is a function in a test
helper file, ``factory(name, *args) -> (cfg, model, train_set, collate_fn)``; it must build the same
initial weights on every rank (the harness seeds every RNG with ``cfg.seed`` before calling it).

    results = run_ddp(tmp_path, "tests/models/rmlr/rmlr_tiny.py:ddp_case", ["full", "wo_wa"],
                      factory_args=[str(text_dir)], steps=2)
    for name, r in results.items():
        assert_ranks_equal_and_trained(r)

For every name the harness trains ``steps`` optimizer steps (batch 1 per rank, one epoch, no
evaluation) with ``fit`` (which wraps the model in DistributedDataParallel exactly as ``hoikit train``
does), and writes ``OUT/<name>/{init,rank0,rank1}.pt``. A parameter that gets no gradient on a step
makes DDP (without ``find_unused_parameters``) raise on the next step, so a run that finishes is the
test that every parameter of the model is used. All names run in one ``torchrun`` launch.

    python ddp_harness.py OUT FILE:FUNCTION STEPS NAME[,NAME...] [ARG ...]
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import torch

HERE = Path(__file__).resolve()


def run_ddp(out: Path, factory: str, names: Sequence[str], factory_args: Sequence[str] = (), steps: int = 2,
            timeout: int = 600) -> Dict[str, Dict[str, dict]]:
    """Launch two CPU processes (torchrun, gloo); returns per name ``{"init", "rank0", "rank1"}``
    state dicts. Fails the calling test with the launch's stderr when a rank fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(HERE),
           str(out), factory, str(steps), ",".join(names), *factory_args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return {n: {k: torch.load(Path(out) / n / f"{k}.pt", weights_only=True) for k in ("init", "rank0", "rank1")}
            for n in names}


def assert_ranks_equal_and_trained(states: Dict[str, dict], name: str = "") -> None:
    """Both ranks hold identical weights, and at least one parameter moved from its initial value."""
    w0, w1, init = states["rank0"], states["rank1"], states["init"]
    assert w0.keys() == w1.keys() == init.keys(), name
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"{name}: ranks differ on {k}"
    assert any(not torch.equal(w0[k], init[k]) for k in w0), f"{name}: nothing trained"


def _load_factory(spec: str):
    path, func = spec.rsplit(":", 1)
    sys.path.insert(0, str(Path(path).resolve().parent))
    mod_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return getattr(module, func)


def _snapshot(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def main(argv: List[str]) -> int:
    torch.set_num_threads(1)
    from hoikit.engine import distributed as D
    from hoikit.engine.trainer import fit, seed_everything

    out, spec, steps, names, args = Path(argv[0]), argv[1], int(argv[2]), argv[3].split(","), argv[4:]
    factory = _load_factory(spec)
    info = D.init_distributed("cpu")
    for name in names:
        seed_everything(0)
        cfg, model, train_set, collate_fn = factory(name, *args)
        seed_everything(cfg.seed)
        cfg.output_dir = str(out / name)
        t = cfg.train
        t.epochs, t.batch_size, t.max_steps, t.device, t.eval_every = 1, 1, steps, "cpu", 1
        cfg.data.num_workers = 0
        init = _snapshot(model)
        fit(cfg, model, train_set, collate_fn=collate_fn, info=info)
        if info.is_main:
            torch.save(init, out / name / "init.pt")
        torch.save(_snapshot(model), out / name / f"rank{info.rank}.pt")
        D.barrier()
    D.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
