"""Writes the rank variables this process was started with to OUT_DIR/rank-<RANK>.json."""
import json
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    (out / f"rank-{os.environ['RANK']}.json").write_text(json.dumps({k: os.environ.get(k) for k in keys}))
