"""Compile targets: `--target cpu|cuda|metal`, `--arch`, `--precision`, parsed
into one `TargetSpec` and turned into TVM targets and the manifest's `target` block."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass

from sam3_tvm.errors import Sam3TvmError

KINDS = ("cpu", "cuda", "metal")
PRECISIONS = ("fp32", "fp16", "bf16")
DEFAULT_CUDA_ARCH = "sm_80"
# Apple silicon host code: the triple macOS clang uses on arm64, M1 as the
# baseline CPU (every later Apple chip runs it).
METAL_HOST = {"kind": "llvm", "mtriple": "arm64-apple-macos", "mcpu": "apple-m1"}
_SM = re.compile(r"^sm_(\d{2,3})$")


@dataclass(frozen=True)
class TargetSpec:
    kind: str = "cpu"              # cpu | cuda | metal
    archs: tuple[str, ...] = ()    # cuda: sm_XX, first one is the TVM target's arch
    precision: str = "fp32"        # fp32 | fp16 (GPU, pipeline.mixed_precision) | bf16 (CPU, bf16.py)
    num_cores: int | None = None   # cpu: threads the code is built for
    cpu: str | None = None         # cpu: LLVM CPU name to build for (default: this machine's)

    @property
    def device(self) -> str:
        """The runtime device a bundle of this target runs on."""
        return {"cpu": "cpu", "cuda": "cuda", "metal": "metal"}[self.kind]

    @property
    def is_gpu(self) -> bool:
        return self.kind != "cpu"


def parse(kind: str = "cpu", arch: str | None = None, precision: str = "fp32",
          num_cores: int | None = None, cpu: str | None = None) -> TargetSpec:
    """Validate the command-line choices; one clear Sam3TvmError for each mistake."""
    if kind not in KINDS:
        raise Sam3TvmError(f"unknown target {kind!r}; choose one of {', '.join(KINDS)}")
    if precision not in PRECISIONS:
        raise Sam3TvmError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    archs: tuple[str, ...] = ()
    if kind == "cuda":
        archs = tuple(a.strip() for a in (arch or DEFAULT_CUDA_ARCH).split(",") if a.strip())
        bad = [a for a in archs if not _SM.match(a) or int(_SM.match(a).group(1)) < 50]
        if not archs or bad:
            raise Sam3TvmError(f"bad --arch {arch!r}: give CUDA architectures as sm_XX "
                               f"(sm_50 or newer), comma-separated, e.g. sm_80,sm_90")
        archs = tuple(dict.fromkeys(archs))  # drop repeats, keep order
    elif arch:
        raise Sam3TvmError(f"--arch applies to --target cuda only (got --target {kind})")
    if precision == "fp16" and kind == "cpu":
        raise Sam3TvmError("--precision fp16 is for GPU targets (cuda, metal); on CPU use fp32 or bf16")
    if precision == "bf16" and kind != "cpu":
        raise Sam3TvmError("--precision bf16 is for --target cpu (AVX512_BF16); GPU targets take fp16")
    if num_cores is not None and num_cores < 1:
        raise Sam3TvmError(f"--num-cores must be at least 1, got {num_cores}")
    if cpu is not None:
        if kind != "cpu":
            raise Sam3TvmError(f"--cpu applies to --target cpu only (got --target {kind})")
        from tvm.target.codegen import llvm_is_valid_cpu

        triple = str(host_target().attrs["mtriple"])
        if not cpu or not llvm_is_valid_cpu(cpu, triple):
            raise Sam3TvmError(f"unknown --cpu {cpu!r} for {triple}: give an LLVM CPU name, e.g. "
                               "x86-64-v3 (AVX2 + FMA, most x86 CPUs since 2015), znver4, "
                               "sapphirerapids")
        if precision == "bf16" and not cpu_has(cpu, "avx512bf16"):
            raise Sam3TvmError(f"--precision bf16 needs AVX512_BF16, which --cpu {cpu} lacks")
    return TargetSpec(kind, archs, precision, num_cores, cpu)


def cpu_has(cpu: str, feature: str) -> bool:
    import tvm
    from tvm.target.codegen import llvm_get_cpu_features

    target = tvm.target.Target({"kind": "llvm", "mtriple": str(host_target().attrs["mtriple"]),
                                "mcpu": cpu})
    return feature in {str(f) for f in llvm_get_cpu_features(target)}


def host_target(num_cores: int | None = None, cpu: str | None = None):
    """LLVM target for this host: its triple and `mcpu` (or `cpu`), and `num-cores`."""
    import tvm

    host = tvm.target.Target.from_device("cpu")
    return tvm.target.Target({"kind": "llvm", "mtriple": str(host.attrs["mtriple"]),
                              "mcpu": cpu or str(host.attrs["mcpu"]),
                              "num-cores": int(num_cores or os.cpu_count() or 1)})


def tvm_target(spec: TargetSpec):
    """The TVM target (with its host) that compiles the components for `spec`."""
    import tvm

    if spec.kind == "cpu":
        return host_target(spec.num_cores, spec.cpu)
    if spec.kind == "cuda":
        host = host_target(spec.num_cores)
        return tvm.target.Target(
            {"kind": "cuda", "arch": spec.archs[0], "max_num_threads": 1024,
             "thread_warp_size": 32, "max_shared_memory_per_block": 49152},
            host={"kind": "llvm", "mtriple": str(host.attrs["mtriple"]),
                  "mcpu": str(host.attrs["mcpu"])})
    # Metal: 32-wide SIMD groups, 1024 threads and 32 KiB threadgroup memory on Apple GPUs
    return tvm.target.Target(
        {"kind": "metal", "max_num_threads": 1024, "thread_warp_size": 32,
         "max_shared_memory_per_block": 32768},
        host=METAL_HOST)


def check_toolchain(spec: TargetSpec) -> None:
    """Fail early, with what to install, when the target cannot be built here."""
    if spec.kind == "cuda" and nvcc() is None:
        raise Sam3TvmError("--target cuda needs nvcc (the CUDA toolkit): put its bin/ on PATH "
                           "or set CUDA_HOME")
    if spec.kind == "cuda":
        load_cuda_codegen_runtime()
    if spec.kind == "metal":
        import tvm

        targets = tvm.get_global_func("target.llvm_get_targets")()
        if "aarch64" not in list(targets):
            raise Sam3TvmError("this TVM's LLVM has no AArch64 backend: Metal bundles "
                               "(arm64 macOS host code) cannot be built here")


def nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    return None


def manifest_block(spec: TargetSpec, target) -> dict:
    """The manifest's `target` block (docs/design.md)."""
    block = {"kind": {"cpu": "llvm", "cuda": "cuda", "metal": "metal"}[spec.kind],
             "device": spec.device, "precision": spec.precision}
    host = target.host if spec.is_gpu else target
    block["host"] = {"mtriple": str(host.attrs["mtriple"]), "mcpu": str(host.attrs["mcpu"])}
    if spec.kind == "cpu":
        # (kept at the top level too, as in schema 1's CPU bundles)
        block.update(mtriple=str(target.attrs["mtriple"]), mcpu=str(target.attrs["mcpu"]),
                     num_cores=int(target.attrs["num-cores"]))
    if spec.kind == "cuda":
        block["archs"] = list(spec.archs)
        block["cuda_binary"] = "fatbin"  # SASS per arch + PTX of the newest
    return block


