"""Per-kernel time of one bundle component (VM call instrumentation), to see what limits speed.

    .venv/bin/python bench/profile_tvm.py --bundle bundles/full --component image_encoder [--top 25] [--warmup 1]

Inputs are the seeded examples `sam3-tvm verify` uses. Every call the VM makes is
timed (before/after hooks); prints kernels by total time, optionally writes CSV.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compiler"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--component", default="image_encoder")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", help="write the full report as CSV here")
    ap.add_argument("--warmup", type=int, default=1,
                    help="uninstrumented calls first (the first call pages the weights in and "
                         "allocates the workspace: seconds of system time on the full model)")
    args = ap.parse_args()

    import tvm
    from tvm import relax

    from sam3_tvm.model import components as C
    from sam3_tvm.model.builder import CONFIGS
    from sam3_tvm.bundle.runtime import Bundle

    b = Bundle(args.bundle)
    cfg = CONFIGS[b.manifest["config"]["name"]]
    inputs = [tvm.runtime.tensor(x.numpy()) for x in C.example_inputs(args.component, cfg, seed=1, num_mem=int(os.environ.get("NUM_MEM", 3)))]
    lib = tvm.runtime.load_module(os.path.join(args.bundle, b.manifest["components"][args.component]["library"]))
    vm = relax.VirtualMachine(lib, tvm.cpu())
    import time

    by_name, started = {}, {}

    def instrument(func, name, before, ret, *call_args):
        if before:
            started[name] = time.perf_counter()
        else:
            calls, total = by_name.get(name, (0, 0.0))
            by_name[name] = (calls + 1, total + (time.perf_counter() - started.pop(name)) * 1e6)
        return 0

    for k in range(args.warmup):
        t = time.perf_counter()
        vm["main"](*inputs, *b.params[args.component])
        print(f"warm-up call {k + 1}: {time.perf_counter() - t:.2f} s", file=sys.stderr)
    vm.set_instrument(instrument)
    vm["main"](*inputs, *b.params[args.component])
    if args.out:
        with open(args.out, "w") as f:
            f.write("kernel,calls,total_us\n")
            for name, (calls, us) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
                f.write(f"{name},{calls},{us:.0f}\n")
    total = sum(t for _, t in by_name.values())
    print(f"{args.component}: {total / 1e6:.1f} s in {len(by_name)} kernels")
    for name, (calls, us) in sorted(by_name.items(), key=lambda kv: -kv[1][1])[: args.top]:
        print(f"{us / 1e6:9.2f} s {100 * us / total:5.1f}%  x{calls:<4d} {name}")


if __name__ == "__main__":
    main()
