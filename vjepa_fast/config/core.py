"""Typed configs as data: dataclass <-> dict with checked types, `key.sub=value` overrides, TOML/JSON files.

Every command with options worth a file builds its config here: `from_dict` converts a (nested) dict to the
dataclass, naming the key of any unknown name (with the closest valid ones) or wrong type; `apply_overrides`
sets dotted keys from TOML-syntax strings; `load_config` layers defaults < preset < file < overrides;
`to_toml` writes a file that loads back to the same config. Imports nothing else from vjepa_fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import logging
import os
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package (a dependency there)
    import tomli as tomllib

__all__ = ["from_dict", "to_dict", "config_keys", "parse_override", "apply_overrides", "read_config_file",
           "load_config", "merge_dicts", "field_help", "describe_keys", "to_toml", "toml_value", "unknown_key_error"]

T = TypeVar("T")
_LOG = logging.getLogger(__name__)
# A config class may name keys it no longer has: {old key: what replaced it}, e.g. {"bf16": "amp = ..."}.
RENAMED_KEYS_ATTR = "RENAMED_KEYS"


# ------------------------------------------------------------------------------------------ dict -> dataclass
def _is_optional(tp: Any) -> tuple[bool, Any]:
    """(True, X) for `X | None`, else (False, tp)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _convert(value: Any, tp: Any, where: str) -> Any:
    """`value` checked against type `tp` (lists -> tuples where the type says so); TypeError naming `where`."""
    optional, inner = _is_optional(tp)
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _convert(value, inner, where)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"{where} must be a table/dict, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where} must be a list, got {type(value).__name__}")
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        items = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where} must be a list, got {value!r}")
        if len(items) == 2 and items[1] is Ellipsis:
            items = (items[0],) * len(value)
        if len(value) != len(items):
            raise TypeError(f"{where} must be a list of {len(items)} values, got {value!r}")
        return tuple(_convert(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, items)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise TypeError(f"{where} must be a table/dict, got {type(value).__name__}")
        return {str(k): v for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a string, got {value!r}")
        return value
    return value  # unions such as int | tuple[int, int]: the dataclass checks them


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def config_keys(cls: type) -> list[str]:
    """Every dotted key of config dataclass `cls` (nested dataclasses expanded)."""
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += [f"{f.name}.{k}" for k in config_keys(hints[f.name])]
        else:
            out.append(f.name)
    return out


def unknown_key_error(key: str, root: type) -> ValueError:
    """ValueError naming the unknown dotted `key` and the closest valid keys of config class `root`."""
    valid = config_keys(root)
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    if not close:  # e.g. the right leaf in the wrong section
        leaf = key.rsplit(".", 1)[-1]
        close = [k for k in valid if k.rsplit(".", 1)[-1] in difflib.get_close_matches(
            leaf, [v.rsplit(".", 1)[-1] for v in valid], n=3, cutoff=0.6)][:3]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"unknown config key '{key}'{hint} (a key of {root.__name__}; a command's --help lists them)")


def _check_renamed(cls: type, leaf: str, dotted: str) -> None:
    """ValueError explaining a key that `cls` renamed (its RENAMED_KEYS), if `leaf` is one."""
    note = getattr(cls, RENAMED_KEYS_ATTR, {}).get(leaf)
    if note is not None:
        raise ValueError(f"config key '{dotted}' was replaced by {note}")


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "", root: type | None = None) -> T:
    """Dataclass `cls` built from a (nested) dict. Unknown keys raise ValueError naming the key and the closest
    valid ones, wrong types TypeError naming the key. `where`: the dotted prefix of `data` in error messages."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{where or cls.__name__} must be a table/dict, got {type(data).__name__}")
    root = root or cls
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    prefix = f"{where}." if where else ""
    for k in unknown:
        _check_renamed(cls, k, f"{prefix}{k}")
    if unknown:
        if root is cls and where:  # a nested dataclass built on its own: keys relative to it
            raise unknown_key_error(unknown[0], cls)
        raise unknown_key_error(f"{prefix}{unknown[0]}", root)
    kwargs = {}
    for k, v in data.items():
        tp = hints[k]
        if dataclasses.is_dataclass(tp) and isinstance(v, Mapping):
            kwargs[k] = from_dict(tp, v, f"{prefix}{k}", root)
        else:
            kwargs[k] = _convert(v, tp, f"{prefix}{k}")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as a nested dict of plain values (top-level tuples as lists)."""
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# ------------------------------------------------------------------------------------------ overrides
def _section_class(root: type, keys: Sequence[str]) -> Any:
    """The type at dotted path `keys` below `root` (None where the path leaves the dataclasses)."""
    tp: Any = root
    for k in keys:
        if not dataclasses.is_dataclass(tp):
            return None
        tp = _hints(tp).get(k)
    return tp


