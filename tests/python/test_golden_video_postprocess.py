"""The committed video post-processing goldens (tests/cpp/data/video_postprocess_cases.json)
are what the official code produces now.

tests/cpp/data/gen_video_postprocess_cases.py builds them in memory from the official
functions (torch's antialiased interpolate, fill_holes_in_mask_scores, the non-overlap
constraints, bfloat16 conversion, select_closest_cond_frames, frame_filter); here they
are rebuilt and compared with the file the C++ test reads.
"""

import importlib.util
import json
import math
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "cpp", "data")
NAME = "video_postprocess_cases.json"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_video_postprocess_cases",
                                                  os.path.join(DATA, "gen_video_postprocess_cases.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gen():
    return _generator()


def _assert_same(fresh, committed, where):
    """Exact, except floats: 1e-4. torch's AVX2/AVX512 kernels give the committed values
    bit for bit; its non-FMA DEFAULT kernel (ATEN_CPU_CAPABILITY=default) rounds some
    antialiased-resize sums differently (~1e-6). Every other float is copied, thresholded
    or rounded to bf16, so it is exact on any build."""
    if isinstance(committed, dict):
        assert isinstance(fresh, dict) and fresh.keys() == committed.keys(), where
        for k in committed:
            _assert_same(fresh[k], committed[k], f"{where}.{k}")
    elif isinstance(committed, list):
        assert isinstance(fresh, list) and len(fresh) == len(committed), where
        for i, (a, b) in enumerate(zip(fresh, committed)):
            _assert_same(a, b, f"{where}[{i}]")
    elif isinstance(committed, float):
        assert isinstance(fresh, (int, float)), where
        assert math.isclose(fresh, committed, rel_tol=1e-4, abs_tol=1e-4), (where, fresh, committed)
    else:
        assert type(fresh) is type(committed) and fresh == committed, (where, fresh, committed)


def test_committed_goldens_are_current(gen):
    with open(os.path.join(DATA, NAME)) as f:
        committed = json.load(f)
    fresh = json.loads(gen.dumps(gen.build_cases()))  # through the same text form
    # which torch CPU build made the resize values is a fact about this machine, not the code
    fresh.pop("meta")
    assert committed.pop("meta")[0]["torch_kernel"] in ("fma", "default")
    # double sums over a whole resize output: a ~1e-6 difference per value (DEFAULT
    # kernel) adds up over the values, so the bound grows with their number
    assert len(fresh["resize"]) == len(committed["resize"])
    for i, (a, b) in enumerate(zip(fresh["resize"], committed["resize"])):
        n = b["dst_h"] * b["dst_w"]
        for key, tol in (("sum", 1e-5), ("sum_sq", 2e-4)):  # |v| <= 10
            if key in b:
                assert math.isclose(a.pop(key), b.pop(key), rel_tol=0, abs_tol=tol * n), (f"resize[{i}].{key}")
    _assert_same(fresh, committed, NAME)


def test_goldens_stay_small():
    assert os.path.getsize(os.path.join(DATA, NAME)) < 1_000_000


def test_cases_cover_the_brief(gen):
    """The edge cases the C++ test relies on are still there."""
    with open(os.path.join(DATA, NAME)) as f:
        g = json.load(f)
    assert {c["n"] for c in g["non_overlap"]} == {1, 2, 5} == {c["n"] for c in g["object_wise"]}
    assert any(c["negative_remain"] for c in g["select_cond"])
    assert {len(c["cond"]) for c in g["select_cond"]} == set(range(1, 8))
    assert {c["keep_first"] for c in g["select_cond"]} == {False, True}
    assert {c["reverse"] for c in g["frame_filter"]} == {False, True}
    assert any(c["valid"] == [] for c in g["frame_filter"])
    assert any(c["max_area"] == 16 and c["to_pos"] and c["to_neg"] for c in g["fill_holes"])
    assert any(c["src_h"] > c["dst_h"] for c in g["resize"]) and any(c["src_h"] < c["dst_h"] for c in g["resize"])
