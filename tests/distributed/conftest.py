import sys
from pathlib import Path

# Share the toy-run helpers with tests/train.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

import subprocess  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def deepspeed_ops():
    """DeepSpeed's one-time op build (~1 min, cached in ~/.cache/llmtts/torch_extensions), done once
    up front so the timed multi-process runs never include it."""
    subprocess.run([sys.executable, "-m", "llmtts.distributed.deepspeed_engine"], check=True, timeout=900,
                   capture_output=True)
