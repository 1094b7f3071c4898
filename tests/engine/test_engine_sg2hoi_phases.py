"""SG2HOI+ two-phase training through the engine on a tiny SynthHOI: phase switch, alternating
batches, exact resume across the phase boundary, SGDet + HICO-DET evaluation, num_val_im for synth."""
import csv

import pytest
import torch

from hoikit.config import Config
from hoikit.data.dataset import collate
from hoikit.io.checkpoint import load_checkpoint
from hoikit.engine.datasets import build_training_data
from hoikit.engine.phases import AlternatingBatchSampler
from hoikit.engine.trainer import fit, seed_everything
from hoikit.recipes import build_model, meta_to_dict


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from hoikit.data.synth import generate_synthhoi
    root = tmp_path_factory.mktemp("sg2phase") / "synth"
    generate_synthhoi(root, 16, 6, seed=3, size=64, workers=1)
    return root


def tiny_cfg(root, out, **train) -> Config:
    cfg = Config()
    cfg.output_dir, cfg.seed = str(out), 7
    d = cfg.data
    d.format, d.root, d.scales, d.max_size, d.test_scale = "synth", str(root), [56, 64], 64, 64
    d.random_crop, d.color_jitter, d.num_workers = False, 0.2, 0
    cfg.model.arch = "sg2hoi"
    cfg.model.detr.backbone = "tiny"
    s = cfg.model.sg2hoi
    s.variant, s.hss = "rand", "det"                          # no text model needed
    s.hidden_dim, s.seg_dim, s.nheads, s.dim_feedforward, s.dropout = 32, 16, 2, 64, 0.1
    s.enc_layers = s.rel_dec_layers = s.r2i_layers = s.transform_layers = s.hoi_dec_layers = 1
    s.num_rel_queries = s.num_hoi_queries = 8
    s.seg_convs = 1
    t = cfg.train
    t.epochs, t.sgg_epochs, t.batch_size, t.task = 3, 1, 4, "joint"
    t.lr, t.lr_backbone, t.sgg_lr, t.schedule, t.lr_drop = 1e-3, 1e-4, 2e-4, "step", 2
    t.eval_every, t.log_every = 10, 1
    for k, v in train.items():
        setattr(t, k, v)
    return cfg


def run(cfg, resume=False, callback=None):
    torch.set_num_threads(1)
    data = build_training_data(cfg)
    seed_everything(cfg.seed)
    model = build_model(cfg, data.meta)
    state = fit(cfg, model, data.train_set, collate_fn=collate, meta=meta_to_dict("sg2hoi", data.meta),
                evals=data.evals, primary_metric=data.primary, resume=resume, callback=callback)
    return state, data


def test_alternating_batches_cover_both_parts_and_resume_mid_epoch():
    s = AlternatingBatchSampler([10, 7], batch_size=2, seed=1)
    s.set_epoch(3)
    b = s.batches()
    part = [0 if max(x) < 10 else 1 for x in b]
    assert part == [0, 1, 0, 1, 0, 1, 0, 0]                   # 5 + 3 batches, alternating, then the rest
    assert all(min(x) >= 10 for x, p in zip(b, part) if p == 1)
    assert len({i for x in b for i in x}) == 16               # no index twice (one of part 1 dropped)
    s.set_epoch(3, start=5)
    assert list(s) == b[5:] and len(s) == 3
    s.set_epoch(4)
    assert s.batches() != b                                   # a new permutation per epoch
    r0, r1 = AlternatingBatchSampler([10, 7], 2, 2, 0, 1), AlternatingBatchSampler([10, 7], 2, 2, 1, 1)
    for r in (r0, r1):
        r.set_epoch(3)
    assert [max(x) < 10 for x in r0.batches()] == [max(x) < 10 for x in r1.batches()]   # ranks in step
    assert not {i for x in r0.batches() for i in x} & {i for x in r1.batches() for i in x}


