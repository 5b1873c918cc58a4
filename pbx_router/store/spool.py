"""A bounded on-disk FIFO of JSON objects: where call records wait while the database is away.

Layout: ``<dir>/<12-digit sequence>.jsonl`` segment files, one JSON object per line, each append
flushed and fsync'd before it returns. The reader takes whole segments, oldest first, and deletes a
segment only after every record in it reached the database; a crash in between replays the segment
again, which the idempotent upsert makes harmless.

Bound: past ``max_records`` the oldest whole segment is dropped and its records counted. Segments
hold at most ``max_records // 100`` records (1..1000), so a drop overshoots by at most 1% of the
bound. A process that restarts never appends to an old segment (its last line may be torn); it
starts a new one.

Thread-safe (one lock): the recorder appends from a worker thread, and from the event loop thread
when its memory queue overflows.

The records hold phone numbers and transcripts: the directory is 0700 and segments 0600 (also
ones an older version left readable), and segments older than the retention period are purged
(``purge_older_than``) whether or not they reached the database.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pbx_router.log import get_logger
from pbx_router.store.files import create_private_file, private_directory, private_file

log = get_logger(__name__)

_SEGMENT = re.compile(r"^(\d{12})\.jsonl$")


@dataclass
class _Segment:
    path: Path
    records: int


@dataclass(frozen=True)
class SegmentBatch:
    """The parsed contents of the oldest segment, taken for replay."""

    path: Path
    records: list[dict[str, Any]]
    corrupt: int  # lines that were not a JSON object (e.g. torn by a power cut); already counted


class Spool:
    def __init__(self, directory: Path, max_records: int = 1_000_000) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.directory = directory
        self.max_records = max_records
        self.segment_records = max(1, min(1000, max_records // 100))
        self.dropped = 0  # records lost to the bound or to corruption
        self._lock = threading.Lock()
        self._segments: deque[_Segment] = deque()
        self._active: _Segment | None = None
        self._reading: Path | None = None
        self._next_seq = 1
        self.purged = 0  # records deleted for being older than the retention period
        private_directory(directory)
        self._scan()

    # -- state --------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(segment.records for segment in self._segments)

    def _scan(self) -> None:
        found: list[tuple[int, Path]] = []
        for path in self.directory.iterdir():
            match = _SEGMENT.match(path.name)
            if match:
                found.append((int(match[1]), path))
            elif path.name.endswith(".jsonl.tmp"):
                path.unlink(missing_ok=True)
        tightened = 0
        for seq, path in sorted(found):
            tightened += private_file(path)
            self._segments.append(_Segment(path, _count_lines(path)))
            self._next_seq = seq + 1
        if tightened:
            log.warning("spool_permissions_tightened", directory=str(self.directory), files=tightened)
        if found:
            log.info("spool_found", directory=str(self.directory), records=self.pending)

    # -- writing ------------------------------------------------------------------------------

    def append(self, records: list[dict[str, Any]]) -> int:
        """Durably append records (fsync'd before returning); returns how many old records the
        bound made us drop."""
        if not records:
            return 0
        lines = [json.dumps(record, separators=(",", ":")) + "\n" for record in records]
        with self._lock:
            while lines:
                segment = self._writable_segment()
                room = self.segment_records - segment.records
                chunk, lines = lines[:room], lines[room:]
                with open(segment.path, "a", encoding="utf-8") as handle:
                    handle.writelines(chunk)
                    handle.flush()
                    os.fsync(handle.fileno())
                segment.records += len(chunk)
            return self._enforce_bound()

    def _writable_segment(self) -> _Segment:
        if self._active is None or self._active.records >= self.segment_records:
            path = self.directory / f"{self._next_seq:012d}.jsonl"
            self._next_seq += 1
            create_private_file(path)
            _fsync_dir(self.directory)  # the new name must survive a power cut too
            self._active = _Segment(path, 0)
            self._segments.append(self._active)
        return self._active

    def _enforce_bound(self) -> int:
        dropped = 0
        total = sum(segment.records for segment in self._segments)
        while total > self.max_records:
            victim = next(
                (s for s in self._segments if s.path != self._reading and s is not self._active),
                None,
            )
            if victim is None:
                break  # only the segment being replayed/written is left; it is within bounds
            self._segments.remove(victim)
            victim.path.unlink(missing_ok=True)
            total -= victim.records
            dropped += victim.records
        if dropped:
            self.dropped += dropped
            log.error("spool_full_dropped_oldest", dropped=dropped, bound=self.max_records)
        return dropped

    # -- reading ------------------------------------------------------------------------------

    def take_oldest(self) -> SegmentBatch | None:
        """Read the oldest segment for replay (sealing it if it is the one being appended to)."""
        with self._lock:
            if not self._segments:
                return None
            segment = self._segments[0]
            if segment is self._active:
                self._active = None  # appends go to a fresh segment from now on
            self._reading = segment.path
        records: list[dict[str, Any]] = []
        corrupt = 0
        try:
            with open(segment.path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        value = json.loads(line)
                    except ValueError:
                        corrupt += 1
                        continue
                    if isinstance(value, dict):
                        records.append(value)
                    else:
                        corrupt += 1
        except FileNotFoundError:
            pass  # dropped by the bound meanwhile
        if corrupt:
            with self._lock:
                self.dropped += corrupt
            log.warning("spool_corrupt_lines", segment=segment.path.name, lines=corrupt)
        return SegmentBatch(segment.path, records, corrupt)

    def remove(self, path: Path) -> None:
        """Forget a segment whose records all reached the database."""
        with self._lock:
            for segment in list(self._segments):
                if segment.path == path:
                    self._segments.remove(segment)
            if self._reading == path:
                self._reading = None
            path.unlink(missing_ok=True)

    def purge_older_than(self, cutoff: float) -> tuple[int, int]:
        """Delete every segment last written before ``cutoff`` (a ``time.time()`` value): all its
        records are older than that. The one being replayed stays (the next run gets it).
        Returns (segments, records) deleted."""
        segments = records = 0
        with self._lock:
            for segment in list(self._segments):
                if segment.path == self._reading:
                    continue
                try:
                    if segment.path.stat().st_mtime >= cutoff:
                        continue
                except FileNotFoundError:
                    pass  # gone already: forget it too
                if segment is self._active:
                    self._active = None
                self._segments.remove(segment)
                segment.path.unlink(missing_ok=True)
                segments += 1
                records += segment.records
            self.purged += records
        return segments, records

    def release(self, path: Path) -> None:
        """Replay of ``path`` stopped early: it stays, and becomes droppable again."""
        with self._lock:
            if self._reading == path:
                self._reading = None


def _count_lines(path: Path) -> int:
    count = 0
    last = b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (0 if last == b"\n" else 1)  # a torn last line still counts as one record


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
