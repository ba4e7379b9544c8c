"""Golden outputs of the official SAM 3 video frame loader, for
tests/cpp/test_video_preprocess.cpp.

    .venv/bin/python tests/cpp/data/gen_video_preprocess_cases.py

writes tests/cpp/data/video_preprocess/golden.{json,bin} from test images that
already exist (tests/cpp/data/images/, assets/sample.png):

* "frames": for each (image, S), the official per-frame tensor of
  sam3.model.io_utils.load_video_frames_from_image_folder: `_load_img_as_tensor`
  (the official function: PIL open/convert("RGB"), TF.resize to (S, S) on the
  PIL image, TF.to_tensor) stored into a float16 tensor, `images -= mean` and
  `images /= std` in float16 (mean = std = 0.5, as float16 tensors), as
  little-endian float16 NCHW ("<f2": every value is a half, so this is exact and
  half the size of float32); and the uint8 HWC Pillow resize it came from
  (`TF.resize(img, (S, S))`, checked against the official tensor).
* "resize_only": Pillow's Image.resize((w, h), BILINEAR) at non-square sizes
  (the official loader only asks for squares; the C++ resize takes any size).
* "levels": every uint8 value through the official path: a 16x16 image holding
  all 256 values (R = v, G = 255 - v, B = 7v mod 256 at pixel v) at S = 16 (no
  resize), so the float16 normalisation is checked for every input level.
* "checksums": frames too big to store (assets/sample.png at S = 1008, the
  model's size, and 336): zlib CRC-32 of the uint8 HWC bytes and of the float32
  NCHW little-endian bytes after .float(), plus values at 64 seeded positions.

The JSON names each array's [offset, size] in golden.bin. Pillow's resize and
PyTorch's float16 CPU arithmetic are the same on every CPU, so nothing here
depends on the machine. tests/python/test_golden_video_preprocess.py regenerates
everything in memory (build_goldens) and checks the committed files match.
"""

from __future__ import annotations

import io
import json
import os
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
IMAGE_DIR = os.path.join(HERE, "images")
OUT_DIR = os.path.join(HERE, "video_preprocess")
SAMPLE = os.path.join(ROOT, "assets", "sample.png")

# (image in tests/cpp/data/images, S): up, down, mixed, one axis unchanged, odd
FRAME_CASES = [
    ("rgb_37x23.png", 56),       # up on both axes, non-square input
    ("rgb_37x23.png", 16),       # down on both
    ("rgb_37x23.png", 29),       # x down, y up
    ("rgb_37x23.png", 23),       # x down, y unchanged (Pillow skips that pass)
    ("photo_37x23.jpg", 40),     # JPEG input
    ("big_96x72.png", 50),       # down, non-integer ratios
    ("big_96x72.png", 24),       # down by exactly 4 and 3
    ("tall_5x64.png", 33),       # x up, y down
    ("grey_40x30.png", 41),      # grey input replicated to RGB
    ("palette_33x19.png", 25),   # palette input
    ("one_1x1.png", 7),          # a single pixel
]
RESIZE_ONLY = [("rgb_37x23.png", 13, 47), ("big_96x72.png", 101, 17), ("tall_5x64.png", 64, 5)]
CHECKSUM_SIZES = [1008, 336]
POSITIONS = 64
MEAN = STD = (0.5, 0.5, 0.5)  # the loader's defaults (img_mean, img_std)


def _import_io_utils():
    """sam3.model.io_utils. `import sam3` reaches sam3.model.edt, which imports
    Triton (absent from this CPU venv) for a training-only kernel. The compiler's
    shims stub it (and the rest of the test suite expects their stub); without
    the compiler package, an empty stand-in module does."""
    import importlib.util
    import sys
    import types

    import torch  # noqa: F401  (before sam3, which expects it loaded)

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
    from sam3.model import io_utils

    return io_utils


