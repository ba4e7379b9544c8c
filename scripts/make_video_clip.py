"""Draw a synthetic video clip (our own work, CC0) for the video tests and demo.

`python scripts/make_video_clip.py OUT_DIR [--frames 26] [--size 320x240] [--video clip.mkv] [--loop N]`
writes OUT_DIR/0.png ... OUT_DIR/<n-1>.png: a red square moving right and a blue disc
moving left across a gradient; the disc passes in front of the square (an occlusion)
in the middle frames; a yellow triangle stays still. With --video, the same frames are
also encoded losslessly (FFV1, RGB) with the ffmpeg CLI, so a decoder must give back
exactly the PNG pixels.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
from PIL import Image, ImageDraw


def frame(t: int, w: int, h: int) -> Image.Image:
    x = np.arange(w)[None, :]
    y = np.arange(h)[:, None]
    bg = np.stack(np.broadcast_arrays(40 + x * 60 // w, 90 + y * 80 // h, 140 + (x * y) % 7), -1)
    img = Image.fromarray(bg.astype(np.uint8))
    d = ImageDraw.Draw(img)
    d.polygon([(w * 0.75, h * 0.1), (w * 0.9, h * 0.35), (w * 0.6, h * 0.35)], fill=(240, 200, 40))
    s = w // 6  # red square moving right and slightly down
    x0, y0 = w * 0.05 + t * w * 0.025, h * 0.4 + t * h * 0.004
    d.rectangle([x0, y0, x0 + s, y0 + s], fill=(220, 30, 30))
    r = w // 11  # blue disc moving left, drawn last: in front of the square when they meet
    cx, cy = w * 0.85 - t * w * 0.02, h * 0.55
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(30, 60, 220))
    return img


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--frames", type=int, default=26)
    ap.add_argument("--size", default="320x240", help="WxH")
    ap.add_argument("--video", help="also write this lossless video file (needs the ffmpeg CLI)")
    ap.add_argument("--loop", type=int, default=0, help="repeat the motion every LOOP frames (long clips "
                    "whose content stays alike, for memory tests)")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    os.makedirs(a.out_dir, exist_ok=True)
    for t in range(a.frames):
        frame(t % a.loop if a.loop else t, w, h).save(os.path.join(a.out_dir, f"{t}.png"))
    if a.video:
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-framerate", "10", "-start_number", "0",
                        "-i", os.path.join(a.out_dir, "%d.png"), "-c:v", "ffv1", "-pix_fmt", "bgr0",
                        a.video], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
