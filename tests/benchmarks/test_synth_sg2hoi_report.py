"""benchmarks/synth_sg2hoi.py (Table V benchmark): the report's per-seed values and the seed-paired
differences against the joint row, on hand-made result files."""
import importlib.util
import json
import sys
from argparse import Namespace
from pathlib import Path

_DIR = Path(__file__).parents[2] / "benchmarks"
sys.path.insert(0, str(_DIR))
_spec = importlib.util.spec_from_file_location("synth_sg2hoi", _DIR / "synth_sg2hoi.py")
synth_sg2hoi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synth_sg2hoi)


def write(out, row, seed, map_full, r50):
    d = out / f"{row}_s{seed}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps({"row": row, "seed": seed, "seconds": 10.0, "setup": {},
                                               "metrics": {"mAP_full": map_full, "R@50": r50}}))


def test_report_pairs_rows_with_joint_by_seed(tmp_path):
    write(tmp_path, "joint", 0, 20.0, 30.0)
    write(tmp_path, "joint", 1, 24.0, 32.0)
    write(tmp_path, "joint", 2, 22.0, 31.0)
    write(tmp_path, "hoi", 0, 18.0, 25.0)     # -2
    write(tmp_path, "hoi", 1, 20.0, 27.0)     # -4; seed 2 of hoi not run: only 2 pairs
    text = synth_sg2hoi.report(Namespace(out=str(tmp_path)))
    hoi = next(line for line in text.splitlines() if line.startswith("| hoi | s0"))
    # mean of (-2, -4) = -3, sample std = sqrt(2) = 1.41, n = 2; R@50: (-5, -5) -> -5.00 +- 0.00
    assert "s0 18.00, s1 20.00" in hoi and "-3.00 +- 1.41 (2)" in hoi and "-5.00 +- 0.00 (2)" in hoi
    joint = next(line for line in text.splitlines() if line.startswith("| joint | s0"))
    assert joint.endswith("| - | - |")
    # the summary table: mean +- std (min..max) over the three joint seeds
    assert "22.00 ± 2.00 (20.00..24.00)" in text


def test_report_of_the_sgg_row_has_no_hoi_values(tmp_path):
    write(tmp_path, "joint", 0, 20.0, 30.0)
    write(tmp_path, "joint", 1, 21.0, 31.0)
    write(tmp_path, "sgg", 0, float("nan"), 33.0)       # the SGG-only row evaluates no HOI (nan in its file)
    write(tmp_path, "sgg", 1, float("nan"), 35.0)
    lines = [x for x in synth_sg2hoi.report(Namespace(out=str(tmp_path))).splitlines() if x.startswith("| sgg |")]
    # R@50 minus joint by seed: +3, +4 -> +3.50 +- 0.71; no HOI value anywhere
    assert lines[1] == "| sgg | - | s0 33.00, s1 35.00 | - | +3.50 +- 0.71 (2) |"
    assert lines[0].startswith("| sgg | 0,1 | - | 34.00 ± 1.41 (33.00..35.00) |") and "nan" not in lines[0]


def test_report_drops_an_hoi_value_of_an_sgg_trained_row(tmp_path):
    write(tmp_path, "joint", 0, 20.0, 30.0)
    write(tmp_path, "sgg_control", 0, 0.37, 29.0)     # an untrained HOI head was scored: not a result
    r = tmp_path / "sgg_control_s0" / "result.json"
    res = json.loads(r.read_text())
    res["metrics"]["ko_mAP_full"] = 0.41
    r.write_text(json.dumps(res))
    assert synth_sg2hoi.sgg_only(res)["metrics"] == {"R@50": 29.0}
    lines = [x for x in synth_sg2hoi.report(Namespace(out=str(tmp_path))).splitlines()
             if x.startswith("| sgg_control |")]
    assert lines[1] == "| sgg_control | - | s0 29.00 | - | -1.00 (1) |"   # one pair: no std
    assert "0.37" not in lines[0]


