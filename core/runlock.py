"""One writer per run directory: ``run.lock`` held with ``flock`` while a job trains in it.

The kernel drops an ``flock`` when its process dies, however it dies (SIGKILL included), so a
lock left by a killed process is taken over by the next ``--resume`` without any clean-up; the
file only records who holds it (pid, host, command) for the refusal message.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from forgelab.core.errors import ForgelabError

LOCK_FILE = "run.lock"


class RunLock:
    """An exclusive, non-blocking lock on ``<run_dir>/run.lock``.

    :param run_dir: the run directory to lock.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise a :class:`ForgelabError` naming the process that holds it."""
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise ForgelabError(
                    f"{self.path.parent} is in use by process {holder.get('pid', '?')} on "
                    f"{holder.get('host', '?')} (`{holder.get('command', 'forgelab')}`, since "
                    f"{holder.get('since', '?')}); one process at a time writes a run",
                    hint="wait for it to finish, or stop it (Ctrl-C or `kill "
                    f"{holder.get('pid', 'PID')}`) and resume again") from None
            # The holder may have removed the file between our open and flock: lock the file
            # that is on disk now, not an unlinked one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "command": " ".join(["forgelab", *sys.argv[1:]])[:200],
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (safe to call twice)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only disk: the kernel still drops the lock below
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def lock_held(run_dir: Path) -> bool:
    """Whether a live process on this machine holds the run's ``run.lock`` (a run killed
    outright leaves the file, but the kernel dropped its lock).

    The lock is only probed when the pid it names is alive here, so a report never touches
    the lock of a dead run that a ``--resume`` may be taking; a run of another host cannot
    be told from a killed one and counts as unfinished.
    """
    import fcntl

    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        holder = _read(fd)
        pid = holder.get("pid")
        if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # alive, another user's
        try:  # a shared probe fails only while the runner holds its exclusive lock
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False
    finally:
        os.close(fd)  # also drops the probe's lock when it was granted
