"""Typed configuration: dataclasses are the schema, YAML presets fill them,
dotted command-line overrides change single fields.

    cfg = load_config("configs/synth_rmlr.yaml", ["train.lr=2e-4"])

Unknown keys and wrong types raise :class:`ConfigError` naming the key.
Model classes take explicit arguments; only small ``build_*`` functions read a config.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Tuple, get_args, get_type_hints

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError
from .paths import packaged


# Choice fields: a Literal type is the list of allowed values; OmegaConf checks it when a YAML file, a
# stored checkpoint config or an override is merged, so a wrong value fails at load naming the key and
# the allowed values (:func:`load_config`, :func:`from_dict`). YAML files keep plain strings.
Arch = Literal["rmlr", "sg2hoi", "detr"]
DataFormat = Literal["hicodet", "vcoco", "vg", "custom", "synth", "coco"]
ZeroShot = Literal["", "rf_uc", "nf_uc", "uo", "uv"]
DetectorBoxes = Literal["all", "hoi"]
DetectorType = Literal["detr", "deformable"]
PairQueries = Literal["detections", "proposals"]
AnchorDetector = Literal["frozen", "shared"]
BackboneName = Literal["resnet18", "resnet34", "resnet50", "resnet101", "tiny", "small", "small_res"]
Pooling = Literal["auto", "cls", "mean"]
Ablation = Literal["full", "plain", "wo_cl", "wo_rm", "wo_wa", "wo_sa", "wo_irm_kt", "wo_ire_kt"]
Detections = Literal["detr", "oracle"]
IREPool = Literal["masked", "full"]
WordScope = Literal["image", "pair"]
WordContext = Literal["joint", "separate"]
WordTarget = Literal["joint", "detached"]
Variant = Literal["rand", "clip", "cls", "pool"]
HSS = Literal["full", "none", "det", "glove"]
VLDistill = Literal["auto", "cls", "pool", "none"]
VLLoss = Literal["l1", "l2"]
HSSAssign = Literal["argmax", "soft"]
VerbLoss = Literal["focal", "bce"]
Optimizer = Literal["adamw", "adam"]
Schedule = Literal["cosine", "step"]
Task = Literal["joint", "sgg", "hoi"]


@dataclass
class DataConfig:
    """Where the data is and how it is augmented."""

    format: DataFormat = "synth"            # hicodet | vcoco | vg | custom | synth | coco (detector training)
    root: str = ""                   # synth: dataset directory (generated when missing)
    train_anno: str = ""             # annotation file of the training split
    test_anno: str = ""              # annotation file of the evaluation split
    train_images: str = ""           # image directory of the training split
    test_images: str = ""            # image directory of the evaluation split
    # V-COCO official ground truth (evaluation)
    vcoco_json: str = ""
    coco_json: str = ""
    vcoco_ids: str = ""
    # Visual Genome (SG2HOI+ joint training and SGG evaluation)
    vg_h5: str = ""
    vg_dicts: str = ""
    vg_image_data: str = ""
    vg_images: str = ""
    # SynthHOI generation when format == synth and root has no data yet
    synth_train: int = 2000
    synth_test: int = 500
    synth_seed: int = 0
    synth_size: int = 256
    # DETR on SynthHOI: "all" = every drawn person and object (ROOT/vcoco/instances_<split>.json, the
    # analogue of DETR's COCO training), "hoi" = only the boxes of HOI pairs (the HICO-DET file)
    synth_detector_boxes: DetectorBoxes = "all"
    # transforms (UPT: multi-scale 480-800, max 1333)
    scales: List[int] = field(default_factory=lambda: [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800])
    max_size: int = 1333
    test_scale: int = 800
    hflip: bool = True
    color_jitter: float = 0.4
    random_crop: bool = True
    num_workers: int = 2
    # a training image that cannot be read (missing, truncated): False = stop with a line naming it and
    # the decoder's message; True = log that line and train on the next readable image in its place.
    # Evaluation never skips (hoikit data check --images finds such files before a run).
    skip_unreadable: bool = False
    # zero-shot setting (hoikit/data/zero_shot.py): "" | rf_uc | nf_uc | uo | uv. Training drops every
    # pair with an unseen HOI class (GEN-VLKT's --del_unseen); evaluation adds Unseen / Seen / Full mAP
    zero_shot: ZeroShot = ""


@dataclass
class DETRConfig:
    """The DETR-family detector: DETR (Carion et al.) or Deformable DETR (Zhu et al.; ``type:
    deformable``). Defaults are the official DETR R50 model; the Deformable DETR presets set its own
    (300 queries, FFN 1024, focal costs / weights 2, 5, 2)."""

    type: DetectorType = "detr"               # detr | deformable
    backbone: BackboneName = "resnet50"       # resnet18 | resnet34 | resnet50 | resnet101 | tiny | small | small_res
    dilation: bool = False           # DC5
    num_classes: int = 80            # foreground classes (+1 no-object row in class_embed)
    hidden_dim: int = 256
    nheads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    num_queries: int = 100
    aux_loss: bool = True
    checkpoint: str = ""             # pretrained detector weights (any supported format)
    # UPT / RmLR always freeze it (RmLR Alg. 1, Sec. 4.2); old key model.detr.freeze: true dropped, false refused
    # matcher / criterion (DETR: class 1, L1 5, GIoU 2, eos 0.1)
    set_cost_class: float = 1.0
    set_cost_bbox: float = 5.0
    set_cost_giou: float = 2.0
    eos_coef: float = 0.1
    ce_loss_coef: float = 1.0        # DETR loss weights: CE 1, L1 5, GIoU 2
    bbox_loss_coef: float = 5.0
    giou_loss_coef: float = 2.0
    # training aid for DETR from scratch (not in DETR): per-cell class + box loss on the encoder
    # memory through a training-only head (hoikit/losses/dense.py); 0 = off (DETR)
    dense_loss_coef: float = 0.0
    # the backbone's learning rate (and whether it trains: > 0) is train.lr_backbone
    # Deformable DETR (type: deformable); fundamentalvision/Deformable-DETR main.py defaults
    num_feature_levels: int = 4      # C3-C5 + one stride-2 convolution on C5
    enc_n_points: int = 4            # sampling points per head and level
    dec_n_points: int = 4
    with_box_refine: bool = False    # iterative bounding box refinement
    two_stage: bool = False          # queries from the encoder's top proposals (needs with_box_refine)
    focal_alpha: float = 0.25        # sigmoid focal loss alpha (classification and matching cost)
    # H-DETR (Jia et al. 2023) additions; all three leave the one-to-one inference path as it is
    mixed_selection: bool = False    # two-stage: learned content queries, positions from the proposals
    look_forward_twice: bool = False  # box loss of layer l+1 also trains layer l's refinement
    # small objects (not in Deformable DETR): the decoder's cross-attention also samples the backbone's
    # stride-4 map (projected, not encoded: the encoder's cost is unchanged); docs/synthhoi-training.md
    decoder_fine_level: bool = False
    num_queries_one2many: int = 0    # hybrid matching: extra training-only queries (0 = off; H-DETR 1500)
    k_one2many: int = 6              # targets repeated k times for the one-to-many queries
    lambda_one2many: float = 1.0     # weight of the one-to-many losses
    # DN-DETR (Li et al. 2022) denoising queries, training only (type deformable needs two_stage)
    dn_number: int = 0               # groups of noised ground truth (0 = off)
    dn_label_noise: float = 0.2      # fraction of labels flipped to another class (DN-DETR 0.2)
    dn_box_noise: float = 0.4        # box noise scale lambda (DN-DETR 0.4)
    # class-wise NMS on Deformable DETR's top-k detections at inference (0 = off, the official
    # post-processing); an undertrained one-to-one decoder leaves duplicates (docs/synthhoi-training.md)
    nms_thresh: float = 0.0


@dataclass
class TextEncoderConfig:
    """Frozen pretrained text encoder (RmLR linguistic knowledge, SG2HOI+ semantics)."""

    name: str = "minilm"             # minilm | a local directory loadable by transformers AutoModel
    path: str = ""                   # explicit model directory; overrides name
    max_length: int = 256
    cache_size: int = 50_000         # texts whose frozen outputs are cached (LRU, host memory); 0 = off


@dataclass
class RmLRTextConfig(TextEncoderConfig):
    """RmLR's text encoder: also how a sentence vector E_cls (Eq. 8) is read from its outputs."""

    # auto = what the encoder was trained with: mean for sentence-transformers models whose
    # 1_Pooling/config.json says so (all-MiniLM-L6-v2), else cls ([CLS] output: BERT / MobileBERT NSP)
    pooling: Pooling = "auto"            # auto | cls | mean; the resolved value is saved with the config


