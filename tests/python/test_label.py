"""`sam3 label` (issue 15): a folder or list of images and a list of classes into one COCO
instances file that pycocotools loads; every annotation equal to `sam3 segment` with that
class on that image (scores, boxes, RLE) and its area equal to pycocotools' own; a bad
image recorded and skipped; --resume after the process is killed mid-run gives the same
file as an uninterrupted run; bad arguments give one error and no file."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from PIL import Image

from conftest import ROOT, SAMPLE

CLI = os.environ.get("SAM3_CLI", os.path.join(ROOT, "build", "sam3"))


def label(bundle, images, out, *extra, check=True):
    r = subprocess.run([CLI, "label", "--bundle", bundle, "--images", str(images), "--out", str(out), *extra],
                       capture_output=True, text=True, timeout=900)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    shutil.copy(SAMPLE, d / "a_sample.png")
    Image.open(SAMPLE).convert("RGB").transpose(Image.FLIP_LEFT_RIGHT).save(d / "b_flipped.jpg", quality=92)
    (d / "c_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (d / "notes.txt").write_text("not an image")
    return d


def test_coco_file_matches_segment(folder, tiny_bundle, tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    out = tmp_path / "coco.json"
    r = label(tiny_bundle, folder, out, "--classes", "cat, dog,cat", "--threshold", "0.2")
    assert "c_broken.png" in r.stderr and not (tmp_path / "coco.json.partial").exists()
    coco = COCO(str(out))
    doc = json.load(open(out))
    assert [c["name"] for c in doc["categories"]] == ["cat", "dog"]
    assert [i["file_name"] for i in doc["images"]] == ["a_sample.png", "b_flipped.jpg"]
    assert [f["file_name"] for f in doc["failed_images"]] == ["c_broken.png"]
    assert len(doc["annotations"]) > 0 and len(coco.getAnnIds()) == len(doc["annotations"])
    for img in doc["images"]:
        for ci, cls in enumerate(["cat", "dog"], start=1):
            seg_out = tmp_path / f"seg_{img['id']}_{cls}"
            s = subprocess.run([CLI, "segment", "--bundle", tiny_bundle, "--image", str(folder / img["file_name"]),
                                "--text", cls, "--threshold", "0.2", "--out", str(seg_out)], capture_output=True,
                               text=True, timeout=600)
            assert s.returncode == 0, s.stderr
            want = json.load(open(seg_out / "result.json"))["instances"]
            got = [a for a in doc["annotations"] if a["image_id"] == img["id"] and a["category_id"] == ci]
            assert len(got) == len(want)
            for g, w in zip(got, want):
                assert g["score"] == w["score"] and g["segmentation"] == w["segmentation"]
                x0, y0, x1, y1 = w["box"]
                assert g["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=1e-4)
                assert g["area"] == int(mask_utils.area(g["segmentation"]))
                assert g["iscrowd"] == 0
                assert (img["height"], img["width"]) == tuple(g["segmentation"]["size"])


def test_resume_after_kill_equals_a_full_run(folder, tiny_bundle, tmp_path):
    names = []
    for k in range(6):  # six images: three pairs of the two good ones under other names
        src = folder / ("a_sample.png" if k % 2 == 0 else "b_flipped.jpg")
        dst = tmp_path / "imgs" / f"{k:02d}{src.suffix}"
        dst.parent.mkdir(exist_ok=True)
        shutil.copy(src, dst)
        names.append(f"imgs/{dst.name}")
    lst = tmp_path / "list.txt"
    lst.write_text("# six images\n" + "\n".join(names) + "\n\n")
    full = tmp_path / "full.json"
    label(tiny_bundle, lst, full, "--classes", "cat", "--threshold", "0.1")

    out = tmp_path / "resumed.json"
    p = subprocess.Popen([CLI, "label", "--bundle", tiny_bundle, "--images", str(lst), "--out", str(out),
                          "--classes", "cat", "--threshold", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = tmp_path / "resumed.json.partial"
    deadline = time.time() + 300
    while not (partial.exists() and len(partial.read_text().splitlines()) >= 3):  # header + 2 images
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not out.exists()
    with open(partial, "a") as f:
        f.write('{"file_name": "imgs/0')  # a line cut by the kill is labelled again
    # other options: refused
    r = label(tiny_bundle, lst, out, "--classes", "dog", "--threshold", "0.1", "--resume", check=False)
    assert r.returncode == 1 and "other options" in r.stderr and not out.exists()
    r = label(tiny_bundle, lst, out, "--classes", "cat", "--threshold", "0.1", "--resume")
    n = len(partial.read_text().splitlines()) if partial.exists() else None
    assert n is None
    assert "resuming," in r.stderr
    done = int(r.stderr.split("resuming, ")[1].split(" of")[0])
    assert 2 <= done < 6
    assert json.load(open(out)) == json.load(open(full))


def test_bad_arguments(folder, tiny_bundle, tmp_path):
    out = tmp_path / "x.json"
    cases = [
        (["--images", str(folder), "--classes", " , "], "no class"),
        (["--images", str(tmp_path / "missing"), "--classes", "cat"], "not a folder"),
        (["--images", str(tmp_path), "--classes", "cat"], "no .jpg"),
        (["--images", str(folder), "--classes", "cat", "--threshold", "2"], "threshold"),
    ]
    for args, msg in cases:
        r = subprocess.run([CLI, "label", "--bundle", tiny_bundle, "--out", str(out), *args], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode != 0 and msg in r.stderr, (args, r.stderr)
        assert not out.exists() and not (tmp_path / "x.json.partial").exists()
    r = subprocess.run([CLI, "label", "--bundle", str(tmp_path / "nobundle"), "--images", str(folder), "--classes",
                        "cat", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and not out.exists()
