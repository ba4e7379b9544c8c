"""A synthetic video clip (our own drawing, CC0) for the video tests, verify-video and
bench-video: a red square moving right, a blue disc moving left that passes in front of
it (an occlusion), a still yellow triangle, on a gradient."""

from __future__ import annotations

import os

import numpy as np


def _geometry(t: int, w: int, h: int) -> dict:
    s, r = w // 6, w // 11
    x0, y0 = w * 0.05 + t * w * 0.025, h * 0.4 + t * h * 0.004
    cx, cy = w * 0.85 - t * w * 0.02, h * 0.55
    return {"square": [x0, y0, x0 + s, y0 + s], "disc": [cx - r, cy - r, cx + r, cy + r],
            "triangle": [w * 0.6, h * 0.1, w * 0.9, h * 0.35]}


def frame(t: int, w: int, h: int):
    from PIL import Image, ImageDraw

    x = np.arange(w)[None, :]
    y = np.arange(h)[:, None]
    bg = np.stack(np.broadcast_arrays(40 + x * 60 // w, 90 + y * 80 // h, 140 + (x * y) % 7), -1)
    img = Image.fromarray(bg.astype(np.uint8))
    d = ImageDraw.Draw(img)
    g = _geometry(t, w, h)
    d.polygon([(w * 0.75, h * 0.1), (w * 0.9, h * 0.35), (w * 0.6, h * 0.35)], fill=(240, 200, 40))
    d.rectangle(g["square"], fill=(220, 30, 30))
    d.ellipse(g["disc"], fill=(30, 60, 220))  # drawn last: in front of the square
    return img


def object_boxes(t: int, w: int, h: int) -> list[list[float]]:
    """Boxes (x0, y0, x1, y1, pixels) of the square, the disc and the triangle on frame t."""
    g = _geometry(t, w, h)
    return [[round(v, 1) for v in g[k]] for k in ("square", "disc", "triangle")]


def write_clip(out_dir: str, frames: int = 26, w: int = 320, h: int = 240, loop: int = 0) -> str:
    """Writes out_dir/0.png ... out_dir/<frames-1>.png; returns out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    for t in range(frames):
        frame(t % loop if loop else t, w, h).save(os.path.join(out_dir, f"{t}.png"))
    return out_dir
