"""The default CPU schedules fire on the kernels they target and keep results exact."""
import re

import numpy as np
import pytest
import torch


def _compile(module, inputs, schedule=True):
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from sam3_tvm.lowering.targets import host_target
    from sam3_tvm.lowering.pipeline import build_pipeline, optimize

    ep = torch.export.export(module, tuple(inputs))
    mod, params = relax.frontend.detach_params(from_exported_program(ep, keep_params_as_input=True))
    target = host_target()
    opt = optimize(mod, target, schedule=schedule)
    vm = relax.VirtualMachine(tvm.compile(opt, target=target, relax_pipeline=build_pipeline()), tvm.cpu())
    args = [tvm.runtime.tensor(x.numpy()) for x in inputs] + params["main"]
    return opt, [o.numpy() for o in vm["main"](*args)], ep.module()(*inputs)


class Block(torch.nn.Module):
    """A linear, a conv, an attention softmax and a layer norm: one of each kernel kind."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(64, 48)
        self.conv = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.norm = torch.nn.LayerNorm(48)

    def forward(self, x, y):
        h = self.norm(torch.nn.functional.gelu(self.lin(x)))
        att = torch.softmax(h @ h.transpose(1, 2), -1)
        return att @ h, self.conv(y)


def test_every_kernel_is_scheduled_and_results_match():
    import tvm

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, 40, 64, generator=g), torch.randn(1, 16, 24, 24, generator=g)
    with torch.no_grad():
        opt, got, ref = _compile(Block().eval(), [x, y])
    funcs = {str(gv.name_hint): f for gv, f in opt.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    unscheduled = [n for n, f in funcs.items() if not (f.attrs and "tirx.is_scheduled" in f.attrs)]
    assert not unscheduled, unscheduled
    text = "\n".join(f.script() for f in funcs.values())
    assert "T.parallel" in text and "T.vectorized" in text
    assert '"local"' in text  # register-tile accumulators of the contraction rule
    for g_, r in zip(got, ref):
        np.testing.assert_allclose(g_, r.detach().numpy(), rtol=1e-5, atol=1e-5)


def _linear_gelu(m, k, n):
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((m, k), "float32"))
    w = relax.Var("w", relax.TensorType((k, n), "float32"))
    b = relax.Var("b", relax.TensorType((n,), "float32"))
    with bb.function("main", [x, w, b]):
        with bb.dataflow():
            y = bb.emit(relax.op.add(bb.emit(relax.op.matmul(x, w)), b))
            y = bb.emit_output(bb.emit(relax.op.nn.gelu(y)))
        bb.emit_func_output(y)
    return bb.get()


@pytest.mark.parametrize("m", [60, 1536], ids=["panels", "row-blocks"])
@pytest.mark.parametrize("k", [96, 1100], ids=["tile-in-registers", "k-blocked"])
def test_linear_epilogue_joins_the_gemm(k, m):
    """Bias + GELU after a matmul are computed from the GEMM's own loop nest (from the
    register tile's write-back, or per column panel right after its last K block), not
    in parallel nests of their own over full-size intermediates. 1536 rows: tasks are
    row blocks (on machines with up to 16 cores), 60: column panels (64 columns with
    AVX-512, 16 with AVX2)."""
    from sam3_tvm.lowering.schedule import _lanes, _row_block

    import tvm
    from tvm import relax

    from sam3_tvm.lowering.pipeline import build_pipeline, optimize
    from sam3_tvm.lowering.targets import host_target

    n = 128
    target = host_target()
    opt = optimize(_linear_gelu(m, k, n), target)
    (func,) = [f for f in opt.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    text = func.script()
    assert text.count("T.parallel") == 1, text
    blk = _row_block(m, 6, target)
    assert (blk > 0) == (m == 1536 and int(target.attrs["num-cores"]) <= 16)
    lanes = _lanes(target)
    panel = (4 if lanes >= 16 else 2) * lanes  # the register tile's columns: 4 zmm, or 2 ymm (AVX2)
    tasks = m // (6 * blk) if blk else n // panel
    assert f"T.parallel(T.int64({tasks}))" in text
    assert "T_add_intermediate" not in text and "T_multiply" not in text
    if k < 512:
        assert "matmul_intermediate = " not in text  # written straight from the registers
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32) / 16
    b = rng.standard_normal(n, np.float32)
    vm = relax.VirtualMachine(tvm.compile(opt, target=target, relax_pipeline=build_pipeline()), tvm.cpu())
    got = vm["main"](*[tvm.runtime.tensor(a) for a in (x, w, b)]).numpy()
    ref = torch.nn.functional.gelu(torch.from_numpy(x) @ torch.from_numpy(w) + torch.from_numpy(b))
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-5)


class LayoutChain(torch.nn.Module):
    """reshape -> transpose -> add -> pad -> reshape: one fused injective kernel."""

    def forward(self, x):
        h = x.reshape(2, 24, 8, 16).transpose(1, 2) + 1.5
        return torch.nn.functional.pad(h, (1, 1, 2, 0)).reshape(2, 8, -1)


def test_injective_chain_is_one_pass_without_intermediates():
    """The ops of a fused elementwise/layout kernel are inlined into its output block: no
    buffer per op (each was a pass over memory, allocated from TVM's workspace pool, which
    never gives memory back), one parallel nest."""
    import tvm

    x = torch.randn(2, 24, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        opt, got, ref = _compile(LayoutChain().eval(), [x])
    (func,) = [f for f in opt.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    text = func.script()
    assert "T.alloc_buffer" not in text, text
    assert text.count("T.parallel") == 1, text
    np.testing.assert_allclose(got[0], ref.numpy(), rtol=0, atol=0)


class HeadsPermute(torch.nn.Module):
    """The ViT's qkv split: [B, L, 3, heads, d] -> [3, B, heads, L, d] (d innermost on both
    sides)."""

    def forward(self, x):
        return x.reshape(2, 40, 3, 4, 32).permute(2, 0, 3, 1, 4).contiguous()


def test_layout_copy_vectorises_the_innermost_axis():
    """A copy that keeps the innermost axis runs it as the vector loop under one parallel
    loop of the outer axes (a vector of one fused index reached the input through a
    div/mod chain per lane: the qkv permute ran at half the speed)."""
    import tvm

    from sam3_tvm.lowering.schedule import _lanes
    from sam3_tvm.lowering.targets import host_target

    x = torch.randn(2, 40, 3 * 4 * 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        opt, got, ref = _compile(HeadsPermute().eval(), [x])
    (func,) = [f for f in opt.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    text = func.script()
    lanes = _lanes(host_target())
    # one parallel loop over the 3 * 2 * 4 * 40 rows, the 32 columns split into vectors
    assert re.findall(r"T\.parallel\((?:T\.int64\()?(\d+)", text) == [str(3 * 2 * 4 * 40)], text
    assert re.findall(r"T\.vectorized\((?:T\.int64\()?(\d+)", text) == [str(lanes)], text
    np.testing.assert_allclose(got[0], ref.numpy(), rtol=0, atol=0)


def test_layer_norm_sums_rows_as_vectors():
    """A layer norm's mean and variance are summed as `lanes` partial sums per row
    (rfactor, a vector loop), not one scalar chain per row; the softmax of a row too."""
    import tvm

    class NormSoftmax(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.LayerNorm(128)

        def forward(self, x):
            return torch.softmax(self.norm(x) * 3.0, -1)

    x = torch.randn(2, 40, 128, generator=torch.Generator().manual_seed(0)) * 4 + 1
    with torch.no_grad():
        opt, got, ref = _compile(NormSoftmax().eval(), [x])
    funcs = [f for f in opt.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    texts = [f.script() for f in funcs]
    norm = [t for t in texts if "layer_norm" in t.lower() or "x_var_sum" in t]
    assert norm and all("_rf" in t and "T.vectorized" in t for t in norm), texts
    np.testing.assert_allclose(got[0], ref.numpy(), rtol=1e-5, atol=1e-6)
