"""Sources of the video clip dataset: the manifest (JSON or CSV list of (path, weight)), and the files of one
source (a video/image file, a folder searched recursively for video/image files and robot episodes, or a list
file)."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vjepa_fast.fileio import read_path_list

__all__ = [
    "IMAGE_EXTENSIONS",
    "LIST_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "SourceSpec",
    "as_sources",
    "expand_source",
    "is_episode_dir",
    "load_manifest",
]

VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
LIST_EXTENSIONS = frozenset({".txt", ".lst"})


@dataclass(frozen=True)
class SourceSpec:
    """One data source: ``path`` (file, folder or list file) and its mixture ``weight`` (> 0)."""

    path: str
    weight: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)) or str(self.path) == "":
            raise ValueError(f"path must be a non-empty path, got {self.path!r}")
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"weight must be a finite number > 0, got {self.weight!r} for {self.path}")


def load_manifest(path: str | os.PathLike) -> list[SourceSpec]:
    """Read a source manifest. Relative source paths are resolved against the manifest's folder.

    JSON: a list of ``{"path": ..., "weight": ...}`` objects (or ``[path, weight]`` pairs), or an object with
    such a list under ``"sources"``; ``name`` is optional. CSV: rows ``path,weight[,name]``, an optional header
    row starting with ``path``; blank lines and lines starting with ``#`` are ignored.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"manifest {p} does not exist")
    base = p.parent
    rows: list[tuple[str, float, str]] = []
    if p.suffix.lower() == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, Mapping):
            data = data.get("sources")
        if not isinstance(data, list):
            raise ValueError(f"manifest {p}: expected a list of sources (or {{'sources': [...]}})")
        for entry in data:
            if isinstance(entry, Mapping):
                if "path" not in entry:
                    raise ValueError(f"manifest {p}: source entry without 'path': {entry!r}")
                rows.append((str(entry["path"]), float(entry.get("weight", 1.0)), str(entry.get("name", ""))))
            elif isinstance(entry, (list, tuple)) and len(entry) in (1, 2):
                rows.append((str(entry[0]), float(entry[1]) if len(entry) == 2 else 1.0, ""))
            else:
                raise ValueError(f"manifest {p}: cannot read source entry {entry!r}")
    elif p.suffix.lower() == ".csv":
        with p.open(newline="") as f:
            for i, row in enumerate(csv.reader(f)):
                row = [c.strip() for c in row]
                if not row or not row[0] or row[0].startswith("#"):
                    continue
                if i == 0 and row[0].lower() == "path":
                    continue
                try:
                    weight = float(row[1]) if len(row) > 1 and row[1] else 1.0
                except ValueError as e:
                    raise ValueError(f"manifest {p} line {i + 1}: bad weight {row[1]!r}") from e
                rows.append((row[0], weight, row[2] if len(row) > 2 else ""))
    else:
        raise ValueError(f"manifest {p}: expected a .json or .csv file")
    if not rows:
        raise ValueError(f"manifest {p} lists no source")
    out = []
    for src, weight, name in rows:
        sp = Path(os.path.expanduser(src))
        out.append(SourceSpec(str(sp if sp.is_absolute() else base / sp), weight, name or sp.stem))
    return out


def _is_media(path: Path) -> bool:
    ext = path.suffix.lower()
    return ext in VIDEO_EXTENSIONS or ext in IMAGE_EXTENSIONS


def is_episode_dir(path: str | os.PathLike) -> bool:
    """A robot episode folder (meta.json beside its frames): read as one video by the clip dataset."""
    return (Path(path) / "meta.json").is_file()


def expand_source(path: str | os.PathLike) -> list[str]:
    """Files of one source: the file itself, a folder's video/image files and robot episode folders (recursive,
    sorted; the frames inside an episode are not listed on their own), or the lines of a list file (first
    comma/tab/space-separated field, relative to the list file's folder).

    Files are listed, not opened: broken ones are found (and skipped) when read.
    """
    p = Path(path)
    if p.is_dir():
        if is_episode_dir(p):
            return [str(p)]
        out = []
        for root, dirs, names in os.walk(p):
            if "meta.json" in names:  # an episode: one source file, its frames are not walked
                out.append(root)
                dirs.clear()
                continue
            out.extend(os.path.join(root, n) for n in names if _is_media(Path(n)))
        return sorted(out)
    if p.suffix.lower() in LIST_EXTENSIONS and p.is_file():
        return read_path_list(p)
    if _is_media(p) or is_episode_dir(p):
        return [str(p)]  # may not exist yet; a missing file is skipped and counted when read
    raise ValueError(f"source {p} is neither a folder, a list file ({sorted(LIST_EXTENSIONS)}) nor a video/image")


def as_sources(sources: Any) -> list[SourceSpec]:
    """A manifest path, a source path, or a list of SourceSpec / paths / (path, weight) pairs -> SourceSpecs."""
    if isinstance(sources, (str, os.PathLike)):
        p = Path(sources)
        if p.suffix.lower() in (".json", ".csv") and p.is_file():
            return load_manifest(p)
        return [SourceSpec(str(p), 1.0, p.stem)]
    if isinstance(sources, Sequence) and len(sources) > 0:
        out = []
        for s in sources:
            if isinstance(s, SourceSpec):
                out.append(s)
            elif isinstance(s, (str, os.PathLike)):
                out.append(SourceSpec(str(s), 1.0, Path(s).stem))
            elif isinstance(s, (tuple, list)) and len(s) == 2:
                out.append(SourceSpec(str(s[0]), float(s[1]), Path(s[0]).stem))
            else:
                raise TypeError(f"manifest_or_sources entries must be SourceSpec, path or (path, weight), got {s!r}")
        return out
    raise TypeError(
        "manifest_or_sources must be a manifest/source path or a non-empty list of sources, "
        f"got {type(sources).__name__}"
    )
