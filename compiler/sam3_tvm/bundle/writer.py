"""Compile the four components and write a bundle directory (see docs/design.md)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time

import numpy as np

from sam3_tvm import BUNDLE_SCHEMA_VERSION
from sam3_tvm import __version__
from sam3_tvm.model import components as C
from sam3_tvm.lowering import targets
from sam3_tvm.errors import Sam3TvmError
from sam3_tvm.progress import ComponentProgress, output_to_log, step
from sam3_tvm.lowering.targets import TargetSpec

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
VOCAB = "bpe_simple_vocab_16e6.txt.gz"
COMPILE_LOG = "compile.log"  # what TVM and torch printed while compiling (not hashed, not loaded)
# GPU builds of these components compile with vectorisation off: TVM 0.27's CUDA
# code generator emits `float2 v = make_ushort2(...)` (no conversion; nvcc
# rejects it) for a vectorised select on the decoder's has_mask flag.
GPU_NO_VECTORIZE = {"interactive_decoder"}


# Components whose linear layers --precision bf16 moves to bf16. The grounding head
# stays fp32: in bf16 its logits missed the 1e-2 rel L2 bound on the full model
# (pred_logits 1.2e-2, presence_logit 2.0e-2). The interactive decoder stays fp32: its
# symbolic point count leaves two static linears, too small to gain.
BF16_COMPONENTS = ("image_encoder", "text_encoder")
# ...and those whose attention alone goes to bf16 (linears fp32): the grounding head's
# fusion encoder attends over the 5184 image tokens, a third of its time. Full model:
# head 2.72 -> 2.27 s (Zen 4), pred_logits rel L2 2.8e-3, presence_logit 2.8e-3.
BF16_ATTENTION_COMPONENTS = ("grounding_head",)
# Components whose fp32 linears (every linear of fp32 bundles; the grounding head's in
# bf16 bundles too) run on linear_f32's packed kernels where `kind_for` gives one. The
# grounding head's joined when lift.py learnt to leave its 33 MB position table out.
F32_LINEAR_COMPONENTS = ("image_encoder", "text_encoder", "grounding_head")


def kernel_rewrites(name: str, mod, spec: TargetSpec, target):
    """The C-kernel rewrites `name` gets for `spec` on `target`, before its weights are
    lifted (so weight packing runs at compile time). `tune` applies them too, so its
    tasks are the kernels `compile` schedules."""
    from sam3_tvm.lowering import attention, conv_bf16, conv_f32, linear_f32

    bf16_part = name in BF16_COMPONENTS + BF16_ATTENTION_COMPONENTS
    if spec.kind == "cpu" and spec.precision == "bf16" and bf16_part and conv_f32.supported(target):
        # bf16 bundles: the 3x3 convolutions of the neck and the pixel decoder on AMX
        # (4x the fp32 kernel on the Xeon; the fp32 kernel where AMX is not ready)
        mod = conv_bf16.same_convs(mod)
    if spec.kind == "cpu" and conv_f32.supported(target):
        # the (other) 3x3 same convolutions in fp32 on packed pixel panels, where that
        # was measured faster; with the AVX2 tiles the 1x1 ones too (measured on Zen 2;
        # the AVX-512 builds keep their matmuls until timed there)
        avx2 = linear_f32.kind_for(target) is linear_f32.KIND_AVX2
        mod = conv_f32.same_convs(mod, avx2)
        if avx2:
            mod = conv_f32.pointwise_convs(mod, avx2=True)
    if spec.precision == "bf16" and name in BF16_COMPONENTS:
        from sam3_tvm.lowering.bf16 import bf16_linears

        return attention.to_bf16(bf16_linears(mod))
    if spec.kind == "cpu" and name in F32_LINEAR_COMPONENTS:
        # the fp32 linears on panel-packed weights (AVX-512 or AVX2 tiles), where that was
        # measured faster than the default schedule
        kind = linear_f32.kind_for(target)
        if kind is not None:
            mod = linear_f32.f32_linears(mod, kind)
    if spec.precision == "bf16" and name in BF16_ATTENTION_COMPONENTS:
        mod = attention.to_bf16(mod)
    return mod


def compile_component(name: str, model, cfg, target, out_dir: str, spec: TargetSpec | None = None,
                      stage=lambda what: None):
    """Import, optimise and build one component; write its library (`<name>.so`;
    Metal off macOS: `<name>.tar` of arm64 objects + `<name>.metal`, see
    docs/gpu.md). Returns its manifest entry and its weights."""
    import tvm

    from sam3_tvm.lowering import pipeline

    from sam3_tvm.frontend.lift import lift_params

    spec = spec or TargetSpec()
    # fp16 (ToMixedPrecision rejects float64) and Metal (no float64): converters.py
    from sam3_tvm.frontend.importer import import_component

    stage("import")
    from sam3_tvm.lowering import attention

    fused = spec.kind == "cpu" and attention.supported(target)
    mod, params, names = import_component(
        name, model, cfg, no_float64=spec.precision == "fp16" or spec.kind == "metal",
        fused_attention=fused, cpu=spec.kind == "cpu")
    mod = kernel_rewrites(name, mod, spec, target)
    stage("lift weights")
    mod, arrays, names = lift_params(name, mod, params, names)
    stage("optimise")
    mod = pipeline.optimize(mod, target, precision=spec.precision)
    if fused:
        mod = attention.attach_kernels(mod, target)
    dims = C.symbolic_dims(name, cfg)
    dynamic = bool(dims)
    config = {"tirx.disable_vectorize": True} if spec.is_gpu and name in GPU_NO_VECTORIZE else {}
    stage("build")
    with targets.cuda_compiler(spec, target), tvm.transform.PassContext(opt_level=3, config=config):
        ex = tvm.compile(mod, target=target, relax_pipeline=pipeline.build_pipeline(dynamic))
    stage("export")
    lib = f"{name}.so"
    extra = {}
    if spec.kind == "metal" and sys.platform != "darwin":
        # No Mach-O linker for macOS here: ship the objects, link on the Mac
        ex.export_library(os.path.join(out_dir, f"{name}.tar"))
        with open(os.path.join(out_dir, f"{name}.metal"), "w") as f:
            f.write(targets.device_source(ex))
        lib = f"{name}.dylib"
        extra = {"objects": f"{name}.tar", "kernel_source": f"{name}.metal"}
    else:
        if spec.kind == "metal":
            lib = f"{name}.dylib"
        # -O3 for the C micro-kernels (attention.py; bf16.py in bf16 bundles)
        ex.export_library(os.path.join(out_dir, lib), options=["-O3"])
    ins, outs = C.signature(name, cfg)
    spec_of = lambda s: {"name": s.name, "shape": list(s.shape), "dtype": s.dtype}  # noqa: E731
    entry = {"library": lib, "function": "main",
             "inputs": [spec_of(s) for s in ins], "outputs": [spec_of(s) for s in outs],
             "params": names, "param_shapes": [[int(d) for d in a.shape] for a in arrays],
             "param_dtypes": [str(a.dtype) for a in arrays], **extra}
    if dims:
        entry["dims"] = {d: {"min": lo, "max": hi} for d, (lo, hi) in dims.items()}
    return entry, dict(zip(names, arrays))


def _check_out_dir(out_dir: str) -> None:
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, ".write_test")
        with open(probe, "w") as f:
            f.write("")
        os.remove(probe)
    except OSError as e:
        raise Sam3TvmError(f"cannot write to output directory {out_dir}: {e.strerror}") from None


def compile_bundle(config: str, out_dir: str, checkpoint: str | None = None, seed: int = 0,
                   components: tuple[str, ...] = C.COMPONENTS, num_cores: int | None = None,
                   target: TargetSpec | None = None) -> dict:
    """Build the model, compile `components` for `target` (default: this CPU) and
    write the bundle to `out_dir`: a bar per component and a summary on stderr, everything
    the compilers print in `out_dir`/compile.log."""
    from sam3_tvm.model.builder import CONFIGS

    if config not in CONFIGS:
        raise Sam3TvmError(f"unknown config {config!r}; choose one of {sorted(CONFIGS)}")
    spec = target or targets.parse("cpu", num_cores=num_cores)
    if num_cores is not None and spec.num_cores is None:
        spec = targets.TargetSpec(spec.kind, spec.archs, spec.precision, num_cores, spec.cpu)
    targets.check_toolchain(spec)
    _check_out_dir(out_dir)
    target = targets.tvm_target(spec)
    log_path = os.path.join(out_dir, COMPILE_LOG)
    open(log_path, "w").close()
    # TVM, torch and sam3 print hundreds of warnings and info lines while compiling: they
    # go to the bundle's compile.log; the terminal shows a bar per component and a summary
    with output_to_log(log_path) as shown:
        print(f"[sam3-tvm] compiling {config} for {spec.kind}, {spec.precision}; "
              f"details in {log_path}", file=shown, flush=True)
        try:
            manifest, seconds, weights = _build_and_write(config, checkpoint, seed, components, spec,
                                                          target, out_dir, shown)
        except BaseException:
            print(f"[sam3-tvm] failed; the full log is in {log_path}", file=shown, flush=True)
            raise
        _summary(shown, out_dir, manifest, seconds, weights)
    return manifest


def _tuning_line(target) -> str:
    """Which MetaSchedule records (`sam3-tvm tune`) this CPU build applies."""
    from sam3_tvm.tools.tune import database_dir

    d = database_dir(target)
    path = os.path.join(d, "database_tuning_record.json")
    if not os.path.isfile(path):
        return f"no tuning records for {target.attrs['mcpu']}: default schedule rules only"
    with open(path) as f:
        n = sum(1 for line in f if line.strip())
    return f"{n} tuning records from {d}, applied to the kernels they match"


def _build_and_write(config, checkpoint, seed, components, spec, target, out_dir, shown):
    """compile_bundle's work, with the log already redirected: returns the manifest, the
    seconds per component and the weights."""
    from safetensors.numpy import save_file

    from sam3_tvm.model import rope
    from sam3_tvm.model.builder import bpe_vocab_path, build_model
    from sam3_tvm.model.tracker_config import detector_block, tracker_block

    t0 = time.time()
    print(f"[sam3-tvm] target {spec.kind}" + (f" {','.join(spec.archs)}" if spec.archs else "")
          + f", {spec.precision}", file=sys.stderr, flush=True)
    if spec.kind == "cpu":
        print(f"[sam3-tvm] {_tuning_line(target)}", file=shown, flush=True)
    with step(f"build {config} model" + (f" from {checkpoint}" if checkpoint else f" (seed {seed})")):
        model = build_model(config, checkpoint=checkpoint, seed=seed)
        rope.realify(model)
    cfg = model.sam3_tvm_config
    entries, weights = {}, {}
    seconds = {}
    for name in components:
        bar = ComponentProgress(name, shown)
        with step(f"compile {name}"):
            entries[name], w = compile_component(name, model, cfg, target, out_dir, spec, bar.stage)
            weights.update(w)
        seconds[name] = bar.done()
    with step(f"write {WEIGHTS} ({sum(v.nbytes for v in weights.values()) / 2**20:.1f} MiB)"):
        save_file({k: np.ascontiguousarray(v) for k, v in weights.items()},
                  os.path.join(out_dir, WEIGHTS))
    shutil.copyfile(bpe_vocab_path(), os.path.join(out_dir, VOCAB))
    manifest = {
        "schema_version": BUNDLE_SCHEMA_VERSION,
        "compiler": {"sam3_tvm": __version__, "tvm": _tvm_version()},
        "config": {"name": cfg.name, "image_size": cfg.image_size, "patch_size": cfg.patch_size,
                   "d_model": cfg.d_model, "num_queries": cfg.num_queries,
                   "mask_size": cfg.mask_size, "context_length": cfg.context_length,
                   "max_boxes": C.MAX_BOXES, "max_points": C.MAX_POINTS},
        "weights_source": checkpoint or f"random(seed={seed})",
        "target": targets.manifest_block(spec, target),
        "preprocess": {"resize": [cfg.image_size, cfg.image_size], "interpolation": "bilinear",
                       "antialias": True, "scale": 1 / 255.0, "mean": [0.5] * 3, "std": [0.5] * 3},
        "tokenizer": {"vocab": VOCAB, "context_length": cfg.context_length,
                      "start_token": 49406, "end_token": 49407, "pad_token": 0},
        "weights": WEIGHTS,
        "components": entries,
        "sha256": {rel: sha256_file(os.path.join(out_dir, rel)) for rel in _named_files(entries)},
        "tracker": tracker_block(model),
        "detector": detector_block(),
        "compile_seconds": round(time.time() - t0, 1),
    }
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
    return manifest, seconds, weights


def _summary(shown, out_dir: str, manifest: dict, seconds: dict, weights: dict) -> None:
    """The table a person reads at the end of a compile."""
    print(f"{'component':<22}{'seconds':>9}{'library MiB':>13}{'weights MiB':>13}", file=shown)
    for name, entry in manifest["components"].items():
        lib = os.path.join(out_dir, entry.get("objects") or entry["library"])
        wmib = sum(weights[p].nbytes for p in entry["params"]) / 2**20
        print(f"{name:<22}{seconds.get(name, 0):>9.1f}{os.path.getsize(lib) / 2**20:>13.1f}{wmib:>13.1f}",
              file=shown)
    with open(os.path.join(out_dir, COMPILE_LOG), errors="replace") as f:
        text = f.read()
    warnings = sum(text.count(w) for w in ("Warning", "WARNING", "warning:"))
    print(f"total {manifest['compile_seconds']} s; {warnings} warning(s) and {text.count(chr(10))} lines of "
          f"compiler output in {os.path.join(out_dir, COMPILE_LOG)}", file=shown, flush=True)


def sha256_file(path: str) -> str:
    """Lowercase hex SHA-256 of a file (what the manifest's `sha256` block records)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _named_files(components: dict, weights: str = WEIGHTS, vocab: str = VOCAB) -> list[str]:
    """Every file a manifest names and hashes: libraries (or, for Metal bundles built off
    macOS, the objects to link; the link script adds the library's hash), weights, vocab."""
    files = [weights, vocab]
    for entry in components.values():
        files.append(entry["objects"] if entry.get("objects") else entry["library"])
    return files


def _tvm_version() -> str:
    import tvm

    return tvm.__version__


def _check_confined(bundle: str, rel: str, what: str) -> None:
    """A file the manifest names must lie inside the bundle (relative, no '..', and with
    symlinks resolved still under it): a bundle is native code the process loads."""
    parts = rel.replace("\\", "/").split("/") if isinstance(rel, str) else [".."]
    if not rel or os.path.isabs(rel) or ".." in parts:
        raise Sam3TvmError(f"bundle {bundle}: {what} {rel!r} is not a path inside the bundle "
                           "(absolute or with '..'); refused")
    root = os.path.realpath(bundle)
    full = os.path.realpath(os.path.join(bundle, rel))
    if os.path.commonpath([root, full]) != root:
        raise Sam3TvmError(f"bundle {bundle}: {what} {rel!r} leads outside the bundle (to {full}); refused")


def load_manifest(bundle: str, check_hashes: bool = True) -> dict:
    """Read and validate a bundle's manifest (clear errors for every failure). With
    `check_hashes`, every file's SHA-256 is compared with the manifest's before anything
    is loaded (a corrupt or swapped library is refused, never dlopen'ed)."""
    path = os.path.join(bundle, MANIFEST)
    if not os.path.isdir(bundle):
        raise Sam3TvmError(f"bundle directory not found: {bundle}")
    if not os.path.isfile(path):
        raise Sam3TvmError(f"not a bundle: {path} is missing")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise Sam3TvmError(f"cannot read {path}: {e}") from None
    version = manifest.get("schema_version")
    if version != BUNDLE_SCHEMA_VERSION:
        raise Sam3TvmError(f"bundle schema version {version} is not supported by this "
                           f"sam3-tvm (expects {BUNDLE_SCHEMA_VERSION}); recompile the bundle")
    built_with = manifest.get("compiler", {}).get("tvm")
    if built_with != _tvm_version():
        raise Sam3TvmError(f"bundle was compiled with TVM {built_with}, this is TVM "
                           f"{_tvm_version()}; recompile the bundle")
    named = [(f"the library of component {n}", e.get("library", "")) for n, e in manifest.get("components", {}).items()]
    named += [(f"the objects of component {n}", e["objects"]) for n, e in manifest.get("components", {}).items()
              if e.get("objects")]
    named += [("the weights file", manifest.get("weights", WEIGHTS)),
              ("the tokenizer vocabulary", manifest.get("tokenizer", {}).get("vocab", ""))]
    for what, rel in named:
        _check_confined(bundle, rel, what)
    for name, entry in manifest.get("components", {}).items():
        lib = os.path.join(bundle, entry["library"])
        if not os.path.isfile(lib) and entry.get("objects"):
            raise Sam3TvmError(f"bundle file missing: {lib} (component {name}): this bundle was "
                               "built off macOS; link its objects on a Mac first "
                               "(scripts/link-metal-bundle.sh, docs/gpu.md)")
        if not os.path.isfile(lib):
            raise Sam3TvmError(f"bundle file missing: {lib} (component {name})")
    if not os.path.isfile(os.path.join(bundle, manifest.get("weights", WEIGHTS))):
        raise Sam3TvmError(f"bundle file missing: {os.path.join(bundle, WEIGHTS)}")
    digests = manifest.get("sha256")
    if not isinstance(digests, dict):
        raise Sam3TvmError(f"malformed {path}: no sha256 block")
    named = [manifest.get("weights", WEIGHTS), manifest.get("tokenizer", {}).get("vocab", "")]
    named += [e["library"] for e in manifest.get("components", {}).values()]
    for rel in named:
        if rel not in digests:
            raise Sam3TvmError(f"malformed {path}: no sha256 recorded for {rel}")
    for rel, digest in digests.items():
        _check_confined(bundle, rel, "the hashed file")
        if check_hashes and sha256_file(os.path.join(bundle, rel)) != digest:
            raise Sam3TvmError(f"bundle file {os.path.join(bundle, rel)} is corrupt or was replaced: its "
                               "SHA-256 differs from the one in manifest.json; copy or compile the bundle again")
    return manifest
