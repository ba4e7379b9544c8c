"""Draw a synthetic video clip (our own work, CC0) for the video tests and demo.

`python scripts/make_video_clip.py OUT_DIR [--frames 26] [--size 320x240] [--video clip.mkv] [--loop N]`
writes OUT_DIR/0.png ... OUT_DIR/<n-1>.png (sam3_tvm.tools.synthetic_clip): a red square
moving right and a blue disc moving left across a gradient; the disc passes in front of
the square (an occlusion) in the middle frames; a yellow triangle stays still. With
--video, the same frames are also encoded losslessly (FFV1, RGB) with the ffmpeg CLI, so
a decoder must give back exactly the PNG pixels.
"""
import argparse
import os
import subprocess
import sys

from sam3_tvm.tools.synthetic_clip import write_clip


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
    write_clip(a.out_dir, a.frames, w, h, a.loop)
    if a.video:
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-framerate", "10", "-start_number", "0",
                        "-i", os.path.join(a.out_dir, "%d.png"), "-c:v", "ffv1", "-pix_fmt", "bgr0",
                        a.video], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
