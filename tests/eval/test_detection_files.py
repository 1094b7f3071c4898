"""Every evaluator's detection-file reader turns a broken .npz into one DataError line naming the file."""
import numpy as np
import pytest

from hoikit.errors import DataError
from hoikit.eval.hicodet_io import DETECTION_KEYS
from hoikit.eval.hicodet_io import load_detections as load_hicodet
from hoikit.eval.sgg_io import NPZ_KEYS
from hoikit.eval.sgg_io import load_predictions as load_sgg
from hoikit.eval.vcoco_records import load_detections as load_vcoco

# reader and the arrays its .npz format holds (docs/formats.md)
READERS = {"hicodet": (load_hicodet, DETECTION_KEYS),
           "vcoco": (load_vcoco, ("image_id", "person_box", "agent_scores", "role_boxes", "role_scores")),
           "sgg": (load_sgg, NPZ_KEYS)}


def _not_a_zip(path, keys):
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive")


def _object_array(path, keys):
    """Every array present, the first one an object array (reading it back needs pickle)."""
    np.savez(path, **{k: np.zeros(1) for k in keys[1:]}, **{keys[0]: np.array([{"a": 1}], dtype=object)})


def _no_arrays(path, keys):
    np.savez(path)


@pytest.mark.parametrize("name", sorted(READERS))
@pytest.mark.parametrize("write", [_not_a_zip, _object_array, _no_arrays])
def test_broken_npz_is_a_one_line_data_error(tmp_path, name, write):
    read, keys = READERS[name]
    path = tmp_path / "pred.npz"
    write(path, keys)
    with pytest.raises(DataError) as e:
        read(path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
