"""Floods, disconnects, timeouts and SIGTERM against a real server with one batch row and a one-request queue.

The server runs the never-stopping export (``conftest.slow_exports``): a request's sentence holds the row for
seconds, so the queue is full while the test floods it. With a random model the row came free whenever a
sentence happened to sample [stop] (a tenth of a second), and the flood raced the queued request for it."""
from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from infer_helpers import assert_audio_close
from serve_helpers import ServerProcess, as_served, metric, pcm_to_float

SENTENCE = "This request keeps the only batch row busy for a long while, sentence after sentence. "


pytestmark = pytest.mark.slow  # server start-up dominates (15 s on a loaded 2-core machine)


@pytest.fixture(scope="module")
def small_server(slow_exports):
    """One server for the file: the flood test leaves it idle, the SIGTERM test (last) stops it."""
    srv = ServerProcess(*slow_exports, "--max-batch", "1", "--max-queue", "1", "--max-chars", "4000")
    yield srv
    srv.kill()


def _wait_queue(url: str, depth: int, timeout: float = 60) -> None:
    """Poll /health until ``depth`` requests wait (a state, not a sleep)."""
    end = time.monotonic() + timeout
    while httpx.get(url + "/health").json().get("queue") != depth:
        assert time.monotonic() < end, "queue never reached the expected depth"
        time.sleep(0.02)


def test_flood_gets_429_and_a_disconnect_frees_the_row(small_server, slow_tts):
    url = small_server.url
    with httpx.Client(timeout=120) as client:
        long = client.stream("POST", url + "/v1/audio/speech", json={"input": SENTENCE * 40, "stream": True,
                                                                      "response_format": "pcm", "seed": 1})
        resp = long.__enter__()
        pieces = resp.iter_bytes()  # kept: a dropped httpx iterator closes the response
        assert resp.status_code == 200 and next(pieces)  # generating: it holds the row
        queued: dict = {}
        waiter = threading.Thread(target=lambda: queued.update(r=httpx.post(
            url + "/v1/audio/speech", json={"input": "Hello there.", "seed": 2, "response_format": "pcm"}, timeout=120)))
        waiter.start()
        _wait_queue(url, 1)
        flood = httpx.post(url + "/v1/audio/speech", json={"input": "One too many."}, timeout=30)
        assert flood.status_code == 429 and flood.headers["retry-after"].isdigit()
        assert flood.json()["error"]["code"] == "queue_full"
        long.__exit__(None, None, None)  # the client goes away mid-stream
    waiter.join(120)
    assert queued["r"].status_code == 200  # the freed row served the queued request
    assert_audio_close(pcm_to_float(queued["r"].content), as_served(slow_tts.synthesize("Hello there.", seed=2)[0]))
    text = httpx.get(url + "/metrics").text
    assert metric(text, "llmtts_jobs_total", outcome="cancelled") == 1.0  # the long one was stopped, not finished
    assert metric(text, "llmtts_requests_total", status="429") == 1.0
    assert httpx.get(url + "/health").json() == {"status": "ok", "queue": 0, "active": 0, "auth": False}


def test_sigterm_drains_in_flight_requests_and_exits_0(small_server, slow_tts):
    text = SENTENCE
    with httpx.stream("POST", small_server.url + "/v1/audio/speech", timeout=120,
                      json={"input": text, "stream": True, "response_format": "pcm", "seed": 4}) as r:
        pieces = r.iter_bytes()
        data = [next(pieces)]
        small_server.proc.send_signal(15)  # SIGTERM while the stream is in flight
        data += list(pieces)
    assert small_server.proc.wait(60) == 0
    assert_audio_close(pcm_to_float(b"".join(data)), as_served(slow_tts.synthesize(text, seed=4)[0]))
    with pytest.raises(httpx.TransportError):  # the listener is gone
        httpx.get(small_server.url + "/health", timeout=5)


