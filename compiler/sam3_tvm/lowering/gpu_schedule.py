"""Default GPU schedules: TVM's DLight rules, applied so that one awkward kernel
cannot stop a component from compiling.

TVM's stock `ApplyDefaultSchedule` stops at the first rule that *accepts* a
kernel, and a rule that raises aborts the whole build. On SAM 3 several fused
kernels trip the rules (a rule raises, or its schedule fails later in lowering,
e.g. "All loops bound to threadIdx.x should have the same extent"; symbolic
point counts break the divisibility proofs of `Fallback`). Here, per kernel:

1. try the DLight rules in TVM's CUDA order (Matmul, GEMV, Reduction,
   GeneralReduction, Fallback); a rule that raises is skipped;
2. a schedule is accepted only if the kernel then lowers (the TIR pipeline up to
   device code, without code generation);
3. if no rule gives a kernel that lowers, `per_block` binds each loop nest on
   its own (spatial loops over threads, reductions serial per thread), and as a
   last resort `single_thread` runs each loop nest in one GPU thread: slow but
   correct, and counted in the report so it is visible.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis.common_analysis import get_sblockrealize
from tvm.tirx.build import split_host_device_mods  # (tvm.tirx.build is also a function)

THREADS = 256  # threads per block of the per-block fallback


def _refuse(*_):
    raise NotImplementedError("simdgroup matmul disabled")


class _MatmulNoSimdgroup(dl.gpu.Matmul):
    """DLight's Matmul without its Metal simdgroup-matrix variant, which crashes
    the process (segfault inside `tensorize`, TVM 0.27.0.post1) on SAM 3's
    matmuls; the generic tiled schedule is used on Metal instead."""

    def apply(self, func, target, tunable):
        cls = dl.gpu.matmul.MetalMatmul
        saved = cls.apply
        cls.apply = _refuse  # Matmul catches the error and goes on to its generic schedule
        try:
            return super().apply(func, target, tunable)
        finally:
            cls.apply = saved


def dlight_rules(target=None):
    """The rules and order of TVM's CUDA `legalize_passes`."""
    g = dl.gpu
    metal = target is not None and target.kind.name == "metal"
    return [("Matmul", _MatmulNoSimdgroup() if metal else g.Matmul()), ("GEMV", g.GEMV()),
            ("Reduction", g.Reduction()), ("GeneralReduction", g.GeneralReduction()),
            ("Fallback", g.Fallback())]


def lowers(func: tirx.PrimFunc, target) -> bool:
    """Whether a kernel passes the TIR lowering pipeline for `target` (up to
    device code, without code generation), all its work is in device code (the
    pipeline would leave unbound loops on the host), and it allocates no per-thread array of
    symbolic size (CUDA code generation rejects those: "Can only handle
    constant size stack allocation")."""
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    try:
        mod = tirx.transform.BindTarget(target)(mod)
        pipeline, _, finalize_device = tvm.tirx.get_tir_pipeline("default")
        mod = pipeline(mod)
        host, device = split_host_device_mods(mod)
        if any(_stores(f.body) for f in host.functions.values()):
            return False  # (part of) the kernel would run on the host CPU
        # (no device code at all is fine: a kernel whose loops are all empty,
        # e.g. SAM 3's empty point grid on text prompts, simplifies to nothing)
        for dmod in device.values():
            dmod = finalize_device()(dmod)
            for f in dmod.functions.values():
                if _symbolic_local_alloc(f.body):
                    return False
        return True
    except Exception:  # noqa: BLE001 - any lowering failure rejects the candidate
        return False


def _stores(stmt) -> bool:
    found = []
    tvm_ffi.structural_walk(stmt, [(tirx.BufferStore, found.append)], order="post")
    return bool(found)


def _symbolic_local_alloc(stmt) -> bool:
    found = []

    def visit(node):
        scope = str(node.buffer.scope())
        if scope.startswith("local") and any(
                not isinstance(d, tirx.IntImm) for d in node.buffer.shape):
            found.append(node)

    tvm_ffi.structural_walk(stmt, [(tirx.AllocBuffer, visit)], order="post")
    return bool(found)


def _top_loop_nests(sch: s_tir.Schedule):
    """(anchor, blocks) per top-level loop nest under the root block: the
    outermost loop, or the block itself when it has no loops."""
    root = sch.get_sblock("root")
    nests, seen = [], []
    for blk in sch.get_child_blocks(root):
        loops = sch.get_loops(blk)
        anchor = loops[0] if loops else blk
        stmt = sch.get(anchor)
        for i, s in enumerate(seen):
            if s.same_as(stmt):
                nests[i][1].append(blk)
                break
        else:
            seen.append(stmt)
            nests.append((anchor, [blk]))
    return nests


