"""Checkpoints in the official `sam3.pt` layout: strict loading and synthesis (for tests).

The official image loader (`sam3.model_builder._load_checkpoint`) keeps keys
containing "detector" (prefix stripped), maps "tracker." to
"inst_interactive_predictor.model.", and loads with strict=False, only printing
missing keys. We run the same key mapping first and fail on any missing key,
unexpected key or shape mismatch, then hand the file to the official loader.
"""

from __future__ import annotations

import os

from sam3_tvm.errors import Sam3TvmError

TRACKER_PREFIX = "inst_interactive_predictor.model."


def _read(path: str) -> dict:
    import torch

    if not os.path.isfile(path):
        raise Sam3TvmError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise Sam3TvmError(f"cannot read checkpoint {path}: {e}") from None
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        ckpt = ckpt["model"]
    if not isinstance(ckpt, dict):
        raise Sam3TvmError(f"checkpoint {path} is not a state dict")
    return ckpt


def is_safetensors(path: str) -> bool:
    """A safetensors file starts with its header length (u64 LE) and a JSON object;
    `torch.save` files are zip archives ("PK")."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise Sam3TvmError(f"cannot read checkpoint {path}: {e}") from None
    return len(head) == 9 and head[8:9] == b"{"


def map_keys(ckpt: dict, has_tracker: bool = True) -> dict:
    """The official image-model key mapping (see module docstring)."""
    out = {k.replace("detector.", ""): v for k, v in ckpt.items() if "detector" in k}
    if has_tracker:
        out.update({k.replace("tracker.", TRACKER_PREFIX): v for k, v in ckpt.items() if "tracker" in k})
    return out


def check_keys(model, mapped: dict, path: str) -> None:
    """Fail with one message listing missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    shapes = sorted(f"{k}: checkpoint {tuple(mapped[k].shape)} vs model {tuple(expected[k].shape)}"
                    for k in set(expected) & set(mapped)
                    if tuple(mapped[k].shape) != tuple(expected[k].shape))
    problems = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", shapes)):
        if items:
            shown = "\n    ".join(items[:10]) + (f"\n    ... and {len(items) - 10} more" if len(items) > 10 else "")
            problems.append(f"  {len(items)} {title}:\n    {shown}")
    if problems:
        raise Sam3TvmError(f"checkpoint {path} does not match the model:\n" + "\n".join(problems))


def load_checkpoint(model, path: str) -> None:
    """Strict key/shape check, then the official loader."""
    from sam3.model_builder import _load_checkpoint

    ckpt = _read(path)
    check_keys(model, map_keys(ckpt, model.inst_interactive_predictor is not None), path)
    del ckpt
    _load_checkpoint(model, path)


def synthesize_checkpoint(model, path: str) -> int:
    """Write `model`'s weights in the official `sam3.pt` layout ({"model": {...}}
    with `detector.` / `tracker.` prefixes, complex `freqs_cis` kept).
    Returns the number of tensors written."""
    import torch

    out = {}
    for k, v in model.state_dict().items():
        if k.startswith(TRACKER_PREFIX):
            out["tracker." + k[len(TRACKER_PREFIX):]] = v.clone()
        else:
            out["detector." + k] = v.clone()
    torch.save({"model": out}, path)
    return len(out)
