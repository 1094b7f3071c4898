"""ResNet blocks: BN-folded convolutions and in-place residual adds equal the textbook out-of-place forward.

The reference below runs every module the plain way (``relu(bn(conv(x)) + identity)``, each step a new
tensor) with the same parameters; outputs and gradients must agree in training and at inference.
"""
import torch
from torch import nn

from hoikit.models.backbone import BasicBlock, Bottleneck, FrozenBatchNorm2d, ResNetBody, conv_bn


def _reference_bn(bn: FrozenBatchNorm2d, x):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean.reshape(1, -1, 1, 1)) * scale.reshape(1, -1, 1, 1) + bn.bias.reshape(1, -1, 1, 1)


def _reference_block(block, x):
    identity = x if block.downsample is None else _reference_bn(block.downsample[1], block.downsample[0](x))
    out = torch.relu(_reference_bn(block.bn1, block.conv1(x)))
    if isinstance(block, Bottleneck):
        out = torch.relu(_reference_bn(block.bn2, block.conv2(out)))
        out = _reference_bn(block.bn3, block.conv3(out))
    else:
        out = _reference_bn(block.bn2, block.conv2(out))
    return torch.relu(out + identity)


def _reference_body(body: ResNetBody, x):
    x = body.maxpool(torch.relu(_reference_bn(body.bn1, body.conv1(x))))
    for layer in (body.layer1, body.layer2, body.layer3, body.layer4):
        for block in layer:
            x = _reference_block(block, x)
    return x


def _down(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), FrozenBatchNorm2d(cout))


class TinyResNet(ResNetBody):
    """ResNetBody's stem and forward with narrow stages: basic and bottleneck blocks, strided and dilated."""

    def __init__(self):
        nn.Module.__init__(self)
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False), FrozenBatchNorm2d(8)
        self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 12, stride=2, downsample=_down(8, 12, 2)))
        self.layer3 = nn.Sequential(Bottleneck(12, 4, stride=2, downsample=_down(12, 16, 2)), Bottleneck(16, 4))
        self.layer4 = nn.Sequential(Bottleneck(16, 6, downsample=_down(16, 24, 1)), Bottleneck(24, 6, dilation=2))


def _randomise_bn(module: nn.Module, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, FrozenBatchNorm2d):
            n = m.weight.numel()
            m.weight.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.copy_(0.2 * torch.randn(n, generator=g))
            m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))


def _tiny_resnet() -> ResNetBody:
    torch.manual_seed(0)
    body = TinyResNet()
    _randomise_bn(body)
    return body


def _grads(body, fn, x):
    body.zero_grad()
    x = x.clone().requires_grad_(True)
    out = fn(x)
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    return out.detach(), x.grad, {n: p.grad.clone() for n, p in body.named_parameters()}


def test_resnet_forward_and_gradients_equal_the_out_of_place_reference():
    body = _tiny_resnet().double()
    x = torch.randn(2, 3, 64, 56, dtype=torch.float64)
    out, gx, gp = _grads(body, body, x)
    ref_out, ref_gx, ref_gp = _grads(body, lambda t: _reference_body(body, t), x)
    assert out.shape == (2, 24, 4, 4)
    assert torch.allclose(out, ref_out, rtol=1e-10, atol=1e-10)
    assert torch.allclose(gx, ref_gx, rtol=1e-10, atol=1e-10)
    assert gp.keys() == ref_gp.keys() and len(gp) == 22
    for n in gp:
        assert torch.allclose(gp[n], ref_gp[n], rtol=1e-10, atol=1e-10), n
    with torch.no_grad():                                      # inference: cached folded weights, twice
        body.eval()
        assert torch.allclose(body(x), ref_out, rtol=1e-10, atol=1e-10)
        assert torch.allclose(body(x), ref_out, rtol=1e-10, atol=1e-10)


def test_block_gradient_with_frozen_weights_reaches_the_input():
    # frozen conv weights (DETR's layer1) use the cached fold even while the input needs a gradient
    torch.manual_seed(1)
    down = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), FrozenBatchNorm2d(16))
    for block in (Bottleneck(8, 4, downsample=down), BasicBlock(8, 8)):
        _randomise_bn(block, 2)
        block.double().requires_grad_(False)
        x = torch.randn(1, 8, 6, 6, dtype=torch.float64, requires_grad=True)
        with torch.inference_mode():                           # a cache made here cannot be saved for backward
            block(x.detach())
        for fn in (block, lambda t: _reference_block(block, t)):
            x.grad = None
            fn(x).pow(2).sum().backward()
            if fn is block:
                g = x.grad.clone()
        assert torch.allclose(g, x.grad, rtol=1e-10, atol=1e-12)


def test_folded_cache_follows_weight_updates():
    conv, bn = nn.Conv2d(3, 4, 3, padding=1, bias=False), FrozenBatchNorm2d(4)
    _randomise_bn(bn)
    x = torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        first = conv_bn(conv, bn, x)
        assert torch.allclose(first, _reference_bn(bn, conv(x)), atol=1e-5)
        conv.load_state_dict({"weight": 2 * conv.weight})            # in place copy: version bump
        assert torch.allclose(conv_bn(conv, bn, x), _reference_bn(bn, conv(x)), atol=1e-5)
        bn.running_mean.add_(1.0)
        assert torch.allclose(conv_bn(conv, bn, x), _reference_bn(bn, conv(x)), atol=1e-5)
    conv_bn(conv, bn, x).sum().backward()
    with torch.no_grad():
        conv.weight.sub_(0.5 * conv.weight.grad)                     # what an optimizer step does
        assert torch.allclose(conv_bn(conv, bn, x), _reference_bn(bn, conv(x)), atol=1e-5)
