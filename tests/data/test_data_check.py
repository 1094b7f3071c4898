import json

import pytest

from hoikit.cli import main


def _run(capsys, *argv):
    rc = main(["data", "check", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_real_hicodet_test_file_statistics(capsys, shared_data, tmp_path):
    rc, out, _ = _run(capsys, "--format", "hicodet", "--anno", shared_data / "hicodet" / "instances_test2015.json",
                      "--json", tmp_path / "r.json")
    assert rc == 0
    assert "images                     9,658" in out and "pairs                      33,405" in out
    stats = json.load(open(tmp_path / "r.json"))["stats"]
    assert stats["images"] == 9658 and stats["pairs"] == 33405 and stats["empty_images"] == 112
    assert stats["hoi_classes_present"] == "600 / 600" and stats["rare_classes"] == 138


def _tiny(hico_test_json, tmp_path, n=5):
    d = dict(hico_test_json)
    for k in ("annotation", "filenames", "size"):
        d[k] = [json.loads(json.dumps(x)) for x in d[k][:n]]
    d["empty"] = []
    return d


def test_malformed_annotation_lists_every_problem(capsys, hico_test_json, tmp_path):
    d = _tiny(hico_test_json, tmp_path)
    d["annotation"][1]["boxes_o"][0] = [300, 50, 200, 60]
    d["annotation"][2]["object"] = d["annotation"][2]["object"][:-1]
    d["annotation"][3]["verb"][0] = 117
    del d["annotation"][4]["boxes_h"]
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    rc, out, err = _run(capsys, "--format", "hicodet", "--anno", p, "--json", tmp_path / "r.json")
    assert rc == 1 and err == ""
    expected = [f"{p}: image 1: field 'boxes_o[0]': box [300.0, 50.0, 200.0, 60.0] has x2 < x1",
                f"{p}: image 2: field 'object': has", f"{p}: image 3: field 'verb[0]': value 117 out of range",
                f"{p}: image 4: field 'boxes_h': missing key"]
    for e in expected:
        assert e in out
    report = json.load(open(tmp_path / "r.json"))
    assert report["errors"] == 4 and report["stats"]["box_errors"] == 1


def test_missing_and_unreadable_images(capsys, hico_test_json, tmp_path, image_writer):
    d = _tiny(hico_test_json, tmp_path, n=3)
    p = tmp_path / "anno.json"
    p.write_text(json.dumps(d))
    images = image_writer(tmp_path / "img", [(d["filenames"][0], d["size"][0]), (d["filenames"][1], (10, 10))])
    (images / d["filenames"][2]).write_bytes(b"\x00garbage")
    rc, out, _ = _run(capsys, "--format", "hicodet", "--anno", p, "--images", images)
    assert rc == 1
    assert "missing images             0" in out and "unreadable images          1" in out
    assert f"{images / d['filenames'][2]}: image 2 cannot be read" in out
    assert f"image 1: field 'size': file is 10x10" in out  # size mismatch is a warning
    (images / d["filenames"][2]).unlink()
    rc, out, _ = _run(capsys, "--format", "hicodet", "--anno", p, "--images", images)
    assert rc == 1 and f"{images / d['filenames'][2]}: image 2 not found" in out


@pytest.mark.parametrize("content, needle", [
    ("{\"annotation\": [", "not valid JSON"),
    ("{\"annotation\": []}", "missing key 'filenames'"),
    ("[1, 2]", "expected a JSON object"),
])
def test_unusable_file_is_one_line_exit_2(capsys, tmp_path, content, needle):
    p = tmp_path / "x.json"
    p.write_text(content)
    rc, out, err = _run(capsys, "--format", "hicodet", "--anno", p)
    assert rc == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_vg_and_vcoco_and_custom(capsys, vg_files, shared_data, tmp_path):
    h5, dicts, image_data = vg_files
    rc, out, _ = _run(capsys, "--format", "vg", "--anno", h5, "--dicts", dicts, "--image-data", image_data)
    assert rc == 0 and "images                  2" in out and "relations               4" in out
    rc, out, _ = _run(capsys, "--format", "vg", "--anno", h5, "--dicts", dicts, "--image-data", image_data,
                      "--keep-empty-rels")
    assert "images                  3" in out and "empty images            1" in out
    rc, out, _ = _run(capsys, "--format", "vcoco", "--anno", shared_data / "vcoco" / "instances_vcoco_test.json")
    assert rc == 0 and "4,946" in out and "12,402" in out
    anno = tmp_path / "c.json"
    anno.write_text(json.dumps([{"file_name": "a.jpg", "annotations": [{"bbox": [0, 0, 5, 5], "category_id": 0}],
                                 "hoi_annotation": [{"subject_id": 0, "object_id": 3, "category_id": 0}]}]))
    rc, out, _ = _run(capsys, "--format", "custom", "--anno", anno)
    assert rc == 1 and f"{anno}: image 0: field 'hoi_annotation[0].object_id': index 3 out of range" in out


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def test_truncated_images_are_found_by_a_full_decode(capsys, hico_test_json, tmp_path):
    """A truncated JPEG / PNG has a valid header (the old header check passed it); decoding every
    pixel finds it, with the decoder's message, on several threads, in file order."""
    import numpy as np
    from PIL import Image

    d = _tiny(hico_test_json, tmp_path, n=5)
    d["filenames"][3] = d["filenames"][3].replace(".jpg", ".png")
    images = tmp_path / "img"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h) in zip(d["filenames"], d["size"]):
        w, h = int(w), int(h)
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(images / name)
    _truncate(images / d["filenames"][1])                     # JPEG
    _truncate(images / d["filenames"][3], 0.9)               # PNG
    p = tmp_path / "anno.json"
    p.write_text(json.dumps(d))
    rc, out, err = _run(capsys, "--format", "hicodet", "--anno", p, "--images", images, "--workers", "3",
                        "--json", tmp_path / "r.json")
    assert rc == 1
    assert "unreadable images          2" in out and "missing images             0" in out
    report = json.load(open(tmp_path / "r.json"))
    assert [q["message"] for q in report["problems"]] == [
        f"{images / d['filenames'][1]}: image 1 cannot be read (OSError: image file is truncated "
        f"({report['problems'][0]['message'].split('(')[-1]}",
        f"{images / d['filenames'][3]}: image 3 cannot be read (OSError: image file is truncated)"]
    assert "bytes not processed" in report["problems"][0]["message"]
    assert "decoding images" in err and "5/5" in err             # the progress bar (stderr)
