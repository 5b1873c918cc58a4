"""SIP callers and agent phones for a real Asterisk, played by sipp, with the audio in Python.

sipp does the signalling (INVITE with digest auth, REGISTER, answer, CANCEL, BYE); each party's
RTP is a Python UDP socket whose port the SDP names, so a test controls exactly what a caller
says (a festival recording, as G.711 u-law at real-time pace), when they press a key (RFC 4733
events) and sees what they hear (every RTP packet Asterisk sent them, with its arrival time).

    async with SipCaller(ast, to="100", audio=wav, audio_at=0.5) as caller:
        await caller.answered.wait()
        caller.heard_between(t0, t1)          # share of 20 ms slots with audio towards the caller

    async with SipAgent(ast, "agent2", ring_s=0.5) as agent:   # registers, then answers INVITEs
        await agent.wait_for(lambda a: a.answered >= 1)

Usable by an admin against their own Asterisk too ("SIP softphone testing"): the classes only
need the SIP port, the ARI-free facts of ``RealAsterisk`` (address, port, passwords).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from pbx_router.testing.asterisk import append_log, free_port, free_udp_range
from pbx_router.testing.audio import read_wav, resample, ulaw_decode, ulaw_encode

FRAME_S = 0.02
SAMPLES = 160  # 20 ms of 8 kHz


class SipServer(Protocol):
    """What a SIP party needs to know about the PBX."""

    @property
    def sip_port(self) -> int: ...

    def secret(self, name: str) -> str: ...


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise RuntimeError("sipp is not installed (../shared/asterisk/build.sh installs sip-tester)")
    return path


# -- RTP --------------------------------------------------------------------------------------


@dataclass
class Received:
    at: float  # loop time
    pt: int
    payload: bytes


class RtpPeer(asyncio.DatagramProtocol):
    """One party's RTP: sends audio and RFC 4733 digits to wherever Asterisk's RTP came from
    (symmetric RTP), keeps what arrived."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.remote: tuple[str, int] | None = None
        self.received: list[Received] = []
        self.first_packet = asyncio.Event()
        self._seq = random.randrange(1 << 16)
        self._ts = random.randrange(1 << 32)
        self._ssrc = random.randrange(1 << 32)

    async def open(self) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self.port

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        cc = data[0] & 0x0F
        pt = data[1] & 0x7F
        self.remote = addr  # symmetric RTP: answer where it comes from
        self.received.append(Received(asyncio.get_running_loop().time(), pt, data[12 + 4 * cc:]))
        self.first_packet.set()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def _send(self, pt: int, payload: bytes, ts: int, marker: bool = False) -> None:
        if self.transport is None or self.remote is None:
            return
        self._seq = (self._seq + 1) & 0xFFFF
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, self._seq, ts & 0xFFFFFFFF, self._ssrc)
        self.transport.sendto(header + payload, self.remote)

    async def play(self, pcm8k: np.ndarray) -> None:
        """``pcm8k`` (int16, 8 kHz) as u-law frames at real-time pace."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        frames = (len(pcm8k) + SAMPLES - 1) // SAMPLES
        for i in range(frames):
            chunk = pcm8k[i * SAMPLES:(i + 1) * SAMPLES]
            if len(chunk) < SAMPLES:
                chunk = np.pad(chunk, (0, SAMPLES - len(chunk)))
            self._send(0, ulaw_encode(chunk), self._ts, marker=i == 0)
            self._ts += SAMPLES
            delay = start + (i + 1) * FRAME_S - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # real-time pacing of the caller's voice

    async def digit(self, key: str, duration_s: float = 0.16) -> None:
        """One RFC 4733 telephone-event (PT 101): updates every 20 ms, then three end packets."""
        event = "0123456789*#ABCD".index(key.upper())
        ts = self._ts
        steps = max(1, int(duration_s / FRAME_S))
        for i in range(steps):
            self._send(101, struct.pack("!BBH", event, 10, (i + 1) * SAMPLES), ts, marker=i == 0)
            await asyncio.sleep(FRAME_S)  # the event's own pacing
        for _ in range(3):
            self._send(101, struct.pack("!BBH", event, 0x80 | 10, steps * SAMPLES), ts)
        self._ts += steps * SAMPLES

    def slots_with_audio(self, t0: float, t1: float, pt: int = 0) -> float:
        """How much of [t0, t1) (loop time) audio of ``pt`` covered: 20 ms packets received over
        the packets a continuous stream brings (at most 1). Counting packets, not which 20 ms
        slot each arrived in, so that jitter on a busy machine (two packets in one slot, none in
        the next) does not read as silence; ``gaps`` tells how long the longest silence was."""
        slots = max(1, int((t1 - t0) / FRAME_S))
        packets = sum(1 for r in self.received if r.pt == pt and t0 <= r.at < t1)
        return min(1.0, packets / slots)

    def heard(self, t0: float = float("-inf"), t1: float = float("inf")) -> np.ndarray:
        """What arrived as u-law (PT 0) in [t0, t1), decoded and joined in arrival order."""
        parts = [ulaw_decode(r.payload) for r in self.received if r.pt == 0 and t0 <= r.at < t1]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)

    def gaps(self, t0: float, t1: float, pt: int = 0) -> float:
        """The longest stretch (s) in [t0, t1) with no audio of ``pt``."""
        times = [t0] + [r.at for r in self.received if r.pt == pt and t0 <= r.at < t1] + [t1]
        return max(b - a for a, b in zip(times, times[1:], strict=False))


def similarity(recording: np.ndarray, reference: np.ndarray) -> float:
    """How well ``reference`` (8 kHz samples) is found somewhere in ``recording``: the best
    normalised cross-correlation over every offset (1.0: the very same waveform, at any level)."""
    rec = np.asarray(recording, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    n = len(ref)
    if n == 0 or len(rec) < n:
        return 0.0
    ref = ref - ref.mean()
    size = 1 << int(np.ceil(np.log2(len(rec) + n)))
    dots = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)[: len(rec) - n + 1]
    csum = np.concatenate([[0.0], np.cumsum(rec)])
    csq = np.concatenate([[0.0], np.cumsum(rec * rec)])
    win_sum = csum[n:] - csum[:-n]
    win_energy = np.maximum(csq[n:] - csq[:-n] - win_sum * win_sum / n, 1e-9)
    score = dots / (np.sqrt(win_energy) * np.linalg.norm(ref) + 1e-9)
    return float(score.max())


# One received INVITE in sipp's -trace_msg file: the dashes line with the date, "UDP message
# received", a blank line, then the request up to the blank line that ends its headers.
_RECEIVED_INVITE = re.compile(
    r"^-{10,} (\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d\.\d+)[^\n]*\n[^\n]*message received[^\n]*\n\s*\n"
    r"(INVITE [^\n]*\n(?:[^\n]+\n)*)", re.M)


# -- sipp scenarios ---------------------------------------------------------------------------

# The answer to the other side's BYE, then the end of the scenario.
_BYE_OK = """  <send next="end"><![CDATA[
SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

]]></send>
"""

_SDP = """v=0
o=pbxr 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio {rtp} RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendrecv
"""


def _caller_scenario(to: str, user: str, password: str, rtp: int, hangup_ms: int,
                     name: str = "Test caller") -> str:
    sdp = _SDP.format(rtp=rtp)
    auth = f"[authentication username={user} password={password}]\n      "
    invite = f"""INVITE sip:{to}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
      From: "{name}" <sip:{user}@[local_ip]>;tag=[call_number]
      To: <sip:{to}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: {{cseq}} INVITE
      Contact: <sip:{user}@[local_ip]:[local_port]>
      Max-Forwards: 70
      {{auth}}Content-Type: application/sdp
      Content-Length: [len]

