"""Run a model over an evaluation split: :func:`collect_predictions` (shared with the trainer's
``evaluate``) and :func:`run_test` (``hoikit test``: evaluator files + official metrics).

Under torchrun every rank takes a strided share of the images
(:class:`~hoikit.engine.sampler.ResumableSampler`, no shuffling; the last share is padded with
repeated images, which collapse on their index), turns each prediction into a compact record on
its own rank (the adapter's ``prepare``: e.g. only the (pair, verb) entries a HICO-DET file keeps),
and rank 0 gathers the records, writes the files and evaluates.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ..config import load_config
from ..data.dataset import collate
from ..errors import ConfigError, DataError
from ..eval.adapters import EvalTask, Evaluation
from ..eval.report import write_json
from ..io.checkpoint import load_checkpoint
from ..recipes import Recipe, RecipeBase, get_recipe
from . import distributed as D
from .datasets import eval_tasks
from .inference import model_from_checkpoint
from .sampler import ResumableSampler

TEST_SECTIONS = ("data", "eval")  # what a CONFIG given to `hoikit test` replaces in the checkpoint's config
PLAIN = RecipeBase()              # forward / postprocess of a model whose recipe the caller did not name


def to_device(images, targets, device):
    """Images and every tensor of the targets onto ``device``."""
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
               for t in targets]
    return images, targets


@torch.no_grad()
def collect_predictions(model: torch.nn.Module, loader, device: torch.device, task: Optional[str] = None,
                        prepare: Optional[Callable[[int, Any], Any]] = None,
                        progress: Optional[str] = None, recipe: Optional[Recipe] = None) -> Optional[Dict[int, Any]]:
    """Predictions of ``model`` over ``loader``, gathered on rank 0.

    Args:
        model: the model (DDP-wrapped or not); run in eval mode, its mode restored afterwards.
        loader: yields ``(images, targets)``; ``target["index"]`` keys the result.
        task: ``model.postprocess(..., task=task)`` (multi-task models); None = default output.
        prepare: ``prepare(index, prediction) -> record`` applied on the producing rank before the
            gather (keeps the gathered objects small); None keeps the predictions.
        progress: description of a progress bar shown on rank 0 (None = no bar).
        recipe: the model family's recipe (:meth:`Recipe.forward` / :meth:`Recipe.postprocess`: e.g.
            oracle-detection RmLR reads the targets); None = a plain ``model([image])``.

    Returns:
        ``{index: record}`` on rank 0 (every index once), None on the other ranks.

    Every image goes through the model alone (a forward pass of batch 1), whatever the loader's
    batch size. In a padded batch the padding mask and the mask-normalised position encodings are
    exact, but the backbone's convolutions near a smaller image's bottom / right border see the
    padded area (features of zeros, not the zero padding of a lone image), and through their
    receptive field so do cells further in: on the SynthHOI detector at 256 px the boxes moved by
    1-8 px, and the HOI mAP changed with the batch size (issue 13: 3.02 at 8 vs 2.27 at 1). One image per pass gives
    the same predictions in training-time evaluation, ``hoikit test`` at any ``--batch-size`` and
    ``hoikit predict``; the loader's batch size only groups the loading.
    """
    net = D.unwrap(model)
    was_training = net.training
    net.eval()
    records: Dict[int, Any] = {}
    bar = None
    if progress is not None and D.is_main_process():
        bar = tqdm(total=len(loader), desc=progress, unit="batch", dynamic_ncols=True)
    try:
        for images, targets in loader:
            images, targets = to_device(images, targets, device)
            for image, target in zip(images, targets):
                pred = _predict_one(net, image, target, task, recipe or PLAIN)
                index = int(target["index"])
                records[index] = prepare(index, pred) if prepare is not None else pred
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        net.train(was_training)
    gathered = D.all_gather_objects(records)
    if not D.is_main_process():
        return None
    merged: Dict[int, Any] = {}
    for part in gathered:  # padded duplicates of the sampler collapse on the index
        merged.update(part)
    return merged


def _predict_one(net, image: torch.Tensor, target: dict, task: Optional[str], recipe: Recipe):
    """The postprocessed prediction of one ``[3, H, W]`` image (a batch of one, no padding)."""
    return recipe.postprocess(net, recipe.forward(net, [image], [target]), [target], task)[0]


def eval_loader(dataset, batch_size: int, collate_fn, num_workers: int = 0) -> DataLoader:
    """Sharded, ordered loader over ``dataset`` for this rank."""
    sampler = ResumableSampler(len(dataset), D.get_world_size(), D.get_rank(), shuffle=False)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn, num_workers=num_workers,
                      drop_last=False)


def _drop_empty(dataset, task):
    """HICO-DET with ``--skip-empty``: do not run the annotation file's ``empty`` images (their
    detections would be dropped by the evaluator anyway, as UPT's evaluation does)."""
    empty = set(getattr(getattr(dataset, "reader", None), "empty", []) or [])
    if not empty or task.task == "sgg":
        return dataset
    return Subset(dataset, [i for i in range(len(dataset)) if i not in empty])