def test_pair_recall_counts_pairs_with_both_boxes_in_one_query():
    import torch

    class Fixed(torch.nn.Module):
        """Two HOI queries: query 0 has the right human and a wrong object, query 1 the reverse."""
        def forward(self, images):
            return [{"hoi": {"human_boxes": torch.tensor([[0., 0., 10., 10.], [50., 50., 60., 60.]]),
                             "obj_boxes": torch.tensor([[50., 50., 60., 60.], [20., 20., 30., 30.]]),
                             "obj_labels": torch.tensor([1, 1])}}]

    target = {"boxes": torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.], [0., 0., 10., 11.],
                                     [50., 50., 60., 60.]]),
              "labels": torch.tensor([0, 1, 2, 2]),
              "hois": torch.tensor([[0, 1, 0], [2, 1, 0], [0, 3, 0], [0, 3, 1], [0, 3, 2]])}
    r = synth_sg2hoi.pair_recall(Fixed(), [(torch.zeros(3, 8, 8), target)], 1)
    # pairs (0,1), (2,1): a human box (query 0, IoU 1 and 10/11) and an object box (query 1) exist, never in
    # one query; pair (0,3), three verbs: query 0 has both boxes but labels the object 1, not 2. Per pair
    # 1 of 3 has both boxes; per triplet 3 of 5
    assert r == {"pairs": 3, "triplets": 5, "human": 100.0, "object": 100.0, "both": 100.0 / 3, "labelled": 0.0,
                 "both_triplets": 60.0, "labelled_triplets": 0.0}
    target["labels"][3] = 1
    r = synth_sg2hoi.pair_recall(Fixed(), [(torch.zeros(3, 8, 8), target)], 1)
    assert r["labelled"] == 100.0 / 3 and r["labelled_triplets"] == 60.0


def test_start_point_resumes_a_runs_own_checkpoint_first(tmp_path):
    run, p1 = tmp_path / "hoi_s0", tmp_path / "phase1_s0.pt"
    assert synth_sg2hoi.start_point(run, None) == "scratch"
    assert synth_sg2hoi.start_point(run, p1) == "phase1"
    run.mkdir()
    (run / "last.pt").write_bytes(b"x")          # killed after the phase-1 copy or mid-training
    assert synth_sg2hoi.start_point(run, p1) == "own"
    assert synth_sg2hoi.start_point(run, None) == "own"


def test_curves_rows_are_evaluated_every_epoch(tmp_path):
    args = Namespace(root="r", train=10, test=5, detr="", epochs=3, sgg_epochs=1, batch=2, lr=1e-4, lr_backbone=1e-5,
                     preset="synth_sg2hoi", extra=[], curves=["joint"])
    assert synth_sg2hoi.bench_config(args, "joint", 0, tmp_path).train.eval_every == 1
    assert synth_sg2hoi.bench_config(args, "hoi", 0, tmp_path).train.eval_every == 100000


def test_read_curve_and_curve_report(tmp_path):
    run = tmp_path / "joint_s0"
    run.mkdir()
    # the trainer's eval.csv: 0-based epoch; the SGG-only first epoch has no HOI metric in this made-up file
    (run / "eval.csv").write_text("epoch,step,R@50,mAP_full,mAP_rare\n0,10,20.0,,\n1,30,30.0,5.0,1.0\n")
    curve = synth_sg2hoi.read_curve(run)
    assert curve == [{"epoch": 1, "R@50": 20.0}, {"epoch": 2, "R@50": 30.0, "mAP_full": 5.0, "mAP_rare": 1.0}]
    assert synth_sg2hoi.read_curve(tmp_path / "missing") == []
    write(tmp_path, "joint", 0, 5.0, 30.0)
    write(tmp_path, "joint", 1, 7.0, 34.0)
    for seed, c in ((0, curve), (1, [{"epoch": 1, "R@50": 22.0}, {"epoch": 2, "R@50": 34.0, "mAP_full": 7.0}])):
        path = tmp_path / f"joint_s{seed}" / "result.json"
        res = json.loads(path.read_text())
        res["curve"] = c
        path.write_text(json.dumps(res))
    text = synth_sg2hoi.report(Namespace(out=str(tmp_path), report=str(tmp_path / "r.md")))
    # epoch 1: R@50 (20, 22) -> 21 +- 1.41, no HOI value; epoch 2: mAP (5, 7) -> 6 +- 1.41, R@50 (30, 34) -> 32 +- 2.83
    assert "| 1 | - | 21.00 +- 1.41 (2) |" in text
    assert "| 2 | 6.00 +- 1.41 (2) | 32.00 +- 2.83 (2) |" in text
    assert (tmp_path / "r.curves.png").stat().st_size > 1000


