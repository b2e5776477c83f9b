"""`llmtts decoder train --input-dir` an http:// URL (a server that cuts each shard once): the same losses at
every step as from the local hidden shards."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from llmtts.cli import main

from decoder_helpers import TINY_OVERRIDES

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from remote_servers import DroppingHandler, serve  # noqa: E402


def losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r["split"] == "train"]


def test_decoder_trains_identically_from_http(data):
    httpd, url = serve(data["hidden"], DroppingHandler)
    try:
        runs = {}
        for name, src in (("local", data["hidden"]), ("http", url)):
            runs[name] = data["root"] / f"remote-{name}"
            assert main(["decoder", "train", "--input-dir", str(src), "--save-dir", str(runs[name]), "--stage",
                         "recon", "trainer.max_steps=3", *TINY_OVERRIDES]) == 0
        assert httpd.RequestHandlerClass.func.dropped  # shards really came from the server, each cut once
    finally:
        httpd.shutdown()
    local, remote = losses(runs["local"]), losses(runs["http"])
    assert [s for s, _ in local] == [1, 2, 3] and [s for s, _ in remote] == [1, 2, 3]
    assert all(abs(a - b) <= 1e-5 * max(1.0, abs(a)) for (_, a), (_, b) in zip(local, remote))
