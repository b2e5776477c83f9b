import sys
from pathlib import Path

# Share the toy-run helpers with tests/train.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
