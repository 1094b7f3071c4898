"""Training logs: a tqdm progress bar with ETA (rank 0 only), CSV files, optional TensorBoard.

Files in the run directory:

* ``log.csv``  - one row every ``log_every`` optimizer steps: epoch, step, lr, loss, each loss_*;
* ``eval.csv`` - one row per evaluation: epoch, step, each metric;
* ``tb/``      - with ``train.tensorboard=true`` (the ``tensorboard`` extra): TensorBoard events,
  ``train/<loss>`` and ``train/lr`` every ``log_every`` steps and ``eval/<metric>`` per evaluation,
  against the optimizer step (``tensorboard --logdir <output_dir>/tb``).

On resume, rows written after the checkpoint's step (by the killed run) are dropped so the logs
match an uninterrupted run.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Dict, List, Optional

from tqdm import tqdm

from ..extras import require


class CSVLog:
    """Append rows (dicts) to a CSV file; the header grows when new keys appear.

    Args:
        path: file to write.
        keep_until_step: when given, existing rows with ``step`` greater than it are dropped.
    """

    def __init__(self, path: Path, keep_until_step: Optional[int] = None):
        self.path = Path(path)
        self.rows: List[Dict] = []
        if self.path.exists() and keep_until_step is not None:
            with open(self.path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(float(r.get("step") or 0)) <= keep_until_step]
        self._rewrite()

    def _fields(self) -> List[str]:
        fields: List[str] = []
        for r in self.rows:
            fields += [k for k in r if k not in fields]
        return fields

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._fields())
            w.writeheader()
            w.writerows(self.rows)

    def write(self, row: Dict) -> None:
        row = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        new_keys = any(k not in (self.rows[0] if self.rows else {}) for k in row)
        self.rows.append(row)
        if new_keys or len(self.rows) == 1:
            self._rewrite()
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._fields()).writerow(row)


class TrainLogger:
    """Console, CSV and (optional) TensorBoard logging; a silent no-op on ranks other than 0.

    Args:
        out_dir: run directory.
        enabled: True on rank 0.
        tensorboard: also write TensorBoard events (``MissingExtraError`` when the extra is not installed).
        keep_until_step: resume position (see :class:`CSVLog`).
    """

    def __init__(self, out_dir: Path, enabled: bool = True, tensorboard: bool = False,
                 keep_until_step: Optional[int] = None):
        self.enabled = enabled
        self.bar: Optional[tqdm] = None
        self.tb = None
        if tensorboard:   # on every rank, so all of them stop before training when the extra is missing
            require("tensorboard", extra="tensorboard", purpose="train.tensorboard=true")
        if not enabled:
            return
        self.train_csv = CSVLog(Path(out_dir) / "log.csv", keep_until_step)
        self.eval_csv = CSVLog(Path(out_dir) / "eval.csv", keep_until_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter   # optional dependency (extra 'tensorboard')

            self.tb = SummaryWriter(str(Path(out_dir) / "tb"))

    def info(self, msg: str) -> None:
        if self.enabled:
            (self.bar.write if self.bar is not None else print)(msg, file=sys.stdout)

    def start_epoch(self, epoch: int, epochs: int, total: int, initial: int = 0) -> None:
        if self.enabled:
            self.bar = tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", unit="it",
                            dynamic_ncols=True, leave=True, file=sys.stdout, mininterval=1.0)

    def step(self, postfix: Dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def log_train(self, epoch: int, step: int, values: Dict[str, float]) -> None:
        if not self.enabled:
            return
        self.train_csv.write({"epoch": epoch, "step": step, **values})
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"train/{k}", v, step)

    def log_eval(self, epoch: int, step: int, metrics: Dict[str, float]) -> None:
        if not self.enabled:
            return
        self.eval_csv.write({"epoch": epoch, "step": step, **metrics})
        self.info("eval " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(f"eval/{k}", v, step)

    def close(self) -> None:
        self.end_epoch()
        if self.tb is not None:
            self.tb.close()
