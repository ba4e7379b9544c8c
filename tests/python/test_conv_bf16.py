"""The bf16 same-convolution kernel (lowering/conv_bf16.py): with AMX, against float64
PyTorch on inputs and weights rounded to bf16 in NumPy (round to nearest even), so only
the fp32 sums' order may differ; partial pixel blocks, output channels that are not a
multiple of the AMX 32-row blocks, two images, 3x3 and 1x1 taps. Without AMX
(SAM3_NO_AMX, a fresh process) it must run conv_f32's fp32 kernel: the fp32 result."""
import os
import subprocess
import sys

import numpy as np
import pytest

from sam3_tvm.bundle.runtime import _cpu_flags
from test_conv_f32 import run_conv

needs_bf16 = pytest.mark.skipif("avx512_bf16" not in _cpu_flags(), reason="CPU without AVX512_BF16")
needs_amx = pytest.mark.skipif("amx_bf16" not in _cpu_flags(), reason="CPU without AMX-BF16")


def _round_bf16(a):
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


def run_case(n, ci, co, h, w, k, path, amx=True):
    import torch

    from sam3_tvm.lowering import conv_bf16

    lib = conv_bf16.standalone_library(n, ci, co, h, w, k, path)
    x, wt, got = run_conv(lib, n, ci, co, h, w, k, seed=ci + co + k)
    p = k // 2
    rounded = _round_bf16 if amx else (lambda a: a)
    ref = torch.nn.functional.conv2d(torch.from_numpy(rounded(x)).double(),
                                     torch.from_numpy(rounded(wt)).double(), padding=p).numpy()
    # the same products (bf16 with AMX, fp32 without); fp32 sums over ci * k * k terms
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    if amx:  # bf16 is what ran: far from the fp32 convolution's rounding
        exact = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(wt).double(),
                                           padding=p).numpy()
        rel = np.linalg.norm(got - exact) / np.linalg.norm(exact)
        assert 1e-4 < rel < 1e-2, rel


CASES = [
    (2, 32, 40, 9, 7, 3),     # 2 images, 99 pixels: a full block and a partial one; co 40 = 32 + 8
    (1, 64, 64, 20, 30, 3),   # 10 blocks (the last partial), co two AMX row blocks
    (1, 96, 6, 5, 13, 1),     # 1x1 taps (K = 96), co below one AMX block
]


@needs_amx
@pytest.mark.parametrize("n,ci,co,h,w,k", CASES)
def test_conv_bf16_matches_rounded_float64(n, ci, co, h, w, k, tmp_path):
    run_case(n, ci, co, h, w, k, str(tmp_path / "conv.so"))


@needs_bf16
def test_conv_bf16_without_amx(tmp_path):
    """conv_f32's kernel where AMX is not ready (SAM3_NO_AMX=1 is read once per process)."""
    code = ("import sys; sys.path.insert(0, %r); from test_conv_bf16 import run_case, CASES\n"
            "for i, c in enumerate(CASES): run_case(*c, %r + str(i) + '.so', amx=False)\n"
            % (os.path.dirname(__file__), str(tmp_path / "conv")))
    env = dict(os.environ, SAM3_NO_AMX="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]


def test_only_whole_pair_blocks_are_swapped():
    """K = taps * ci must be a multiple of 32; the others keep their tag for conv_f32."""
    from sam3_tvm.lowering import conv_bf16

    assert conv_bf16.supported(9 * 256) and conv_bf16.supported(9 * 32)
    assert not conv_bf16.supported(9 * 5) and not conv_bf16.supported(9 * 16)
