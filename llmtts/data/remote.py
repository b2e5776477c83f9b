"""Shards by URL: ``http(s)://HOST/DIR``, ``s3://BUCKET/PREFIX`` and ``pipe:CMD {}`` streamed with retries.

Why not fsspec/s3fs or WebDataset's ``gopen``: ``gopen`` runs ``curl`` in a pipe, so a dropped
connection ends the shard early (the rest of the shard is lost, or read twice if the shard is retried
from the start), and s3fs pins aiobotocore to narrow botocore ranges. Here one small stream class reads
sequentially and, on a transient error, reopens the object **at the byte offset it had reached**
(HTTP ``Range: bytes=N-``; a server that ignores Range answers 200 and the first N bytes are skipped
while streaming), so the tar reader above it sees every byte exactly once and memory stays at one read
buffer. HTTP goes through the standard library; S3 through ``boto3`` (optional extra ``remote``), whose
credentials and endpoint come only from its standard environment (``AWS_ACCESS_KEY_ID``,
``AWS_PROFILE``, ``~/.aws/config``, ``AWS_ENDPOINT_URL`` for S3-compatible stores) — never from flags.

``pipe:CMD`` runs ``sh -c CMD`` with ``{}`` replaced by the shell-quoted relative path (``index.json``,
``train/shard-000000.tar``) and reads its stdout (any other store with a CLI); a non-zero exit is retried
by re-running the command and skipping the bytes already read.

Transient errors (connection reset/refused, timeouts, a body shorter than announced, HTTP 5xx/429) are
retried up to ``RETRIES`` times with exponential backoff; every retry logs one warning line and calls
``on_retry`` (the reader counts them as ``stats["retries"]``). Exhausted retries, 401/403/404, a missing
bucket or key raise a one-line ``UserError`` naming the URL.
"""
from __future__ import annotations

import base64
import logging
import os
import re
import shlex
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from llmtts.errors import UserError
from llmtts.optional import require
from llmtts.redact import redact

log = logging.getLogger(__name__)

SCHEMES = ("http://", "https://", "s3://", "pipe:")
MAX_INDEX_BYTES = 64 << 20  # an index.json of ~300 k shards; anything larger is not an index
RETRIES = 6            # reopen attempts per failure point before giving up
BACKOFF_S = 0.1        # first wait; doubles per consecutive retry
MAX_BACKOFF_S = 8.0
TIMEOUT_S = 60.0       # socket timeout of one request
_CHUNK = 1 << 20


def _no_credentials(url: str) -> UserError:
    return UserError(f"{url}: no S3 credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)")


def is_url(path: object) -> bool:
    return isinstance(path, str) and path.startswith(SCHEMES)


def shown(url: str) -> str:
    """The URL or ``pipe:`` command for logs and errors, credentials masked (``llmtts.redact``)."""
    return redact(url)


def location(path: str | Path) -> str | Path:
    """A shard folder as given: a URL stays a string (``Path`` would fold ``s3://`` into ``s3:/``)."""
    return path if is_url(path) else Path(path)


def open_shard(path: str | Path, on_retry: Optional[Callable[[str, str], None]] = None):
    """A binary stream over a local shard or a URL (``RemoteFile``)."""
    return RemoteFile(path, on_retry=on_retry) if is_url(path) else open(path, "rb")


def join(base: str, *parts: str) -> str:
    """``join("s3://b/p/", "train/x.tar")`` -> ``"s3://b/p/train/x.tar"``. A ``pipe:CMD`` folder holds ``{}``
    where the relative path goes (shell-quoted: paths come from index.json, which must not run commands):
    ``join("pipe:gsutil cat gs://b/p/{}", "index.json")`` -> ``"pipe:gsutil cat gs://b/p/index.json"``."""
    if base.startswith("pipe:"):
        if "{}" not in base:
            raise UserError(f"{base}: a pipe: shard folder needs '{{}}' where the file's relative path goes, "
                            "e.g. 'pipe:gsutil cat gs://bucket/shards/{}'")
        return base.replace("{}", shlex.quote("/".join(p.strip("/") for p in parts)))
    # The parts go into the path, before a query (``?token=...``: an access token every file of the folder takes).
    scheme, netloc, path, query, _ = urllib.parse.urlsplit(base)
    for p in parts:  # http(s) paths are percent-encoded; an s3:// key is the raw name
        p = p.lstrip("/")
        path = path.rstrip("/") + "/" + (urllib.parse.quote(p, safe="/") if scheme.startswith("http") else p)
    return urllib.parse.urlunsplit((scheme, netloc, path, query, ""))


def describe(exc) -> str:
    """An exception (or a reason object) as one readable phrase: no tuples of objects with memory addresses."""
    if isinstance(exc, BaseException):
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        text = f"{type(exc).__name__}: {detail}"
    else:
        text = str(exc)
    return re.sub(r"<([\w.]+) object at 0x[0-9a-fA-F]+>", r"\1", text)


class _Transient(Exception):
    """A failure worth retrying (the message says what happened)."""


