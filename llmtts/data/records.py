"""What a dataset reader yields: one ``Utterance`` per usable recording, one ``Reject`` per skipped one. Its own module
so that every reader (``sources``, ``hf``) imports it without importing the others."""
from __future__ import annotations

import re
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
    return _UNSAFE.sub("_", raw) or "_"
