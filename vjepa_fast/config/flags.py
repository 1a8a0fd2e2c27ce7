"""argparse from config dataclasses: one `--flag` per (nested) field, `--config FILE`, `--preset`, `KEY=VALUE` /
`--set KEY=VALUE` overrides and `--print-config`, the same on every command.

    add_config_arguments(parser, PlannerConfig, presets={...}, flags=True, aliases=[Flag("--samples", "num_samples")])
    cfg = config_from_args(parser.parse_args(argv))   # prints the config as TOML and exits on --print-config

A generated flag is the field's dotted key with `-` for `_` (`num_samples` -> `--num-samples`, `optim.lr_peak` ->
`--optim.lr-peak`); its type, default and help come from the dataclass (help: `field(metadata={"help": ...})`,
else the field's trailing `# comment`, else the `name: ...` sentence of the class docstring). Booleans get
`--x / --no-x`, fixed-length tuples N values, lists and `tuple[X, ...]` any number. A `Flag` keeps an older
spelling: another name, a switch that stores a constant, a flag in another unit, or one flag for several keys.
Precedence, lowest first: defaults < preset < --config file < generated flags < KEY=VALUE and --set.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from vjepa_fast.config.core import (_hints, _is_optional, describe_keys, field_help, load_config, parse_override,
                                    to_toml, toml_value)

__all__ = ["Flag", "add_config_arguments", "config_from_args", "flag_name"]

T = TypeVar("T")
_SPEC = "_config_spec"  # the parser default that tells config_from_args how the config is built
_VALUE = "_config_value:"  # prefix of the namespace attributes that hold generated-flag values
_UNSET = object()


@dataclass(frozen=True)
class Flag:
    """A command-line spelling of config key(s) beside the generated flag.

    flag: the option ("--samples"). keys: the dotted key it sets, or several. const: a switch (no value) that
    stores this in every key (e.g. `--keep-sim` -> fresh_sim = False). scale: the config value is the flag's
    value times this (`--success-cm` -> success_m: 0.01). With several keys the flag takes one value per key,
    or one value for all when `same` is set. A plain rename (one key, no const, no scale) becomes another
    option string of the generated flag.
    """

    flag: str
    keys: str | tuple[str, ...]
    const: Any = _UNSET
    scale: float | None = None
    same: bool = False
    help: str = ""
    metavar: str | tuple[str, ...] | None = None

    @property
    def key_list(self) -> tuple[str, ...]:
        return (self.keys,) if isinstance(self.keys, str) else tuple(self.keys)

    @property
    def is_rename(self) -> bool:
        return len(self.key_list) == 1 and self.const is _UNSET and self.scale is None


@dataclass(frozen=True)
class _Spec:
    cls: type
    presets: Mapping[str, Callable[[], Any]]
    default_preset: str | None
    base: Any


def flag_name(key: str) -> str:
    """The generated flag of dotted config key `key`: `optim.lr_peak` -> `--optim.lr-peak`."""
    return "--" + key.replace("_", "-")


def _none_or(tp: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null") else tp(text)

    parse.__name__ = getattr(tp, "__name__", "value")  # argparse names it in "invalid int value" errors
    return parse


def _toml_table(text: str) -> Any:
    return parse_override(f"v={text}")[1]


def _flag_form(tp: Any) -> dict[str, Any] | None:
    """argparse keywords (type, nargs, action) for a field of type `tp`; None when it has no flag form."""
    optional, tp = _is_optional(tp)
    wrap = _none_or if optional else (lambda t: t)
    origin = typing.get_origin(tp)
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if tp in (int, float, str):
        return {"type": wrap(tp)}
    if origin is dict:
        return {"type": _toml_table, "metavar": "{KEY = VALUE, ...}"}
    if origin in (list, tuple):
        args = typing.get_args(tp)
        variadic = origin is list or (len(args) == 2 and args[1] is Ellipsis)
        items = args[:1] if variadic else args
        if not items or any(t not in (int, float, str) for t in items) or len(set(items)) > 1:
            return None
        return {"type": items[0], "nargs": "*" if variadic else len(items)}
    return None


class _SetKeys(argparse.Action):
    """Stores a Flag's value (or constant) into the namespace slots of its keys."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, flag: Flag, **kwargs: Any) -> None:
        self.flag = flag
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        f = self.flag
        if f.const is not _UNSET:
            values = [f.const] * len(f.key_list)
        elif len(f.key_list) == 1 or f.same:
            values = [values] * len(f.key_list)
        for key, v in zip(f.key_list, values):
            setattr(namespace, _VALUE + key, v * f.scale if f.scale is not None and v is not None else v)


