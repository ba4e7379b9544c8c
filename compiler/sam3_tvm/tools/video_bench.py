"""`sam3-tvm bench-video`: tracking time per frame, the C++ runtime (`sam3 track`) against
the official PyTorch tracker (video_reference.py), same CPU and threads, interleaved
(C++ 1 object, PyTorch 1 object, C++ 3 objects, PyTorch 3 objects), one run each.

Per frame after the prompted first frame: the whole frame (decode, image encoder,
tracker, output) and the tracker part alone (the frame minus its image encoding). The
clip is the synthetic one (tools/synthetic_clip.py); every object gets a box on frame 0.
The two sides' results are also compared (tools/video_parity.py).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

from sam3_tvm.progress import step

BEGIN, END = "<!-- video-bench:begin -->", "<!-- video-bench:end -->"
CONCEPT_OBJECTS = 3
# Random full-size weights score every query about 0.244 on the clip: 0.2441 keeps about
# 15 of 200 (keeping all 200 makes the official mask NMS allocate 26 GB).
CONCEPT_OPTIONS = {"max_num_objects": CONCEPT_OBJECTS, "hotstart_delay": 0}
RANDOM_THRESHOLDS = {"score_threshold_detection": 0.2441, "new_det_thresh": 0.2441}
CONCEPT_TEXT = "a blue disc"


def _mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def _concept_row(bundle, exe, clip, frames, threads, seed, checkpoint, tmp):
    from sam3_tvm.bundle.writer import load_manifest
    from sam3_tvm.tools.concept_reference import ConceptSession, build_concept_model
    from sam3_tvm.tools.video_parity import run_cpp

    man_cfg = load_manifest(bundle)
    actions = [{"op": "add_prompt", "frame": 0, "text": CONCEPT_TEXT}, {"op": "propagate", "direction": "forward"}]
    options = dict(CONCEPT_OPTIONS, **({} if checkpoint else RANDOM_THRESHOLDS))
    extra = []
    for k, v in options.items():
        extra += ["--set", f"{k}={v}"]
    out = os.path.join(tmp, "concept")
    os.makedirs(out)
    with step(f"C++ runtime, concept tracking, {frames} frames"):
        _, cpp = run_cpp(exe, bundle, clip, actions, out, threads, extra)
    with step("build the official concept-tracking model"):
        model = build_concept_model(man_cfg["config"]["name"], seed=seed, checkpoint=checkpoint)
    stamps = []
    with step(f"PyTorch (official Sam3VideoInference), concept tracking, {frames} frames"):
        with ConceptSession(model, clip, options, on_frame=lambda f: stamps.append(time.time())) as session:
            t0 = time.time()
            session.apply(actions[0])
            t_prompt = time.time()
            session.apply(actions[1])
            ref = session.result()
    # per frame: (the prompt + the propagation) / frames, each frame's image encoded once on
    # both sides. Per-frame stamps would not compare: the official encodes the next frame's
    # image ahead (the prompt's call encodes frames 0 and 1), the runtime frame by frame.
    steps = [b - a for a, b in zip([t_prompt] + stamps, stamps)]
    tracked = max((len(o) for o in ref.frames.values()), default=0)
    cpp_total = cpp.get("prompt_seconds", 0.0) + sum(cpp["frame_seconds"])
    return {"cpp_frame_s": cpp_total / frames, "torch_frame_s": (stamps[-1] - t0) / frames,
            "objects": tracked, "options": options, "cpp": cpp, "torch_prompt_s": t_prompt - t0,
            "torch_frame_seconds": steps}


def bench_video(bundle: str, exe: str, frames: int = 3, objects=(1, 3), threads: int | None = None,
                json_path: str | None = None, markdown_path: str | None = None, concept: bool = True) -> dict:
    import torch

    from sam3_tvm.bundle.writer import load_manifest
    from sam3_tvm.lowering.targets import host_target
    from sam3_tvm.model.builder import build_model
    from sam3_tvm.tools.bench import _machine, _versions
    from sam3_tvm.tools.synthetic_clip import object_boxes, write_clip
    from sam3_tvm.tools.video_parity import compare, run_cpp, run_official

    man = load_manifest(bundle)
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    src = man["weights_source"]
    seed = int(src[len("random(seed="):-1]) if src.startswith("random(") else 0
    with step(f"build the official {man['config']['name']} model"):
        model = build_model(man["config"]["name"], checkpoint=None if src.startswith("random(") else src,
                            seed=seed)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(os.path.join(tmp, "clip"), frames, 640, 480)
        for k in objects:
            boxes = object_boxes(0, 640, 480)[:k]
            actions = [{"op": "add_points", "frame": 0, "obj_id": i + 1, "box": b} for i, b in enumerate(boxes)]
            actions.append({"op": "propagate", "direction": "forward"})
            out = os.path.join(tmp, f"cpp{k}")
            os.makedirs(out)
            with step(f"C++ runtime, {k} object(s), {frames} frames"):
                result, cpp = run_cpp(exe, bundle, clip, actions, out, threads)
            with step(f"PyTorch (official tracker), {k} object(s), {frames} frames"):
                ref, official = run_official(model, clip, actions)
            st = cpp["stages"]
            encode = sum(st.get(s, 0.0) for s in ("decode", "preprocess", "image_encoder")) / frames
            cpp_frame = _mean(cpp["frame_seconds"][1:])
            off_frame = _mean(official["frame_seconds"][1:])
            off_backbone = official["backbone"] / frames
            parity = compare(result, ref)
            rows[k] = {"cpp_frame_s": cpp_frame, "torch_frame_s": off_frame,
                       "cpp_tracker_s": cpp_frame - encode, "torch_tracker_s": off_frame - off_backbone,
                       "cpp": cpp, "torch": official,
                       "parity": {k2: parity[k2] for k2 in ("passed", "min_iou", "max_score_diff")}}
        if concept:
            rows["concept"] = _concept_row(bundle, exe, clip, frames, threads, seed,
                                           None if src.startswith("random(") else src, tmp)
    target = host_target()
    report = {"bundle": bundle, "config": man["config"]["name"], "frames": frames,
              "machine": {**_machine(threads), "mcpu": str(target.attrs.get("mcpu", ""))},
              "versions": _versions(), "rows": rows,
              "command": f"sam3-tvm bench-video --bundle {bundle} --frames {frames}",
              "date": time.strftime("%Y-%m-%d")}
    print_table(report)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=1)
    if markdown_path:
        write_markdown(report, markdown_path)
    return report


def _table(report: dict) -> list[str]:
    lines = ["| objects | C++ per frame | PyTorch per frame | speed-up | C++ tracker | PyTorch tracker | "
             "speed-up | parity (min IoU, max score diff) |", "|---|---|---|---|---|---|---|---|"]
    for k, r in report["rows"].items():
        if k == "concept":
            continue
        p = r["parity"]
        lines.append(f"| {k} | {r['cpp_frame_s']:.2f} s | {r['torch_frame_s']:.2f} s | "
                     f"{r['torch_frame_s'] / r['cpp_frame_s']:.2f}x | {r['cpp_tracker_s']:.2f} s | "
                     f"{r['torch_tracker_s']:.2f} s | {r['torch_tracker_s'] / r['cpp_tracker_s']:.2f}x | "
                     f"{'ok' if p['passed'] else 'FAIL'} ({p['min_iou']:.4f}, {p['max_score_diff']:.1e}) |")
    c = report["rows"].get("concept")
    if c:
        lines.append(f"| concept: text prompt, {c['objects']} tracked (prompt + propagation, per frame) | "
                     f"{c['cpp_frame_s']:.2f} s | "
                     f"{c['torch_frame_s']:.2f} s | {c['torch_frame_s'] / c['cpp_frame_s']:.2f}x | | | | "
                     "(parity: make test) |")
    return lines


def print_table(report: dict) -> None:
    print("\n".join(_table(report)))


def write_markdown(report: dict, path: str) -> None:
    m = report["machine"]
    lines = [BEGIN, "",
             f"Video tracking, config `{report['config']}` (random weights), measured {report['date']} on "
             f"{m['cpu']} (`mcpu={m['mcpu']}`), {m['threads']} threads, {m['os']}; "
             f"{report['frames']} frames of the synthetic 640x480 clip, a box per object on frame 0, "
             "forward; times per frame after the first (the tracker column: the frame minus its image "
             "encoding). One run per side, interleaved. Command: "
             f"`{report['command']}`."]
    c = report["rows"].get("concept")
    if c:
        lines[-1] += (f" Concept row: a text prompt on frame 0, then forward, official Sam3VideoInference "
                      f"on the other side, same options ({c['options']}); (prompt + propagation) / frames.")
    lines += [""] + _table(report) + ["", END]
    from sam3_tvm.tools.markdown import replace_block

    replace_block(path, BEGIN, END, "\n".join(lines), heading="## Video tracking")
