"""benchmarks/synth_rmlr.py (the Table 2 benchmark): per-verb means, the per-epoch curves it reads from
the trainer's eval.csv, the report sections, and the per-run lock that lets several instances share one
output directory."""
import fcntl
import math
import importlib.util
import os
import sys
from argparse import Namespace
from pathlib import Path

import torch

_DIR = Path(__file__).parents[2] / "benchmarks"
sys.path.insert(0, str(_DIR))
_spec = importlib.util.spec_from_file_location("synth_rmlr", _DIR / "synth_rmlr.py")
synth_rmlr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synth_rmlr)


def test_verb_means_average_the_classes_with_test_instances():
    per_class = [dict(verb=0, npos=3, ap=50.0), dict(verb=0, npos=1, ap=100.0), dict(verb=0, npos=0, ap=0.0),
                 dict(verb=1, npos=2, ap=20.0), dict(verb=2, npos=0, ap=0.0)]
    # verb 0: (50 + 100) / 2 (the class without instances is left out); verb 2 has no class with instances
    assert synth_rmlr.verb_means(per_class, ["hold", "kick", "fly"]) == {"hold": 75.0, "kick": 20.0}


def test_curve_counts_completed_epochs_and_the_report_averages_seeds(tmp_path):
    run = tmp_path / "plain_s0"
    run.mkdir()
    # the trainer writes 0-based epochs (engine/run.py logs state.epoch - 1 after the epoch)
    (run / "eval.csv").write_text("epoch,step,mAP_full,mAP_rare,mAP_non_rare\n0,250,10.0,5.0,12.0\n"
                                  "1,500,20.0,6.0,22.0\n")
    curve = synth_rmlr.read_curve(run)
    assert [c["epoch"] for c in curve] == [1, 2] and curve[1]["mAP_full"] == 20.0
    results = [{"ablation": "plain", "curve": curve},
               {"ablation": "plain", "curve": [{"epoch": 1, "mAP_full": 14.0}, {"epoch": 2, "mAP_full": 30.0}]},
               {"ablation": "full", "curve": []}]
    lines = synth_rmlr.curve_section(results, ["plain", "full"], tmp_path / "c.png")
    # epoch 2: mean of 20 and 30 = 25, sample std = sqrt(50) = 7.07; "full" has no curve: no column
    assert "| 2 | 25.00 +- 7.07 (2) |" in lines and "| 1 | 12.00 +- 2.83 (2) |" in lines
    assert lines[2].startswith("| epochs completed | plain HICO-DET mAP Full |") and not any("full " in x for x in lines[2:])
    assert (tmp_path / "c.png").stat().st_size > 0
    # an epoch only one seed reached shows its value and the count, no "+- nan"
    results[1]["curve"].append({"epoch": 3, "mAP_full": 31.0})
    assert "| 3 | 31.00 (1) |" in synth_rmlr.curve_section(results, ["plain"], tmp_path / "c1.png")


def test_verb_section_compares_plain_and_full_and_stars_pose_verbs(tmp_path):
    res = [{"ablation": "plain", "per_verb": {"hold": 10.0, "ride": 50.0}},
           {"ablation": "plain", "per_verb": {"hold": 20.0, "ride": 60.0}},
           {"ablation": "full", "per_verb": {"hold": 30.0, "ride": 40.0}}]
    lines = synth_rmlr.verb_section(res)
    assert "| hold* | 15.0 | 30.0 | +15.0 | 7.1, nan |" in lines
    assert "| ride | 55.0 | 40.0 | -15.0 | 7.1, nan |" in lines
    assert synth_rmlr.verb_section(res[:2]) == []          # no full run yet: no section
    assert "verbs.png" in synth_rmlr.verb_section(res, picture=tmp_path / "verbs.png")[0]
    assert (tmp_path / "verbs.png").stat().st_size > 0


def test_a_run_locked_by_another_process_is_not_trained_twice(tmp_path, monkeypatch):
    args = Namespace(out=str(tmp_path), detections="detr", threads=1)
    run = synth_rmlr.run_dir(args, "detr", "plain", 0)
    run.mkdir(parents=True)
    trained = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)   # the worker's; not this test process's
    monkeypatch.setattr(synth_rmlr, "run_one", lambda *a: trained.append(a) or {k: 1.0 for k in synth_rmlr.KEYS}
                        | {"cpu_s": 1.0})
    fd = os.open(run / "lock", os.O_CREAT | os.O_RDWR)     # another instance's worker holds the run
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert synth_rmlr.worker("plain", 0, args, []) == synth_rmlr.TAKEN and trained == []
    finally:
        os.close(fd)                                       # that process ended: the lock is gone with it
    assert synth_rmlr.worker("plain", 0, args, []) == 0 and len(trained) == 1


