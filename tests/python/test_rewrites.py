"""rewrites.fold_broadcast_weights: a weight broadcast over batch dims becomes one GEMM."""
import numpy as np
import pytest


def _module(x_shape, w_shape, target):
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    w = relax.Var("w", relax.TensorType(w_shape, "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            b = bb.emit(relax.op.broadcast_to(w, target))
            y = bb.emit_output(bb.emit(relax.op.matmul(x, b)))
        bb.emit_func_output(y)
    return bb.get()


def test_broadcast_weight_matmul_folded_and_equal():
    """The importer's form of a sequence-first linear ([L, 1, K] tokens): folded, same values."""
    import tvm
    from tvm import relax

    from sam3_tvm.frontend.rewrites import fold_broadcast_weights

    mod = fold_broadcast_weights(_module((6, 1, 4), (4, 5), (6, 4, 5)))
    text = mod["main"].script()
    assert "R.broadcast_to" not in text and "R.matmul" in text
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((6, 1, 4), np.float32), rng.standard_normal((4, 5), np.float32)
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w)).numpy()
    np.testing.assert_allclose(got, x @ w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("x_shape,target", [
    ((1, 4, 6), (3, 6, 5)),  # x's batch of 1 broadcast to 3: not one GEMM
    ((3, 4, 6), (3, 6, 5)),  # fine shape, but see below: w is not 2-D here
])
def test_other_broadcasts_left_alone(x_shape, target):
    from sam3_tvm.frontend.rewrites import fold_broadcast_weights

    w_shape = (6, 5) if x_shape[0] == 1 else (1, 6, 5)
    mod = fold_broadcast_weights(_module(x_shape, w_shape, target))
    assert "R.broadcast_to" in mod["main"].script()


def test_grounding_head_has_no_broadcast_weights():
    from sam3_tvm.model import rope
    from sam3_tvm.frontend.importer import import_component

    from sam3_tvm.model.builder import build_model

    tiny_model = build_model("tiny", seed=0)  # its own: realify changes the model
    rope.realify(tiny_model)
    mod, _, _ = import_component("grounding_head", tiny_model, tiny_model.sam3_tvm_config)
    for line in mod["main"].script().splitlines():
        if "R.broadcast_to(" in line:
            # whatever broadcasts remain are not 2-D weights fed to a matmul
            assert "R.permute_dims" not in line


def test_activation_moves_before_the_reshape_and_fuses_with_the_linear():
    """torch exports a linear on [B, H, W, C] as reshape, matmul, add, reshape: the
    activations after it move before the reshape and join the matmul's kernel."""
    import torch
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from sam3_tvm.frontend.rewrites import activation_before_reshape
    from sam3_tvm.lowering.pipeline import build_pipeline, optimize
    from sam3_tvm.lowering.targets import host_target

    class Mlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(8, 12)
            self.out = torch.nn.Linear(12, 4)

        def forward(self, x):
            return (self.out(torch.nn.functional.gelu(self.fc(x)).relu()),)

    torch.manual_seed(0)
    x = torch.randn(1, 3, 5, 8)
    ep = torch.export.export(Mlp().eval(), (x,))
    mod, params = relax.frontend.detach_params(from_exported_program(ep, keep_params_as_input=True))
    before = mod["main"].script()
    assert "R.reshape" in before and "R.nn.gelu" in before
    mod = activation_before_reshape(mod)
    target = host_target()
    opt = optimize(mod, target)
    fused = [gv.name_hint for gv, f in opt.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert any("matmul" in n and "gelu" in n and "relu" in n for n in fused), fused
    assert not any(n.count("reshape") > 1 for n in fused), fused  # no reshape-pair copy
    vm = relax.VirtualMachine(tvm.compile(opt, target=target, relax_pipeline=build_pipeline()), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x.numpy()), *params["main"])[0].numpy()
    with torch.no_grad():
        np.testing.assert_allclose(got, ep.module()(x)[0].numpy(), rtol=1e-5, atol=1e-6)
