"""Shards by URL (llmtts/data/remote.py): real servers on loopback, started here.

- Python's threading http.server serving the shard folder (it ignores Range, so a resume skips bytes);
- a handler that honours Range and drops the connection half-way through each shard once (retries);
- moto's standalone S3 server (ThreadedMotoServer), reached through boto3's standard environment.
Every URL read must give the same batches, in the same order, as the local copy.
"""
import itertools
import socket
from collections import Counter

import pytest

from llmtts.data import remote
from llmtts.data.reader import ShardLoader
from llmtts.errors import UserError

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")
from remote_servers import AuthHandler, BloatedIndexHandler, DroppingHandler, serve, upload_to_s3  # noqa: E402


@pytest.fixture
def shard_dir(make_shards):
    return make_shards(4, 5)  # 20 samples in 4 shards


@pytest.fixture
def http_url(shard_dir):
    httpd, base = serve(shard_dir[0])
    yield base
    httpd.shutdown()


@pytest.fixture
def dropping_url(shard_dir):
    httpd, base = serve(shard_dir[0], DroppingHandler)
    yield base
    httpd.shutdown()


@pytest.fixture(scope="module")
def s3_endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_url(shard_dir, s3_endpoint, monkeypatch):
    return upload_to_s3(shard_dir[0], s3_endpoint, monkeypatch)


def batches(source, rank=0, world=1, **kw):
    args = dict(length_fn=lambda s: len(s["codes"]), fields=["codes"], batch_budget=40, max_batch_size=4, seed=5,
                shuffle_buffer=6, endless=False)
    args.update(kw)
    ld = ShardLoader(str(source), "train", rank, world, **args)
    return [[(s["__key__"], s["codes"].tolist()) for s in b] for b in ld], ld


def all_ranks(source, world, **kw):
    return [batches(source, rank, world, **kw)[0] for rank in range(world)]


@pytest.mark.parametrize("scheme", ["http", "s3"])
def test_url_gives_the_local_batches_in_order(scheme, shard_dir, request):
    url = request.getfixturevalue(f"{scheme}_url")
    local, keys = shard_dir
    one_rank, ld = batches(url)
    assert one_rank == batches(local)[0]
    assert Counter(k for b in one_rank for k, _ in b) == Counter(keys)
    assert ld.stats.get("retries", 0) == 0 and ld.stats["samples"] == len(keys)
    two = all_ranks(url, 2, num_workers=2)
    assert two == all_ranks(local, 2, num_workers=2)
    assert Counter(k for r in two for b in r for k, _ in b) == Counter(keys)


def test_dropped_connections_are_retried_and_every_sample_read_once(shard_dir, dropping_url, http_url, caplog):
    local, keys = shard_dir
    got, ld = batches(dropping_url, num_workers=2)
    assert got == batches(local, num_workers=2)[0]
    assert Counter(k for b in got for k, _ in b) == Counter(keys)
    assert ld.stats["retries"] >= 1
    # In-process: every drop (one per shard) is counted and logged as one warning line.
    httpd, fresh = serve(local, DroppingHandler)
    got, ld = batches(f"{fresh}/", num_workers=0)
    httpd.shutdown()
    assert got == batches(local)[0]
    assert ld.stats["retries"] == 4
    assert sum("retry 1/" in r.getMessage() for r in caplog.records) >= 4
    # The plain server ignores Range: a resumed read skips the bytes it already has.
    f = remote.RemoteFile(f"{http_url}/train/shard-000001.tar")
    head = f.read(1000)
    f._close_body()  # as if the connection had dropped here
    rest = f.read()
    assert head + rest == (local / "train" / "shard-000001.tar").read_bytes()


