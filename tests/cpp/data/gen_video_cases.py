"""Video fixtures for tests/cpp/test_video_reader.cpp.

    .venv/bin/python tests/cpp/data/gen_video_cases.py

needs the `ffmpeg` CLI (scripts/apt-deps.sh installs it; Debian 12's is FFmpeg
5.1 with libx264) and writes into tests/cpp/data/video/ (about 45 KB in all):

* frames/: 6 PNG frames, 40x30 RGB, distinct content (a gradient, a square that
  moves, seeded noise), named 1 2 3 5 8 13 so that name order (1, 13, 2, ...)
  is wrong and the official int(stem) order is right; "8.PNG" has an upper-case
  extension, which the official loader accepts (it lowercases).
* frames_ffv1.mkv: the same frames, in numeric order, as lossless FFV1 in
  pix_fmt bgr0 (RGB samples, so decoding to RGB24 must give the PNGs back
  exactly):
      ffmpeg -framerate 10 -i %d.png -c:v ffv1 -pix_fmt bgr0 frames_ffv1.mkv
* bframes.mp4: 20 synthetic frames (as above, 64x48, 25 fps) as H.264 with
  B-frames (2 per group, b-adapt off) and a keyframe every 5 frames, so the
  decode order differs from the presentation order and seeks have somewhere to
  land; moov at the front (+faststart):
      ffmpeg -f rawvideo -pix_fmt rgb24 -s 64x48 -r 25 -i - -c:v libx264
             -pix_fmt yuv420p -g 5 -keyint_min 5 -sc_threshold 0 -bf 2
             -x264-params b-adapt=0:threads=1 -movflags +faststart bframes.mp4
* bframes.avi: the same H.264 stream in AVI, whose packets carry no pts (only
  dts), so frames are numbered in decoder output order; it decodes to the same
  frames as bframes.mp4.
* bframes_reference.json: the ffmpeg CLI's own decode of bframes.mp4 to rgb24
  with the reader's swscale flags (bilinear+accurate_rnd+full_chroma_int+bitexact,
  one output frame per decoded frame): frame count, size and the zlib CRC-32 of
  every frame's RGB bytes. ctest compares against this file, never runs ffmpeg.
* truncated.mp4: bframes.mp4 cut after 60% of its bytes (the index survives,
  the end of the media data does not).
* not_a_video.mp4: a text file with a video extension.
* audio_only.mkv: 50 ms of a sine tone, no video stream.
* with_bmp/: 0.png and 1.bmp, a folder the runtime cannot decode.
* huge_frame.mkv: one black 14000x13000 grey FFV1 frame (182 Mpx, over the runtime's
  pixel limit, sam3/limits.h; 9 KB on disk).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "video")
FRAME_NAMES = ["1.png", "2.png", "3.png", "5.png", "8.PNG", "13.png"]
W, H = 40, 30
SWS_FLAGS = "bilinear+accurate_rnd+full_chroma_int+bitexact"
# No encoder version strings or dates in the files, so reruns give the same bytes.
BITEXACT = ["-fflags", "+bitexact", "-flags", "+bitexact", "-map_metadata", "-1"]


def frame(i: int, w: int = W, h: int = H, noise: int = 6) -> np.ndarray:
    """HxWx3 uint8: a diagonal gradient, a square moving right, mild noise."""
    rng = np.random.RandomState(100 + i)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y + 20 * i) % 256], -1)
    img = img.astype(np.int64)
    s = h * 2 // 5
    x0 = (3 + 3 * i) % (w - s)
    img[h // 4:h // 4 + s, x0:x0 + s] = [(60 * i) % 256, (255 - 40 * i) % 256, 90]
    img += rng.randint(-noise, noise + 1, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def ffmpeg(*args: str, cwd: str | None = None, stdin: bytes | None = None) -> bytes:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, input=stdin, stdout=subprocess.PIPE).stdout


def cli_decode(path: str) -> dict:
    """The ffmpeg CLI's rgb24 decode of `path`: count, size, CRC-32 per frame."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height", "-of", "json", path],
        check=True, stdout=subprocess.PIPE).stdout
    stream = json.loads(probe)["streams"][0]
    w, h = stream["width"], stream["height"]
    raw = ffmpeg("-i", path, "-map", "0:v:0", "-sws_flags", SWS_FLAGS, "-fps_mode", "passthrough",
                 "-pix_fmt", "rgb24", "-f", "rawvideo", "-")
    size = w * h * 3
    assert len(raw) % size == 0
    crcs = [zlib.crc32(raw[k:k + size]) for k in range(0, len(raw), size)]
    return {"file": os.path.basename(path), "width": w, "height": h, "frames": len(crcs),
            "sws_flags": SWS_FLAGS, "crc32": crcs}


def main() -> None:
    from PIL import Image

    if shutil.which("ffmpeg") is None:
        raise SystemExit("needs the ffmpeg CLI (bash scripts/apt-deps.sh)")
    for sub in ("frames", "with_bmp"):  # rewritten whole; the files below are overwritten
        shutil.rmtree(os.path.join(OUT, sub), ignore_errors=True)
        os.makedirs(os.path.join(OUT, sub))

    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(FRAME_NAMES):
            img = Image.fromarray(frame(i))
            img.save(os.path.join(OUT, "frames", name), "PNG")
            img.save(os.path.join(tmp, f"{i + 1}.png"), "PNG")  # ffmpeg's %d.png sequence
        ffmpeg("-nostdin", "-framerate", "10", "-i", "%d.png", "-c:v", "ffv1", "-pix_fmt", "bgr0", *BITEXACT,
               os.path.join(OUT, "frames_ffv1.mkv"), cwd=tmp)

    mp4 = os.path.join(OUT, "bframes.mp4")
    clip = b"".join(frame(i, 64, 48, noise=2).tobytes() for i in range(20))
    h264 = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x48", "-r", "25", "-i", "-",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "5", "-keyint_min", "5",
            "-sc_threshold", "0", "-bf", "2", "-x264-params", "b-adapt=0:threads=1", *BITEXACT]
    ffmpeg(*h264, "-movflags", "+faststart", mp4, stdin=clip)
    avi = os.path.join(OUT, "bframes.avi")
    ffmpeg(*h264, avi, stdin=clip)
    assert cli_decode(avi)["crc32"] == cli_decode(mp4)["crc32"]
    ref = cli_decode(mp4)
    assert ref["frames"] == 20 and len(set(ref["crc32"])) == 20, ref
    with open(os.path.join(OUT, "bframes_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")

    with open(mp4, "rb") as f:
        data = f.read()
    with open(os.path.join(OUT, "truncated.mp4"), "wb") as f:
        f.write(data[:len(data) * 6 // 10])
    with open(os.path.join(OUT, "not_a_video.mp4"), "w") as f:
        f.write("This is a text file, not a video.\n")
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000", "-t", "0.05",
           "-c:a", "pcm_s16le", *BITEXACT, os.path.join(OUT, "audio_only.mkv"))

    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=14000x13000:r=1", "-frames:v", "1", "-c:v", "ffv1",
           "-pix_fmt", "gray", *BITEXACT, os.path.join(OUT, "huge_frame.mkv"))

    Image.fromarray(frame(0)[:4, :4]).save(os.path.join(OUT, "with_bmp", "0.png"), "PNG")
    Image.fromarray(frame(1)[:4, :4]).save(os.path.join(OUT, "with_bmp", "1.bmp"), "BMP")

    total = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(OUT) for n in ns)
    print(f"wrote {OUT}: {total / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
