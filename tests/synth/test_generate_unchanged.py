"""SynthHOI generation does not change under refactoring: for a given seed the planner's output
(every intent's staged person and object) and a small generated set are the same as before.

The expected digests were computed with the code before issue 10's refactor of
``planner.stage`` (commit 4000a68). A deliberate change of the generator changes them: then
regenerate the digests with :func:`stage_digests` / :func:`dataset_digests`, say so in the commit,
and note it where the SynthHOI numbers are reported.
"""
import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from hoikit.data.synth import generate_synthhoi
from hoikit.data.synth.classes import INTENTS, Intent
from hoikit.data.synth.planner import stage

STAGE_SEEDS = range(6)
EXPECTED_STAGE = {
    'hold/ball': '7e59a9a5bb520a88d86aa6ecbca7e6665107c57bcc4c0d06615f26ff2dd4ccfd',
    'hold/cup': '2cbff70e182ac3d27d32afa8a58cc6049a483a083bdf6cb3f1f8403ffc7fb73e',
    'hold/book': 'd54a9d3fd8a733082fffd509e4d36752568d17e7cfab6fce9c1b15403bcd8042',
    'hold/box': 'd8962f3fca3c0710cfdd693a46b9f8aef34a00309fc493754199eec4085e32f0',
    'hold/umbrella': 'ffa49ffcf092dd2d0418f4bd746c843d8d6d8a304359e6c48983cef63789d4e4',
    'hold/kite': '8513ded57330a22fcdfbfca4984d1a6ded2ee618dc71e99233ab928a3878c600',
    'throw/ball': '716fbc562cb7dc55a859770820cb8267c83664c2d2ae1e1055f30b51cee6ac83',
    'throw/book': 'f96299eebecb6029206e8247fc6deae578fad25a06807913cf88f6474ca6617e',
    'kick/ball': '7b185af76d6be148ea2bef8b88e4edc6350d2112530d1c41950a956eda428688',
    'kick/box': '1880e6d4ac063cc74a4caf4f2b873bb3c6c0239be752287b164016d63c17fafd',
    'sit_on/chair': '92114fddad2f9beab3661b36547c6705d279fbadb0e7e9349e6e187dbfe873e2',
    'sit_on/box': '101867ac947c4e1f911e6634e05237d695eda04a59dac04658469fe025e068d4',
    'sit_on/table': '2d443d17cc85bff588f08ca3950f1b61939967c0f366e775ee1f23def0ac5c64',
    'ride/bicycle': '306e9e2b23018c62b361651cf73e3c9a95b32b55c85073950a91606bfc015f7b',
    'carry/box': '0527a707f061d1d90a33a6a7372bcadda86b057b2b3c602630ee439547522079',
    'carry/chair': '64f41860b3c9bc07ad96ad7b6dfb6ad0cee5005eb218f258f2e43a4d71fb9215',
    'carry/ball': '03ba1711a3d456f449dc658ce1c270c1b30e983af0c58bde8a42e1c01e0f1b42',
    'push/box': '600683c37639655a9c8bd4796e6b6dbbfc467b115d5969bd97d41b028a9b1f3f',
    'push/bicycle': '0ad00003c182e1ae89d405c0c81801585599e5dd61c21588ed26c8f036dd3f51',
    'push/chair': '0c6aafb6e61d4a83bb28d224a06b2659a20e9c092dde67a3eb894003d3062f81',
    'drink_with/cup': 'a3b8c8b5ad53ba73100b883ab51549ac5e1c980361ea18f3f54f9ee3b7813648',
    'read/book': '2f53d8b06f3d72a1b3438c9ef6d7b59283f4b1db1b34b7d849bbe9b0721ba5e3',
    'fly/kite': '111eddd4f427f7ff6dea4b83e876574f8e304708eef3f48e612e0e430bad3fe7',
    'stand_on/box': '095e6c8647ad82c05634b1cd92ca739fe84c8449388e27750b8220866a91e4e6',
    'stand_on/table': '40b7e2f5f25a583ce346272c15e0ce583942f994cd9c8810b3a9ff205c081f50',
    'stand_on/chair': 'b9427e21fb0b3cd450ef27f11ce68fb7f4f061921cc060d3d310d28c276a7b8b',
    'look_at/bicycle': '01625fde13fb8ecccc5115dc6ec9dec7ade46f7cf68f136b77bfe4e3d1a33650',
    'look_at/table': '1574da939f0648a064b8ab43fefb7dc92e20344ee6d064cdcedc72c6fb918b87',
    'look_at/chair': 'becc417602a53a0b04143c83388628d35e7ee889a06002bf0ffba3adaf3a9b8b',
    'next_to/ball': '28d6d9860e7e3c2a2f5348c748d1465c07d34edadd2b45a1072cc6025a6da851',
    'next_to/box': 'e0579cfb9ec2b171c1853fa0e0f102a8ad81b6d6a66b4e3bd380b9cb33017403',
    'idle/': 'a63bbefed420f7513c72ef190a2a6bc445e96694c21887d7763d3591f8d63da1',
}
EXPECTED_DATASET = {
    'hicodet/instances_train.json': '3bebf7776224bde22aee49b1c449581f1b2e0533b35a82065aaeb0bc97e19254',
    'hicodet/instances_test.json': '71b953b016437ac03c6bc87e33d678b3c76396216b02c9a184ac2ae0a475c08e',
    'vcoco/vcoco_train.json': '60f20a2824496d01cb4665905fe3afe841c47b0d16fc17720d7dbb3929c27a4e',
    'vcoco/vcoco_test.json': '4a65ea38f0974554c6e1cd906593d0cdc6ef3e32597117e9aca769ee2a5701e9',
    'vcoco/instances_train.json': 'ec8aa6f9e68ca37a8a0dca13eb576e961e26584296c5d4691ec56059e8b6003c',
    'vg/image_data.json': '08a843d8f39643227f07104a7e0a1ad9ca02e70096351c964c965cd805388523',
    'vg/VG-SGG-with-attri.h5 arrays': 'b8bc99ca26efd7a21b89b04593fd3dd60507170e1f8e83a872cd641632581368',
    'pixels': '0dc5ec784be00ba9754a39c96bf5d8d65f821905cc5e7bfadef23dbfa6132a33',
}