def _check_object_order(tasks, meta) -> None:
    """The evaluated file must number objects as the checkpoint does (HOI classes are looked up by
    (object id, verb id)); e.g. HICO-DET ``main`` (alphabetical) vs ``class`` (COCO-80) branch files."""
    metas = meta if isinstance(meta, tuple) else (meta,)
    for task in tasks:
        reader = getattr(task.dataset, "reader", None)
        objs = list(getattr(getattr(reader, "meta", None), "objects", []) or [])
        if not objs or any(m is not None and list(m.objects) == objs for m in metas):
            continue
        ours = next(m for m in metas if m is not None)
        if len(ours.objects) == len(objs):
            bad = next(i for i, (a, b) in enumerate(zip(ours.objects, objs)) if a != b)
            raise DataError(f"{getattr(reader, 'path', 'annotation file')}: object {bad} is '{objs[bad]}' but "
                            f"'{ours.objects[bad]}' in the checkpoint; use an annotation file with the checkpoint's "
                            f"object order (HICO-DET: the main-branch instances_test2015.json)")


def run_test(checkpoint, config_file: Optional[str] = None, overrides: Sequence[str] = (), split: str = "test",
             out_dir="test_results", batch_size: int = 1, device: str = "auto",
             skip_empty: bool = False, report: Optional[Callable[[str], None]] = None) -> Optional[Dict]:
    """``hoikit test``: evaluate a hoikit checkpoint on ``split`` with the dataset's official protocol.

    Writes ``out_dir/<evaluator file>`` (HICO-DET ``detections.npz``, V-COCO ``detections.pkl``
    official records, SGG ``scene_graphs.npz``; prefixed ``<task>_`` when a model has several) and
    ``out_dir/metrics.json``; hands each table and written path to ``report`` (the test command
    passes ``print``; None = silent). Returns the metrics dict on rank 0, None elsewhere.
    """
    report = report or (lambda line: None)
    info = D.init_distributed(device)
    ck = load_checkpoint(checkpoint)
    # the checkpoint's config, the data / eval sections of CONFIG, then the overrides (config.load_config)
    cfg = load_config(config_file, overrides, stored=ck["config"], sections=TEST_SECTIONS, where=str(checkpoint))
    if skip_empty:
        cfg.eval.hicodet_skip_empty = True
    model, cfg, meta = model_from_checkpoint(checkpoint, cfg=cfg, state=ck)
    model.to(info.device)
    tasks, primary = eval_tasks(cfg, meta, split)
    if not tasks:
        raise ConfigError(f"data.format={cfg.data.format}: no evaluator for this data"
                          + (" (set data.vcoco_json, data.coco_json and data.vcoco_ids)" if cfg.data.format == "vcoco"
                             else ""))
    _check_object_order(tasks, meta)
    out = Path(out_dir)
    summary: Dict = {"checkpoint": str(checkpoint), "split": split, "primary": primary, "metrics": {}, "files": {}}
    for task in tasks:
        _run_task(model, cfg, task, len(tasks) > 1, split, batch_size, info, out, summary, report)
    D.barrier()
    if not info.is_main:
        return None
    report(f"wrote {write_json(out / 'metrics.json', summary)}")
    return summary


def _run_task(model, cfg, task: EvalTask, several: bool, split: str, batch_size: int, info: D.DistInfo, out: Path,
              summary: Dict, report: Callable[[str], None]) -> None:
    """One evaluation of ``hoikit test``: predictions gathered on rank 0, which scores them, writes the
    evaluator's file (``<protocol>_`` prefixed when ``several``), reports the table and fills ``summary``."""
    ev: Evaluation = task.make_evaluator()
    dataset = _drop_empty(task.dataset, task) if cfg.eval.hicodet_skip_empty else task.dataset
    loader = eval_loader(dataset, batch_size, collate, cfg.data.num_workers)
    t0 = time.perf_counter()
    records = collect_predictions(model, loader, info.device, task.task, ev.prepare,
                                  progress=f"{split} ({task.task or cfg.data.format})",
                                  recipe=get_recipe(cfg.model.arch))
    if records is None:
        return
    seconds = time.perf_counter() - t0
    for index in sorted(records):
        ev.add(index, records[index])
    metrics = ev.compute()
    out.mkdir(parents=True, exist_ok=True)
    path = ev.save(out)
    if path is not None:
        if several:
            path = path.rename(path.with_name(f"{ev.protocol}_{path.name}"))
        summary["files"][ev.protocol] = str(path)
        report(f"wrote {path}")
    report(ev.table())
    report(f"{len(records)} images in {seconds:.1f} s ({info.world_size} process(es))")
    summary["metrics"].update(metrics)
    summary[ev.protocol] = ev.results
    summary.setdefault("images", {})[ev.protocol] = len(records)


__all__: List[str] = ["collect_predictions", "eval_loader", "run_test"]
