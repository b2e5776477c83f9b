"""`llmtts codec train --input-dir` an http:// URL (a server that cuts each shard once): the same losses at
every step as from the local audio shards."""
import json
import sys
from pathlib import Path

from llmtts.cli import main as cli_main

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from remote_servers import DroppingHandler, serve  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "codec" / "tiny.yaml"


def test_codec_trains_identically_from_http(audio_shards, tmp_path):
    httpd, url = serve(audio_shards, DroppingHandler)
    curves = {}
    try:
        for name, src in (("local", str(audio_shards)), ("http", url)):
            run = tmp_path / name
            assert cli_main(["codec", "train", "--config", str(CONFIG), "--input-dir", src, "--save-dir", str(run),
                             "trainer.max_steps=3", "trainer.log_every=1", "data.crop_samples=4096",
                             "data.batch_budget=8192", "log.progress=false", "trainer.eval_every=0"]) == 0
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            curves[name] = [(m["step"], m["mel"]) for m in rows if m["split"] == "train"]
        assert httpd.RequestHandlerClass.func.dropped  # the shards really came from the server, each cut once
    finally:
        httpd.shutdown()
    assert [s for s, _ in curves["local"]] == [1, 2, 3] == [s for s, _ in curves["http"]]
    assert all(abs(a - b) <= 1e-5 * max(1.0, abs(a)) for (_, a), (_, b) in zip(curves["local"], curves["http"]))
