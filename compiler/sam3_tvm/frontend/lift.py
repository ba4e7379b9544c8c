"""Weight-only computations run once at compile time, not on every call.

The importer writes `x @ W.T` for every linear layer, so each call of the image
encoder transposed all 128 ViT weight matrices again (2.2 s of 48 s on the full
model), and reshaped conv weights likewise. Relax's `LiftTransformParams` splits such
param-only work into `main_transform_params`; we run that function here on the
actual weights and store its results in the bundle, so the runtime only ever sees
the ready-to-use tensors.

Lifting is skipped for a component whose lifted weights would be more than 10%
larger than its weights (e.g. tables computed per image token): that would trade a
little compute for a lot of memory and bundle size.

Naming: a weight the transform passes through keeps its state-dict name (shared
between components, stored once); a computed one is named `<source>:<op>` after
the weight it derives from and the ops applied (e.g. `...mlp.fc1.weight:permute_dims`), or
`<component>:lifted<k>` when it has no single source.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax


def _sources(func: relax.Function, names: list[str]):
    """For each output of the transform function: ("pass", name) or ("computed", label)."""
    bind = {b.var: b.value for blk in func.body.blocks for b in blk.bindings}
    ret = func.body.body
    fields = ret.fields if isinstance(ret, relax.Tuple) else bind[ret].fields
    tuple_param = func.params[0]

    def param_index(expr):
        v = bind.get(expr, expr)
        if isinstance(v, relax.TupleGetItem) and v.tuple_value.same_as(tuple_param):
            return int(v.index)
        return None

    def op_name(v):
        if isinstance(v.args[0], tvm.ir.GlobalVar):  # call_tir(func, (args...), ...)
            return v.args[0].name_hint
        return v.op.name.split(".")[-1] if hasattr(v.op, "name") else "expr"

    def source(expr, depth=0):
        """(weight index, op chain) a computed value derives from, following first operands."""
        idx = param_index(expr)
        v = bind.get(expr, expr)
        if idx is not None:
            return idx, []
        if depth > 8 or not isinstance(v, relax.Call) or not v.args:
            return None, []
        first = v.args[0]
        if isinstance(first, tvm.ir.GlobalVar):
            first = v.args[1].fields[0] if len(v.args) > 1 and v.args[1].fields else None
        if first is None:
            return None, []
        idx, chain = source(first, depth + 1)
        return idx, chain + [op_name(v)]

    out = []
    for f in fields:
        idx = param_index(f)
        if idx is not None:
            out.append(("pass", names[idx]))
            continue
        src, chain = source(f)
        # the whole op chain in the name: components share the weights file, so two
        # different computations from one weight must not get one name
        out.append(("computed", ":".join([names[src]] + chain) if src is not None else None))
    return out


MAX_GROWTH = 1.1  # lift only when the stored weights grow by at most 10%


def _nbytes(t) -> int:
    """Bytes of a tensor or a tensor type, from its shape and dtype (no copy)."""
    n = int(np.prod([int(d) for d in t.shape])) if len(t.shape) else 1
    return n * tvm.DataType(str(t.dtype)).bits // 8


def lift_params(component: str, mod: tvm.IRModule, params: list, names: list[str]):
    """Returns (module whose `main` takes the transformed weights, their arrays, names)."""
    from sam3_tvm.lowering.targets import host_target

    lifted = relax.transform.LiftTransformParams()(mod)
    tp_name = "main_transform_params"
    if tp_name not in [gv.name_hint for gv in lifted.functions]:
        return mod, [p.numpy() for p in params], names
    tp = lifted[tp_name]
    out_bytes = sum(_nbytes(f) for f in tp.ret_ty.fields)
    in_bytes = sum(_nbytes(p) for p in params)
    if out_bytes > MAX_GROWTH * in_bytes:
        # some weight-only result is bigger than the weights (the grounding head
        # precomputes position tables per image token): keep computing per call
        return mod, [p.numpy() for p in params], names
    sources = _sources(tp, names)
    target = host_target()
    # the transform function and the TIR kernels it calls (bf16.py's weight packing)
    # (keyed by the same GlobalVars: the transform's call_tir refer to them)
    called = {b.value.args[0] for blk in tp.body.blocks for b in blk.bindings
              if isinstance(b.value, relax.Call) and b.value.args
              and isinstance(b.value.args[0], tvm.ir.GlobalVar)}
    funcs = {gv: f for gv, f in lifted.functions.items() if gv in called}
    funcs[tvm.ir.GlobalVar("main")] = tp.with_attr("global_symbol", "main")
    ex = tvm.compile(tvm.IRModule(funcs), target=target)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    outs = vm["main"](list(params))
    arrays, new_names, seen = [], [], set()
    for k, ((kind, label), arr) in enumerate(zip(sources, outs)):
        name = label if kind == "pass" or label is not None else f"{component}:lifted{k}"
        if kind == "computed" and name in seen:
            name = f"{name}#{k}"
        seen.add(name)
        arrays.append(np.ascontiguousarray(arr.numpy()))
        new_names.append(name)
    main_only = tvm.IRModule({gv: f for gv, f in lifted.functions.items() if gv.name_hint != tp_name},
                             attrs=lifted.attrs)  # (external_mods: bf16.py's C kernels)
    return main_only, arrays, new_names
