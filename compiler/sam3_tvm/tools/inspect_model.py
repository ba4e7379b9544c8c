"""`sam3-tvm inspect`: per component, the aten op inventory of the exported graph,
the ops TVM's importer lacks, and the hard spots found.

The graph is exported from the *unpatched* official model (complex RoPE kept),
so the report shows what a port has to deal with; a second column says whether
the op is handled after our patches (`rope.realify` + `converters.CONVERTERS`).
"""

from __future__ import annotations

import collections
import inspect as pyinspect
import json
import re
import sys

from sam3_tvm.model import components as C

# Op name fragments -> the hard spot they signal.
HARD_OPS = {
    "view_as_complex": "complex numbers (RoPE)", "view_as_real": "complex numbers (RoPE)",
    "polar": "complex numbers (RoPE)", "complex": "complex numbers",
    "grid_sampler": "grid_sample (point prompts)", "roi_align": "roi_align (box prompts)",
    "scatter": "scatter (prompt concat)", "_upsample_bilinear2d_aa": "antialiased resize",
    "nonzero": "data-dependent shape", "_local_scalar_dense": "data-dependent scalar (.item())",
    "_assert_async": "data-dependent assert", "masked_select": "data-dependent shape",
}
# Source patterns in the modules a component runs -> hard spot.
SOURCE_PATTERNS = {
    r"\bimport triton\b|triton\.jit": "Triton kernel code",
    r"flash_attn": "flash-attn code path",
    r"device=\"cuda\"|\.cuda\(": "CUDA-only call",
    r"torch\.compile\(": "torch.compile path",
    r"autocast\(": "autocast",
}


def _importer_ops() -> set[str]:
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    return set(ExportedProgramImporter().create_convert_map())


def _op_key(target) -> str:
    name = getattr(target, "__name__", str(target))  # e.g. "add.Tensor"
    return name


def _source_spots(wrapper) -> list[dict]:
    files = {}
    for m in wrapper.modules():
        try:
            f = pyinspect.getsourcefile(type(m))
        except TypeError:
            continue
        if f and "/sam3/" in f:
            files[f] = True
    spots = []
    for f in sorted(files):
        with open(f) as fh:
            lines = fh.readlines()
        for pattern, what in SOURCE_PATTERNS.items():
            hits = [i + 1 for i, line in enumerate(lines) if re.search(pattern, line)]
            if hits:
                spots.append({"what": what, "file": f[f.index("/sam3/") + 1:], "lines": hits[:8]})
    return spots


def inspect_component(name: str, model, cfg, handled: set[str]) -> dict:
    import torch

    from sam3_tvm.frontend.export import export_component

    ep, wrapper = export_component(name, model, cfg)
    ep = ep.run_decompositions()
    counts = collections.Counter()
    complex_nodes = 0
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        counts[_op_key(node.target)] += 1
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor) and val.is_complex():
            complex_nodes += 1
    supported = _importer_ops()
    missing = sorted(op for op in counts if op not in supported and not op.startswith("<")
                     and op not in ("sym_size.int",))
    spots = collections.Counter()
    for op, n in counts.items():
        what = next((w for frag, w in HARD_OPS.items() if frag in op), None)
        if what:
            spots[what] += n
    complex_params = [k for k, v in list(wrapper.state_dict().items()) if v.is_complex()]
    return {
        "ops": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
        "total_ops": sum(counts.values()),
        "missing_in_tvm": missing,
        "missing_after_patches": [op for op in missing if op not in handled],
        "overridden_converters": sorted(op for op in counts if op in handled),
        "hard_spots": dict(spots),
        "complex_tensors": {"graph_nodes": complex_nodes, "buffers": len(complex_params)},
        "source_spots": _source_spots(wrapper),
    }


def run_inspect(config: str = "tiny", as_json: bool = False, out=sys.stdout) -> dict:
    from sam3_tvm.frontend.converters import CONVERTERS
    from sam3_tvm.model.builder import build_model
    from sam3_tvm.model.shims import apply

    model = build_model(config)
    cfg = model.sam3_tvm_config
    # complex ops disappear with rope.realify; the rest are our converters
    handled = set(CONVERTERS) | {"view_as_complex.default", "view_as_real.default", "polar.default"}
    report = {"config": config, "shims": apply(),
              "components": {n: inspect_component(n, model, cfg, handled) for n in C.COMPONENTS}}
    if as_json:
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        print_report(report, out)
    return report


def print_report(report: dict, out=sys.stdout) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"SAM 3 ({report['config']}) — shims/patches applied: {', '.join(report['shims'])}")
    for name, r in report["components"].items():
        p(f"\n== {name}: {r['total_ops']} aten ops, {len(r['ops'])} distinct")
        p(f"  {'op':<40} {'count':>6}  tvm importer")
        for op, n in r["ops"].items():
            status = ("MISSING (rewritten by rope.realify)" if "complex" in op or "view_as_real" in op
                      else "MISSING" if op in r["missing_in_tvm"] else
                      "fixed by sam3_tvm" if op in r["overridden_converters"] else "ok")
            p(f"  {op:<40} {n:>6}  {status}")
        p(f"  missing in TVM importer: {', '.join(r['missing_in_tvm']) or 'none'}")
        p(f"  still missing after our patches: {', '.join(r['missing_after_patches']) or 'none'}")
        cx = r["complex_tensors"]
        p(f"  complex tensors: {cx['graph_nodes']} graph nodes, {cx['buffers']} buffers"
          + (" (removed by rope.realify)" if cx["graph_nodes"] or cx["buffers"] else ""))
        for what, n in r["hard_spots"].items():
            p(f"  hard spot: {what} ({n} ops)")
        for s in r["source_spots"]:
            p(f"  source: {s['what']} in {s['file']} lines {s['lines']}")
