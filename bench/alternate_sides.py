"""Two `sam3-bench` processes taking turns, as `sam3-tvm bench --alt-bundle` runs them.

    .venv/bin/python bench/alternate_sides.py bundles/full-bf16 bundles/full [--rounds 2]

For each round and stage (encode, text) the first bundle's process runs, then the
second's, 1 s apart. Prints each stage's time and the CPU seconds the *other* process
used meanwhile (from /proc/<pid>/stat), to tell contention from other effects.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compiler"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--exe", default="build/sam3-bench")
    ap.add_argument("--image", default="assets/sample.png")
    args = ap.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
    from sam3_tvm.tools.bench import CPP_CMD, CppSide

    sides = [(b, CppSide(args.exe, b, args.image)) for b in (args.first, args.second)]

    def cpu_seconds(side):
        fields = open(f"/proc/{side.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    try:
        for r in range(args.rounds):
            for cmd in ("encode", "text"):
                for i, (name, side) in enumerate(sides):
                    other = sides[1 - i][1]
                    time.sleep(1)
                    before = cpu_seconds(other)
                    reply = side.ask(CPP_CMD[cmd])
                    print(f"round {r} {cmd:6} {name}: {reply['seconds']:.3f} s; other process "
                          f"used {cpu_seconds(other) - before:.2f} CPU s", flush=True)
    finally:
        for _, side in sides:
            side.close()


if __name__ == "__main__":
    main()
