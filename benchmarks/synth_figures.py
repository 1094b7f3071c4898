"""Pictures for docs/synthhoi.md: HOI class frequency histogram and a contact sheet of samples with
their ground-truth triplets drawn on them.

    python benchmarks/synth_figures.py --data DIR --out docs/img [--scale 1]

DIR is a SynthHOI dataset (``hoikit synth --out DIR``); the histogram uses its training split.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def histogram(data: Path, out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = json.load(open(data / "hicodet" / "instances_train.json"))
    counts = np.zeros(len(d["correspondence"]), int)
    for a in d["annotation"]:
        for h in a["hoi"]:
            counts[h] += 1
    order = np.argsort(-counts, kind="stable")
    names = [f"{d['verbs'][d['correspondence'][i][2]]} {d['objects'][d['correspondence'][i][1]]}" for i in order]
    rare = set(d["rare"])
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=90)
    ax.bar(range(len(order)), counts[order], color=["tab:red" if i in rare else "tab:blue" for i in order])
    ax.axhline(10, color="gray", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(names, rotation=75, fontsize=7)
    ax.set_ylabel("training instances")
    ax.set_title(f"SynthHOI HOI classes ({len(d['filenames'])} training images; red = rare, < 10)")
    fig.tight_layout()
    path = out / "synthhoi_hoi_histogram.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def contact_sheet(data: Path, out: Path, n: int = 12, cols: int = 4, scale: int = 2) -> Path:
    d = json.load(open(data / "hicodet" / "instances_train.json"))
    picks = [k for k, a in enumerate(d["annotation"]) if a["hoi"]][:n]
    tiles = []
    for k in picks:
        a = d["annotation"][k]
        im = Image.open(data / "images" / "train" / d["filenames"][k]).convert("RGB")
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
        dr = ImageDraw.Draw(im)
        lines = []
        for j, (bh, bo, v, o) in enumerate(zip(a["boxes_h"], a["boxes_o"], a["verb"], a["object"])):
            bh = [(bh[0] - 1) * scale, (bh[1] - 1) * scale, bh[2] * scale, bh[3] * scale]
            bo = [(bo[0] - 1) * scale, (bo[1] - 1) * scale, bo[2] * scale, bo[3] * scale]
            dr.rectangle(bh, outline=(0, 90, 255), width=2)
            dr.rectangle(bo, outline=(255, 40, 40), width=2)
            ch = ((bh[0] + bh[2]) / 2, (bh[1] + bh[3]) / 2)
            co = ((bo[0] + bo[2]) / 2, (bo[1] + bo[3]) / 2)
            dr.line([ch, co], fill=(255, 255, 0), width=2)
            lines.append(f"person {d['verbs'][v]} {d['objects'][o]}")
        text = "\n".join(dict.fromkeys(lines))
        canvas = Image.new("RGB", (im.width, im.height + 12 * text.count("\n") + 16), (255, 255, 255))
        canvas.paste(im, (0, 0))
        ImageDraw.Draw(canvas).multiline_text((4, im.height + 2), text, fill=(0, 0, 0), spacing=2)
        tiles.append(canvas)
    tw, th = max(t.width for t in tiles), max(t.height for t in tiles)
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * tw, rows * th), (255, 255, 255))
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * tw, (i // cols) * th))
    path = out / "synthhoi_contact_sheet.png"
    sheet.quantize(colors=96).save(path, optimize=True)  # palette PNG: keeps the file small
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", default=Path("docs/img"), type=Path)
    ap.add_argument("--scale", default=2, type=int, help="contact sheet zoom (1 for 256 px images)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for p in (histogram(args.data, args.out), contact_sheet(args.data, args.out, scale=args.scale)):
        print(p, f"{p.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
