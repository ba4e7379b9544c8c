"""CUDA bundles through the C++ CLI on a GPU: parity with the official PyTorch pipeline on
the same GPU, and the image path timed against PyTorch (fp32 and bf16 autocast) in one run.

    python bench/gpu_check.py --cli build/sam3 --bench-exe build/sam3-bench \
        --out out/gpu BUNDLE [BUNDLE ...]

Each bundle must be a seeded (`random(seed=N)`) CUDA bundle with its weights present.
Per bundle: `sam3 segment --device cuda` with a text prompt and with two clicks, compared
with `Sam3Processor` / `predict_inst` on the same weights on the same GPU in fp32 (TF32 off),
as tests/python/parity.py compares the CPU CLI: the same kept instances, score and box
differences, mask IoU. Tiny bundles are also compared with the CPU reference. Then, for
full bundles, `sam3-bench --device cuda` and PyTorch (fp32, and bf16 autocast) encode the
image, answer the text prompt and the click, in interleaved rounds; medians.

Writes OUT/gpu_check.json and prints a table. Needs torch with CUDA, pytest (tests/python/parity.py
imports it), the official sam3
package and this repository's compiler/ on the path (not TVM).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "compiler"))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))

# the prompts, IoU and threshold of the CPU CLI's parity tests, so both check the same thing
from parity import POINT_ARGS, POINT_LABELS, POINTS, TEXT, keep_threshold, mask_iou  # noqa: E402

BENCH_POINT = (320.0, 240.0)


def log(*a):
    print(*a, flush=True)


class Official:
    """The official pipeline on a bundle's seeded weights, on `device`."""

    def __init__(self, manifest: dict, vocab: str, device: str):
        import torch

        from sam3_tvm.model import builder

        builder.bpe_vocab_path = lambda: vocab
        seed = int(re.fullmatch(r"random\(seed=(\d+)\)", manifest["weights_source"]).group(1))
        self.model = builder.build_model(manifest["config"]["name"], seed=seed).to(device)
        _move_caches(self.model, device)
        from sam3.model.sam3_image_processor import Sam3Processor

        self.proc = Sam3Processor(self.model, resolution=manifest["config"]["image_size"],
                                  device=device, confidence_threshold=0.0)
        self.device = device
        self.torch = torch

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def text(self, image):
        with self.torch.no_grad():
            st = self.proc.set_image(image)
            ref = self.proc.set_text_prompt(TEXT, st)
        return {k: ref[k].float().cpu() for k in ("scores", "boxes", "masks")}

    def points(self, image):
        with self.torch.no_grad():
            st = self.proc.set_image(image)
            masks, ious, _ = self.model.predict_inst(st, point_coords=POINTS, point_labels=POINT_LABELS,
                                                     multimask_output=True)
        return np.asarray(masks), np.asarray(ious)


def _move_caches(model, device: str) -> None:
    """`.to(device)` moves parameters and buffers, not tensors kept as plain attributes
    (the decoder's boxRPB coordinate caches, built at construction)."""
    import torch

    def moved(v):
        if isinstance(v, torch.Tensor):
            return v.to(device)
        if isinstance(v, tuple):
            return tuple(moved(x) for x in v)
        if isinstance(v, list):
            return [moved(x) for x in v]
        if isinstance(v, dict):
            return {k: moved(x) for k, x in v.items()}
        return v

    for m in model.modules():
        for k, v in list(vars(m).items()):
            if not k.startswith("_") and isinstance(v, (torch.Tensor, tuple, list, dict)):
                setattr(m, k, moved(v))


def instances(out_dir):
    from PIL import Image

    res = json.load(open(os.path.join(out_dir, "result.json")))["instances"]
    masks = [np.asarray(Image.open(os.path.join(out_dir, r["mask_file"]))) > 127 for r in res]
    return res, masks