def test_resume_from_a_url_continues_exactly(dropping_url, shard_dir):
    kw = dict(length_fn=lambda s: len(s["codes"]), fields=["codes"], batch_budget=40, max_batch_size=4, seed=5,
              shuffle_buffer=6, num_workers=2)
    ref = ShardLoader(dropping_url, "train", 0, 1, **kw)
    it = iter(ref)
    for _ in range(3):
        next(it)
    state = ref.state_dict()
    expected = [[s["__key__"] for s in next(it)] for _ in range(8)]  # runs into epoch 1
    again = ShardLoader(dropping_url, "train", 0, 1, **kw)
    again.load_state_dict(state)
    assert [[s["__key__"] for s in b] for b in itertools.islice(again, 8)] == expected


def test_missing_folder_bucket_or_shard_is_a_one_line_error(http_url, s3_url, shard_dir):
    for url in (f"{http_url}/nope", "s3://no-such-bucket/tiny", f"{s3_url}-missing"):
        with pytest.raises(UserError) as err:
            batches(url)
        msg = str(err.value)
        assert "\n" not in msg and f"{url}/index.json" in msg
        assert any(w in msg for w in ("404", "NoSuchBucket", "NoSuchKey")), msg
    # Errors and logs never show a query string (a signed URL's token) or user:password.
    with pytest.raises(UserError, match="HTTP 404") as err:
        remote.read_bytes(f"{http_url}/nope.tar?token=s3cret")
    assert "s3cret" not in str(err.value) and "/nope.tar" in str(err.value)
    # A shard the index lists but the server lacks: an error naming it, not a silent skip.
    (shard_dir[0] / "train" / "shard-000002.tar").unlink()
    for workers in (0, 2):  # from a DataLoader worker too: the message, not the worker's traceback
        with pytest.raises(UserError, match=r"shard-000002\.tar: HTTP 404") as err:
            batches(http_url, num_workers=workers)
        assert "\n" not in str(err.value)


def test_remote_file_reads_ranges_from_s3(s3_url, shard_dir):
    want = (shard_dir[0] / "train" / "shard-000000.tar").read_bytes()
    f = remote.RemoteFile(f"{s3_url}/train/shard-000000.tar")
    parts = [f.read(777)]
    f._close_body()  # reopen mid-object: a ranged GET from byte 777
    while chunk := f.read(4096):
        parts.append(chunk)
    assert b"".join(parts) == want and f.pos == len(want)


def test_tiny_llm_trains_identically_from_http_and_s3(tmp_path, s3_endpoint, monkeypatch):
    """`llmtts llm train --input-dir URL`: the same batches, so the same loss curve, as from the local copy."""
    import json
    import sys
    from pathlib import Path

    from llmtts.cli import main

    sys.path.insert(0, str(Path(__file__).parents[1] / "llm"))
    from token_shards import make_token_shards

    shards = make_token_shards(tmp_path / "tok", n_train=8, n_val=0)
    httpd, http_base = serve(shards, DroppingHandler)
    try:
        s3 = upload_to_s3(shards, s3_endpoint, monkeypatch)
        losses = {}
        for name, src in (("local", str(shards)), ("http", http_base), ("s3", s3)):
            run = tmp_path / f"run-{name}"
            assert main(["llm", "train", "--input-dir", src, "--save-dir", str(run), "--from-scratch",
                         "--config", "configs/llm/tiny.yaml", "trainer.max_steps=4", "log.progress=false",
                         "log.tensorboard=false", "trainer.log_every=1", "vocab.n_audio=64", "packing.enabled=true",
                         "packing.row_length=128", "data.batch_budget=512", "model.max_position_embeddings=256",
                         "model.num_hidden_layers=1", "model.hidden_size=32", "model.intermediate_size=64",
                         "model.head_dim=16"]) == 0
            lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            losses[name] = [(m["step"], m["loss"]) for m in lines if m["split"] == "train"]
        # The http run really streamed every train shard from the server (and had each one cut once).
        assert httpd.RequestHandlerClass.func.dropped == {f"/train/shard-{i:06d}.tar" for i in range(2)}
    finally:
        httpd.shutdown()
    assert [s for s, _ in losses["local"]] == [1, 2, 3, 4] and len({x for _, x in losses["local"]}) > 1
    for name in ("http", "s3"):
        assert [s for s, _ in losses[name]] == [1, 2, 3, 4]
        assert all(abs(a - b) <= 1e-5 * max(1.0, abs(a)) for (_, a), (_, b) in zip(losses[name], losses["local"]))


