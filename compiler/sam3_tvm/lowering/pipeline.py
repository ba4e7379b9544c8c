"""Relax compilation pipelines (explicit pass lists, so each choice is visible)."""

from __future__ import annotations

import contextlib

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


def mixed_precision(mod: tvm.IRModule) -> tvm.IRModule:
    """fp16 mixed precision (TVM's ToMixedPrecision, fp32 accumulation): matmul
    and convolution inputs are cast to fp16 and their outputs stay fp32, so
    LayerNorm, softmax, GroupNorm and the residual adds (which follow their
    inputs' dtype) run in fp32. Weights stay fp32 in the bundle; the casts are
    in the compiled code. `tests/python/test_gpu_codegen.py` checks the split."""
    mod = transform.ConvertToDataflow()(mod)
    return transform.ToMixedPrecision(out_dtype="float32")(mod)


def optimize(mod: tvm.IRModule, target, schedule: bool = True,
             precision: str = "fp32", use_tuning: bool = True) -> tvm.IRModule:
    """Graph-level optimisation before build: legalise, fold constants, fuse;
    then default schedules for every kernel: ours for CPU (`schedule.py`),
    DLight for GPUs (`gpu_schedule.py`). On CPU, softmax/GELU/sigmoid/exp are
    legalised with vectorisable math (`fastmath.py`)."""
    from sam3_tvm.lowering import fastmath
    from sam3_tvm.lowering.gpu_schedule import gpu_schedule
    from sam3_tvm.lowering.schedule import default_cpu_schedule

    if precision == "fp16":
        mod = mixed_precision(mod)
    from sam3_tvm.tools.tune import open_database

    db = open_database(target) if use_tuning and target.kind.name == "llvm" else None
    with target, (db if db is not None else contextlib.nullcontext()):
        if target.kind.name == "llvm":
            mod = fastmath.legalize()(mod)
        # applies the tuning database's records (`sam3-tvm tune`) to the kernels it
        # knows; our rules below schedule only what is still unscheduled
        mod = relax.get_pipeline("zero")(mod)
        if schedule and target.kind.name == "llvm":
            mod = default_cpu_schedule()(mod)
        elif schedule:
            mod = gpu_schedule()(mod)
    return mod