def test_oracle_run_is_evaluated_like_the_trainer_evaluates_it(tmp_path):
    """An oracle-detection run (``model.rmlr.detections=oracle``) reaches its final evaluation: the
    benchmark evaluates through the model's recipe, which hands the targets to the model in eval (without
    it the model refuses: oracle boxes come from the targets). Its mAP equals the trainer's own evaluation
    of the same last epoch (eval.csv), an independent path through engine/run.py."""
    from hoikit.data.synth import generate_synthhoi

    root = tmp_path / "synth"
    generate_synthhoi(root, 8, 3, seed=3, size=64, workers=1)
    args = Namespace(out=str(tmp_path / "out"), detections="oracle", data=str(root),
                     detector="hoikit/assets/synth_deformable.pt", epochs=1, lr_drop=1, max_steps=0, curves=["plain"])
    extra = ["data.synth_train=8", "data.synth_test=3", "data.synth_size=64", "data.scales=[64]", "data.max_size=64",
             "data.test_scale=64", "train.batch_size=4", "train.warmup_iters=1", "model.rmlr.representation_size=64",
             "model.rmlr.cml_dim=64", "model.rmlr.ire_dim=32", "model.rmlr.ire_ffn=64"]
    torch.set_num_threads(1)
    res = synth_rmlr.run_one("plain", 0, args, extra)
    run = tmp_path / "out" / "oracle" / "plain_s0"
    assert res["detections"] == "oracle" and res["steps"] == 2 and (run / "result.json").is_file()
    trainer = synth_rmlr.read_curve(run)
    assert [c["epoch"] for c in trainer] == [1]
    for k in synth_rmlr.KEYS:   # eval.csv keeps 5 decimals; a key without test classes is nan in both
        a, b = res[k], trainer[0][k]
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-4, (k, a, b)
    assert res["mAP_full"] > 0      # ground-truth boxes: some pairs are right even after 2 steps


def test_paired_difference_uses_the_seeds_both_rows_have():
    results = [{"ablation": "plain", "seed": s, "cpu_s": 1.0, "mAP_full": v, "mAP_rare": 0.0, "mAP_non_rare": 0.0}
               for s, v in [(0, 30.0), (1, 26.0), (2, 31.0)]]
    results += [{"ablation": "full", "seed": s, "cpu_s": 1.0, "mAP_full": v, "mAP_rare": 0.0, "mAP_non_rare": 0.0}
                for s, v in [(2, 32.0), (0, 31.0)]]
    summary = synth_rmlr.summarise(results, ["plain", "full"])
    # seed 0: 31 - 30 = +1, seed 2: 32 - 31 = +1 (seed 1 has no full run): mean +1, std 0
    assert synth_rmlr.paired_difference(summary, "full") == {"mean": 1.0, "std": 0.0, "n": 2}
    rows = synth_rmlr._rows(summary)
    assert any(r.startswith("| full | 2 |") and "| +1.00 +- 0.00 (2) |" in r for r in rows)
    assert any(r.startswith("| plain | 3 |") and "| - |" in r for r in rows)


def test_runs_feed_the_frozen_detector_at_the_scale_it_trained_at():
    # Table 2 ran on synth_deformable.pt, trained at 256 px: its runs stay at 256 px whatever the preset says
    args = Namespace(out="o", detections="detr", data="d", detector="hoikit/assets/synth_deformable.pt",
                     epochs=4, lr_drop=3, max_steps=0, curves=[])
    over = synth_rmlr.overrides(args, "full", 0)
    assert {"data.scales=[256]", "data.max_size=320", "data.test_scale=256"} <= set(over)
    from hoikit.config import load_config

    cfg = load_config("synth_rmlr", over)        # they win over the preset's 384 px
    assert (cfg.data.scales, cfg.data.max_size, cfg.data.test_scale) == ([256], 320, 256)


def test_mean_line_only_where_every_seed_has_a_value():
    import importlib.util
    spec = importlib.util.spec_from_file_location("seed_stats", _DIR / "seed_stats.py")
    seed_stats = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed_stats)
    # seed 0 evaluated after every epoch, seeds 1-2 only at the end: the mean exists at epoch 3 alone
    cs = [[{"epoch": 1, "m": 10.0}, {"epoch": 2, "m": 20.0}, {"epoch": 3, "m": 30.0}],
          [{"epoch": 3, "m": 33.0}], [{"epoch": 3, "m": 36.0}, {"epoch": 2}]]
    assert seed_stats.mean_points(cs, [1, 2, 3], "m") == [(3, 33.0)]
    assert seed_stats.mean_points(cs[:1], [1, 2, 3], "m") == [(1, 10.0), (2, 20.0), (3, 30.0)]
    # a seed evaluated twice after epoch 2 does not stand in for a seed that lacks it; NaN is missing
    cs2 = [[{"epoch": 2, "m": 1.0}, {"epoch": 2, "m": 3.0}], [{"epoch": 3, "m": 5.0}], [{"epoch": 2, "m": float("nan")}]]
    assert seed_stats.mean_points(cs2, [2, 3], "m") == []
    assert seed_stats.mean_points(cs2[:1], [2], "m") == [(2, 3.0)]


def test_a_one_seed_row_prints_its_value_without_a_spread():
    runs = [dict(ablation="full", seed=0, cpu_s=900.0, mAP_full=33.172, mAP_rare=31.878, mAP_non_rare=33.556),
            dict(ablation="plain", seed=0, cpu_s=800.0, mAP_full=32.0, mAP_rare=30.0, mAP_non_rare=33.0),
            dict(ablation="plain", seed=1, cpu_s=800.0, mAP_full=34.0, mAP_rare=31.0, mAP_non_rare=35.0)]
    summary = synth_rmlr.summarise(runs, ["plain", "full"])
    rows = {line.split(" | ")[0]: line for line in synth_rmlr._rows(summary) if line.startswith("| ")}
    assert "| 33.17 (1) | 31.88 (1) | 33.56 (1) |" in rows["| full"] and "nan" not in rows["| full"]
    assert "| +1.17 (1) |" in rows["| full"]                # the paired difference of its one seed
    assert "| 33.00 +- 1.41 |" in rows["| plain"]          # two seeds: mean 33, sample std sqrt(2)
