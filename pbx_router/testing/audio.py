"""Caller audio: load 8/16 kHz PCM or mu-law WAV (or raw 8 kHz s16le), convert to an RTP format.

Kept independent of ``pbx_router.media`` on purpose: the emulator is the reference the media
layer is tested against, so it must not share its code.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

Samples = npt.NDArray[np.int16]


@dataclass(frozen=True)
class RtpFormat:
    name: str
    payload_type: int
    rate: int
    bytes_per_sample: int

    @property
    def samples_per_frame(self) -> int:  # 20 ms
        return self.rate // 50


# Asterisk's PTs for externalMedia (FINDINGS §1): slin uses PT 10 for 8 kHz mono.
RTP_FORMATS: dict[str, RtpFormat] = {
    "ulaw": RtpFormat("ulaw", 0, 8000, 1),
    "alaw": RtpFormat("alaw", 8, 8000, 1),
    "slin": RtpFormat("slin", 10, 8000, 2),
    "slin16": RtpFormat("slin16", 118, 16000, 2),
}


def ulaw_encode(pcm: Samples) -> bytes:
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    # Annotated: numpy's stubs lose the element type through np.where and np.log2.
    code: npt.NDArray[np.integer] = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return code.astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> Samples:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


def alaw_encode(pcm: Samples) -> bytes:
    x = pcm.astype(np.int32) >> 3  # A-law works on 13-bit magnitudes
    sign = np.where(x >= 0, 0x80, 0)
    mag = np.minimum(np.where(x < 0, -x - 1, x), 0x0FFF)
    exponent = np.where(mag < 32, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4)
    mantissa = np.where(exponent == 0, mag >> 1, mag >> exponent) & 0x0F
    code: npt.NDArray[np.integer] = (sign | (exponent << 4) | mantissa) ^ 0x55  # (as in ulaw_encode)
    return code.astype(np.uint8).tobytes()


def alaw_decode(data: bytes) -> Samples:
    a = np.frombuffer(data, dtype=np.uint8).astype(np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    mag = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    return np.where(a & 0x80, mag, -mag).astype(np.int16)


def encode(pcm: Samples, fmt: RtpFormat) -> bytes:
    if fmt.name == "ulaw":
        return ulaw_encode(pcm)
    if fmt.name == "alaw":
        return alaw_encode(pcm)
    return pcm.astype(">i2").tobytes()  # slin on the wire is network (big-endian) order


def resample(pcm: Samples, rate_in: int, rate_out: int) -> Samples:
    if rate_in == rate_out or len(pcm) == 0:
        return pcm.astype(np.int16)
    out: npt.NDArray[np.float32] = soxr.resample(pcm.astype(np.float32), rate_in, rate_out)  # soxr is untyped
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def read_wav(path: Path) -> tuple[Samples, int]:
    """Mono PCM16 or mu-law/A-law WAV -> (samples, rate). Raises ValueError on anything else."""
    data = path.read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos, fmt_tag, channels, rate, bits, payload = 12, None, 0, 0, 0, None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt " and len(body) >= 16:
            fmt_tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
        elif chunk_id == b"data":
            payload = body
        pos += 8 + size + (size & 1)
    if fmt_tag is None or payload is None:
        raise ValueError(f"{path}: missing fmt or data chunk")
    if channels != 1:
        raise ValueError(f"{path}: {channels} channels; mono only")
    if fmt_tag == 1 and bits == 16:
        pcm = np.frombuffer(payload[: len(payload) // 2 * 2], dtype="<i2").astype(np.int16)
    elif fmt_tag == 7 and bits == 8:
        pcm = ulaw_decode(payload)
    elif fmt_tag == 6 and bits == 8:
        pcm = alaw_decode(payload)
    else:
        raise ValueError(f"{path}: WAV format {fmt_tag}/{bits} bits not supported")
    return pcm, rate


@dataclass
class CallerAudio:
    """What a simulated caller says, prepared once at every rate an RTP stream may ask for."""

    by_rate: dict[int, Samples]

    @classmethod
    def load(cls, source: bytes | Path | str) -> CallerAudio:
        if isinstance(source, bytes | bytearray):
            pcm, rate = np.frombuffer(bytes(source)[: len(source) // 2 * 2], dtype="<i2"), 8000
        else:
            pcm, rate = read_wav(Path(source))
        pcm = pcm.astype(np.int16)
        return cls({8000: resample(pcm, rate, 8000), 16000: resample(pcm, rate, 16000)})

    @property
    def seconds(self) -> float:
        return len(self.by_rate[8000]) / 8000

    def samples(self, rate: int) -> Samples:
        return self.by_rate[rate]


def tone(rate: int, n: int, start_sample: int, freq: float = 440.0, level: int = 6000) -> Samples:
    """A deterministic tone standing in for a prompt or music (the emulator has no sound files)."""
    t = (np.arange(n) + start_sample) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.int16)