def test_a_request_past_its_timeout_gets_504_over_http(slow_exports):
    """The server's own 504 (app.py): a whole (non-streamed) request whose generation outlives ``--timeout`` is
    stopped by the scheduler and answered 504 with code "timeout"; the row is freed for the next request."""
    srv = ServerProcess(*slow_exports, "--max-batch", "1", "--max-chars", "4000", "--timeout", "3")
    try:
        t0 = time.monotonic()
        r = httpx.post(srv.url + "/v1/audio/speech", json={"input": SENTENCE * 40, "seed": 1, "response_format": "pcm"},
                       timeout=120)
        assert r.status_code == 504, (r.status_code, r.text[:200])
        assert r.json()["error"]["code"] == "timeout" and time.monotonic() - t0 < 60
        ok = httpx.post(srv.url + "/v1/audio/speech", json={"input": "Hi.", "seed": 2, "response_format": "pcm"},
                        timeout=120)
        assert ok.status_code == 200 and len(ok.content) > 0
        text = httpx.get(srv.url + "/metrics").text
        assert metric(text, "llmtts_requests_total", status="504") == 1.0
    finally:
        srv.kill()


def _raw_post(url: str, body: bytes, declared: int | None = None) -> None:
    """A client that sends a request (or only part of its body: ``declared`` > len(body)) and leaves at once."""
    host, port = url.removeprefix("http://").split(":")
    head = (f"POST /v1/audio/speech HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared or len(body)}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head + body)
        time.sleep(0.3)  # the server has read the request and queued it


def _until(check, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < end, "the server never reached the expected state"
        time.sleep(0.05)
    return got


def test_clients_that_leave_free_their_rows_quietly(serve_exports):
    """A whole (non-streamed) request whose client leaves is cancelled, not decoded to the end and counted as
    served (the server now checks between chunks too, not only after 0.5 s without one); a client that leaves
    mid-body costs one log line, not two tracebacks (red before: ClientDisconnect escaped to uvicorn); the
    active-rows gauge returns to 0 when idle (red before: it read 1 after the last job)."""
    srv = ServerProcess(*serve_exports, "--max-batch", "1", "--max-chars", "4000")
    try:
        def ended() -> tuple[float, float]:
            text = httpx.get(srv.url + "/metrics").text
            return tuple(metric(text, "llmtts_jobs_total", outcome=o) for o in ("ok", "cancelled"))

        ok0, _ = ended()  # the warm-up job
        _raw_post(srv.url, json.dumps({"input": SENTENCE * 40, "seed": 1, "response_format": "pcm"}).encode())
        ok, cancelled = _until(lambda: e if sum(e := ended()) > ok0 else None)
        assert (ok, cancelled) == (ok0, 1.0)  # stopped, not decoded to the end
        _raw_post(srv.url, b'{"input": "Hello', declared=400)
        ok = httpx.post(srv.url + "/v1/audio/speech", json={"input": "Hi there.", "seed": 2, "response_format": "pcm"},
                        timeout=120)
        assert ok.status_code == 200
        _until(lambda: httpx.get(srv.url + "/health").json()["active"] == 0)
        time.sleep(0.5)  # the scheduler idles now
        assert metric(httpx.get(srv.url + "/metrics").text, "llmtts_active_rows") == 0.0
        assert "Traceback" not in srv.output(), srv.output()[-3000:]
    finally:
        srv.kill()


def test_a_request_cut_by_the_graceful_timeout_gets_a_json_503(slow_exports):
    """SIGTERM with a whole request that cannot finish inside --graceful-timeout: the client gets the JSON 503
    ("unavailable", Retry-After) before uvicorn gives up on it (it answered a plain-text 500), and the server exits 0."""
    srv = ServerProcess(*slow_exports, "--max-batch", "1", "--max-chars", "4000", "--graceful-timeout", "3")
    try:
        got: dict = {}
        client = threading.Thread(target=lambda: got.update(r=httpx.post(
            srv.url + "/v1/audio/speech", json={"input": SENTENCE * 40, "seed": 1, "response_format": "pcm"},
            timeout=120)))
        client.start()
        _until(lambda: httpx.get(srv.url + "/health").json()["active"] == 1)
        srv.proc.send_signal(15)
        client.join(60)
        r = got["r"]
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", (r.status_code, r.text[:200])
        assert r.headers["retry-after"].isdigit()
        assert srv.proc.wait(60) == 0
    finally:
        srv.kill()
