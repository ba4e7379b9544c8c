"""Golden cases for tests/cpp/test_video_postprocess.cpp, from the official code.

    .venv/bin/python tests/cpp/data/gen_video_postprocess_cases.py   # rewrites video_postprocess_cases.json

`build_cases()` returns the goldens in memory; tests/python/test_golden_video_postprocess.py
compares them with the committed file so it cannot go stale.

What each section holds, and where its reference comes from:

* "resize": `F.interpolate(x[None, None], (h, w), mode="bilinear", align_corners=False,
  antialias=True)` on float32 (sam3/video_postprocess.h resize_bilinear_aa). Inputs are
  not stored: `hash` is gen_postprocess_cases.hash_map (values in [-10, 10)), `binary` is
  hash_map > 0 as 0/1, `disks` is `inside` within any of the integer disks and `outside`
  elsewhere; the C++ test rebuilds them bit for bit. Outputs of at most FULL_MAX values are
  stored whole; bigger ones as values at SAMPLES positions plus left-to-right double sums
  of every value and of every square. torch gets one-pixel-wide outputs of another height
  wrong (every row a copy of row 0, see _interp_aa): their reference is torch's two
  passes run separately, and "torch_direct_repeats_row0" records that the direct call
  still shows the bug. "torch_kernel" says which torch CPU build made the
  values: "fma" (AVX2 / AVX512, the kernels resize_bilinear_aa follows bit for bit) or
  "default" (ATEN_CPU_CAPABILITY=default, no FMA: within ~1e-6 of the others).
* "components": `sam3.perflib.connected_components.connected_components` (skimage.measure.label,
  8-connected) on a (1, 1, H, W) uint8 mask: the area of each pixel's component.
* "fill_holes": `sam3.model.sam3_tracker_utils.fill_holes_in_mask_scores(mask, max_area,
  fill_holes=True, remove_sprinkles=True)` on a (1, 1, H, W) float32 tensor (never an
  empty batch: the official CPU connected components crash on one). Logits are stored
  (from a short set of values) or made by hash_map(h * w, seed) + bias; the output is the
  input with the pixels of "to_pos" set to 0.1f and those of "to_neg" set to -0.1f.
* "non_overlap": `Sam3TrackerBase._apply_non_overlapping_constraints(None, t)` on (N, 1, H, W).
* "object_wise": `Sam3TrackerPredictor._apply_object_wise_non_overlapping_constraints(
  masks (N, 1, H, W) bool, scores (N, 1), background_value=0) > 0`, called on a bare
  `Sam3TrackerPredictor.__new__` instance (it reaches the base method through super()).
* "bf16": `torch.from_numpy(float32).to(torch.bfloat16)` bit patterns (null for NaN
  inputs: torch's vectorised AVX2/AVX512 conversion writes 0xFFFF for every NaN, its scalar
  and DEFAULT conversion 0x7FC0; the test only asks for a NaN); "bf16_to_float_exceptions":
  the bf16 patterns whose torch `.float()` bits are not `b << 16` (all 65536 checked).
* "select_cond": `sam3.model.sam3_tracker_utils.select_closest_cond_frames(frame_idx,
  {t: t for t in cond (ascending)}, max_cond_frame_num, keep_first_cond_frame)`: the
  selected frames in the returned dict's order and the unselected ones.
  "negative_remain" marks the cases where the official `[:num_remain]` slice gets a
  negative bound (keep_first with max 2 and distinct first / before / after frames).
* "joint_score": the video detector's score logit, `inverse_sigmoid(sigmoid(class) *
  sigmoid(presence)).clamp(-10, 10)` (sam3_image.py, supervise_joint_box_scores).
* "nms": `sam3.perflib.nms.nms_masks(probs, masks, prob_threshold, iou_threshold)` keep flags.
* "planner": `Sam3VideoBase._associate_det_trk` then `_process_hotstart` over 12 frames
  (forward and reverse, three threshold sets), the hotstart metadata carried over; masks
  are rectangles on 16x16 planes (+2 inside, -2 outside).
* "occlusion": `Sam3VideoBase._suppress_overlapping_based_on_recent_occlusion` over 10
  frames (forward and reverse, thresholds 0.7 and 0.3): the suppressed ids and the
  last-occluded metadata after each frame.
* "shrink": `Sam3TrackerPredictor._suppress_object_pw_area_shrinkage` on (N, 1, H, W) logits.
* "frame_filter": `Sam3TrackerBase.frame_filter(self, output_dict, track_in_reverse,
  frame_idx, num_frames, r)` with `self` a SimpleNamespace(max_obj_ptrs_in_encoder,
  mf_threshold) and `output_dict["non_cond_frame_outputs"]` entries holding a 0-d float32
  "eff_iou_score" (or, for null, no "eff_iou_score" key).

Floats are written as the shortest decimal that reads back as the same float32.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
FILE = "video_postprocess_cases.json"

FULL_MAX = 1024  # resize outputs up to this many values are stored whole
SAMPLES = 384    # else this many sampled values (+ the double sums)


# ---------------------------------------------------------------- helpers

def hash_map(n: int, seed: int) -> np.ndarray:
    """n float32 values in [-10, 10): integer hash, then IEEE double ops that C++ repeats bit for bit
    (the same function as gen_postprocess_cases.hash_map)."""
    k = np.arange(n, dtype=np.uint64) + np.uint64(seed)
    v = (k * np.uint64(2654435761)) % np.uint64(2**32)
    return (v.astype(np.float64) / 2.0**32 * 20.0 - 10.0).astype(np.float32)


def floats(a) -> list:
    a = np.asarray(a, np.float32).ravel()
    out = [float(str(v)) for v in a]
    assert np.array_equal(np.array(out, np.float64).astype(np.float32), a)
    return out


def f32(v) -> float:
    return floats([v])[0]


def bits(mask) -> str:
    return "".join("1" if v else "0" for v in np.asarray(mask).ravel())


def seq_sum(a) -> float:
    """Left-to-right double sum (np.sum is pairwise; C++ adds in order)."""
    return float(np.cumsum(np.asarray(a, np.float64).ravel())[-1])


def _official():
    """Make `sam3` importable (its sam3.model.edt imports Triton, absent here)."""
    import torch  # noqa: F401  (before sam3)

    compiler = os.path.join(ROOT, "compiler")
    if compiler not in sys.path:
        sys.path.insert(0, compiler)
    try:
        from sam3_tvm.model import shims
    except ImportError:
        if importlib.util.find_spec("triton") is None and "sam3.model.edt" not in sys.modules:
            sys.modules["sam3.model.edt"] = types.ModuleType("sam3.model.edt")
            sys.modules["sam3.model.edt"].edt_triton = None
    else:
        shims.apply()


def torch_kernel() -> str:
    import torch

    return "fma" if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") else "default"


# ---------------------------------------------------------------- resize_bilinear_aa

def make_input(spec: dict, h: int, w: int) -> np.ndarray:
    kind = spec["kind"]
    if kind == "hash":
        return hash_map(h * w, spec["seed"]).reshape(h, w)
    if kind == "binary":
        return (hash_map(h * w, spec["seed"]) > 0).astype(np.float32).reshape(h, w)
    assert kind == "disks"
    yy, xx = np.mgrid[0:h, 0:w].astype(np.int64)
    inside = np.zeros((h, w), bool)
    for cy, cx, r in spec["disks"]:
        inside |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return np.where(inside, np.float32(spec["inside"]), np.float32(spec["outside"])).astype(np.float32)


def _interp_aa(x: np.ndarray, h: int, w: int, workaround: bool = True) -> np.ndarray:
    """torch's antialiased bilinear resize of one plane.

    torch's CPU kernel gets one shape wrong: when the output is one pixel wide and the
    height changes, its vertical pass (interpolate_aa_single_dim_zero_strides, which
    reads the taps of the first output row only) runs over the whole column at once, so
    every output row is a copy of row 0. With `workaround`, such a resize is done as torch
    does it for any other width, pass by pass: the horizontal pass alone (to width 1),
    then the vertical pass alone on that column doubled to width 2, keeping column 0."""
    import torch
    import torch.nn.functional as F

    def interp(a, size):
        t = torch.from_numpy(np.ascontiguousarray(a, np.float32))[None, None]
        return F.interpolate(t, size, mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()

    if not (workaround and w == 1 and h != x.shape[0]):
        return interp(x, (h, w))
    col = interp(x, (x.shape[0], 1))
    return interp(np.repeat(col, 2, axis=1), (h, 2))[:, :1]


MASK_DISKS = {"kind": "disks", "disks": [[100, 120, 60], [200, 40, 25], [20, 270, 90]], "inside": 10.0,
              "outside": -10.0}
VIDEO_DISKS = {"kind": "disks", "disks": [[500, 900, 300], [100, 1800, 150], [1000, 50, 200]], "inside": 1.0,
               "outside": 0.0}
SMALL_DISKS = {"kind": "disks", "disks": [[3, 4, 2], [10, 1, 3]], "inside": 10.0, "outside": -10.0}

# (src_h, src_w, dst_h, dst_w, input): the tracker's sizes, then odd, non-square and
# extreme ones. Taps per output: 2-3 upsampling, about 2 * scale + 1 downsampling.
RESIZES = [
    (288, 288, 1152, 1152, {"kind": "hash", "seed": 11}),   # up x4 (mask for memory)
    (288, 288, 1152, 1152, MASK_DISKS),
    (1008, 1008, 1152, 1152, {"kind": "hash", "seed": 12}),  # up 8/7 (full model S -> MI)
    (1008, 1008, 1152, 1152, {"kind": "binary", "seed": 13}),
    (1152, 1152, 288, 288, {"kind": "hash", "seed": 14}),   # down x4: 9 taps
    (1008, 1008, 288, 288, {"kind": "binary", "seed": 15}),  # down x3.5: 8 taps
    (1080, 1920, 1152, 1152, VIDEO_DISKS),                  # a 1080p mask: H up, W down
    (480, 640, 1152, 1152, {"kind": "binary", "seed": 16}),
    (240, 320, 288, 288, {"kind": "hash", "seed": 17}),      # H up, W down
    (320, 240, 288, 288, {"kind": "hash", "seed": 18}),      # H down, W up
    (23, 37, 96, 96, {"kind": "hash", "seed": 19}),
    (37, 23, 96, 96, {"kind": "hash", "seed": 20}),
    (96, 96, 17, 31, {"kind": "hash", "seed": 21}),
    (96, 96, 31, 17, {"kind": "binary", "seed": 22}),
    (5, 7, 3, 2, {"kind": "hash", "seed": 23}),
    (1, 1, 4, 6, {"kind": "hash", "seed": 24}),
    (4, 6, 1, 1, {"kind": "hash", "seed": 25}),
    (9, 1, 3, 1, {"kind": "hash", "seed": 26}),            # width 1: see _interp_aa
    (8, 5, 3, 1, {"kind": "hash", "seed": 35}),
    (2, 1, 5, 1, {"kind": "hash", "seed": 36}),
    (12, 5, 12, 2, {"kind": "hash", "seed": 27}),            # H unchanged: W pass only
    (5, 12, 2, 12, {"kind": "hash", "seed": 28}),            # W unchanged: H pass only
    (8, 8, 8, 8, {"kind": "hash", "seed": 29}),              # same size: a copy
    (6, 6, 7, 5, {"kind": "hash", "seed": 30}),
    (50, 3, 3, 50, {"kind": "hash", "seed": 31}),
    (64, 64, 3, 3, {"kind": "hash", "seed": 32}),            # 22-43 taps
    (30, 30, 29, 31, {"kind": "hash", "seed": 33}),
    (3, 200, 2, 7, {"kind": "hash", "seed": 34}),            # up to 58 taps
    (13, 11, 13, 11, SMALL_DISKS),
    (13, 11, 5, 4, SMALL_DISKS),
]


def resize_cases(rng) -> list:
    cases = []
    for sh, sw, dh, dw, spec in RESIZES:
        x = make_input(spec, sh, sw)
        y = _interp_aa(x, dh, dw).ravel()
        c = {"src_h": sh, "src_w": sw, "dst_h": dh, "dst_w": dw, "input": spec}
        if dw == 1 and dh != sh:  # torch's width-1 bug: the direct call repeats row 0
            direct = _interp_aa(x, dh, dw, workaround=False).ravel()
            c["torch_direct_repeats_row0"] = bool(np.all(direct == direct[0]) and not np.all(y == y[0]))
        if y.size <= FULL_MAX:
            c["output"] = floats(y)
        else:
            idx = np.unique(np.concatenate([np.linspace(0, y.size - 1, SAMPLES // 2).astype(np.int64),
                                            rng.integers(0, y.size, SAMPLES // 2)]))
            c.update({"sample_index": idx.tolist(), "sample_value": floats(y[idx]),
                      "sum": seq_sum(y), "sum_sq": seq_sum(y.astype(np.float64) ** 2)})
        cases.append(c)
    return cases


# ---------------------------------------------------------------- component areas

def official_areas(mask: np.ndarray) -> np.ndarray:
    import torch
    from sam3.perflib.connected_components import connected_components

    _, counts = connected_components(torch.from_numpy(np.asarray(mask, np.uint8))[None, None])
    return counts[0, 0].numpy()


def component_cases(rng) -> list:
    cases = []

    def add(mask):
        mask = np.asarray(mask, bool)
        areas = official_areas(mask)
        assert np.all((areas > 0) == mask)
        cases.append({"h": mask.shape[0], "w": mask.shape[1], "mask": bits(mask),
                      "areas": [int(a) for a in areas.ravel()]})

    add(np.ones((1, 1)))
    add(np.zeros((1, 1)))
    add(np.zeros((4, 5)))
    add(np.ones((3, 7)))
    add(rng.random((1, 9)) < 0.6)
    add(rng.random((9, 1)) < 0.6)
    checker = (np.add.outer(np.arange(6), np.arange(7)) % 2) == 0  # one component through corners
    add(checker)
    add(~checker)
    diag = np.zeros((8, 8), bool)
    diag[np.arange(8), np.arange(8)] = True
    diag[np.arange(7), 7 - np.arange(7)] = True
    add(diag)
    for p, (h, w) in zip((0.3, 0.45, 0.6, 0.75), ((13, 17), (32, 32), (21, 9), (17, 24))):
        add(rng.random((h, w)) < p)
    return cases


# ---------------------------------------------------------------- fill holes

FG = np.array([0.5, 1.0, 3.25, 40.0], np.float32)
BG = np.array([0.0, -0.5, -2.0, -40.0], np.float32)


def official_fill(logits: np.ndarray, max_area: int) -> np.ndarray:
    import torch
    from sam3.model.sam3_tracker_utils import fill_holes_in_mask_scores

    t = torch.from_numpy(np.ascontiguousarray(logits, np.float32))[None, None]
    return fill_holes_in_mask_scores(t, max_area, fill_holes=True, remove_sprinkles=True)[0, 0].numpy()


def _canvas(rng, h, w, fg_boxes=(), bg_boxes=(), base="fg"):
    """Logits from the short sets FG / BG: the base everywhere, then boxes (y0, x0, y1, x1)
    painted in order, fg ones first."""
    x = rng.choice(FG if base == "fg" else BG, (h, w))
    for y0, x0, y1, x1 in fg_boxes:
        x[y0:y1, x0:x1] = rng.choice(FG, (y1 - y0, x1 - x0))
    for y0, x0, y1, x1 in bg_boxes:
        x[y0:y1, x0:x1] = rng.choice(BG, (y1 - y0, x1 - x0))
    return x.astype(np.float32)


def fill_cases(rng) -> list:
    cases = []

    def add(max_area, logits=None, hash_spec=None, h=None, w=None, note=""):
        if logits is None:
            x = (hash_map(h * w, hash_spec["seed"]) + np.float32(hash_spec["bias"])).reshape(h, w)
        else:
            x = np.asarray(logits, np.float32)
            h, w = x.shape
        out = official_fill(x, max_area)
        changed = out != x
        to_pos = np.flatnonzero(changed & (out == np.float32(0.1)))
        to_neg = np.flatnonzero(changed & (out == np.float32(-0.1)))
        assert to_pos.size + to_neg.size == int(changed.sum())
        c = {"note": note, "h": h, "w": w, "max_area": max_area}
        c.update({"hash": hash_spec} if logits is None else {"logits": floats(x)})
        c.update({"to_pos": to_pos.tolist(), "to_neg": to_neg.tolist()})
        cases.append(c)
        return to_pos.size, to_neg.size

    # Holes inside foreground: 1, 15, 16 (= max_area: filled), 17 (kept); two 8-pixel holes
    # touching at a corner (one component of 16: filled) and two 9-pixel ones (18: kept);
    # a border strip of background of 12 (filled too: any small background component).
    holes = [(2, 2, 3, 3), (2, 6, 5, 11), (8, 2, 12, 6), (8, 10, 9, 27), (14, 2, 16, 6), (16, 6, 18, 10),
             (20, 2, 23, 5), (23, 5, 26, 8), (0, 30, 12, 31)]
    big = [(27, 0, 40, 44)]  # a large background region along the bottom, with sprinkles in it
    sprinkles = [(29, 2, 30, 3), (29, 6, 32, 11), (33, 2, 37, 6), (33, 10, 34, 27), (36, 30, 38, 38)]
    x = _canvas(rng, 40, 44, bg_boxes=holes + big)
    for y0, x0, y1, x1 in sprinkles:  # 1, 15, 16, 17, 16 pixels
        x[y0:y1, x0:x1] = rng.choice(FG, (y1 - y0, x1 - x0))
    n_pos, n_neg = add(16, x, note="holes and sprinkles of 1, 15, 16, 17 around max_area 16")
    assert n_pos == 1 + 15 + 16 + 16 + 12 and n_neg == 1 + 15 + 16 + 16, (n_pos, n_neg)
    add(15, x, note="the same at max_area 15")
    add(17, x, note="the same at max_area 17")
    add(1, x, note="the same at max_area 1")
    add(0, x, note="max_area 0: unchanged")
    add(-5, x, note="negative max_area: unchanged")
    # odd sizes take the official padding path (connected components on an even size)
    add(16, _canvas(rng, 41, 37, bg_boxes=[(3, 3, 7, 7), (10, 10, 13, 15), (30, 0, 41, 37)]), note="odd size")
    odd = _canvas(rng, 41, 37, bg_boxes=[(3, 3, 7, 7), (10, 10, 13, 15), (30, 0, 41, 37)])
    odd[32:34, 4:8] = rng.choice(FG, (2, 4))
    odd[40, 36] = FG[0]  # a one-pixel sprinkle in the last pixel
    add(16, odd, note="odd size, sprinkles at the border")
    # Small foreground in total: the sprinkle threshold is min(max_area, fg // 2).
    for sizes in ((9, 11), (10, 10), (10, 11), (6, 7, 8), (3,), (40, 1)):
        x = rng.choice(BG, (20, 30)).astype(np.float32)
        for i, s in enumerate(sizes):  # blob i: s pixels on row 1 + 4 i (two rows of s / 2 if long)
            rows = 2 if s > 28 else 1
            x[1 + 4 * i:1 + 4 * i + rows, 1:1 + s // rows] = rng.choice(FG, (rows, s // rows))
        add(64, x, note=f"foreground blobs {sizes}: threshold min(max_area, total // 2)")
    # A hole that filling turns into foreground counts for the sprinkle threshold: blob 14
    # would be kept against (12 + 14) // 2 = 13, but goes against (16 + 14) // 2 = 15.
    x = rng.choice(BG, (12, 12)).astype(np.float32)
    x[2:6, 2:6] = rng.choice(FG, (4, 4))
    x[3:5, 3:5] = BG[1]  # hole of 4: filled, the blob becomes 16
    x[8:10, 2:9] = rng.choice(FG, (2, 7))  # blob of 14
    n_pos, n_neg = add(16, x, note="a filled hole grows the foreground total")
    assert (n_pos, n_neg) == (4, 14), (n_pos, n_neg)
    # Tiny planes: all-background planes smaller than max_area become foreground.
    add(16, np.array([[1.5]]), note="1x1 foreground")
    add(16, np.array([[-1.5]]), note="1x1 background")
    add(16, np.zeros((2, 3)), note="2x3 zeros (background)")
    add(16, np.array([[2, 2, 2], [2, -1, 2], [2, 2, 2]]), note="3x3 one hole")
    add(16, np.array([[-2, -2, -2], [-2, 1, -2], [-2, -2, -2]]), note="3x3 one sprinkle")
    add(4, np.full((2, 2), -3.0), note="2x2 background, max_area 4")
    add(3, np.full((2, 2), -3.0), note="2x2 background, max_area 3")
    add(10_000, _canvas(rng, 20, 25, bg_boxes=[(0, 0, 10, 25)]), note="max_area above the plane")
    # Noise planes at several foreground densities (hash_map + bias; |hash| < 10).
    for h, w, bias, max_area in ((72, 72, 6.0, 16), (72, 72, 0.0, 16), (72, 72, -6.0, 16), (63, 45, 2.5, 8),
                                 (64, 64, 8.0, 100), (31, 17, -8.0, 3)):
        add(max_area, hash_spec={"seed": int(rng.integers(1, 10_000)), "bias": bias}, h=h, w=w,
            note=f"noise, bias {bias}")
    return cases


# ---------------------------------------------------------------- non-overlap

def nonoverlap_cases(rng) -> list:
    import torch
    from sam3.model.sam3_tracker_base import Sam3TrackerBase

    cases = []
    values = np.concatenate([np.arange(-24, 25) / 2.0, [-1024.0, -10.0, -10.0, 0.0]]).astype(np.float32)
    for n, h, w in ((1, 3, 4), (2, 1, 1), (2, 7, 9), (2, 16, 16), (5, 5, 3), (5, 12, 11)):
        for low_card in (False, True):
            # low_card: few distinct values, so many pixels tie for the maximum
            pool = np.array([-11.0, -10.0, 0.0, 2.5], np.float32) if low_card else values
            x = rng.choice(pool, (n, 1, h, w)).astype(np.float32)
            out = Sam3TrackerBase._apply_non_overlapping_constraints(None, torch.from_numpy(x)).numpy()
            cases.append({"n": n, "h": h, "w": w, "logits": floats(x), "output": floats(out)})
    return cases


def objectwise_cases(rng) -> list:
    import torch
    from sam3.model.sam3_tracking_predictor import Sam3TrackerPredictor

    predictor = Sam3TrackerPredictor.__new__(Sam3TrackerPredictor)  # the methods use no state
    cases = []
    specs = [
        ((0.7,), 6, 5),
        ((0.01,), 4, 4),
        ((0.6, 0.6), 7, 8),              # tied: the first object keeps the overlap
        ((0.3, 0.9), 7, 8),
        ((0.9, 0.3), 9, 6),
        ((0.0, 0.5), 6, 6),              # score 0 is the background value: it never wins
        ((0.5, 0.9, 0.5, 0.9, 0.2), 10, 9),
        ((0.25, 0.25, 0.25, 0.25, 0.25), 8, 8),
        ((0.1, 0.0, 0.8, 1.0, 0.3), 11, 13),
        ((-0.5, 0.4, 0.0, 0.4, 1e-30), 9, 9),  # non-probabilities: same rule
    ]
    for scores, h, w in specs:
        n = len(scores)
        density = 0.75 if n > 1 else 0.5
        m = rng.random((n, 1, h, w)) < density
        s = np.asarray(scores, np.float32)[:, None]
        out = predictor._apply_object_wise_non_overlapping_constraints(
            torch.from_numpy(m), torch.from_numpy(s), background_value=0) > 0
        cases.append({"n": n, "h": h, "w": w, "scores": floats(s), "masks": bits(m), "output": bits(out.numpy())})
    return cases


# ---------------------------------------------------------------- bf16

def bf16_cases(rng) -> dict:
    import torch

    special = [0x00000000, 0x80000000, 0x3F800000, 0xBF800000,
               0x00000001, 0x80000001, 0x00007FFF, 0x00008000, 0x00008001, 0x00017FFF, 0x00018000,
               0x00018001, 0x007F7FFF, 0x007F8000, 0x007FFFFF, 0x807FFFFF, 0x00800000,  # subnormals
               0x3F808000, 0x3F818000, 0x3F80C000, 0x3F807FFF, 0x3F808001, 0xBF818000,  # ties
               0x3F7FFFFF, 0x3F7F8000, 0x3FFFFFFF, 0x3FFF8000, 0x4B7FFFFF, 0xC07FFFFF,  # carry into exponent
               0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F0000,  # to infinity
               0x7F800000, 0xFF800000,  # infinities
               0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0x7FBFFFFF, 0x7F80FFFF]  # NaNs
    rand = rng.integers(0, 2**32, 1500, dtype=np.uint64).astype(np.uint32)
    rand[:300] = (rand[:300] & np.uint32(0xFFFF0000)) | np.uint32(0x8000)  # ties
    rand[300:500] = (rand[300:500] & np.uint32(0xFFFF0000)) | np.uint32(0x7FFF)
    u = np.concatenate([np.array(special, np.uint32), rand])
    f = u.view(np.float32)
    b = torch.from_numpy(f.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    want = []
    for x, y in zip(f, b):
        if np.isnan(x):
            assert (y & 0x7F80) == 0x7F80 and (y & 0x7F) != 0, hex(y)
            want.append(None)
        else:
            want.append(int(y))
    # bf16 -> float: every pattern
    all16 = np.arange(65536, dtype=np.uint32)
    back = torch.from_numpy(all16.astype(np.uint16).view(np.int16)).view(torch.bfloat16).float()
    back = back.numpy().view(np.uint32)
    exceptions = [[int(b16), int(v)] for b16, v in zip(all16, back) if v != (b16 << 16)]
    return {"float_bits": [int(v) for v in u], "bf16": want, "bf16_to_float_exceptions": exceptions}


# ---------------------------------------------------------------- select_closest_cond_frames

def select_cases(rng) -> list:
    from sam3.model.sam3_tracker_utils import select_closest_cond_frames

    cases = []
    seen = set()

    def add(frame, cond, max_num, keep_first):
        cond = sorted(set(int(t) for t in cond))
        key = (frame, tuple(cond), max_num, keep_first)
        if key in seen or (max_num != -1 and len(cond) > max_num and max_num < 2):
            return  # the official code asserts max >= 2 when it has to choose
        seen.add(key)
        sel, unsel = select_closest_cond_frames(frame, {t: t for t in cond}, max_num,
                                                keep_first_cond_frame=keep_first)
        n_fixed = 0
        if max_num != -1 and len(cond) > max_num:
            fixed = set()
            if keep_first:
                first = min((t for t in cond if t < frame), default=None)
                if first is None:
                    first = max((t for t in cond if t > frame), default=None)
                if first is not None:
                    fixed.add(first)
            fixed |= {t for t in (max((t for t in cond if t < frame), default=None),
                                  min((t for t in cond if t >= frame), default=None)) if t is not None}
            n_fixed = len(fixed)
        cases.append({"frame": frame, "cond": cond, "max": max_num, "keep_first": keep_first,
                      "selected": list(sel), "unselected": list(unsel),
                      "negative_remain": max_num != -1 and len(cond) > max_num and n_fixed > max_num})

    explicit = [
        (5, [5]), (0, [3]), (9, [3]), (8, [2, 6, 10, 14]), (8, [0, 4, 8, 12, 16]), (8, [0, 4, 12, 16]),
        (10, [0, 2, 4, 6, 8]), (0, [2, 4, 6, 8, 10]), (7, [0, 1, 13, 14]), (6, [0, 2, 5, 9, 12]),
        (6, [0, 2, 5, 9, 12, 14]), (20, [0, 5, 10, 15, 25, 30, 35]), (3, [0, 1, 2, 4, 5, 6, 7]),
    ]
    for frame, cond in explicit:
        for max_num in (-1, 1, 2, 3, 4, 7):
            for keep_first in (False, True):
                add(frame, cond, max_num, keep_first)
    for _ in range(120):
        n = int(rng.integers(1, 8))
        cond = rng.choice(24, n, replace=False)
        frame = int(rng.integers(0, 24))
        add(frame, cond, int(rng.choice([-1, 2, 3, 4, 5])), bool(rng.integers(0, 2)))
    return cases


# ---------------------------------------------------------------- frame_filter

EFFS = np.array([0.0, 0.01, np.nextafter(np.float32(0.01), np.float32(1)), np.nextafter(np.float32(0.01),
                 np.float32(0)), 0.5, 0.9, -0.2, 0.3], np.float32)


def filter_cases(rng) -> list:
    import torch
    from sam3.model.sam3_tracker_base import Sam3TrackerBase

    cases = []

    def add(num_frames, frame, reverse, r, entries, max_ptrs=16, threshold=0.01):
        non_cond = {}
        for t, eff in entries:
            non_cond[t] = {} if eff is None else {"eff_iou_score": torch.tensor(eff, dtype=torch.float32)}
        self = types.SimpleNamespace(max_obj_ptrs_in_encoder=max_ptrs, mf_threshold=threshold)
        out = Sam3TrackerBase.frame_filter(self, {"cond_frame_outputs": {}, "non_cond_frame_outputs": non_cond},
                                           reverse, frame, num_frames, r)
        cases.append({"num_frames": num_frames, "frame": frame, "reverse": reverse, "r": r,
                      "max_obj_ptrs": max_ptrs, "threshold": threshold,
                      "entries": [[t, None if e is None else f32(e)] for t, e in entries],
                      "valid": [int(v) for v in out]})

    def random_entries(num_frames, frame, p_present=0.8, p_noeff=0.1):
        entries = []
        for t in range(num_frames):
            if t == frame or rng.random() > p_present:
                continue
            entries.append((t, None if rng.random() < p_noeff else float(rng.choice(EFFS))))
        return entries

    # edges: first frame forward and last frame reverse return []; the other way round they scan
    for num_frames in (1, 2, 5):
        for frame in sorted({0, num_frames - 1}):
            for reverse in (False, True):
                add(num_frames, frame, reverse, 1, random_entries(num_frames, frame, 1.0, 0.0))
    for num_frames in (2, 3, 5, 8, 12, 15, 16, 17, 30, 40):
        frames = sorted({0, 1, num_frames // 2, num_frames - 2, num_frames - 1} & set(range(num_frames)))
        for frame in frames:
            for reverse in (False, True):
                for r in (1, 2, 3):
                    add(num_frames, frame, reverse, r, random_entries(num_frames, frame))
    # every entry above the threshold: the max_num - 1 limit decides
    for num_frames, frame, reverse in ((30, 25, False), (30, 4, True), (12, 11, False), (12, 0, True),
                                       (16, 15, False), (17, 16, False), (17, 0, True)):
        add(num_frames, frame, reverse, 1, [(t, 0.9) for t in range(num_frames) if t != frame])
        add(num_frames, frame, reverse, 1, [(t, 0.9) for t in range(num_frames) if t != frame], max_ptrs=4)
    # gaps, and the adjacent frame missing, below the threshold or without a score
    add(20, 10, False, 1, [(t, 0.9) for t in (1, 3, 4, 7)])
    add(20, 10, True, 1, [(t, 0.9) for t in (13, 15, 19)])
    add(20, 10, False, 1, [(9, 0.005), (8, 0.9), (2, 0.01)])
    add(20, 10, True, 1, [(11, None), (12, 0.02), (18, float(EFFS[2]))])
    add(20, 10, False, 2, [(t, 0.9) for t in range(20) if t != 10])
    add(20, 10, True, 3, [(t, 0.9) for t in range(20) if t != 10])
    add(20, 1, False, 1, [(0, 0.9)])  # frame 0 is never scanned going forward
    add(20, 18, True, 1, [(19, 0.9)])
    # thresholds: exactly at, just above and just below (float32 comparisons)
    for eff in EFFS:
        add(6, 3, False, 1, [(t, float(eff)) for t in (0, 1, 2)])
        add(6, 2, True, 1, [(t, float(eff)) for t in (3, 4, 5)])
    add(10, 9, False, 1, [(t, float(rng.choice(EFFS))) for t in range(9)], threshold=0.5)
    add(10, 0, True, 1, [(t, 0.5) for t in range(1, 10)], threshold=0.5)
    return cases


# ----------------------------------------------------------------

def joint_score_cases(rng) -> list:
    """The video detector's score: inverse_sigmoid(sigmoid(class) * sigmoid(presence))
    clamped to +-10 (Sam3Image._update_scores_and_boxes, supervise_joint_box_scores)."""
    import torch
    from sam3.model.model_misc import inverse_sigmoid

    grid = np.array([-30, -12, -7, -6.9, -3, -1, -0.1, 0, 0.1, 1, 3, 6.9, 7, 12, 30], np.float32)
    cls = np.concatenate([np.repeat(grid, grid.size), rng.normal(0, 4, 200).astype(np.float32)])
    pres = np.concatenate([np.tile(grid, grid.size), rng.normal(0, 4, 200).astype(np.float32)])
    c, p = torch.from_numpy(cls)[None, :, None], torch.from_numpy(pres)[None, :]
    out = inverse_sigmoid(c.sigmoid() * p.sigmoid().unsqueeze(2)).clamp(min=-10.0, max=10.0)
    return [{"class_logits": floats(cls), "presence_logits": floats(pres), "output": floats(out.numpy())}]


def nms_cases(rng) -> list:
    """sam3.perflib.nms.nms_masks (CPU: mask IoUs, generic_nms_cpu) -> keep flags."""
    import torch
    from sam3.perflib.nms import nms_masks

    cases = []
    for n, h, w, prob_thr, iou_thr in ((1, 8, 8, 0.5, 0.1), (6, 16, 16, 0.5, 0.1), (12, 24, 20, 0.3, 0.1),
                                       (12, 24, 20, 0.3, 0.5), (20, 32, 32, 0.0, 0.1), (5, 10, 10, 0.9, 0.1),
                                       (8, 12, 12, 0.5, 0.0)):
        masks = np.full((n, h, w), -1.0, np.float32)
        for i in range(n):  # rectangles that overlap in groups
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            masks[i, y0:y0 + rng.integers(1, h // 2 + 1), x0:x0 + rng.integers(1, w // 2 + 1)] = 2.0
        if n >= 6:
            masks[3] = masks[2]          # identical masks: IoU 1
            masks[4, :, :] = -1.0        # an empty mask: IoU 0 with everything
        probs = rng.uniform(0, 1, n).astype(np.float32)
        keep = nms_masks(torch.from_numpy(probs), torch.from_numpy(masks), prob_thr, iou_thr).numpy()
        cases.append({"n": n, "h": h, "w": w, "prob_threshold": prob_thr, "iou_threshold": iou_thr,
                      "probs": floats(probs), "masks": floats(masks), "keep": bits(keep)})
    return cases


def _rect_planes(rects, h, w) -> np.ndarray:
    """Logit planes, +2 inside each rectangle [y0, y1, x0, x1) and -2 elsewhere (empty
    rectangles give empty masks); the C++ test draws the same."""
    out = np.full((len(rects), h, w), -2.0, np.float32)
    for i, (y0, y1, x0, x1) in enumerate(rects):
        out[i, y0:y1, x0:x1] = 2.0
    return out


def planner_cases(rng) -> list:
    """Sam3VideoBase._associate_det_trk then _process_hotstart, frame after frame with the
    hotstart metadata carried over, called on a SimpleNamespace holding the thresholds.
    Each frame's detections and tracks are rectangles on a 16x16 plane."""
    import types
    from collections import defaultdict

    import torch
    from sam3.model.sam3_video_base import Sam3VideoBase

    cases = []
    h = w = 16
    configs = [dict(), dict(hotstart_delay=3, hotstart_unmatch_thresh=2, hotstart_dup_thresh=2),
               dict(hotstart_delay=4, hotstart_unmatch_thresh=2, hotstart_dup_thresh=3,
                    suppress_unmatched_only_within_hotstart=False, min_trk_keep_alive=-1,
                    init_trk_keep_alive=2, max_trk_keep_alive=3,
                    decrease_trk_keep_alive_for_empty_masklets=True)]
    for ci, overrides in enumerate(configs):
        for reverse in (False, True):
            cfg = dict(assoc_iou_thresh=0.1, trk_assoc_iou_thresh=0.5, new_det_thresh=0.7, hotstart_delay=15,
                       hotstart_unmatch_thresh=8, hotstart_dup_thresh=8, init_trk_keep_alive=30,
                       max_trk_keep_alive=30, min_trk_keep_alive=-1, suppress_unmatched_only_within_hotstart=True,
                       decrease_trk_keep_alive_for_empty_masklets=False, o2o_matching_masklets_enable=False)
            cfg.update(overrides)
            me = types.SimpleNamespace(**cfg)
            meta = {"obj_first_frame_idx": {}, "unmatched_frame_inds": defaultdict(list),
                    "trk_keep_alive": defaultdict(int), "overlap_pair_to_frame_inds": defaultdict(list),
                    "removed_obj_ids": set(), "suppressed_obj_ids": defaultdict(set)}
            tracks, next_id, frames = [], 0, []   # tracks: [(id, rect)]
            order = list(range(12)) if not reverse else list(range(11, -1, -1))
            for frame in order:
                trk_ids = np.array([t for t, _ in tracks], np.int64)
                trk_rects = [r for _, r in tracks]
                # tracks drift a little; some vanish (empty masks)
                trk_rects = [[0, 0, 0, 0] if rng.random() < 0.1 else r for r in trk_rects]
                dets = []
                for r in trk_rects:  # the detector sees most tracked objects again
                    if rng.random() < 0.6 and r[1] > r[0]:
                        dy, dx = rng.integers(-1, 2, 2)
                        dets.append([max(0, r[0] + dy), max(1, r[1] + dy), max(0, r[2] + dx), max(1, r[3] + dx)])
                for _ in range(rng.integers(0, 3)):  # and new or duplicate ones
                    y0, x0 = rng.integers(0, 12, 2)
                    dets.append([int(y0), int(y0 + rng.integers(2, 5)), int(x0), int(x0 + rng.integers(2, 5))])
                scores = rng.choice([0.55, 0.75, 0.85, 0.95], len(dets)).astype(np.float32)
                det_m = torch.from_numpy(_rect_planes(dets, h, w))
                trk_m = torch.from_numpy(_rect_planes(trk_rects, h, w))
                new, unmatched, d2t, hi, empty = Sam3VideoBase._associate_det_trk(me, det_m, scores, trk_m, trk_ids)
                new_ids = np.arange(next_id, next_id + len(new), dtype=np.int64)
                removed, meta = Sam3VideoBase._process_hotstart(
                    me, frame_idx=frame, num_frames=12, reverse=reverse, det_to_matched_trk_obj_ids=d2t,
                    new_det_obj_ids=new_ids, empty_trk_obj_ids=empty, unmatched_trk_obj_ids=unmatched,
                    rank0_metadata=meta, tracker_metadata={})
                frames.append({"frame": frame, "dets": [[int(v) for v in r] for r in dets], "scores": floats(scores),
                               "trk_ids": trk_ids.tolist(), "trks": [[int(v) for v in r] for r in trk_rects],
                               "new_det": [int(i) for i in new], "unmatched": [int(i) for i in unmatched],
                               "empty": [int(i) for i in empty],
                               "det_to_matched": [[int(i) for i in d2t[d]] for d in sorted(d2t)],
                               "high_conf": sorted([int(k), int(v)] for k, v in hi.items()),
                               "removed": sorted(int(i) for i in removed),
                               "suppressed": sorted(int(i) for i in meta["suppressed_obj_ids"].get(frame, ()))})
                tracks = [(t, r) for t, r in zip(trk_ids.tolist(), trk_rects) if t not in meta["removed_obj_ids"]]
                tracks += [(int(i), dets[d]) for i, d in zip(new_ids, new)]
                next_id += len(new)
            cases.append({"config": {k: v for k, v in cfg.items() if k != "o2o_matching_masklets_enable"},
                          "reverse": reverse, "h": h, "w": w, "frames": frames})
    return cases


