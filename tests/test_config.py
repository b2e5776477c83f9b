"""The typed config loader: defaults -> YAML -> dotted overrides, and its one-line errors."""
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from llmtts.config import ConfigError, load_config, parse_overrides, save_config


@dataclass
class Inner:
    lr: float = 1e-3
    levels: list[int] = field(default_factory=lambda: [8, 5])
    mode: Literal["a", "b"] = "a"


@dataclass
class Outer:
    name: str = "x"
    steps: int = 10
    flag: bool = False
    maybe: Optional[int] = None
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError("steps must be >= 0")


def test_layers_defaults_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 5\ninner:\n  lr: 0.5\n  levels: [8, 8, 5]\n")
    cfg = load_config(Outer, f, ["inner.lr=0.25", "flag=true", "maybe=3", "inner.mode=b"])
    assert cfg.steps == 5 and cfg.flag is True and cfg.maybe == 3
    assert cfg.inner.lr == 0.25 and cfg.inner.levels == [8, 8, 5] and cfg.inner.mode == "b"
    assert cfg.name == "x"  # untouched default


def test_unknown_key_names_key_and_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("inner:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(Outer, f)
    msg = str(exc.value)
    assert "inner.lrr" in msg and str(f) in msg and "\n" not in msg


def test_wrong_type_names_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("steps: ten\n")
    with pytest.raises(ConfigError, match=r"'steps'.*integer"):
        load_config(Outer, f)
    with pytest.raises(ConfigError, match=r"command line.*'inner.levels\[1\]'"):
        load_config(Outer, None, ["inner.levels=[8, x]"])
    with pytest.raises(ConfigError, match=r"'inner.mode'.*one of"):
        load_config(Outer, None, ["inner.mode=c"])
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        load_config(Outer, None, ["nope=1"])


def test_validation_in_post_init_is_a_config_error():
    with pytest.raises(ConfigError, match="steps must be >= 0"):
        load_config(Outer, None, ["steps=-1"])


def test_bool_is_not_an_int_and_int_is_a_float():
    with pytest.raises(ConfigError):
        load_config(Outer, None, ["steps=true"])
    assert load_config(Outer, None, ["inner.lr=1"]).inner.lr == 1.0


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_overrides(["trainer.max_steps"])


def test_save_round_trip(tmp_path):
    cfg = load_config(Outer, None, ["inner.levels=[3]", "name=y"])
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(Outer, tmp_path / "resolved.yaml") == cfg


@dataclass
class Stageish:
    # A stage default differing from the section class's own default.
    inner: Inner = field(default_factory=lambda: Inner(lr=0.5, mode="b"))


def test_partial_section_keeps_stage_defaults():
    cfg = load_config(Stageish, None, ["inner.levels=[4]"])
    assert cfg.inner.lr == 0.5 and cfg.inner.mode == "b" and cfg.inner.levels == [4]


def test_float_written_without_dot_in_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("inner:\n  lr: 1e-3\n")
    assert load_config(Outer, f).inner.lr == 1e-3
    with pytest.raises(ConfigError, match="'inner.lr'"):
        load_config(Outer, None, ["inner.lr=fast"])


def test_a_renamed_key_is_still_accepted_once(caplog, monkeypatch):
    import llmtts.config
    from llmtts.codec.config import CodecConfig

    monkeypatch.setattr(llmtts.config, "_WARNED", set())
    with caplog.at_level("WARNING"):
        cfg = load_config(CodecConfig, None, ["gan.feature_matching_weight=3"])  # the old name of gan.fm_weight
    assert cfg.gan.fm_weight == 3.0
    assert [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()] == [
        "command line: 'gan.feature_matching_weight' is deprecated, use 'gan.fm_weight'"]
    with pytest.raises(ConfigError, match="same setting"):
        load_config(CodecConfig, None, ["gan.feature_matching_weight=3", "gan.fm_weight=2"])


def test_codec_and_decoder_share_one_set_of_vocoder_knob_names():
    """Both stages' loss and gan sections are the shared vocoder objective (nn/vocoder_config.py) plus only
    the keys whose meaning differs, so a knob cannot be renamed in one stage and not the other."""
    import dataclasses

    from llmtts.codec.config import CodecGanConfig, CodecLossConfig
    from llmtts.decoder.config import DecoderGanConfig, DecoderLossConfig
    from llmtts.nn.vocoder_config import ReconLossConfig, VocoderGanConfig

    def names(cls):
        return {f.name for f in dataclasses.fields(cls)}

    for base, stages, own in ((ReconLossConfig, (CodecLossConfig, DecoderLossConfig),
                               {"latent_range_weight", "latent_bound"}),
                              (VocoderGanConfig, (CodecGanConfig, DecoderGanConfig), {"start_step", "disc_warmup_steps"})):
        shared = names(base)
        for cls in stages:
            assert issubclass(cls, base) and shared <= names(cls)
            assert names(cls) - shared <= own, f"{cls.__name__} adds {names(cls) - shared - own}"