{sdp}"""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="pbx-router caller">
  <send retrans="500"><![CDATA[
{invite.format(cseq=1, auth="")}]]></send>
  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
  <send><![CDATA[
ACK sip:{to}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
      From: "{name}" <sip:{user}@[local_ip]>;tag=[call_number]
      To: <sip:{to}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
{invite.format(cseq=2, auth=auth)}]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true">
    <action>
      <ereg regexp="m=audio [0-9]+" search_in="body" assign_to="media"/>
      <ereg regexp="tag=[^;>[:space:]]+" search_in="hdr" header="To:" assign_to="totag"/>
    </action>
  </recv>
  <send><![CDATA[
ACK sip:{to}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
      From: "{name}" <sip:{user}@[local_ip]>;tag=[call_number]
      To: <sip:{to}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0

]]></send>
  <nop><action><log message="answered [call_id] [$totag] [call_number] [$media]"/></action></nop>
  <recv request="BYE" timeout="{hangup_ms}" ontimeout="hangup"/>
{_BYE_OK}  <label id="hangup"/>
  <nop><action><log message="hanging up"/></action></nop>
  <send retrans="500"><![CDATA[
BYE sip:{to}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
      From: "{name}" <sip:{user}@[local_ip]>;tag=[call_number]
      To: <sip:{to}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0

]]></send>
  <recv response="200"/>
  <label id="end"/>
</scenario>
"""


