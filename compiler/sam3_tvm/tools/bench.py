"""`sam3-tvm bench`: the compiled bundle (through the C++ library) vs PyTorch eager.

Both sides run in one process tree on the same cores, interleaved: each round runs
a stage on the C++ side (`sam3-bench`, bundle kept loaded), then the same stage in
PyTorch (the official `Sam3Processor` / `predict_inst` on the same weights). Rows:

- end to end: encode image (preprocess + image encoder), text prompt on the cached
  image state, point prompt on the cached image state;
- per component: the C++ stage timers vs the official modules (image encoder timed
  inside `set_image`; the other components as the wrappers the compiler exports);
- linear layers of the ViT (compiled with the default schedules) vs `torch.matmul`,
  and the machine's SGEMM peak they are measured against: the best of torch.mm (MKL),
  NumPy (OpenBLAS) and TVM's own GEMM on 4096^3 and 5184x1024x4736.

Each row reports the median and spread (min..max) of N rounds, the ratio
PyTorch/TVM (>1: TVM faster) and GFLOP/s with its fraction of the SGEMM peak (FLOPs
counted on the PyTorch side by `torch.utils.flop_counter`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time

import numpy as np

from sam3_tvm.errors import Sam3TvmError
from sam3_tvm.progress import step

ROUND_CMDS = ("encode", "text", "point")
PROMPT = "a red square"
POINT = (160.0, 200.0)
CPP_CMD = {"encode": "encode", "text": f"text {PROMPT}", "point": f"point {POINT[0]:g},{POINT[1]:g}"}
VIT_LINEARS = {"qkv": (1024, 3072), "proj": (1024, 1024), "fc1": (1024, 4736), "fc2": (4736, 1024)}


def _stats(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": list(xs)}


class CppSide:
    """The `sam3-bench` driver process with the bundle loaded."""

    def __init__(self, exe: str, bundle: str, image: str):
        self.proc = subprocess.Popen([exe, "--bundle", bundle, "--image", image], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise Sam3TvmError(f"sam3-bench exited (code {self.proc.wait()}); see its stderr above")
        reply = json.loads(line)
        if "error" in reply:
            raise Sam3TvmError(f"sam3-bench: {reply['error']}")
        return reply

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


class TorchSide:
    """The official pipeline on the bundle's weights (complex RoPE kept, no patches
    beyond the CPU shims)."""

    def __init__(self, config: str, checkpoint: str | None, seed: int, image_path: str):
        import torch

        from sam3_tvm.model import components as C
        from sam3_tvm.model.builder import build_model
        from sam3_tvm.tools.predict import load_image

        self.torch = torch
        self.model = build_model(config, checkpoint=checkpoint, seed=seed)
        from sam3.model.sam3_image_processor import Sam3Processor  # after build_model's shims
        self.cfg = self.model.sam3_tvm_config
        self.proc = Sam3Processor(self.model, resolution=self.cfg.image_size, device="cpu",
                                  confidence_threshold=0.5)
        self.image = load_image(image_path)
        self.states = {}  # per precision: the bf16 side prompts on its own encoding
        self.wrappers = {n: C.make(n, self.model).eval() for n in
                         ("text_encoder", "grounding_head", "interactive_decoder")}
        self.inputs = {n: C.example_inputs(n, self.cfg, seed=1, num_points=1) for n in self.wrappers}
        self._backbone_s = 0.0
        forward_image = self.model.backbone.forward_image

        def timed(*a, **k):
            t = time.perf_counter()
            out = forward_image(*a, **k)
            self._backbone_s = time.perf_counter() - t
            return out
        self.model.backbone.forward_image = timed

    def run(self, cmd: str, bf16: bool = False) -> dict:
        """One stage; returns {row: seconds}. `bf16`: under PyTorch's own bf16 CPU path,
        `torch.autocast("cpu", torch.bfloat16)` (what a PyTorch user turns on for speed;
        the comparator of a `--precision bf16` bundle)."""
        torch = self.torch
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            t = time.perf_counter()
            if cmd == "encode":
                self.states[bf16] = self.proc.set_image(self.image)
                return {"encode": time.perf_counter() - t, "image_encoder": self._backbone_s}
            if cmd == "text":
                self.proc.set_text_prompt(PROMPT, self.states[bf16])
                out = {"text": time.perf_counter() - t}
                for n in ("text_encoder", "grounding_head"):
                    out[n] = self._component(n)
                return out
            self.model.predict_inst(self.states[bf16], point_coords=np.array([POINT]),
                                    point_labels=np.array([1]), multimask_output=True)
            return {"point": time.perf_counter() - t,
                    "interactive_decoder": self._component("interactive_decoder")}

    def _component(self, name: str) -> float:
        t = time.perf_counter()
        self.wrappers[name](*self.inputs[name])
        return time.perf_counter() - t

    def flops(self) -> dict:
        """FLOPs of each row, counted on the official modules (one extra pass each)."""
        from torch.utils.flop_counter import FlopCounterMode

        out = {}
        for cmd in ROUND_CMDS:
            with FlopCounterMode(display=False) as fc:
                self.run(cmd)
            out[cmd] = fc.get_total_flops()
        for name in self.wrappers:
            with FlopCounterMode(display=False) as fc, self.torch.inference_mode():
                self.wrappers[name](*self.inputs[name])
            out[name] = fc.get_total_flops()
        # the counter sees only matmul/conv/attention: encode's count is the image encoder's
        out["image_encoder"] = out["encode"]
        return out


SGEMM_SHAPES = ((4096, 4096, 4096), (5184, 1024, 4736))


def sgemm_peaks(runs: int = 5) -> dict:
    """Best fp32 GEMM GFLOP/s of each implementation on this machine's threads, over
    a square 4096^3 product and the ViT's largest linear: PyTorch (MKL, which takes
    its AVX2 path on AMD CPUs), NumPy (OpenBLAS) and TVM with our default schedule.
    The machine's measured peak is the best of them."""
    import torch

    out = {"torch.mm (MKL)": 0.0, "numpy (OpenBLAS)": 0.0, "TVM (default schedule)": 0.0}
    for m, k, n in SGEMM_SHAPES:
        a, b = np.random.rand(m, k).astype("float32"), np.random.rand(k, n).astype("float32")
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        tvm_mm = _tvm_matmul(m, k, n)
        flop = 2 * m * k * n / 1e9
        for name, fn in (("torch.mm (MKL)", lambda: ta @ tb), ("numpy (OpenBLAS)", lambda: a @ b),
                         ("TVM (default schedule)", tvm_mm(a, b))):
            fn()
            out[name] = max(out[name], flop / min(_settled(fn) for _ in range(runs)))
    return out


