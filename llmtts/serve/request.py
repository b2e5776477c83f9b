"""The ``/v1/audio/speech`` body: raw bytes -> a checked ``SpeechRequest``, or an ``ApiError`` with the status and
OpenAI-style error object the docs promise (docs/serve.md, "Errors").

Parsed by hand rather than by a pydantic model: FastAPI's validation errors are its own 422 shape, and we want
one OpenAI-style error naming the field (``param``) for every case.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from llmtts.serve.formats import FORMATS, STREAMABLE


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class SpeechRequest:
    input: str
    model: str | None = None
    voice: str | None = None
    response_format: str = "wav"
    speed: float = 1.0
    stream: bool = False  # chunked audio as it is generated
    stream_format: str = "audio"  # audio (raw bytes) | sse (OpenAI speech.audio.delta events)
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None


_STR = ("str", (str,))
_NUM = ("number", (int, float))
_TYPES = {"model": _STR, "input": _STR, "voice": _STR, "response_format": _STR, "stream_format": _STR,
          "instructions": _STR, "speed": _NUM, "temperature": _NUM, "top_p": _NUM, "seed": ("integer", (int,)),
          "stream": ("boolean", (bool,))}


def _typed(body: dict) -> dict:
    """422 for a field of the wrong JSON type (``true`` is not a number; ``null`` means "not given")."""
    out = {}
    for key, (name, types) in _TYPES.items():
        val = body.get(key)
        if val is None:
            continue
        if not isinstance(val, types) or (name != "boolean" and isinstance(val, bool)):
            raise ApiError(422, f"{key} must be a {name}, got {type(val).__name__}", key, "invalid_type")
        out[key] = val
    return out


def parse_speech(raw: bytes, max_chars: int) -> SpeechRequest:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"body is not valid UTF-8 (byte {exc.start})", code="invalid_encoding") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                       code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(422, f"body must be a JSON object, got {type(body).__name__}", code="invalid_type")
    if isinstance(body.get("voice"), dict) and isinstance(body["voice"].get("id"), str):
        body = {**body, "voice": body["voice"]["id"]}  # newer OpenAI clients: voice {"id": ...}
    f = _typed(body)
    if "input" not in f:
        raise ApiError(422, "input is required: the text to speak", "input", "missing_required_parameter")
    if not f["input"].strip():
        raise ApiError(400, "input is empty or whitespace only: nothing to say", "input", "empty_input")
    if len(f["input"]) > max_chars:
        raise ApiError(400, f"input has {len(f['input'])} characters, more than this server's limit of {max_chars}",
                       "input", "string_above_max_length")
    req = SpeechRequest(**{k: v for k, v in f.items() if k in SpeechRequest.__dataclass_fields__})
    # ``stream`` decides when given; else asking for a stream_format asks for a stream.
    _check_values(req, streaming_asked=f["stream"] if "stream" in f else "stream_format" in f)
    return req


def _check_values(req: SpeechRequest, streaming_asked: bool) -> None:
    if req.response_format not in FORMATS:
        raise ApiError(400, f"response_format {req.response_format!r} is not supported; use one of "
                            f"{', '.join(FORMATS)}", "response_format", "unsupported_value")
    if not math.isfinite(req.speed) or req.speed != 1.0:
        raise ApiError(400, f"speed {req.speed} is not supported: this model has no tempo control, only 1.0",
                       "speed", "unsupported_value")
    if req.stream_format not in ("audio", "sse"):
        raise ApiError(400, f"stream_format must be 'audio' or 'sse', got {req.stream_format!r}", "stream_format",
                       "unsupported_value")
    req.stream = streaming_asked
    if req.stream and req.response_format not in STREAMABLE:
        raise ApiError(400, f"response_format {req.response_format!r} cannot be streamed; stream wav or pcm",
                       "response_format", "unsupported_value")
    if req.seed is not None and not 0 <= req.seed < 2**63:
        raise ApiError(400, f"seed must be in [0, 2**63), got {req.seed}", "seed", "invalid_value")
