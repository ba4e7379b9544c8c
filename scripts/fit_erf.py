"""Fit erf(u) ~ u P(u^2) / Q(u^2) on [0, 4] (degrees 5 and 5, Q(0) = 1) for the GELU
epilogue of the bf16 linear kernel (compiler/sam3_tvm/lowering/bf16.py): iterated
linear least squares (the Loeb / Sanathanan-Koerner linearisation, reweighted towards the
largest errors), then the error of the fp32 evaluation. Prints the coefficients, lowest
power first. Beyond |u| = 4, erf is +-1 within 1.6e-8.

    .venv/bin/python scripts/fit_erf.py
"""
from math import erf

import numpy as np


def fit(dp: int = 5, dq: int = 5, iters: int = 30):
    x = np.linspace(0, 4, 20001)
    y = np.array([erf(v) for v in x])
    z = x * x
    w, q = np.ones_like(x), np.ones_like(x)
    for _ in range(iters):
        a = np.concatenate([np.stack([x * z**i for i in range(dp + 1)], 1),
                            np.stack([-y * z**j for j in range(1, dq + 1)], 1)], 1) / q[:, None]
        coef, *_ = np.linalg.lstsq(a * w[:, None], y / q * w, rcond=None)
        p, qc = coef[:dp + 1], np.concatenate([[1.0], coef[dp + 1:]])
        q = np.polyval(qc[::-1], z)
        err = x * np.polyval(p[::-1], z) / q - y
        w = w * (1 + 5 * np.abs(err) / np.abs(err).max())
    return p.astype(np.float32), qc.astype(np.float32)


def fp32_error(p, qc) -> float:
    u = np.linspace(0, 4, 200001).astype(np.float32)
    z = u * u
    num, den = np.zeros_like(u), np.zeros_like(u)
    for c in p[::-1]:
        num = num * z + c
    for c in qc[::-1]:
        den = den * z + c
    return float(np.abs(np.minimum(u * num / den, 1) - np.array([erf(float(v)) for v in u])).max())


if __name__ == "__main__":
    p, qc = fit()
    print("P:", " ".join(f"{c:.10e}" for c in p))
    print("Q:", " ".join(f"{c:.10e}" for c in qc))
    print(f"max |error| in fp32 on [0, 4]: {fp32_error(p, qc):.2e}")