def occlusion_cases(rng) -> list:
    """Sam3VideoBase._suppress_overlapping_based_on_recent_occlusion frame after frame (the
    last-occluded metadata carried from each frame's new metadata to the next), on a
    SimpleNamespace holding the threshold; rectangles on 16x16 planes."""
    import types

    import torch
    from sam3.model.sam3_video_base import Sam3VideoBase

    cases = []
    for reverse in (False, True):
        for threshold in (0.7, 0.3):
            me = types.SimpleNamespace(suppress_overlapping_based_on_recent_occlusion_threshold=threshold, rank=0)
            me._get_objects_to_suppress_based_on_most_recently_occluded = (
                lambda *a, **k: Sam3VideoBase._get_objects_to_suppress_based_on_most_recently_occluded(me, *a, **k))
            prev, frames, ids = {}, [], [0, 1, 2, 3]
            order = list(range(10)) if not reverse else list(range(9, -1, -1))
            for frame in order:
                if frame in (4, 5):  # an object leaves, another is added
                    ids = [i for i in ids if i != 2] + ([4] if 4 not in ids else [])
                rects = []
                step = order.index(frame)
                for i in ids:  # objects 0 and 1 overlap a lot but are each occluded for a while; 3 is sometimes empty
                    if (i == 0 and step == 1) or (i == 1 and step in (2, 3)):
                        rects.append([0, 0, 0, 0])
                    elif i in (0, 1):
                        rects.append([2, 10, 2, 10 + int(rng.integers(0, 2))])
                    elif i == 3 and rng.random() < 0.4:
                        rects.append([0, 0, 0, 0])
                    else:
                        y0, x0 = rng.integers(0, 10, 2)
                        rects.append([int(y0), int(y0 + 6), int(x0), int(x0 + 6)])
                removed = {1} if frame == 6 else set()
                masks = torch.from_numpy(_rect_planes(rects, 16, 16))
                meta_prev = {"obj_ids_all_gpu": np.array(ids, np.int64), "obj_id_to_last_occluded": prev}
                meta_new = {}
                out = Sam3VideoBase._suppress_overlapping_based_on_recent_occlusion(
                    me, frame, masks.clone(), meta_prev, meta_new, removed, reverse)
                suppressed = [int(i) for i, m in zip(ids, out) if bool((m == -10).all()) and
                              not bool((masks[ids.index(i)] == -10).all())]
                prev = meta_new.get("obj_id_to_last_occluded", {})
                frames.append({"frame": frame, "ids": ids, "rects": rects, "newly_removed": sorted(removed),
                               "suppressed": suppressed,
                               "last_occluded": [[int(k), int(v)] for k, v in sorted(prev.items())]})
            cases.append({"reverse": reverse, "threshold": threshold, "frames": frames})
    return cases


