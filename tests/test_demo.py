"""`hoikit demo` end to end at toy size: every step runs, the files appear, and the HICO-DET
numbers it reports are those `hoikit test` computes for its RmLR checkpoint on the same images
(a separate path: the test command builds its own dataset and evaluator from the checkpoint)."""
import json

import pytest

from hoikit.cli import main


def test_toy_demo_reports_what_hoikit_test_computes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--train", "8", "--test", "4", "--rmlr-epochs", "1",
                 "--pictures", "2", "--train-rmlr"]) == 0
    printed = capsys.readouterr().out
    assert all(f"[{i}/5]" in printed for i in range(1, 6)) and "HICO-DET mAP" in printed
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["dataset"] == {"root": str(out / "synthhoi"), "train": 8, "test": 4, "size": 256}
    assert {"AP", "AP50"} <= set(summary["detector"])          # the shipped detector, scored on the 4 images
    rmlr = summary["checkpoints"]["rmlr"]
    assert rmlr == str(out / "rmlr" / "last.pt")
    assert len(list((out / "predictions").glob("*.json"))) == 2 == len(list((out / "predictions").glob("*.png")))

    assert main(["test", "--checkpoint", rmlr, "--out", str(tmp_path / "test"), "--device", "cpu"]) == 0
    tested = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert tested["images"]["hicodet"] == 4
    for setting in ("default", "known_object"):
        for k in ("full", "rare", "non_rare"):
            assert summary["hicodet"][setting][k] == pytest.approx(tested["hicodet"][setting][k], abs=1e-9, nan_ok=True)


def test_demo_uses_the_shipped_rmlr_when_there(tmp_path, capsys):
    from hoikit.commands.demo import _asset

    shipped = _asset("synth_rmlr.pt")
    assert shipped, "hoikit/assets/synth_rmlr.pt is missing (docs/synthhoi-training.md says how to make it)"
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--train", "2", "--test", "3", "--pictures", "1"]) == 0
    assert "RmLR: shipped checkpoint" in capsys.readouterr().out
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["checkpoints"]["rmlr"] == shipped and "rmlr_s" not in summary["timings_s"]  # nothing trained
    assert not (out / "rmlr").exists()
    # the shipped RmLR was trained on the shipped detector, at the scale that detector was trained at
    from hoikit.io.checkpoint import detector_input_overrides, load_checkpoint

    rmlr_cfg = load_checkpoint(shipped)["config"]
    assert summary["checkpoints"]["detector"] == _asset("synth_deformable_384.pt")
    assert rmlr_cfg["model"]["detr"]["checkpoint"] == "hoikit/assets/synth_deformable_384.pt"
    data = rmlr_cfg["data"]
    assert detector_input_overrides(_asset("synth_deformable_384.pt")) == [
        f"data.scales=[{','.join(map(str, data['scales']))}]", f"data.max_size={data['max_size']}",
        f"data.test_scale={data['test_scale']}"]
