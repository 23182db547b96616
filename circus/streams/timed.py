"""TimedRotatingFileStream: a new file every period (seconds, minutes, hours, days, at midnight or
on a weekday), the old one renamed with the start of its period: ``filename.20240501`` (days),
``filename.2024050114`` (hours) … and ``.gz`` with ``compress``.

The period a line belongs to is decided by the time it arrived at circusd, so a slow disk does
not move lines to the next file. A rotation happens when the first line of a new period is
written (a quiet process does not create empty files). ``backup_count`` keeps that many old files
(0: all). A name that is already taken (circusd restarted within the period) gets ``-1``, ``-2``…
rather than overwriting anything.
"""
from __future__ import annotations

import os
import re
import time
from typing import Any

from circus.security.safepath import walk
from circus.streams.files import DIRECT, Access, FileTarget, Owner, exists_at, gzip_at
from circus.streams.formats import Batch, Format

__all__ = ["TimedRotatingFileStream", "PERIODS"]

#: rotate_when -> (seconds of one unit, suffix format)
PERIODS = {
    "S": (1, "%Y%m%d%H%M%S"),
    "M": (60, "%Y%m%d%H%M"),
    "H": (3600, "%Y%m%d%H"),
    "D": (86400, "%Y%m%d"),
    "MIDNIGHT": (86400, "%Y%m%d"),
    **{f"W{day}": (7 * 86400, "%Y%m%d") for day in range(7)},
}


class TimedRotatingFileStream(FileTarget):
    def __init__(self, filename: str, fmt: Format, owner: Owner = None, *, rotate_when: str,
                 rotate_interval: int = 1, backup_count: int = 0, utc: bool = False,
                 compress: bool = False, access: Access = DIRECT) -> None:
        super().__init__(filename, fmt, owner, access=access)
        self.when = rotate_when.upper()
        unit, self.suffix = PERIODS[self.when]
        self.interval = max(1, rotate_interval)
        self.period = unit * self.interval
        self.backup_count = backup_count
        self.utc = utc
        self.compress = compress
        self.rollover_at = 0.0
        self._backup_name = re.compile(_backup_pattern(os.path.basename(filename)))

    def open(self) -> None:
        super().open()
        if not self.rollover_at:
            started = os.fstat(self.fd).st_mtime if self.size else time.time()
            self.rollover_at = self.next_rollover(started)

    def next_rollover(self, now: float) -> float:
        """When the period that contains ``now`` ends."""
        if self.when == "MIDNIGHT" or self.when.startswith("W"):
            from datetime import datetime, timedelta, timezone

            tz = timezone.utc if self.utc else None
            today = datetime.fromtimestamp(now, tz).replace(hour=0, minute=0, second=0, microsecond=0)
            days = 1
            if self.when.startswith("W"):
                days = (int(self.when[1]) - today.weekday()) % 7 or 7
            days += (self.interval - 1) * (7 if self.when.startswith("W") else 1)
            # a naive datetime is local time: timestamp() follows daylight saving changes
            return (today + timedelta(days=days)).timestamp()
        return now + self.period

    def write(self, items: list[Batch]) -> None:
        if not self.regular:
            super().write(items)
            return
        blob = self.fmt.blob
        out: list[bytes] = []
        for batch in items:
            if batch[0] >= self.rollover_at:
                if out:
                    self._write_bytes(b"".join(out))
                    out = []
                self.rollover(batch[0])
            out.append(blob(batch))
        if out:
            self._write_bytes(b"".join(out))

    def rollover(self, now: float) -> None:
        started = self.rollover_at - self.period
        self.rollover_at = self.next_rollover(now)
        if not self.size:                    # nothing written in that period: keep the file
            return
        stamp = (time.gmtime if self.utc else time.localtime)(started)
        self._close_fd()
        self.access.run(rotate_timed, self.path, time.strftime(self.suffix, stamp), self.compress,
                        self.backup_count, self.owners)
        self.open()

    def backups(self) -> list[str]:
        """The rotated files of this stream, oldest first."""
        folder = os.path.dirname(self.path) or "."
        found = [f for f in os.listdir(folder) if self._backup_name.fullmatch(f)]
        return [os.path.join(folder, f) for f in sorted(found, key=_backup_key)]


def _backup_pattern(base: str) -> str:
    return rf"{re.escape(base)}\.\d{{8}}(\d{{2}}){{0,3}}(-\d+)?(\.gz)?"


def rotate_timed(path: str, stamp: str, compress: bool, backup_count: int,
                 owners: tuple[int, ...]) -> tuple[Any, list[int]]:
    """Job: ``path`` renamed ``path.<stamp>`` (``-1``, ``-2``… when taken), compressed with
    ``compress``, and the backups beyond ``backup_count`` (0: none) removed; every name in the
    directory ``path``'s walk reached."""
    dfd, name, _ = walk(path, follow_last=False)
    try:
        ext = ".gz" if compress else ""
        target, n = f"{name}.{stamp}", 0
        while exists_at(target, dfd) or exists_at(target + ext, dfd):
            n += 1
            target = f"{name}.{stamp}-{n}"
        os.replace(name, target, src_dir_fd=dfd, dst_dir_fd=dfd)
        if compress:
            gzip_at(dfd, target, target + ".gz", owners)
        if backup_count > 0:
            listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
            try:
                pattern = re.compile(_backup_pattern(name))
                old = sorted((f for f in os.listdir(listing) if pattern.fullmatch(f)),
                             key=_backup_key)
            finally:
                os.close(listing)
            for stale in old[:max(0, len(old) - backup_count)]:
                try:
                    os.unlink(stale, dir_fd=dfd)
                except FileNotFoundError:
                    pass
    finally:
        os.close(dfd)
    return None, []


def _backup_key(name: str) -> tuple[str, int]:
    """``web.log.20240501-2.gz`` sorts after ``web.log.20240501-1`` and before ``web.log.20240502``."""
    stem = name[:-3] if name.endswith(".gz") else name
    head, _, count = stem.rpartition("-")
    if head and count.isdigit() and "." in head:
        return head, int(count)
    return stem, 0