@dataclass
class RmLRConfig:
    """RmLR (and its plain model = UPT). Symbols follow the paper."""

    ablation: Ablation = "full"           # full | plain | wo_cl | wo_rm | wo_wa | wo_sa | wo_irm_kt | wo_ire_kt
    box_score_thresh: float = 0.2    # UPT: keep detections with score >= 0.2
    min_instances: int = 3           # UPT: 3..15 humans and objects
    max_instances: int = 15
    nms_thresh: float = 0.5          # class-wise NMS
    fg_iou_thresh: float = 0.5       # positive pair: min(IoU_h, IoU_o) >= 0.5
    representation_size: int = 1024
    num_coop_layers: int = 2         # UPT cooperative layers
    num_comp_layers: int = 1         # IRM layers (Table 8)
    ire_layers: int = 2              # IRE transformer encoder layers (Appendix B)
    ire_dim: int = 512               # FC output of IRE / global context (Appendix B)
    cml_sa_layers: int = 2           # CML self-attention layers (Table 8)
    cml_ca_layers: int = 1           # CML cross-attention layers
    cml_dim: int = 1024              # hidden size of cross-modal attention
    alpha: float = 0.5               # focal loss alpha (beta in the paper)
    gamma: float = 0.2               # focal loss gamma
    prior_power_train: float = 1.0   # UPT prior exponent p in training
    prior_power_test: float = 2.8    # UPT prior exponent p at inference
    detector_classes: str = "auto"   # detector class list -> dataset objects: auto | dataset | coco80 | coco91 | a,b,...
    detections: Detections = "detr"         # detr | oracle: ground-truth entities as proposals (analysis only, not a paper setting)
    # Eq. (22) weights; Table 7 best row
    lambda_hoi: float = 2.0
    lambda_s_m: float = 1.0          # IRM sentence-level
    lambda_w_m: float = 1.0          # IRM word-level
    lambda_s_a: float = 0.1          # IRE sentence-level
    lambda_w_a: float = 0.1          # IRE word-level
    # readings the paper leaves open (docs/method-notes-rmlr.md)
    ire_pool: IREPool = "masked"         # GAP of the masked RoI: masked (mean over kept cells) | full
    ire_ffn: int = 1024              # IRE encoder FFN width
    word_scope: WordScope = "image"        # words a pair attends to (Eq. 13-14): image | pair
    word_context: WordContext = "joint"      # word embeddings from the [SEP]-joined text | each sub-sentence
    query_stop_grad: bool = False    # detach the visual query of the cross-attention
    word_target: WordTarget = "joint"       # L_w (Eq. 16/17): joint (both sides trained) | detached (V^_a: stop-grad teacher)
    language_reasoning: bool = True  # Sec. 3.5 / Alg. 1 stage 3: also classify language-enhanced IRM tokens in training
    text_dim: int = 0                # D_l; 0 = read from the text encoder's config.json
    # speed only (docs/method-notes-rmlr.md, "Detector cache"): run the frozen detector one image at a
    # time and cache its outputs by image bytes (LRU, at most detector_cache_mb MiB; 0 = keep nothing)
    detector_cache: bool = False
    detector_cache_mb: int = 1024
    text: RmLRTextConfig = field(default_factory=RmLRTextConfig)


