"""Audio formats on the wire and the conversions to the daemon's one internal format.

Inside the daemon all PCM is native-endian signed 16-bit mono ``bytes``. Everything here is pure
(no I/O except :func:`read_wav`, which only reads a file) and safe to call from any thread.

Facts this module encodes (measured on Asterisk 22.10.1, see ari-samples FINDINGS.md §1):
- externalMedia ``slin``/``slin16`` payloads are **big-endian** (network order); decoding them
  little-endian gives noise (correlation -0.02 with the source).
- ``slin16`` arrives as PT 118, ``slin`` (8 kHz) as PT 10, 20 ms per packet.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

__all__ = [
    "FORMATS",
    "Resampler",
    "WireFormat",
    "alaw_decode",
    "alaw_encode",
    "decode_payload",
    "encode_payload",
    "read_wav",
    "ulaw_decode",
    "ulaw_encode",
]

_NATIVE_BIG_ENDIAN = sys.byteorder == "big"


@dataclass(frozen=True, slots=True)
class WireFormat:
    """One RTP audio format as Asterisk's externalMedia sends it."""

    name: str
    payload_type: int
    sample_rate: int
    bytes_per_sample: int
    frame_ms: int = 20

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate * self.frame_ms // 1000

    @property
    def payload_bytes_per_frame(self) -> int:
        return self.samples_per_frame * self.bytes_per_sample

    @property
    def is_linear(self) -> bool:
        return self.name in ("slin", "slin16")


FORMATS: dict[str, WireFormat] = {
    "slin16": WireFormat("slin16", 118, 16000, 2),
    # RFC 3551 says PT 10 is L16/44.1 kHz stereo; Asterisk uses it for 8 kHz mono slin.
    "slin": WireFormat("slin", 10, 8000, 2),
    "ulaw": WireFormat("ulaw", 0, 8000, 1),
    "alaw": WireFormat("alaw", 8, 8000, 1),
}


# --- G.711 -------------------------------------------------------------------------------------
# Tables follow the ITU-T G.711 reference (Sun Microsystems' public-domain g711.c): decode is a
# 256-entry table, encode a 65536-entry table indexed by the 16-bit sample as unsigned.


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _all_samples() -> npt.NDArray[np.int32]:
    # Index i of an encode table is the int16 sample whose bit pattern is i.
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _all_samples() >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + 0x21
    seg_end = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    seg = np.searchsorted(seg_end, mag, side="left")
    uval = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F))
    return (uval ^ mask).astype(np.uint8)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _all_samples() >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg_end = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    seg = np.searchsorted(seg_end, mag, side="left")
    quant = np.where(seg < 2, (mag >> 1) & 0x0F, (mag >> np.maximum(seg, 1)) & 0x0F)
    aval = np.where(seg >= 8, 0x7F, (seg << 4) | quant)
    return (aval ^ mask).astype(np.uint8)


_ULAW_DECODE = _build_ulaw_decode()
_ALAW_DECODE = _build_alaw_decode()
_ULAW_ENCODE = _build_ulaw_encode()
_ALAW_ENCODE = _build_alaw_encode()


