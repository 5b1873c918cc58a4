"""Wire formats and conversions, checked against the real-Asterisk captures."""

from __future__ import annotations

import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from pbx_router.media.codecs import (
    FORMATS,
    Resampler,
    alaw_decode,
    alaw_encode,
    decode_payload,
    encode_payload,
    read_wav,
    ulaw_decode,
    ulaw_encode,
)

from media_captures import path, peak_ncc, samples


def _i16(pcm: bytes) -> list[int]:
    return np.frombuffer(pcm, dtype=np.int16).tolist()


def test_formats_match_what_asterisk_sends() -> None:
    # FINDINGS §1: slin16 PT 118 with 640-byte payloads, slin PT 10 with 320, ulaw PT 0 with 160.
    assert (FORMATS["slin16"].payload_type, FORMATS["slin16"].payload_bytes_per_frame) == (118, 640)
    assert (FORMATS["slin"].payload_type, FORMATS["slin"].payload_bytes_per_frame) == (10, 320)
    assert (FORMATS["ulaw"].payload_type, FORMATS["ulaw"].payload_bytes_per_frame) == (0, 160)
    assert (FORMATS["alaw"].payload_type, FORMATS["alaw"].sample_rate) == (8, 8000)


def test_slin_is_decoded_big_endian() -> None:
    # The first speech samples of FINDINGS' packet #10: 0x0098, 0x0054, 0x0007, 0xffd6.
    assert _i16(decode_payload(FORMATS["slin16"], bytes.fromhex("009800540007ffd6"))) == [152, 84, 7, -42]
    assert encode_payload(FORMATS["slin"], np.array([152, -42], dtype=np.int16).tobytes()) == bytes.fromhex(
        "0098ffd6"
    )


@pytest.mark.parametrize(
    ("payload", "wav", "fmt"),
    [
        ("slin16/externalmedia_slin16_payload.raw", "slin16/externalmedia_slin16_capture.wav", "slin16"),
        ("slin16_sipp/externalmedia_slin16_payload.raw", "slin16_sipp/externalmedia_slin16_capture.wav", "slin16"),
        ("slin8/externalmedia_slin_payload.raw", "slin8/externalmedia_slin_capture.wav", "slin"),
        ("snoop/snoop_in_slin16_payload.raw", "snoop/snoop_in_capture.wav", "slin16"),
        ("sipp/caller_audio_via_externalmedia.ulaw", "sipp/caller_audio_via_externalmedia.wav", "ulaw"),
        ("local/externalmedia_capture.ulaw", "local/externalmedia_capture.wav", "ulaw"),
        ("holding/listener_payload.ulaw", "holding/listener_capture.wav", "ulaw"),
    ],
)
def test_decoded_payloads_equal_the_probe_wavs_sample_for_sample(payload: str, wav: str, fmt: str) -> None:
    pcm, rate = read_wav(path(wav))
    assert rate == FORMATS[fmt].sample_rate
    assert decode_payload(FORMATS[fmt], path(payload).read_bytes()) == pcm


def test_big_endian_decode_matches_the_caller_and_little_endian_is_noise() -> None:
    # As FINDINGS §1 did: the same sipp caller reached us once as ulaw (8 kHz) and once as slin16.
    # Resample the ulaw leg to 16 kHz and look for it in the slin16 leg, decoded both ways.
    ref8, _ = read_wav(path("sipp/caller_audio_via_externalmedia.wav"))
    rs = Resampler(8000, 16000)
    ref16 = samples(rs.process(ref8) + rs.flush())
    template = ref16[4000:28000]  # 1.5 s of speech from the middle
    raw = path("slin16_sipp/externalmedia_slin16_payload.raw").read_bytes()
    big = samples(decode_payload(FORMATS["slin16"], raw))
    little = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    assert peak_ncc(big, template) > 0.99
    assert abs(peak_ncc(little, template)) < 0.2
    lag1 = lambda x: float(np.corrcoef(x[:-1], x[1:])[0, 1])  # noqa: E731
    assert lag1(big) > 0.9 > 0.3 > lag1(little)  # speech is smooth, byte-swapped speech is not


def test_g711_known_values() -> None:
    # ITU-T G.711 extremes and the zero codes (mu-law 0xFF/0x7F are +0/-0; A-law 0xD5/0x55 are +-8).
    assert _i16(ulaw_decode(bytes([0x00, 0x80, 0xFF, 0x7F, 0x7E, 0xFE]))) == [-32124, 32124, 0, 0, -8, 8]
    assert _i16(alaw_decode(bytes([0x2A, 0xAA, 0xD5, 0x55]))) == [-32256, 32256, 8, -8]
    assert ulaw_encode(np.array([0, 32767, -32768], dtype=np.int16).tobytes()) == bytes([0xFF, 0x80, 0x00])
    assert alaw_encode(np.array([0, 32767, -32768], dtype=np.int16).tobytes()) == bytes([0xD5, 0xAA, 0x2A])