def test_map_shards_writes_to_s3_and_reads_from_it(shard_dir, s3_url, tmp_path):
    """A rank-parallel shard map (what `codec encode` / `llm dump-hidden` run) with s3:// output and input."""
    from llmtts.data.parallel_map import iter_shard, map_shards

    local, keys = shard_dir
    calls = []

    def copy(src, writer):  # a stand-in for an encoder: same samples, codes + 1
        calls.append(str(src))
        for s in iter_shard(src, fields=("codes",)):
            writer.write(s["__key__"], {"json": s["json"], "codes.npy": s["codes"] + 1})

    out = s3_url.replace("/tiny", "/tokens")
    assert map_shards(local, out, copy, kind="tokens", rank=1, world_size=2, progress=False) is None
    index = map_shards(local, out, copy, kind="tokens", rank=0, world_size=2, progress=False, wait_timeout_s=30)
    assert index["totals"]["num_samples"] == len(keys) and len(calls) == 4
    got, _ = batches(out)
    want = [[(k, [c + 1 for c in codes]) for k, codes in b] for b in batches(local)[0]]
    assert got == want
    # A re-run finds every shard done at the URL and redoes nothing; the index is rewritten the same.
    assert map_shards(local, out, copy, kind="tokens", rank=0, world_size=1, progress=False) == index
    assert len(calls) == 4
    # s3:// input -> local output, the same shards.
    back = tmp_path / "back"
    map_shards(out, back, copy, kind="tokens", progress=False, rank=0, world_size=1)
    assert batches(back)[0] == [[(k, [c + 2 for c in codes]) for k, codes in b] for b in batches(local)[0]]
    with pytest.raises(UserError, match="read-only"):
        map_shards(local, "http://127.0.0.1:1/x", copy, kind="tokens", progress=False)
    with pytest.raises(UserError, match="holds tokens shards"):
        map_shards(local, out, copy, kind="hidden", progress=False)


def test_codec_encode_cli_from_and_to_s3_matches_local(tmp_path, s3_endpoint, monkeypatch):
    """`llmtts codec encode --input-dir s3://… --out s3://…`: byte-identical token shards to a local encode."""
    import sys
    from pathlib import Path

    import torch

    from llmtts.cli import main
    from llmtts.codec.config import CodecConfig
    from llmtts.codec.export import export_codec
    from llmtts.codec.model import CodecModel
    from llmtts.config import load_config

    sys.path.insert(0, str(Path(__file__).parents[1] / "codec"))
    from codec_shards_helper import write_audio_shards

    audio = write_audio_shards(tmp_path / "audio", {"train": [2, 2], "val": [1]})
    torch.manual_seed(0)
    codec = export_codec(CodecModel(load_config(CodecConfig, "configs/codec/tiny.yaml").model), tmp_path / "codec")
    src = upload_to_s3(audio, s3_endpoint, monkeypatch)
    out = src.replace("/tiny", "/tokens")
    for inp, dst in ((str(audio), str(tmp_path / "tok")), (src, out)):
        assert main(["codec", "encode", "--codec-path", str(codec), "--input-dir", inp, "--out", dst,
                     "--device", "cpu", "--no-progress", "--batch-size", "2"]) == 0
    client = boto3.client("s3")
    bucket, prefix = out[len("s3://"):].split("/", 1)
    for rel in ("train/shard-000000.tar", "train/shard-000001.tar", "val/shard-000000.tar"):
        body = client.get_object(Bucket=bucket, Key=f"{prefix}/{rel}")["Body"].read()
        assert body == (tmp_path / "tok" / rel).read_bytes(), rel
    index = client.get_object(Bucket=bucket, Key=f"{prefix}/index.json")["Body"].read()
    assert b'"kind": "tokens"' in index and b'"num_samples": 5' in index


