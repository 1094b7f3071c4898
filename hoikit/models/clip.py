"""Frozen CLIP (Radford et al. 2021) text and image towers from a LOCAL directory.

SG2HOI+ uses CLIP for three things (paper Section III and IV-D): text embeddings of
"A photo of a [class]" for the semantic-spatial map and classifier initialisation, and the
image embedding (ViT-B/32 at 224x224) that the encoder is distilled towards (Eq. 5).

The directory is anything ``transformers.CLIPModel.from_pretrained`` and ``AutoTokenizer`` read
(e.g. a saved ``openai/clip-vit-base-patch32``). Nothing is downloaded. Image preprocessing is done
here on tensors (no CLIPProcessor, no torchvision): undo the dataset normalisation, resize the whole
image to 224x224 (bilinear), normalise with CLIP's mean/std.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import CheckpointError

# CLIP's preprocessing constants (openai/CLIP clip/clip.py `_transform`).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_SIZE = 224
# hoikit datasets normalise images with the ImageNet mean/std (DETR's transforms).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _features(out) -> Tensor:
    """transformers 4.x returns a tensor from get_*_features, 5.x an output whose pooler is projected."""
    return out if isinstance(out, Tensor) else out.pooler_output


class FrozenCLIP(nn.Module):
    """CLIP text and image towers, frozen and always in eval mode.

    Args:
        path: local directory with the CLIP config, weights and tokenizer files.

    Attributes:
        embed_dim: dimension of the joint embedding space (512 for ViT-B/32).
    """

    def __init__(self, path: str):
        super().__init__()
        p = Path(path)
        if not p.is_dir() or not (p / "config.json").exists():
            raise CheckpointError(f"model.sg2hoi.clip_path: '{path}' is not a directory with a CLIP config.json")
        from transformers import AutoTokenizer, CLIPModel  # heavy dependency (seconds): only when CLIP is used
        try:
            self.model = CLIPModel.from_pretrained(str(p))
            self.tokenizer = AutoTokenizer.from_pretrained(str(p))
        except Exception as e:  # transformers raises many types; report one line
            raise CheckpointError(f"{path}: cannot load CLIP: {str(e).splitlines()[0]}") from None
        self.model.eval()
        for q in self.model.parameters():
            q.requires_grad_(False)
        self.embed_dim = int(self.model.config.projection_dim)
        self.register_buffer("in_mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("in_std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)
        self.register_buffer("clip_mean", torch.tensor(CLIP_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("clip_std", torch.tensor(CLIP_STD).view(3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        """CLIP stays in eval mode (frozen)."""
        return super().train(False)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        """``N`` prompts -> projected text embeddings ``[N, embed_dim]`` (not normalised)."""
        dev = self.in_mean.device
        tok = self.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
        out = self.model.get_text_features(input_ids=tok["input_ids"].to(dev),
                                           attention_mask=tok["attention_mask"].to(dev))
        return _features(out).float()

    def preprocess(self, images: List[Tensor]) -> Tensor:
        """ImageNet-normalised ``[3, H_i, W_i]`` images -> CLIP input ``[B, 3, 224, 224]``."""
        out = []
        for img in images:
            x = img.float() * self.in_std + self.in_mean
            x = F.interpolate(x[None], size=(CLIP_SIZE, CLIP_SIZE), mode="bilinear", align_corners=False)[0]
            out.append((x.clamp(0, 1) - self.clip_mean) / self.clip_std)
        return torch.stack(out)

    @torch.no_grad()
    def encode_image(self, images: List[Tensor]) -> Tensor:
        """Images (list of ImageNet-normalised ``[3, H, W]``) -> ``f_clip [B, embed_dim]``."""
        pix = self.preprocess([im.to(self.in_mean.device) for im in images])
        return _features(self.model.get_image_features(pixel_values=pix)).float()


def load_clip(path: str) -> FrozenCLIP:
    """Load the frozen CLIP towers from ``path`` (a local directory)."""
    return FrozenCLIP(path)
