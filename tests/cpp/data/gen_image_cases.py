"""Test images and golden outputs for tests/cpp/test_image.cpp.

    .venv/bin/python tests/cpp/data/gen_image_cases.py

writes into tests/cpp/data/images/:

* the test images: our own synthetic content (gradients, a disk, a bar, noise;
  fixed seeds) in every layout the decoder must handle. Most are written by
  Pillow; 16-bit RGB, 16-bit grey+alpha and Adam7-interlaced PNGs, which Pillow
  cannot write, by the small encoder below.
* golden.bin + golden.json: for each image, Pillow's decoded RGB pixels
  (`Image.open(...).convert("RGB")`, via sam3_tvm.predict.load_image) and the
  official uint8 resize (the first steps of Sam3Processor's transform:
  to_image -> ToDtype(uint8) -> v2.Resize) at a few target sizes; the official
  float32 preprocess output (sam3_tvm.predict.preprocess) for two images. The
  JSON names each array's [offset, size] in golden.bin (raw uint8 HWC, or
  little-endian float32 NCHW for "preprocess").
* for assets/sample.png at S=1008 and 336 only a checksum of the official uint8
  resize (a 3 MB golden would be too big): zlib CRC-32 of the HWC bytes,
  per-channel sums and sums of squares, and the RGB values at 256 fixed pixel
  positions (seeded); likewise the CRC-32 of the decoded pixels.

torchvision resizes uint8 natively only on AVX2/AVX512 CPUs (elsewhere it goes
through float32 and rounds, which differs by 1 in places), and that native
kernel is what the C++ code reproduces, so generation refuses other CPUs.
tests/python/test_golden_images.py regenerates everything in memory
(build_images / build_goldens) and checks the committed files match.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
IMAGE_DIR = os.path.join(HERE, "images")
SAMPLE = os.path.join(ROOT, "assets", "sample.png")

SIZES = [(16, 16), (41, 41), (13, 47)]  # (width, height): down, up, non-square
LARGE = [(64, 64), (97, 97)]  # for a few images only, to keep the data small
SAMPLE_SIZES = [1008, 336]
SAMPLE_POSITIONS = 256
PREPROCESS_CASES = [("rgb_37x23.png", 16), ("photo_37x23.jpg", 16)]


def synthetic(w: int, h: int, seed: int, channels: int = 3) -> np.ndarray:
    """Gradients, a disk and a bar with hard edges (where antialiasing matters), noise."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = x / max(w - 1, 1), y / max(h - 1, 1)
    planes = [255 * u, 255 * v, 255 * (1 - u) * (0.5 + 0.5 * v), 255 * (1 - v)]
    img = np.stack(planes[:channels], -1)
    cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, 0.3 * min(w, h)
    img[(x - cx) ** 2 + (y - cy) ** 2 <= r * r] = rng.randint(0, 256, channels)
    x0, y0 = rng.randint(0, max(w // 2, 1)), rng.randint(0, max(h // 2, 1))
    img[y0:y0 + max(h // 5, 1), x0:x0 + max(w // 3, 1)] = 255 * rng.randint(0, 2, channels)
    img += rng.normal(0, 12, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------- encoders

def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def raw_png(a: np.ndarray, color_type: int, interlace: bool = False) -> bytes:
    """PNG from an HxWxC uint8/uint16 array (filter 0 on every row)."""
    h, w = a.shape[:2]
    depth = 16 if a.dtype == np.uint16 else 8
    a = a.astype(">u2") if depth == 16 else a
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = a[y0::dy, x0::dx]
        if sub.shape[0] and sub.shape[1]:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b""))


def pil_bytes(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def build_images() -> dict:
    """{file name: bytes} of every test image."""
    from PIL import Image

    rgb = lambda w, h, s: Image.fromarray(synthetic(w, h, s))  # noqa: E731
    grey = lambda w, h, s: rgb(w, h, s).convert("L")  # noqa: E731
    palette = rgb(33, 19, 5).quantize(200)
    palette4 = rgb(15, 11, 6).quantize(16)
    grey16 = (synthetic(17, 9, 8, 1)[..., 0].astype(np.uint16) * 3)  # half above 255
    grey16[0, :4] = [0, 255, 256, 65535]
    # Random low bytes: Pillow keeps the high byte of 16-bit samples (no rounding).
    low = np.random.RandomState(9).randint(0, 256, (13, 19, 3)).astype(np.uint16)
    rgb16 = synthetic(19, 13, 9).astype(np.uint16) * 256 + low
    ga16 = synthetic(11, 7, 10, 2).astype(np.uint16) * 256 + 200
    cmyk = Image.frombytes("CMYK", (24, 16), synthetic(24, 16, 16, 4).tobytes())
    return {
        "rgb_37x23.png": pil_bytes(rgb(37, 23, 1), "PNG"),
        "grey_40x30.png": pil_bytes(grey(40, 30, 2), "PNG"),
        "grey_alpha_21x17.png": pil_bytes(Image.fromarray(synthetic(21, 17, 3, 2), "LA"), "PNG"),
        "rgba_32x24.png": pil_bytes(Image.fromarray(synthetic(32, 24, 4, 4), "RGBA"), "PNG"),
        "palette_33x19.png": pil_bytes(palette, "PNG", transparency=3),
        "palette4_15x11.png": pil_bytes(palette4, "PNG", bits=4),
        "bilevel_20x10.png": pil_bytes(grey(20, 10, 7).convert("1"), "PNG"),
        "grey16_17x9.png": pil_bytes(Image.fromarray(grey16), "PNG"),
        "rgb16_19x13.png": raw_png(rgb16, 2),
        "grey_alpha16_11x7.png": raw_png(ga16, 4),
        "interlaced_23x17.png": raw_png(synthetic(23, 17, 11), 2, interlace=True),
        "rgb_trns_12x8.png": pil_bytes(rgb(12, 8, 12), "PNG", transparency=(0, 0, 0)),
        "one_1x1.png": pil_bytes(rgb(1, 1, 13), "PNG"),
        "tall_5x64.png": pil_bytes(rgb(5, 64, 14), "PNG"),
        "big_96x72.png": pil_bytes(rgb(96, 72, 15), "PNG"),
        "photo_37x23.jpg": pil_bytes(rgb(37, 23, 17), "JPEG", quality=90),
        "photo422_40x30.jpg": pil_bytes(rgb(40, 30, 18), "JPEG", quality=85, subsampling=1),
        "progressive_33x21.jpg": pil_bytes(rgb(33, 21, 19), "JPEG", quality=92, subsampling=0,
                                           progressive=True),
        "grey_30x20.jpg": pil_bytes(grey(30, 20, 20), "JPEG", quality=90),
        "cmyk_24x16.jpg": pil_bytes(cmyk, "JPEG", quality=90),
    }


LARGE_FOR = {"rgb_37x23.png", "photo_37x23.jpg", "big_96x72.png"}


# --------------------------------------------------------------- goldens

def _official_u8(img, w: int, h: int) -> np.ndarray:
    """The uint8 stage of Sam3Processor.transform, as HWC."""
    import torch
    from torchvision.transforms import v2

    t = v2.Compose([v2.ToDtype(torch.uint8, scale=True), v2.Resize(size=(h, w))])
    return t(v2.functional.to_image(img)).permute(1, 2, 0).contiguous().numpy()


def _checksum(a: np.ndarray, positions: np.ndarray) -> dict:
    flat = a.reshape(-1, 3).astype(np.int64)
    return {
        "crc32": zlib.crc32(a.tobytes()),
        "sum": flat.sum(0).tolist(),
        "sum_sq": (flat * flat).sum(0).tolist(),
        "samples": [[int(y), int(x)] + a[y, x].tolist() for y, x in positions],
    }


def _dump(index: dict) -> str:
    """JSON with one list element per line: small, yet diffs stay readable."""
    one = lambda v: json.dumps(v, sort_keys=True, separators=(",", ":"))  # noqa: E731
    parts = []
    for key in sorted(index):
        value = index[key]
        if isinstance(value, list):
            value = "[\n" + ",\n".join(one(v) for v in value) + "\n]"
        else:
            value = one(value)
        parts.append(one(key) + ":" + value)
    text = "{\n" + ",\n".join(parts) + "\n}\n"
    assert json.loads(text) == index
    return text


def native_uint8_resize() -> bool:
    import torch

    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def build_goldens(image_dir: str = IMAGE_DIR) -> dict:
    """{file name: bytes} of golden.json and golden.bin, from the images in image_dir."""
    if not native_uint8_resize():
        raise RuntimeError("goldens need torchvision's native uint8 resize (an AVX2/AVX512 CPU)")
    compiler = os.path.join(ROOT, "compiler")
    if compiler not in sys.path:
        sys.path.insert(0, compiler)
    from sam3_tvm.tools.predict import load_image, preprocess

    blob = bytearray()

    def put(data: bytes) -> list:
        blob.extend(data)
        return [len(blob) - len(data), len(data)]

    images = []
    for name in sorted(build_images()):
        img = load_image(os.path.join(image_dir, name))
        sizes = SIZES + (LARGE if name in LARGE_FOR else [])
        images.append({
            "file": name, "width": img.width, "height": img.height,
            "pixels": put(np.asarray(img).tobytes()),
            "resized": [{"width": w, "height": h, "data": put(_official_u8(img, w, h).tobytes())}
                        for w, h in sizes],
        })
    pre = []
    for name, size in PREPROCESS_CASES:
        x = preprocess(load_image(os.path.join(image_dir, name)), size)
        pre.append({"file": name, "size": size, "data": put(x.astype("<f4").tobytes())})

    img = load_image(SAMPLE)
    sample = {"file": "assets/sample.png", "width": img.width, "height": img.height,
              "pixels_crc32": zlib.crc32(np.asarray(img).tobytes())}
    sample_resized = []
    for s in SAMPLE_SIZES:
        pos = np.random.RandomState(s).randint(0, s, (SAMPLE_POSITIONS, 2))
        sample_resized.append({"size": s, **_checksum(_official_u8(img, s, s), pos)})

    index = {"blob": "golden.bin", "images": images, "preprocess": pre, "sample": sample,
             "sample_resized": sample_resized}
    text = _dump(index)
    return {"golden.json": text.encode(), "golden.bin": bytes(blob)}


def main() -> None:
    os.makedirs(IMAGE_DIR, exist_ok=True)
    for name, data in build_images().items():
        with open(os.path.join(IMAGE_DIR, name), "wb") as f:
            f.write(data)
    total = 0
    for name, data in build_goldens(IMAGE_DIR).items():
        with open(os.path.join(IMAGE_DIR, name), "wb") as f:
            f.write(data)
    for name in os.listdir(IMAGE_DIR):
        total += os.path.getsize(os.path.join(IMAGE_DIR, name))
    print(f"wrote {len(os.listdir(IMAGE_DIR))} files, {total / 1024:.0f} KiB, into {IMAGE_DIR}")


if __name__ == "__main__":
    main()
