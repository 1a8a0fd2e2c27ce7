"""One config mechanism for every command: typed dataclasses, TOML files, `key.sub=value` overrides, flags
generated from the dataclass and `--print-config` (core: dict <-> dataclass; flags: argparse)."""

from vjepa_fast.config.core import (
    apply_overrides,
    config_keys,
    describe_keys,
    field_help,
    from_dict,
    load_config,
    merge_dicts,
    parse_override,
    read_config_file,
    to_dict,
    to_toml,
    toml_value,
    unknown_key_error,
)
from vjepa_fast.config.flags import Flag, add_config_arguments, config_from_args, flag_name

__all__ = ["Flag", "add_config_arguments", "apply_overrides", "config_from_args", "config_keys", "describe_keys",
           "field_help", "flag_name", "from_dict", "load_config", "merge_dicts", "parse_override", "read_config_file",
           "to_dict", "to_toml", "toml_value", "unknown_key_error"]