def _register_scenario(user: str, password: str, expires: int) -> str:
    register = """REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
      From: <sip:{user}@[remote_ip]>;tag=[call_number]
      To: <sip:{user}@[remote_ip]>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:{user}@[local_ip]:[local_port]>
      Expires: {expires}
      Max-Forwards: 70
      {auth}Content-Length: 0

"""
    auth = f"[authentication username={user} password={password}]\n      "
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="pbx-router agent register">
  <send retrans="500"><![CDATA[
{register.format(user=user, cseq=1, expires=expires, auth="")}]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
{register.format(user=user, cseq=2, expires=expires, auth=auth)}]]></send>
  <recv response="200"/>
</scenario>
"""


def _agent_scenario(rtp: int, ring_ms: int, answer: bool, talk_ms: int, decline: bool = False) -> str:
    sdp = _SDP.format(rtp=rtp)
    reply = """SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      {ctype}Content-Length: [len]

{body}"""
    grab = '<action><ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="cs"/></action>'
    if decline:
        ring_or_answer = f'<recv request="CANCEL" timeout="{ring_ms}" ontimeout="decline">{grab}</recv>'
    elif answer:
        ring_or_answer = f'<recv request="CANCEL" timeout="{ring_ms}" ontimeout="answer">{grab}</recv>'
    else:
        ring_or_answer = f'<recv request="CANCEL">{grab}</recv>'

    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="pbx-router agent phone">
  <recv request="INVITE">
    <action>
      <log message="invite"/>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="remote"/>
      <ereg regexp="[^;]*" search_in="hdr" header="To:" assign_to="local"/>
      <ereg regexp="sip:[^>;]+" search_in="hdr" header="Contact:" assign_to="target"/>
    </action>
  </recv>
  <send><![CDATA[
{reply.format(status="180 Ringing", ctype="", body="")}]]></send>
  {ring_or_answer}
  <nop><action><log message="cancelled"/></action></nop>
  <send><![CDATA[
SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

]]></send>
  <send><![CDATA[
SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$cs] INVITE
      Content-Length: 0

]]></send>
  <recv request="ACK" next="end"/>
  <label id="decline"/>
  <nop><action><log message="declined"/></action></nop>
  <send><![CDATA[
{reply.format(status="486 Busy Here", ctype="", body="")}]]></send>
  <recv request="ACK" next="end"/>
  <label id="answer"/>
  <send retrans="500"><![CDATA[
{reply.format(status="200 OK", ctype="Content-Type: application/sdp" + chr(10) + "      ", body=sdp)}]]></send>
  <recv request="ACK"><action><log message="answered"/></action></recv>
  <recv request="BYE" timeout="{talk_ms}" ontimeout="hangup"/>
  <nop><action><log message="bye"/></action></nop>
{_BYE_OK}  <label id="hangup"/>
  <nop><action><log message="hanging up"/></action></nop>
  <send retrans="500"><![CDATA[
BYE [$target] SIP/2.0
      Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
      From: [$local];tag=[pid]SIPpTag01[call_number]
      To: [$remote]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Content-Length: 0

]]></send>
  <recv response="200"/>
  <label id="end"/>
</scenario>
"""