@dataclass
class SG2HOIConfig:
    """SG2HOI+ (one-stage joint SGG + HOI)."""

    variant: Variant = "cls"             # rand | clip | cls | pool (Table I)
    hidden_dim: int = 256
    seg_dim: int = 128               # C' channel reduction; Eq. (3): hidden_dim d = 2 C'
    enc_layers: int = 6
    rel_dec_layers: int = 6
    r2i_layers: int = 3
    transform_layers: int = 2
    hoi_dec_layers: int = 6
    num_rel_queries: int = 100
    num_hoi_queries: int = 100
    nheads: int = 8
    dim_feedforward: int = 2048
    dropout: float = 0.1
    # ablation switches (Tables VI-VIII)
    hss: HSS = "full"                # full | none (-HSS) | det (HSSD) | glove (HSSG)
    vl_distill: VLDistill = "auto"         # auto (follows variant) | cls | pool | none (-VLpool) ; loss via vl_loss
    vl_loss: VLLoss = "l1"              # l1 | l2 (VLl2)
    feature_transform: bool = True   # -FETR when False
    query_transform: bool = True     # -QUTR when False
    r2i: bool = True                 # -R2ITR when False
    relq: bool = False               # RELQ: HOI queries = relation queries
    # matching / loss (Eq. 9, 10)
    alpha_box: float = 1.0
    alpha_cls: float = 2.0
    alpha_rel: float = 4.0
    lambda_seg: float = 2.0
    lambda_algn: float = 4.0
    clip_path: str = ""              # local CLIP directory (transformers); empty = no CLIP
    # choices the paper leaves open (docs/method-notes-sg2hoi.md)
    hss_assign: HSSAssign = "argmax"       # semantic map per position: argmax | soft
    seg_convs: int = 5               # BBSeg 3x3 conv + BN layers (Section IV-D)
    eos_coef: float = 0.1            # weight of no-object / no-relation targets of unmatched queries
    train_unmatched: bool = True     # False = the paper's literal "no loss for unmatched pairs"
    verb_loss: VerbLoss = "focal"         # focal (QPIC) | bce
    clip_cls_lr: float = 1e-5        # text-initialised classifier weights (Section IV-D)
    detr_proj: bool = False          # f_agg += DETR input_proj(C5) (zero-init W_v, W_s): DETR-compatible tokens
    # deformable base (model.detr.type = deformable; hoikit/models/sg2hoi/deformable.py, not in the paper)
    hss_level: int = -1              # backbone level HSS reads (-1 = C5, the paper's map; 0 = the finest)
    proposal_loss: float = 1.0       # weight of the detector's two-stage proposal loss (0 = off)
    pair_queries: PairQueries = "detections"   # detections: pairs of the detector's detections | proposals: one proposal each
    anchor_detector: AnchorDetector = "frozen"  # detections from a frozen copy of the detector | from the trained encoder
    pair_nms: float = 0.5            # class-wise NMS IoU on the detections before pairing (0 = off)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)