def _tvm_matmul(m: int, k: int, n: int, cpu: str | None = None):
    """Compile x[m,k] @ w[k,n] with the bundle pipeline for this host, or for `mcpu`
    `cpu`; returns make_call(x, w) -> thunk."""
    import tvm
    from tvm import relax

    from sam3_tvm.lowering import pipeline
    from sam3_tvm.lowering.targets import host_target

    target = host_target(cpu=cpu)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((m, k), "float32"))
    w = relax.Var("w", relax.TensorType((k, n), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit_output(bb.emit(relax.op.matmul(x, w)))
        bb.emit_func_output(y)
    ex = tvm.compile(pipeline.optimize(bb.get(), target), target=target,
                     relax_pipeline=pipeline.build_pipeline())
    vm = relax.VirtualMachine(ex, tvm.cpu())

    def make_call(xa, wa):
        xt, wt = tvm.runtime.tensor(xa), tvm.runtime.tensor(wa)
        return lambda: vm["main"](xt, wt)
    return make_call


SETTLE_S = 1.0  # idle time between sides: TVM's and OpenMP's worker threads spin-wait
               # after a parallel region and would steal cores from the other side


def _settled(fn) -> float:
    time.sleep(SETTLE_S)
    return _timed(fn)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def linear_rows(tokens: int, runs: int, bf16: bool = False, cpu: str | None = None) -> dict:
    """The ViT's linear layers as single kernels vs torch fp32: the fp32 kernel a bundle
    built for `mcpu` `cpu` (default: this host's) runs them on, or with `bf16` the kernel
    of `--precision bf16` (CPUs with AVX512_BF16)."""
    import torch

    kernel, tag = (_bf16_matmul, " bf16") if bf16 else (_fp32_matmul(cpu), "")
    rows = {}
    for name, (k, n) in VIT_LINEARS.items():
        xa, wa = np.random.rand(tokens, k).astype("float32"), np.random.rand(k, n).astype("float32")
        tvm_call = kernel(tokens, k, n)(xa, wa)
        xtt, wtt = torch.from_numpy(xa), torch.from_numpy(wa)
        tvm_call()
        xtt @ wtt
        tv, to = [], []
        for _ in range(runs):
            tv.append(_settled(tvm_call))
            to.append(_settled(lambda: xtt @ wtt))
        rows[f"linear {name}{tag} {tokens}x{k}x{n}"] = {"tvm": _stats(tv), "torch": _stats(to),
                                                        "flops": 2 * tokens * k * n}
    return rows


def _fp32_matmul(cpu: str | None = None):
    """The fp32 kernel a bundle's ViT linears run on when built for `mcpu` `cpu` (this
    host's by default; an AVX2 bundle's rows must time AVX2 code): on panel-packed
    weights where `linear_f32.kind_for` picks a kernel, else the default schedule."""
    import functools

    from sam3_tvm.lowering import linear_f32
    from sam3_tvm.lowering.targets import host_target

    kernel = _packed_f32_matmul if linear_f32.kind_for(host_target(cpu=cpu)) else _tvm_matmul
    return functools.partial(kernel, cpu=cpu)


def _packed_f32_matmul(m: int, k: int, n: int, cpu: str | None = None):
    """linear_f32's kernel for x[m,k] @ w[k,n], w packed once (the bundle packs it at
    compile time). Returns make_call(x, w) -> thunk."""
    import tempfile

    import tvm

    from sam3_tvm.lowering import linear_f32
    from sam3_tvm.lowering.targets import host_target

    def make_call(xa, wa):
        with tempfile.TemporaryDirectory() as tmp:
            lib = linear_f32.standalone_library(m, k, n, os.path.join(tmp, "gemm.so"), cpu=cpu)
        shape, dtype = linear_f32.kind_for(host_target(cpu=cpu)).packed_type(k, n)
        packed = tvm.runtime.tensor(np.zeros(shape, dtype))
        lib["pack"](tvm.runtime.tensor(wa), packed)
        xt, bt = tvm.runtime.tensor(xa), tvm.runtime.tensor(np.zeros(n, np.float32))
        out = tvm.runtime.tensor(np.zeros((m, n), np.float32))
        return lambda: lib["gemm"](xt, packed, bt, out)
    return make_call


def _bf16_matmul(m: int, k: int, n: int):
    """The bf16 linear kernel (bf16.py) for x[m,k] @ w[k,n]: w packed once, x rounded to
    bf16 inside the timed call. Returns make_call(x, w) -> thunk."""
    import tempfile

    import tvm

    from sam3_tvm.lowering import bf16

    with tempfile.TemporaryDirectory() as tmp:
        lib = bf16.standalone_library(m, k, n, os.path.join(tmp, "gemm.so"))

    def make_call(xa, wa):
        packed = tvm.runtime.tensor(np.zeros((n // bf16.PANEL, k // 2, bf16.PANEL, 2), np.uint16))
        lib["pack"](tvm.runtime.tensor(wa), packed)
        xt, bias = tvm.runtime.tensor(xa), tvm.runtime.tensor(np.zeros(n, np.float32))
        out = tvm.runtime.tensor(np.zeros((m, n), np.float32))
        return lambda: lib["gemm"](xt, packed, bias, out)
    return make_call


def run_bench(bundle: str, image: str, runs: int = 3, exe: str | None = None,
              json_path: str | None = None, plot_path: str | None = None,
              markdown_path: str | None = None, threads: int | None = None,
              alt_bundle: str | None = None) -> dict:
    """`alt_bundle` (e.g. the `--precision bf16` build of the same model) runs as a third
    side in every round; its rows get the speed-up over `bundle` measured in that round.
    A bf16 `alt_bundle` brings a fourth side: PyTorch under its bf16 autocast."""
    import torch

    from sam3_tvm.bundle.writer import load_manifest

    manifest = load_manifest(bundle)
    threads = threads or int(manifest["target"].get("num_cores") or os.cpu_count())
    torch.set_num_threads(threads)
    os.environ["TVM_NUM_THREADS"] = str(threads)  # both the driver and linear_rows
    src = manifest["weights_source"]
    checkpoint, seed = (None, int(src[len("random(seed="):-1])) if src.startswith("random(") else (src, 0)
    exe = os.path.abspath(exe or os.path.join(os.path.dirname(__file__), "..", "..", "..", "build",
                                              "sam3-bench"))
    if not os.path.isfile(exe):
        raise Sam3TvmError(f"C++ bench driver not found: {exe} (run `make cpp`)")

    with step("SGEMM peak (torch.mm, numpy, TVM)"):
        peaks = sgemm_peaks()
        peak = max(peaks.values())
    print("  SGEMM: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    with step(f"load PyTorch model ({manifest['config']['name']}) and the bundle in sam3-bench"):
        ts = TorchSide(manifest["config"]["name"], checkpoint, seed, image)
        cpp = CppSide(exe, bundle, image)
        alt = CppSide(exe, alt_bundle, image) if alt_bundle else None
    alt_precision = load_manifest(alt_bundle)["target"].get("precision") if alt_bundle else None
    torch_bf16 = alt_precision == "bf16"
    samples: dict[str, dict[str, list]] = {}
    try:
        with step("warm-up and FLOP count"):
            for cmd in ROUND_CMDS:
                cpp.ask(CPP_CMD[cmd])
                if alt:
                    alt.ask(CPP_CMD[cmd])
            flops = ts.flops()
            if torch_bf16:  # autocast's first calls are slower: keep them out of round 1
                for cmd in ROUND_CMDS:
                    ts.run(cmd, bf16=True)
        for r in range(runs):
            with step(f"round {r + 1}/{runs}"):
                for cmd in ROUND_CMDS:
                    time.sleep(SETTLE_S)
                    for row, s in _cpp_rows(cmd, cpp.ask(CPP_CMD[cmd])).items():
                        samples.setdefault(row, {"tvm": [], "torch": []})["tvm"].append(s)
                    if alt:
                        time.sleep(SETTLE_S)
                        for row, s in _cpp_rows(cmd, alt.ask(CPP_CMD[cmd])).items():
                            samples[row].setdefault("alt", []).append(s)
                    time.sleep(SETTLE_S)
                    for row, s in ts.run(cmd).items():
                        samples.setdefault(row, {"tvm": [], "torch": []})["torch"].append(s)
                    if torch_bf16:
                        time.sleep(SETTLE_S)
                        for row, s in ts.run(cmd, bf16=True).items():
                            samples[row].setdefault("torch_bf16", []).append(s)
        peak_rss = cpp.ask("encode")["peak_rss_bytes"]
        alt_rss = alt.ask("encode")["peak_rss_bytes"] if alt else None
    finally:
        cpp.close()
        if alt:
            alt.close()
    with step("ViT linear layers"):
        # built for the bundle's CPU, as its components are
        lin = linear_rows(ts.cfg.grid ** 2, runs, cpu=manifest["target"].get("mcpu"))
    if alt_precision == "bf16":
        with step("ViT linear layers, bf16 kernel"):
            lin.update(linear_rows(ts.cfg.grid ** 2, runs, bf16=True))

    rows = {}
    for row, s in samples.items():
        rows[row] = {"tvm": _stats(s["tvm"]), "torch": _stats(s["torch"]), "flops": flops.get(row)}
        if s.get("alt"):
            rows[row]["alt"] = _stats(s["alt"])
            rows[row]["alt_speedup"] = rows[row]["tvm"]["median"] / rows[row]["alt"]["median"]
        if s.get("torch_bf16") and s.get("alt"):
            rows[row]["torch_bf16"] = _stats(s["torch_bf16"])
            rows[row]["alt_vs_torch_bf16"] = (rows[row]["torch_bf16"]["median"]
                                              / rows[row]["alt"]["median"])
    rows.update(lin)
    for r in rows.values():
        r["ratio"] = r["torch"]["median"] / r["tvm"]["median"]
        if r.get("flops"):
            r["tvm_gflops"] = r["flops"] / r["tvm"]["median"] / 1e9
            r["tvm_peak_fraction"] = r["tvm_gflops"] / peak
    weights = os.path.getsize(os.path.join(bundle, manifest["weights"]))
    report = {
        "machine": _machine(threads), "versions": _versions(), "bundle": os.path.abspath(bundle),
        "bundle_mcpu": manifest["target"].get("mcpu"),
        "config": manifest["config"]["name"], "runs": runs, "sgemm_peak_gflops": peak,
        "sgemm_gflops": peaks,
        "rows": rows, "cpp_peak_rss_bytes": peak_rss, "weights_bytes": weights,
        "cpp_rss_over_weights": peak_rss / weights,
        "command": f"sam3-tvm bench --bundle {bundle} --image {image} --runs {runs}"
                   + (f" --alt-bundle {alt_bundle}" if alt_bundle else ""),
    }
    if alt_bundle:
        alt_man = load_manifest(alt_bundle)
        alt_weights = os.path.getsize(os.path.join(alt_bundle, alt_man["weights"]))
        report["alt"] = {"bundle": os.path.abspath(alt_bundle), "precision": alt_precision,
                         "cpp_peak_rss_bytes": alt_rss, "weights_bytes": alt_weights,
                         "cpp_rss_over_weights": alt_rss / alt_weights,
                         "cpp_rss_over_fp32_weights": alt_rss / weights}
    # (bf16 kernel rows are measured against the fp32 peak: above 100% by design)
    over = [k for k, r in rows.items() if r.get("tvm_peak_fraction", 0) > 1 and "bf16" not in k]
    if over:
        report["warning"] = (f"rows above the measured SGEMM peak ({', '.join(over)}): the peak "
                             "measurement was disturbed; rerun on an idle machine")
        print(f"warning: {report['warning']}")
    print_table(report)
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2)
    if plot_path:
        plot(report, plot_path)
    if markdown_path:
        write_markdown(report, markdown_path, plot_path)
    return report


def _cpp_rows(cmd: str, reply: dict) -> dict:
    """{row: seconds} of one `sam3-bench` reply: the stage itself and its components."""
    return {cmd: reply["seconds"], **{k: v for k, v in reply["stages"].items()
                                      if k in _COMPONENT_STAGES[cmd]}}


_COMPONENT_STAGES = {"encode": {"image_encoder"}, "text": {"text_encoder", "grounding_head"},
                     "point": {"interactive_decoder"}}
ROW_ORDER = ["encode", "text", "point", "image_encoder", "text_encoder", "grounding_head",
             "interactive_decoder"]
ROW_LABEL = {"encode": "encode image (end to end)", "text": "text prompt, cached image",
             "point": "point prompt, cached image"}


def _ordered(rows: dict):
    keys = [k for k in ROW_ORDER if k in rows] + [k for k in rows if k not in ROW_ORDER]
    return [(k, rows[k]) for k in keys]


def _machine(threads: int) -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "mcpu": _host_mcpu(), "isa": _isa(), "threads": threads,
            "logical_cpus": os.cpu_count(), "os": platform.platform()}


def _host_mcpu() -> str:
    """LLVM's name for this CPU (what `compile` builds for by default)."""
    import tvm

    return str(tvm.target.Target.from_device("cpu").attrs["mcpu"])


def _isa() -> list[str]:
    """The vector extensions that decide speed here (Linux /proc/cpuinfo flags)."""
    from sam3_tvm.bundle.runtime import _cpu_flags

    flags = _cpu_flags()
    return [name for flag, name in (("avx2", "AVX2"), ("fma", "FMA"), ("avx512f", "AVX-512F"),
                                    ("avx512_bf16", "AVX512_BF16"), ("amx_bf16", "AMX-BF16"))
            if flag in flags]


def _versions() -> dict:
    import torch
    import tvm

    from sam3_tvm import __version__

    # the vector code PyTorch runs (ATEN_CPU_CAPABILITY=avx2 limits it, e.g. to compare
    # with an AVX2 bundle; MKL_ENABLE_INSTRUCTIONS=AVX2 does the same for MKL)
    return {"sam3_tvm": __version__, "tvm": tvm.__version__, "torch": torch.__version__,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl_enable_instructions": os.environ.get("MKL_ENABLE_INSTRUCTIONS", "default"),
            "python": platform.python_version()}


def _ms(s: dict) -> str:
    return f"{s['median'] * 1e3:,.1f} ({s['min'] * 1e3:,.1f}-{s['max'] * 1e3:,.1f})"


def _fmt_row(name: str, r: dict, alt: str | None = None) -> list[str]:
    gf = f"{r['tvm_gflops']:.0f} ({100 * r['tvm_peak_fraction']:.0f}%)" if r.get("tvm_gflops") else "-"
    cells = [ROW_LABEL.get(name, name), _ms(r["tvm"]), _ms(r["torch"]), f"{r['ratio']:.2f}x", gf]
    if alt:
        cells += [_ms(r["alt"]), f"{r['alt_speedup']:.2f}x"] if "alt" in r else ["-", "-"]
    if alt == "bf16":
        cells += ([_ms(r["torch_bf16"]), f"{r['alt_vs_torch_bf16']:.2f}x"] if "torch_bf16" in r
                  else ["-", "-"])
    return cells


HEADER = ["row", "TVM ms, median (min-max)", "PyTorch ms, median (min-max)",
          "speed-up (PyTorch/TVM)", "TVM GFLOP/s (% of SGEMM peak)"]


def _header(alt: str | None) -> list[str]:
    out = HEADER + ([f"TVM {alt} ms, median (min-max)", f"{alt} speed-up over TVM fp32"] if alt else [])
    if alt == "bf16":
        out += ["PyTorch bf16 autocast ms, median (min-max)", "TVM bf16 speed-up over PyTorch bf16"]
    return out


def _alt(report: dict) -> str | None:
    return report["alt"]["precision"] if report.get("alt") else None


def print_table(report: dict) -> None:
    print(f"\nSGEMM peak {report['sgemm_peak_gflops']:.0f} GFLOP/s; {report['runs']} rounds")
    print("  " + " | ".join(_header(_alt(report))))
    for name, r in _ordered(report["rows"]):
        print("  " + " | ".join(_fmt_row(name, r, _alt(report))))
    print(f"  C++ peak RSS {report['cpp_peak_rss_bytes'] / 2**30:.2f} GiB = "
          f"{report['cpp_rss_over_weights']:.2f}x the weights")
    if report.get("alt"):
        a = report["alt"]
        print(f"  {a['precision']} bundle: C++ peak RSS {a['cpp_peak_rss_bytes'] / 2**30:.2f} GiB = "
              f"{a['cpp_rss_over_weights']:.2f}x its weights, {a['cpp_rss_over_fp32_weights']:.2f}x "
              "the fp32 weights")


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = _ordered(report["rows"])
    names = [ROW_LABEL.get(k, k) for k, _ in items]
    y = np.arange(len(items))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(items) + 1.5))
    for off, side, color in ((-0.2, "tvm", "tab:blue"), (0.2, "torch", "tab:orange")):
        med = [r[side]["median"] * 1e3 for _, r in items]
        lo = [m - r[side]["min"] * 1e3 for m, (_, r) in zip(med, items)]
        hi = [r[side]["max"] * 1e3 - m for m, (_, r) in zip(med, items)]
        ax.barh(y + off, med, 0.4, xerr=[lo, hi], color=color,
                label="TVM (C++ runtime; linear rows: Python VM)" if side == "tvm"
                else "PyTorch eager fp32")
    ax.set_xscale("log")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds (log scale; bars: median, whiskers: min-max)")
    m = report["machine"]
    ax.set_title(f"SAM 3 {report['config']}: {m['cpu']}, {m['threads']} threads")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write_markdown(report: dict, path: str, plot_path: str | None) -> None:
    """Replace the block between the bench markers of `path` (append it if absent)."""
    m, v = report["machine"], report["versions"]
    lines = [BEGIN, "",
             f"Machine: {m['cpu']} (`mcpu={m.get('mcpu', '?')}`; {', '.join(m.get('isa', [])) or 'ISA unknown'}), "
             f"{m['threads']} threads ({m['logical_cpus']} logical CPUs), "
             f"{m['os']}. Versions: sam3_tvm {v['sam3_tvm']}, TVM {v['tvm']}, torch {v['torch']} "
             f"(CPU code {v.get('torch_cpu_capability', '?')}, MKL {v.get('mkl_enable_instructions', '?')}), "
             f"bundle built for `mcpu={report.get('bundle_mcpu', '?')}`, "
             f"Python {v['python']}. Config `{report['config']}`, random weights, "
             f"{report['runs']} interleaved rounds after one warm-up.",
             "", f"Command: `{report['command']}`", "",
             "Measured SGEMM peak (best fp32 GEMM of 4096^3 and 5184x1024x4736, by implementation: "
             + ", ".join(f"{k} {v:.0f}" for k, v in report["sgemm_gflops"].items())
             + f" GFLOP/s): **{report['sgemm_peak_gflops']:.0f} GFLOP/s**. "
             f"Peak RSS of the C++ runtime: **{report['cpp_peak_rss_bytes'] / 2**30:.2f} GiB = "
             f"{report['cpp_rss_over_weights']:.2f}x** the weights file."]
    alt = _alt(report)
    if alt:
        a = report["alt"]
        lines[-1] += (f" The {alt} bundle (`--precision {alt}`, run as a third side in every "
                      f"round): weights {a['weights_bytes'] / 2**30:.2f} GiB, peak RSS "
                      f"**{a['cpp_peak_rss_bytes'] / 2**30:.2f} GiB = {a['cpp_rss_over_weights']:.2f}x** "
                      f"its weights ({a['cpp_rss_over_fp32_weights']:.2f}x the fp32 weights).")
        if alt == "bf16":
            lines[-1] += (" PyTorch under its own bf16 path (`torch.autocast(\"cpu\", "
                          "torch.bfloat16)`) is a fourth side, the bf16 bundle's comparator.")
    head = _header(alt)
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt_row(k, r, alt)) + " |" for k, r in _ordered(report["rows"])]
    if plot_path:
        rel = os.path.relpath(os.path.abspath(plot_path), os.path.dirname(os.path.abspath(path)))
        lines += ["", f"![benchmark]({rel})"]
    lines += ["", END]
    from sam3_tvm.tools.markdown import replace_block

    replace_block(path, BEGIN, END, "\n".join(lines))
