"""Rebuild a seeded bundle's weights.safetensors where the file cannot be copied.

The lent GPU machine (docs/gpu.md, "Runs on a lent H200") takes 64 MiB per call; the full
bundle's weights are 3.4 GB. They are a function of the seed, so we copy a recipe and
rebuild them there:

  recipe BUNDLE OUT.json   here (TVM installed): for every stored tensor, how numpy makes it
                           from the seeded model's state dict (a state-dict name, then
                           transposes / reshapes / slices, found by trying and checked for
                           exact equality); tensors no such recipe makes (computed tables)
                           are copied into OUT.values.safetensors.
  apply BUNDLE RECIPE.json there (torch + the official sam3 package, no TVM): build the
                           model from the manifest's seed, follow the recipe, write
                           BUNDLE/weights.safetensors and compare its SHA-256 with the
                           manifest's; if torch's seeded init differs there, say so and
                           record the new hash in the manifest (`--accept-new-hash`), so the
                           runtime and the PyTorch reference built from the same seed there
                           still share their weights.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compiler"))


def _seed(manifest: dict) -> int:
    m = re.fullmatch(r"random\(seed=(\d+)\)", manifest["weights_source"])
    if not m:
        sys.exit(f"bundle weights come from {manifest['weights_source']!r}, not a seed")
    return int(m.group(1))


def model_state(config: str, seed: int, vocab: str) -> dict:
    """name -> float32 numpy array: the seeded model after `rope.realify`, as compiled,
    plus every component wrapper's own state (names the importer may use)."""
    import torch

    from sam3_tvm.model import builder, components as C, rope

    builder.bpe_vocab_path = lambda: vocab  # the bundle carries the same vocabulary
    model = builder.build_model(config, seed=seed)
    rope.realify(model)
    state = {}
    for n in C.COMPONENTS:
        for k, v in C.make(n, model).state_dict(keep_vars=False).items():
            state.setdefault(k, v)
    for k, v in model.state_dict().items():
        state[k] = v
    return {k: v.detach().to(torch.float32).numpy() if v.is_floating_point() else v.numpy()
            for k, v in state.items()}


def _pack_shape(op: str):
    """(K, N, panel width) of a linear_f32 pack op name (`sam3_f32_pack_K_N`: AVX-512,
    64-wide panels; `sam3_f32x8_pack_K_N`: AVX2, 16-wide), else None."""
    m = re.fullmatch(r"sam3_f32(x8)?_pack_(\d+)_(\d+)", op)
    return None if m is None else (int(m.group(2)), int(m.group(3)), 16 if m.group(1) else 64)