def _leaves(cls: type, prefix: str = "") -> Iterable[tuple[str, Any, type, str]]:
    """(dotted key, type, owning class, field name) of every non-dataclass field, nested ones expanded."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _leaves(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", tp, cls, f.name


def _value_at(cfg: Any, key: str) -> Any:
    for k in key.split("."):
        cfg = getattr(cfg, k)
    return cfg


def _add_flags(parser: argparse.ArgumentParser, cls: type, shown: Any, *, exclude: Iterable[str],
               choices: Mapping[str, Sequence[Any]], helps: Mapping[str, str], aliases: Sequence[Flag],
               title: str) -> None:
    exclude = set(exclude)
    renames: dict[str, list[str]] = {}
    for a in aliases:
        if a.is_rename:
            renames.setdefault(a.key_list[0], []).append(a.flag)
    group = parser.add_argument_group(title)
    types_of: dict[str, Any] = {}
    field_helps: dict[type, dict[str, str]] = {}
    for key, tp, owner, name in _leaves(cls):
        types_of[key] = tp
        form = _flag_form(tp)
        if key in exclude or form is None:
            continue
        text = helps.get(key) or field_helps.setdefault(owner, field_help(owner)).get(name, "")
        default = _value_at(shown, key)
        text = (f"{text} " if text else "") + f"(default: {'none' if default is None else toml_value(default)})"
        if form.get("action") is None and key not in choices:  # choices show as {a,b}
            form.setdefault("metavar", key.rsplit(".", 1)[-1].upper())
        group.add_argument(flag_name(key), *renames.pop(key, []), dest=_VALUE + key, default=argparse.SUPPRESS,
                           choices=choices.get(key), help=text.replace("%", "%%"), **form)
    for a in aliases:  # the rest: switches, other units, several keys, renames of keys without a generated flag
        if a.is_rename and a.flag not in renames.get(a.key_list[0], ()):
            continue
        tp = types_of.get(a.key_list[0])
        if tp is None:
            raise ValueError(f"Flag {a.flag}: {a.key_list[0]!r} is not a key of {cls.__name__}")
        kwargs: dict[str, Any] = {"nargs": 0} if a.const is not _UNSET else {
            "type": (_flag_form(tp) or {}).get("type", str),
            "nargs": None if len(a.key_list) == 1 or a.same else len(a.key_list)}
        if a.metavar is not None:
            kwargs["metavar"] = a.metavar
        group.add_argument(a.flag, action=_SetKeys, flag=a, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                           help=a.help.replace("%", "%%") or f"sets {', '.join(a.key_list)}", **kwargs)


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, default_preset: str | None = None, *,
                         presets: Mapping[str, Callable[[], Any]] | None = None, base: Any = None,
                         flags: bool = False, exclude: Iterable[str] = (),
                         choices: Mapping[str, Sequence[Any]] | None = None, helps: Mapping[str, str] | None = None,
                         aliases: Sequence[Flag] = (), positional: bool = True, list_keys: bool | None = None) -> None:
    """Adds `--config FILE`, `--preset` (when there are `presets`), `--set KEY=VALUE`, positional KEY=VALUE (unless
    `positional` is False: a command with nargs='+' options would swallow them), `--print-config` and, with
    `flags`, one flag per field of `cls` (minus `exclude`; `choices` / `helps` by dotted key) plus `aliases`.
    `base`: the defaults when no preset applies (else `cls()`); `list_keys`: every key with its default in
    the help epilog (default: when there are no flags)."""
    presets = dict(presets or {})
    if default_preset is not None and default_preset not in presets:
        raise ValueError(f"default_preset must be one of {sorted(presets)}, got {default_preset!r}")
    parser.set_defaults(**{_SPEC: _Spec(cls, presets, default_preset, base)})
    parser.add_argument("--config", default=None, metavar="FILE", help="TOML (or JSON) config file")
    if presets:
        parser.add_argument("--preset", default=None, choices=sorted(presets),
                            help=f"preset to start from (default: the file's `preset`, else {default_preset or 'none'})")
    else:
        parser.set_defaults(preset=None)
    parser.add_argument("--set", dest="set_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override in TOML syntax, e.g. --set seed=3 (repeatable)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    if positional:
        parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                            help="config overrides in TOML syntax, e.g. seed=3 data.sources='[\"data/a\"]'")
    else:
        parser.set_defaults(overrides=[])
    shown = presets[default_preset]() if default_preset else (base if base is not None else cls())
    if flags:
        _add_flags(parser, cls, shown, exclude=exclude, choices=choices or {}, helps=helps or {}, aliases=aliases,
                   title=f"{cls.__name__} (one flag per key; --config FILE, then flags, then KEY=VALUE)")
    elif aliases:
        raise ValueError("aliases need flags=True")
    if list_keys if list_keys is not None else not flags:
        parser.epilog = ((parser.epilog + "\n\n") if parser.epilog else "") + (
            f"config keys (defaults{' of preset ' + default_preset if default_preset else ''}; precedence: "
            f"defaults < preset < --config file < command line):\n{describe_keys(shown)}")
        parser.formatter_class = argparse.RawDescriptionHelpFormatter


def config_from_args(args: argparse.Namespace, cls: type[T] | None = None, *, base: T | None = None,
                     overrides: Mapping[str, Any] | None = None, check: Callable[[T], None] | None = None) -> T:
    """The config an `add_config_arguments` parser describes: defaults (`base` here, else the parser's) < preset
    < --config < flags < KEY=VALUE / --set < `overrides` (values the command computed from its own flags).
    `check(cfg)` may raise for what the command forbids; then on --print-config the config is printed as TOML
    and the process exits 0."""
    spec: _Spec | None = getattr(args, _SPEC, None)
    if spec is None:
        raise ValueError("config_from_args needs a parser set up by add_config_arguments")
    if cls is not None and cls is not spec.cls:
        raise TypeError(f"the parser builds a {spec.cls.__name__}, not a {cls.__name__}")
    flagged = {k[len(_VALUE):]: v for k, v in vars(args).items() if k.startswith(_VALUE)}
    items = list(flagged.items()) + [parse_override(o) for o in [*args.overrides, *args.set_overrides]]
    items += list((overrides or {}).items())
    cfg = load_config(spec.cls, path=args.config, preset=args.preset, overrides=dict(items),
                      presets=spec.presets, default_preset=spec.default_preset,
                      base=base if base is not None else spec.base)
    if check is not None:
        check(cfg)
    if args.print_config:
        print(to_toml(cfg), end="")
        raise SystemExit(0)
    return cfg
