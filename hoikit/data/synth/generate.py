"""Entry point: generate a SynthHOI dataset on disk in every supported format.

    from hoikit.data.synth import generate_synthhoi
    paths = generate_synthhoi("data/synth", n_train=2000, n_test=500, seed=0, size=256, workers=2)

Layout (documented in docs/synthhoi.md)::

    DIR/images/{train,test}/<image_id>.jpg
    DIR/hicodet/instances_{train,test}.json
    DIR/vcoco/instances_vcoco_{train,test}.json, vcoco_{train,test}.json, instances_{train,test}.json,
              {train,test}.ids
    DIR/vg/VG-SGG-with-attri.h5, VG-SGG-dicts-with-attri.json, image_data.json,
           zeroshot_triplets.json, longtail_split.json
    DIR/synthhoi.json   (manifest: arguments, counts, paths)

Every image depends only on ``(seed, split, index, size)``, so the annotation files are byte-identical
for the same arguments whatever the number of workers.
"""
from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Dict, List, Tuple

from ...errors import ConfigError, DataError
from .hicodet_writer import write_hicodet
from .records import TEST_ID_BASE, image_id, write_json
from .scene import make_image
from .vcoco_writer import write_vcoco
from .vg_writer import write_vg

IMAGE_FORMATS = {"jpg": ("JPEG", {"quality": 90}), "png": ("PNG", {"compress_level": 1})}


def _one(job: Tuple[str, int, int, int, str, str]) -> Dict:
    """Generate, save and describe one image (runs in a worker)."""
    split, index, seed, size, out_dir, fmt = job
    img, lab, _ = make_image(seed, split, index, size)
    iid = image_id(split, index)
    name = f"{iid}.{fmt}"
    pil_fmt, kw = IMAGE_FORMATS[fmt]
    img.save(Path(out_dir) / "images" / split / name, pil_fmt, **kw)
    n_p = lab.labels.count(0)
    return {"split": split, "index": index, "image_id": iid, "file_name": name, "width": img.width,
            "height": img.height, "boxes": lab.boxes.tolist(), "labels": list(lab.labels),
            "hois": [list(map(int, t)) for t in lab.hois], "relations": [list(map(int, t)) for t in lab.relations],
            "agent_actions": [lab.agent_actions.get(i, []) if i < n_p else [] for i in range(len(lab.labels))]}


def generate_records(out_dir: Path, n_train: int, n_test: int, seed: int, size: int, workers: int = 1,
                     image_format: str = "jpg") -> List[Dict]:
    """Render all images into ``out_dir/images/{split}`` and return their records (train first)."""
    jobs = [("train", i, seed, size, str(out_dir), image_format) for i in range(n_train)]
    jobs += [("test", i, seed, size, str(out_dir), image_format) for i in range(n_test)]
    for split in ("train", "test"):
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
    if workers <= 1 or len(jobs) < 16:
        return [_one(j) for j in jobs]
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers) as pool:
        return list(pool.imap(_one, jobs, chunksize=16))  # imap keeps job order


def generate_synthhoi(out_dir, n_train: int = 2000, n_test: int = 500, seed: int = 0, size: int = 256,
                      workers: int = 1, image_format: str = "jpg") -> Dict[str, Path]:
    """Generate SynthHOI into ``out_dir``.

    Args:
        out_dir: dataset directory (created).
        n_train, n_test: number of images per split.
        seed: random seed; same arguments -> byte-identical annotation files.
        size: long side of every image in pixels (the short side is 0.7-1.0 of it).
        workers: processes rendering images (1 = in this process).
        image_format: "jpg" (default; the VG reader expects ``<image_id>.jpg``) or "png".

    Returns:
        dict of paths: ``root``, ``images_train``, ``images_test``, ``hicodet_train``,
        ``hicodet_test``, ``vcoco_*``, ``coco_*``, ``vg_*``, ``manifest``.
    """
    if n_train < 1 or n_test < 0:
        raise ConfigError(f"synth: --train must be >= 1 and --test >= 0 (got {n_train}, {n_test})")
    if n_train >= TEST_ID_BASE:
        raise ConfigError(f"synth: --train must be below {TEST_ID_BASE} (image ids; got {n_train})")
    if size < 32:
        raise ConfigError(f"synth: --size must be at least 32 pixels (got {size})")
    if image_format not in IMAGE_FORMATS:
        raise ConfigError(f"synth: image format must be one of {sorted(IMAGE_FORMATS)} (got {image_format!r})")
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise DataError(f"synth: output path {root} exists and is not a directory")
    records = generate_records(root, n_train, n_test, seed, size, workers, image_format)
    paths: Dict[str, Path] = {"root": root, "images_train": root / "images" / "train",
                              "images_test": root / "images" / "test"}
    paths.update(write_hicodet(records, root / "hicodet"))
    paths.update(write_vcoco(records, root / "vcoco"))
    paths.update(write_vg(records, root / "vg"))
    manifest = {"generator": "hoikit SynthHOI", "seed": seed, "size": size, "train": n_train, "test": n_test,
                "image_format": image_format,
                "pairs": {s: sum(len(r["hois"]) for r in records if r["split"] == s) for s in ("train", "test")},
                "relations": {s: sum(len(r["relations"]) for r in records if r["split"] == s) for s in ("train", "test")},
                "paths": {k: str(Path(v).relative_to(root)) if k != "root" else "." for k, v in paths.items()}}
    paths["manifest"] = write_json(root / "synthhoi.json", manifest)
    return paths
