"""GPU and Apple targets, compile only (no GPU here or in CI): CUDA (fp32 and fp16,
one and two archs) and Metal code generation on the tiny config, the manifest's
target block, and the clear errors of `sam3-tvm compile` and `sam3 --device`.

To keep the suite fast, each target compiles only the components that exercise
its risky paths: the grounding head and the interactive decoder (DLight
fallbacks, symbolic point count, TOPI's scatter kernel, empty kernels) for CUDA
fp32; the text encoder for the two-arch fp16 fat binary; the text encoder and
interactive decoder for Metal. `sam3-tvm compile --target ...` builds all four;
docs/gpu.md lists what was run and how long it took."""
import ctypes
import json
import os
import struct
import subprocess
import sys
import tarfile

import pytest

from conftest import ROOT, SAMPLE
from test_cli_parity import cli

EM_CUDA = 190


def _toolkit():
    from sam3_tvm.lowering import targets

    return targets.nvcc() is not None and (targets.cuda_driver_stub() is not None or _has_driver())


def _has_driver():
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


needs_cuda_toolkit = pytest.mark.skipif(not _toolkit(), reason="no CUDA toolkit (nvcc) here")


def _compile(tmp_path_factory, name, kind, components, arch=None, precision="fp32"):
    from sam3_tvm.lowering import targets
    from sam3_tvm.bundle.writer import compile_bundle

    out = str(tmp_path_factory.mktemp(name) / "bundle")
    compile_bundle("tiny", out, seed=0, components=components,
                   target=targets.parse(kind, arch=arch, precision=precision))
    return out


@pytest.fixture(scope="session")
def cuda_bundle(tmp_path_factory):
    if not _toolkit():
        pytest.skip("no CUDA toolkit (nvcc) here")
    return _compile(tmp_path_factory, "cuda", "cuda", ("grounding_head", "interactive_decoder"))


@pytest.fixture(scope="session")
def cuda_fp16_bundle(tmp_path_factory):
    if not _toolkit():
        pytest.skip("no CUDA toolkit (nvcc) here")
    return _compile(tmp_path_factory, "cuda16", "cuda", ("text_encoder",), arch="sm_80,sm_90",
                    precision="fp16")


@pytest.fixture(scope="session")
def metal_bundle(tmp_path_factory):
    return _compile(tmp_path_factory, "metal", "metal", ("text_encoder", "interactive_decoder"))


def _manifest(bundle):
    with open(os.path.join(bundle, "manifest.json")) as f:
        return json.load(f)


def cuda_archs(path):
    """SM versions of the CUDA ELF images (cubins) embedded in a library."""
    data = open(path, "rb").read()
    archs, i = set(), data.find(b"\x7fELF", 1)
    while i >= 0:
        machine = struct.unpack_from("<H", data, i + 18)[0]
        if machine == EM_CUDA:
            flags = struct.unpack_from("<I", data, i + 48)[0]
            abi_version = data[i + 8]
            archs.add((flags >> 8) & 0xFF if abi_version >= 8 else flags & 0xFF)
        i = data.find(b"\x7fELF", i + 1)
    return archs


def test_cuda_bundle_carries_compiled_kernels(cuda_bundle):
    m = _manifest(cuda_bundle)
    assert m["target"]["kind"] == "cuda" and m["target"]["device"] == "cuda"
    assert m["target"]["archs"] == ["sm_80"] and m["target"]["precision"] == "fp32"
    assert set(m["components"]) == {"grounding_head", "interactive_decoder"}
    assert m["components"]["interactive_decoder"]["dims"]["num_points"] == {"min": 1, "max": 16}
    for entry in m["components"].values():
        lib = os.path.join(cuda_bundle, entry["library"])
        data = open(lib, "rb").read()
        assert cuda_archs(lib) == {80}, entry["library"]
        # compiled at build time: a fat binary, not CUDA source to JIT at load
        assert bytes.fromhex("50ed55ba") in data and b'extern "C" __global__' not in data
        assert data.count(b"_kernel") > 20


def test_cuda_two_archs_fp16(cuda_fp16_bundle):
    m = _manifest(cuda_fp16_bundle)
    assert m["target"]["archs"] == ["sm_80", "sm_90"] and m["target"]["precision"] == "fp16"
    assert cuda_archs(os.path.join(cuda_fp16_bundle, "text_encoder.so")) == {80, 90}
    # weights stay fp32 in the bundle; the casts are in the compiled code
    from safetensors import safe_open

    with safe_open(os.path.join(cuda_fp16_bundle, "weights.safetensors"), "np") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"float32"}


def test_fp16_keeps_norms_softmax_and_residuals_fp32():
    import tvm
    from tvm import relax

    from sam3_tvm.model import rope
    from sam3_tvm.frontend.importer import import_component
    from sam3_tvm.model.builder import build_model
    from sam3_tvm.lowering.pipeline import mixed_precision

    model = build_model("tiny", seed=0)
    rope.realify(model)
    mod, _, _ = import_component("text_encoder", model, model.sam3_tvm_config, no_float64=True)
    mod = mixed_precision(mod)
    seen = {}
    for block in mod["main"].body.blocks:
        for b in block.bindings:
            if isinstance(b.value, relax.Call) and isinstance(b.value.op, tvm.ir.Op):
                ins = {str(a.ty.dtype) for a in b.value.args if isinstance(a.ty, relax.TensorType)}
                seen.setdefault(b.value.op.name, set()).add((str(b.var.ty.dtype), tuple(sorted(ins))))
    assert seen["relax.matmul"] == {("float32", ("float16",))}  # fp16 in, fp32 accumulate/out
    for op in ("relax.nn.layer_norm", "relax.nn.softmax", "relax.add"):
        assert all(out == "float32" and ins == ("float32",) for out, ins in seen[op]), (op, seen[op])


