"""One component of several bundles (and optionally PyTorch) timed in turns, same process.

    TVM_NUM_THREADS=2 .venv/bin/python bench/component_ab.py --component memory_attention \
        --num-mem 7 bundles/full /tmp/other-build [--torch] [--rounds 5]

For an A/B of two builds of the same component: each round runs every side once, in
order, after one warm-up call per side; prints medians and min-max per side and each
side's speed-up over the first. Inputs are the seeded examples of `sam3-tvm verify`
(`--num-mem` spatial memories, `--num-points` points where the component has those
dimensions). Only the component's own weights are loaded. `--torch`: the component's
wrapper module in eager PyTorch (what `verify` compares against), on the same threads.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compiler"))


def tvm_side(path, component, inputs):
    import tvm
    from safetensors import safe_open
    from tvm import relax

    from sam3_tvm.bundle.writer import load_manifest

    man = load_manifest(path)
    entry = man["components"][component]
    vm = relax.VirtualMachine(tvm.runtime.load_module(os.path.join(path, entry["library"])), tvm.cpu())
    with safe_open(os.path.join(path, man["weights"]), framework="numpy") as f:
        params = [tvm.runtime.tensor(f.get_tensor(n)) for n in entry["params"]]
    args = [tvm.runtime.tensor(x.numpy()) for x in inputs]
    return lambda: vm["main"](*args, *params)


def torch_side(config, component, inputs):
    import torch

    from sam3_tvm.model import components as C
    from sam3_tvm.model import rope
    from sam3_tvm.model.builder import build_model

    torch.set_num_threads(int(os.environ.get("TVM_NUM_THREADS", os.cpu_count() or 1)))
    model = build_model(config, seed=0)
    rope.realify(model)
    wrapper = C.make(component, model).eval()

    def run():
        with torch.no_grad():
            return wrapper(*inputs)

    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--component", required=True)
    ap.add_argument("--num-mem", type=int, default=3)
    ap.add_argument("--num-points", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--torch", action="store_true", help="also time the eager PyTorch module")
    args = ap.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))

    from sam3_tvm.bundle.writer import load_manifest
    from sam3_tvm.model import components as C
    from sam3_tvm.model.builder import CONFIGS

    config = load_manifest(args.bundles[0])["config"]["name"]
    inputs = C.example_inputs(args.component, CONFIGS[config], seed=1, num_mem=args.num_mem,
                              num_points=args.num_points)
    sides = [(b, tvm_side(b, args.component, inputs)) for b in args.bundles]
    if args.torch:
        sides.append(("pytorch", torch_side(config, args.component, inputs)))
    times = {name: [] for name, _ in sides}
    for r in range(args.rounds + 1):
        for name, run in sides:
            t = time.perf_counter()
            run()
            if r:  # round 0 warms up
                times[name].append(time.perf_counter() - t)
    base = statistics.median(times[sides[0][0]])
    print(f"{args.component} (config {config}, num_mem {args.num_mem}, num_points {args.num_points}), "
          f"{os.environ['TVM_NUM_THREADS']} threads, {args.rounds} rounds in turns")
    for name, _ in sides:
        ts = times[name]
        med = statistics.median(ts)
        print(f"  {name:40s} {med * 1e3:10.1f} ms ({min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f})  "
              f"{base / med:5.2f}x of the first")


if __name__ == "__main__":
    main()
