"""hoikit: human-object interaction detection and scene graph generation.

Systems: RmLR (two-stage, frozen DETR + re-mined interaction features + cross-modal
distillation) and SG2HOI+ (one-stage joint scene graph + HOI transformer).
"""
__version__ = "0.1.0"


def load(checkpoint: str, device: str = "cpu"):
    """Load a trained hoikit checkpoint or model directory (``hoikit export --format dir``) as a
    :class:`hoikit.engine.inference.Predictor`.

    Example:
        >>> model = hoikit.load("runs/demo/rmlr.pt")
        >>> result = model.predict("image.jpg")
        >>> model.save("models/demo")            # config.yaml, model.safetensors, classes.json
        >>> hoikit.load("models/demo")           # no pickle involved
    """
    from .engine.inference import Predictor

    return Predictor.from_checkpoint(checkpoint, device=device)
