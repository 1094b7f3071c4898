"""Shared pieces of the ONNX export tests (test_onnx_export.py: DETR / UPT / RmLR; test_onnx_deformable.py:
Deformable DETR and RmLR on it): the SynthHOI metadata, a detector vocabulary in another order than the
dataset's, the tiny RmLR sizes, the export command and the output comparison."""
import numpy as np

from hoikit.cli import main
from hoikit.data.metadata import DatasetMeta
from hoikit.data.synth.classes import CORRESPONDENCE, OBJECTS, VERBS

TOL = 1e-4
META = DatasetMeta(name="synth", objects=list(OBJECTS), verbs=list(VERBS), person_label=0,
                   correspondence=np.asarray(CORRESPONDENCE))
# a detector with two classes the dataset lacks, in another order: RmLR's label map runs
DETECTOR_CLASSES = ["zebra"] + list(OBJECTS[::-1]) + ["giraffe"]
TINY_RMLR = ["model.rmlr.representation_size=64", "model.rmlr.ire_dim=32", "model.rmlr.cml_dim=64",
             "model.rmlr.ire_ffn=64", "model.rmlr.ire_layers=1", "model.rmlr.cml_sa_layers=1"]


def export(tmp_path, ck):
    """``hoikit export --format onnx`` of checkpoint ``ck`` into ``tmp_path/onnx``."""
    out = tmp_path / "onnx"
    assert main(["export", "--checkpoint", str(ck), "--format", "onnx", "--out", str(out)]) == 0
    return out


def assert_close(ours, ref):
    """onnxruntime outputs ``ours`` (numpy) against PyTorch's ``ref`` (tensors): integer and boolean
    outputs equal, float outputs within :data:`TOL`; ``size`` is not compared."""
    for k, v in ref.items():
        if k == "size":
            continue
        v = v.detach().numpy()
        assert ours[k].shape == v.shape, k
        if v.dtype.kind in "iub":
            np.testing.assert_array_equal(ours[k], v, err_msg=k)
        else:
            np.testing.assert_allclose(ours[k], v, rtol=0, atol=TOL, err_msg=k)
