"""Run many benchmark trainings, one process each, on a small machine, from several instances at once.

Used by ``synth_rmlr.py`` (Table 2) and ``synth_zero_shot.py``. Each run has its own directory. A run
process holds an exclusive ``flock`` on ``<run dir>/lock`` while it trains (:func:`hold_lock`): the
operating system drops it when the process ends, however it ends, so a killed run is taken up by the
next instance that reaches it, and two instances sharing one output directory (say one per core, or
one from a later session) never train the same run twice. A run process that finds its run locked
exits with :data:`TAKEN`, and the pool moves on.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import IO, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

TAKEN = 3   # run-process exit status: the run is being trained by another process

T = TypeVar("T")


def hold_lock(run: Path) -> Optional[int]:
    """Take ``run/lock`` (creating ``run``) for the life of this process. Returns the open file
    descriptor (keep it open), or None when another living process holds the run."""
    import fcntl

    run.mkdir(parents=True, exist_ok=True)
    fd = os.open(run / "lock", os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def run_pool(pending: Sequence[T], command: Callable[[T], List[str]], run_dir: Callable[[T], Path],
             label: Callable[[T], str], jobs: int, threads: int,
             on_finish: Optional[Callable[[], None]] = None, poll_s: float = 5.0) -> None:
    """Run ``command(t)`` for every ``t`` of ``pending`` in order, ``jobs`` at a time, each pinned to
    its own core (``taskset``) when ``jobs > 1``, with ``OMP_NUM_THREADS=threads``; its output is
    appended to ``run_dir(t)/log.txt``. ``on_finish()`` is called after every run that ends well
    (e.g. to rewrite a report). A failed run is reported and the pool goes on. ``poll_s``: seconds
    between looks at the running processes."""
    todo = list(pending)
    cores = sorted(os.sched_getaffinity(0))
    procs: Dict[int, Tuple[T, subprocess.Popen, IO]] = {}   # core -> (run, process, its log file)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    while todo or procs:
        for core in [c for c in cores[:max(1, jobs)] if c not in procs]:
            if not todo:
                break
            t = todo.pop(0)
            log = run_dir(t)
            log.mkdir(parents=True, exist_ok=True)
            cmd = (["taskset", "-c", str(core)] if jobs > 1 else []) + command(t)
            print(f"start {label(t)} on core {core}", flush=True)
            out = open(log / "log.txt", "a")
            procs[core] = (t, subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env), out)
        time.sleep(poll_s)
        for core, (t, p, out) in list(procs.items()):
            if p.poll() is None:
                continue
            del procs[core]
            out.close()
            if p.returncode == TAKEN:
                print(f"{label(t)}: trained by another process; next", flush=True)
            elif p.returncode:
                print(f"{label(t)} failed (exit {p.returncode}); see {run_dir(t) / 'log.txt'}", flush=True)
            elif on_finish is not None:
                on_finish()
