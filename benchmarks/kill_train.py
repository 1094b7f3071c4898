"""``hoikit train`` with a fault injected: the process SIGKILLs itself right after optimizer step N.

    python benchmarks/kill_train.py --kill-at N train CONFIG [key=value ...] [--resume] [--output-dir DIR]

Everything after ``--kill-at N`` is the command line of ``hoikit`` (``python -m hoikit.cli``). The kill
comes from a ``fit`` callback on the ``step`` event, i.e. after the step's optimizer update and after
any checkpoint of that step, exactly where an external ``kill -9`` could land. Used by
tests/engine/test_engine_resume_presets.py and benchmarks/fault_injection.py.
"""
from __future__ import annotations

import os
import signal
import sys

import hoikit.engine.trainer as trainer
from hoikit.cli import main


def _install(kill_at: int) -> None:
    fit = trainer.fit

    def killing_fit(*args, **kwargs):
        inner = kwargs.get("callback")

        def callback(event, state):
            if inner is not None:
                inner(event, state)
            if event == "step" and state.step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        kwargs["callback"] = callback
        return fit(*args, **kwargs)

    trainer.fit = killing_fit   # hoikit.training.train calls trainer.fit, looked up when it runs


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--kill-at"]:
        _install(int(argv[1]))
        argv = argv[2:]
    sys.exit(main(argv))