# -- parties ----------------------------------------------------------------------------------


class _Sipp:
    """One sipp process on a scenario file, its log lines turned into timestamped marks."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.workdir = workdir
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.log_file = workdir / f"{name}.log"
        self.out_file = workdir / f"{name}.out"
        self._out: Any = None

    async def start(self, scenario: str, args: list[str]) -> None:
        path = self.workdir / f"{self.name}.xml"
        path.write_text(scenario, encoding="ascii")
        self._out = append_log(self.out_file)
        self.proc = await asyncio.create_subprocess_exec(
            sipp_binary(), "-sf", str(path), "-nostdin", "-trace_logs",
            "-log_file", str(self.log_file), "-trace_err", "-error_file", str(self.workdir / f"{self.name}.err"),
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=self._out, stderr=self._out,
        )

    def marks(self) -> list[str]:
        if not self.log_file.exists():
            return []
        return [line.strip() for line in self.log_file.read_text(errors="replace").splitlines() if line.strip()]

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    async def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._out is not None:
            self._out.close()
            self._out = None


@dataclass
class _Party:
    marks: list[tuple[float, str]] = field(default_factory=list)


class SipCaller:
    """A caller dialling ``to`` from the ``softphone`` endpoint; says ``audio`` (a WAV, any rate)
    ``audio_at`` s after answer (and each of ``say`` [(seconds after answer, WAV)]), presses
    ``dtmf`` [(seconds after answer, key)], and hangs up after ``hangup_after`` s unless Asterisk
    hangs up first."""

    def __init__(self, pbx: SipServer, to: str = "100", *, user: str = "softphone",
                 audio: Path | None = None, audio_at: float = 0.5,
                 dtmf: list[tuple[float, str]] | None = None, hangup_after: float = 60.0,
                 say: list[tuple[float, Path]] | None = None,
                 name: str = "Test caller", workdir: Path | None = None) -> None:
        self.pbx = pbx
        self.to = to
        self.user = user
        self.say = ([(audio_at, audio)] if audio is not None else []) + list(say or [])
        self.dtmf = list(dtmf or [])
        self.hangup_after = hangup_after
        self.name = name
        self.speech_started_wall: float | None = None  # time.time() when the last phrase began
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="pbxr-sip-"))
        self.rtp = RtpPeer()
        self.sipp = _Sipp(self.workdir, f"caller-{id(self):x}")
        self.answered = asyncio.Event()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._keys: asyncio.Queue[str] = asyncio.Queue()

    def press(self, keys: str) -> None:
        """Press ``keys`` now (after the scripted ``audio``/``dtmf``), at keypad speed: each key
        an RFC 4733 event, 100 ms of silence between them."""
        for key in keys:
            self._keys.put_nowait(key)

    async def __aenter__(self) -> SipCaller:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        port = await self.rtp.open()
        speech = []
        for at, wav in self.say:
            samples, rate = read_wav(wav)
            speech.append((at, np.asarray(resample(samples, rate, 8000) if rate != 8000 else samples, dtype=np.int16)))
        scenario = _caller_scenario(self.to, self.user, self.pbx.secret(self.user), port,
                                    int(self.hangup_after * 1000), self.name)
        await self.sipp.start(scenario, ["-m", "1", "-l", "1", "-i", "127.0.0.1",
                                         "-p", str(free_port(socket.SOCK_DGRAM)), "-mp", str(free_udp_range(4)),
                                         f"127.0.0.1:{self.pbx.sip_port}"])
        self._tasks.append(asyncio.create_task(self._media(speech), name="sip-caller-media"))

    async def _media(self, speech: list[tuple[float, np.ndarray]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            mark = next((m for m in self.sipp.marks() if m.startswith("answered")), None)
            if mark is not None:
                break
            if self.sipp.proc is not None and self.sipp.proc.returncode is not None:
                return  # the call failed or ended before it was answered
            await asyncio.sleep(0.01)  # polling sipp's log: it has no other way to tell us
        self.answered_at = loop.time()
        # "answered CALLID tag=TOTAG FROMTAG m=audio PORT": where Asterisk takes our RTP (its SDP).
        self.rtp.remote = ("127.0.0.1", int(mark.rsplit(" ", 1)[-1]))
        self.answered.set()
        jobs: list[tuple[float, Callable[[], Awaitable[None]]]] = []
        for at, pcm in speech:
            jobs.append((at, functools.partial(self._say, pcm)))
        for at, key in self.dtmf:
            jobs.append((at, functools.partial(self.rtp.digit, key)))
        for at, job in sorted(jobs, key=lambda j: j[0]):
            delay = self.answered_at + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the caller's script: speak or press at this moment
            await job()
        # Silence after speaking is real silence on a phone: comfort frames keep the stream alive,
        # in 100 ms pieces so that keys pressed meanwhile (press()) go out at once.
        silence = np.zeros(SAMPLES * 5, dtype=np.int16)
        while True:
            if not self._keys.empty():
                await self.rtp.digit(self._keys.get_nowait())
            await self.rtp.play(silence)

    async def _say(self, pcm: np.ndarray) -> None:
        self.speech_started_wall = time.time()
        await self.rtp.play(pcm)

    async def hang_up(self, timeout: float = 10.0) -> None:
        """The caller hangs up now: a BYE in the dialog sipp set up (sipp has no way to be told),
        from a socket of our own; then sipp is stopped."""
        mark = next((m for m in self.sipp.marks() if m.startswith("answered")), None)
        if mark is None or (self.sipp.proc is not None and self.sipp.proc.returncode is not None):
            await self.stop()
            return
        _, call_id, to_tag, from_tag, *_ = mark.split()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        class _Bye(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if data.startswith(b"SIP/2.0 200") and b"BYE" in data and not done.done():
                    done.set_result(None)

        transport, _ = await loop.create_datagram_endpoint(_Bye, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        uri = f"sip:{self.to}@127.0.0.1:{self.pbx.sip_port}"
        bye = (
            f"BYE {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{random.getrandbits(48):x};rport\r\n"
            f'From: "Test caller" <sip:{self.user}@127.0.0.1>;tag={from_tag}\r\n'
            f"To: <{uri}>;{to_tag}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 3 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        try:
            async with asyncio.timeout(timeout):
                while not done.done():
                    transport.sendto(bye, ("127.0.0.1", self.pbx.sip_port))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(done), 0.5)  # SIP retransmission
        finally:
            transport.close()
            self.ended_at = loop.time()
            await self.stop()

    async def ended(self, timeout: float = 60.0) -> None:
        """Wait for the call to end (either side hung up)."""
        await self.sipp.wait(timeout)
        self.ended_at = asyncio.get_running_loop().time()

    @property
    def hung_up_by_pbx(self) -> bool:
        return "hanging up" not in " ".join(self.sipp.marks())

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sipp.stop()
        self.rtp.close()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class SipAgent:
    """An agent phone: registers as ``user`` with digest auth, then for every INVITE rings
    ``ring_s`` and answers (or, ``answer=False``, rings until cancelled; or, ``decline=True``,
    declines with 486 Busy Here after ``ring_s``), and talks until the other side hangs up, or
    hangs up itself after ``talk_s``. ``invites``, ``answered``, ``declined``, ``cancelled`` and
    ``hung_up`` count what happened."""

    def __init__(self, pbx: SipServer, user: str, *, ring_s: float = 0.5, answer: bool = True,
                 decline: bool = False, talk_s: float | None = None, workdir: Path | None = None) -> None:
        self.pbx = pbx
        self.user = user
        self.ring_s = ring_s
        self.answer = answer
        self.decline = decline
        self.talk_s = talk_s
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="pbxr-sip-"))
        self.rtp = RtpPeer()
        self.sipp = _Sipp(self.workdir, f"agent-{user}")
        self.messages_file = self.workdir / f"agent-{user}.messages"
        self.sip_port = 0

    async def __aenter__(self) -> SipAgent:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self, timeout: float = 20.0) -> None:
        rtp = await self.rtp.open()
        self.sip_port = free_port(socket.SOCK_DGRAM)
        reg = _Sipp(self.workdir, f"register-{self.user}")
        await reg.start(_register_scenario(self.user, self.pbx.secret(self.user), 3600),
                        ["-m", "1", "-i", "127.0.0.1", "-p", str(self.sip_port), f"127.0.0.1:{self.pbx.sip_port}"])
        try:
            rc = await reg.wait(timeout)
        finally:
            await reg.stop()
        if rc != 0:
            raise RuntimeError(f"agent {self.user} failed to register (sipp exit {rc}); see {reg.out_file}")
        talk_ms = int((self.talk_s if self.talk_s is not None else 24 * 3600) * 1000)
        scenario = _agent_scenario(rtp, int(self.ring_s * 1000), self.answer, talk_ms, self.decline)
        # -aa: answer OPTIONS (Asterisk qualifies the contact) and friends with 200 by itself.
        await self.sipp.start(scenario, ["-aa", "-i", "127.0.0.1", "-p", str(self.sip_port),
                                         "-mp", str(free_udp_range(4)), "-trace_msg",
                                         "-message_file", str(self.messages_file)])

    def invites_received(self) -> list[tuple[float, str]]:
        """(time.time() when sipp received it, the caller's display name in From) per INVITE,
        from sipp's message trace."""
        if not self.messages_file.exists():
            return []
        out = []
        for m in _RECEIVED_INVITE.finditer(self.messages_file.read_text(errors="replace")):
            when = datetime.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H:%M:%S.%f")
            name = re.search(r'(?mi)^From:\s*"([^"]*)"', m.group(3))
            out.append((when.timestamp(), name.group(1) if name else ""))  # sipp writes local time
        return out

    def _count(self, word: str) -> int:
        return sum(1 for m in self.sipp.marks() if m.endswith(word))

    @property
    def invites(self) -> int:
        return self._count("invite")

    @property
    def answered(self) -> int:
        return self._count("answered")

    @property
    def declined(self) -> int:
        return self._count("declined")

    @property
    def cancelled(self) -> int:
        return self._count("cancelled")

    @property
    def hung_up(self) -> int:
        """Calls this phone ended itself (after ``talk_s``)."""
        return self._count("hanging up")

    async def wait_for(self, predicate: Callable[[SipAgent], bool], timeout: float = 30.0,
                       what: str = "agent condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what} ({self.user}: "
                                   f"{self.sipp.marks()[-5:]})")
            await asyncio.sleep(0.05)  # polling sipp's log file: it has no other way to tell us

    async def stop(self) -> None:
        await self.sipp.stop()
        self.rtp.close()
        with contextlib.suppress(OSError):
            if self._own_dir:
                shutil.rmtree(self.workdir, ignore_errors=True)
