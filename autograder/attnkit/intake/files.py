"""Reading what a student submitted: regular files only, never through a link,
never more than a sane size, race-free where the OS opens relative to an open
folder (``_Root``)."""

from __future__ import annotations

import errno
import os
import stat

from attnkit.errors import GraderError

PY_LIMIT = 512 << 10  # a .py file larger than this is not a hand-written exercise
NOTEBOOK_LIMIT = 8 << 20  # the kit's notebooks are ~20 KiB; with every picture drawn, well under 1 MiB

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FILE_FLAGS = (os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0))
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)



class IntakeError(GraderError):
    """The path given holds nothing that can be graded; the message says why and what to do."""


# --------------------------------------------------------------------------- reading one file

def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 \
        else f"{n >> 10} KiB"


def _open_error(name: str, exc: OSError) -> IntakeError:
    if exc.errno == errno.ELOOP:
        return IntakeError(f"{name}: a symbolic link; not followed (submit the file itself)")
    if exc.errno == errno.ENXIO:
        return IntakeError(f"{name}: a socket; not read (submit a regular file)")
    if exc.errno == errno.ENOENT:
        return IntakeError(f"{name}: no such file or folder")
    return IntakeError(f"{name}: cannot be read ({exc.strerror or exc}); submit a regular file")


def _read_fd(fd: int, name: str, limit: int) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise IntakeError(f"{name}: {_kind(info.st_mode)}, not a regular file; not read (submit the file itself)")
    what = "a notebook" if name.endswith(".ipynb") else "a .py file"
    # a notebook's size is mostly its saved outputs, which are never graded
    fix = ": clear its outputs (Edit > Clear Outputs of All Cells), save it and grade again" if what == "a notebook" else ""
    if info.st_size > limit:
        raise IntakeError(f"{name}: {_size(info.st_size)}, over the {_size(limit)} limit for {what}; not read{fix}")
    chunks, total = [], 0
    while total <= limit:
        chunk = os.read(fd, min(1 << 20, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:  # it grew while being read
        raise IntakeError(f"{name}: over the {_size(limit)} limit for {what}; not read{fix}")
    return b"".join(chunks)


def read_regular(path: str, limit: int = PY_LIMIT, name: str | None = None) -> bytes:
    """The bytes of a regular file, never through a link, a device or a FIFO,
    and never more than ``limit``. Messages name it ``name`` (default: ``path``)."""
    return _read_opened(lambda: os.open(path, _FILE_FLAGS), name or path, limit)


def _read_opened(open_fd, name: str, limit: int) -> bytes:
    """The bytes of the file ``open_fd()`` opens (it may raise IntakeError);
    an OSError on the way is told as an IntakeError naming ``name``."""
    try:
        fd = open_fd()
    except OSError as exc:
        raise _open_error(name, exc) from None
    try:
        return _read_fd(fd, name, limit)
    finally:
        os.close(fd)


# Where the OS opens a file relative to an open folder (Linux, macOS), every step below
# the top is taken without following a link, race-free. Elsewhere (Windows: self-checks
# only, class grading for credit is on Linux) each step is checked with lstat first.
_AT = os.open in os.supports_dir_fd and os.scandir in os.supports_fd


class _Root:
    """An open submission folder: its listings and files, never through a link."""

    def __init__(self, path: str, label: str, follow: bool):
        self.path = path
        try:
            if not follow and os.path.islink(path):
                raise IntakeError(f"{label}: a symbolic link, not a folder; not followed")
            if _AT:
                self.fd = os.open(path, _DIR_FLAGS | (0 if follow else _NOFOLLOW))
            elif not os.path.isdir(path):
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory")
        except OSError as exc:
            if exc.errno == errno.ENOTDIR:
                raise IntakeError(f"{label}: not a folder") from None
            raise IntakeError(f"{label}: cannot be opened ({exc.strerror or exc})") from None

    def close(self) -> None:
        if _AT:
            os.close(self.fd)

    def _folder_fd(self, folders: tuple[str, ...]) -> int:
        fd = os.dup(self.fd)
        try:
            for folder in folders:
                sub = os.open(folder, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = sub
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _checked_path(self, parts: tuple[str, ...]) -> str:
        path = self.path
        for folder in parts[:-1]:
            path = os.path.join(path, folder)
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise OSError(errno.ELOOP, "Too many levels of symbolic links")
        return os.path.join(path, parts[-1])

    def listing(self, folders: tuple[str, ...]) -> list[tuple[str, int]]:
        """(name, mode as lstat gives it) of every entry of a folder below the top, sorted."""
        fd = self._folder_fd(folders) if _AT else None
        try:
            out = []
            with os.scandir(fd if _AT else self._checked_path(folders + ("",))) as it:
                for entry in it:  # stat while the folder is open: with an fd, stat is relative to it
                    try:
                        out.append((entry.name, entry.stat(follow_symlinks=False).st_mode))
                    except OSError:
                        continue
        finally:
            if fd is not None:
                os.close(fd)
        return sorted(out)

    def read(self, parts: tuple[str, ...], limit: int) -> bytes:
        """A regular file below the top, at most ``limit`` bytes; IntakeError naming it otherwise."""
        name = "/".join(parts)

        def open_fd() -> int:
            if _AT:
                parent = self._folder_fd(parts[:-1])
                try:
                    return os.open(parts[-1], _FILE_FLAGS, dir_fd=parent)
                finally:
                    os.close(parent)
            path = self._checked_path(parts)
            before = os.lstat(path)
            if not stat.S_ISREG(before.st_mode):
                raise IntakeError(f"{name}: {_kind(before.st_mode)}, not a regular file; not read "
                                  f"(submit the file itself)")
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            if (os.fstat(fd).st_ino, os.fstat(fd).st_dev) != (before.st_ino, before.st_dev):
                os.close(fd)
                raise IntakeError(f"{name}: changed while being read; not read")
            return fd

        return _read_opened(open_fd, name, limit)
