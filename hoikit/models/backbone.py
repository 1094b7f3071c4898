"""Convolutional backbones: hoikit's own ResNet (torchvision module names) and a tiny test net.

hoikit does not import torchvision (see docs/architecture.md), so ResNet is written here with
exactly torchvision's module names (``conv1``, ``bn1``, ``layer1.0.downsample.0`` ...) so that the
official DETR keys ``backbone.0.body.*`` load unchanged. Normalisation is
:class:`FrozenBatchNorm2d` as in DETR (buffers only, no ``num_batches_tracked``).
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Type, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import ConfigError

# ResNet v1.5 block counts per stage (He et al. 2016, Table 1).
RESNET_LAYERS = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
}
BACKBONES = tuple(RESNET_LAYERS) + ("tiny", "small", "small_res")


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (DETR's version).

    ``y = x * scale + shift`` with ``scale = weight * (running_var + eps).rsqrt()`` and
    ``shift = bias - running_mean * scale`` (eps = 1e-5, as in facebookresearch/detr).
    All four tensors are buffers, so they are in the state dict but never trained.
    """

    def __init__(self, n: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def scale_shift(self) -> Tuple[Tensor, Tensor]:
        """``(scale [n], shift [n])`` of ``y = x * scale + shift``."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, n, H, W]`` -> ``[B, n, H, W]`` (one fused multiply-add pass)."""
        scale, shift = self.scale_shift()
        return torch.addcmul(shift.reshape(1, -1, 1, 1), x, scale.reshape(1, -1, 1, 1))


def _folded_weights(conv: nn.Conv2d, bn: FrozenBatchNorm2d) -> Tuple[Tensor, Tensor]:
    """Weight ``[C_out, C_in, k, k]`` and bias ``[C_out]`` of ``conv`` with ``bn`` folded in.

    When the convolution's weight needs no gradient, the folded pair is cached on the convolution
    and recomputed only when a source tensor changes (``load_state_dict``, an optimizer step or
    ``.to()`` bump the tensors' version counters or move their storage).
    """
    if torch.is_grad_enabled() and conv.weight.requires_grad:
        scale, shift = bn.scale_shift()
        return conv.weight * scale.reshape(-1, 1, 1, 1), shift
    sources = (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
    key = (torch.is_inference_mode_enabled(),) + tuple((t.data_ptr(), t._version) for t in sources)
    cached = conv.__dict__.get("_folded")
    if cached is None or cached[0] != key:
        with torch.no_grad():
            scale, shift = bn.scale_shift()
            cached = (key, conv.weight * scale.reshape(-1, 1, 1, 1), shift)
        conv.__dict__["_folded"] = cached
    return cached[1], cached[2]


def conv_bn(conv: nn.Conv2d, bn: FrozenBatchNorm2d, x: Tensor) -> Tensor:
    """``bn(conv(x))`` as one convolution: ``x [B, C_in, H, W]`` -> ``[B, C_out, H', W']``.

    A frozen BN is affine per output channel, so ``conv(x, W) * s + t = conv(x, W * s) + t``
    (equal up to float rounding): this saves two full passes over every activation map: in UPT's
    own forward at 512 px on CPU the separate BN multiply-adds cost about 16 % of the whole forward
    (a fifth of its ResNet-50; torch.profiler, benchmarks/results/upt_speed.md).
    Gradients reach ``conv.weight`` through the product.
    """
    w, b = _folded_weights(conv, bn)
    return F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)


def _shortcut(downsample: Optional[nn.Module], x: Tensor) -> Tensor:
    """The block's identity branch: ``x`` or ``downsample(x)`` (conv + frozen BN folded when it is that)."""
    if downsample is None:
        return x
    if (isinstance(downsample, nn.Sequential) and len(downsample) == 2 and isinstance(downsample[0], nn.Conv2d)
            and isinstance(downsample[1], FrozenBatchNorm2d)):
        return conv_bn(downsample[0], downsample[1], x)
    return downsample(x)


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 dilation: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, dilation)
        self.bn1 = FrozenBatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = FrozenBatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, cin, H, W]`` -> ``[B, planes, H / stride, W / stride]``."""
        identity = _shortcut(self.downsample, x)
        out = self.relu(conv_bn(self.conv1, self.bn1, x))
        out = conv_bn(self.conv2, self.bn2, out)
        out += identity            # in place, as torchvision: add's backward needs neither operand
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 block, stride on the 3x3 convolution (ResNet v1.5, ResNet-50/101)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 dilation: int = 1):
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = FrozenBatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = FrozenBatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = FrozenBatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, cin, H, W]`` -> ``[B, 4 planes, H / stride, W / stride]``."""
        identity = _shortcut(self.downsample, x)
        out = self.relu(conv_bn(self.conv1, self.bn1, x))
        out = self.relu(conv_bn(self.conv2, self.bn2, out))
        out = conv_bn(self.conv3, self.bn3, out)
        out += identity            # in place, as torchvision: add's backward needs neither operand
        return self.relu(out)


