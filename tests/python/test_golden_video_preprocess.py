"""The committed video-preprocess goldens (tests/cpp/data/video_preprocess) are
what the generator and the official sam3 video loader produce now, so the C++
goldens cannot go stale."""

import importlib.util
import os

from conftest import ROOT

DATA = os.path.join(ROOT, "tests", "cpp", "data")
OUT = os.path.join(DATA, "video_preprocess")


def _generator():
    path = os.path.join(DATA, "gen_video_preprocess_cases.py")
    spec = importlib.util.spec_from_file_location("gen_video_preprocess_cases", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _generator()


def test_goldens_are_up_to_date():
    for name, data in gen.build_goldens().items():
        with open(os.path.join(OUT, name), "rb") as f:
            assert f.read() == data, f"{name} differs; rerun {DATA}/gen_video_preprocess_cases.py"


def test_no_stray_files():
    assert set(os.listdir(OUT)) == {"golden.json", "golden.bin"}
