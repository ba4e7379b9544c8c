"""Weight-only computations are done at compile time (lift.py) and stored under clear names."""
import numpy as np


def test_lifted_weights_are_ready_to_use():
    from sam3_tvm.model import rope
    from sam3_tvm.frontend.importer import import_component
    from sam3_tvm.frontend.lift import lift_params
    from sam3_tvm.model.builder import build_model

    tiny_model = build_model("tiny", seed=0)
    rope.realify(tiny_model)
    mod, params, names = import_component("image_encoder", tiny_model, tiny_model.sam3_tvm_config)
    main, arrays, new_names = lift_params("image_encoder", mod, params, names)
    num_input = int(main["main"].attrs["num_input"])
    assert len(main["main"].params) == num_input + len(arrays) == num_input + len(new_names)
    assert len(set(new_names)) == len(new_names)
    state = {k: v.detach().numpy() for k, v in tiny_model.state_dict().items()}
    by_name = dict(zip(new_names, arrays))
    # linear weights arrive transposed once, at compile time
    qkv = "backbone.vision_backbone.trunk.blocks.0.attn.qkv.weight"
    np.testing.assert_array_equal(by_name[qkv + ":permute_dims"], state[qkv].T)
    assert qkv not in by_name
    # passed-through weights keep their state-dict names and values
    for n, a in by_name.items():
        if ":" not in n:
            np.testing.assert_array_equal(a, state[n])
    # and the per-call function no longer transposes any weight
    text = main["main"].script()
    assert "R.permute_dims(p_" not in text


def test_large_weight_only_tables_stay_in_main():
    """A weight-only result much larger than its weights (the grounding head's 33 MB
    box position bias, from a few KB of weights) is computed per call, while the other
    weights are still transposed once; the lifted function gives the same output."""
    import tvm
    from tvm import relax

    from sam3_tvm.frontend.lift import lift_params
    from sam3_tvm.lowering.targets import host_target

    x = relax.Var("x", relax.TensorType((16, 8), "float32"))
    w = relax.Var("w", relax.TensorType((8, 8), "float32"))
    b = relax.Var("b", relax.TensorType((1, 8), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x, w, b], attrs={"num_input": 1}):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, bb.emit(relax.op.permute_dims(w))))
            table = bb.emit(relax.op.exp(relax.op.broadcast_to(b, (16, 8))))  # 512 B from 32 B
            out = bb.emit_output(relax.op.add(y, table))
        bb.emit_func_output(out)
    mod = bb.get()
    rng = np.random.default_rng(0)
    wv, bv = rng.standard_normal((8, 8), dtype=np.float32), rng.standard_normal((1, 8), dtype=np.float32)
    xv = rng.standard_normal((16, 8), dtype=np.float32)
    params = [tvm.runtime.tensor(wv), tvm.runtime.tensor(bv)]
    lifted, arrays, names = lift_params("demo", mod, params, ["w", "b"])
    # the transposed w is stored; the table is not, b is (main computes the table)
    assert names == ["w:permute_dims", "b"], names
    np.testing.assert_array_equal(arrays[0], wv.T)
    np.testing.assert_array_equal(arrays[1], bv)
    text = lifted["main"].script()
    assert "R.permute_dims" not in text and "R.exp" in text
    vm = relax.VirtualMachine(tvm.compile(lifted, target=host_target()), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(xv), *[tvm.runtime.tensor(a) for a in arrays]).numpy()
    np.testing.assert_allclose(got, xv @ wv.T + np.exp(np.broadcast_to(bv, (16, 8))), rtol=1e-5, atol=1e-5)