def test_pipe_folder_with_a_failing_command_is_retried(shard_dir, tmp_path, monkeypatch):
    """``pipe:CMD {}``: a command that dies half-way through each shard once still gives every sample once."""
    import sys

    local, keys = shard_dir
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "flaky_cat.py"
    script.write_text("import os, sys\np, marks = sys.argv[1], sys.argv[2]\ndata = open(p, 'rb').read()\n"
                      "mark = os.path.join(marks, os.path.basename(p))\n"
                      "if p.endswith('.tar') and not os.path.exists(mark):\n"
                      "    open(mark, 'w').close()\n    sys.stdout.buffer.write(data[: len(data) // 2])\n"
                      "    sys.exit(3)\nsys.stdout.buffer.write(data)\n")
    url = f"pipe:{sys.executable} {script} {local}/{{}} {marks}"
    got, ld = batches(url)
    assert got == batches(local)[0] and ld.stats["retries"] == 4
    # index.json's paths are shell-quoted into the command, never run as shell text.
    assert remote.join("pipe:cat /d/{}", "a; touch x") == "pipe:cat /d/'a; touch x'"
    monkeypatch.setattr(remote, "BACKOFF_S", 0.001)
    with pytest.raises(UserError, match=r"gave up after 6 retries .*exit status 1") as err:
        batches(f"pipe:cat {tmp_path}/nope/{{}}")
    assert "\n" not in str(err.value) and "index.json" in str(err.value)
    with pytest.raises(UserError, match="needs '{}'"):
        batches("pipe:cat /nowhere")


def test_a_file_that_changes_between_retries_is_an_error(http_url, shard_dir):
    path = shard_dir[0] / "train" / "shard-000000.tar"
    f = remote.RemoteFile(f"{http_url}/train/shard-000000.tar")
    f.read(1000)
    f._close_body()  # a dropped connection; meanwhile the shard is rewritten
    path.write_bytes(path.read_bytes() + b"\0" * 512)
    with pytest.raises(UserError, match="changed while being read"):
        f.read(1000)


def test_token_and_userinfo_urls_reach_an_authenticating_server(shard_dir):
    """A folder URL with ``?token=`` gets each file's path before the query; ``user:password@`` is sent as Basic
    auth (it was taken for part of the host name: a DNS error). Logs and errors show neither."""
    httpd, base = serve(shard_dir[0], AuthHandler)
    try:
        want = batches(shard_dir[0])[0]
        assert batches(base + "/?token=T0KEN")[0] == want
        assert batches(base.replace("http://", "http://user:p%40ss@"))[0] == want
        with pytest.raises(UserError) as err:
            batches(base.replace("http://", "http://user:wrong@"))
        assert "401" in str(err.value) and "wrong" not in str(err.value)
    finally:
        httpd.shutdown()


def test_an_endless_index_is_refused_at_the_limit(shard_dir, monkeypatch):
    monkeypatch.setattr(remote, "MAX_INDEX_BYTES", 1 << 20)
    httpd, base = serve(shard_dir[0], BloatedIndexHandler)
    try:
        with pytest.raises(UserError, match=r"index\.json: over the 1048576-byte limit"):
            batches(base)
    finally:
        httpd.shutdown()


def test_giving_up_names_the_cause_without_object_addresses(monkeypatch):
    monkeypatch.setattr(remote, "BACKOFF_S", 0.001)
    monkeypatch.setattr(remote, "RETRIES", 1)
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError) as err:
        remote.read_bytes(f"http://127.0.0.1:{port}/index.json")
    msg = str(err.value)
    assert "gave up after" in msg and "Connection refused" in msg and " at 0x" not in msg and "\n" not in msg, msg
