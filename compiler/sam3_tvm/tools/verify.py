"""Parity of a compiled bundle against the official PyTorch modules."""

from __future__ import annotations

import json
import sys

import numpy as np

from sam3_tvm.model import components as C
from sam3_tvm.errors import Sam3TvmError
from sam3_tvm.progress import step

# Tolerances (fp32). rel L2 = ||tvm - torch|| / ||torch||. assert_allclose is
# run with rtol and atol = ATOL_SCALE * max|torch output|, so a tensor whose
# values are ~1e3 is not judged by an absolute bound meant for values ~1.
TOLERANCES = {
    "tiny": {"rel_l2": 1e-5, "rtol": 1e-4, "atol_scale": 1e-5},
    "full": {"rel_l2": 1e-4, "rtol": 1e-3, "atol_scale": 1e-4},
}
# bf16 bundles (linear layers in bf16, 8-bit mantissa): the bound rel L2 <= 1e-2
# against the fp32 model; element-wise, errors of a few bf16 ulps of the tensor's scale.
BF16_TOLERANCE = {"rel_l2": 1e-2, "rtol": 5e-2, "atol_scale": 2e-2}


def compare(name: str, got: np.ndarray, ref: np.ndarray, tol: dict) -> dict:
    """Compare one output; returns a row with the metrics and pass/fail."""
    row = {"output": name, "shape": list(ref.shape)}
    if ref.dtype == np.bool_:
        mism = int((got.astype(bool) != ref).sum())
        row.update(max_abs=float(mism), max_rel=0.0, rel_l2=float(mism), tolerance="exact",
                   passed=mism == 0)
        return row
    got64, ref64 = got.astype(np.float64), ref.astype(np.float64)
    diff = np.abs(got64 - ref64)
    scale = float(np.abs(ref64).max()) if ref64.size else 0.0
    atol = tol["atol_scale"] * max(scale, 1.0)
    rel_l2 = float(np.linalg.norm(diff.ravel()) / max(np.linalg.norm(ref64.ravel()), 1e-30))
    max_rel = float((diff / np.maximum(np.abs(ref64), atol)).max()) if ref64.size else 0.0
    try:
        np.testing.assert_allclose(got64, ref64, rtol=tol["rtol"], atol=atol)
        close = True
    except AssertionError:
        close = False
    finite = bool(np.isfinite(got64).all())
    row.update(max_abs=float(diff.max()) if diff.size else 0.0, max_rel=max_rel, rel_l2=rel_l2,
               tolerance=f"relL2<={tol['rel_l2']:g}, rtol={tol['rtol']:g}, atol={atol:.2g}",
               passed=bool(close and finite and rel_l2 <= tol["rel_l2"]))
    return row


def verify_bundle(bundle_dir: str, json_path: str | None = None, seed: int = 1,
                  checkpoint: str | None = None, components: list[str] | None = None) -> list[dict]:
    """Run seeded inputs through torch and the bundle; return the table rows.
    `components`: only these (default: every component of the bundle)."""
    import torch

    from sam3_tvm.model import rope
    from sam3_tvm.model.builder import build_model
    from sam3_tvm.bundle.runtime import Bundle

    with step(f"load bundle {bundle_dir}"):
        bundle = Bundle(bundle_dir)
    man = bundle.manifest
    config = man["config"]["name"]
    src = man["weights_source"]
    if checkpoint is None and not src.startswith("random("):
        checkpoint = src
    model_seed = int(src[len("random(seed="):-1]) if src.startswith("random(") else 0
    with step(f"build reference {config} model"):
        model = build_model(config, checkpoint=checkpoint, seed=model_seed)
        rope.realify(model)
    cfg = model.sam3_tvm_config
    precision = man.get("target", {}).get("precision", "fp32")
    tol = BF16_TOLERANCE if precision == "bf16" else TOLERANCES[config]
    rows = []
    missing = sorted(set(components or []) - set(man["components"]))
    if missing:
        raise Sam3TvmError(f"bundle {bundle_dir} has no component {', '.join(missing)}")
    for name in (components or man["components"]):
        for label, inputs in verify_cases(name, cfg, seed):
            with step(f"torch {name}{label}"):
                with torch.no_grad():
                    ref = [r.numpy() for r in reference(name, model, inputs)]
            with step(f"tvm {name}{label}"):
                got = bundle.run(name, *[x.numpy() for x in inputs])
            _, outs = C.signature(name, cfg)
            for spec, g, r in zip(outs, got, ref):
                row = compare(spec.name, g, r, tol)
                row["component"] = name + label
                rows.append(row)
    print_table(rows)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"bundle": bundle_dir, "config": config, "tolerances": tol, "rows": rows}, f,
                      indent=2)
    return rows


def verify_cases(name: str, cfg, seed: int) -> list[tuple[str, list]]:
    """(label, seeded inputs) per case: both ends of each symbolic dimension's range and
    a middle value; the memory attention also with no, some and all pointer slots used."""
    if name == "interactive_decoder":
        return [(f"[{n}pt]", C.example_inputs(name, cfg, seed=seed, num_points=n)) for n in (1, 3)]
    if name == "memory_attention":
        cases = [(1, 0), (3, 5), (cfg.max_memories, cfg.pointer_slots)]
        return [(f"[{m}mem,{p}ptr]", C.example_inputs(name, cfg, seed=seed, num_mem=m, num_ptrs=p))
                for m, p in cases]
    return [("", C.example_inputs(name, cfg, seed=seed))]


def reference(name: str, model, inputs) -> tuple:
    """The official computation for a component's inputs. The wrappers call the official
    modules, except the memory attention, which re-expresses RoPE and the pointer bucket
    (`model/memory_attention.py`): its reference is the official encoder call."""
    if name == "memory_attention":
        from sam3_tvm.model.memory_attention import official_memory_attention

        return (official_memory_attention(model, *inputs),)
    out = C.make(name, model)(*inputs)
    return out if isinstance(out, tuple) else (out,)


def print_table(rows: list[dict], file=sys.stdout) -> None:
    head = f"{'component':<26} {'output':<15} {'max abs':>10} {'max rel':>10} {'rel L2':>10}  {'pass':<4}  tolerance"
    print(head, file=file)
    print("-" * len(head), file=file)
    for r in rows:
        print(f"{r['component']:<26} {r['output']:<15} {r['max_abs']:>10.3g} {r['max_rel']:>10.3g} "
              f"{r['rel_l2']:>10.3g}  {'ok' if r['passed'] else 'FAIL':<4}  {r['tolerance']}", file=file)


def require_pass(rows: list[dict]) -> None:
    bad = [f"{r['component']}.{r['output']}" for r in rows if not r["passed"]]
    if bad:
        raise Sam3TvmError(f"parity failed for {len(bad)} output(s): {', '.join(bad)}")
