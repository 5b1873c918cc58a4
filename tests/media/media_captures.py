"""Access to the real-Asterisk RTP captures in tests/fixtures/rtp (see its README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rtp"


def path(name: str) -> Path:
    return FIXTURES / name


def summary(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def samples(pcm: bytes) -> npt.NDArray[np.float64]:
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float64)


def peak_ncc(signal: npt.NDArray[np.float64], template: npt.NDArray[np.float64]) -> float:
    """Peak normalised cross-correlation of ``template`` slid over ``signal`` (as FINDINGS did),
    computed with an FFT so a few seconds of audio take milliseconds."""
    n = len(template)
    if n > len(signal):
        raise ValueError("template longer than signal")
    t = template - template.mean()
    t = t / (np.linalg.norm(t) or 1.0)
    size = 1 << int(np.ceil(np.log2(len(signal) + n)))
    corr = np.fft.irfft(np.fft.rfft(signal, size) * np.conj(np.fft.rfft(t, size)), size)
    dots = corr[: len(signal) - n + 1]
    cs = np.concatenate(([0.0], np.cumsum(signal)))
    cs2 = np.concatenate(([0.0], np.cumsum(signal * signal)))
    sums = cs[n:] - cs[:-n]
    energy = np.maximum(cs2[n:] - cs2[:-n] - sums * sums / n, 1e-9)
    return float(np.max(dots / np.sqrt(energy)))
