"""``hoikit demo [--out DIR]``: the main job on a fresh machine, CPU only, in minutes.

1. generate a SynthHOI dataset (``DIR/synthhoi``; default seed 0, 256 px, 400 train / 200 test images);
2. detector: the shipped ``hoikit/assets/synth_deformable_384.pt`` (Deformable DETR trained from scratch on
   the default-size SynthHOI by ``hoikit train synth_deformable``, then fine-tuned at 384 px by ``hoikit train
   synth_deformable_384``; docs/synthhoi-training.md), its COCO box AP / AP50 (pycocotools)
   on the demo's test images; without it (or with ``--retrain``) a detector is trained here, which is weak in minutes;
3. RmLR on the frozen detector: the shipped ``hoikit/assets/synth_rmlr.pt`` (``hoikit train synth_rmlr`` on the
   2,000 default SynthHOI training images; the demo's test images are SynthHOI test images, which no
   training split contains), or, with ``--train-rmlr`` (or ``--retrain``), RmLR trained here on the demo's
   training images (weaker: a few hundred images for a few minutes);
4. evaluate with the official HICO-DET protocol, print the table, write ``DIR/metrics.json``;
5. run the trained model on test images: ``DIR/predictions/*.json`` (each image's 20 best-scoring triplets
   with their ``confidence``, and every detection) and ``*.png`` (the triplets with confidence >= 0.1).
"""
from __future__ import annotations

DESCRIPTION = __doc__


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    parser.add_argument("--train", type=int, default=400, help="SynthHOI training images (default 400)")
    parser.add_argument("--test", type=int, default=200, help="SynthHOI test images (default 200)")
    parser.add_argument("--size", type=int, default=256, help="SynthHOI image long side in pixels (default 256)")
    parser.add_argument("--detr-epochs", type=int, default=3,
                        help="detector epochs when no detector is shipped or with --retrain (default 3)")
    parser.add_argument("--rmlr-epochs", type=int, default=2, help="RmLR epochs (default 2)")
    parser.add_argument("--ablation", default="full", help="RmLR Table 2 row (default full; plain = UPT)")
    parser.add_argument("--pictures", type=int, default=8, help="test images to draw (default 8)")
    parser.add_argument("--train-rmlr", action="store_true",
                        help="train RmLR here on the demo's training images instead of using the shipped one")
    parser.add_argument("--retrain", action="store_true",
                        help="ignore every shipped checkpoint in hoikit/assets (trains the detector and RmLR here)")
    parser.add_argument("--seed", type=int, default=0)


def _common(args, data_root: str):
    """Overrides shared by both presets: the demo's dataset and seed (image scale and detector
    dimensions stay the presets', so the shipped detector loads)."""
    return [f"data.root={data_root}", f"data.synth_train={args.train}", f"data.synth_test={args.test}",
            f"data.synth_size={args.size}", f"data.synth_seed={args.seed}", f"seed={args.seed}",
            "train.eval_every=1000"]


def _asset(name: str):
    from importlib import resources

    p = resources.files("hoikit").joinpath("assets", name)
    return str(p) if p.is_file() else None


def _detector_ap(common, detr_ckpt: str) -> dict:
    """COCO box AP metrics of the detector on the demo's test images (engine DetectionEvaluation:
    ``AP``, ``AP50``, ..., ``AP50/<class>``)."""
    import torch

    from ..config import load_config
    from ..data.dataset import collate
    from ..engine.datasets import build_training_data
    from ..engine.trainer import evaluate
    from ..io.checkpoint import detector_input_overrides
    from ..recipes import build_model

    # the detector's own dimensions (synth_deformable) at the image scale it was trained at
    cfg = load_config("synth_deformable", common + [f"model.detr.checkpoint={detr_ckpt}"]
                      + detector_input_overrides(detr_ckpt))
    data = build_training_data(cfg)
    loader = torch.utils.data.DataLoader(data.eval_set, batch_size=8, collate_fn=collate)
    return evaluate(build_model(cfg, data.meta), loader, data.make_evaluator, torch.device("cpu"))


