"""torch.export -> Relax for one component, weights named as in the model's state_dict."""

from __future__ import annotations


def import_component(name: str, model, cfg, no_float64: bool = False, fused_attention: bool = False,
                     cpu: bool = False):
    """torch.export -> Relax. Returns (IRModule without params, params, param names).
    `fused_attention`: attention as the fused CPU kernel (lowering/attention.py);
    `cpu`: the importer's CPU-only lowerings (converters.converters)."""
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from sam3_tvm.frontend.converters import converters
    from sam3_tvm.frontend.export import export_component
    from sam3_tvm.frontend.rewrites import activation_before_reshape, fold_broadcast_weights

    ep, wrapper = export_component(name, model, cfg, fused_attention=fused_attention)
    mod = from_exported_program(ep, keep_params_as_input=True,
                                custom_convert_map=converters(no_float64, cpu=cpu))
    mod = activation_before_reshape(fold_broadcast_weights(mod))
    num_input = int(mod["main"].attrs["num_input"])
    relax_names = [str(v.name) for v in mod["main"].params[num_input:]]
    placeholder_to_fqn = dict(ep.graph_signature.inputs_to_parameters)
    # name each weight as in the model's state_dict, so components share one file
    model_name = {id(p): n for n, p in model.named_parameters()}
    wrapper_params = dict(wrapper.named_parameters())
    names = [model_name[id(wrapper_params[placeholder_to_fqn[n]])] for n in relax_names]
    mod, params = relax.frontend.detach_params(mod)
    return mod, params["main"], names
