"""Command line of the simulator evaluations (sim-eval reach and --task): flags generated from the config
dataclass (vjepa_fast.config), `--planner-option KEY=VALUE` for the planner's own options, `--print-config`."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from vjepa_fast.config import Flag, add_config_arguments, config_from_args

__all__ = ["add_eval_arguments", "eval_config"]


def add_eval_arguments(p: argparse.ArgumentParser, cls: type, aliases: Sequence[Flag],
                       choices: Mapping[str, Sequence[Any]] | None = None) -> None:
    """The flags of an evaluation config (EvalConfig, TaskEvalConfig), generated, with --config / --set /
    --print-config, the planner's choices and --planner-option KEY=VALUE for its options."""
    from vjepa_fast.planning.planners import PLANNERS

    add_config_arguments(p, cls, flags=True, positional=False, exclude=("planner_options",),
                         choices={"planner": PLANNERS, **(choices or {})}, aliases=aliases)
    p.add_argument("--planner-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the chosen planner, repeatable: mppi temperature / std_decay / momentum; "
                        "icem beta / decay / keep_fraction; gradient and cem_grad steps / lr / starts")


def eval_config(args: argparse.Namespace) -> Any:
    """The config of an add_eval_arguments parser (--planner-option checked against --planner); prints it and
    exits on --print-config."""
    from vjepa_fast.planning.planners import parse_planner_options, planner_options

    extra = {"planner_options": list(parse_planner_options(args.planner_option).items())} if args.planner_option \
        else {}
    return config_from_args(args, overrides=extra,
                            check=lambda cfg: planner_options(cfg.planner, **dict(cfg.planner_options)))