def single_thread(func: tirx.PrimFunc, target) -> s_tir.Schedule:
    """Every top-level loop nest becomes a kernel of one block of one thread."""
    sch = s_tir.Schedule(func)
    for anchor, _ in _top_loop_nests(sch):
        tx = sch.add_unit_loop(anchor)
        bx = sch.add_unit_loop(tx)
        sch.bind(tx, "threadIdx.x")
        sch.bind(bx, "blockIdx.x")
    return sch


def per_block(func: tirx.PrimFunc, target) -> s_tir.Schedule:
    """Each top-level loop nest that holds one block: its leading spatial loops
    fused and spread over blocks x THREADS threads, the rest serial in each
    thread. Nests with several blocks, or no leading spatial loop, run in one
    thread."""
    sch = s_tir.Schedule(func)
    for anchor, blocks in _top_loop_nests(sch):
        spatial = []
        if len(blocks) == 1:
            blk = sch.get(blocks[0])
            loops = sch.get_loops(blocks[0])
            uses = []  # (loop var, iter type of a block var it feeds)
            realize = get_sblockrealize(sch, blocks[0])
            for iv, value in zip(blk.iter_vars, realize.iter_values):
                uses += [(v, int(iv.iter_type)) for v in tirx.analysis.undefined_vars(value)]
            for lp in loops:
                var = sch.get(lp).loop_var
                k = {t for v, t in uses if v.same_as(var)}
                if k != {int(tirx.IterVar.DataPar)}:
                    break
                spatial.append(lp)
        static = [lp for lp in spatial if isinstance(sch.get(lp).extent, tirx.IntImm)]
        symbolic = [lp for lp in spatial if not isinstance(sch.get(lp).extent, tirx.IntImm)]
        if symbolic and static:
            # A symbolic extent (the SAM decoder's point tokens) in the fused loop breaks
            # the split's index analysis; keep it out: static loops (innermost, so
            # threads stay on contiguous elements) over blocks x threads, the symbolic
            # ones over blockIdx.y.
            sch.reorder(*symbolic, *static)
            fused = sch.fuse(*static) if len(static) > 1 else static[0]
            n = int(sch.get(fused).extent)
            bx, tx = sch.split(fused, factors=[None, min(THREADS, n)])
            sch.bind(bx, "blockIdx.x")
            sch.bind(tx, "threadIdx.x")
            by = sch.fuse(*symbolic) if len(symbolic) > 1 else symbolic[0]
            sch.bind(by, "blockIdx.y")
        elif spatial:
            fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
            bx, tx = sch.split(fused, factors=[None, THREADS])
            sch.bind(bx, "blockIdx.x")
            sch.bind(tx, "threadIdx.x")
        else:
            tx = sch.add_unit_loop(anchor)
            bx = sch.add_unit_loop(tx)
            sch.bind(tx, "threadIdx.x")
            sch.bind(bx, "blockIdx.x")
    return sch


def _is_scheduled(func) -> bool:
    return "tirx.is_scheduled" in func.attrs and bool(func.attrs["tirx.is_scheduled"])


def schedule_kernel(func: tirx.PrimFunc, target):
    """(scheduled PrimFunc, name of the rule that scheduled it)."""
    if lowers(func, target):  # already a GPU kernel (e.g. TOPI's scatter launches its threads)
        return func, "as_is"
    for name, rule in dlight_rules(target):
        try:
            sch = rule.apply(func, target, False)
        except Exception:  # noqa: BLE001 - a rule that raises is a rule that does not apply
            continue
        if sch is None:
            continue
        sch = sch[0] if isinstance(sch, (list, tuple)) else sch
        cand = sch.mod["main"].with_attr("tirx.is_scheduled", True)
        if lowers(cand, target):
            return cand, name
    for name, fn in (("per_block", per_block), ("single_thread", single_thread)):
        try:
            cand = fn(func, target).mod["main"].with_attr("tirx.is_scheduled", True)
        except Exception:  # noqa: BLE001
            continue
        if lowers(cand, target):
            return cand, name
    raise RuntimeError("no GPU schedule lowers for this kernel:\n" + func.script())


def gpu_schedule(report: dict | None = None):
    """Module pass: schedule every unscheduled PrimFunc (see module docstring).
    `report`, if given, is filled with {rule name: number of kernels}."""

    @tvm.transform.module_pass(opt_level=0, name="Sam3GpuSchedule")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        target = tvm.target.Target.current(allow_none=False)
        updates = {}
        for gv, func in mod.functions_items():
            if not isinstance(func, tirx.PrimFunc) or _is_scheduled(func):
                continue
            try:
                updates[gv], rule = schedule_kernel(func, target)
            except RuntimeError as e:
                raise RuntimeError(f"kernel {gv.name_hint}: {e}") from None
            if report is not None:
                report[rule] = report.get(rule, 0) + 1
        for gv, func in updates.items():
            mod[gv] = func
        return mod

    return _pass
