"""benchmarks/run_pool.py: one process per run, logs per run, a report after each run that ends well,
and a run locked by a living process is left to it."""
import os
import subprocess
import sys
from pathlib import Path

_DIR = Path(__file__).parents[2] / "benchmarks"
sys.path.insert(0, str(_DIR))
import run_pool  # noqa: E402


def test_pool_runs_each_command_once_logs_it_and_reports_after_each_success(tmp_path, capsys):
    runs = ["a", "b", "c", "d"]
    codes = {"a": 0, "b": 1, "c": 0, "d": run_pool.TAKEN}
    finished = []
    run_pool.run_pool(runs, lambda t: [sys.executable, "-c", f"print('run {t}'); raise SystemExit({codes[t]})"],
                      lambda t: tmp_path / t, lambda t: f"run {t}", jobs=1, threads=1,
                      on_finish=lambda: finished.append(1), poll_s=0.05)
    for t in runs:
        assert (tmp_path / t / "log.txt").read_text() == f"run {t}\n"
    assert len(finished) == 2                      # b failed and d was another process's: no report for them
    out = capsys.readouterr().out
    assert "start run a on core" in out and f"run b failed (exit 1); see {tmp_path / 'b' / 'log.txt'}" in out
    assert "run d: trained by another process" in out


def test_a_locked_run_is_refused_until_its_holder_ends(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
                               "import run_pool; fd = run_pool.hold_lock(__import__('pathlib').Path(sys.argv[2])); "
                               "print(fd is not None, flush=True); time.sleep(60)", str(_DIR), str(tmp_path / "r")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        assert run_pool.hold_lock(tmp_path / "r") is None
    finally:
        holder.kill()
        holder.wait()
    fd = run_pool.hold_lock(tmp_path / "r")
    assert fd is not None                                    # the OS dropped the dead holder's lock
    os.close(fd)
