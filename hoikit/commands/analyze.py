"""``hoikit analyze tokens --checkpoint DETR_CKPT [--data DIR] [--out DIR]``: interaction information
loss of DETR human tokens (RmLR Fig. 1 / Appendix E).

Controlled SynthHOI-style images are rendered with the SynthHOI figure code on one fixed background:

* group "same place": one person at the same spot in different poses (arms down, holding forward,
  arm raised, kicking, looking down, waving) with a ball at the same spot;
* group "same action": the same holding pose at different horizontal positions (ball moved along).

For each image the DETR human token is the last decoder output ``hs[-1]`` of the person's query: by
default the highest-scoring query labelled person whose box has IoU >= 0.5 with the rendered person
(the detection UPT / RmLR keep), with ``--match iou`` the query whose box overlaps it best. Pairwise
cosine similarity and Euclidean distance are averaged within each group. RmLR's claim: tokens of people at the same place doing different things are MORE similar
than tokens of people doing the same thing at different places (the token encodes location, not the
interaction). Writes ``tokens.json`` and ``tokens.png`` (and the images into ``--data``).
The analysis itself is :mod:`hoikit.analysis.tokens`.
"""
from __future__ import annotations

from . import refuse_existing

DESCRIPTION = __doc__


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    p = sub.add_parser("tokens", help="DETR human-token similarity (RmLR Fig. 1 / Appendix E)",
                       description=__doc__)
    p.add_argument("--checkpoint", required=True, help="hoikit DETR checkpoint (model.arch=detr)")
    p.add_argument("--data", default=None, help="directory for the rendered controlled images (default OUT/images)")
    p.add_argument("--out", default="runs/analyze_tokens", help="output directory")
    p.add_argument("--size", type=int, default=0, help="image long side (default: the checkpoint's test_scale)")
    p.add_argument("--match", choices=("score", "iou"), default="score",
                   help="the person's query: score = the highest-scoring person query with IoU >= 0.5 (the "
                        "detection an HOI head keeps; default), iou = the query whose box overlaps best")
    p.add_argument("--overwrite", action="store_true",
                   help="replace tokens.json / tokens.png / rendered images already in --out or --data "
                        "(default: refuse and write nothing)")


def run(args) -> int:
    import json
    from pathlib import Path

    from ..analysis.tokens import image_names, plot_token_similarity, token_similarity
    from ..engine.inference import Predictor
    from ..errors import CheckpointError

    out = Path(args.out)
    img_dir = Path(args.data) if args.data else out / "images"
    if not args.overwrite:   # refuse before loading anything: nothing of the user's is replaced
        refuse_existing([out / "tokens.json", out / "tokens.png"] + [img_dir / n for n in image_names()],
                        "--out / --data")
    predictor = Predictor.from_checkpoint(args.checkpoint)
    if predictor.arch != "detr":
        raise CheckpointError(f"{args.checkpoint}: model.arch is '{predictor.arch}', tokens analysis needs a DETR "
                              "checkpoint (model.arch=detr)")
    img_dir.mkdir(parents=True, exist_ok=True)
    result = token_similarity(predictor, args.size or predictor.cfg.data.test_scale, img_dir, args.match)
    (out / "tokens.json").write_text(json.dumps(result, indent=1))
    plot_token_similarity(result, out / "tokens.png")
    for n, r in result.items():
        print(f"{n:32s} cosine {r['cosine_mean']:.3f} +- {r['cosine_std']:.3f}   distance "
              f"{r['distance_mean']:.3f} +- {r['distance_std']:.3f}   (person match IoU {r['matched_iou_mean']:.2f})")
    print(f"wrote {out / 'tokens.json'}, {out / 'tokens.png'} and the images in {img_dir}")
    return 0
