"""``model.rmlr.detector_cache``: the frozen detector run one image at a time, its outputs cached by
image bytes. The cache changes speed, never values: cold and warm forwards are the same bits, training
equals a per-image reference written here, a changed or flipped image misses, the memory cap evicts
the least recently used row, and a killed / resumed run equals an uninterrupted one."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hoikit.config import ConfigError, load_config, validate
from hoikit.io.checkpoint import load_checkpoint
from hoikit.models.rmlr.detector_cache import DetectorCache

from rmlr_tiny import build_tiny, targets_from_detections, tiny_images

ROOT = Path(__file__).resolve().parents[3]
KILL = ROOT / "benchmarks" / "kill_train.py"


def _count_detector_calls(model):
    calls = []
    model.detector.register_forward_pre_hook(lambda mod, args: calls.append(len(args[0])))
    return calls


def _loss_and_grads(model, images, targets):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    losses = model(images, targets)
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads


def reference_detect(detector, images, keep_pos):
    """Independent per-image reference of the cached path: one detector call per image, its C5 map,
    mask and position encoding zero-padded bottom-right into a common frame (mask True there), the
    last decoder layer stacked, and UPT's global pooling over each image's own (unpadded) map."""
    outs = []
    with torch.no_grad():
        for im in images:
            outs.append(detector([im]))
    h = max(o["features"].shape[-2] for o in outs)
    w = max(o["features"].shape[-1] for o in outs)

    def pad(t, value):   # [1, C, h_i, w_i] or [1, h_i, w_i] -> [C, h, w] / [h, w]
        return torch.nn.functional.pad(t[0], (0, w - t.shape[-1], 0, h - t.shape[-2]), value=value)

    out = dict(features=torch.stack([pad(o["features"], 0.0) for o in outs]),
               mask=torch.stack([pad(o["mask"], True) for o in outs]),
               hs=torch.stack([o["hs"][-1][0] for o in outs])[None],
               pred_logits=torch.cat([o["pred_logits"] for o in outs]),
               pred_boxes=torch.cat([o["pred_boxes"] for o in outs]),
               global_features=torch.cat([o["features"].mean(dim=(2, 3)) for o in outs]))
    if keep_pos:
        out["pos"] = torch.stack([pad(o["pos"], 0.0) for o in outs])
    return out


@pytest.mark.parametrize("ablation", ["plain", "wo_cl"])
def test_cold_and_warm_forwards_give_identical_losses_and_gradients(ablation, tiny_meta):
    model = build_tiny(tiny_meta, ablation, detector_cache=True)
    images = tiny_images()
    targets = targets_from_detections(model, images)
    model.detector_cache.clear()
    calls = _count_detector_calls(model)
    cold = _loss_and_grads(model, images, targets)
    assert calls == [1, 1] and model.detector_cache.num_rows == 2     # one unpadded image per detector call
    hits = model.detector_cache.hits
    warm = _loss_and_grads(model, images, targets)
    assert calls == [1, 1] and model.detector_cache.hits == hits + 2  # served from the cache, no detector run
    assert cold[0].keys() == warm[0].keys() and cold[1].keys() == warm[1].keys() and cold[1]
    for k in cold[0]:
        assert torch.equal(cold[0][k], warm[0][k]), k
    for k in cold[1]:
        assert torch.equal(cold[1][k], warm[1][k]), k


def test_training_with_the_cache_equals_an_uncached_per_image_reference(tiny_meta):
    # 2 epochs over 2 images and their flips (4 distinct inputs, 2 of them per step): the second
    # epoch is served from the cache; the reference model runs the detector on every image, every step
    images = tiny_images()
    flipped = [im.flip(-1) for im in images]
    cached = build_tiny(tiny_meta, "wo_cl", detector_cache=True)
    ref = build_tiny(tiny_meta, "wo_cl")
    ref._detect = lambda ims: reference_detect(ref.detector, ims, keep_pos=True)
    targets = targets_from_detections(ref, images)
    flip_targets = []
    for t, im in zip(targets, images):
        b = t["boxes"].clone()
        b[:, [0, 2]] = im.shape[-1] - t["boxes"][:, [2, 0]]
        flip_targets.append({**t, "boxes": b})
    batches = [(images, targets), (flipped, flip_targets)] * 2
    opts = [torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3) for m in (cached, ref)]
    cached.detector_cache.clear()
    for step, (ims, tg) in enumerate(batches):
        values = []
        for m, opt in zip((cached, ref), opts):
            m.train()
            torch.manual_seed(step)
            loss = sum(m(ims, tg).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            values.append(float(loss.detach()))
        assert abs(values[0] - values[1]) <= 1e-6, (step, values)
    assert cached.detector_cache.hits == 4 and cached.detector_cache.misses == 4
    for (n, a), b in zip(cached.state_dict().items(), ref.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), n
    moved = build_tiny(tiny_meta, "wo_cl").state_dict()
    assert not torch.equal(moved["fusion.weight"], cached.state_dict()["fusion.weight"])


def test_a_changed_or_flipped_image_misses_the_cache(tiny_meta):
    model = build_tiny(tiny_meta, "wo_cl", detector_cache=True)
    fresh = build_tiny(tiny_meta, "wo_cl", detector_cache=True)
    model.eval()
    fresh.eval()
    images = tiny_images()
    with torch.no_grad():
        model(images)
        assert (model.detector_cache.hits, model.detector_cache.misses) == (0, 2)
        images[0][1, 10, 20] += 1e-3                  # one pixel, edited in place
        images[1] = images[1].flip(-1)                # same pixels, other order
        out = model(images)
        assert (model.detector_cache.hits, model.detector_cache.misses) == (0, 4)
        expected = fresh(images)
    for o, e in zip(out, expected):
        for k in o:
            assert torch.equal(o[k], e[k]), k


def test_memory_cap_evicts_the_least_recently_used_rows():
    cache = DetectorCache(max_mb=2.5)             # two 1 MiB rows fit, three do not
    rows = {k: {"features": torch.full((2 ** 18,), float(i))} for i, k in enumerate([b"a", b"b", b"c"])}
    cache.put(b"a", rows[b"a"])
    cache.put(b"b", rows[b"b"])
    assert cache.get(b"a") is not None            # "a" is now the most recently used
    cache.put(b"c", rows[b"c"])
    assert (b"a" in cache, b"b" in cache, b"c" in cache) == (True, False, True)
    assert cache.num_rows == 2 and cache.nbytes == 2 * 2 ** 20 and cache.evictions == 1
    assert torch.equal(cache.get(b"a")["features"], rows[b"a"]["features"])
    cache.put(b"big", {"features": torch.zeros(3 * 2 ** 18)})   # 3 MiB: larger than the cap, not kept
    assert cache.num_rows == 2 and b"big" not in cache
    cache.clear()
    assert (cache.num_rows, cache.nbytes) == (0, 0)


def _row_bytes_by_hand(model, image):
    """Bytes of one cached row from the detector's shapes: C5 [Cb, h, w] float32 (h, w = ceil(side /
    stride)), mask [h, w] bool, pos [D, h, w], last-layer tokens [Q, D], logits [Q, C + 1] (DETR's
    no-object column), boxes [Q, 4]; tiny_config: D = 32, Q = 12, C = 3."""
    cb, s, d, q, c = model.detector.backbone.num_channels, model.detector.backbone.stride, 32, 12, 3 + 1
    h, w = -(-image.shape[-2] // s), -(-image.shape[-1] // s)
    return 4 * (cb * h * w + d * h * w + q * d + q * c + q * 4) + h * w


def test_memory_cap_of_the_model_counts_rows_by_hand(tiny_meta):
    images = tiny_images()                        # 64 x 64 and 48 x 64 pixels: C5 maps of 4 x 4 and 3 x 4 cells
    model = build_tiny(tiny_meta, "wo_cl")
    sizes = [_row_bytes_by_hand(model, im) for im in images]
    assert sizes[0] > sizes[1]
    model.eval()
    for cap, expected in ((sizes[0] + sizes[1] - 1, (1, sizes[1], 1)),   # the second row evicts the first
                          (sizes[0] + sizes[1], (2, sizes[0] + sizes[1], 0)),
                          (sizes[1] - 1, (0, 0, 0))):                    # no row fits
        model.detector_cache = DetectorCache(cap / 2 ** 20)
        with torch.no_grad():
            model(images)
        cache = model.detector_cache
        assert (cache.num_rows, cache.nbytes, cache.evictions) == expected, cap
        assert cache.misses == 2


def test_eval_on_one_image_equals_the_uncached_model_and_the_cache_is_never_saved(tiny_meta):
    # evaluation runs one image per forward: there the per-image path is today's batched path
    plain = build_tiny(tiny_meta, "wo_cl")
    cached = build_tiny(tiny_meta, "wo_cl", detector_cache=True)
    plain.eval()
    cached.eval()
    with torch.no_grad():
        for im in tiny_images():
            for _ in range(2):                    # cold, then warm
                a, b = plain([im])[0], cached([im])[0]
                assert a.keys() == b.keys()
                for k in a:
                    assert torch.equal(a[k], b[k]), k
    assert cached.detector_cache.hits == 2
    state = cached.state_dict()
    assert state.keys() == plain.state_dict().keys()
    cached.load_state_dict(state)                 # new weights: the rows are dropped
    assert cached.detector_cache.num_rows == 0


def test_config_range_of_the_memory_cap():
    with pytest.raises(ConfigError, match="model.rmlr.detector_cache_mb"):
        validate(load_config(None, ["model.rmlr.detector_cache=true", "model.rmlr.detector_cache_mb=-1"]))


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def test_sigkill_then_resume_with_the_cache_is_bit_identical(tmp_path):
    # synth_rmlr at 64 px on 12 images, batch 4: 3 steps per epoch, 2 epochs, a checkpoint every 2
    # steps. The uninterrupted run serves epoch 2 partly from its warm cache; the killed run dies
    # after step 5 and resumes from step 4 with an empty cache (the cache is not in checkpoints).
    from hoikit.data.synth import generate_synthhoi

    root = tmp_path / "synth"
    generate_synthhoi(root, 12, 3, seed=3, size=64, workers=1)
    overrides = [f"data.root={root}", "data.synth_train=12", "data.synth_test=3", "data.synth_size=64",
                 "data.scales=[64]", "data.max_size=80", "data.test_scale=64", "train.batch_size=4",
                 "train.log_every=1", "train.warmup_iters=2", "train.epochs=2", "train.checkpoint_every=2",
                 "model.rmlr.ablation=wo_cl", "model.rmlr.representation_size=64", "model.rmlr.ire_dim=32",
                 "model.rmlr.ire_ffn=64", "model.rmlr.box_score_thresh=0.05", "model.rmlr.detector_cache=true"]
    start = [sys.executable, "-m", "hoikit.cli", "train", "synth_rmlr", *overrides, "--output-dir"]
    full = subprocess.Popen(start + [str(tmp_path / "full")], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    killed = subprocess.run([sys.executable, str(KILL), "--kill-at", "5", *start[3:], str(tmp_path / "killed")],
                            cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-3000:]
    mid = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert mid["step"] == 4
    mid = mid["model"]
    resumed = subprocess.run([sys.executable, "-m", "hoikit.cli", "train", "synth_rmlr", "--resume", "--output-dir",
                              str(tmp_path / "killed")], cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert full.wait(600) == 0, full.communicate()[1][-3000:]
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert a["step"] == b["step"] == 6 and a["config"]["model"]["rmlr"]["detector_cache"] is True
    bad = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not bad, f"{len(bad)} of {len(a['model'])} tensors differ, e.g. {bad[0]}"
    for name in ("log.csv", "eval.csv"):
        assert (tmp_path / "full" / name).read_text() == (tmp_path / "killed" / name).read_text()
    # the compared weights did train: steps 5-6 moved the interaction head from the step-4 checkpoint
    assert any(not torch.equal(mid[k], a["model"][k]) for k in mid if k.startswith("interaction_head."))


def test_an_inference_build_has_no_detector_cache(tiny_meta):
    from hoikit.models.rmlr.build import build_rmlr
    from rmlr_tiny import tiny_config

    cfg = tiny_config("wo_cl", detector_cache=True)
    assert build_rmlr(cfg, tiny_meta).detector_cache is not None
    assert build_rmlr(cfg, tiny_meta, inference=True).detector_cache is None