# --- one GET from an offset, per scheme ---------------------------------------------------------
def _http_get(url: str, start: int):
    """-> (body, size of the whole object or None, offset the body starts at). ``user:password@`` in the URL is
    sent as HTTP Basic auth (urllib would take it for part of the host name)."""
    headers = {"Range": f"bytes={start}-"} if start else {}
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:
        info, host = parts.netloc.rsplit("@", 1)
        user, _, password = info.partition(":")
        token = base64.b64encode(f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
        url = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(f"HTTP {exc.code}") from None
        raise UserError(f"{shown(url)}: HTTP {exc.code} {exc.reason} (missing file or no access?)") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _Transient(describe(getattr(exc, "reason", exc))) from None
    length = resp.headers.get("Content-Length")
    if resp.status == 206:  # Content-Range: bytes START-END/SIZE
        total = resp.headers.get("Content-Range", "").rsplit("/", 1)[-1]
        return resp, int(total) if total.isdigit() else None, start
    return resp, int(length) if length is not None else None, 0


_s3_client: tuple[int, object] | None = None


def _s3():
    """One client per process (a DataLoader worker forked after the main process read index.json must not
    share its connection pool)."""
    global _s3_client
    if _s3_client is None or _s3_client[0] != os.getpid():
        boto3 = require("boto3", "s3:// shards")
        Config = require("botocore.config", "s3:// shards").Config
        # One attempt per call: retries happen here, counted and logged, also mid-stream.
        _s3_client = (os.getpid(), boto3.client("s3", config=Config(
            retries={"total_max_attempts": 1}, connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S)))
    return _s3_client[1]


def _split_s3(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://"):].partition("/")
    if not bucket or not key:
        raise UserError(f"{url}: expected s3://BUCKET/KEY")
    return bucket, key


def _s3_get(url: str, start: int):
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket, key = _split_s3(url)
    try:
        resp = _s3().get_object(Bucket=bucket, Key=key, **({"Range": f"bytes={start}-"} if start else {}))
    except NoCredentialsError:
        raise _no_credentials(url) from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if status >= 500 or status == 429 or err.get("Code") in ("SlowDown", "RequestTimeout", "InternalError"):
            raise _Transient(f"S3 {err.get('Code')} (HTTP {status})") from None
        raise UserError(f"{url}: S3 {err.get('Code', 'error')}: {err.get('Message', '')}".rstrip(": ")) from None
    except (BotoCoreError, OSError) as exc:
        raise _Transient(describe(exc)) from None
    total = resp.get("ContentRange", "").rsplit("/", 1)[-1] if start else str(resp.get("ContentLength", ""))
    return resp["Body"], int(total) if total.isdigit() else None, start


class _PipeBody:
    """stdout of ``sh -c CMD``; at EOF a non-zero exit is a (retried) failure, not the end of the file."""

    def __init__(self, cmd: str):
        self._err = tempfile.TemporaryFile()  # not a pipe: a chatty command must not block on stderr
        self._proc = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=self._err)

    def read(self, n: int) -> bytes:
        data = self._proc.stdout.read(n)
        if not data and self._proc.wait() != 0:
            self._err.seek(0)
            last = (self._err.read().decode("utf-8", "replace").strip().splitlines() or [""])[-1]
            raise _Transient(f"exit status {self._proc.returncode}" + (f": {last[:200]}" if last else ""))
        return data

    def close(self) -> None:
        if self._proc.poll() is None:  # closed before the end (the loader stopped): don't leave it running
            self._proc.kill()
        self._proc.stdout.close()
        self._proc.wait()
        self._err.close()


def _pipe_get(url: str, start: int):
    return _PipeBody(url[len("pipe:"):]), None, 0  # no Range: the skip loop drops the first `start` bytes


def _get(url: str, start: int):
    if url.startswith("pipe:"):
        return _pipe_get(url, start)
    return (_s3_get if url.startswith("s3://") else _http_get)(url, start)


def _read_errors() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [OSError, _Transient]
    try:
        import http.client
        errs.append(http.client.HTTPException)
        from botocore.exceptions import BotoCoreError
        errs.append(BotoCoreError)
    except ImportError:
        pass
    try:
        from urllib3.exceptions import HTTPError as Urllib3Error
        errs.append(Urllib3Error)
    except ImportError:
        pass
    return tuple(errs)


# --- the stream --------------------------------------------------------------------------------
class RemoteFile:
    """A read-only sequential file over a URL that survives dropped connections (see module doc)."""

    def __init__(self, url: str, on_retry: Optional[Callable[[str, str], None]] = None,
                 retries: int | None = None, backoff_s: float | None = None):
        self.url, self.on_retry = url, on_retry
        self.retries = RETRIES if retries is None else retries
        self.backoff_s = BACKOFF_S if backoff_s is None else backoff_s
        self.pos, self.size, self._body = 0, None, None
        self._errors = _read_errors()  # opened at the first read, so every failure goes through one retry loop

    def _retry(self, attempt: int, why: str) -> None:
        if attempt >= self.retries:
            raise UserError(f"{shown(self.url)}: gave up after {self.retries} retries at byte {self.pos} ({why})")
        wait = min(self.backoff_s * 2 ** attempt, MAX_BACKOFF_S)
        log.warning("%s: %s at byte %d; retry %d/%d in %.1fs", shown(self.url), why, self.pos, attempt + 1,
                    self.retries, wait)
        if self.on_retry is not None:
            self.on_retry(self.url, why)
        time.sleep(wait)

    def _open(self) -> None:
        attempt = 0
        while True:
            try:
                body, size, at = _get(self.url, self.pos)
                break
            except _Transient as exc:
                self._retry(attempt, str(exc))
                attempt += 1
        if self.size is not None and size is not None and size != self.size:
            body.close()  # resuming would splice two versions of the file
            raise UserError(f"{shown(self.url)}: changed while being read ({self.size} -> {size} bytes); re-run")
        self.size = size if size is not None else self.size
        self._body = body
        skip = self.pos - at  # a server that ignored Range: stream past what we already have
        while skip > 0:
            got = body.read(min(skip, _CHUNK))
            if not got:
                raise _Transient("body ended while skipping to the resume offset")
            skip -= len(got)

    def _close_body(self) -> None:
        if self._body is not None:
            try:
                self._body.close()
            except Exception:  # a broken connection may fail to close; it is dropped either way
                pass
            self._body = None

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            out = bytearray()
            while chunk := self.read(_CHUNK):
                out += chunk
            return bytes(out)
        if n == 0 or (self.size is not None and self.pos >= self.size):
            return b""
        attempt = 0
        while True:
            try:
                if self._body is None:
                    self._open()
                data = self._body.read(n)
                if not data and self.size is not None and self.pos < self.size:
                    raise _Transient(f"connection closed early ({self.pos} of {self.size} bytes)")
                self.pos += len(data)
                return data
            except self._errors as exc:
                why = str(exc) if isinstance(exc, _Transient) else describe(exc)
                self._close_body()
                self._retry(attempt, why)
                attempt += 1

    def close(self) -> None:
        self._close_body()

    def __enter__(self) -> "RemoteFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_bytes(url: str, on_retry: Optional[Callable[[str, str], None]] = None,
               limit: int | None = None) -> bytes:
    """The whole object (for ``index.json``; shards are streamed with ``RemoteFile``), at most ``limit`` bytes
    (default ``MAX_INDEX_BYTES``): a huge or endless body is refused before it fills the memory."""
    limit = MAX_INDEX_BYTES if limit is None else limit
    with RemoteFile(url, on_retry=on_retry) as f:
        first = f.read(1)
        if f.size is not None and f.size > limit:
            raise UserError(f"{shown(url)}: {f.size} bytes, over the {limit}-byte limit for this file")
        data = bytearray(first)
        while len(data) <= limit and (chunk := f.read(min(_CHUNK, limit + 1 - len(data)))):
            data += chunk
        if len(data) > limit:
            raise UserError(f"{shown(url)}: over the {limit}-byte limit for this file")
        return bytes(data)


