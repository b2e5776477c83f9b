"""Secrets out of logs and run records: the one function every log line and record of a command line goes through.

A command line may carry credentials: a shard URL with ``user:password@`` or a signed query (``?token=``,
``X-Amz-Signature=``), a ``pipe:`` command with ``--token X`` or ``AWS_SECRET_ACCESS_KEY=...``, an
``Authorization: Bearer ...`` header. ``redact`` replaces each such value with ``REDACTED`` and keeps the rest, so
a record still says what ran. Written here (not a library) because the rules are this project's: its URL schemes
and its ``pipe:`` convention.
"""
from __future__ import annotations

import re
from typing import Iterable

MASK = "REDACTED"
# A name is secret when its last word (split at - and _) says so: "AWS_SECRET_ACCESS_KEY", "hf_token", "--password",
# "X-Amz-Signature" are; "--max-tokens", "tokens_per_text_id", "--api-key-file" (a path) are not.
_SECRET_LAST = {"token", "secret", "password", "passwd", "pwd", "apikey", "credential", "credentials", "signature",
                "sig", "authorization", "auth"}
_KEY_QUALIFIERS = {"api", "access", "secret", "private", "account", "master", "sas", "session"}
_NAME = r"[A-Za-z][-_A-Za-z0-9]*"
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<info>[^/@\s]+)@", re.I)
_QUERY_PAIR = re.compile(r"(?P<sep>[?&;])(?P<key>[^=&#\s]+)=(?P<val>[^&#\s]*)")
_ASSIGN = re.compile(rf"(?P<key>\b{_NAME})(?P<eq>=|:[ \t]+)")  # the value: _VALUE from its end on
_VALUE = re.compile(r"[^\s&'\"]+")
_BEARER = re.compile(r"\b(?P<kind>Bearer|Basic)\s+(?P<val>[A-Za-z0-9._~+/=-]{8,})", re.I)
_FLAG_THEN_VALUE = re.compile(rf"(?P<flag>--?{_NAME})(?P<sp>\s+)(?P<val>[^\s-]\S*)")


def secret_name(name: str) -> bool:
    words = [w for w in re.split(r"[-_]+", name.lower().lstrip("-")) if w]
    if not words:
        return False
    return words[-1] in _SECRET_LAST or (words[-1] == "key" and len(words) > 1 and words[-2] in _KEY_QUALIFIERS)


def redact(text: str) -> str:
    """``text`` with every credential-looking value replaced by ``REDACTED`` (see the module docstring)."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _QUERY_PAIR.sub(lambda m: m[0] if not (secret_name(m["key"]) or _long(m["val"]))
                           else f"{m['sep']}{m['key']}={MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['kind']} {MASK}", text)
    text = _mask_assignments(text)
    return _FLAG_THEN_VALUE.sub(lambda m: f"{m['flag']}{m['sp']}{MASK}" if secret_name(m["flag"]) else m[0], text)


def _mask_assignments(text: str) -> str:
    """``NAME=VALUE`` / ``NAME: VALUE`` with a secret NAME, wherever it sits (also inside another pair's value:
    ``group=pipe:AWS_SECRET_ACCESS_KEY=...``, so a match consumes only NAME and its sign)."""
    out, pos = [], 0
    for m in _ASSIGN.finditer(text):
        if m.start() < pos or not secret_name(m["key"]):
            continue
        v = _VALUE.match(text, m.end())
        if v is None:
            continue
        out += [text[pos:m.end()], MASK]
        pos = v.end()
    return "".join(out) + text[pos:]


def _long(value: str) -> bool:
    """An opaque value of 32+ characters in a query string (a pre-signed URL's signature under any name)."""
    return len(value) >= 32 and re.fullmatch(r"[A-Za-z0-9%._~+/=-]+", value) is not None


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A command line as a list: each argument redacted, and the argument after a secret-named flag masked whole
    (``--token X`` arrives as two items)."""
    out: list[str] = []
    for arg in map(str, argv):
        prev = out[-1] if out else ""
        out.append(MASK if prev.startswith("-") and "=" not in prev and secret_name(prev) else redact(arg))
    return out
