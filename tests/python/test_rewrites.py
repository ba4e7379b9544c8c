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