# --- writing (s3:// only) ----------------------------------------------------------------------
def _s3_call(url: str, what: str, call: Callable[[], object]):
    """Run one S3 request with the same counted, logged retries as reads; errors name the URL."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    for attempt in range(RETRIES + 1):
        try:
            return call()
        except NoCredentialsError:
            raise _no_credentials(url) from None
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if not (status >= 500 or status == 429):
                raise UserError(f"{url}: S3 {what}: {err.get('Code', status)} {err.get('Message', '')}".rstrip()) \
                    from None
            why = f"S3 {err.get('Code')} (HTTP {status})"
        except (BotoCoreError, OSError) as exc:
            why = describe(exc)
        if attempt == RETRIES:
            raise UserError(f"{url}: S3 {what} gave up after {RETRIES} retries ({why})")
        wait = min(BACKOFF_S * 2 ** attempt, MAX_BACKOFF_S)
        log.warning("%s: %s failed (%s); retry %d/%d in %.1fs", url, what, why, attempt + 1, RETRIES, wait)
        time.sleep(wait)


def require_writable(url: str) -> None:
    if not url.startswith("s3://"):
        raise UserError(f"{shown(url)}: http(s):// is read-only; write shards to a folder or to s3://BUCKET/PREFIX")
    _split_s3(join(url, "x"))


def exists(url: str) -> bool:
    """Whether the s3:// object exists (a missing bucket is an error, not False)."""
    from botocore.exceptions import ClientError

    bucket, key = _split_s3(url)

    def head() -> bool:
        try:
            _s3().head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                try:  # a HEAD on a missing bucket is also a bare 404: tell them apart
                    _s3().head_bucket(Bucket=bucket)
                except ClientError:
                    raise UserError(f"{url}: bucket '{bucket}' does not exist or is not accessible") from None
                return False
            raise

    return bool(_s3_call(url, "HEAD", head))


def upload(path: Path, url: str) -> None:
    """Upload one finished local file. An S3 object (multipart included) appears only once complete, so a
    reader never sees a partial shard; the caller uploads a shard before its ``.done.json``."""
    bucket, key = _split_s3(url)
    _s3_call(url, "upload", lambda: _s3().upload_file(str(path), bucket, key))
