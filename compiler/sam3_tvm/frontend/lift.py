"""Weight-only computations run once at compile time, not on every call.

The importer writes `x @ W.T` for every linear layer, so each call of the image
encoder transposed all 128 ViT weight matrices again (2.2 s of 48 s on the full
model), and reshaped conv weights likewise. Relax's `LiftTransformParams` splits such
param-only work into `main_transform_params`; we run that function here on the
actual weights and store its results in the bundle, so the runtime only ever sees
the ready-to-use tensors.

The lifted weights may be at most 10% larger than the weights. Where they would be
larger, results larger than the weights they are computed from (the grounding head's
33 MB box position bias, from a few KB of weights) stay in `main`, computed per call,
largest first until the rest fits (`_keep_in_main`): the bundle barely grows, and the
rest of the component's weights are still transposed and packed once (before, its
linears ran on the default schedule, transposing their weights on every call). Where
that is not enough, nothing of the component is lifted.

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
    fields = _fields(func)
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


def _fields(func: relax.Function) -> list:
    """The transform function's outputs (its returned tuple's fields)."""
    ret = func.body.body
    if not isinstance(ret, relax.Tuple):
        ret = {b.var: b.value for blk in func.body.blocks for b in blk.bindings}.get(ret)
    return list(ret.fields) if isinstance(ret, relax.Tuple) else []


def _slice(func: relax.Function, out: relax.Expr):
    """(the bindings of the transform `func` that compute `out`, in order; {var: k} for
    those of them that take weight k out of the parameter tuple), or None when `out`
    reads the tuple otherwise."""
    bind = {b.var: b for blk in func.body.blocks for b in blk.bindings}
    order = [b.var for blk in func.body.blocks for b in blk.bindings]
    tuple_param = func.params[0]
    need, reads, stack = set(), {}, [out]
    while stack:
        for v in relax.analysis.free_vars(stack.pop()):
            if v.same_as(tuple_param):
                return None
            if v not in bind or v in need:
                continue
            need.add(v)
            value = bind[v].value
            if isinstance(value, relax.TupleGetItem) and value.tuple_value.same_as(tuple_param):
                reads[v] = int(value.index)
            else:
                stack.append(value)
    return [bind[v] for v in order if v in need], reads


def _keep_in_main(lifted: tvm.IRModule, tp_name: str, drop: list[int]):
    """`lifted` with the transform's outputs `drop` computed in `main` again: their
    bindings copied in front of main's first dataflow block, main's parameters for them
    gone, and the weights they read taken as parameters (those the transform passes
    through already are; the others are appended). Returns (module, indices of the
    appended weights), or None where that does not apply."""
    tp, main = lifted[tp_name], lifted["main"]
    fields = _fields(tp)
    blocks = list(main.body.blocks)
    if not blocks or not isinstance(blocks[0], relax.DataflowBlock):
        return None
    num_input = int(main.attrs["num_input"])
    passed = {}  # weight index -> main's parameter for it (a pass-through output)
    bound = {b.var: b.value for blk in tp.body.blocks for b in blk.bindings}
    for k, f in enumerate(fields):
        v = bound.get(f, f)
        if k not in drop and isinstance(v, relax.TupleGetItem) and v.tuple_value.same_as(tp.params[0]):
            passed.setdefault(int(v.index), main.params[num_input + k])
    copied, seen, extra, extra_params = [], set(), [], {}
    for i in drop:
        found = _slice(tp, fields[i])
        if found is None:
            return None
        bindings, reads = found
        for b in bindings:
            if b.var in seen:
                continue
            seen.add(b.var)
            if b.var in reads:  # weight k: main's parameter for it
                k = reads[b.var]
                if k not in passed:
                    param = relax.Var(f"w{k}", b.var.ty)
                    passed[k] = extra_params[k] = param
                    extra.append(k)
                b = relax.VarBinding(b.var, passed[k])
            copied.append(b)
    first = relax.DataflowBlock(copied + list(blocks[0].bindings))
    body = relax.SeqExpr([first] + blocks[1:], main.body.body)
    params = list(main.params) + [extra_params[k] for k in extra]
    func = relax.Function(params, body, main.ret_ty, main.is_pure, main.attrs, main.span)
    func = func.bind_params({main.params[num_input + i]: fields[i] for i in drop})
    funcs = {gv: (func if gv.name_hint == "main" else f) for gv, f in lifted.functions.items()}
    return relax.transform.Normalize()(tvm.IRModule(funcs, attrs=lifted.attrs)), extra


def _too_large(tp: relax.Function, sizes: list[int], weight_sizes: list[int], budget: float) -> list[int]:
    """Outputs of the transform to leave in `main` so that the lifted weights fit in
    `budget` bytes: those larger than the weights they are computed from (tables per
    image token), largest first."""
    total, drop, fields = sum(sizes), [], _fields(tp)
    for i in sorted(range(len(fields)), key=lambda i: -sizes[i]):
        if total <= budget:
            break
        found = _slice(tp, fields[i])
        if found is not None and sizes[i] > sum(weight_sizes[k] for k in set(found[1].values())):
            drop.append(i)
            total -= sizes[i]
    return sorted(drop)


def _run_transform(mod: tvm.IRModule, target, params: list):
    """Compile and run the transform function. Where it calls C kernels (a weight-only
    attention or linear: the grounding head's first decoder layer attends over its
    learned queries), they are linked into a temporary library first: C source modules
    do not run in memory."""
    import tempfile

    from sam3_tvm.lowering import attention

    if attention.supported(target):
        mod = attention.attach_kernels(mod, target)
    ex = tvm.compile(mod, target=target)
    if mod.attrs is None or not list(mod.attrs.get("external_mods", [])):
        return relax.VirtualMachine(ex, tvm.cpu())["main"](list(params))
    with tempfile.TemporaryDirectory(prefix="sam3-lift-") as tmp:
        path = f"{tmp}/transform.so"
        ex.export_library(path, options=["-O3"])
        vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
        return vm["main"](list(params))


def lift_params(component: str, mod: tvm.IRModule, params: list, names: list[str]):
    """Returns (module whose `main` takes the transformed weights, their arrays, names)."""
    from sam3_tvm.lowering.targets import host_target

    lifted = relax.transform.LiftTransformParams()(mod)
    tp_name = "main_transform_params"
    if tp_name not in [gv.name_hint for gv in lifted.functions]:
        return mod, [p.numpy() for p in params], names
    tp = lifted[tp_name]
    sizes = [_nbytes(f) for f in tp.ret_ty.fields]
    weight_sizes = [_nbytes(p) for p in params]
    budget = MAX_GROWTH * sum(weight_sizes)
    drop = _too_large(tp, sizes, weight_sizes, budget)
    extra = []
    if drop:
        kept = _keep_in_main(lifted, tp_name, drop)
        lifted, extra = kept if kept is not None else (None, [])
    if lifted is None or sum(sizes[i] for i in range(len(sizes)) if i not in drop) \
            + sum(weight_sizes[k] for k in extra) > budget:
        # still larger than the budget, or a large result main cannot take over:
        # keep computing everything per call
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
    outs = _run_transform(tvm.IRModule(funcs, attrs=lifted.attrs), target, params)
    arrays, new_names, seen = [], [], set()
    for k, ((kind, label), arr) in enumerate(zip(sources, outs)):
        if k in drop:
            continue
        name = label if kind == "pass" or label is not None else f"{component}:lifted{k}"
        if kind == "computed" and name in seen:
            name = f"{name}#{k}"
        seen.add(name)
        arrays.append(np.ascontiguousarray(arr.numpy()))
        new_names.append(name)
    for k in extra:  # weights that `main` reads itself again (_keep_in_main)
        arrays.append(params[k].numpy())
        new_names.append(names[k])
    main_only = tvm.IRModule({gv: f for gv, f in lifted.functions.items() if gv.name_hint != tp_name},
                             attrs=lifted.attrs)  # (external_mods: bf16.py's C kernels)
    return main_only, arrays, new_names
