"""Default CPU schedules, applied to every kernel at compile time.

TVM's CPU pipeline schedules nothing (serial, scalar loops: ~0.5 GFLOP/s on a
1296x1024x1024 GEMM here). These rules make every kernel parallel and, where the
shape allows, vectorised and register-tiled, with no tuning:

- `Contraction`: one reduction block (matmul, batch matmul, conv) plus injective
  producers/epilogues. The innermost output axis is vectorised (16 fp32 lanes on
  AVX-512), a second output axis is register-blocked, the accumulator tile lives
  in a local buffer, and the outer tiles (row blocks of large GEMMs, else column
  panels) run in parallel. An elementwise epilogue (bias, GELU, residual) is
  computed inside the GEMM's loop nest, not as a pass of its own.
- `RowReduction`: layer norms and other reductions over the innermost axis, as vectors
  of partial results per row; TVM's own `dlight.cpu.Reduction` for the other softmax /
  norm style kernels.
- `Injective`: elementwise/copy kernels: fused, parallel, vectorised.
- `ParallelFallback`: anything else gets its outer spatial loops parallelised.

Each rule returns None when it does not apply or a schedule primitive refuses,
so the next rule is tried; correctness never depends on a rule firing.
"""

from __future__ import annotations

import os

from tvm import s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
from tvm.target.codegen import llvm_get_cpu_features, llvm_get_vector_width


K_BLOCK = 512  # reductions longer than this are blocked (see Contraction)


def _extent(sch, loop):
    e = sch.get(loop).extent
    return int(e) if isinstance(e, tirx.IntImm) else None


