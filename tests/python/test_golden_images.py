"""The committed image test data (tests/cpp/data/images) is what the generator
and the official Python pipeline produce now, so the C++ goldens cannot go stale."""

import importlib.util
import os

import pytest

from conftest import ROOT

DATA = os.path.join(ROOT, "tests", "cpp", "data")
IMAGES = os.path.join(DATA, "images")


def _generator():
    spec = importlib.util.spec_from_file_location("gen_image_cases", os.path.join(DATA, "gen_image_cases.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _generator()


def _committed(name):
    with open(os.path.join(IMAGES, name), "rb") as f:
        return f.read()


def test_images_are_up_to_date():
    for name, data in gen.build_images().items():
        assert _committed(name) == data, f"{name} differs; rerun {DATA}/gen_image_cases.py"


@pytest.mark.skipif(not gen.native_uint8_resize(),
                    reason="torchvision resizes uint8 natively only on AVX2/AVX512 CPUs")
def test_goldens_are_up_to_date():
    for name, data in gen.build_goldens(IMAGES).items():
        assert _committed(name) == data, f"{name} differs; rerun {DATA}/gen_image_cases.py"


def test_no_stray_files():
    expected = set(gen.build_images()) | {"golden.json", "golden.bin"}
    assert set(os.listdir(IMAGES)) == expected
