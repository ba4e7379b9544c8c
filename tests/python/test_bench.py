"""`sam3-tvm bench` on the tiny bundle: both sides timed, report/plot/table written."""
import json
import os
import platform
import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLE

BENCH = os.path.join(os.path.dirname(os.environ.get("SAM3_CLI", os.path.join(ROOT, "build", "sam3"))),
                     "sam3-bench")


@pytest.fixture(scope="module")
def report(tiny_bundle, tmp_path_factory):
    if not os.path.isfile(BENCH):
        pytest.fail(f"C++ bench driver not built at {BENCH} (run `make cpp`)")
    d = tmp_path_factory.mktemp("bench")
    md = d / "perf.md"
    md.write_text("# Perf\n\nintro\n\n<!-- bench:begin -->\nold table\n<!-- bench:end -->\n\ntail\n")
    r = subprocess.run([sys.executable, "-m", "sam3_tvm.cli", "bench", "--bundle", tiny_bundle,
                        "--image", SAMPLE, "--runs", "2", "--exe", BENCH, "--json", str(d / "b.json"),
                        "--plot", str(d / "b.png"), "--markdown", str(md),
                        "--alt-bundle", tiny_bundle],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    return json.loads((d / "b.json").read_text()), md.read_text(), d


def test_every_row_timed_on_both_sides(report):
    rep, _, _ = report
    for row in ("encode", "text", "point", "image_encoder", "text_encoder", "grounding_head",
                "interactive_decoder"):
        r = rep["rows"][row]
        for side in ("tvm", "torch"):
            assert len(r[side]["runs"]) == 2 and all(t > 0 for t in r[side]["runs"])
            assert r[side]["min"] <= r[side]["median"] <= r[side]["max"]
        assert r["ratio"] == pytest.approx(r["torch"]["median"] / r["tvm"]["median"])
    # a component cannot take longer than the end-to-end call that contains it
    assert rep["rows"]["image_encoder"]["tvm"]["max"] <= rep["rows"]["encode"]["tvm"]["max"]
    assert rep["rows"]["encode"]["flops"] >= rep["rows"]["image_encoder"]["flops"] > 0


def test_machine_and_bundle_cpu_recorded(report):
    """A speed claim holds for the CPU it was measured on: the report names it (model,
    LLVM mcpu, vector ISA) and the CPU the bundle was built for."""
    rep, md, _ = report
    m = rep["machine"]
    flags = open("/proc/cpuinfo").read()
    assert m["mcpu"] and m["cpu"] != "unknown"
    assert ("AVX2" in m["isa"]) == (" avx2" in flags) and ("AVX-512F" in m["isa"]) == (" avx512f" in flags)
    assert rep["bundle_mcpu"] == json.load(open(os.path.join(rep["bundle"], "manifest.json")))["target"]["mcpu"]
    assert f"`mcpu={m['mcpu']}`" in md
    assert rep["versions"]["torch_cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX")


def test_alt_bundle_timed_in_the_same_rounds(report):
    """--alt-bundle (here the same bundle again) is a third side of every round."""
    rep, md, _ = report
    for row in ("encode", "text", "point", "image_encoder", "grounding_head"):
        r = rep["rows"][row]
        assert len(r["alt"]["runs"]) == 2 and all(t > 0 for t in r["alt"]["runs"])
        assert r["alt_speedup"] == pytest.approx(r["tvm"]["median"] / r["alt"]["median"])
    assert rep["alt"]["precision"] == "fp32" and rep["alt"]["cpp_peak_rss_bytes"] > 0
    assert "fp32 speed-up over TVM fp32" in md and "--alt-bundle" in rep["command"]


def test_gemm_rows_and_peak(report):
    rep, _, _ = report
    assert rep["sgemm_peak_gflops"] == max(rep["sgemm_gflops"].values())
    assert len(rep["sgemm_gflops"]) == 3 and min(rep["sgemm_gflops"].values()) > 1
    lin = [r for k, r in rep["rows"].items() if k.startswith("linear ")]
    assert len(lin) == 4 and all(r["tvm_gflops"] > 0 for r in lin)
    assert rep["cpp_peak_rss_bytes"] > rep["weights_bytes"] > 0


def test_markdown_block_replaced_and_plot_written(report):
    _, md, d = report
    assert "old table" not in md and md.startswith("# Perf\n\nintro") and md.rstrip().endswith("tail")
    assert md.count("<!-- bench:begin -->") == 1 and "| encode image (end to end) |" in md
    assert (d / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_driver_is_a_clear_error(tiny_bundle, tmp_path):
    r = subprocess.run([sys.executable, "-m", "sam3_tvm.cli", "bench", "--bundle", tiny_bundle,
                        "--exe", str(tmp_path / "nope")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "bench driver not found" in r.stderr


def test_pytorch_bf16_side_runs_under_autocast():
    """The bf16 bundle's comparator: the official pipeline under PyTorch's bf16 autocast,
    encoding and prompting on its own state (the fp32 side's features stay fp32)."""
    import torch

    from sam3_tvm.tools.bench import TorchSide

    ts = TorchSide("tiny", None, 0, SAMPLE)
    for bf16 in (False, True):
        for cmd in ("encode", "text", "point"):
            assert ts.run(cmd, bf16=bf16)[cmd] > 0

    def dtypes(x):
        if isinstance(x, torch.Tensor):
            return {x.dtype} if x.is_floating_point() else set()
        items = x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else []
        return set().union(*[dtypes(v) for v in items]) if items else set()

    assert dtypes(ts.states[False]["backbone_out"]) == {torch.float32}
    assert torch.bfloat16 in dtypes(ts.states[True]["backbone_out"])


def test_bf16_table_has_the_pytorch_bf16_columns():
    from sam3_tvm.tools.bench import _fmt_row, _header

    st = lambda s: {"median": s, "min": s, "max": s, "runs": [s]}  # noqa: E731
    row = {"tvm": st(2.0), "torch": st(3.0), "ratio": 1.5, "alt": st(1.0), "alt_speedup": 2.0,
           "torch_bf16": st(1.5), "alt_vs_torch_bf16": 1.5}
    head, cells = _header("bf16"), _fmt_row("encode", row, "bf16")
    assert len(head) == len(cells) and "PyTorch bf16 autocast" in head[-2]
    assert cells[-2:] == ["1,500.0 (1,500.0-1,500.0)", "1.50x"]
    # an fp32 alt bundle has no PyTorch bf16 side
    assert len(_header("fp32")) == len(_fmt_row("encode", row, "fp32")) == len(head) - 2


def test_driver_reports_its_own_peak_rss(tiny_bundle):
    """sam3-bench is spawned by a process holding the PyTorch model; Linux's ru_maxrss
    starts a child at its parent's peak after exec, which made every bundle report the
    Python side's 4.97 GiB. The driver must report its own high-water mark."""
    import numpy as np

    if not os.path.isfile(BENCH):
        pytest.fail(f"C++ bench driver not built at {BENCH} (run `make cpp`)")
    ballast = np.ones(1 << 28, np.float32)  # 1 GiB touched in this (the parent) process
    r = subprocess.run([BENCH, "--bundle", tiny_bundle, "--image", SAMPLE], input="encode\nquit\n",
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    replies = [json.loads(line) for line in r.stdout.splitlines()]
    assert float(ballast[-1]) == 1.0
    assert 0 < replies[-1]["peak_rss_bytes"] < (1 << 30) * 0.75, replies


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86 CPU names")
def test_linear_rows_time_the_bundles_cpu():
    """The ViT linear rows time the kernel a bundle built for its `mcpu` runs, whatever
    the host (an AVX2 run on an Intel AVX-512 host once timed the host's AVX-512 kernel
    as the AVX2 bundle's): an AVX2 bundle's rows the packed AVX2 kernel, an Intel AVX-512
    bundle's the packed AVX-512 kernel, a Zen 4 bundle's the default schedule."""
    from sam3_tvm.lowering import linear_f32
    from sam3_tvm.lowering.targets import host_target
    from sam3_tvm.tools import bench

    avx2 = bench._fp32_matmul("x86-64-v3")
    assert avx2.func is bench._packed_f32_matmul and avx2.keywords == {"cpu": "x86-64-v3"}
    assert linear_f32.kind_for(host_target(cpu="x86-64-v3")) is linear_f32.KIND_AVX2
    spr = bench._fp32_matmul("sapphirerapids")
    assert spr.func is bench._packed_f32_matmul and spr.keywords == {"cpu": "sapphirerapids"}
    assert linear_f32.kind_for(host_target(cpu="sapphirerapids")) is linear_f32.KIND
    assert bench._fp32_matmul("znver4").func is bench._tvm_matmul