class ResNetBody(nn.Module):
    """ResNet without avgpool/fc, returning the C5 map (stride 32, or 16 with DC5).

    Args:
        depth_name: one of ``resnet18 | resnet34 | resnet50 | resnet101``.
        dilation: DC5: layer4 keeps stride 16 and dilates its 3x3 convolutions by 2
            (torchvision's ``replace_stride_with_dilation=[False, False, True]``).
    """

    def __init__(self, depth_name: str, dilation: bool = False):
        super().__init__()
        kind, blocks = RESNET_LAYERS[depth_name]
        block: Type[Union[BasicBlock, Bottleneck]] = BasicBlock if kind == "basic" else Bottleneck
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, blocks[0])
        self.layer2 = self._make_layer(block, 128, blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, blocks[3], stride=2, dilate=dilation)
        self.num_channels = 512 * block.expansion
        #: pixels per C5 cell (conv1 2 x maxpool 2 x layer2-4 2 each; layer4 not strided with DC5)
        self.stride = 16 if dilation else 32

    def _make_layer(self, block, planes: int, n: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        # Same rule as torchvision: the first block of a dilated stage uses the previous dilation.
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       FrozenBatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=self.dilation) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 3, H, W]`` -> C5 ``[B, num_channels, ~H/32, ~W/32]``."""
        x = self.maxpool(self.relu(conv_bn(self.conv1, self.bn1, x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_levels(self, x: Tensor, fine: bool = False) -> List[Tensor]:
        """``x [B, 3, H, W]`` -> C3, C4, C5 (layer2/3/4: strides 8/16/32; Deformable DETR's levels);
        ``fine``: C2 (layer1, stride 4) first."""
        c2 = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return ([c2] if fine else []) + [c3, c4, self.layer4(c4)]

    @property
    def level_channels(self) -> List[int]:
        return [self.num_channels // 4, self.num_channels // 2, self.num_channels]

    @property
    def fine_channels(self) -> int:
        """Channels of C2 (``forward_levels(..., fine=True)[0]``)."""
        return self.num_channels // 8


class TinyBody(nn.Module):
    """Small trainable stride-16 conv nets for tests and CPU-sized SynthHOI runs.

    ``tiny``: four 3x3 stride-2 convolutions with GroupNorm (trainable from scratch, unlike frozen
    BN), widths 16-32-64-64, receptive field 31 px. ``small``: each stage adds a 3x3 stride-1
    convolution after its stride-2 one (eight convolutions, widths 16-32-64-128, receptive field
    91 px, so a whole SynthHOI person or bicycle at 256 px falls inside one C5 cell's view).

    Args:
        widths: output channels of the four stages.
        convs_per_stage: 1 (tiny) or 2 (small).
    """

    def __init__(self, widths: Tuple[int, ...] = (16, 32, 64, 64), convs_per_stage: int = 1):
        super().__init__()
        layers: List[nn.Module] = []
        cin = 3
        for w in widths:
            for k in range(convs_per_stage):
                layers += [nn.Conv2d(cin, w, 3, stride=2 if k == 0 else 1, padding=1, bias=False),
                           nn.GroupNorm(min(8, w), w), nn.ReLU(inplace=True)]
                cin = w
        self.layers = nn.Sequential(*layers)
        self.num_channels = cin
        #: pixels per output cell: one stride-2 convolution per stage
        self.stride = 2 ** len(widths)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 3, H, W]`` -> ``[B, C, ~H/16, ~W/16]``."""
        return self.layers(x)


# name -> (stage widths, convolutions per stage) of the small trainable backbones
SMALL_BODIES = {"tiny": ((16, 32, 64, 64), 1), "small": ((16, 32, 64, 128), 2)}


def _gn_conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.GroupNorm(min(8, cout), cout), nn.ReLU(inplace=True))


class _ResidualGN(nn.Module):
    """Two 3x3 convolutions with GroupNorm and an identity shortcut (trainable from scratch)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = _gn_conv(c, c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(min(8, c), c)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.norm2(self.conv2(self.conv1(x))))


class ResidualSmallBody(nn.Module):
    """``small_res``: a small trainable multi-scale net for Deformable DETR on SynthHOI (CPU).

    Stem: two 3x3 stride-2 convolutions (stride 4); then four stages of widths ``widths``, each a
    3x3 stride-2 convolution (except the first) followed by one residual block of two 3x3
    convolutions, all with GroupNorm. Strides 4 / 8 / 16 / 32; :meth:`forward_levels` returns the
    last three (8 / 16 / 32, Deformable DETR's C3-C5). Receptive field of C5: ~300 px.
    """

    def __init__(self, widths: Tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        self.stem = nn.Sequential(_gn_conv(3, widths[0] // 2, 2), _gn_conv(widths[0] // 2, widths[0], 2))
        stages = []
        cin = widths[0]
        for i, w in enumerate(widths):
            down = nn.Identity() if i == 0 else _gn_conv(cin, w, 2)
            stages.append(nn.Sequential(down, _ResidualGN(w)))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.num_channels = cin
        self.level_channels = list(widths[1:])
        self.fine_channels = widths[0]   # the stride-4 map of forward_levels(..., fine=True)
        #: pixels per C5 cell (two stem convolutions and three strided stages)
        self.stride = 2 ** (1 + len(widths))

    def forward_levels(self, x: Tensor, fine: bool = False) -> List[Tensor]:
        """``x [B, 3, H, W]`` -> maps at strides 8, 16, 32; ``fine``: the stride-4 map first."""
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats if fine else feats[1:]

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 3, H, W]`` -> C5 ``[B, C, ~H/32, ~W/32]``."""
        return self.forward_levels(x)[-1]


RESIDUAL_BODIES = {"small_res": (32, 64, 128, 256)}


class Backbone(nn.Module):
    """Feature extractor with a padding mask: DETR's ``backbone.0`` (parameters under ``body``).

    Args:
        body: a module mapping ``[B, 3, H, W]`` to the C5 map, with ``num_channels``.
    """

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        self.num_channels: int = body.num_channels
        #: pixels per feature cell on both axes: cell ``(r, c)`` covers ``[c*s, (c+1)*s) x [r*s, (r+1)*s)``
        #: of the padded image (the map has ``ceil(H / s)`` rows; the last may be partly outside)
        self.stride: int = body.stride

    def forward(self, images: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        """Run the body and downsample the mask.

        Args:
            images: ``[B, 3, H, W]`` padded batch.
            mask: ``[B, H, W]`` bool, True on padding.

        Returns:
            features ``[B, C, h, w]`` (``h = ceil(H / stride)``) and mask ``[B, h, w]`` (nearest
            interpolation, as DETR).
        """
        feats = self.body(images)
        m = nn.functional.interpolate(mask[None].float(), size=feats.shape[-2:]).to(torch.bool)[0]
        return feats, m

    def forward_levels(self, images: Tensor, mask: Tensor, fine: bool = False) -> Tuple[List[Tensor], List[Tensor]]:
        """Multi-scale features (strides 8 / 16 / 32; ``fine``: the stride-4 map first) and their
        masks (nearest interpolation of the image mask, as Deformable DETR's backbone.py 91). Needs a
        body with ``forward_levels``."""
        if not hasattr(self.body, "forward_levels"):
            raise ConfigError(f"backbone {type(self.body).__name__} has no multi-scale outputs; Deformable DETR "
                              f"needs resnet18/34/50/101 or small_res")
        feats = self.body.forward_levels(images, fine=True) if fine else self.body.forward_levels(images)
        masks = [nn.functional.interpolate(mask[None].float(), size=f.shape[-2:]).to(torch.bool)[0] for f in feats]
        return feats, masks


def freeze_backbone_like_detr(backbone: Backbone, train_backbone: bool) -> None:
    """DETR's rule: only layer2-4 train (BN is frozen anyway); nothing trains if not ``train_backbone``.

    The tiny body is fully trainable when ``train_backbone``.
    """
    for name, p in backbone.body.named_parameters():
        trainable = train_backbone and (
            isinstance(backbone.body, (TinyBody, ResidualSmallBody)) or any(name.startswith(f"layer{i}.") for i in (2, 3, 4)))
        p.requires_grad_(trainable)


def build_backbone(name: str, dilation: bool = False, train_backbone: bool = True) -> Backbone:
    """Build a backbone by name.

    Args:
        name: ``resnet18 | resnet34 | resnet50 | resnet101 | tiny | small``.
        dilation: DC5 (ResNets only).
        train_backbone: False freezes every backbone parameter (DETR's ``lr_backbone <= 0``).

    Returns:
        :class:`Backbone`; ``backbone(images, mask) -> (C5 [B, C, h, w], mask [B, h, w])`` and
        ``backbone.num_channels`` = C.
    """
    if name in SMALL_BODIES:
        if dilation:
            raise ConfigError(f"model.detr.dilation: DC5 is only defined for ResNet backbones, not '{name}'")
        widths, per_stage = SMALL_BODIES[name]
        body: nn.Module = TinyBody(widths, per_stage)
    elif name in RESIDUAL_BODIES:
        if dilation:
            raise ConfigError(f"model.detr.dilation: DC5 is only defined for ResNet backbones, not '{name}'")
        body = ResidualSmallBody(RESIDUAL_BODIES[name])
    elif name in RESNET_LAYERS:
        body = ResNetBody(name, dilation)
    else:
        raise ConfigError(f"model.detr.backbone: unknown backbone '{name}' (choose from {', '.join(BACKBONES)})")
    bb = Backbone(body)
    freeze_backbone_like_detr(bb, train_backbone)
    return bb
