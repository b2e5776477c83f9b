"""Session fixture: real WebDataset audio shards (helpers in codec_shards_helper.py)."""
from pathlib import Path

import pytest

from codec_shards_helper import write_audio_shards


@pytest.fixture(scope="session")
def audio_shards(tmp_path_factory) -> Path:
    return write_audio_shards(tmp_path_factory.mktemp("audio"), {"train": [4, 4, 3], "val": [3]})
