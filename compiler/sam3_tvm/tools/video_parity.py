"""`sam3 track` (C++) against the official tracker (video_reference.py) on one clip and
action script: the comparison the video tests assert, `sam3-tvm verify-video` and
`sam3-tvm bench-video`.

Acceptance (docs/video.md): per frame and object the same present/absent decision,
mask IoU >= 0.999, |score difference| <= 1e-4, boxes within 1 px.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from sam3_tvm.errors import Sam3TvmError

MIN_IOU, MAX_SCORE_DIFF, MAX_BOX_DIFF = 0.999, 1e-4, 1.0


def compare(result: dict, ref: dict) -> dict:
    """result.json of `sam3 track` vs run_actions' {frame: {obj_id: output}}."""
    from pycocotools import mask as mask_util

    objs = {o["id"]: o for o in result["objects"]}
    rows, problems = [], []
    for f in sorted(ref):
        row = {"frame": f, "objects": 0, "min_iou": 1.0, "max_score_diff": 0.0, "max_box_diff": 0.0}
        for oid, r in ref[f].items():
            o = objs.get(oid)
            seg = o["segmentations"][f] if o else None
            if (seg is not None) != r["present"]:
                problems.append(f"frame {f} object {oid}: present {seg is not None}, official {r['present']}")
                continue
            if seg is None:
                continue
            got = mask_util.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)
            union = (got | r["mask"]).sum()
            iou = float((got & r["mask"]).sum() / union) if union else 1.0
            ds = abs(o["scores"][f] - r["score"])
            x0, y0, x1, y1 = r["box"]
            db = float(np.abs(np.array(o["bboxes"][f]) - [x0, y0, x1 - x0, y1 - y0]).max())
            row["objects"] += 1
            row["min_iou"] = min(row["min_iou"], iou)
            row["max_score_diff"] = max(row["max_score_diff"], ds)
            row["max_box_diff"] = max(row["max_box_diff"], db)
            if iou < MIN_IOU or ds > MAX_SCORE_DIFF or db > MAX_BOX_DIFF:
                problems.append(f"frame {f} object {oid}: IoU {iou:.6f}, score diff {ds:.2e}, box diff {db}")
        rows.append(row)
    for o in result["objects"]:  # frames the official run did not reach must be empty
        for f, seg in enumerate(o["segmentations"]):
            if f not in ref and seg is not None:
                problems.append(f"frame {f} object {o['id']}: tracked here, not by the official run")
    return {"rows": rows, "problems": problems, "passed": not problems,
            "min_iou": min((r["min_iou"] for r in rows), default=1.0),
            "max_score_diff": max((r["max_score_diff"] for r in rows), default=0.0),
            "max_box_diff": max((r["max_box_diff"] for r in rows), default=0.0)}


def run_cpp(exe: str, bundle: str, video: str, actions: list[dict], out_dir: str,
            threads: int | None = None, extra: list[str] | None = None) -> tuple[dict, dict]:
    """Runs `sam3 track --actions` (plus `extra` arguments); returns (result.json, --verbose
    report)."""
    path = os.path.join(out_dir, "actions.json")
    with open(path, "w") as f:
        json.dump(actions, f)
    env = dict(os.environ)
    if threads:
        env["TVM_NUM_THREADS"] = str(threads)
    cmd = [exe, "track", "--bundle", bundle, "--video", video, "--actions", path,
           "--out", os.path.join(out_dir, "cpp"), "--verbose"] + list(extra or [])
    timer = ["/usr/bin/time", "-f", "maxrss_kb %M"] if os.path.isfile("/usr/bin/time") else []
    t0 = time.time()
    r = subprocess.run(timer + cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise Sam3TvmError(f"sam3 track failed: {r.stderr.strip()}")
    report = {"seconds": time.time() - t0, "stages": {}, "frame_seconds": [], "peak_rss_bytes": None}
    for line in r.stderr.splitlines():
        if line.startswith("maxrss_kb "):
            report["peak_rss_bytes"] = int(line.split()[1]) * 1024
        parts = line.split()
        if len(parts) >= 3 and parts[-1] == "ms":
            report["stages"][parts[0]] = float(parts[-2]) / 1e3
        if parts[:1] == ["prompt_seconds"]:
            report["prompt_seconds"] = float(parts[1])
        if parts[:1] == ["frame_seconds"]:
            report["frame_seconds"] = [float(v) for v in parts[1:]]
    with open(os.path.join(out_dir, "cpp", "result.json")) as f:
        return json.load(f), report


def run_official(model, video: str, actions: list[dict]) -> tuple[dict, dict]:
    """The official tracker on the same actions; per-frame wall times and the part
    spent in the image backbone."""
    from sam3_tvm.tools.video_reference import run_actions

    trk = model.inst_interactive_predictor.model
    spent = {"backbone": 0.0}
    forward_image = type(trk).forward_image

    def timed(self, img):
        t = time.time()
        out = forward_image(self, img)
        spent["backbone"] += time.time() - t
        return out

    trk.forward_image = timed.__get__(trk)
    frame_seconds = []
    last = [time.time()]

    def on_frame(_f):
        now = time.time()
        frame_seconds.append(now - last[0])
        last[0] = now

    t0 = time.time()
    try:
        ref = run_actions(model, video, actions, on_frame=on_frame,
                          on_propagate=lambda: last.__setitem__(0, time.time()))
    finally:
        del trk.forward_image
    return ref, {"seconds": time.time() - t0, "frame_seconds": frame_seconds, "backbone": spent["backbone"]}


def verify_video(bundle: str, video: str, actions: list[dict], exe: str, json_path: str | None = None,
                 checkpoint: str | None = None) -> dict:
    from sam3_tvm.bundle.writer import load_manifest
    from sam3_tvm.model.builder import build_model

    man = load_manifest(bundle)
    src = man["weights_source"]
    seed = int(src[len("random(seed="):-1]) if src.startswith("random(") else 0
    if checkpoint is None and not src.startswith("random("):
        checkpoint = src
    with tempfile.TemporaryDirectory() as tmp:
        result, cpp = run_cpp(exe, bundle, video, actions, tmp)
        model = build_model(man["config"]["name"], checkpoint=checkpoint, seed=seed)
        ref, official = run_official(model, video, actions)
    summary = compare(result, ref)
    summary.update(bundle=bundle, video=video, actions=actions, cpp=cpp, official=official)
    print_table(summary)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


def print_table(s: dict, file=sys.stdout) -> None:
    print(f"{'frame':>5} {'objects':>7} {'min IoU':>9} {'max |d score|':>14} {'max box diff':>13}", file=file)
    for r in s["rows"]:
        print(f"{r['frame']:>5} {r['objects']:>7} {r['min_iou']:>9.6f} {r['max_score_diff']:>14.2e} "
              f"{r['max_box_diff']:>13.1f}", file=file)
    for p in s["problems"]:
        print("  MISMATCH " + p, file=file)
    print(f"worst: IoU {s['min_iou']:.6f}, score diff {s['max_score_diff']:.2e}, box diff "
          f"{s['max_box_diff']:.1f} px -> {'ok' if s['passed'] else 'FAIL'}", file=file)