def test_cuda_decoder_has_no_single_thread_kernels(tiny_model):
    """The interactive decoder's kernels over the symbolic point count (softmax, layout
    changes) ran on one GPU thread: 272 of 535 ms of kernel time on an H200, nearly all
    of a click (docs/gpu.md). Its symbolic loops now go over blockIdx.y, the static ones
    over threads: every kernel gets a schedule with threads (no `single_thread`)."""
    import tvm
    from tvm import tirx

    from sam3_tvm.frontend.importer import import_component
    from sam3_tvm.lowering import gpu_schedule as gs, pipeline, targets

    target = targets.tvm_target(targets.parse("cuda", arch="sm_90"))
    mod, _, _ = import_component("interactive_decoder", tiny_model, tiny_model.sam3_tvm_config,
                                 no_float64=False, fused_attention=False, cpu=False)
    mod = pipeline.optimize(mod, target, schedule=False)
    report = {}
    with target:
        mod = gs.gpu_schedule(report)(mod)
    assert report.get("single_thread", 0) == 0, report
    assert report.get("per_block", 0) >= 8, report  # the symbolic kernels, now threaded
    for gv, f in mod.functions_items():
        if isinstance(f, tirx.PrimFunc) and "softmax" in gv.name_hint:
            assert "threadIdx.x" in f.script(), gv.name_hint


def test_metal_bundle(metal_bundle):
    m = _manifest(metal_bundle)
    assert m["target"]["kind"] == "metal" and m["target"]["host"]["mtriple"] == "arm64-apple-macos"
    for name, entry in m["components"].items():
        assert entry["library"] == f"{name}.dylib"
        with tarfile.open(os.path.join(metal_bundle, entry["objects"])) as tar:
            objs = [tar.extractfile(x).read() for x in tar.getmembers() if x.name.endswith(".o")]
        assert objs
        for obj in objs:  # Mach-O 64-bit, CPU type ARM64
            assert struct.unpack_from("<II", obj) == (0xFEEDFACF, 0x0100000C)
        src = open(os.path.join(metal_bundle, entry["kernel_source"])).read()
        assert "#include <metal_stdlib>" in src and src.count("kernel void") > 20
        assert "double" not in src  # Metal has no float64


def test_metal_bundle_needs_linking_on_a_mac(metal_bundle):
    from sam3_tvm.bundle.writer import load_manifest
    from sam3_tvm.errors import Sam3TvmError

    with pytest.raises(Sam3TvmError, match="link its objects on a Mac"):
        load_manifest(metal_bundle)
    r = cli("segment", "--bundle", metal_bundle, "--image", SAMPLE, "--text", "cat",
            "--out", metal_bundle + "-out", "--device", "metal")
    assert r.returncode == 1 and "link its objects on a Mac" in r.stderr, r.stderr


def sam3_tvm(*args):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "compiler"))
    return subprocess.run([sys.executable, "-m", "sam3_tvm.cli", *args], capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.mark.parametrize("args,message", [
    (["--target", "tpu"], "unknown target 'tpu'"),
    (["--target", "cuda", "--arch", "sm_8"], "bad --arch 'sm_8'"),
    (["--target", "cuda", "--arch", "sm_80,compute_90"], "bad --arch"),
    (["--target", "metal", "--arch", "sm_80"], "--arch applies to --target cuda only"),
    (["--precision", "fp16"], "fp16 is for GPU targets"),
    (["--target", "cuda", "--precision", "bf16"], "bf16 is for --target cpu"),
    (["--precision", "int8"], "unknown precision 'int8'"),
    (["--cpu", "pentium-xyz"], "unknown --cpu 'pentium-xyz'"),
    (["--target", "cuda", "--cpu", "znver4"], "--cpu applies to --target cpu only"),
    (["--cpu", "x86-64-v3", "--precision", "bf16"], "needs AVX512_BF16, which --cpu x86-64-v3 lacks"),
])
def test_compile_bad_target(tmp_path, args, message):
    r = sam3_tvm("compile", "--config", "tiny", "--out", str(tmp_path / "b"), *args)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()  # refused before any work


def test_cli_device_mismatch(cuda_bundle, tiny_bundle, tmp_path):
    run = lambda b, d: cli("segment", "--bundle", b, "--image", SAMPLE, "--text", "cat",  # noqa: E731
                           "--out", str(tmp_path), "--device", d)
    r = run(cuda_bundle, "cpu")
    assert r.returncode == 1 and "compiled for cuda but --device cpu" in r.stderr, r.stderr
    r = run(tiny_bundle, "cuda")
    assert r.returncode == 1 and "compiled for cpu but --device cuda" in r.stderr, r.stderr
    r = run(tiny_bundle, "tpu")
    assert r.returncode == 1 and "unknown device 'tpu'" in r.stderr, r.stderr


@pytest.mark.skipif(_has_driver(), reason="an NVIDIA driver is installed: this tests its absence")
def test_cli_cuda_without_driver(cuda_bundle, tmp_path):
    r = cli("segment", "--bundle", cuda_bundle, "--image", SAMPLE, "--text", "cat",
            "--out", str(tmp_path), "--device", "cuda")
    assert r.returncode == 1, r.stderr
    assert "CUDA could not be initialised" in r.stderr and "libcuda.so.1" in r.stderr, r.stderr
    assert "no NVIDIA driver" in r.stderr


def test_python_runtime_refuses_gpu_bundles(cuda_bundle):
    from sam3_tvm.errors import Sam3TvmError
    from sam3_tvm.bundle.runtime import Bundle

    with pytest.raises(Sam3TvmError, match="runs CPU bundles only"):
        Bundle(cuda_bundle)