def shrink_cases(rng) -> list:
    """Sam3TrackerPredictor._suppress_object_pw_area_shrinkage on (N, 1, H, W) logits
    (a bare __new__ instance: it reaches the base method through super())."""
    import torch
    from sam3.model.sam3_tracking_predictor import Sam3TrackerPredictor

    me = Sam3TrackerPredictor.__new__(Sam3TrackerPredictor)
    cases = []
    for n, h, w in ((1, 8, 8), (2, 12, 12), (3, 16, 16), (5, 16, 20), (4, 9, 7)):
        for _ in range(3):
            x = rng.normal(0, 3, (n, 1, h, w)).astype(np.float32)
            if n > 1:  # a small mask mostly under a bigger, stronger one
                x[1, 0, :, :] = -5.0
                x[1, 0, 2:5, 2:5] = 1.0
                x[0, 0, 1:7, 1:7] = 4.0
            out = me._suppress_object_pw_area_shrinkage(torch.from_numpy(x)).numpy()
            cases.append({"n": n, "h": h, "w": w, "logits": floats(x), "output": floats(out)})
    return cases


def build_cases() -> dict:
    """The golden object, recomputed from the official code."""
    _official()
    rng = np.random.default_rng(20250301)
    return {
        "meta": [{"torch_kernel": torch_kernel()}],
        "resize": resize_cases(rng),
        "components": component_cases(rng),
        "fill_holes": fill_cases(rng),
        "non_overlap": nonoverlap_cases(rng),
        "object_wise": objectwise_cases(rng),
        "bf16": [bf16_cases(rng)],
        "select_cond": select_cases(rng),
        "frame_filter": filter_cases(rng),
        "joint_score": joint_score_cases(rng),
        "nms": nms_cases(rng),
        "planner": planner_cases(rng),
        "occlusion": occlusion_cases(rng),
        "shrink": shrink_cases(rng),
    }


def dumps(obj: dict) -> str:
    """One case per line, so diffs stay readable."""
    lines = ["{"]
    for i, (key, cases) in enumerate(obj.items()):
        lines.append(f"{json.dumps(key)}: [")
        lines.append(",\n".join(json.dumps(c, separators=(",", ":")) for c in cases))
        lines.append("]" + ("," if i + 1 < len(obj) else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    path = os.path.join(HERE, FILE)
    with open(path, "w") as f:
        f.write(dumps(build_cases()))
    print(f"wrote {FILE} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
