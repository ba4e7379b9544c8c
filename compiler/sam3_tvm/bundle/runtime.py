"""Run a bundle from Python through the TVM runtime (what the C++ runtime does, for verify)."""

from __future__ import annotations

import os

import numpy as np

from sam3_tvm.bundle.writer import load_manifest
from sam3_tvm.errors import Sam3TvmError


def _cpu_flags() -> set:
    """This CPU's feature flags (Linux: /proc/cpuinfo); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16() -> bool:
    """Whether this CPU has AVX512_BF16."""
    return "avx512_bf16" in _cpu_flags()


def cpu_has_amx_bf16() -> bool:
    """Whether this CPU has the AMX tiles with bf16 products (the bf16 kernels use them
    when Linux grants the tile state; bf16.py)."""
    return {"amx_tile", "amx_bf16"} <= _cpu_flags()


class Bundle:
    """Loads a bundle's libraries and weights; `run(component, *inputs)` -> list of numpy."""

    def __init__(self, path: str):
        # TVM's default thread count is half the logical CPUs on x86 (1 on a 2-vCPU
        # machine); use them all unless the user chose (as the C++ runtime does)
        if "TVM_NUM_THREADS" not in os.environ and "OMP_NUM_THREADS" not in os.environ:
            os.environ["TVM_NUM_THREADS"] = str(os.cpu_count() or 1)
        import tvm
        from safetensors.numpy import load_file
        from tvm import relax

        self.path = path
        self.manifest = load_manifest(path)
        device = self.manifest.get("target", {}).get("device", "cpu")
        if device != "cpu":
            raise Sam3TvmError(f"{path} is a {device} bundle; the Python reference runtime "
                               "(sam3-tvm verify/run) runs CPU bundles only: use the C++ "
                               f"runtime, `sam3 segment --device {device}` (docs/gpu.md)")
        if self.manifest.get("target", {}).get("precision") == "bf16" and not cpu_has_bf16():
            raise Sam3TvmError(f"{path} was compiled with --precision bf16, which needs a CPU "
                               "with AVX512_BF16 (this one has none); compile an fp32 bundle")
        weights = load_file(os.path.join(path, self.manifest["weights"]))
        self.dev = tvm.cpu(0)
        self.vms, self.params = {}, {}
        for name, entry in self.manifest["components"].items():
            lib = tvm.runtime.load_module(os.path.join(path, entry["library"]))
            self.vms[name] = relax.VirtualMachine(lib, self.dev)
            params = []
            for pname in entry["params"]:
                if pname not in weights:
                    raise Sam3TvmError(f"weight {pname} (component {name}) missing from bundle weights")
                params.append(tvm.runtime.tensor(weights[pname], self.dev))
            self.params[name] = params

    def run(self, component: str, *inputs) -> list[np.ndarray]:
        import tvm

        entry = self.manifest["components"][component]
        if len(inputs) != len(entry["inputs"]):
            raise Sam3TvmError(f"{component} takes {len(entry['inputs'])} inputs, got {len(inputs)}")
        args = []
        for x, spec in zip(inputs, entry["inputs"]):
            x = np.ascontiguousarray(np.asarray(x, dtype=spec["dtype"]))
            if x.ndim != len(spec["shape"]) or any(
                    isinstance(d, int) and d != s for d, s in zip(spec["shape"], x.shape)):
                raise Sam3TvmError(f"{component}.{spec['name']}: shape {x.shape} does not match "
                                   f"{spec['shape']}")
            args.append(tvm.runtime.tensor(x, self.dev))
        out = self.vms[component]["main"](*args, *self.params[component])
        return [o.numpy() for o in out]