def load_cuda_codegen_runtime() -> str:
    """Load the wheel's `libtvm_runtime_cuda.so` into this (compiling) process.

    TVM 0.27 builds a CUDA module through `ffi.Module.create.cuda`, which lives in
    that library; it compiles the kernels (through `tvm_callback_cuda_compile`)
    when the module is created. Without the library, TVM falls back to a module
    that stores CUDA *source* and needs a compiler callback when loaded, which a
    Python-free runtime does not have. The library needs `libcuda.so.1`; with no
    driver installed, the CUDA toolkit's link stub (`lib64/stubs/libcuda.so`) is
    enough, since nothing here calls the driver. Returns what was used."""
    import ctypes

    import tvm
    import tvm_ffi

    if tvm_ffi.get_global_func("ffi.Module.create.cuda", allow_missing=True) is not None:
        return "already loaded"
    used = "libcuda.so.1"
    try:
        ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        stub = cuda_driver_stub()
        if stub is None:
            raise Sam3TvmError("building CUDA bundles needs libcuda.so.1 (an NVIDIA driver) or "
                               "the CUDA toolkit's stub lib64/stubs/libcuda.so; neither was "
                               "found (set CUDA_HOME)") from None
        ctypes.CDLL(stub, mode=ctypes.RTLD_GLOBAL)
        used = stub
    lib = os.path.join(os.path.dirname(tvm.__file__), "lib", "libtvm_runtime_cuda.so")
    try:
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise Sam3TvmError(f"cannot load {lib} (needed to build CUDA bundles): {e}") from None
    return used


def cuda_driver_stub() -> str | None:
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda",
                 os.path.dirname(os.path.dirname(nvcc() or "/nonexistent/bin/nvcc"))):
        for sub in ("lib64/stubs", "lib/stubs", "targets/x86_64-linux/lib/stubs"):
            if root and os.path.isfile(os.path.join(root, sub, "libcuda.so")):
                return os.path.join(root, sub, "libcuda.so")
    return None


@contextlib.contextmanager
def cuda_compiler(spec: TargetSpec, target=None):
    """While building for CUDA: kernels are compiled when the module is created
    (see `load_cuda_codegen_runtime`), by this callback: nvcc, one fat binary
    with SASS per `--arch` and the PTX of the newest (so later GPUs can JIT it),
    without fast math. (TVM's default NVRTC path is not used: the cuda-bindings
    12.9 NVRTC cannot compile against CUDA 13 headers, "double4_16a is undefined".)"""
    if spec.kind != "cuda":
        yield
        return
    import tvm_ffi
    from tvm.support.nvcc import compile_cuda

    load_cuda_codegen_runtime()
    target = target or tvm_target(spec)
    gencode = []
    for a in spec.archs:
        gencode += ["-gencode", f"arch=compute_{a[3:]},code={a}"]
    newest = max(spec.archs, key=lambda a: int(a[3:]))[3:]
    gencode += ["-gencode", f"arch=compute_{newest},code=compute_{newest}"]

    def compile_kernels(code):
        with target:  # (compile_cuda reads the current target)
            return compile_cuda(code, target_format="fatbin", arch=gencode, compiler="nvcc")

    saved_env = {k: os.environ.get(k) for k in ("PATH", "TVM_CUDA_NVCC_NO_FAST_MATH")}
    os.environ["PATH"] = os.path.dirname(nvcc()) + os.pathsep + os.environ.get("PATH", "")
    os.environ["TVM_CUDA_NVCC_NO_FAST_MATH"] = "1"  # IEEE division/sqrt, accurate exp
    saved_cb = tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True)
    tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_kernels, override=True)
    try:
        yield
    finally:
        if saved_cb is not None:
            tvm_ffi.register_global_func("tvm_callback_cuda_compile", saved_cb, override=True)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def device_source(executable) -> str:
    """The kernel source (Metal shading language, CUDA C) inside a built executable."""
    out = []
    for lib in executable.mod.imports:
        for dev in lib.imports:
            out.append(dev.inspect_source())
    return "\n".join(out)
