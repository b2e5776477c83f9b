"""`llmtts llm dump-hidden` from http:// token shards (a server that drops each shard once) to s3:// (moto):
the same hidden-state shards, byte for byte, as a local dump."""
import sys
from pathlib import Path

import pytest

from llmtts.cli import main
from llmtts.llm.export import save_export
from token_shards import make_token_shards

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")
sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from remote_servers import DroppingHandler, serve, upload_to_s3  # noqa: E402


def test_dump_hidden_from_http_to_s3_matches_local(tmp_path, tiny_model, vocab, frontend, monkeypatch):
    save_export(tiny_model, vocab, frontend, tmp_path / "llm" / "export")
    shards = make_token_shards(tmp_path / "tok", n_train=4, n_val=2, n_audio=vocab.n_audio, per_shard=2)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    httpd, http_base = serve(shards, DroppingHandler)
    try:
        host, port = server.get_host_and_port()
        out = upload_to_s3(tmp_path / "empty", f"http://{host}:{port}", monkeypatch).replace("/tiny", "/hidden")
        for src, dst in ((str(shards), str(tmp_path / "hidden")), (http_base, out)):
            assert main(["llm", "dump-hidden", "--llm-path", str(tmp_path / "llm"), "--input-dir", src,
                         "--out", dst, "--batch-tokens", "64"]) == 0
        assert len(httpd.RequestHandlerClass.func.dropped) == 3  # every input shard was cut once and resumed
        client = boto3.client("s3")
        bucket, prefix = out[len("s3://"):].split("/", 1)
        rels = sorted(p.relative_to(tmp_path / "hidden").as_posix() for p in (tmp_path / "hidden").glob("*/*.tar"))
        assert len(rels) == 3
        for rel in rels:
            body = client.get_object(Bucket=bucket, Key=f"{prefix}/{rel}")["Body"].read()
            assert body == (tmp_path / "hidden" / rel).read_bytes(), rel
    finally:
        httpd.shutdown()
        server.stop()
