"""Durable, append-only cache of teacher replies, so an interrupted distillation resumes where it stopped.

One JSONL file (``replies.jsonl``) in the cache dir, which dvc.yaml declares as an output with
``persist: true`` and ``cache: false``: DVC neither deletes it before a run nor restores an older copy
over it (with DVC caching on, ``dvc exp run`` did, losing paid replies). Each line is one completed request,
keyed by :func:`request_key` (a hash of model + prompt + image bytes + generation params), written with
flush + fsync before the request counts as done. A ``kill -9`` can at worst leave one torn last line:
it is ignored on load and cut off before the next append, so it never glues onto a good line. When a
key appears twice (a re-requested failure), the last line wins.

One run at a time: a writable cache takes an exclusive ``flock`` on ``.lock`` in the cache dir
*before* it reads the file and holds it until :meth:`ReplyCache.close`. A second run on the same
cache waits there (saying whom it waits for), then loads every line the first one wrote and answers
those records from the cache: no line is lost (the torn-tail repair happens under the lock, after a
re-check that the file is still exactly what was read) and no request is paid for twice. The kernel
drops the lock when its holder dies, ``kill -9`` included, so a crash never leaves the cache locked.
"""

from __future__ import annotations

import hashlib
import json
import fcntl
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

log = logging.getLogger(__name__)

CACHE_FILE = "replies.jsonl"
LOCK_FILE = ".lock"  # its own file: the data file is truncated and reopened, the lock must not depend on it
KEY_VERSION = 1  # bump when the request layout changes meaning without changing its fields


def request_key(fields: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of everything that decides the reply (never the API key)."""
    blob = json.dumps({"v": KEY_VERSION, **fields}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ReplyCache:
    """Map request key -> cached entry (a dict with at least ``key``), backed by an append-only JSONL."""

    def __init__(self, cache_dir: str | Path, lock: bool = True, lock_timeout_s: float | None = None):
        """``lock=False``: a read-only view (inspection while a run may be writing); it cannot append.
        ``lock_timeout_s``: give up waiting for another run's lock after this long (None: wait)."""
        self.dir = Path(cache_dir)
        self.path = self.dir / CACHE_FILE
        self.entries: dict[str, dict] = {}
        self.skipped_lines = 0  # torn or corrupt lines ignored on load
        self.lock_waited_s = 0.0  # how long this run waited for another run on the same cache
        self._fh = None
        self._lock_fd: int | None = None
        self._writable = lock
        self._loaded_size = 0
        self._truncate_to: int | None = None  # set by _load when the file ends in a torn line
        if lock:
            self._acquire(lock_timeout_s)
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def _acquire(self, timeout_s: float | None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.dir / LOCK_FILE
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        t0 = time.monotonic()
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                log.warning(
                    "%s: another run (pid %s) is using this cache; waiting for it to finish, then its replies "
                    "are reused (two runs on one cache never pay for a request twice)", self.dir, holder
                )
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                            raise TimeoutError(
                                f"{self.dir}: still locked by pid {holder} after {timeout_s:g}s"
                            ) from None
                        time.sleep(0.05)
            self.lock_waited_s = time.monotonic() - t0
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        self._loaded_size = len(data)
        good_end = 0  # byte offset just past the last complete, parseable line
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl == -1:  # no newline: the torn tail of a killed write
                self.skipped_lines += 1
                log.warning(
                    "%s: ignoring a torn last line (%d bytes) left by an interrupted run", self.path, len(data) - pos
                )
                break
            line = data[pos:nl].strip()
            pos = nl + 1
            if not line:
                good_end = pos
                continue
            try:
                entry = json.loads(line)
                key = entry["key"]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                self.skipped_lines += 1
                log.warning("%s: ignoring a corrupt line ending at byte %d", self.path, pos)
                good_end = pos  # a complete (newline-ended) bad line is harmless to keep
                continue
            self.entries[key] = entry
            good_end = pos
        self._truncate_to = good_end if good_end < len(data) else None

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def _open(self):
        if self._fh is None:
            if not self._writable:
                raise RuntimeError(f"{self.path}: opened read-only (lock=False); cannot append")
            self.dir.mkdir(parents=True, exist_ok=True)
            if self._truncate_to is not None:
                # Cut the torn tail so the next line starts on a fresh line - but only if the file is
                # still exactly what was loaded (we hold the lock; this guards against a writer that
                # ignores it, e.g. `cat other/replies.jsonl >> replies.jsonl`). Otherwise end the torn
                # line with a newline instead: it stays, ignored, and no byte anyone wrote is removed.
                with self.path.open("r+b") as f:
                    if os.fstat(f.fileno()).st_size == self._loaded_size:
                        f.truncate(self._truncate_to)
                    else:
                        f.seek(0, os.SEEK_END)
                        f.write(b"\n")
                    f.flush()
                    os.fsync(f.fileno())
                self._truncate_to = None
            self._fh = self.path.open("a", encoding="utf-8", newline="\n")
        return self._fh

    def write_many(self, entries: Iterable[dict]) -> None:
        """Append entries and flush them to the kernel (they survive a kill -9 of this process; a
        machine crash needs :meth:`sync` too). One ``write()`` of whole lines, on an O_APPEND file."""
        entries = list(entries)
        if not entries:
            return
        fh = self._open()
        fh.write(
            "".join(json.dumps(e, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n" for e in entries)
        )
        fh.flush()
        for e in entries:
            self.entries[e["key"]] = e

    def sync(self) -> None:
        """fsync what was written (the runner calls this from a worker thread, once per batch)."""
        if self._fh is not None:
            os.fsync(self._fh.fileno())

    def append_many(self, entries: Iterable[dict]) -> None:
        """Append entries and fsync once: each is durable when this returns."""
        self.write_many(entries)
        self.sync()

    def append(self, entry: dict) -> None:
        self.append_many([entry])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
