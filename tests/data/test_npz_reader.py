"""load_npz: the direct read of uncompressed members equals np.load; anything unusual falls back or errors."""
import numpy as np
import pytest

from hoikit.data.reader_base import _read_stored_npz, load_npz
from hoikit.errors import DataError

ARRAYS = dict(i16=np.arange(12, dtype=np.int16).reshape(3, 4), fortran=np.asfortranarray(np.random.rand(3, 5)),
              empty=np.zeros((0, 4), np.float32), scalar=np.float64(3.5), flags=np.array([True, False]),
              big_endian=np.arange(5, dtype=">i4"))


def test_uncompressed_members_are_read_directly_and_equal_np_load(tmp_path):
    np.savez(tmp_path / "u.npz", **ARRAYS)
    np.savez_compressed(tmp_path / "c.npz", **ARRAYS)
    assert _read_stored_npz(tmp_path / "u.npz", list(ARRAYS)) is not None      # the fast path is taken
    assert _read_stored_npz(tmp_path / "c.npz", list(ARRAYS)) is None          # compressed: np.load
    for name in ("u.npz", "c.npz"):
        got = load_npz(tmp_path / name, list(ARRAYS))
        for k, v in ARRAYS.items():
            assert got[k].dtype == np.asarray(v).dtype and got[k].shape == np.shape(v), (name, k)
            assert np.array_equal(got[k], v), (name, k)
        got["i16"][0, 0] = 7                                                    # own, writable memory


def test_object_arrays_truncated_files_and_missing_keys_are_one_line_errors(tmp_path):
    np.savez(tmp_path / "o.npz", a=np.array([{"x": 1}], dtype=object))
    assert _read_stored_npz(tmp_path / "o.npz", ["a"]) is None
    with pytest.raises(DataError, match="o.npz: not a readable .npz"):
        load_npz(tmp_path / "o.npz", ["a"])
    np.savez(tmp_path / "m.npz", a=np.zeros(3))
    with pytest.raises(DataError, match="m.npz: missing array 'b'"):
        load_npz(tmp_path / "m.npz", ["a", "b"])
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="t.npz"):
        load_npz(tmp_path / "t.npz", ["a"])