@dataclass
class ModelConfig:
    arch: Arch = "rmlr"               # rmlr | sg2hoi | detr
    detr: DETRConfig = field(default_factory=DETRConfig)
    rmlr: RmLRConfig = field(default_factory=RmLRConfig)
    sg2hoi: SG2HOIConfig = field(default_factory=SG2HOIConfig)


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-4
    lr_backbone: float = 1e-5
    weight_decay: float = 1e-4
    optimizer: Optimizer = "adamw"         # adamw | adam
    schedule: Schedule = "cosine"         # cosine | step
    lr_drop: int = 10                # step schedule: epoch of the x0.1 drop
    warmup_iters: int = 0
    clip_max_norm: float = 0.1
    amp: bool = False                # autocast on GPU
    device: str = "auto"             # auto | cpu | cuda
    eval_every: int = 1
    log_every: int = 20
    tensorboard: bool = False        # TensorBoard events in <output_dir>/tb (needs the 'tensorboard' extra)
    max_steps: int = 0               # >0: stop after this many optimizer steps (tests, benchmarks)
    checkpoint_every: int = 0        # >0: also write last.pt every this many optimizer steps (mid-epoch)
    # SG2HOI+: two-phase schedule and alternating datasets
    sgg_epochs: int = 0              # phase 1: SGG only
    sgg_lr: float = 1e-5             # phase 2: learning rate of the SGG part
    task: Task = "joint"              # joint | sgg | hoi (Table V single-task)
    # task=sgg after sgg_epochs: phase "sgg_control", SGG alone with the joint phase's base rates (SGG part
    # sgg_lr) and a fresh optimizer, as the joint run switches at that point (Table V's SGG half,
    # benchmarks/synth_sg2hoi.py). It trains the joint run's SGG batches, in its order, each at the learning
    # rate it gets there (the schedule counts the HOI batches it skips: the HOI set must be configured)
    sgg_control: bool = False