def test_g711_round_trips_every_code() -> None:
    every = bytes(range(256))
    assert alaw_encode(alaw_decode(every)) == every
    back = ulaw_encode(ulaw_decode(every))
    assert back == every.replace(b"\x7f", b"\xff")  # -0 comes back as +0


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="audioop left the stdlib in 3.13")
def test_g711_agrees_with_the_stdlib_reference_for_every_sample() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    every_code = bytes(range(256))
    every_sample = np.arange(-32768, 32768, dtype=np.int16).tobytes()
    assert ulaw_decode(every_code) == audioop.ulaw2lin(every_code, 2)
    assert alaw_decode(every_code) == audioop.alaw2lin(every_code, 2)
    assert ulaw_encode(every_sample) == audioop.lin2ulaw(every_sample, 2)
    assert alaw_encode(every_sample) == audioop.lin2alaw(every_sample, 2)


def test_odd_linear_payload_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_payload(FORMATS["slin16"], b"\x00\x01\x02")
    with pytest.raises(ValueError):
        ulaw_encode(b"\x00")


def test_resampler_is_identity_for_equal_rates() -> None:
    rs = Resampler(16000, 16000)
    assert rs.process(b"\x01\x02\x03") == b"\x01\x02"  # odd byte waits for its partner
    assert rs.process(b"\x04") == b"\x03\x04"
    assert rs.flush() == b""


def test_resampler_streams_in_arbitrary_chunks_like_one_call() -> None:
    pcm, _ = read_wav(path("sipp/caller_audio_via_externalmedia.wav"))
    whole = Resampler(8000, 16000)
    one = whole.process(pcm) + whole.flush()
    chunked = Resampler(8000, 16000)
    out = bytearray()
    for start in range(0, len(pcm), 333):  # odd sizes split samples across calls
        out += chunked.process(pcm[start : start + 333])
    out += chunked.flush()
    assert abs(len(one) - 2 * len(pcm)) <= 4 and abs(len(out) - len(one)) <= 4
    n = min(len(one), len(out)) // 2
    assert np.corrcoef(samples(one)[:n], samples(bytes(out))[:n])[0, 1] > 0.999


def test_resampler_down_to_8k_keeps_the_speech() -> None:
    pcm16, _ = read_wav(path("slin16/externalmedia_slin16_capture.wav"))
    pcm8, _ = read_wav(path("slin8/externalmedia_slin_capture.wav"))  # same source, sent as slin
    rs = Resampler(16000, 8000)
    down = samples(rs.process(pcm16) + rs.flush())
    assert peak_ncc(down, samples(pcm8)[2000:14000]) > 0.98


def _wav(tag: int, channels: int, rate: int, bits: int, data: bytes, extra: bytes = b"") -> bytes:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_read_wav_g711_files(tmp_path: Path) -> None:
    codes = path("sipp/caller_audio_via_externalmedia.ulaw").read_bytes()
    (tmp_path / "u.wav").write_bytes(_wav(7, 1, 8000, 8, codes))
    (tmp_path / "a.wav").write_bytes(_wav(6, 1, 8000, 8, codes))
    assert read_wav(tmp_path / "u.wav") == (ulaw_decode(codes), 8000)
    assert read_wav(tmp_path / "a.wav") == (alaw_decode(codes), 8000)


def test_read_wav_skips_unknown_chunks_and_mixes_stereo(tmp_path: Path) -> None:
    stereo = np.array([100, 300, -100, -300], dtype="<i2").tobytes()
    (tmp_path / "s.wav").write_bytes(_wav(1, 2, 16000, 16, stereo, extra=b"LIST\x03\x00\x00\x00abc\x00"))
    pcm, rate = read_wav(tmp_path / "s.wav")
    assert rate == 16000 and _i16(pcm) == [200, -200]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a wav file at all",
        _wav(1, 1, 8000, 8, b"\x80" * 10),  # 8-bit PCM
        _wav(3, 1, 8000, 32, bytes(8)),  # float
        _wav(1, 1, 8000, 16, bytes(4))[:30],  # truncated fmt chunk
        _wav(1, 1, 8000, 16, bytes(4)).replace(b"data", b"junk"),  # no data chunk
    ],
)
def test_read_wav_rejects_other_files_with_value_error(tmp_path: Path, content: bytes) -> None:
    target = tmp_path / "bad.wav"
    target.write_bytes(content)
    with pytest.raises(ValueError, match="bad.wav"):
        read_wav(target)
