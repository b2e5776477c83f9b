"""A real ``llmtts serve`` process (API key on) and real HTTP clients: audio equals ``TTS.synthesize`` for the
same seed (whole, streamed, SSE, concurrent, OpenAI client); bad bodies get the documented errors; metrics count."""
from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from infer_helpers import assert_audio_close
from serve_helpers import AUTH, KEY, as_served, decode_file, metric, pcm_to_float

TEXT = "Hello, my name is Soma Siddhartha. I paid $3.50 on May 1st! Did it work?"


@pytest.fixture(scope="module")
def server(key_server):
    return key_server


def _post(server, body, **kw):
    return httpx.post(server.url + "/v1/audio/speech", json=body, headers=AUTH, timeout=120, **kw)


@pytest.mark.parametrize("fmt", ["wav", "pcm", "flac"])
def test_whole_response_equals_synthesize(server, serve_tts, fmt):
    r = _post(server, {"model": "llmtts", "input": TEXT, "voice": "alloy", "response_format": fmt, "seed": 3})
    assert r.status_code == 200, r.text
    wav = pcm_to_float(r.content) if fmt == "pcm" else decode_file(r.content)[0]
    assert int(r.headers["x-sample-rate"]) == serve_tts.sample_rate
    assert_audio_close(wav, as_served(serve_tts.synthesize(TEXT, seed=3)[0]))


def _stream(server, text, seed, temperature=None):
    body = {"input": text, "response_format": "pcm", "stream": True, "seed": seed}
    if temperature is not None:
        body["temperature"] = temperature
    with httpx.stream("POST", server.url + "/v1/audio/speech", json=body, headers=AUTH, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.headers
        return r.read()


def test_concurrent_streams_each_get_their_own_audio(server, serve_tts):
    jobs = [(TEXT, 1, None), ("Short one.", 2, 0.3), ("Another, somewhat longer, sentence here.", 3, 1.0),
            (TEXT, 4, 0.5), ("Fifth text.", 5, None), ("Hello there, how are you?", 6, 0.0)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda j: _stream(server, *j), jobs))
    for (text, seed, temp), data in zip(jobs, results):
        expected = serve_tts.synthesize(text, seed=seed, temperature=temp)[0]
        assert_audio_close(pcm_to_float(data), as_served(expected))


def test_streamed_wav_and_sse(server, serve_tts):
    expected = as_served(serve_tts.synthesize(TEXT, seed=9)[0])
    with httpx.stream("POST", server.url + "/v1/audio/speech", headers=AUTH, timeout=120,
                      json={"input": TEXT, "response_format": "wav", "stream": True, "seed": 9}) as r:
        data = r.read()
    assert data[:4] == b"RIFF" and data[40:44] == b"\xff\xff\xff\xff"  # open-ended length
    assert_audio_close(pcm_to_float(data[44:]), expected)
    r = _post(server, {"input": TEXT, "response_format": "pcm", "stream_format": "sse", "seed": 9})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done" and {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert_audio_close(pcm_to_float(audio), expected)


def test_openai_client(server, serve_tts):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY)
    assert [m.id for m in client.models.list()] == ["llmtts"]
    resp = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="wav",
                                      extra_body={"seed": 5})
    expected = as_served(serve_tts.synthesize(TEXT, seed=5)[0])
    assert_audio_close(decode_file(resp.content)[0], expected)
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=TEXT,
                                                            response_format="pcm", stream_format="audio",
                                                            extra_body={"seed": 5}) as s:
        data = b"".join(s.iter_bytes())
    assert_audio_close(pcm_to_float(data), expected)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong").models.list()


@pytest.mark.parametrize("fmt", ["mp3", "opus"])
def test_compressed_formats_decode(server, serve_tts, fmt):
    r = _post(server, {"input": "Hello there, how are you?", "response_format": fmt, "seed": 1})
    assert r.status_code == 200 and r.headers["content-type"] == {"mp3": "audio/mpeg", "opus": "audio/ogg"}[fmt]
    wav, sr = decode_file(r.content)
    expected = serve_tts.synthesize("Hello there, how are you?", seed=1)[0]
    assert abs(len(wav) / sr - len(expected) / serve_tts.sample_rate) < 0.1  # lossy codecs pad a little


BAD = [  # (body bytes or JSON, status, error code)
    (b"", 400, "invalid_json"),
    (b"{\"input\": \"caf\xe9\"}", 400, "invalid_encoding"),
    (b"{not json", 400, "invalid_json"),
    ([1, 2], 422, "invalid_type"),
    ({"model": "llmtts"}, 422, "missing_required_parameter"),
    ({"input": 5}, 422, "invalid_type"),
    ({"input": "hi", "seed": "3"}, 422, "invalid_type"),
    ({"input": "hi", "stream": "yes"}, 422, "invalid_type"),
    ({"input": "hi", "temperature": True}, 422, "invalid_type"),
    ({"input": "   "}, 400, "empty_input"),
    ({"input": "x" * 401}, 400, "string_above_max_length"),
    ({"input": "hi", "speed": 1.5}, 400, "unsupported_value"),
    ({"input": "hi", "response_format": "aac"}, 400, "unsupported_value"),
    ({"input": "hi", "response_format": "flac", "stream": True}, 400, "unsupported_value"),
    ({"input": "hi", "stream_format": "chunks"}, 400, "unsupported_value"),
    ({"input": "hi", "voice": "bob"}, 400, "invalid_value"),
    ({"input": "hi", "temperature": -1}, 400, "invalid_value"),
    ({"input": "hi", "temperature": 1e308}, 400, "invalid_value"),  # finite, but uniform noise
    ({"input": "hi", "seed": -1}, 400, "invalid_value"),
    ({"input": "?! ... !?"}, 400, "invalid_value"),
    ({"input": "hi " * 2000}, 413, "body_too_large"),
]


@pytest.mark.parametrize("body,status,code", BAD, ids=[f"{s}-{c}-{i}" for i, (_, s, c) in enumerate(BAD)])
def test_bad_bodies_get_documented_errors(server, body, status, code):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(server.url + "/v1/audio/speech", content=content, timeout=30,
                   headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == status, r.text[:300]
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and "Traceback" not in r.text


def test_auth_routes_and_metrics(server):
    url = server.url
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
        r = httpx.post(url + "/v1/audio/speech", json={"input": "hi"}, headers=headers, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(url + "/metrics").status_code == 401
    assert httpx.get(url + "/health").json()["status"] == "ok"  # open: load balancers probe it
    assert httpx.get(url + "/nowhere", headers=AUTH).json()["error"]["code"] == "not_found"
    assert httpx.get(url + "/v1/voices", headers=AUTH).json()["voices"] == ["default"]
    before = httpx.get(url + "/metrics", headers=AUTH).text
    assert _post(server, {"input": "Hello there.", "seed": 1}).status_code == 200
    assert _post(server, {"input": ""}).status_code == 400
    after = httpx.get(url + "/metrics", headers=AUTH).text
    for status in ("200", "400", "401"):
        assert metric(after, "llmtts_requests_total", status=status) >= 1
    assert metric(after, "llmtts_requests_total", status="200") == metric(before, "llmtts_requests_total",
                                                                        status="200") + 1
    assert metric(after, "llmtts_audio_seconds_total") > metric(before, "llmtts_audio_seconds_total")
    assert metric(after, "llmtts_request_latency_seconds_count") > 0
    assert "llmtts_time_to_first_audio_seconds_bucket" in after and "llmtts_queue_depth" in after
