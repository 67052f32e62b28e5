"""The run directory (/run/iopkt): where root keeps control sockets, lab
state and logs.

Root acts on what it finds there (a lab's state names a PID to signal), so
the directory must be root's and writable by nobody else, whatever the
umask, and so must every file read from it. One place decides that:
`ensure_run_dir` when creating, `read_private` and `open_private` for files.
"""

from __future__ import annotations

import os
import stat

DIR_MODE = 0o755
FILE_MODE = 0o600


class RunDirError(Exception):
    """The run directory or a file in it is not safe to use; str() is one
    line for the user, naming the path and how to fix it."""


def ensure_run_dir(path: str) -> str:
    """Create `path` root's and mode 0755 (the umask cannot widen it), or
    check that the existing one is owned by us (the effective uid) and not
    writable by group or others. Returns `path`; raises RunDirError."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=DIR_MODE, exist_ok=True)
    try:
        os.mkdir(path, DIR_MODE)
        os.chmod(path, DIR_MODE)        # mkdir's mode went through the umask
    except FileExistsError:
        pass
    check_run_dir(path)
    return path


def check_run_dir(path: str) -> None:
    """RunDirError unless `path` is a real directory, ours, that only we
    can write to."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise RunDirError(f"run directory {path} is not a directory (a symlink?); "
                          f"remove it, or set IOPKT_RUN_DIR to another path")
    _check_owner(path, st, "run directory",
                 f"chown root:root {path} && chmod 755 {path}")


def _check_owner(path: str, st: os.stat_result, what: str, fix: str) -> None:
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.geteuid() or mode & 0o022:
        raise RunDirError(f"refusing {what} {path}: owner uid {st.st_uid}, mode {mode:04o} "
                          f"(must be uid {os.geteuid()}, not group/other writable); "
                          f"fix with '{fix}'")


def open_private(path: str, truncate: bool = True) -> int:
    """Open `path` for writing, creating it mode 0600 whatever the umask
    (an existing file is set to 0600 too). Returns the fd. Never follows a
    symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                 | (os.O_TRUNC if truncate else os.O_APPEND), FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_private(path: str, text: str) -> None:
    """Replace `path` atomically with `text`, mode 0600."""
    tmp = path + ".tmp"
    try:
        os.unlink(tmp)                  # a leftover of a crash, whoever made it
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 FILE_MODE)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, FILE_MODE)
        f.write(text)
    os.replace(tmp, path)


def read_private(path: str) -> str | None:
    """The text of `path`, or None if it does not exist. RunDirError if it
    is not ours or others could have written it (then its content cannot be
    trusted to tell root what to do)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:                # ELOOP: a symlink planted there
        raise RunDirError(f"refusing {path}: {e.strerror}; remove it") from None
    with os.fdopen(fd) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RunDirError(f"refusing {path}: not a regular file; remove it")
        _check_owner(path, st, "file", f"rm {path}")
        return f.read()
