"""The stride-1 "same" convolutions of bf16 bundles on bf16 products (AMX tiles, or
vdpbf16ps where the tile state is not granted), fp32 sums: the CPUs `conv_f32` serves
(AVX-512 Intel), `--precision bf16`.

The importer writes each such convolution as one contraction (conv_f32's docstring):
out[co, p] = sum over k = (tap, channel) of W[co, k] * x_pad[channel, p + offset(tap)].
That is a GEMM with the output channels as rows, K = taps * ci and the pixels as
columns, so bf16.py's GEMM does it unchanged: W rounded to bf16 once per call into the
row layout `sam3_to_bf16_row` writes (16x32 AMX A tiles), each 64-pixel block's windows
copied as bf16 pairs into one packed panel (the layout of `bf16.pack_func`: blocks of 16
pairs of k, four 1 KB groups of 16 pixels each, one AMX B tile apiece), then
`sam3_bf16_panel` over all output channels. The 256 -> 256 3x3 at 288 x 288 of the neck
and the pixel decoder is 98 GFLOP a call; in fp32 it ran at ~80% of the AVX-512 peak.

Only for K a multiple of 32 (whole 16-pair blocks, whole AMX A tiles); the others keep
conv_f32's kernel. Rounding: the same as the bf16 linears (inputs and weights to bf16,
round to nearest even; fp32 sums).
"""

from __future__ import annotations

import tvm
from tvm.script import tirx as T

from sam3_tvm.lowering import bf16, conv_f32
from sam3_tvm.lowering.conv_f32 import ATTR, BLOCK

# bf16.py's kernels, compiled a second time into this module under names of their own:
# a library may hold both (the bf16 image encoder has bf16.c_module for its linears).
_RENAMES = ("sam3_bf16_tile", "sam3_bf16_panel", "sam3_to_bf16_row", "sam3_to_bf16",
            "sam3_amx_available", "sam3_bf16_uses_fma", "sam3_bf16_gemm_on_fma",
            "sam3_bf16_gemm_row_blocks", "sam3_bf16_panel_fma")

C_SOURCE = r"""
#ifdef __cplusplus
extern "C" {
#endif

/* conv_f32's kernel (its own C module, renamed): the path where AMX is not ready */
int32_t sam3cv_same_conv_block_f32(float* out, const float* x, const float* w, float* panel,
                                   int64_t co, int64_t ci, int64_t taps, int64_t kw, int64_t row,
                                   int64_t plane, int64_t npix, int64_t p0);

/* All output channels of the 64-pixel block at p0 (fewer at the end) of one image:
   out[o, p0 + j] = sum_k wb[o, k] * x[c, p0 + j + (t / kw) * row + t % kw], k = t * ci + c.
   wb: the weights in sam3_to_bf16_row's layout (m = co, K = taps * ci, K % 32 == 0);
   panel: room for K * 64 floats; part: room for co * 64 floats (a partial block).
   Without AMX (SAM3_NO_AMX, no tile state) conv_f32's fp32 kernel runs instead, on w:
   vdpbf16ps ran this convolution at 215 GFLOP/s on the Xeon, fp32 at 370, AMX at 1500. */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
int32_t sam3_same_conv_block_bf16(float* out, const float* x, const float* w, const uint16_t* wb,
                                  uint16_t* panel, float* part, int64_t co, int64_t ci,
                                  int64_t taps, int64_t kw, int64_t row, int64_t plane,
                                  int64_t npix, int64_t p0) {
  if (!sam3_amx_ready())
    return sam3cv_same_conv_block_f32(out, x, w, (float*)panel, co, ci, taps, kw, row, plane, npix, p0);
  int64_t k = taps * ci, width = npix - p0 < 64 ? npix - p0 : 64;
  for (int64_t j = 0; j < k / 2; ++j) {
    const float* s[2];
    for (int e = 0; e < 2; ++e) {
      int64_t kk = 2 * j + e, t = kk / ci, c = kk % ci;
      s[e] = x + c * plane + p0 + (t / kw) * row + t % kw;
    }
    /* pair j: block j / 16, row j % 16 of each of its four 1 KB groups */
    uint16_t* dst = panel + (j / 16) * 2048 + (j % 16) * 32;
    for (int g = 0; g < 4; ++g) {
      if (width == 64) {
        sam3_pairs_bf16(dst + 512 * g, s[0] + 16 * g, s[1] + 16 * g);
      } else {
        for (int64_t q = 0; q < 16; ++q) {
          int64_t col = 16 * g + q;
          dst[512 * g + 2 * q] = col < width ? sam3_one_bf16(s[0][col]) : 0;
          dst[512 * g + 2 * q + 1] = col < width ? sam3_one_bf16(s[1][col]) : 0;
        }
      }
    }
  }
  if (width == 64) return sam3_bf16_panel(out + p0, npix, wb, k, panel, k / 2, co, 0, 0);
  sam3_bf16_panel(part, 64, wb, k, panel, k / 2, co, 0, 0);
  for (int64_t o = 0; o < co; ++o) memcpy(out + o * npix + p0, part + o * 64, width * 4);
  return 0;
}

#ifdef __cplusplus
}
#endif
"""


