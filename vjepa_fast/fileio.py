"""File helpers: atomic writes, the one helper every writer of the package uses (checkpoints, episodes, latent caches,
configs, run logs): the data goes to a temporary file beside the target (a name no reader looks for), is
flushed to disk, and is renamed over the target in one step, so a reader sees the old file or the new one and
a crash leaves at worst a stray temporary file, never a torn target; and the one reader of path list files."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "temp_path", "read_path_list"]


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary name used for writing `path`: hidden, in the same folder (same file system), per process."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Writes `data` to `path` atomically (temp file + fsync + rename); returns the path."""
    p = Path(path)
    tmp = temp_path(p)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = True) -> Path:
    """Writes `text` (UTF-8) to `path` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def read_path_list(path: str | os.PathLike) -> list[str]:
    """The paths a list file names: the first column (split on spaces, tabs or commas) of each non-empty line,
    `#` lines skipped, `~` expanded, relative paths taken from the list file's folder. Every command that
    takes a .txt list of videos, episodes or DROID trajectories reads it with this."""
    p = Path(path)
    out = []
    for line in p.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        q = Path(os.path.expanduser(line.replace("\t", " ").replace(",", " ").split()[0]))
        out.append(str(q if q.is_absolute() else p.parent / q))
    return out