def _canonical(x):
    """Exact text of nested arrays / floats (repr round-trips every float64)."""
    if isinstance(x, dict):
        return {k: _canonical(v) for k, v in sorted(x.items())}
    if isinstance(x, (list, tuple)):
        return [_canonical(v) for v in x]
    if isinstance(x, np.ndarray):
        return [repr(float(v)) for v in x.ravel()] + [list(x.shape)]
    if isinstance(x, (float, np.floating)):
        return repr(float(x))
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def _thing(thing):
    if thing is None:
        return None
    prims = [[p.kind, list(p.pts), list(p.color), getattr(p, "width", None)] for p in thing.prims + thing.loose]
    return {"name": thing.name, "prims": prims, "anchors": {k: list(v) for k, v in thing.anchors.items()}}


def stage_digests() -> dict:
    """``"name/obj" -> sha256`` over seeds of what :func:`stage` returns (keypoints, pose, colours,
    object primitives and anchors, depth offset) and the generator's next draw (number of draws)."""
    out = {}
    for intent in INTENTS + [Intent("idle")]:
        h = hashlib.sha256()
        for seed in STAGE_SEEDS:
            rng = np.random.default_rng(seed)
            p, thing, off = stage(rng, intent, 120.0, 200.0, 110.0, 256, 240)
            pose = {k: v for k, v in vars(p.pose).items()}
            rec = {"kp": p.keypoints(), "pose": pose, "colors": [p.skin, p.shirt, p.pants], "hip": p.hip,
                   "thing": _thing(thing), "off": off, "next": rng.random()}
            h.update(json.dumps(_canonical(rec), sort_keys=True, default=repr).encode())
        out[f"{intent.name}/{intent.obj}"] = h.hexdigest()
    return out


DATASET_FILES = ["hicodet/instances_train.json", "hicodet/instances_test.json", "vcoco/vcoco_train.json",
                 "vcoco/vcoco_test.json", "vcoco/instances_train.json", "vg/image_data.json"]


def dataset_digests(root: Path) -> dict:
    """sha256 of the annotation files, of the VG h5 arrays and of the decoded image pixels."""
    out = {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in DATASET_FILES}
    h = hashlib.sha256()
    with h5py.File(root / "vg" / "VG-SGG-with-attri.h5", "r") as f:
        for name in sorted(f.keys()):
            h.update(name.encode())
            h.update(np.ascontiguousarray(f[name][()]).tobytes())
    out["vg/VG-SGG-with-attri.h5 arrays"] = h.hexdigest()
    h = hashlib.sha256()
    for p in sorted((root / "images").rglob("*.png")):
        with Image.open(p) as im:
            h.update(p.name.encode())
            h.update(np.asarray(im.convert("RGB")).tobytes())
    out["pixels"] = h.hexdigest()
    return out


def test_every_intent_is_staged_as_before():
    got = stage_digests()
    assert set(got) == set(EXPECTED_STAGE)
    changed = [k for k in got if got[k] != EXPECTED_STAGE[k]]
    assert not changed, f"planner.stage output changed for intents {changed}"


def test_a_small_generated_set_is_byte_identical_to_before(tmp_path):
    generate_synthhoi(tmp_path, 24, 12, seed=5, size=96, image_format="png")
    got = dataset_digests(tmp_path)
    changed = [k for k in got if got[k] != EXPECTED_DATASET[k]]
    assert not changed, f"SynthHOI generation changed: {changed}"
