"""Compile the four components and write a bundle directory (see docs/design.md)."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np

from . import BUNDLE_SCHEMA_VERSION, __version__
from . import components as C
from .errors import Sam3TvmError
from .progress import step

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
VOCAB = "bpe_simple_vocab_16e6.txt.gz"


def host_target(num_cores: int | None = None):
    """LLVM target for this host: its triple and `mcpu`, and `num-cores`."""
    import tvm

    host = tvm.target.Target.from_device("cpu")
    return tvm.target.Target({"kind": "llvm", "mtriple": str(host.attrs["mtriple"]),
                              "mcpu": str(host.attrs["mcpu"]),
                              "num-cores": int(num_cores or os.cpu_count() or 1)})


def import_component(name: str, model, cfg):
    """torch.export -> Relax. Returns (IRModule without params, params, param names)."""
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from .converters import CONVERTERS
    from .export import export_component

    ep, wrapper = export_component(name, model, cfg)
    mod = from_exported_program(ep, keep_params_as_input=True, custom_convert_map=CONVERTERS)
    num_input = int(mod["main"].attrs["num_input"])
    relax_names = [str(v.name) for v in mod["main"].params[num_input:]]
    placeholder_to_fqn = dict(ep.graph_signature.inputs_to_parameters)
    # name each weight as in the model's state_dict, so components share one file
    model_name = {id(p): n for n, p in model.named_parameters()}
    wrapper_params = dict(wrapper.named_parameters())
    names = [model_name[id(wrapper_params[placeholder_to_fqn[n]])] for n in relax_names]
    mod, params = relax.frontend.detach_params(mod)
    return mod, params["main"], names


def compile_component(name: str, model, cfg, target, out_dir: str):
    """Import, optimise and build one component; write `<name>.so`. Returns its manifest entry."""
    import tvm

    from . import pipeline

    from .lift import lift_params

    mod, params, names = import_component(name, model, cfg)
    mod, arrays, names = lift_params(name, mod, params, names)
    mod = pipeline.optimize(mod, target)
    dynamic = name == "interactive_decoder"
    ex = tvm.compile(mod, target=target, relax_pipeline=pipeline.build_pipeline(dynamic))
    lib = f"{name}.so"
    ex.export_library(os.path.join(out_dir, lib))
    ins, outs = C.signature(name, cfg)
    spec = lambda s: {"name": s.name, "shape": list(s.shape), "dtype": s.dtype}  # noqa: E731
    entry = {"library": lib, "function": "main",
             "inputs": [spec(s) for s in ins], "outputs": [spec(s) for s in outs],
             "params": names, "param_shapes": [[int(d) for d in a.shape] for a in arrays]}
    if dynamic:
        entry["dims"] = {"num_points": {"min": 1, "max": C.MAX_POINTS}}
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
                   components: tuple[str, ...] = C.COMPONENTS, num_cores: int | None = None) -> dict:
    """Build the model, compile `components` and write the bundle to `out_dir`."""
    from safetensors.numpy import save_file

    from . import rope
    from .model import CONFIGS, bpe_vocab_path, build_model

    if config not in CONFIGS:
        raise Sam3TvmError(f"unknown config {config!r}; choose one of {sorted(CONFIGS)}")
    _check_out_dir(out_dir)
    target = host_target(num_cores)
    t0 = time.time()
    with step(f"build {config} model" + (f" from {checkpoint}" if checkpoint else f" (seed {seed})")):
        model = build_model(config, checkpoint=checkpoint, seed=seed)
        rope.realify(model)
    cfg = model.sam3_tvm_config
    entries, weights = {}, {}
    for name in components:
        with step(f"compile {name}"):
            entries[name], w = compile_component(name, model, cfg, target, out_dir)
            weights.update(w)
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
        "target": {"kind": "llvm", "mtriple": str(target.attrs["mtriple"]),
                   "mcpu": str(target.attrs["mcpu"]), "num_cores": int(target.attrs["num-cores"])},
        "preprocess": {"resize": [cfg.image_size, cfg.image_size], "interpolation": "bilinear",
                       "antialias": True, "scale": 1 / 255.0, "mean": [0.5] * 3, "std": [0.5] * 3},
        "tokenizer": {"vocab": VOCAB, "context_length": cfg.context_length,
                      "start_token": 49406, "end_token": 49407, "pad_token": 0},
        "weights": WEIGHTS,
        "components": entries,
        "compile_seconds": round(time.time() - t0, 1),
    }
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
    return manifest


def _tvm_version() -> str:
    import tvm

    return tvm.__version__


def load_manifest(bundle: str) -> dict:
    """Read and validate a bundle's manifest (clear errors for every failure)."""
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
    for name, entry in manifest.get("components", {}).items():
        lib = os.path.join(bundle, entry["library"])
        if not os.path.isfile(lib):
            raise Sam3TvmError(f"bundle file missing: {lib} (component {name})")
    if not os.path.isfile(os.path.join(bundle, manifest.get("weights", WEIGHTS))):
        raise Sam3TvmError(f"bundle file missing: {os.path.join(bundle, WEIGHTS)}")
    return manifest
