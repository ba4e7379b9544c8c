import io
import json

from sam3_tvm.model import components as C
from sam3_tvm.tools.inspect_model import run_inspect


def test_inspect_reports_ops_and_hard_spots():
    buf = io.StringIO()
    run_inspect("tiny", as_json=True, out=buf)
    rep = json.loads(buf.getvalue())
    comps = rep["components"]
    assert set(comps) == set(C.COMPONENTS)
    enc = comps["image_encoder"]
    # the official ViT uses complex RoPE, which TVM's importer cannot take
    assert "view_as_complex.default" in enc["missing_in_tvm"]
    assert enc["complex_tensors"]["buffers"] == 2
    assert enc["missing_after_patches"] == []
    assert enc["ops"]["convolution.default"] >= 1
    head = comps["grounding_head"]
    assert "roi_align (box prompts)" in head["hard_spots"]
    assert "grid_sample (point prompts)" in head["hard_spots"]
    assert all(c["missing_after_patches"] == [] for c in comps.values())
    assert any(s["what"] == "CUDA-only call" for s in head["source_spots"])


def test_inspect_table_output():
    buf = io.StringIO()
    run_inspect("tiny", as_json=False, out=buf)
    text = buf.getvalue()
    assert "== image_encoder:" in text and "view_as_complex.default" in text
    assert "MISSING (rewritten by rope.realify)" in text