@dataclass
class EvalConfig:
    hicodet_skip_empty: bool = False  # UPT-style: do not run images listed in `empty`
    threshold: float = 0.0
    # metric that selects best.pt (higher is better); "" = the protocol's primary metric: HICO-DET
    # mAP_full, V-COCO role_mAP_S1, SGDet mR@50, detection AP50; SG2HOI+ with an HOI dataset: its HOI metric
    primary_metric: str = ""
    # HOI evaluation (HICO-DET and V-COCO): keep the top-K (pair, verb) triplets per image, the
    # one-stage convention (QPIC: 100; the SG2HOI+ presets); 0 = keep all (UPT / RmLR)
    max_detections: int = 0


@dataclass
class Config:
    name: str = "run"
    output_dir: str = "runs/run"
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def choices(key: str) -> Tuple[str, ...]:
    """The allowed values of a choice field (the arguments of its ``Literal`` type), e.g.
    ``choices("model.detr.type") == ("detr", "deformable")``."""
    cls = Config
    *parents, leaf = key.split(".")
    for part in parents:
        cls = get_type_hints(cls)[part]
    return get_args(get_type_hints(cls)[leaf])


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric key: ``lo <= v <= hi`` (``<`` when open); None = unbounded.
    Floats must also be finite."""

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v) -> bool:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        return ((self.lo is None or (v > self.lo if self.lo_open else v >= self.lo))
                and (self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)))

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


GE0, GE1, GT0, UNIT, DROPOUT = Range(0), Range(1), Range(0, lo_open=True), Range(0, 1), Range(0, 1, hi_open=True)
_LOSS_WEIGHT = GE0
# The range of every numeric key whose other values would crash or mean nothing (checked at load by
# :func:`validate`; list keys: every element). Keys not listed (``seed``) take any value of their type.
RANGES: Dict[str, Range] = {
    "data.synth_train": GE1, "data.synth_test": GE1, "data.synth_seed": GE0,
    "data.synth_size": Range(16),                        # SynthHOI draws figures of a few pixels at least
    "data.scales": GE1, "data.max_size": GE1, "data.test_scale": GE1, "data.color_jitter": GE0,
    "data.num_workers": GE0,
    "model.detr.num_classes": GE1, "model.detr.hidden_dim": Range(2), "model.detr.nheads": GE1,
    "model.detr.enc_layers": GE0, "model.detr.dec_layers": GE1,   # predictions come from the decoder
    "model.detr.dim_feedforward": GE1, "model.detr.dropout": DROPOUT, "model.detr.num_queries": GE1,
    "model.detr.set_cost_class": GE0, "model.detr.set_cost_bbox": GE0, "model.detr.set_cost_giou": GE0,
    "model.detr.eos_coef": GE0, "model.detr.ce_loss_coef": _LOSS_WEIGHT, "model.detr.bbox_loss_coef": _LOSS_WEIGHT,
    "model.detr.giou_loss_coef": _LOSS_WEIGHT, "model.detr.dense_loss_coef": _LOSS_WEIGHT,
    "model.detr.num_feature_levels": GE1, "model.detr.enc_n_points": GE1, "model.detr.dec_n_points": GE1,
    "model.detr.focal_alpha": UNIT, "model.detr.num_queries_one2many": GE0, "model.detr.k_one2many": GE1,
    "model.detr.lambda_one2many": _LOSS_WEIGHT, "model.detr.dn_number": GE0, "model.detr.dn_label_noise": UNIT,
    "model.detr.dn_box_noise": GE0, "model.detr.nms_thresh": UNIT,
    "model.rmlr.box_score_thresh": UNIT, "model.rmlr.min_instances": GE0, "model.rmlr.max_instances": GE1,
    "model.rmlr.nms_thresh": UNIT, "model.rmlr.fg_iou_thresh": UNIT, "model.rmlr.representation_size": GE1,
    "model.rmlr.num_coop_layers": GE0, "model.rmlr.num_comp_layers": GE0, "model.rmlr.ire_layers": GE1,
    "model.rmlr.ire_dim": GE1, "model.rmlr.cml_sa_layers": GE0, "model.rmlr.cml_ca_layers": GE0,
    "model.rmlr.cml_dim": GE1, "model.rmlr.alpha": UNIT, "model.rmlr.gamma": GE0,
    "model.rmlr.prior_power_train": GE0, "model.rmlr.prior_power_test": GE0,
    "model.rmlr.lambda_hoi": _LOSS_WEIGHT, "model.rmlr.lambda_s_m": _LOSS_WEIGHT, "model.rmlr.lambda_w_m": _LOSS_WEIGHT,
    "model.rmlr.lambda_s_a": _LOSS_WEIGHT, "model.rmlr.lambda_w_a": _LOSS_WEIGHT, "model.rmlr.ire_ffn": GE1,
    "model.rmlr.text_dim": GE0, "model.rmlr.detector_cache_mb": GE0,
    "model.sg2hoi.hidden_dim": Range(2), "model.sg2hoi.seg_dim": GE1, "model.sg2hoi.enc_layers": GE0,
    "model.sg2hoi.rel_dec_layers": GE1, "model.sg2hoi.r2i_layers": GE0, "model.sg2hoi.transform_layers": GE0,
    "model.sg2hoi.hoi_dec_layers": GE1, "model.sg2hoi.num_rel_queries": GE1, "model.sg2hoi.num_hoi_queries": GE1,
    "model.sg2hoi.nheads": GE1, "model.sg2hoi.dim_feedforward": GE1, "model.sg2hoi.dropout": DROPOUT,
    "model.sg2hoi.alpha_box": _LOSS_WEIGHT, "model.sg2hoi.alpha_cls": _LOSS_WEIGHT, "model.sg2hoi.alpha_rel": _LOSS_WEIGHT,
    "model.sg2hoi.lambda_seg": _LOSS_WEIGHT, "model.sg2hoi.lambda_algn": _LOSS_WEIGHT,
    "model.sg2hoi.proposal_loss": _LOSS_WEIGHT, "model.sg2hoi.pair_nms": UNIT,
    "model.sg2hoi.hss_level": Range(-4, 3), "model.sg2hoi.seg_convs": GE0,   # hss_level: checked against the backbone at build
    "model.sg2hoi.eos_coef": GE0, "model.sg2hoi.clip_cls_lr": GE0,
    "train.epochs": GE1, "train.batch_size": GE1, "train.lr": GE0, "train.lr_backbone": GE0,
    "train.weight_decay": GE0, "train.lr_drop": GE0, "train.warmup_iters": GE0, "train.clip_max_norm": GE0,
    "train.eval_every": GE0, "train.log_every": GE0, "train.max_steps": GE0, "train.sgg_epochs": GE0,
    "train.checkpoint_every": GE0,
    "train.sgg_lr": GE0,
    "eval.threshold": UNIT, "eval.max_detections": GE0,
}
for _sub in ("rmlr", "sg2hoi"):
    RANGES[f"model.{_sub}.text.max_length"] = Range(2)   # [CLS] and [SEP] at least
    RANGES[f"model.{_sub}.text.cache_size"] = GE0


def _get(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: "Config", where: str = "config") -> "Config":
    """Check every key of :data:`RANGES` and the keys that constrain each other.

    Raises:
        ConfigError: one line naming the key, its value and the allowed range.
    """
    for key, allowed in RANGES.items():
        value = _get(cfg, key)
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, (list, tuple)) and not values:
            raise ConfigError(f"{where}: config key '{key}': the list is empty; it needs at least one value {allowed}")
        for i, v in enumerate(values):
            if v not in allowed:
                name = f"{key}[{i}]" if isinstance(value, (list, tuple)) else key
                raise ConfigError(f"{where}: config key '{name}' = {v!r} is out of range (allowed: {allowed})")
    pairs = [("model.detr.hidden_dim", "model.detr.nheads"), ("model.sg2hoi.hidden_dim", "model.sg2hoi.nheads")]
    for dim, heads in pairs:   # multi-head attention splits the width evenly over the heads
        if _get(cfg, dim) % _get(cfg, heads):
            raise ConfigError(f"{where}: config key '{dim}' = {_get(cfg, dim)} is not a multiple of '{heads}' = "
                              f"{_get(cfg, heads)} (allowed: multiples of {_get(cfg, heads)})")
    for dim in ("model.detr.hidden_dim", "model.sg2hoi.hidden_dim"):   # sine position encoding: half x, half y
        if _get(cfg, dim) % 2:
            raise ConfigError(f"{where}: config key '{dim}' = {_get(cfg, dim)} is odd (allowed: even values >= 2)")
    t = cfg.train
    if t.sgg_control and not (t.task == "sgg" and 0 < t.sgg_epochs < t.epochs):
        raise ConfigError(f"{where}: train.sgg_control=true needs train.task=sgg and 0 < train.sgg_epochs < "
                          f"train.epochs (got task={t.task}, sgg_epochs={t.sgg_epochs}, epochs={t.epochs}): "
                          f"it would change nothing")
    if t.sgg_control and cfg.data.format == "vg":
        raise ConfigError(f"{where}: train.sgg_control=true with data.format=vg: the control follows the joint "
                          f"run's schedule, which counts its HOI batches; set the HOI dataset (data.format "
                          f"hicodet | synth, data.vg_h5 for the scene graphs)")
    r = cfg.model.rmlr
    if r.min_instances > r.max_instances:
        raise ConfigError(f"{where}: config key 'model.rmlr.min_instances' = {r.min_instances} is out of range "
                          f"(allowed: <= model.rmlr.max_instances = {r.max_instances})")
    return cfg


def _friendly(err: OmegaConfBaseException, where: str) -> ConfigError:
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    msg = str(err).splitlines()[0]
    return ConfigError(f"{where}: config key '{key}': {msg}" if key else f"{where}: {msg}")


def _drop_detr_freeze(detr: dict, where: str, strict: bool) -> None:
    """``model.detr.freeze`` (older files) was read nowhere: the two-stage models always froze DETR.
    ``true`` said what happens and is dropped; ``false`` asked for something that never happened and
    is refused in a user's file (``strict``); a stored checkpoint's copy is dropped either way."""
    if "freeze" not in detr:
        return
    value = detr.pop("freeze")
    if strict and value is not True and str(value).lower() != "true":
        raise ConfigError(f"{where}: config key 'model.detr.freeze' ({value}) was removed: UPT / RmLR always "
                          f"freeze the detector (RmLR Algorithm 1) and the key was never read; delete it")


def _move_legacy_keys(d, where: str, strict: bool = True):
    """``model.detr.lr_backbone`` (older files: a second copy of ``train.lr_backbone`` that only
    decided whether DETR's backbone trains) -> ``train.lr_backbone``. ``strict``: a file giving both
    with different values is refused; otherwise (stored checkpoints) ``train``'s value, the rate
    the optimizer used, is kept. ``model.detr.freeze``: :func:`_drop_detr_freeze`."""
    detr = (d.get("model") or {}).get("detr") if isinstance(d, dict) else None
    if isinstance(detr, dict):
        _drop_detr_freeze(detr, where, strict)
    if not isinstance(detr, dict) or "lr_backbone" not in detr:
        return d
    value = detr.pop("lr_backbone")
    train = d.get("train") if isinstance(d.get("train"), dict) else d.setdefault("train", {})
    if "lr_backbone" in train:
        if strict and float(train["lr_backbone"]) != float(value):
            raise ConfigError(f"{where}: config key 'model.detr.lr_backbone' ({value}) differs from 'train.lr_backbone' "
                              f"({train['lr_backbone']}); only train.lr_backbone is read: remove the first")
    else:
        train["lr_backbone"] = value
    return d


def load_config(path: Optional[str] = None, overrides: Sequence[str] = (), *, stored: Optional[dict] = None,
                sections: Optional[Sequence[str]] = None, where: Optional[str] = None) -> Config:
    """The one way a :class:`Config` is made (``hoikit train``, ``test``, ``predict``, ``--resume``,
    :func:`hoikit.load`): defaults, then a checkpoint's ``stored`` config, then a YAML file / preset,
    then dotted overrides, then :func:`validate`.

    Args:
        path: YAML file; a bare name (e.g. ``synth_rmlr``) is looked up in the packaged presets.
        overrides: ``key.sub=value`` strings (``key=`` is the empty string).
        stored: a config dict stored in a checkpoint (its legacy keys upgraded: :func:`stored_config`).
        sections: top-level sections of ``path`` to take (``hoikit test``: ``("data", "eval")``);
            None = the whole file.
        where: what errors name (default: the YAML path, else ``config``).

    Raises:
        ConfigError: one line naming the file and key (an unknown key, a wrong type, a choice field
            outside its ``Literal`` values, a value out of :data:`RANGES`).
    """
    where = where or (str(path) if path else "config")
    cfg = OmegaConf.structured(Config)
    if stored is not None:
        try:
            cfg = OmegaConf.merge(cfg, stored_config(stored))
        except OmegaConfBaseException as e:
            raise _friendly(e, where) from None
    if path:
        cfg = _merge_yaml(cfg, resolve_preset(path), sections)
    cfg = _merge_overrides(cfg, overrides)
    try:
        return validate(OmegaConf.to_object(cfg), where)
    except OmegaConfBaseException as e:
        raise _friendly(e, where) from None


def _merge_yaml(cfg, p: Path, sections: Optional[Sequence[str]]):
    """``cfg`` merged with the YAML file ``p`` (legacy keys moved, refused when contradictory), or with
    only its ``sections``."""
    try:
        y = OmegaConf.to_container(OmegaConf.load(p))
    except Exception as e:  # yaml syntax
        raise ConfigError(f"{p}: cannot parse YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(y, dict):
        raise ConfigError(f"{p}: the file must hold a mapping of config sections")
    y = _move_legacy_keys(y, str(p)) if sections is None else {k: y[k] for k in sections if k in y}
    try:
        return OmegaConf.merge(cfg, y)
    except OmegaConfBaseException as e:
        raise _friendly(e, str(p)) from None


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """A copy of ``cfg`` with dotted ``key=value`` overrides applied (checked like :func:`load_config`)."""
    return load_config(stored=to_dict(cfg), overrides=overrides)


def _merge_overrides(cfg, overrides: Sequence[str]):
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override '{o}' is not of the form key=value")
        # `key=` means the empty value (OmegaConf alone would read it as null)
        dot = o + "''" if o.endswith("=") else o
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([dot]))
        except OmegaConfBaseException as e:
            raise _friendly(e, f"override '{o}'") from None
    return cfg


def resolve_preset(path: str) -> Path:
    """A YAML path as given when it exists; else the packaged preset it names: a bare name
    (``synth_rmlr``, ``synth_rmlr.yaml``) or a README path (``configs/synth_rmlr.yaml``), from any directory."""
    p = packaged(path)
    if p.exists():
        return p
    for cand in (Path(__file__).parent / "configs" / f"{path}.yaml", Path(__file__).parent / "configs" / path):
        if cand.exists():
            return cand
    raise ConfigError(f"config file '{path}' not found (neither a path nor a packaged preset)")


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def stored_config(d: dict) -> dict:
    """A config dict stored in a checkpoint, its legacy keys upgraded (a copy; see
    :func:`_move_legacy_keys`): what :func:`from_dict` and ``hoikit test`` merge.

    A checkpoint saved before ``model.rmlr.text.pooling`` existed took the [CLS] output as E_cls:
    its config gets ``pooling: cls`` (not the new ``auto`` default), so it keeps that behaviour."""
    d = _move_legacy_keys(copy.deepcopy(dict(d)), "config", strict=False)
    text = ((d.get("model") or {}).get("rmlr") or {}).get("text")
    if isinstance(text, dict) and "pooling" not in text:
        text["pooling"] = "cls"
    return d


def from_dict(d: dict, where: str = "config") -> Config:
    """The :class:`Config` of a dict stored in a checkpoint (:func:`load_config` with ``stored=d``)."""
    return load_config(stored=d, where=where)
