"""Loopback servers for the shards-by-URL tests (tests/data/test_data_remote.py, tests/llm/test_dump_remote.py)."""
import functools
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from llmtts.data import remote


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class DroppingHandler(QuietHandler):
    """Range-aware; the first request for each .tar sends half the body, then cuts the connection."""

    dropped: set = set()
    lock = threading.Lock()

    def do_GET(self):
        if not self.path.endswith(".tar"):
            return super().do_GET()
        data = (self.directory_path / self.path.lstrip("/")).read_bytes()
        start = int(self.headers.get("Range", "bytes=0-")[len("bytes="):].split("-")[0])
        with self.lock:
            drop = self.path not in self.dropped
            self.dropped.add(self.path)
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if drop:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)


def serve(directory, handler=QuietHandler):
    cls = type("H", (handler,), {"directory_path": Path(directory), "dropped": set()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(cls, directory=str(directory)))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def upload_to_s3(root, s3_endpoint, monkeypatch):
    """Put the folder ``root`` into a new bucket of the S3 server at ``s3_endpoint``; returns its s3:// URL."""
    import boto3
    # Credentials and endpoint only through boto3's standard environment, as on a cluster.
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(remote, "_s3_client", None)
    client = boto3.client("s3")
    bucket = f"shards-{len(client.list_buckets()['Buckets'])}"
    client.create_bucket(Bucket=bucket)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"tiny/{path.relative_to(root).as_posix()}")
    return f"s3://{bucket}/tiny"


class AuthHandler(QuietHandler):
    """Answers only requests that carry ``?token=T0KEN`` or HTTP Basic ``user:p@ss`` (401 otherwise)."""

    def do_GET(self):
        import base64

        basic = "Basic " + base64.b64encode(b"user:p@ss").decode()
        if "token=T0KEN" not in self.path.partition("?")[2] and self.headers.get("Authorization") != basic:
            self.send_error(401)
            return
        super().do_GET()


class BloatedIndexHandler(QuietHandler):
    """Serves an endless ``index.json`` without a Content-Length (a misconfigured or hostile server)."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        try:
            while True:
                self.wfile.write(b" " * 65536)
        except OSError:
            pass