def _lanes(target) -> int:
    """fp32 lanes of the target's widest vector registers. From its CPU features: TVM
    0.27's `llvm_get_vector_width` answers 512 for AVX2-only CPUs (haswell, x86-64-v3),
    which would give an AVX2 build AVX-512-sized register tiles that spill."""
    if "x86" in str(target.attrs.get("mtriple", "")):
        features = {str(f) for f in llvm_get_cpu_features(target)}
        return 16 if "avx512f" in features else 8 if "avx2" in features or "avx" in features else 4
    bits = llvm_get_vector_width(target)
    return max((bits if bits > 0 else 256) // 32, 4)


def _largest_divisor(n, options):
    """The first of `options` that divides n: an int, or a symbolic extent (a loop over
    the memory attention's keys, num_mem * G*G + pointer tokens) when TVM's arithmetic
    analyzer can prove the division exact, so the split needs no bounds check."""
    if isinstance(n, int):
        return next((f for f in options if n % f == 0), 1)
    from tvm.sym.analyzer import Analyzer

    ana = Analyzer()
    return next((f for f in options if ana.can_prove(tirx.floormod(n, f) == 0)), 1)


def _extent_expr(sch, loop):
    e = sch.get(loop).extent
    return int(e) if isinstance(e, tirx.IntImm) else e


MIN_OUTER = 8  # outer iterations that make a row-wise split worth it (2-16 threads)


def _schedule_injective_block(sch, block, lanes):
    loops = sch.get_loops(block)
    if not loops:
        return
    # Rows of the output's innermost axis as the vector loop, the outer axes fused and
    # parallel: the vector's input index is then a plain offset plus the inner variable,
    # not the div/mod chain of one fused index (which the vectoriser cannot always prove
    # contiguous). The ViT's qkv permute, [9, 576, 3, 16, 64] -> [3, 9, 16, 576, 64]: 8.5
    # -> 4.0 ms on the Xeon of docs/performance.md (copies that already vectorised keep
    # their speed).
    inner = _extent(sch, loops[-1]) if len(loops) > 1 else None
    outer = 1
    for lp in loops[:-1]:
        e = _extent(sch, lp)
        outer = outer * e if e is not None and outer is not None else None
    if inner and inner % lanes == 0 and (outer is None or outer >= MIN_OUTER):
        fused = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
        sch.parallel(fused)
        if inner > lanes:
            _, vec = sch.split(loops[-1], factors=[None, lanes])
            sch.vectorize(vec)
        else:
            sch.vectorize(loops[-1])
        return
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    n = _extent(sch, fused)
    if n is None:
        sch.parallel(fused)
        return
    v = _largest_divisor(n, (lanes, lanes // 2, 4)) if n >= 4 else 1
    if v > 1 and n > v:
        outer, inner = sch.split(fused, factors=[None, v])
        sch.parallel(outer)
        sch.vectorize(inner)
    elif n > 1:
        sch.parallel(fused)


class _Rule(CPUScheduleRule):
    """A CPU rule whose schedule primitives may refuse: that means "does not apply"."""

    def apply(self, func, target, _tunable):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        try:
            return self._apply(func, target)
        except Exception:  # noqa: BLE001
            return None

    def _apply(self, func, target):
        raise NotImplementedError


def _inline_intermediates(sch, blocks):
    """Inline every block of `blocks` it can into its consumers; the rest (outputs) are
    returned. FuseTIR gives each op of a fused group (reshape, transpose,
    add, pad, ...) a block writing a buffer of its own; left as they are, each one is a
    pass over memory, and the buffers are allocated from TVM's CPU workspace pool, which
    keeps its blocks for good: the image encoder held 0.2 GB more after its first call
    (e.g. 85 MB intermediates of the neck at 288 x 288 x 256)."""
    left = []
    for b in blocks:
        try:
            sch.compute_inline(b)
        except Exception:  # noqa: BLE001  (an output, or not inlinable: stays a nest)
            left.append(b)
    return left


class Injective(_Rule):
    def _apply(self, func, target):
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if not infos or not all(b.is_injective() for b in infos):
            return None
        lanes = _lanes(target)
        for b in _inline_intermediates(sch, [b.block_rv for b in infos]):
            _schedule_injective_block(sch, b, lanes)
        return sch


class RowReduction(_Rule):
    """Row-wise norms and softmax-like kernels (layer norm, mean, max): every reduction
    over the innermost axis only, the last block an elementwise output over the same rows.
    Each reduction is split into `lanes` partial results (rfactor), accumulated as one
    vector per step, then summed; all blocks run per row under one parallel loop, the
    output's columns vectorised. TVM's `dlight.cpu.Reduction` (the fallback) sums each row
    in one scalar chain: the ViT's layer norm over 5184 x 1024 took 5.4 ms, 0.95 here
    (PyTorch 0.85) on the Xeon of docs/performance.md."""

    def _apply(self, func, target):
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if not infos or len(infos) < 2 or not infos[-1].is_injective():
            return None
        lanes = _lanes(target)
        reductions = []
        for b in infos[:-1]:
            kind = b.dom_kind()
            if kind.count("R") == 0:
                continue
            if kind.count("R") != 1 or not kind.endswith("R"):
                return None
            extent = _extent(sch, sch.get_loops(b.block_rv)[-1])
            if extent is None or extent % lanes or extent < 2 * lanes:
                return None
            reductions.append(b.block_rv)
        if not reductions:
            return None
        out = infos[-1].block_rv
        loops = sch.get_loops(out)
        if len(loops) < 2:
            return None
        rows = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
        cols = _extent(sch, loops[-1])
        sch.parallel(rows)
        if cols is not None and cols % lanes == 0:
            _, vec = sch.split(loops[-1], factors=[None, lanes])
            sch.vectorize(vec)
        partial = {}
        for b in reductions:
            lp = sch.get_loops(b)
            _, inner = sch.split(lp[-1], factors=[None, lanes])
            partial[sch.get(b).name_hint] = sch.rfactor(inner, factor_axis=len(lp) - 1)
        # the chain, last producer first, each computed per row of the output
        chain = []
        for b in infos[:-1]:
            name = sch.get(b.block_rv).name_hint
            if name in partial:
                chain.append(partial[name])
            chain.append(b.block_rv)
        for b in reversed(chain):
            sch.compute_at(b, rows, preserve_unit_loops=False)
        for rf in partial.values():
            lp = sch.get_loops(rf)
            try:
                sch.vectorize(lp[-1])
            except Exception:  # noqa: BLE001  (the partial-sum axis is the outer of the two)
                sch.reorder(lp[-1], lp[-2])
                sch.vectorize(sch.get_loops(rf)[-1])
        return sch


class Contraction(_Rule):
    """matmul / batch-matmul / conv: S...S R...R main block, injective others."""

    def _apply(self, func, target):
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if not infos:
            return None
        mains = [b for b in infos if not b.is_injective()]
        if len(mains) != 1:
            return None
        main = mains[0]
        kind = main.dom_kind()
        ns = len(kind) - len(kind.lstrip("S"))
        nr = len(kind) - ns
        if ns < 2 or nr < 1 or kind[ns:] != "R" * nr:
            return None
        lanes = _lanes(target)
        loops = sch.get_loops(main.block_rv)
        s_loops, r_loops = loops[:ns], loops[ns:]
        # symbolic extents are fine where the chosen tile sizes provably divide them
        ext = [_extent_expr(sch, lp) for lp in s_loops]
        conv_like = nr >= 3
        vec_i = ns - 1
        reg_i = 1 if conv_like else ns - 2       # conv: output channels; matmul: rows
        if reg_i == vec_i:
            return None
        vl = _largest_divisor(ext[vec_i], (lanes, lanes // 2, 4))
        rb = _largest_divisor(ext[reg_i], (8, 6, 4, 3, 2) if conv_like else (6, 4, 3, 2))
        # matmul: a register tile of rb rows x nv vectors (6x4 zmm accumulators on
        # AVX-512), so A is re-read N/(nv*vl) times instead of N/vl. AVX2 has 16 vector
        # registers, not 32: 6x2 accumulators + 2 loads + 1 broadcast (6x4 spilled and ran
        # at a third of the speed: 65 against 186 GFLOP/s on the ViT's fc1, Zen 4)
        nv_options = (4, 2) if lanes >= 16 else (2,)
        nv = 1 if conv_like else _largest_divisor(
            ext[vec_i] // vl if isinstance(ext[vec_i], int) else tirx.floordiv(ext[vec_i], vl), nv_options)
        if nv > 1:
            vec_o, vec_mid, vec_in = sch.split(s_loops[vec_i], factors=[None, nv, vl])
        else:
            vec_o, vec_in = sch.split(s_loops[vec_i], factors=[None, vl])
            vec_mid = None
        reg_o, reg_in = sch.split(s_loops[reg_i], factors=[None, rb])
        others = [lp for i, lp in enumerate(s_loops) if i not in (vec_i, reg_i)]
        if conv_like:
            # [n, co_o, h, w_o] x [ci, kh, kw] x [co_i, w_i]: each input vector feeds rb FMAs
            outer = others[:1] + [reg_o] + others[1:] + [vec_o]
            par = outer[:3]
        else:
            # [batch, j_o, i_o] x [k] x [i_i, j_v, j_i]: the B panel stays in cache across i
            outer = others + [vec_o, reg_o]
            par = others + [vec_o]
            blk = _row_block(ext[reg_i], rb, target)
            if blk:
                reg_oo, reg_o = sch.split(reg_o, factors=[None, blk])
                outer = others + [reg_oo, vec_o, reg_o]
                par = others + [reg_oo]
        inner = [reg_in] + ([vec_mid] if vec_mid is not None else []) + [vec_in]
        k_ext = _extent(sch, r_loops[0]) if nr == 1 else None
        if nr == 1 and k_ext is None:  # symbolic K (the memory attention's keys: num_mem * G*G)
            k_sym = _extent_expr(sch, r_loops[0])
            kc = _largest_divisor(k_sym, (576, 512, 384, 256))
        else:
            kc = _largest_divisor(k_ext, (512, 592, 384, 296, 256)) if k_ext and k_ext > K_BLOCK else 1
        # epilogue (bias, activation, residual): one elementwise expression written
        # from the register tile, when the tile is written back once (below); else
        # its own loop nest over a full-size intermediate
        rest = [b.block_rv for b in infos if b is not main]
        epilogue = _fold_epilogue(sch, infos, main, rest)
        local = None
        if not conv_like and kc > 1:
            # long K (e.g. the ViT's 4736->1024 MLP projection): the B panel (K x 64
            # floats) no longer fits in L2 across the row tiles, so block K and run
            # the row tiles inside each K block; the output tile is accumulated in
            # place (re-read once per K block) instead of in a local buffer.
            ko, ki = sch.split(r_loops[0], factors=[None, kc])
            sch.reorder(*outer[:-1], ko, reg_o, ki, *inner)
            if epilogue is not None:
                # the epilogue of a column panel (of a row block) right after its last
                # K block, while the panel is still in cache
                try:
                    sch.reverse_compute_at(epilogue, vec_o, preserve_unit_loops=True)
                    rest.remove(epilogue)
                    *_, col = sch.get_loops(epilogue)
                    if vl > 1 and _extent(sch, col) and _extent(sch, col) % vl == 0:
                        sch.vectorize(sch.split(col, factors=[None, vl])[1])
                except Exception:  # noqa: BLE001  (stays a nest)
                    pass
        else:
            sch.reorder(*outer, *r_loops, *inner)
            # accumulate in registers: a local tile written back once per tile
            local = sch.cache_write(main.block_rv, 0, "local")
            sch.reverse_compute_at(local, outer[-1], preserve_unit_loops=True)
            if epilogue is not None:
                try:
                    sch.reverse_compute_inline(epilogue)
                    rest.remove(epilogue)
                except Exception:  # noqa: BLE001  (not index-aligned: stays a nest)
                    pass
        # parallel before decompose_reduction (which breaks the compact-dataflow check)
        sch.parallel(sch.fuse(*par) if len(par) > 1 else par[0])
        if rb > 1:
            sch.unroll(reg_in)
        if vec_mid is not None:
            sch.unroll(vec_mid)
        if vl > 1:
            sch.vectorize(vec_in)
        init = sch.decompose_reduction(main.block_rv, r_loops[0] if local is not None else ko)
        if vl > 1:
            for blk in [b for b in (init, local) if b is not None]:
                inner = sch.get_loops(blk)[-1]
                if sch.get(inner).kind != tirx.ForKind.VECTORIZED:
                    sch.vectorize(inner)
        # producers (padding, ...) and epilogues not folded: own parallel nests
        for b in rest:
            _schedule_injective_block(sch, b, lanes)
        return sch


def _row_block(rows, rb, target) -> int:
    """Register tiles per row block of a GEMM (0: no row blocks). Tasks were column
    panels over every row, so each task streamed all of A (e.g. 21 MB for the ViT's
    5184 x 1024 activations) from memory: N/64 times per GEMM with AVX-512 tiles, N/16
    with AVX2's. A block of up to 72 x 6 rows (~0.3 MB of A per K block) stays in L2
    across the panels. Zen 4, 2 threads, the ViT's four linears: 193-207 -> 211-219
    GFLOP/s (AVX-512), 108-154 -> 151-178 (AVX2 build). At least two blocks per core.
    Not for short A (the 3x3 convolutions' 256 output channels: their weights fit in
    cache anyway, and blocks made them slower)."""
    if not isinstance(rows, int) or rows < 1024:
        return 0
    tiles = rows // rb
    cores = int(target.attrs.get("num-cores", 0) or os.cpu_count() or 1)
    return next((t for t in (72, 48, 32, 24, 16, 8) if tiles % t == 0 and tiles // t >= 2 * cores), 0)


def _fold_epilogue(sch, infos, main, rest):
    """Inline the elementwise blocks after the main block into the last one (dropping
    them from `rest`); returns that last block, for the tile write-back, or None."""
    tail = infos[infos.index(main) + 1:]
    if not tail or not all(b.is_injective() for b in tail):
        return None
    after = [b.block_rv for b in tail]
    for b in after[:-1]:
        try:
            sch.compute_inline(b)
        except Exception:  # noqa: BLE001  (stays a nest)
            return None
        rest.remove(b)
    return after[-1]


class ParallelFallback(_Rule):
    """Parallelise the leading spatial loops of every block (any other kernel)."""

    def _apply(self, func, target):
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if not infos:
            return None
        done = False
        for b in infos:
            kind = b.dom_kind()
            ns = len(kind) - len(kind.lstrip("S"))
            if ns == 0:
                continue
            loops = sch.get_loops(b.block_rv)[:ns]
            sch.parallel(sch.fuse(*loops) if len(loops) > 1 else loops[0])
            done = True
        return sch if done else None


class _Guarded(_Rule):
    """TVM's own rule, with refusals turned into "does not apply"."""

    def __init__(self, rule):
        self.rule = rule

    def _apply(self, func, target):
        return self.rule.apply(func, target, False)


def default_cpu_schedule():
    """The module pass that schedules every PrimFunc (first matching rule wins)."""
    return dl.ApplyDefaultSchedule(Contraction(), RowReduction(), _Guarded(dl.cpu.Reduction()), Injective(),
                                   ParallelFallback())
