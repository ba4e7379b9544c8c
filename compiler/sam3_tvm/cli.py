"""`sam3-tvm`: inspect, compile and verify SAM 3 with TVM."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from sam3_tvm.errors import Sam3TvmError


def _quiet() -> None:
    # torch/sam3 emit many deprecation and autocast warnings on a CPU host;
    # they bury our progress output and say nothing actionable to a user.
    if not os.environ.get("SAM3_TVM_WARNINGS"):
        warnings.filterwarnings("ignore")


def cmd_inspect(args) -> int:
    from sam3_tvm.tools.inspect_model import run_inspect

    run_inspect(args.config, as_json=args.json)
    return 0


def cmd_compile(args) -> int:
    from sam3_tvm.lowering import targets
    from sam3_tvm.bundle.writer import compile_bundle

    spec = targets.parse(args.target, arch=args.arch, precision=args.precision,
                         num_cores=args.num_cores, cpu=args.cpu)
    manifest = compile_bundle(args.config, args.out, checkpoint=args.checkpoint, seed=args.seed,
                              target=spec)
    print(f"wrote bundle {args.out} ({manifest['config']['name']}, "
          f"{len(manifest['components'])} components, {manifest['compile_seconds']} s)")
    return 0


def cmd_verify(args) -> int:
    from sam3_tvm.tools.verify import require_pass, verify_bundle

    comps = args.components.split(",") if args.components else None
    rows = verify_bundle(args.bundle, json_path=args.json, checkpoint=args.checkpoint, components=comps)
    require_pass(rows)
    print(f"parity ok: {len(rows)} outputs within tolerance")
    return 0


def cmd_run(args) -> int:
    from sam3_tvm.tools.predict import run

    res = run(args.bundle, args.image, args.out, text=args.text, boxes=args.box or [],
              points=args.point or [], threshold=args.threshold, multimask=not args.single_mask)
    print(f"{res['instances']} instance(s); wrote {res['result']}")
    return 0


def _exe(path):
    """The sam3 CLI (default build/sam3), which must exist."""
    exe = os.path.abspath(path or os.path.join(os.path.dirname(__file__), "..", "..", "build", "sam3"))
    if not os.path.isfile(exe):
        raise Sam3TvmError(f"C++ CLI not found: {exe} (run `make cpp`)")
    return exe


def cmd_verify_video(args) -> int:
    import json
    import tempfile

    from sam3_tvm.tools.synthetic_clip import object_boxes, write_clip
    from sam3_tvm.tools.video_parity import verify_video
    from sam3_tvm.tools.video_reference import load_actions

    exe = _exe(args.exe)
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or write_clip(os.path.join(tmp, "clip"), args.frames, 640, 480)
        if args.actions:
            actions = load_actions(args.actions)
        else:  # the square and the disc of the synthetic clip, boxed on frame 0
            actions = [{"op": "add_points", "frame": 0, "obj_id": i + 1, "box": b}
                       for i, b in enumerate(object_boxes(0, 640, 480)[:2])]
            actions.append({"op": "propagate", "direction": "forward"})
        summary = verify_video(args.bundle, video, actions, exe, json_path=args.json)
    if not summary["passed"]:
        raise Sam3TvmError(f"video parity failed: {len(summary['problems'])} mismatch(es)")
    print(json.dumps({"frames": len(summary["rows"]), "min_iou": summary["min_iou"],
                      "max_score_diff": summary["max_score_diff"]}))
    return 0


def cmd_bench_video(args) -> int:
    from sam3_tvm.tools.video_bench import bench_video

    exe = _exe(args.exe)
    if args.frames < 2:
        raise Sam3TvmError("--frames must be at least 2 (times are taken after the first frame)")
    bench_video(args.bundle, exe, frames=args.frames, threads=args.threads, json_path=args.json,
                markdown_path=args.markdown)
    return 0


def cmd_tune(args) -> int:
    from sam3_tvm.tools.tune import tune

    comps = args.component or ["image_encoder"]
    d = tune(args.config, comps, trials=args.trials, top=args.top, seed=args.seed, db=args.db,
             kernel=args.kernel, cpu=args.cpu, keep=args.keep)
    print(f"tuning records in {d}; `sam3-tvm compile` applies them when it builds for this CPU")
    return 0


def cmd_bench(args) -> int:
    from sam3_tvm.tools.bench import run_bench

    if args.runs < 1:
        raise Sam3TvmError("--runs must be at least 1")
    run_bench(args.bundle, args.image, runs=args.runs, exe=args.exe, json_path=args.json,
              plot_path=args.plot, markdown_path=args.markdown, threads=args.threads,
              alt_bundle=args.alt_bundle)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sam3-tvm", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("inspect", help="op inventory and hard spots of the exported components")
    s.add_argument("--config", choices=["tiny", "full"], default="tiny")
    s.add_argument("--json", action="store_true", help="print JSON instead of tables")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("compile", help="compile the components and write a bundle directory")
    s.add_argument("--config", choices=["tiny", "full"], default="tiny")
    s.add_argument("--checkpoint", help="official sam3.pt, or transformers model.safetensors "
                   "(Sam3VideoModel layout) (default: seeded random weights)")
    s.add_argument("--seed", type=int, default=0, help="seed for random weights (default 0)")
    s.add_argument("--num-cores", type=int, default=None, help="threads the code is built for "
                   "(default: this machine's cores)")
    s.add_argument("--target", default="cpu", help="cpu (default: this machine), cuda, or "
                   "metal (Apple silicon; off macOS: objects + kernel source, see docs/gpu.md)")
    s.add_argument("--cpu", help="cpu target: the CPU to build for, an LLVM CPU name (default: "
                   "this machine's); e.g. x86-64-v3 for any AVX2 + FMA machine")
    s.add_argument("--arch", help="cuda: comma-separated sm_XX list, e.g. sm_80,sm_90 "
                   "(default sm_80); one fat binary per component, built with nvcc")
    s.add_argument("--precision", default="fp32", help="fp32 (default); fp16 (GPU targets: "
                   "fp16 matmuls/convolutions; norms, softmax and residuals stay fp32); bf16 (CPU "
                   "with AVX512_BF16: the encoders' linear layers and attention on bf16 products with fp32 "
                   "accumulation, the rest fp32)")
    s.add_argument("--out", required=True, help="bundle directory to write")
    s.set_defaults(func=cmd_compile)

    s = sub.add_parser("verify", help="parity of a bundle against the official PyTorch model")
    s.add_argument("--bundle", required=True)
    s.add_argument("--checkpoint", help="checkpoint for the reference (default: the bundle's source)")
    s.add_argument("--json", help="write the parity table as JSON to this file")
    s.add_argument("--components", help="comma-separated components to check (default: all)")
    s.set_defaults(func=cmd_verify)
    s = sub.add_parser("run", help="segment an image through a bundle (Python reference pipeline)")
    s.add_argument("--bundle", required=True)
    s.add_argument("--image", required=True)
    s.add_argument("--text", help="concept prompt, e.g. 'a red car'")
    s.add_argument("--box", action="append", help="exemplar box x0,y0,x1,y1[,pos|neg] in pixels "
                   "(with --point: the interactive box)")
    s.add_argument("--point", action="append", help="interactive point x,y[,pos|neg] in pixels")
    s.add_argument("--threshold", type=float, default=0.5, help="score threshold (default 0.5)")
    s.add_argument("--single-mask", action="store_true", help="interactive: one mask, not the best of 3")
    s.add_argument("--out", required=True, help="output directory")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("verify-video", help="sam3 track (C++) against the official tracker on a clip")
    s.add_argument("--bundle", required=True)
    s.add_argument("--video", help="frame folder or video file (default: the synthetic clip)")
    s.add_argument("--frames", type=int, default=5, help="frames of the synthetic clip (default 5)")
    s.add_argument("--actions", help="action script (docs/video.md; default: boxes on two objects, forward)")
    s.add_argument("--exe", help="path of the sam3 CLI (default: build/sam3)")
    s.add_argument("--json", help="write the comparison as JSON here")
    s.set_defaults(func=cmd_verify_video)

    s = sub.add_parser("bench-video", help="tracking time per frame, C++ runtime vs the official tracker")
    s.add_argument("--bundle", required=True)
    s.add_argument("--frames", type=int, default=3, help="frames of the synthetic clip (default 3)")
    s.add_argument("--threads", type=int, help="threads for both sides (default: every logical CPU)")
    s.add_argument("--exe", help="path of the sam3 CLI (default: build/sam3)")
    s.add_argument("--json", help="write the report here")
    s.add_argument("--markdown", help="replace the video benchmark block in this Markdown file")
    s.set_defaults(func=cmd_bench_video)

    s = sub.add_parser("tune", help="MetaSchedule search for the costliest kernels (database in tuning/)")
    s.add_argument("--config", choices=["tiny", "full"], default="full")
    s.add_argument("--component", action="append",
                   choices=list(__import__("sam3_tvm.model.components", fromlist=["COMPONENTS"]).COMPONENTS),
                   help="component(s) to tune (repeatable; default image_encoder)")
    s.add_argument("--trials", type=int, default=32, help="candidates measured per kernel (default 32)")
    s.add_argument("--top", type=int, default=4, help="kernels per component, heaviest first (default 4)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--db", help="database directory (default: $SAM3_TVM_TUNING_DB or tuning/<mcpu>)")
    s.add_argument("--keep", choices=["faster", "all"], default="faster",
                   help="records written to the database: those faster than the default rules "
                   "(default), or every kernel's best (to study them)")
    s.add_argument("--cpu", help="LLVM CPU to tune the build for, as `compile --cpu` (e.g. x86-64-v3); "
                   "default: this machine's")
    s.add_argument("--kernel", help="tune only kernels whose name contains this, or one of its "
                   "comma-separated parts (e.g. softmax,layer_norm); "
                   "--top of them, heaviest first")
    s.set_defaults(func=cmd_tune)

    s = sub.add_parser("bench", help="time a bundle (C++ runtime) against PyTorch eager, interleaved")
    s.add_argument("--bundle", required=True)
    s.add_argument("--image", default=os.path.join("assets", "sample.png"))
    s.add_argument("--runs", type=int, default=3, help="timed rounds after one warm-up (default 3)")
    s.add_argument("--threads", type=int, help="threads for both sides (default: the bundle's)")
    s.add_argument("--exe", help="path of the sam3-bench driver (default: build/sam3-bench)")
    s.add_argument("--alt-bundle", help="a second build of the same model (e.g. --precision bf16), "
                   "timed as a third side in every round, with its speed-up over --bundle")
    s.add_argument("--json", help="write the full report here")
    s.add_argument("--plot", help="write a PNG bar chart here")
    s.add_argument("--markdown", help="replace the benchmark table in this Markdown file")
    s.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet()
    try:
        return args.func(args)
    except Sam3TvmError as e:
        print(f"sam3-tvm: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