def test_final_metrics_of_a_run_resumed_after_its_last_evaluation(tmp_path):
    # eval.csv after a 1 + 2 epoch run (0-based epochs 0, 2); a killed-and-resumed evaluation repeated epoch 2
    (tmp_path / "eval.csv").write_text("epoch,step,R@50,mAP_full\n0,10,20.0,\n2,30,30.0,5.0\n2,30,31.0,6.0\n")
    assert synth_sg2hoi.final_metrics(tmp_path, 3) == {"R@50": 31.0, "mAP_full": 6.0}
    assert synth_sg2hoi.final_metrics(tmp_path, 1) == {"R@50": 20.0}
    assert synth_sg2hoi.final_metrics(tmp_path, 2) == {}
    assert synth_sg2hoi.final_metrics(tmp_path / "missing", 3) == {}


def test_recover_phase1_only_from_the_end_of_phase_1(tmp_path):
    from hoikit.io.checkpoint import save_checkpoint

    joint, p1 = tmp_path / "joint_s0", tmp_path / "phase1_s0.pt"
    joint.mkdir()
    assert not synth_sg2hoi.recover_phase1(joint, p1, 1)                       # no checkpoint yet
    save_checkpoint({"format": "hoikit", "config": {}, "epoch": 1, "iteration": 5, "model": {}}, joint / "last.pt")   # mid phase 2
    assert not synth_sg2hoi.recover_phase1(joint, p1, 1) and not p1.exists()
    save_checkpoint({"format": "hoikit", "config": {}, "epoch": 1, "iteration": 0, "model": {}}, joint / "last.pt")   # end of phase 1
    assert synth_sg2hoi.recover_phase1(joint, p1, 1) and p1.read_bytes() == (joint / "last.pt").read_bytes()
    assert not synth_sg2hoi.recover_phase1(joint, p1, 1)                       # never overwritten
    assert not synth_sg2hoi.recover_phase1(joint, tmp_path / "other.pt", 2)    # phase 1 of 2 epochs: not this one


def test_report_time_column_leaves_out_resumed_runs(tmp_path):
    write(tmp_path, "joint", 0, 20.0, 30.0)
    write(tmp_path, "joint", 1, 24.0, 32.0)
    path = tmp_path / "joint_s1" / "result.json"
    res = json.loads(path.read_text())
    res.update(seconds=2.0, start="own")
    path.write_text(json.dumps(res))
    text = synth_sg2hoi.report(Namespace(out=str(tmp_path)))
    joint = next(line for line in text.splitlines() if line.startswith("| joint | 0,1 |"))
    assert joint.endswith("| 10 |")          # the fresh run's 10 s, not the mean with the resumed run's 2 s


def test_row_metrics_prefers_fit_then_eval_csv_else_names_the_run(tmp_path):
    import pytest

    (tmp_path / "eval.csv").write_text("epoch,step,R@50,mAP_full\n0,10,20.0,\n1,30,30.0,5.0\n")
    assert synth_sg2hoi.row_metrics({"mAP_full": 9.0}, tmp_path, 2) == {"mAP_full": 9.0}
    assert synth_sg2hoi.row_metrics(None, tmp_path, 2) == {"R@50": 30.0, "mAP_full": 5.0}
    with pytest.raises(RuntimeError, match=f"{tmp_path}: training is complete but no final evaluation"):
        synth_sg2hoi.row_metrics({}, tmp_path, 3)          # no evaluation after epoch 3