def test_resume_across_the_phase_boundary_is_bit_identical(synth_root, tmp_path):
    phases = []

    def watch(event, state):
        if event == "step":
            phases.append(model_of["m"].task)

    full_cfg = tiny_cfg(synth_root, tmp_path / "full")
    data = build_training_data(full_cfg)
    sgg_n, hoi_n = len(data.train_set.parts["sgg"]), len(data.train_set.parts["hoi"])
    assert hoi_n == 16 and sgg_n > 8                          # synth: no val carve-out (num_val_im = 0)
    p1, p2 = sgg_n // 4, sgg_n // 4 + hoi_n // 4              # steps of phase-1 and phase-2 epochs
    model_of = {}
    seed_everything(full_cfg.seed)
    model_of["m"] = model = build_model(full_cfg, data.meta)
    full = fit(full_cfg, model, data.train_set, collate_fn=collate, meta=meta_to_dict("sg2hoi", data.meta),
               evals=data.evals, primary_metric=data.primary, callback=watch)
    assert full.step == p1 + 2 * p2
    assert phases == ["sgg"] * p1 + ["joint"] * (2 * p2)
    # interrupted: stop exactly at the boundary (end of phase 1), then mid phase 2, then to the end
    part = tmp_path / "part"
    run(tiny_cfg(synth_root, part, max_steps=p1))
    ck = load_checkpoint(part / "last.pt")
    assert (ck["epoch"], ck["iteration"], ck["phase"]) == (1, 0, "sgg")
    assert [g["name"] for g in ck["optimizer"]["param_groups"]] == ["backbone", "sgg"]
    run(tiny_cfg(synth_root, part, max_steps=p1 + 3), resume=True)
    ck = load_checkpoint(part / "last.pt")
    assert (ck["epoch"], ck["iteration"], ck["phase"]) == (1, 3, "joint")
    names = [g["name"] for g in ck["optimizer"]["param_groups"]]
    assert names == ["backbone", "sgg", "hoi"]
    # phase-2 learning rates (paper IV-D): HOI lr, SGG part sgg_lr, backbone lr_backbone (step schedule, no drop yet)
    assert [g["lr"] for g in ck["optimizer"]["param_groups"]] == [1e-4, 2e-4, 1e-3]
    run(tiny_cfg(synth_root, part), resume=True)
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(part / "last.pt")
    assert a["step"] == b["step"] == p1 + 2 * p2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), k
    # epoch 3 starts after lr_drop=2 epochs: every phase-2 rate x0.1
    assert [g["lr"] for g in b["optimizer"]["param_groups"]] == pytest.approx([1e-5, 2e-5, 1e-4])
    assert (tmp_path / "full" / "log.csv").read_text() == (part / "log.csv").read_text()
    # both protocols scored the final model: SGDet (with SynthHOI's zero-shot / long-tail lists) and HICO-DET
    rows = list(csv.DictReader(open(tmp_path / "full" / "eval.csv")))
    for key in ("R@50", "mR@100", "ng-R@50", "zR@50", "mR@50_tail", "mAP_full", "mAP_rare", "mAP_non_rare"):
        assert key in rows[-1], key
    assert full.best is not None and 0.0 <= full.best <= 100.0
    seed_everything(full_cfg.seed)
    init = build_model(full_cfg, data.meta).state_dict()
    moved = [k for k in init if k.startswith(("hoi_decoder.", "rel_decoder.")) and not torch.equal(init[k], a["model"][k])]
    assert len(moved) > 10                                    # both parts were trained


