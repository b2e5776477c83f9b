"""Session fixture: real WebDataset audio shards (helpers in codec_shards_helper.py)."""
from pathlib import Path

import pytest
import torch

from llmtts.codec.config import CodecConfig
from llmtts.codec.export import export_codec
from llmtts.codec.model import CodecModel
from llmtts.config import load_config

from codec_shards_helper import write_audio_shards

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "codec"


@pytest.fixture(scope="session")
def audio_shards(tmp_path_factory) -> Path:
    return write_audio_shards(tmp_path_factory.mktemp("audio"), {"train": [4, 4, 3], "val": [3]})


@pytest.fixture(scope="session")
def codec_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = CodecModel(load_config(CodecConfig, CONFIGS / "tiny.yaml").model)
    with torch.no_grad():  # spread the untrained latent so codes vary from frame to frame
        model.to_latent.weight.mul_(30)
    return export_codec(model, tmp_path_factory.mktemp("codec") / "export")