def compare_text(ref, out_dir, thr) -> dict:
    import torch

    keep = ref["scores"] > thr
    order = torch.argsort(ref["scores"][keep], descending=True)
    scores = ref["scores"][keep][order].numpy()
    boxes = ref["boxes"][keep][order].numpy()
    masks = ref["masks"][keep][order][:, 0].numpy() > 0.5
    res, got = instances(out_dir)
    n = min(len(res), len(scores))
    out = {"kept_ref": int(len(scores)), "kept_cli": len(res)}
    # rank-free: each CLI instance against the reference query with the nearest box (all
    # queries, so a score near the threshold or a swapped rank does not pair wrong ones)
    all_boxes, all_scores = ref["boxes"].numpy(), ref["scores"].numpy()
    d_box, d_score, m_iou = [], [], []
    for r, g in zip(res, got):
        dist = np.max(np.abs(all_boxes - np.array(r["box"])), axis=1)
        j = int(np.argmin(dist))
        d_box.append(float(dist[j]))
        d_score.append(abs(r["score"] - float(all_scores[j])))
        m_iou.append(float(mask_iou(g, ref["masks"][j, 0].numpy() > 0.5)))
    if res:
        out["matched"] = {"box_max_abs_px": max(d_box), "score_max_abs": max(d_score),
                          "mask_iou_min": min(m_iou), "mask_iou_mean": float(np.mean(m_iou))}
    # reference instances the CLI did not return: how far their scores are above the threshold
    cli_boxes = np.array([r["box"] for r in res]).reshape(-1, 4)
    missed = [float(sc - thr) for sc, bx in zip(scores, boxes)
              if not len(cli_boxes) or np.min(np.max(np.abs(cli_boxes - bx), axis=1)) > 0.5]
    out["missed_ref_score_minus_threshold"] = missed
    out["ref_scores_within_1e-3_of_threshold"] = int(np.sum(np.abs(all_scores - thr) < 1e-3))
    out["ref_all"] = {"scores": all_scores.tolist(), "boxes": np.round(all_boxes, 3).tolist()}
    out["cli_all"] = [{"score": r["score"], "box": r["box"]} for r in res]
    if n:
        out["score_max_abs"] = float(np.max(np.abs(np.array([r["score"] for r in res[:n]]) - scores[:n])))
        out["box_max_abs_px"] = float(np.max(np.abs(np.array([r["box"] for r in res[:n]]) - boxes[:n])))
        ious = [float(mask_iou(g, m)) for g, m in zip(got[:n], masks[:n])]
        out["mask_iou_min"] = float(min(ious))
        out["mask_iou_mean"] = float(np.mean(ious))
    return out


def compare_points(masks, ious, out_dir) -> dict:
    res, got = instances(out_dir)
    best = int(np.argmax(ious))
    out = {"instances": len(res)}
    if res:
        out["score_abs"] = abs(res[0]["score"] - float(ious[best]))
        out["mask_iou"] = float(mask_iou(got[0], masks[best] > 0.5))
    return out


def run_cli(cli, bundle, out_dir, *prompt, timeout=300) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run([cli, "segment", "--bundle", bundle, "--device", DEVICE, "--image", IMAGE,
                        "--out", out_dir, *prompt], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"sam3 segment exit {r.returncode}: {r.stderr[-3000:]}")
    return time.perf_counter() - t, r.stderr[-500:]


def parity(bundle: str, cli: str, out: str, refs: dict) -> dict:
    from sam3_tvm.tools.predict import load_image

    name = os.path.basename(bundle.rstrip("/"))
    image = load_image(IMAGE)
    result = {}
    for dev, off in refs.items():
        t0 = time.perf_counter()
        ref = off.text(image)
        masks, ious = off.points(image)
        off.sync()
        result.setdefault("reference_seconds", {})[dev] = round(time.perf_counter() - t0, 2)
        thr = keep_threshold(ref)
        d_text = os.path.join(out, f"{name}-text-{dev}")
        s, _ = run_cli(cli, bundle, d_text, "--text", TEXT, "--threshold", repr(thr))
        result[f"text_vs_{dev}"] = {"threshold": thr, "cli_seconds": round(s, 2), **compare_text(ref, d_text, thr)}
        log(f"  {name} text vs PyTorch {dev}: {result[f'text_vs_{dev}']}")
        d_pt = os.path.join(out, f"{name}-points-{dev}")
        s, _ = run_cli(cli, bundle, d_pt, *[a for p in POINT_ARGS for a in ("--point", p)])
        result[f"points_vs_{dev}"] = {"cli_seconds": round(s, 2), **compare_points(masks, ious, d_pt)}
        log(f"  {name} points vs PyTorch {dev}: {result[f'points_vs_{dev}']}")
    return result


