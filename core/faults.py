"""Machine faults as clear errors: a full or read-only disk and memory that cannot be had.

:func:`as_user_error` turns the exceptions Python, NumPy and torch raise for these into a
:class:`~forgelab.core.errors.ResourceError` (exit code 4); :func:`check_memory` refuses an
allocation that cannot fit before it is attempted (Linux overcommits memory, so a huge
``np.zeros`` "succeeds" and the process is killed later).
"""

from __future__ import annotations

import errno
import os

from forgelab.core.errors import ForgelabError, ResourceError

DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG}
_ALLOC_MESSAGES = ("can't allocate memory", "not enough memory", "out of memory",
                   "unable to allocate", "cannot allocate memory")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    """Decimal units (1 GB = 10^9 bytes), as the README's memory figures are."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} PB"


def check_memory(nbytes: float, what: str, setting: str) -> None:
    """Raise :class:`ResourceError` when ``nbytes`` exceed the memory available now.

    :param what: what would be allocated (``the replay buffer``).
    :param setting: the option that sets its size, for the hint (``agent.buffer_size``).
    """
    available = available_memory()
    if available is not None and nbytes > available:
        raise ResourceError(f"{what} needs {human_bytes(nbytes)} but this machine has "
                            f"{human_bytes(available)} of memory available",
                            hint=f"lower {setting}")


def disk_error(exc: OSError, what: str) -> ResourceError:
    """A readable error for a failed write (``exc.errno`` in :data:`DISK_ERRNOS`)."""
    where = f" {exc.filename}" if exc.filename else ""
    return ResourceError(f"cannot write {what}:{where}: {exc.strerror or exc}",
                         hint="free disk space or make the run directory writable, then "
                         "resume with `forgelab run --resume RUN_DIR`")


def as_user_error(exc: BaseException) -> ForgelabError | None:
    """The clear error for a machine fault (disk full / read-only, out of memory), else None."""
    if isinstance(exc, ForgelabError):
        return exc
    if isinstance(exc, MemoryError) or (
            isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _ALLOC_MESSAGES)):
        detail = str(exc).splitlines()[0][:200] if str(exc) else "MemoryError"
        return ResourceError(f"out of memory: {detail}",
                             hint="lower the sizes in the config (buffer_size, hidden sizes, "
                             "batch_size, num_envs, --n)")
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        where = f" {exc.filename}" if exc.filename else ""
        return ResourceError(f"cannot write{where}: {exc.strerror or exc}",
                             hint="free disk space or make the folder writable, then try "
                             "again")  # (a write during training has disk_error's resume hint)
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return ForgelabError(f"file name too long: {exc.filename}",
                             hint="use a shorter name or output_dir")
    if isinstance(exc, RuntimeError) and "write" in str(exc).lower() and "file" in str(exc).lower():
        return ResourceError(f"cannot write a file: {str(exc).splitlines()[0][:200]}",
                             hint="free disk space or make the folder writable")
    return None
