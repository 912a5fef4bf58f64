"""One writer at a time: an inter-process lock on an index folder.

`facesearch index` and `facesearch remove` hold an exclusive, non-blocking `flock` on the file
LOCK_FILENAME in the index folder for as long as they change the index; a second writer is
refused at once with a message naming the holder's pid. Queries never take it: they read the
last committed state (SQLite WAL, FAISS file replaced atomically). The kernel drops the lock
when its holder exits, however it exits (kill -9 included), so a stale lock cannot block anyone;
the file itself stays (unlinking a lock file races with processes that just opened it).
"""
from __future__ import annotations

import os
from pathlib import Path

from facesearch.errors import FaceSearchError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

LOCK_FILENAME = "index.lock"


class IndexBusyError(FaceSearchError):
    """Another process is changing the index."""


class IndexLock:
    """`with IndexLock(index_dir, "index"):` ... holds the index folder's write lock."""

    def __init__(self, index_dir: str | os.PathLike, purpose: str = "index"):
        self.index_dir = Path(index_dir)
        self.path = self.index_dir / LOCK_FILENAME
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> IndexLock:
        """Take the lock now or raise IndexBusyError; the folder is created if missing."""
        if self._fd is not None:
            raise RuntimeError("IndexLock is not reentrant")
        self.index_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            _lock(fd)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise IndexBusyError(
                f"another facesearch {holder} holds the index at {self.index_dir}; "
                "wait for it to finish (or stop it), then try again") from None
        try:  # who holds it, for the message above (advisory only)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()} {self.purpose}\n".encode())
        except OSError:
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        finally:
            _unlock(fd)
            os.close(fd)

    def __enter__(self) -> IndexLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError when held
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


def _unlock(fd: int) -> None:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    except OSError:
        pass


def _read_holder(fd: int) -> str:
    """'index run (pid 123)' from the lock file, or a plain description if it says nothing."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        words = os.read(fd, 200).decode("ascii", "replace").split()
    except OSError:
        words = []
    if len(words) >= 2 and words[0].isdigit():
        return f"{words[1]} run (pid {words[0]})"
    return "index or remove run"