def test_single_task_hoi_after_sgg_freezes_the_sgg_part(synth_root, tmp_path):
    cfg = tiny_cfg(synth_root, tmp_path / "hoi", task="hoi", epochs=2)
    state, data = run(cfg)
    ck = load_checkpoint(tmp_path / "hoi" / "last.pt")
    assert ck["phase"] == "hoi_frozen"
    assert [g["name"] for g in ck["optimizer"]["param_groups"]] == ["hoi"]
    first = load_checkpoint(tmp_path / "hoi" / "last.pt")
    # the SGG part ends exactly as phase 1 left it: compare with a joint run stopped at the boundary
    run(tiny_cfg(synth_root, tmp_path / "p1", max_steps=len(data.train_set.parts["sgg"]) // 4))
    p1 = load_checkpoint(tmp_path / "p1" / "last.pt")
    hoi_prefix = ("r2i.", "feature_transform.", "query_transform.", "hoi_decoder.")
    for k, v in first["model"].items():
        if k.startswith(hoi_prefix):
            continue
        assert torch.equal(v, p1["model"][k]), k
    rows = list(csv.DictReader(open(tmp_path / "hoi" / "eval.csv")))
    assert "mAP_full" in rows[-1] and "R@50" in rows[-1]


def _lrs(run_dir):
    """``(step, lr)`` of every logged step (log_every=1: the rate the step trained with)."""
    return [(int(r["step"]), r["lr"]) for r in csv.DictReader(open(run_dir / "log.csv")) if r["lr"]]


def test_sgg_control_trains_each_sgg_batch_at_its_joint_run_rate_and_resumes_exactly(synth_root, tmp_path):
    # the joint run: phase 1 (SGG), then 2 epochs alternating SGG / HOI batches; cosine over all its steps
    joint = tiny_cfg(synth_root, tmp_path / "joint", schedule="cosine", lr_drop=0)
    _, data = run(joint)
    sgg_n, hoi_n = len(data.train_set.parts["sgg"]), len(data.train_set.parts["hoi"])
    p1, p2 = sgg_n // 4, sgg_n // 4 + hoi_n // 4
    joint_lr = dict(_lrs(tmp_path / "joint"))
    assert sorted(joint_lr) == list(range(1, p1 + 2 * p2 + 1))
    # which of the joint run's phase-2 steps are SGG batches (A, B, A, B, ...; test above)
    s = AlternatingBatchSampler([sgg_n, hoi_n], 4, seed=joint.seed)
    sgg_steps = list(range(1, p1 + 1))
    for e in (1, 2):
        s.set_epoch(e)
        sgg_steps += [p1 + (e - 1) * p2 + k + 1 for k, b in enumerate(s.batches()) if max(b) < sgg_n]
    expected = [joint_lr[t] for t in sgg_steps]
    # the control: the same SGG batches without the HOI ones, each at the rate it had in the joint run
    ctrl = tiny_cfg(synth_root, tmp_path / "ctrl", schedule="cosine", lr_drop=0, task="sgg", sgg_control=True)
    _, cdata = run(ctrl)
    assert cdata.train_set.schedule_as == {"sgg_control": "joint"}
    # the HOI set only counts: the model, its evaluations and best.pt's metric are a task=sgg run's
    assert cdata.meta[0] is None and [t.task for t in cdata.evals] == ["sgg"] and cdata.primary == "mR@50"
    got = _lrs(tmp_path / "ctrl")
    assert [t for t, _ in got] == list(range(1, p1 + 2 * (sgg_n // 4) + 1))
    assert [lr for _, lr in got] == expected
    assert float(expected[-1]) < float(expected[p1])          # the cosine does decay over phase 2
    # interrupted mid phase 2 and resumed: the rebuilt schedule continues at the same place
    part = tmp_path / "ctrl_part"
    run(tiny_cfg(synth_root, part, schedule="cosine", lr_drop=0, task="sgg", sgg_control=True, max_steps=p1 + 1))
    run(tiny_cfg(synth_root, part, schedule="cosine", lr_drop=0, task="sgg", sgg_control=True), resume=True)
    assert (part / "log.csv").read_text() == (tmp_path / "ctrl" / "log.csv").read_text()
    a, b = load_checkpoint(tmp_path / "ctrl" / "last.pt"), load_checkpoint(part / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_step_map_places_a_phase_in_its_reference_schedule():
    from hoikit.engine.phases import PhasedTrainingSet, part_order
    from hoikit.engine.schedule import StepMap
    from hoikit.errors import ConfigError
    assert part_order([10, 14], 2) == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1]   # 5 + 7 batches, by hand
    parts = {"a": list(range(10)), "b": list(range(14))}
    ts = PhasedTrainingSet(parts, lambda e: "one" if e == 0 else "ctrl", {"one": ("a",), "ctrl": ("a",),
                           "both": ("a", "b"), "rev": ("b", "a")}, {"ctrl": "both"})
    assert ts.schedule_positions("one", 2) is None
    assert ts.schedule_positions("ctrl", 2) == (12, [0, 2, 4, 6, 8])
    assert ts.schedule_positions("ctrl", 1, 2) == (12, [0, 2, 4, 6, 8])       # global batch 2 = 1 x 2 ranks
    ts.schedule_as["ctrl"] = "rev"                             # part a is permuted as part 1 there
    with pytest.raises(ConfigError, match="phase 'rev', which needs its parts a first"):
        ts.schedule_positions("ctrl", 2)
    # the control's batches are the joint phase's part-a batches, in order (more a than b batches too)
    for sizes in ([10, 14], [14, 6]):
        alone, both = AlternatingBatchSampler(sizes[:1], 2, seed=5), AlternatingBatchSampler(sizes, 2, seed=5)
        alone.set_epoch(2)
        both.set_epoch(2)
        assert alone.batches() == [b for b in both.batches() if max(b) < sizes[0]]
    m = StepMap([5, 5], [5, 12], [None, [0, 2, 4, 6, 8]])
    assert [m(t) for t in range(11)] == [0, 1, 2, 3, 4, 5, 7, 9, 11, 13, 17]
    with pytest.raises(ConfigError, match="epoch 2: 5 steps cannot follow the reference's 12"):
        StepMap([5, 5], [5, 12], [None, [0, 2, 4, 8, 6]])