def official_frame(source, size: int) -> np.ndarray:
    """float32 [3, S, S]: load_video_frames_from_image_folder's work on one frame."""
    import torch

    _load_img_as_tensor = _import_io_utils()._load_img_as_tensor

    images = torch.zeros(1, 3, size, size, dtype=torch.float16)
    images[0], _, _ = _load_img_as_tensor(source, size)
    img_mean = torch.tensor(MEAN, dtype=torch.float16)[:, None, None]
    img_std = torch.tensor(STD, dtype=torch.float16)[:, None, None]
    images -= img_mean
    images /= img_std
    return images[0].float().numpy()  # what the tracker computes on


def pil_resize(source, w: int, h: int) -> np.ndarray:
    """uint8 HWC: the resize _load_img_as_tensor does (TF.resize on the PIL image)."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    img = Image.open(source).convert("RGB")
    if (w, h) == (img.width, img.height):
        return np.asarray(img)
    if w == h:
        return np.asarray(TF.resize(img, size=(h, w)))
    return np.asarray(img.resize((w, h), Image.BILINEAR))


def levels_png() -> bytes:
    v = np.arange(256, dtype=np.uint8)
    rgb = np.stack([v, 255 - v, (v.astype(np.int64) * 7 % 256).astype(np.uint8)], -1)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb.reshape(16, 16, 3)).save(buf, "PNG")
    return buf.getvalue()


def _check_u8_matches(u8: np.ndarray, frame: np.ndarray) -> None:
    """The stored resize is the one behind the official tensor."""
    import torch

    x = torch.from_numpy(u8.copy()).permute(2, 0, 1).float().div(255).half()
    x = ((x - 0.5) / 0.5).float().numpy()
    assert np.array_equal(x.view(np.uint32), frame.view(np.uint32))


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


def build_goldens(image_dir: str = IMAGE_DIR) -> dict:
    """{file name: bytes} of golden.json and golden.bin."""
    blob = bytearray()

    def put(data: bytes) -> list:
        blob.extend(data)
        return [len(blob) - len(data), len(data)]

    frames = []
    for name, size in FRAME_CASES:
        path = os.path.join(image_dir, name)
        frame = official_frame(path, size)
        u8 = pil_resize(path, size, size)
        _check_u8_matches(u8, frame)
        frames.append({"file": name, "size": size, "resized": put(u8.tobytes()),
                       "frame": put(frame.astype("<f2").tobytes())})

    resize_only = []
    for name, w, h in RESIZE_ONLY:
        u8 = pil_resize(os.path.join(image_dir, name), w, h)
        resize_only.append({"file": name, "width": w, "height": h, "data": put(u8.tobytes())})

    frame = official_frame(io.BytesIO(levels_png()), 16)
    levels = {"size": 16, "frame": put(frame.astype("<f2").tobytes())}

    checksums = []
    for size in CHECKSUM_SIZES:
        frame = official_frame(SAMPLE, size)
        u8 = pil_resize(SAMPLE, size, size)
        _check_u8_matches(u8, frame)
        pos = np.random.RandomState(size).randint(0, size, (POSITIONS, 2))
        checksums.append({
            "file": "assets/sample.png", "size": size,
            "resized_crc32": zlib.crc32(u8.tobytes()),
            "frame_crc32": zlib.crc32(frame.astype("<f4").tobytes()),
            # [y, x, R, G, B] of the uint8 resize and the three float values
            "samples": [[int(y), int(x)] + u8[y, x].tolist() + frame[:, y, x].tolist()
                        for y, x in pos],
        })

    index = {"blob": "golden.bin", "frames": frames, "resize_only": resize_only,
             "levels": levels, "checksums": checksums}
    return {"golden.json": _dump(index).encode(), "golden.bin": bytes(blob)}


def main() -> None:
    os.makedirs(OUT_DIR, exist_ok=True)
    total = 0
    for name, data in build_goldens().items():
        with open(os.path.join(OUT_DIR, name), "wb") as f:
            f.write(data)
        total += len(data)
    print(f"wrote golden.json + golden.bin, {total / 1024:.0f} KiB, into {OUT_DIR}")


if __name__ == "__main__":
    main()