def _candidates(src: np.ndarray, ops: list[str], shape: tuple):
    """Recipes (lists of steps) of the op chain `ops` from `src` to `shape`."""
    if not ops:
        yield []
        return
    op, rest = ops[0], ops[1:]
    if op == "permute_dims":
        for p in itertools.permutations(range(src.ndim)):
            if list(p) == list(range(src.ndim)):
                continue
            nxt = np.transpose(src, p)
            for tail in _candidates(nxt, rest, shape):
                yield [["transpose", list(p)]] + tail
    elif op in ("reshape", "expand_dims") and all(o in ("reshape", "expand_dims") for o in rest):
        # reshapes in a row (e.g. a 1x1 conv's taps); expand_dims is a reshape too (a
        # norm's scale as [C, 1, 1])
        if src.size == int(np.prod(shape)):
            yield [["reshape", list(shape)]]
    elif op == "reshape":
        packed = _pack_shape(rest[-1])
        if packed is not None and rest[:-1] in ([], ["permute_dims"]):
            # a conv weight flattened for a linear kernel: reshape (and transpose) to the
            # pack's [K, N]
            k, n, _ = packed
            inter, steps = ([k, n], []) if len(rest) == 1 else ([n, k], [["transpose", [1, 0]]])
            if src.size == k * n:
                nxt = np.reshape(src, inter)
                if steps:
                    nxt = np.transpose(nxt, (1, 0))
                for tail in _candidates(nxt, rest[len(steps):], shape):
                    yield [["reshape", inter]] + steps + tail
            return
        if rest == ["permute_dims"]:  # reshape to the inverse-permuted target shape
            for p in itertools.permutations(range(len(shape))):
                inter = [0] * len(shape)
                for i, a in enumerate(p):
                    inter[a] = shape[i]
                if src.size == int(np.prod(inter)):
                    yield [["reshape", inter], ["transpose", list(p)]]
    elif _pack_shape(op) is not None and src.ndim == 2 and src.shape[1] % _pack_shape(op)[2] == 0:
        # linear_f32's panels: W [K, N] -> [N/w, K, w], w = 64 (AVX-512 tile) or 16 (AVX2)
        k, n = src.shape
        w = _pack_shape(op)[2]
        nxt = np.transpose(np.reshape(src, (k, n // w, w)), (1, 0, 2))
        for tail in _candidates(nxt, rest, shape):
            yield [["reshape", [k, n // w, w]], ["transpose", [1, 0, 2]]] + tail
    elif op == "strided_slice" and rest == ["reshape"] and src.ndim == 4:
        # one tap of a [O, I, kh, kw] convolution kernel (a 3x3 conv as 9 matmuls)
        for i in range(src.shape[2]):
            for j in range(src.shape[3]):
                if src.shape[0] * src.shape[1] == int(np.prod(shape)):
                    yield [["slice", 2, i, i + 1], ["slice", 3, j, j + 1], ["reshape", list(shape)]]
    elif op == "strided_slice" and not rest:
        for axis in range(src.ndim):
            if src.ndim == len(shape) and all(src.shape[i] == shape[i] for i in range(src.ndim) if i != axis):
                for start in (0, src.shape[axis] - shape[axis]):
                    yield [["slice", axis, start, start + shape[axis]]]


def follow(src: np.ndarray, steps: list) -> np.ndarray:
    out = src
    for s in steps:
        if s[0] == "transpose":
            out = np.transpose(out, s[1])
        elif s[0] == "reshape":
            out = np.reshape(out, s[1])
        elif s[0] == "slice":
            idx = [slice(None)] * out.ndim
            idx[s[1]] = slice(s[2], s[3])
            out = out[tuple(idx)]
    return np.ascontiguousarray(out)


def make_recipe(bundle: str, out: str) -> None:
    from safetensors import safe_open
    from safetensors.numpy import save_file

    manifest = json.load(open(os.path.join(bundle, "manifest.json")))
    state = model_state(manifest["config"]["name"], _seed(manifest),
                        os.path.join(bundle, manifest["tokenizer"]["vocab"]))
    recipe, stored = {}, {}
    with safe_open(os.path.join(bundle, manifest["weights"]), "np") as f:
        for name in f.keys():
            want = f.get_tensor(name)
            src_name, *ops = re.sub(r"#\d+$", "", name).split(":")
            found = None
            if src_name in state:
                for steps in _candidates(state[src_name], ops, tuple(want.shape)):
                    got = follow(state[src_name], steps)
                    if got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want):
                        found = {"src": src_name, "steps": steps}
                        break
            if found is None:
                stored[name] = want
                found = {"stored": True}
            recipe[name] = found
    json.dump({"weights": recipe, "order": list(recipe)}, open(out, "w"), indent=1)
    if stored:
        save_file(stored, out.replace(".json", ".values.safetensors"))
    mb = sum(v.nbytes for v in stored.values()) / 2**20
    print(f"{len(recipe)} tensors: {len(recipe) - len(stored)} by recipe, {len(stored)} stored ({mb:.1f} MiB)")
    for k in stored:
        print("  stored:", k, stored[k].shape)


def apply_recipe(bundle: str, recipe_path: str, accept_new_hash: bool) -> None:
    from safetensors import safe_open
    from safetensors.numpy import save_file

    mpath = os.path.join(bundle, "manifest.json")
    manifest = json.load(open(mpath))
    state = model_state(manifest["config"]["name"], _seed(manifest),
                        os.path.join(bundle, manifest["tokenizer"]["vocab"]))
    spec = json.load(open(recipe_path))
    values = recipe_path.replace(".json", ".values.safetensors")
    stored = {}
    if os.path.exists(values):
        with safe_open(values, "np") as f:
            stored = {k: f.get_tensor(k) for k in f.keys()}
    tensors = {}
    for name in spec["order"]:
        r = spec["weights"][name]
        tensors[name] = stored[name] if r.get("stored") else follow(state[r["src"]], r["steps"])
    path = os.path.join(bundle, manifest["weights"])
    save_file(tensors, path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    want = manifest["sha256"][manifest["weights"]]
    if h.hexdigest() == want:
        print(f"{path}: rebuilt, SHA-256 equal to the manifest's")
        return
    print(f"{path}: rebuilt, SHA-256 {h.hexdigest()} differs from the manifest's {want}: "
          "torch's seeded init differs on this machine")
    if not accept_new_hash:
        sys.exit(1)
    manifest["sha256"][manifest["weights"]] = h.hexdigest()
    json.dump(manifest, open(mpath, "w"), indent=2)
    print("  recorded the new hash in the manifest (--accept-new-hash)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recipe")
    r.add_argument("bundle")
    r.add_argument("out")
    a = sub.add_parser("apply")
    a.add_argument("bundle")
    a.add_argument("recipe")
    a.add_argument("--accept-new-hash", action="store_true")
    args = ap.parse_args()
    if args.cmd == "recipe":
        make_recipe(args.bundle, args.out)
    else:
        apply_recipe(args.bundle, args.recipe, args.accept_new_hash)


if __name__ == "__main__":
    main()
