"""Where the machine's shared evaluation data lives (32 real LJ Speech clips; never downloaded by tests)."""
import os
from pathlib import Path

_CANDIDATES = [os.environ.get("LLMTTS_LJSPEECH_MINI", ""),
               str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ljspeech-mini"),  # ../shared of the clone
               "/work/shared/data/ljspeech-mini"]  # this project's machines, wherever CI clones the repository
LJSPEECH_MINI = next((Path(c) for c in _CANDIDATES if c and Path(c).is_dir()), Path(_CANDIDATES[1]))