class Bench:
    """sam3-bench --device cuda, commands on stdin (tools/sam3_bench.cpp)."""

    def __init__(self, exe, bundle):
        self.p = subprocess.Popen([exe, "--bundle", bundle, "--image", IMAGE, "--device", DEVICE],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self._read()
        self.last_stages = {}

    def _read(self):
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"sam3-bench exited ({self.p.wait()})")
        return json.loads(line)

    def ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        r = self._read()
        if "error" in r:
            raise RuntimeError(r["error"])
        self.last_stages[cmd.split()[0]] = r.get("stages")
        return r

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(timeout=30)
        except Exception:
            self.p.kill()


def timing(bundles: list[str], exe: str, off: Official, runs: int, budget_s: float, sink: dict) -> dict:
    """Interleaved rounds: each bundle through sam3-bench, then PyTorch fp32, then bf16 autocast.
    One warm-up round; `sink` holds the raw times as they come (saved if the run is cut short)."""
    torch = off.torch
    from sam3_tvm.tools.predict import load_image

    image = load_image(IMAGE)
    benches = {os.path.basename(b.rstrip("/")): Bench(exe, b) for b in bundles}
    rows = {k: {"encode": [], "text": [], "point": []} for k in [*benches, "torch-fp32", "torch-bf16"]}
    sink.update({"all_seconds": rows, "rounds": 0, "warmup": {},
                 "load_seconds": {k: b.ready.get("load_seconds") for k, b in benches.items()}})
    states = {}

    def torch_round(bf16):
        t = {}
        with torch.inference_mode(), torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bf16):
            off.sync(); t0 = time.perf_counter()
            states[bf16] = off.proc.set_image(image)
            off.sync(); t["encode"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            r = off.proc.set_text_prompt(TEXT, states[bf16])
            _ = r["scores"].cpu()
            off.sync(); t["text"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            off.model.predict_inst(states[bf16], point_coords=np.array([BENCH_POINT]),
                                   point_labels=np.array([1]), multimask_output=True)
            off.sync(); t["point"] = time.perf_counter() - t0
        return t

    start = time.perf_counter()
    done = 0
    for r in range(runs + 1):  # one warm-up round
        for k, b in benches.items():
            vals = {c: b.ask(c if c == "encode" else (f"text {TEXT}" if c == "text" else
                                                     f"point {BENCH_POINT[0]},{BENCH_POINT[1]}"))["seconds"]
                    for c in ("encode", "text", "point")}
            if r == 0:
                sink["warmup"][k] = vals
            for c, v in vals.items():
                if r >= 1:
                    rows[k][c].append(v)
            sink.setdefault("stages", {})[k] = b.last_stages
        for bf16 in (False, True):
            vals = torch_round(bf16)
            k = "torch-bf16" if bf16 else "torch-fp32"
            if r == 0:
                sink["warmup"][k] = vals
            for c, v in vals.items():
                if r >= 1:
                    rows[k][c].append(v)
        if r >= 1:
            done += 1
            sink["rounds"] = done
        if time.perf_counter() - start > budget_s and done >= 1:
            break
    loads = {k: b.ready.get("load_seconds") for k, b in benches.items()}
    for b in benches.values():
        b.close()
    med = {k: {c: statistics.median(v) for c, v in row.items() if v} for k, row in rows.items()}
    return {"rounds": done, "median_seconds": med, "all_seconds": rows, "load_seconds": loads,
            "torch_max_memory_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else None}


def main():
    global IMAGE, DEVICE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--cli", required=True)
    ap.add_argument("--bench-exe", required=True)
    ap.add_argument("--image", default=os.path.join(ROOT, "assets", "sample.png"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bench-budget", type=float, default=120.0, help="seconds of timed rounds at most")
    ap.add_argument("--skip-parity", action="store_true")
    ap.add_argument("--device", default="cuda", help="cuda; cpu for a dry run of this script on CPU bundles")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--time-tiny", action="store_true", help="time tiny bundles too (full only by default)")
    args = ap.parse_args()
    IMAGE, DEVICE = args.image, args.device
    os.makedirs(args.out, exist_ok=True)
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 reference: no TF32 anywhere
    torch.backends.cudnn.allow_tf32 = False
    report = {"gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "none (cpu dry run)", "torch": torch.__version__,
              "cuda": torch.version.cuda, "bundles": {}}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        report["nvidia_smi"] = smi.stdout.strip()
    except Exception as e:  # noqa: BLE001
        report["nvidia_smi"] = repr(e)
    path = os.path.join(args.out, "gpu_check.json")

    def save():
        json.dump(report, open(path, "w"), indent=1, default=float)

    def stopped(signum, frame):  # `timeout` ended us: keep what was measured
        report["stopped_by_signal"] = signum
        save()
        os._exit(124)

    import signal

    signal.signal(signal.SIGTERM, stopped)

    by_model: dict[tuple, list[str]] = {}
    manifests = {}
    for b in args.bundles:
        m = json.load(open(os.path.join(b, "manifest.json")))
        manifests[b] = m
        by_model.setdefault((m["config"]["name"], m["weights_source"]), []).append(b)
    for (config, _), bundles in by_model.items():
        m = manifests[bundles[0]]
        vocab = os.path.join(bundles[0], m["tokenizer"]["vocab"])
        try:
            t0 = time.perf_counter()
            refs = {DEVICE: Official(m, vocab, DEVICE)}
            if config == "tiny" and DEVICE != "cpu":
                refs["cpu"] = Official(m, vocab, "cpu")
            log(f"{config}: reference model(s) built in {time.perf_counter() - t0:.1f} s")
        except Exception:
            report.setdefault("errors", []).append(f"{config} reference: {traceback.format_exc()[-3000:]}")
            log(report["errors"][-1])
            save()
            continue
        if not args.skip_parity:
            for b in bundles:
                key = os.path.basename(b.rstrip("/"))
                try:
                    report["bundles"][key] = {"precision": manifests[b]["target"]["precision"],
                                              **parity(b, args.cli, args.out, refs)}
                except Exception:
                    report["bundles"][key] = {"error": traceback.format_exc()[-3000:]}
                    log(f"  {key}: {report['bundles'][key]['error']}")
                save()
        if (config == "full" or args.time_tiny) and not args.skip_timing:
            torch.backends.cuda.matmul.allow_tf32 = False  # PyTorch's defaults for the timing
            torch.backends.cudnn.allow_tf32 = True
            try:
                sink = report.setdefault("timing", {}).setdefault(config, {})
                sink.update(timing(bundles, args.bench_exe, refs[DEVICE], args.runs, args.bench_budget, sink))
            except Exception:
                report["timing_error"] = traceback.format_exc()[-3000:]
                log(report["timing_error"])
            save()
        del refs
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    save()
    log(json.dumps({k: v for k, v in report.items() if k != "timing"}, indent=1, default=float)[:6000])
    for config, tm in report.get("timing", {}).items():
        med = tm.get("median_seconds", {})
        log(f"timing {config}, medians of {tm['rounds']} rounds (ms):")
        log(f"{'':24s} {'encode':>9s} {'text':>9s} {'point':>9s} {'enc+text':>9s}")
        for k, row in med.items():
            if row:
                log(f"{k:24s} " + " ".join(f"{row.get(c, float('nan')) * 1e3:9.1f}" for c in ("encode", "text", "point"))
                    + f" {(row.get('encode', 0) + row.get('text', 0)) * 1e3:9.1f}")


IMAGE, DEVICE = "", "cuda"

if __name__ == "__main__":
    main()
