"""End-to-end segmentation through a compiled bundle, from Python (`sam3-tvm run`).

This is the reference pipeline the C++ runtime reproduces: it mirrors
`Sam3Processor` (text / exemplar-box prompts) and
`SAM3InteractiveImagePredictor.predict` (point prompts). Pre- and
post-processing use the same torchvision/torch calls as the official code, so
its outputs can be compared with the official model one to one.
"""

from __future__ import annotations

import json
import os

import numpy as np

from sam3_tvm.model import components as C
from sam3_tvm.errors import Sam3TvmError


def load_image(path: str):
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise Sam3TvmError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            img = im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise Sam3TvmError(f"cannot decode image {path}: {e}") from None
    if img.width == 0 or img.height == 0:
        raise Sam3TvmError(f"image {path} has zero size")
    return img


def preprocess(img, size: int) -> np.ndarray:
    """Exactly `Sam3Processor.transform`: uint8 -> resize (bilinear, antialias) -> /255 -> (x-.5)/.5."""
    import torch
    from torchvision.transforms import v2

    t = v2.Compose([v2.ToDtype(torch.uint8, scale=True), v2.Resize(size=(size, size)),
                    v2.ToDtype(torch.float32, scale=True),
                    v2.Normalize(mean=[0.5] * 3, std=[0.5] * 3)])
    return t(v2.functional.to_image(img)).unsqueeze(0).numpy()


def tokenize(text: str, vocab: str, context_length: int) -> np.ndarray:
    from sam3_tvm.model.shims import apply

    apply()  # `import sam3` needs the import-time shims
    from sam3.model.tokenizer_ve import SimpleTokenizer

    if not text.strip():
        raise Sam3TvmError("empty text prompt")
    return SimpleTokenizer(bpe_path=vocab)([text], context_length=context_length).numpy()


def parse_box(s: str, w: int, h: int):
    """'x0,y0,x1,y1[,neg]' in pixels -> (x0,y0,x1,y1, positive)."""
    parts = s.split(",")
    if len(parts) not in (4, 5) or (len(parts) == 5 and parts[4] not in ("pos", "neg")):
        raise Sam3TvmError(f"bad box {s!r}: expected x0,y0,x1,y1[,pos|neg]")
    try:
        x0, y0, x1, y1 = map(float, parts[:4])
    except ValueError:
        raise Sam3TvmError(f"bad box {s!r}: coordinates must be numbers") from None
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise Sam3TvmError(f"box {s!r} is empty or outside the {w}x{h} image")
    return x0, y0, x1, y1, not (len(parts) == 5 and parts[4] == "neg")


def parse_point(s: str, w: int, h: int):
    parts = s.split(",")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("pos", "neg")):
        raise Sam3TvmError(f"bad point {s!r}: expected x,y[,pos|neg]")
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise Sam3TvmError(f"bad point {s!r}: coordinates must be numbers") from None
    if not (0 <= x <= w and 0 <= y <= h):
        raise Sam3TvmError(f"point {s!r} is outside the {w}x{h} image")
    return x, y, not (len(parts) == 3 and parts[2] == "neg")