def _dataset(args, data_root):
    """Step 1: SynthHOI in ``data_root`` (generated unless its test annotation file is there)."""
    from ..data.dataset import synth_paths
    from ..data.synth import generate_synthhoi

    anno, images = synth_paths(data_root, "test")
    if not anno.is_file():
        print(f"[1/5] generating SynthHOI ({args.train} train / {args.test} test images, {args.size} px) in {data_root}")
        generate_synthhoi(data_root, args.train, args.test, args.seed, args.size, workers=2)
    else:
        print(f"[1/5] SynthHOI found in {data_root}")
    return anno, images


def _detector(args, out, common, timings: dict):
    """Step 2: the shipped detector and its COCO AP, or one trained here. Returns ``(checkpoint, metrics)``."""
    import time

    from ..config import load_config
    from ..training import train

    detr_ckpt = None if args.retrain else _asset("synth_deformable_384.pt")
    if detr_ckpt:
        print(f"[2/5] detector: shipped checkpoint {detr_ckpt}\n      (reproduce: hoikit train synth_deformable, "
              "then hoikit train synth_deformable_384; docs/synthhoi-training.md)")
        t = time.time()
        detector_metrics = _detector_ap(common, detr_ckpt)
        timings["detector_eval_s"] = round(time.time() - t, 1)
    else:
        why = "--retrain" if args.retrain else "no shipped detector in hoikit/assets"
        print(f"[2/5] {why}: training the detector here ({args.detr_epochs} epochs on {args.train} images; "
              "expect a weak detector: the shipped one trained ~3 h on one core on 2,000 images, in two runs)")
        t = time.time()
        cfg = load_config("synth_deformable", common + [f"output_dir={out / 'detr'}",
                                                         f"train.epochs={args.detr_epochs}"])
        state, _ = train(cfg)
        detr_ckpt, timings["detector_s"] = str(out / "detr" / "last.pt"), round(time.time() - t, 1)
        detector_metrics = state.metrics or {}
    if "AP50" in detector_metrics:
        print(f"      detector on the {args.test} test images (COCO protocol): AP50 {detector_metrics['AP50']:.2f}, "
              f"AP {detector_metrics['AP']:.2f}")
    return detr_ckpt, detector_metrics


def _rmlr(args, out, common, detr_ckpt: str, timings: dict) -> str:
    """Step 3: the shipped RmLR checkpoint, or RmLR trained here on the frozen detector. Returns its path."""
    import time

    from ..config import load_config
    from ..io.checkpoint import detector_input_overrides
    from ..training import train

    rmlr_ckpt = None if args.retrain or args.train_rmlr else _asset("synth_rmlr.pt")
    if rmlr_ckpt:
        print(f"[3/5] RmLR: shipped checkpoint {rmlr_ckpt}\n      (trained on the 2,000 default SynthHOI "
              "training images, docs/synthhoi-training.md; --train-rmlr trains one here)")
        return rmlr_ckpt
    print(f"[3/5] training RmLR ({args.ablation}, {args.rmlr_epochs} epochs on {args.train} images) "
          "on the frozen detector")
    t = time.time()
    cfg = load_config("synth_rmlr", common + [f"output_dir={out / 'rmlr'}", f"train.epochs={args.rmlr_epochs}",
                                               f"model.detr.checkpoint={detr_ckpt}",
                                               f"model.rmlr.ablation={args.ablation}"]
                      + detector_input_overrides(detr_ckpt))   # images at the frozen detector's scale
    train(cfg, with_eval=False)  # evaluated once, in step 4
    timings["rmlr_s"] = round(time.time() - t, 1)
    return str(out / "rmlr" / "last.pt")