def supported(k: int) -> bool:
    """Convolutions whose K = taps * ci this kernel takes."""
    return k % 32 == 0


def c_modules():
    """bf16.py's GEMM (renamed) with the block kernel, and conv_f32's kernel (renamed,
    a module of its own: both define the tile helpers), as C source modules."""
    renames = "".join(f"#define {n} sam3cv_{n[len('sam3_'):]}\n" for n in _RENAMES)
    create = tvm.get_global_func("runtime.CSourceModuleCreate")
    f32 = "#define sam3_same_conv_block sam3cv_same_conv_block_f32\n" + conv_f32.c_source()
    return [create(renames + bf16.C_SOURCE + bf16.PAIRS_C + C_SOURCE, "c",
                   ["sam3_same_conv_block_bf16", "sam3cv_to_bf16_row"], []),
            create(f32, "c", ["sam3cv_same_conv_block_f32"], [])]


def conv_func(n: int, ci: int, length: int, co: int, taps: int, npix: int, kw: int, row: int):
    """As conv_f32.conv_func (same signature, the importer's contraction), on bf16."""
    blocks = (npix + BLOCK - 1) // BLOCK
    k = taps * ci

    @T.prim_func(private=True)
    def conv(x: T.Buffer((n, ci, length), "float32"), w: T.Buffer((co, taps, ci), "float32"),
             out: T.Buffer((n, co, npix), "float32")):
        # opaque (8): FuseOps must not merge producers or the bias add into the extern call
        T.func_attr({"sam3.bf16_conv": True, "tirx.is_scheduled": True, "op_pattern": 8})
        wb = T.decl_buffer((co * k,), "uint16")
        for o in T.parallel(co):
            T.evaluate(T.call_extern("int32", "sam3cv_to_bf16_row", wb.access_ptr("w", offset=0),
                                     w.access_ptr("r", offset=0), T.int64(co), T.int64(k),
                                     T.Cast("int64", o)))
        for i in T.parallel(n * blocks):
            panel = T.decl_buffer((k * BLOCK * 2,), "uint16")  # fp32 room: the non-AMX path
            part = T.decl_buffer((co * BLOCK,), "float32")
            T.evaluate(T.call_extern(
                "int32", "sam3_same_conv_block_bf16",
                out.access_ptr("w", offset=(i // blocks) * co * npix),
                x.access_ptr("r", offset=(i // blocks) * ci * length),
                w.access_ptr("r", offset=0), wb.access_ptr("r", offset=0),
                panel.access_ptr("w", offset=0),
                part.access_ptr("w", offset=0),
                T.int64(co), T.int64(ci), T.int64(taps), T.int64(kw), T.int64(row),
                T.int64(length), T.int64(npix), T.Cast("int64", (i % blocks) * BLOCK)))

    return conv


def same_convs(mod: tvm.IRModule) -> tvm.IRModule:
    """Swap every importer same-convolution PrimFunc whose K this kernel takes for it
    (the call sites stay; the others keep their tag for conv_f32.same_convs); attach
    the C module once if any was swapped."""
    funcs = dict(mod.functions)
    swapped = False
    for gv, func in mod.functions.items():
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs is None or ATTR not in func.attrs:
            continue
        args = [int(v) for v in func.attrs[ATTR]]
        if not supported(args[1] * args[4]):  # ci * taps
            continue
        funcs[gv] = conv_func(*args)
        swapped = True
    if not swapped:
        return mod
    mods = list(mod.attrs["external_mods"]) if mod.attrs is not None and "external_mods" in mod.attrs else []
    return tvm.IRModule(funcs, attrs=mod.attrs).with_attr("external_mods", mods + c_modules())


def standalone_library(n: int, ci: int, co: int, h: int, w: int, k: int, path: str):
    """`conv` for a k x k same convolution of x[n, ci, h, w] (the importer's padded,
    flattened input and taps, as conv_f32.standalone_library) at `path` for this host,
    loaded: for the tests and the benchmark."""
    from sam3_tvm.lowering.targets import host_target

    target = host_target()
    p = k // 2
    row = w + 2 * p
    func = conv_func(n, ci, (h + 2 * p + 1) * row, co, k * k, h * row, k, row)
    ex = tvm.compile(tvm.IRModule({"conv": func.with_attr("global_symbol", "conv")}), target=target)
    for m in c_modules():
        ex.mod.import_module(m)
    ex.export_library(path, options=["-O3"])
    return tvm.runtime.load_module(path)