def _resize_logits(logits: np.ndarray, h: int, w: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(logits)[:, None]
    return F.interpolate(t, (h, w), mode="bilinear", align_corners=False)[:, 0].numpy()


def segment_concept(bundle, feats, img_hw, text, boxes, threshold: float):
    """Text and/or exemplar boxes -> kept instances (as Sam3Processor._forward_grounding)."""
    man = bundle.manifest
    cfg = man["config"]
    h, w = img_hw
    ids = tokenize(text if text is not None else "visual", os.path.join(bundle.path, man["tokenizer"]["vocab"]),
                   cfg["context_length"])
    text_feats, text_mask = bundle.run("text_encoder", ids)
    nb = cfg["max_boxes"]
    if len(boxes) > nb:
        raise Sam3TvmError(f"at most {nb} exemplar boxes are supported, got {len(boxes)}")
    bx = np.zeros((nb, 1, 4), np.float32)
    lab = np.zeros((nb, 1), np.int64)
    pad = np.ones((1, nb), bool)
    for i, (x0, y0, x1, y1, pos) in enumerate(boxes):
        bx[i, 0] = [(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]
        lab[i, 0] = int(pos)
        pad[0, i] = False
    logits, pboxes, presence, masks, _ = bundle.run(
        "grounding_head", feats[0], feats[1], feats[2], text_feats, text_mask, bx, lab, pad)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    scores = sig(logits[0]) * sig(presence[0, 0])
    keep = np.nonzero(scores > threshold)[0]
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    cx, cy, bw, bh = pboxes[0, keep].T
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1) * [w, h, w, h]
    mask_prob = sig(_resize_logits(masks[0, keep], h, w))
    return [{"score": float(scores[k]), "box": [float(v) for v in xyxy[i]], "mask": mask_prob[i] > 0.5,
             "query": int(k)} for i, k in enumerate(keep)]


def segment_points(bundle, feats, img_hw, points, box=None, multimask: bool = True):
    """Points (and optionally one box) -> the best mask (as the SAM-1 task predictor).

    Single-mask mode here takes decoder output 0 as is; the official decoder's
    stability fallback (`dynamic_multimask_via_stability`) is implemented in the
    C++ runtime (`select_mask_candidates`), not in this Python mirror."""
    h, w = img_hw
    size = bundle.manifest["config"]["image_size"]
    coords, labels = [], []
    if box is not None:  # the predictor puts the box corners first, labels 2 and 3
        coords += [[box[0], box[1]], [box[2], box[3]]]
        labels += [2, 3]
    for x, y, pos in points:
        coords.append([x, y])
        labels.append(1 if pos else 0)
    mp = bundle.manifest["config"]["max_points"]
    if not coords or len(coords) > mp:
        raise Sam3TvmError(f"interactive prompts need 1..{mp} points (a box counts as 2)")
    c = np.array(coords, np.float32)[None] / np.array([w, h], np.float32) * size
    m = bundle.manifest["config"]["mask_size"]
    masks, iou, obj, _, _ = bundle.run("interactive_decoder", feats[5], feats[3], feats[4], c,
                                       np.array(labels, np.int32)[None],
                                       np.zeros((1, 1, m, m), np.float32), np.zeros((1,), np.float32),
                                       np.ones((1,), np.float32))  # + no_mem_embed, as predict_inst
    if multimask:
        masks, iou = masks[:, 1:], iou[:, 1:]
    else:
        masks, iou = masks[:, :1], iou[:, :1]
    best = int(np.argmax(iou[0]))
    # the official post-processing: fill small background holes, upscale, threshold at 0
    import torch
    from sam3.model.utils.sam1_utils import SAM2Transforms

    post = SAM2Transforms(resolution=size, mask_threshold=0.0, max_hole_area=256.0)
    low = torch.from_numpy(np.ascontiguousarray(masks[:, best:best + 1]))
    full = post.postprocess_masks(low, (h, w))[0, 0].numpy() > 0.0
    return [{"score": float(iou[0, best]), "mask": full, "object_score": float(obj[0, 0])}]


def write_outputs(out_dir: str, img, instances, prompt: dict) -> str:
    from PIL import Image
    from pycocotools import mask as mask_utils

    os.makedirs(out_dir, exist_ok=True)
    rgb = np.asarray(img).astype(np.float32)
    overlay = rgb.copy()
    palette = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                        [145, 30, 180], [70, 240, 240], [240, 50, 230]], np.float32)
    results = []
    for i, inst in enumerate(instances):
        m = inst["mask"]
        Image.fromarray((m * 255).astype(np.uint8)).save(os.path.join(out_dir, f"mask_{i:03d}.png"))
        overlay[m] = 0.5 * overlay[m] + 0.5 * palette[i % len(palette)]
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        ys, xs = np.nonzero(m)
        box = inst.get("box") or ([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
                                  if xs.size else [0.0, 0.0, 0.0, 0.0])
        results.append({"id": i, "score": inst["score"], "box": box, "area": int(m.sum()),
                        "mask_file": f"mask_{i:03d}.png",
                        "segmentation": {"size": list(m.shape), "counts": rle["counts"].decode()}})
    Image.fromarray(overlay.clip(0, 255).astype(np.uint8)).save(os.path.join(out_dir, "overlay.png"))
    path = os.path.join(out_dir, "result.json")
    with open(path, "w") as f:
        json.dump({"image": {"width": img.width, "height": img.height}, "prompt": prompt,
                   "instances": results}, f, indent=2)
    return path


def run(bundle_dir: str, image: str, out_dir: str, text=None, boxes=(), points=(),
        threshold: float = 0.5, multimask: bool = True) -> dict:
    from sam3_tvm.bundle.runtime import Bundle

    if text is None and not boxes and not points:
        raise Sam3TvmError("give a prompt: --text, --box or --point")
    if text is not None and not text.strip():
        raise Sam3TvmError("empty text prompt")
    img = load_image(image)
    bundle = Bundle(bundle_dir)
    w, h = img.width, img.height
    pboxes = [parse_box(b, w, h) for b in boxes]
    ppoints = [parse_point(p, w, h) for p in points]
    feats = bundle.run("image_encoder", preprocess(img, bundle.manifest["config"]["image_size"]))
    if ppoints:
        box = pboxes[0][:4] if len(pboxes) == 1 and text is None else None
        if pboxes and box is None:
            raise Sam3TvmError("point prompts take at most one box and no text")
        instances = segment_points(bundle, feats, (h, w), ppoints, box, multimask)
    else:
        instances = segment_concept(bundle, feats, (h, w), text, pboxes, threshold)
    prompt = {"text": text, "boxes": list(boxes), "points": list(points), "threshold": threshold}
    path = write_outputs(out_dir, img, instances, prompt)
    return {"result": path, "instances": len(instances)}