def _evaluate(predictor, data_root, anno):
    """Step 4: the official HICO-DET protocol on the demo's test images. Returns ``(evaluation, reader)``."""
    import dataclasses

    import torch

    from ..data.dataset import HOIDataset, build_reader, collate
    from ..eval.adapters import HOIEvaluation
    from ..engine.testing import collect_predictions

    print("[4/5] evaluating with the HICO-DET protocol")
    reader = build_reader(dataclasses.replace(predictor.cfg.data, root=str(data_root), test_anno="", test_images=""),
                          "test")
    loader = torch.utils.data.DataLoader(HOIDataset(reader, predictor.transforms), batch_size=1, collate_fn=collate)
    predictions = collect_predictions(predictor.model, loader, predictor.device, recipe=predictor.recipe)
    ev = HOIEvaluation(str(anno))
    for i in sorted(predictions):
        ev.add(i, predictions[i])
    return ev, reader


def _draw(predictor, reader, pred_dir, count: int) -> None:
    """Step 5: ``pred_dir/<image>.json`` and ``.png`` for the first ``count`` test images."""
    import json
    from pathlib import Path

    from PIL import Image

    from ..viz.draw import draw_hoi

    print(f"[5/5] drawing predictions for {count} test images")
    pred_dir.mkdir(parents=True, exist_ok=True)
    for i in range(min(count, len(reader))):
        sample = reader[i]
        result = predictor.predict(sample.image_path, threshold=0.0, max_triplets=SHOWN_POOL)
        name = Path(sample.file_name).stem
        (pred_dir / f"{name}.json").write_text(json.dumps(result, indent=1))
        with Image.open(sample.image_path) as im:
            draw_hoi(im, shown_triplets(result)).save(pred_dir / f"{name}.png")


SHOWN_POOL = 20          # best-scoring triplets the demo keeps per image (its JSON)


def shown_triplets(result: dict, min_confidence: float = 0.1, most: int = 5, fallback: int = 3) -> dict:
    """What a demo picture draws: among the image's best-scoring triplets, those whose confidence
    (``confidence``, RmLR / UPT: ``hoikit.engine.inference.triplet_confidence``) is at least
    ``min_confidence``, ``most`` at most, in score order; with none (or no confidences), the ``fallback``
    best triplets. The ranking score itself is ~0.01 for a sure triplet with a focal-loss detector, so a
    fixed score threshold would draw nothing."""
    triplets = result.get("triplets", [])
    sure = [t for t in triplets if t.get("confidence", 0.0) >= min_confidence][:most]
    return {**result, "triplets": sure or triplets[:fallback]}


def run(args) -> int:
    import time
    from pathlib import Path

    from ..engine.inference import Predictor
    from ..eval.hicodet import format_results
    from ..eval.report import write_json

    t0 = time.time()
    out = Path(args.out)
    data_root = out / "synthhoi"
    anno, images = _dataset(args, data_root)
    common = _common(args, str(data_root))
    timings = {}
    detr_ckpt, detector_metrics = _detector(args, out, common, timings)
    rmlr_ckpt = _rmlr(args, out, common, detr_ckpt, timings)
    predictor = Predictor.from_checkpoint(rmlr_ckpt)
    ev, reader = _evaluate(predictor, data_root, anno)
    metrics = ev.compute()
    print(format_results(ev.results))
    summary = {"hicodet": {"default": ev.results["default"], "known_object": ev.results["known_object"]},
               "detector": detector_metrics, "checkpoints": {"detector": detr_ckpt, "rmlr": rmlr_ckpt},
               "dataset": {"root": str(data_root), "train": args.train, "test": args.test, "size": args.size},
               "timings_s": timings, "metrics": metrics}
    pred_dir = out / "predictions"
    _draw(predictor, reader, pred_dir, args.pictures)
    summary["timings_s"]["total"] = round(time.time() - t0, 1)
    write_json(out / "metrics.json", summary)
    print(f"\ndone in {summary['timings_s']['total']:.0f} s. Everything is in {out}:")
    print(f"  metrics      {out / 'metrics.json'}")
    print(f"  checkpoints  {detr_ckpt}\n               {rmlr_ckpt}")
    print(f"  predictions  {pred_dir}/*.json, *.png")
    print(f"  dataset      {data_root}")
    print(f"  try          hoikit predict {images} --checkpoint {rmlr_ckpt} --out {out / 'more'}")
    return 0
