"""The run folder's lock file: one writer per run folder, for the run's whole lifetime.

``run.lock`` holds the owner's host, pid, process start time and start date as JSON; the owner refreshes
its modification time as a heartbeat. A lock is stale, and is taken over with a warning, when its pid is
no longer running on this host (or runs another program: the process start time differs), or when it
comes from another host and has had no heartbeat for ``stale_after`` seconds. Any other lock refuses the
run with :class:`RunLocked`, naming who holds it.

A takeover is atomic: it holds an ``flock`` on ``.run.lock.takeover`` (the kernel releases it if the
taker dies) and replaces the lock only if it is still the one judged stale. Two processes that both
judged a dead pid's lock stale cannot both take it over: the second finds the first one's live lock.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from mae_domains.runs.layout import LOCK_NAME

log = logging.getLogger(__name__)

STALE_AFTER_S = 3600.0  # a lock from another host without a heartbeat for this long is stale
HEARTBEAT_S = 60.0


class RunLocked(RuntimeError):
    """Another live process holds the run folder's lock."""


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux ``/proc``; None elsewhere or when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22: starttime, counted after the command name


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass(frozen=True)
class LockOwner:
    host: str
    pid: int
    started: str = ""
    pid_start: str | None = None

    @classmethod
    def current(cls) -> "LockOwner":
        return cls(socket.gethostname(), os.getpid(), time.strftime("%Y-%m-%d %H:%M:%S"),
                   process_start_time(os.getpid()))

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host} (since {self.started or 'an unknown time'})"


def read_owner(path: Path) -> LockOwner | None:
    """The lock's owner, or None when the file is unreadable or not ours (a torn write)."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return LockOwner(str(data["host"]), int(data["pid"]), str(data.get("started", "")), data.get("pid_start"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stale_reason(owner: LockOwner | None, age_s: float, stale_after: float) -> str | None:
    """Why a lock held by ``owner`` (last heartbeat ``age_s`` ago) is stale, or None if it is live."""
    if owner is None:
        return "an unreadable lock file" if age_s > HEARTBEAT_S else None
    if owner.host == socket.gethostname():
        if not pid_alive(owner.pid):
            return f"{owner.describe()} is no longer running"
        now_start = process_start_time(owner.pid)
        if owner.pid_start and now_start and now_start != owner.pid_start:
            return f"{owner.describe()} is no longer running (the pid now belongs to another process)"
        return None
    if age_s > stale_after:
        return f"{owner.describe()} has not refreshed it for {age_s / 60:.0f} min (limit {stale_after / 60:.0f} min)"
    return None


class RunLock:
    """``with RunLock(folder):`` holds ``folder/run.lock``; :meth:`refresh` is the heartbeat."""

    def __init__(self, folder: str | Path, stale_after: float = STALE_AFTER_S) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.stale_after = stale_after
        self.owner = LockOwner.current()
        self.held = False
        self._beat = 0.0

    def acquire(self) -> "RunLock":
        for _ in range(3):
            if self._create():
                self.held = True
                self._beat = time.monotonic()
                return self
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile
            judged = self._identity()
            holder = read_owner(self.path)
            reason = stale_reason(holder, age, self.stale_after)
            if reason is None:
                who = holder.describe() if holder else "a process that is writing its lock file"
                raise RunLocked(f"{self.path.parent}: the run folder is in use by {who}; wait for it to end, "
                                f"or delete {self.path} if that run is dead")
            with self._takeover_guard():
                if self._identity() != judged:  # taken over (or released) since it was judged: judge again
                    continue
                log.warning("taking over a stale lock in %s: %s", self.path.parent, reason)
                self._discard_stale()
                if self._create():
                    self.held = True
                    self._beat = time.monotonic()
                    return self
        raise RunLocked(f"{self.path.parent}: could not take {self.path} (other processes keep taking it)")

    def _identity(self) -> tuple[int, int, str] | None:
        """The lock file as it is now (inode and record: an inode number alone may be reused)."""
        try:
            st = self.path.stat()
            return st.st_dev, st.st_ino, self.path.read_text()
        except (OSError, UnicodeDecodeError):
            return None

    @contextmanager
    def _takeover_guard(self) -> Iterator[None]:
        """One takeover of this folder's lock at a time: an exclusive ``flock`` on a file that is never
        removed. On a file system without ``flock`` the takeover goes on unguarded."""
        import fcntl

        fd = os.open(self.path.with_name(f".{LOCK_NAME}.takeover"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # a takeover lasts milliseconds: wait for one under way
            except OSError as err:
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                log.debug("no flock on %s (%s): takeover unguarded", self.path.parent, err)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _create(self) -> bool:
        """Write the owner to a temp file and link it to the lock name: atomic, and never half written."""
        tmp = self.path.with_name(f".{LOCK_NAME}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.owner.__dict__))
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as fh:
                fh.write(tmp.read_text())
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _discard_stale(self) -> None:
        """Move the stale lock aside first: of two processes taking over, only one rename succeeds."""
        aside = self.path.with_name(f".{LOCK_NAME}.stale-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        aside.unlink(missing_ok=True)

    def refresh(self, force: bool = False) -> None:
        """Heartbeat: touch the lock at most every ``HEARTBEAT_S`` seconds (cheap to call every step)."""
        now = time.monotonic()
        if self.held and (force or now - self._beat >= HEARTBEAT_S):
            self._beat = now
            try:
                os.utime(self.path)
            except OSError as err:
                log.warning("could not refresh %s: %s", self.path, err)

    def release(self) -> None:
        """Remove the lock if it is still ours (a takeover may have replaced it)."""
        if not self.held:
            return
        self.held = False
        holder = read_owner(self.path)
        if holder is not None and (holder.host, holder.pid) == (self.owner.host, self.owner.pid):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