def _set_path(data: dict[str, Any], dotted: str, value: Any, root: type) -> None:
    keys = dotted.split(".")
    node = data
    for i, k in enumerate(keys[:-1]):
        tp = _section_class(root, keys[: i + 1])
        if k not in node or not isinstance(node[k], dict) or not (
                dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict):
            raise unknown_key_error(dotted, root)
        node = node[k]
    if keys[-1] not in node:
        section = _section_class(root, keys[:-1])
        if dataclasses.is_dataclass(section):
            _check_renamed(section, keys[-1], dotted)
        raise unknown_key_error(dotted, root)
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`key.sub=value` with TOML value syntax (numbers, true/false, [lists], "strings"); bare words are strings."""
    if "=" not in text or not re.match(r"^\s*[A-Za-z_][\w.]*\s*=", text):
        raise ValueError(f"override {text!r} must look like key=value (e.g. optim.lr_peak=3e-4)")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def apply_overrides(cfg: T, overrides: Mapping[str, Any] | Sequence[str]) -> T:
    """A new config with `{dotted.key: value}` (or ["dotted.key=value", ...]) applied and validated."""
    if not overrides:
        return cfg
    items = [parse_override(o) for o in overrides] if not isinstance(overrides, Mapping) else overrides.items()
    data = to_dict(cfg)
    for key, value in items:
        _set_path(data, key, value, type(cfg))
    return from_dict(type(cfg), data)


# ------------------------------------------------------------------------------------------ files
def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The table of a TOML (or, by suffix, JSON) config file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"config file {path} is not valid JSON: {exc}") from exc
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {path} is not valid TOML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a table of keys")
    return data


def merge_dicts(base: dict[str, Any], new: Mapping[str, Any]) -> None:
    """Merges nested dict `new` into `base` in place (tables merge, other values replace)."""
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            merge_dicts(base[k], v)
        else:
            base[k] = v  # unknown keys are reported by from_dict


def load_config(cls: type[T], *, path: str | os.PathLike | None = None, preset: str | None = None,
                overrides: Mapping[str, Any] | Sequence[str] = (), presets: Mapping[str, Callable[[], T]] | None = None,
                default_preset: str | None = None, base: T | None = None) -> T:
    """defaults (`base`, else `cls()`) < preset < file < overrides. The preset is `preset` if given, else the
    file's top-level `preset = "..."`, else `default_preset`; `presets` maps names to factories."""
    presets = presets or {}
    data = read_config_file(path) if path is not None else {}
    file_preset = data.pop("preset", None)
    name = preset or file_preset or default_preset
    if name is not None and name not in presets:
        raise ValueError(f"preset must be one of {sorted(presets)}, got {name!r}")
    if preset and file_preset and preset != file_preset:
        _LOG.info("--preset %s replaces the config file's preset %r (the command line wins)", preset, file_preset)
    start = presets[name]() if name is not None else (base if base is not None else cls())
    if not data:
        return apply_overrides(start, overrides)
    merged = to_dict(start)
    merge_dicts(merged, data)
    return apply_overrides(from_dict(cls, merged), overrides)


# ------------------------------------------------------------------------------------------ help and TOML
def _field_comments(cls: type) -> dict[str, str]:
    """The `# comment` after each field in the class source."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out = {}
    for line in src.splitlines():
        m = re.match(r"^\s{4}(\w+):[^#]*#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _docstring_help(cls: type, name: str) -> str:
    """The sentence after `name:` in the class docstring (e.g. PlannerConfig's "topk: elites (<= num_samples).")."""
    doc = " ".join((cls.__dict__.get("__doc__") or "").split())
    if doc.startswith(f"{cls.__name__}("):  # the signature dataclass writes when the class has no docstring
        return ""
    m = re.search(rf"(?:^|[\s.(])(?:\w+ / )?{re.escape(name)}(?: / \w+)?: (.+?)(?:\.\s|\.$|$)", doc)
    return m.group(1).strip() if m else ""


def field_help(cls: type) -> dict[str, str]:
    """What each field of dataclass `cls` is: its metadata["help"], else its trailing `# comment`, else the
    sentence after `name:` in the class docstring."""
    comments = _field_comments(cls)
    out = {}
    for f in dataclasses.fields(cls):
        text = f.metadata.get("help") or comments.get(f.name) or _docstring_help(cls, f.name)
        if text:
            out[f.name] = text
    return out


def toml_value(v: Any) -> str:
    """`v` in TOML syntax (None: the string "none", which optional fields read as None)."""
    if v is None:
        return '"none"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def describe_keys(cfg: Any) -> str:
    """One line per key: `key = value  # what it is` (the --help epilog)."""
    lines = []

    def walk(obj: Any, prefix: str) -> None:
        helps = field_help(type(obj))
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                walk(v, f"{prefix}{f.name}.")
                continue
            shown = "(none)" if v is None else toml_value(v)
            c = helps.get(f.name, "")
            lines.append(f"  {prefix}{f.name} = {shown}" + (f"   # {c}" if c else ""))

    walk(cfg, "")
    return "\n".join(lines)


def to_toml(cfg: Any) -> str:
    """The config as a TOML file that `load_config` reads back to the same config. A None is left out where
    the field's default is None, else written as "none"."""
    top: list[str] = []
    tables: list[str] = []

    def walk(obj: Any, table: str) -> None:
        lines, nested = [], []
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                nested.append((v, f"{table}.{f.name}" if table else f.name))
            elif v is not None or f.default is not None:
                lines.append(f"{f.name} = {toml_value(v)}")
        if table:
            tables.append(f"[{table}]\n" + "\n".join(lines))
        else:
            top.extend(lines)
        for v, name in nested:
            walk(v, name)

    walk(cfg, "")
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"
