"""One config system for every command: the example configs load, precedence defaults < preset < file <
command line, unknown keys refused with the closest names, --help lists every key, --print-config round trip;
flags generated from the dataclass (types, help, nested keys, aliases) and --print-config on every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vjepa_fast.probes.config import ProbeConfig
from vjepa_fast.train.config import (
    ACTrainConfig,
    PretrainConfig,
    apply_overrides,
    config_keys,
    load_config,
    to_toml,
)

ROOT = Path(__file__).resolve().parents[1]
# What each example config claims to be (its header says "Same as `--preset ...`").
EXAMPLES = {
    "ac_sim_tiny.toml": (ACTrainConfig, ACTrainConfig.sim_tiny()),
    "ac_manip_tiny.toml": (ACTrainConfig, ACTrainConfig.manip_tiny()),
    "ac_droid_vitg.toml": (ACTrainConfig, ACTrainConfig.droid_vit_giant()),
    "pretrain_tiny_cpu.toml": (PretrainConfig, apply_overrides(PretrainConfig.tiny_cpu(),
                                                               {"data.sources": ["data/sim_random"]})),
    "pretrain_vitl.toml": (PretrainConfig, apply_overrides(PretrainConfig.vit_large(),
                                                           {"data.sources": ["data/videomix22m.txt"]})),
    "pretrain_v21_vitl.toml": (PretrainConfig, apply_overrides(PretrainConfig.v21_vit_large(), {
        "data.sources": ["data/videomix22m.txt"], "v21.image_sources": ["data/images.txt"]})),
    "probe_synthetic_tiny.toml": (ProbeConfig, ProbeConfig.synthetic_tiny()),
    "probe_ssv2_vitg.toml": (ProbeConfig, ProbeConfig.ssv2_vitg()),
    "probe_ek100_vitg.toml": (ProbeConfig, ProbeConfig.ek100_vitg()),
}


def test_every_example_config_loads_as_documented() -> None:
    found = sorted(p.name for p in (ROOT / "configs").glob("*.toml"))
    assert found == sorted(EXAMPLES), "a config in configs/ without a test entry (or the reverse)"
    for name, (cls, expected) in EXAMPLES.items():
        assert load_config(cls, path=ROOT / "configs" / name) == expected, name


def test_precedence_defaults_preset_file_command_line(tmp_path: Path) -> None:
    f = tmp_path / "run.toml"
    f.write_text('preset = "tiny_cpu"\nsteps = 7\n[optim]\nwarmup_steps = 3\n')
    cfg = load_config(PretrainConfig, path=f)
    assert (cfg.model, cfg.steps, cfg.optim.warmup_steps, cfg.data.crop_size) == ("tiny", 7, 3, 64)
    # --preset beats the file's own preset; the file still beats the preset; the command line beats the file.
    cfg = load_config(PretrainConfig, path=f, preset="vit_large", overrides=["steps=9"])
    assert (cfg.model, cfg.steps, cfg.optim.warmup_steps, cfg.data.crop_size) == ("vit_large", 9, 3, 256)
    assert load_config(PretrainConfig) == PretrainConfig.vit_large()  # the command's default preset
    # train-ac: no default preset (the dataclass defaults), the same rules.
    g = tmp_path / "ac.toml"
    g.write_text('preset = "sim_tiny"\ntotal_steps = 40\n[data]\nsources = ["x"]\n')
    ac = load_config(ACTrainConfig, path=g, overrides=["batch_size=4", "data.frame_stride=2"])
    assert (ac.predictor, ac.total_steps, ac.batch_size, ac.data.sources, ac.data.frame_stride) == \
        ("tiny", 40, 4, ["x"], 2)
    assert ac.data.encoder == ACTrainConfig.sim_tiny().data.encoder  # kept from the preset
    assert load_config(ACTrainConfig) == ACTrainConfig()


@pytest.mark.parametrize(
    ("cls", "where", "key", "closest"),
    [
        (PretrainConfig, "cli", "optim.lr_peek", "optim.lr_peak"),
        (PretrainConfig, "file", "data.sourcez", "data.sources"),
        (PretrainConfig, "cli", "lr_peak", "optim.lr_peak"),  # the right name in the wrong section
        (ACTrainConfig, "cli", "rollout_step", "rollout_steps"),
        (ACTrainConfig, "file", "data.encodr", "data.encoder"),
        (ACTrainConfig, "cli", "sources", "data.sources"),
    ],
)
def test_unknown_keys_name_the_closest(tmp_path: Path, cls, where, key, closest) -> None:
    if where == "cli":
        kwargs = {"overrides": [f"{key}=1"]}
    else:
        section, _, leaf = key.rpartition(".")
        f = tmp_path / "c.toml"
        f.write_text((f"[{section}]\n" if section else "") + f"{leaf} = 1\n")
        kwargs = {"path": f}
    with pytest.raises(ValueError, match=f"unknown config key '{key}'; did you mean .*'{closest}'"):
        load_config(cls, **kwargs)


def test_wrong_types_name_the_key() -> None:
    with pytest.raises(TypeError, match="total_steps must be an integer"):
        load_config(ACTrainConfig, overrides=["total_steps=ten"])
    with pytest.raises(TypeError, match="data.weights\\[0\\] must be a number"):
        load_config(ACTrainConfig, overrides=['data.weights=["a"]'])
    with pytest.raises(ValueError, match="data.weights has 1 entries for 0 data.sources"):
        load_config(ACTrainConfig, overrides=["data.weights=[1.0]"])


_SMALL_PRESET = {ACTrainConfig: ("sim_tiny", ACTrainConfig.sim_tiny), PretrainConfig: ("tiny_cpu", PretrainConfig.tiny_cpu),
                 ProbeConfig: ("synthetic_tiny", ProbeConfig.synthetic_tiny)}


@pytest.mark.parametrize(("command", "cls", "preset"), [("pretrain", PretrainConfig, "vit_large"),
                                                        ("train-ac", ACTrainConfig, None),
                                                        ("probe train", ProbeConfig, None),
                                                        ("probe eval", ProbeConfig, None)])
def test_help_lists_every_key_and_print_config_round_trips(tmp_path: Path, command, cls, preset) -> None:
    extra = ["--checkpoint", "x"] if command == "probe eval" else []
    run = lambda *a: subprocess.run([sys.executable, "-m", "vjepa_fast.cli", *command.split(), *a, *extra],  # noqa: E731
                                    capture_output=True, text=True, timeout=120, cwd=ROOT)
    help_text = run("--help")
    assert help_text.returncode == 0, help_text.stderr
    for key in config_keys(cls):
        assert f"  {key} = " in help_text.stdout, key
    # The same override syntax in both commands: positional KEY=VALUE and --set KEY=VALUE.
    small, make = _SMALL_PRESET[cls]
    second = "eval_every" if cls is ProbeConfig else "log_every"
    printed = run("--preset", small, "seed=5", "--set", f"{second}=3", "--print-config")
    assert printed.returncode == 0, printed.stderr
    f = tmp_path / "printed.toml"
    f.write_text(printed.stdout)
    cfg = load_config(cls, path=f)
    assert (cfg.seed, getattr(cfg, second)) == (5, 3)
    assert cfg == apply_overrides(make(), {"seed": 5, second: 3})
    assert to_toml(cfg) == printed.stdout
    bad = run("--preset", small, "lr_peek=1")
    assert bad.returncode != 0 and "unknown config key 'lr_peek'" in bad.stderr


# ------------------------------------------------------------------------------------ generated flags
import argparse  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from vjepa_fast.config import Flag, add_config_arguments, config_from_args, from_dict  # noqa: E402
from vjepa_fast.config.core import tomllib  # noqa: E402 - tomli on Python 3.10


@dataclass
class _Inner:
    rate: float = 0.5  # how fast, per second
    names: list[str] = field(default_factory=list)  # what it is called


@dataclass
class _Outer:
    """A toy config. steps: optimizer steps."""

    steps: int = 3
    size_cm: float = 2.0  # size, cm
    mode: str = "a"  # a or b
    flag: bool = False  # a switch
    pair: tuple[int, int] = (1, 2)  # two ints
    limit: float | None = None  # an optional number
    inner: _Inner = field(default_factory=_Inner)


def _toy_parser(**kwargs) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy")
    add_config_arguments(p, _Outer, flags=True, choices={"mode": ("a", "b")}, **kwargs)
    return p


def _toy(argv: list[str], **kwargs) -> _Outer:
    return config_from_args(_toy_parser(**kwargs).parse_args(argv))


def test_a_field_becomes_a_flag_with_its_type_default_and_help() -> None:
    help_text = " ".join(_toy_parser().format_help().split())
    assert "--steps STEPS optimizer steps (default: 3)" in help_text  # help from the class docstring
    assert "--size-cm SIZE_CM size, cm (default: 2.0)" in help_text  # from the field's trailing comment
    assert "--mode {a,b}" in help_text and "--flag, --no-flag" in help_text and "--pair PAIR PAIR" in help_text
    assert "--inner.rate RATE how fast, per second (default: 0.5)" in help_text  # nested fields
    cfg = _toy(["--steps", "7", "--flag", "--pair", "3", "4", "--limit", "0.1", "--inner.rate", "2",
                "--inner.names", "x", "y", "--mode", "b"])
    assert cfg == _Outer(steps=7, flag=True, pair=(3, 4), limit=0.1, mode="b", inner=_Inner(rate=2.0, names=["x", "y"]))
    assert _toy(["--limit", "none"]).limit is None
    with pytest.raises(SystemExit):
        _toy_parser().parse_args(["--steps", "seven"])  # argparse checks the type
    with pytest.raises(SystemExit):
        _toy_parser().parse_args(["--mode", "c"])


def test_overrides_and_flags_agree_and_precedence(tmp_path: Path) -> None:
    assert _toy(["--inner.rate", "3"]) == _toy(["inner.rate=3"]) == _toy(["--set", "inner.rate=3"])
    assert _toy(["--steps", "4", "steps=5"]).steps == 5  # KEY=VALUE wins over a flag
    f = tmp_path / "toy.toml"
    f.write_text("steps = 9\n[inner]\nrate = 4.0\n")
    cfg = _toy(["--config", str(f), "--steps", "2"])  # the file, then the flags
    assert (cfg.steps, cfg.inner.rate) == (2, 4.0)


def test_unknown_key_fails_naming_it() -> None:
    with pytest.raises(ValueError, match="unknown config key 'inner.rat'; did you mean 'inner.rate'"):
        _toy(["inner.rat=1"])
    with pytest.raises(ValueError, match="unknown config key 'stepz'; did you mean 'steps'"):
        from_dict(_Outer, {"stepz": 1})
    with pytest.raises(TypeError, match="inner.rate must be a number"):
        _toy(["inner.rate=fast"])


def test_print_config_parses_back_to_the_same_config(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    argv = ["--steps", "11", "--inner.names", "a", "--limit", "0.25", "--no-flag", "mode=b"]
    expected = _toy(argv)
    with pytest.raises(SystemExit) as exit_info:
        _toy([*argv, "--print-config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert from_dict(_Outer, tomllib.loads(printed)) == expected
    f = tmp_path / "printed.toml"
    f.write_text(printed)
    assert _toy(["--config", str(f)]) == expected


def test_aliases_keep_older_flags() -> None:
    aliases = [Flag("--n", "steps"), Flag("--size-mm", "size_cm", scale=0.1), Flag("--on", "flag", const=True),
               Flag("--both", ("inner.rate", "size_cm"), same=True), Flag("--pair-of", ("steps", "pair"))]
    assert _toy(["--n", "5"], aliases=aliases).steps == 5
    assert _toy(["--size-mm", "30"], aliases=aliases).size_cm == pytest.approx(3.0)
    assert _toy(["--on"], aliases=aliases).flag is True
    cfg = _toy(["--both", "6"], aliases=aliases)
    assert (cfg.inner.rate, cfg.size_cm) == (6.0, 6.0)
    assert "--steps STEPS, --n STEPS" in _toy_parser(aliases=aliases).format_help()
    with pytest.raises(ValueError, match="'nope' is not a key of _Outer"):
        _toy_parser(aliases=[Flag("--x", "nope", const=1)])


def test_amp_speaks_the_dtype_vocabulary() -> None:
    assert PretrainConfig(amp="bf16").amp == "bfloat16"  # the old spelling reads as the canonical one
    assert load_config(ProbeConfig, overrides=["amp=bf16"]).amp == "bfloat16"
    with pytest.raises(ValueError, match="amp must be one of"):
        ACTrainConfig(amp="fp16")


_PRINT_CONFIG = {  # command line -> (a key, its value) in the printed config
    "pretrain": (["vjepa_fast/cli.py", "pretrain", "--preset", "tiny_cpu", "steps=7"], "steps", 7),
    "train-ac": (["vjepa_fast/cli.py", "train-ac", "--preset", "sim_tiny", "total_steps=9"], "total_steps", 9),
    "probe": (["vjepa_fast/cli.py", "probe", "train", "--preset", "synthetic_tiny", "epochs=3"], "epochs", 3),
    "plan": (["vjepa_fast/cli.py", "plan", "--samples", "20", "--topk", "4"], "num_samples", 20),
    "sim-eval": (["vjepa_fast/cli.py", "sim-eval", "--samples", "16", "--success-cm", "4"], "success_m", 0.04),
    "sim-eval --task": (["vjepa_fast/cli.py", "sim-eval", "--task", "push", "--no-early-stop"], "stop_on_success",
                        False),
    "run_mpc": (["robot/run_mpc.py", "--samples", "12", "--plan-gripper"], "gripper", "plan"),
    "generate": (["robot/simtools/generate.py", "--mp4", "--episodes", "3"], "video", True),
    "generate_physics": (["robot/simtools/generate_physics.py", "--sim-camera", "front_right"], "camera",
                         "front_right"),
}


@pytest.mark.parametrize("command", list(_PRINT_CONFIG))
def test_print_config_on_every_command(command: str) -> None:
    argv, key, value = _PRINT_CONFIG[command]
    if argv[0] == "vjepa_fast/cli.py":
        argv = ["-m", "vjepa_fast.cli", *argv[1:]]
    out = subprocess.run([sys.executable, *argv, "--print-config"], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    printed = tomllib.loads(out.stdout)
    assert printed[key] == pytest.approx(value) if isinstance(value, float) else printed[key] == value
