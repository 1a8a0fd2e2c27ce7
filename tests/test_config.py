"""One config system for pretrain and train-ac: the example configs load, precedence defaults < preset < file <
command line, unknown keys refused with the closest names, --help lists every key, --print-config round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vjepa_fast.train.config import (
    ACTrainConfig,
    PretrainConfig,
    ProbeConfig,
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
