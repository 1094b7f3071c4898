import torch
from torch.utils.data import DataLoader, Dataset

from hoikit.cli import main, one_line
from hoikit.errors import DataError


class _Broken(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise DataError(f"images/x.jpg (image {i}): cannot read image")


def test_worker_error_reduced_to_original_line():
    loader = DataLoader(_Broken(), batch_size=1, num_workers=1)
    try:
        next(iter(loader))
    except DataError as e:
        assert "\n" in str(e)  # torch wraps it in a multi-line message
        assert one_line(e) == "images/x.jpg (image 0): cannot read image"
    else:
        raise AssertionError("the loader did not raise")


def test_cli_prints_one_line_without_traceback(tmp_path, capsys):
    code = main(["train", str(tmp_path / "missing.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "missing.yaml" in err and err.startswith("hoikit: error:")