def _pcm_array(pcm: bytes) -> npt.NDArray[np.int16]:
    if len(pcm) % 2:
        raise ValueError(f"PCM16 needs an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype=np.int16)


def ulaw_decode(data: bytes) -> bytes:
    """G.711 mu-law bytes -> native PCM16 (two bytes out per byte in)."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


def alaw_decode(data: bytes) -> bytes:
    """G.711 A-law bytes -> native PCM16."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


def ulaw_encode(pcm: bytes) -> bytes:
    """Native PCM16 -> G.711 mu-law. ValueError on an odd byte count."""
    return _ULAW_ENCODE[_pcm_array(pcm).view(np.uint16)].tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """Native PCM16 -> G.711 A-law. ValueError on an odd byte count."""
    return _ALAW_ENCODE[_pcm_array(pcm).view(np.uint16)].tobytes()


def _swap_if_little_native(data: bytes) -> bytes:
    # slin on the wire is big-endian; converting in either direction is the same byte swap.
    if _NATIVE_BIG_ENDIAN:
        return bytes(data)
    return _pcm_array(data).byteswap().tobytes()


def decode_payload(fmt: WireFormat, payload: bytes) -> bytes:
    """An RTP payload in ``fmt`` -> native PCM16. ValueError if it cannot be that format."""
    if fmt.is_linear:
        if len(payload) % 2:
            raise ValueError(f"{fmt.name} payload has an odd length ({len(payload)} bytes)")
        return _swap_if_little_native(payload)
    if fmt.name == "ulaw":
        return ulaw_decode(payload)
    if fmt.name == "alaw":
        return alaw_decode(payload)
    raise ValueError(f"unsupported wire format {fmt.name!r}")


def encode_payload(fmt: WireFormat, pcm: bytes) -> bytes:
    """Native PCM16 (already at ``fmt.sample_rate``) -> an RTP payload in ``fmt``."""
    if fmt.is_linear:
        return _swap_if_little_native(pcm)
    if fmt.name == "ulaw":
        return ulaw_encode(pcm)
    if fmt.name == "alaw":
        return alaw_encode(pcm)
    raise ValueError(f"unsupported wire format {fmt.name!r}")


# --- resampling --------------------------------------------------------------------------------


class Resampler:
    """Streaming mono PCM16 rate conversion (soxr); a pass-through when the rates are equal.

    Stateful: feed one continuous stream through :meth:`process`, end it with :meth:`flush`
    (which also makes the object ready for a new stream). Odd trailing bytes are kept for the
    next call rather than rejected, so arbitrary chunking is fine.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._carry = b""
        self._stream: soxr.ResampleStream | None = self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream | None:
        if self.in_rate == self.out_rate:
            return None
        return soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="int16")

    def process(self, pcm: bytes) -> bytes:
        data = self._carry + pcm
        usable = len(data) - len(data) % 2
        self._carry = data[usable:]
        if self._stream is None:
            return data[:usable]
        if usable == 0:
            return b""
        samples = np.frombuffer(data[:usable], dtype=np.int16)
        out: npt.NDArray[np.int16] = self._stream.resample_chunk(samples)
        return out.tobytes()

    def flush(self) -> bytes:
        """Return what the filter still holds and start afresh (a trailing odd byte is dropped)."""
        self._carry = b""
        if self._stream is None:
            return b""
        tail: npt.NDArray[np.int16] = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        self._stream = self._new_stream()
        return tail.tobytes()


# --- WAV files ---------------------------------------------------------------------------------

_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_ALAW = 6
_WAVE_FORMAT_MULAW = 7
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


def read_wav(path: str | Path) -> tuple[bytes, int]:
    """Read a PCM16 or G.711 WAV file -> (native mono PCM16, sample rate).

    Multi-channel files are averaged to mono. Anything else (8/24/32-bit PCM, float, ADPCM,
    truncated or non-RIFF files) raises ValueError naming the file.
    """
    raw = Path(path).read_bytes()
    try:
        return _parse_wav(raw)
    except (ValueError, struct.error) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _parse_wav(raw: bytes) -> tuple[bytes, int]:
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    fmt_chunk: bytes | None = None
    data_chunk: bytes | None = None
    pos = 12
    while pos + 8 <= len(raw):
        chunk_id = raw[pos : pos + 4]
        (size,) = struct.unpack_from("<I", raw, pos + 4)
        body = raw[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt_chunk = body
        elif chunk_id == b"data":
            # Some writers leave the size at 0 or 0xFFFFFFFF when streaming: take what is there.
            data_chunk = body if size not in (0, 0xFFFFFFFF) else raw[pos + 8 :]
            if fmt_chunk is not None:
                break
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    if fmt_chunk is None or len(fmt_chunk) < 16:
        raise ValueError("missing or short 'fmt ' chunk")
    if data_chunk is None:
        raise ValueError("missing 'data' chunk")
    tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", fmt_chunk)
    if tag == _WAVE_FORMAT_EXTENSIBLE:
        if len(fmt_chunk) < 26:
            raise ValueError("short WAVE_FORMAT_EXTENSIBLE header")
        (tag,) = struct.unpack_from("<H", fmt_chunk, 24)  # first two bytes of the sub-format GUID
    if channels < 1 or rate <= 0:
        raise ValueError(f"bad header: {channels} channels at {rate} Hz")
    if tag == _WAVE_FORMAT_PCM and bits == 16:
        frame = 2 * channels
        samples = np.frombuffer(data_chunk[: len(data_chunk) - len(data_chunk) % frame], "<i2")
    elif tag in (_WAVE_FORMAT_MULAW, _WAVE_FORMAT_ALAW) and bits == 8:
        table = _ULAW_DECODE if tag == _WAVE_FORMAT_MULAW else _ALAW_DECODE
        usable = len(data_chunk) - len(data_chunk) % channels
        samples = table[np.frombuffer(data_chunk[:usable], dtype=np.uint8)]
    else:
        raise ValueError(f"unsupported WAV encoding (format tag {tag}, {bits} bits)")
    if channels > 1:
        mixed = samples.reshape(-1, channels).astype(np.int32).mean(axis=1)
        samples = np.round(mixed).astype(np.int16)
    return samples.astype(np.int16).tobytes(), rate
