"""Golden cases for tests/cpp/test_postprocess.cpp and test_rle.cpp, from the official code.

    .venv/bin/python tests/cpp/data/gen_postprocess_cases.py   # rewrites the two JSON files

`build_cases()` returns the goldens in memory; tests/python/test_golden_postprocess.py
compares them with the committed files so they cannot go stale.

Every reference value comes from torch ops or from the official functions called as
they are: `Sam3Processor._forward_grounding` (concept prompts), `MaskDecoder.forward`
(mask selection, dynamic stability), `SAM2Transforms.postprocess_masks` (hole filling,
upsampling) and pycocotools (RLE). Only `predict_masks`/`forward_grounding` are stubbed
to hand back our random tensors. scikit-image is not installed, so while the official
`postprocess_masks` runs, `skimage.measure.label` is stood in by `scipy.ndimage.label`
with skimage's default full (8-) connectivity.

Floats are written as the shortest decimal that reads back as the same float32. Large
inputs are not stored: `hash_map` rebuilds them (the C++ tests have the same function).
Masks are stored as pycocotools RLE counts (column-major) or as '0'/'1' strings (row-major).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import types
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
FILES = ("postprocess_cases.json", "rle_cases.json")


def hash_map(n: int, seed: int) -> np.ndarray:
    """n float32 values in [-10, 10): integer hash, then IEEE double ops that C++ repeats bit for bit."""
    k = np.arange(n, dtype=np.uint64) + np.uint64(seed)
    v = (k * np.uint64(2654435761)) % np.uint64(2**32)
    return (v.astype(np.float64) / 2.0**32 * 20.0 - 10.0).astype(np.float32)


def floats(a) -> list:
    a = np.asarray(a, np.float32).ravel()
    out = [float(str(v)) for v in a]
    assert np.array_equal(np.array(out, np.float64).astype(np.float32), a)
    return out


def bits(mask) -> str:
    return "".join("1" if v else "0" for v in np.asarray(mask).ravel())


def rle(mask) -> str:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))["counts"].decode()


def seq_sum(a) -> float:
    """Left-to-right double sum (np.sum is pairwise; C++ adds in order)."""
    return float(np.cumsum(np.asarray(a, np.float64).ravel())[-1])


def _official():
    if os.path.join(ROOT, "compiler") not in sys.path:
        sys.path.insert(0, os.path.join(ROOT, "compiler"))
    from sam3_tvm.model import shims

    shims.apply()


@contextlib.contextmanager
def _skimage_label():
    """Stand-in `skimage.measure.label` (default connectivity = ndim, i.e. 8 in 2-D)."""
    from scipy import ndimage

    def label(image, background=0, return_num=False, connectivity=None):
        assert background == 0
        conn = image.ndim if connectivity is None else connectivity
        structure = ndimage.generate_binary_structure(image.ndim, conn)
        labels, num = ndimage.label(image != 0, structure=structure)
        return (labels, num) if return_num else labels

    saved = {k: sys.modules.get(k) for k in ("skimage", "skimage.measure")}
    sk, measure = types.ModuleType("skimage"), types.ModuleType("skimage.measure")
    measure.label = label
    sk.measure = measure
    sys.modules.update({"skimage": sk, "skimage.measure": measure})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


# ---------------------------------------------------------------- resize_bilinear

def _interp(x: np.ndarray, h: int, w: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None, None]
    return F.interpolate(t, (h, w), mode="bilinear", align_corners=False, antialias=False)[0, 0].numpy()


def resize_cases(rng) -> list:
    cases = []
    # out_h + out_w <= 128 and > 128 take different torch kernels; both are covered.
    small = [(4, 4, 7, 9), (5, 3, 2, 8), (8, 8, 1, 1), (1, 1, 5, 7), (6, 10, 6, 10), (7, 5, 7, 11),
             (3, 3, 13, 17), (12, 12, 5, 3), (1, 6, 4, 1), (11, 7, 3, 2), (5, 7, 1, 127), (5, 7, 1, 128),
             (7, 5, 127, 1), (7, 5, 128, 1), (7, 9, 20, 110), (40, 40, 110, 19), (2, 3, 1, 200)]
    for sh, sw, dh, dw in small:
        x = (rng.standard_normal((sh, sw)) * 4).astype(np.float32)
        cases.append({"src_h": sh, "src_w": sw, "dst_h": dh, "dst_w": dw,
                      "input": floats(x), "output": floats(_interp(x, dh, dw))})
    for seed, (sh, sw, dh, dw) in enumerate([(96, 96, 480, 640), (288, 288, 1, 1), (288, 288, 333, 500),
                                             (72, 72, 1080, 1920)], start=1):
        x = hash_map(sh * sw, seed).reshape(sh, sw)
        y = _interp(x, dh, dw).ravel()
        idx = np.unique(np.linspace(0, y.size - 1, min(y.size, 300)).astype(np.int64))
        # The double sums see every value; the samples localise a difference.
        cases.append({"src_h": sh, "src_w": sw, "dst_h": dh, "dst_w": dw, "input_hash": seed,
                      "sample_index": idx.tolist(), "sample_value": floats(y[idx]),
                      "sum": seq_sum(y), "sum_sq": seq_sum(y.astype(np.float64) ** 2)})
    return cases


# ---------------------------------------------------------------- select_detections

class _GroundingModel:
    def __init__(self, outputs):
        self.outputs = outputs

    def forward_grounding(self, **_):
        return self.outputs


def detection_cases(rng) -> list:
    import torch
    from sam3.model.sam3_image_processor import Sam3Processor

    cases = []
    specs = [(6, 8, 20, 30, 0.5, 2.0), (6, 8, 20, 30, 0.3, 1.0), (5, 12, 7, 5, 0.1, None),
             (4, 10, 90, 60, 0.2, None), (3, 16, 480, 640, 0.0, None), (5, 8, 16, 16, 0.5, -20.0),
             (8, 6, 1, 1, 0.4, None), (7, 9, 33, 17, 0.6, 3.0)]
    for q, m, h, w, thr, presence in specs:
        logits = (rng.standard_normal(q) * 3).astype(np.float32)
        pres = np.float32(rng.standard_normal() if presence is None else presence)
        boxes = np.concatenate([rng.uniform(0, 1, (q, 2)), rng.uniform(0.05, 0.6, (q, 2))], 1).astype(np.float32)
        masks = (rng.standard_normal((q, m, m)) * 4).astype(np.float32)
        outputs = {"pred_logits": torch.from_numpy(logits)[None, :, None],
                   "pred_boxes": torch.from_numpy(boxes)[None],
                   "pred_masks": torch.from_numpy(masks)[None],
                   "presence_logit_dec": torch.tensor([[pres]])}
        proc = Sam3Processor(_GroundingModel(outputs), device="cpu", confidence_threshold=thr)
        state = proc._forward_grounding({"backbone_out": {}, "geometric_prompt": None,
                                         "original_height": h, "original_width": w})
        probs = (outputs["pred_logits"].sigmoid() * outputs["presence_logit_dec"].sigmoid().unsqueeze(1))[0, :, 0]
        kept = torch.nonzero(probs > thr)[:, 0].numpy()
        scores = state["scores"].numpy()
        assert np.array_equal(scores, probs.numpy()[kept])
        order = np.argsort(-scores, kind="stable")  # sam3_tvm.predict.segment_concept's order
        dets = [{"query": int(kept[i]), "score": floats([scores[i]])[0],
                 "box": floats(state["boxes"][i].numpy()), "mask": rle(state["masks"][i, 0].numpy())}
                for i in order]
        cases.append({"num_queries": q, "mask_size": m, "img_h": h, "img_w": w, "threshold": floats([thr])[0],
                      "logits": floats(logits), "boxes": floats(boxes), "presence_logit": floats([pres])[0],
                      "masks": floats(masks), "detections": dets})
    return cases


# ---------------------------------------------------------------- interactive selection

def _decoder(masks: np.ndarray, iou: np.ndarray, dynamic: bool):
    """An object the official `MaskDecoder.forward` runs on, with `predict_masks` stubbed."""
    import torch
    from sam3.sam.mask_decoder import MaskDecoder

    class Decoder:
        forward = MaskDecoder.forward
        _get_stability_scores = MaskDecoder._get_stability_scores
        _dynamic_multimask_via_stability = MaskDecoder._dynamic_multimask_via_stability
        training = False
        use_multimask_token_for_obj_ptr = True
        dynamic_multimask_via_stability = dynamic
        dynamic_multimask_stability_delta = 0.05  # sam3.model_builder's values
        dynamic_multimask_stability_thresh = 0.98

        def predict_masks(self, **_):
            return (torch.from_numpy(masks)[None], torch.from_numpy(iou)[None],
                    torch.zeros(1, 4, 8), torch.zeros(1, 1))

    return Decoder()


def _select(masks, iou, multimask, dynamic):
    """Official selection -> (decoder output index of each returned mask, returned ious, stability of mask 0)."""
    import torch

    dec = _decoder(masks, iou, dynamic)
    out, out_iou, _, _ = dec.forward(image_embeddings=None, image_pe=None, sparse_prompt_embeddings=None,
                                     dense_prompt_embeddings=None, multimask_output=multimask, repeat_image=False)
    index = []
    for k in range(out.shape[1]):
        hits = [j for j in range(4) if torch.equal(out[0, k], torch.from_numpy(masks[j]))]
        assert len(hits) == 1 and out_iou[0, k].item() == float(iou[hits[0]])
        index.append(hits[0])
    stab = dec._get_stability_scores(torch.from_numpy(masks[:1])[None])[0, 0].item()
    return index, out_iou[0].numpy(), stab, out[0].numpy()


def _with_stability(rng, m, area_u, area_i, dtype=np.float32):
    """A mask-0 logit map with exactly area_i values > 0.05 and area_u values > -0.05,
    using ±0.05f themselves on the band edges (the comparison is strict, in float32)."""
    n = m * m
    d = dtype(0.05)
    v = np.empty(n, dtype)
    v[:area_i] = rng.uniform(0.06, 8, area_i)
    band = area_u - area_i
    v[area_i:area_u] = rng.choice(np.array([d, -d * 0.5, 0.0, d * 0.99], dtype), band)
    v[area_u:] = np.where(rng.random(n - area_u) < 0.5, -d, rng.uniform(-8, -0.06, n - area_u))
    return rng.permutation(v).reshape(m, m)


def selection_cases(rng) -> list:
    cases = []

    def add(masks, iou, multimask, dynamic=True, stability=None, expect=None):
        masks, iou = np.asarray(masks, np.float32), np.asarray(iou, np.float32)
        index, out_iou, stab, _ = _select(masks, iou, multimask, dynamic)
        assert expect is None or index == expect, (index, expect)
        if stability is not None:
            assert stab == np.float32(stability), (stab, stability)
        cases.append({"mask_size": masks.shape[-1], "multimask": multimask, "dynamic": dynamic,
                      "masks": floats(masks), "iou": floats(iou), "index": index,
                      "out_iou": floats(out_iou), "stability": floats([stab])[0]})

    def rand(m):
        return (rng.standard_normal((4, m, m)) * 4).astype(np.float32)

    add(rand(8), rng.uniform(0, 1, 4), True)
    add(rand(8), rng.uniform(0, 1, 4), False)  # ~1% of N(0,16) lies in the band: unstable here
    stable = rand(10)
    stable[0] = np.where(stable[0] >= 0, stable[0] + 1, stable[0] - 1)
    add(stable, [0.1, 0.9, 0.8, 0.7], False, stability=1.0, expect=[0])
    unstable = rand(10)
    unstable[0] = _with_stability(rng, 10, 60, 40)
    add(unstable, [0.99, 0.2, 0.7, 0.5], False, expect=[2])
    at = rand(10)
    at[0] = _with_stability(rng, 10, 100, 98)  # 98/100 == 0.98f: stable (>=)
    add(at, [0.3, 0.4, 0.9, 0.1], False, stability=np.float32(98) / np.float32(100), expect=[0])
    below = rand(10)
    below[0] = _with_stability(rng, 10, 99, 97)
    add(below, [0.3, 0.4, 0.9, 0.1], False, expect=[2])
    empty = rand(6)
    empty[0] = -np.abs(empty[0]) - 0.06  # area_u == 0: stability 1
    add(empty, [0.2, 0.5, 0.6, 0.4], False, stability=1.0, expect=[0])
    tie = rand(12)
    tie[0] = _with_stability(rng, 12, 100, 50)
    add(tie, [0.1, 0.6, 0.8, 0.8], False, expect=[2])  # argmax takes the first of equal ious
    add(tie, [0.1, 0.6, 0.8, 0.8], True, expect=[1, 2, 3])
    add(tie, [0.1, 0.6, 0.8, 0.8], False, dynamic=False, expect=[0])
    return cases


# ---------------------------------------------------------------- hole filling, full interactive path

def _transforms(max_hole_area: float):
    from sam3.model.utils.sam1_utils import SAM2Transforms

    return SAM2Transforms(resolution=1008, mask_threshold=0.0, max_hole_area=max_hole_area)


def _postprocess(masks: np.ndarray, hw, max_hole_area: float) -> np.ndarray:
    """Official SAM2Transforms.postprocess_masks on [K, M, M] low-res logits -> [K, H, W] logits."""
    import torch

    transforms = _transforms(max_hole_area)
    with _skimage_label(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = transforms.postprocess_masks(torch.from_numpy(masks)[None], hw)[0].numpy()
    # On any failure postprocess_masks skips hole filling with a warning instead of raising.
    assert not [w for w in caught if "Skipping the post-processing" in str(w.message)], caught
    return out


def _numpy_fill(logits: np.ndarray, max_area: int, connectivity: int) -> np.ndarray:
    from scipy import ndimage

    bg = logits <= 0
    labels, _ = ndimage.label(bg, structure=ndimage.generate_binary_structure(2, connectivity))
    sizes = np.bincount(labels.ravel())
    hole = (labels > 0) & (sizes[labels] <= max_area)
    return hole


def _hole_canvas(rng, h, w, background):
    """Foreground everywhere except the given (y0, x0, y1, x1) background boxes."""
    vals = np.array([0.25, 0.75, 1.5, 3.0, 40.0], np.float32)
    neg = np.array([0.0, -0.25, -1.5, -3.0, -40.0], np.float32)
    x = rng.choice(vals, (h, w))
    for y0, x0, y1, x1 in background:
        x[y0:y1, x0:x1] = rng.choice(neg, (y1 - y0, x1 - x0))
    return x


def hole_cases(rng) -> list:
    cases = []

    def add(logits, max_area, differs_from_4conn=None):
        logits = np.asarray(logits, np.float32)
        out = _postprocess(logits[None], logits.shape, float(max_area))[0]
        filled = out != logits
        assert np.all(out[filled] == 10.0)
        if max_area > 0:
            assert np.array_equal(filled, _numpy_fill(logits, max_area, 2))
            if differs_from_4conn is not None:
                assert differs_from_4conn == (not np.array_equal(filled, _numpy_fill(logits, max_area, 1)))
        cases.append({"h": logits.shape[0], "w": logits.shape[1], "max_area": max_area,
                      "logits": floats(logits), "filled": bits(filled)})

    # Holes of area 1, 9, 256 (filled) and 257, 272 (kept) inside foreground, and background
    # strips of 40 and 48 pixels on the border (filled: the official code fills any small
    # background component, not only enclosed ones).
    boxes = [(2, 2, 3, 3), (5, 5, 8, 8), (2, 20, 18, 36), (22, 2, 38, 18), (38, 2, 39, 3),
             (22, 20, 38, 37), (0, 44, 40, 45), (45, 0, 46, 60)]
    add(_hole_canvas(rng, 56, 48, [(y0, x0, min(y1, 56), min(x1, 48)) for y0, x0, y1, x1 in boxes]), 256,
        differs_from_4conn=False)
    # Two 12x12 background squares touching only at a corner: one 8-connected component of
    # 288 pixels (kept); 4-connectivity would see two of 144 and fill both.
    add(_hole_canvas(rng, 30, 30, [(3, 3, 15, 15), (15, 15, 27, 27)]), 256, differs_from_4conn=True)
    noise = (rng.standard_normal((40, 36)) * 2).astype(np.float32)
    noise[rng.random((40, 36)) < 0.05] = 0.0  # exactly 0 is background (<= threshold)
    add(noise, 256, differs_from_4conn=True)
    add(noise, 4, differs_from_4conn=True)
    add(noise, 0)
    return cases


def _blob(m, cy, cx, r, holes=()):
    """A disk of positive logits with negative holes, in steps of 1/16 (short to store)."""
    yy, xx = np.mgrid[0:m, 0:m].astype(np.float32)
    x = (r - np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)) * 4.0
    for hy, hx, hr in holes:
        x = np.where((yy - hy) ** 2 + (xx - hx) ** 2 <= hr * hr, -np.abs(x) - 1, x)
    return (np.round(x * 16) / 16).astype(np.float32)


def interactive_cases(rng) -> list:
    import torch

    cases = []

    def add(masks, iou, multimask, h, w, max_hole_area=256):
        masks, iou = np.asarray(masks, np.float32), np.asarray(iou, np.float32)
        index, out_iou, _, sel = _select(masks, iou, multimask, True)
        full = _postprocess(sel, (h, w), float(max_hole_area)) > 0.0  # as SAM3InteractiveImagePredictor._predict
        low_res = torch.clamp(torch.from_numpy(sel), -32.0, 32.0).numpy()
        best = int(np.argmax(out_iou))  # the CLI shows the highest-IoU mask
        assert np.array_equal(low_res[best], np.clip(masks[index[best]], -32, 32))
        cases.append({"mask_size": masks.shape[-1], "multimask": multimask, "img_h": h, "img_w": w,
                      "max_hole_area": max_hole_area, "masks": floats(masks), "iou": floats(iou),
                      "index": index[best], "out_iou": floats([out_iou[best]])[0], "mask": rle(full[best])})

    # Maps of at least 24x24: below that, all background is a component of <= 256 pixels.
    m = 24
    holey = np.stack([_blob(m, 11, 12, 6, [(11, 12, 1.5)]), _blob(m, 9, 9, 5, [(9, 9, 1)]),
                      _blob(m, 12, 13, 8, [(9, 9, 1), (14, 15, 2.2)]), _blob(m, 13, 12, 4)])
    add(holey, [0.5, 0.7, 0.9, 0.6], True, 37, 53)
    add(holey, [0.5, 0.7, 0.9, 0.6], True, 37, 53, max_hole_area=0)
    add(holey * 10, [0.95, 0.7, 0.9, 0.6], False, 100, 150)  # beyond ±32: clamped low-res logits
    noisy = np.stack([_blob(24, 11, 12, 8) + np.round(rng.standard_normal((24, 24)) * 2) / 16,
                      _blob(24, 10, 10, 5), _blob(24, 12, 14, 9, [(12, 14, 2)]), _blob(24, 5, 5, 12)])
    noisy[0][rng.random((24, 24)) < 0.1] = 0.0  # in the stability band: mask 0 is unstable
    add(noisy, [0.99, 0.4, 0.8, 0.7], False, 480, 640)  # so the best multimask output is used
    add((rng.standard_normal((4, 8, 8)) * 3).astype(np.float32), [0.3, 0.2, 0.1, 0.25], True, 1, 1)
    return cases


# ---------------------------------------------------------------- RLE

def _shapes_mask(h, w, shapes) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), bool)
    for cy, cx, r in shapes.get("disks", []):
        m ^= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    for y0, x0, y1, x1 in shapes.get("rects", []):
        m ^= (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
    return m


def rle_cases(rng) -> list:
    from pycocotools import mask as mask_utils

    cases = []

    def add(name, mask, shapes=None):
        mask = np.asarray(mask, np.uint8)
        h, w = mask.shape
        r = mask_utils.encode(np.asfortranarray(mask))
        x, y, bw, bh = (float(v) for v in mask_utils.toBbox(r))
        case = {"name": name, "h": h, "w": w, "counts": r["counts"].decode(), "area": int(mask_utils.area(r)),
                "bbox_xyxy": [x, y, x + bw, y + bh]}
        if shapes is None:
            case["mask"] = bits(mask)
        else:
            case["shapes"] = shapes
        assert np.array_equal(mask_utils.decode(r), mask)
        cases.append(case)

    add("empty", np.zeros((5, 7)))
    add("full", np.ones((5, 7)))
    add("one_zero", np.zeros((1, 1)))
    add("one_one", np.ones((1, 1)))
    for name, (y, x) in (("first_pixel", (0, 0)), ("last_pixel", (8, 5)), ("middle_pixel", (4, 2))):
        m = np.zeros((9, 6))
        m[y, x] = 1
        add(name, m)
    add("random_half", rng.random((13, 17)) < 0.5)
    add("random_sparse", rng.random((20, 31)) < 0.05)
    add("random_dense", rng.random((31, 20)) < 0.95)
    rows = np.zeros((8, 10))
    rows[::2] = 1
    add("row_stripes", rows)  # runs of 1 in column-major order
    cols = np.zeros((10, 8))
    cols[:, 1::2] = 1
    add("col_stripes", cols)
    flat = np.zeros(40 * 40, np.uint8)  # column-major order: runs crossing 5-bit digit boundaries
    pos = 0
    for zeros, ones in ((1, 1), (2, 16), (31, 33), (32, 100), (1, 1023)):
        pos += zeros
        flat[pos:pos + ones] = 1
        pos += ones
    add("run_lengths", flat.reshape(40, 40).T)
    lone = {"rects": [[479, 639, 480, 640]]}
    add("lone_last_pixel_480x640", _shapes_mask(480, 640, lone), lone)
    shapes = {"disks": [[240, 320, 150], [200, 300, 40], [100, 500, 90], [470, 10, 60]],
              "rects": [[50, 60, 400, 120], [300, 200, 480, 640], [0, 0, 480, 3]]}
    add("shapes_480x640", _shapes_mask(480, 640, shapes), shapes)
    return cases


# ----------------------------------------------------------------

def build_cases() -> dict:
    """{file name: golden object}, recomputed from the official code."""
    _official()
    rng = np.random.default_rng(20240917)
    post = {"resize": resize_cases(rng), "detections": detection_cases(rng), "selection": selection_cases(rng),
            "fill_holes": hole_cases(rng), "interactive": interactive_cases(rng)}
    return {"postprocess_cases.json": post, "rle_cases.json": {"rle": rle_cases(rng)}}


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
    for name, obj in build_cases().items():
        with open(os.path.join(HERE, name), "w") as f:
            f.write(dumps(obj))
        print(f"wrote {name} ({os.path.getsize(os.path.join(HERE, name))} bytes)")


if __name__ == "__main__":
    main()
