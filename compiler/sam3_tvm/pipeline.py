"""Relax compilation pipelines (explicit pass lists, so each choice is visible)."""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax import backend, transform


def build_pipeline(dynamic: bool = False):
    """TVM's `default_build` pass list. `RewriteDataflowReshape` is skipped for
    modules with symbolic shapes: on the interactive decoder's symbolic point
    count it fails an arithmetic divisibility proof (TVM 0.27); it only turns
    reshapes into views, so skipping it costs a copy, not correctness."""
    passes = [backend.DispatchSampling(), backend.DispatchSortScan(), transform.LegalizeOps()]
    if not dynamic:
        passes.append(transform.RewriteDataflowReshape())
    passes += [
        transform.ToNonDataflow(), transform.RemovePurityChecking(), transform.CallTIRRewrite(),
        transform.StaticPlanBlockMemory(), transform.RewriteCUDAGraph(), transform.LowerAllocTensor(),
        transform.KillAfterLastUse(), transform.LowerRuntimeBuiltin(), transform.ComputePrimValue(),
        transform.VMShapeLower(), transform.AttachGlobalSymbol(),
    ]
    return tvm.transform.Sequential(passes)


def optimize(mod: tvm.IRModule, target, schedule: bool = True) -> tvm.IRModule:
    """Graph-level optimisation before build: legalise, fold constants, fuse;
    then the default CPU schedules (`schedule.py`) for every kernel. On CPU,
    softmax/GELU/sigmoid/exp are legalised with vectorisable math (`fastmath.py`)."""
    from . import fastmath
    from .schedule import default_cpu_schedule

    with target:
        if target.kind.name == "llvm":
            mod = fastmath.legalize()(mod)
        mod = relax.get_pipeline("zero")(mod)
        if schedule and target.kind.name == "llvm":
            mod = default_cpu_schedule()(mod)
    return mod
