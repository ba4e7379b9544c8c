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
