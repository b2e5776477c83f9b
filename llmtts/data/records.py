"""What a dataset reader yields: one ``Utterance`` per usable recording, one ``Reject`` per skipped one. Its own module
so that every reader (``sources``, ``hf``) imports it without importing the others."""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


@dataclass
class Utterance:
    key: str  # shard key: letters, digits, '_' and '-'
    audio: str  # absolute path
    text: str
    speaker: str
    source: str  # audio path relative to the input (as written in the sample's json)
    # The dataset's own normalised text if it has one (LJSpeech column 3, LibriTTS .normalized.txt);
    # ingestion still runs llmtts.text over it so every dataset ends with the same alphabet.
    normalized_text: str | None = None


@dataclass
class Reject:
    key: str
    path: str
    reason: str
    detail: str = ""

    def to_dict(self) -> dict:
        return {"id": self.key, "path": self.path, "reason": self.reason, "detail": self.detail}


def safe_key(raw: str) -> str:
    """A shard key for ``raw`` (letters, digits, '_' and '-'; '/' becomes '_'). Accents are folded to ASCII first;
    when anything else had to be replaced, 8 hex digits of the name's hash follow, so "café" and "cafè", or "a b" and "a_b", stay
    two recordings instead of one key (a collision dropped one of them)."""
    plain = raw.replace("/", "_")  # a folder separator maps to '_' as it always did (readers key "alice/a1")
    folded = unicodedata.normalize("NFKD", plain).encode("ascii", "ignore").decode("ascii")
    key = _UNSAFE.sub("_", folded) or "_"
    if key != plain:
        key += "-" + hashlib.sha1(raw.encode("utf-8")).hexdigest()[:8]
    return key
