"""Every shipped config file loads into its typed config (litgpt's test_config_hub idea)."""
import importlib
import json
from pathlib import Path

import pytest

from llmtts.config import load_config

ROOT = Path(__file__).resolve().parents[1]
# configs/<dir>/*.yaml -> the dataclass that must accept it
CONFIG_CLASSES = {
    "codec": "llmtts.codec.config:CodecConfig",
    "llm": "llmtts.llm.config:LLMConfig",
    "decoder": "llmtts.decoder.config:DecoderConfig",
    "pipeline": "llmtts.pipeline:PipelineConfig",
}
YAMLS = sorted((ROOT / "configs").rglob("*.yaml"))


def _cls(spec: str):
    mod, name = spec.split(":")
    return getattr(importlib.import_module(mod), name)


def test_every_config_dir_is_known():
    dirs = {p.parent.name for p in YAMLS}
    assert dirs <= set(CONFIG_CLASSES), f"configs without a typed class: {dirs - set(CONFIG_CLASSES)}"


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_config_loads(path):
    cfg = load_config(_cls(CONFIG_CLASSES[path.parent.name]), path)
    assert cfg is not None


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_deepspeed_templates_are_json(path):
    data = json.loads(path.read_text())
    assert "zero_optimization" in data
