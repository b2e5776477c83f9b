"""Soprano's tokenizer as this project's text tokenizer (``frontend.json`` kind ``soprano``).

Text is encoded exactly as ``soprano-tts`` does it: ``AutoTokenizer`` on Soprano's own tokenizer files, called on
the whole prompt ``[STOP][TEXT]{sentence}[START]`` (special tokens, truncation at 512 as its transformers
backend). The ids between the prompt's specials are Soprano text ids; ``text_rows`` maps them to this
project's local text ids (0..n_text-1, ``llmtts.llm.vocab``). ``rows`` is the whole row permutation of the
import (project id -> Soprano id, -1 for a row Soprano does not have), kept for ``llmtts export soprano``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from llmtts.errors import UserError

PROMPT = ("[STOP]", "[TEXT]", "[START]")  # soprano/tts.py: f'[STOP][TEXT]{text}[START]'
MAX_PROMPT_IDS = 512  # soprano/backends/transformers.py: truncation=True, max_length=512
# Files of a Soprano model directory that its AutoTokenizer may read (config.json picks the class when
# tokenizer_config.json does not name one).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "config.json")


def load_auto_tokenizer(path: str | Path):
    from transformers import AutoTokenizer  # lazy: heavy import

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # transformers raises OSError / ValueError / KeyError variants
        raise UserError(f"{path}: cannot load Soprano's tokenizer ({type(exc).__name__}: {exc})") from None


def copy_tokenizer_files(src: str | Path, dst: str | Path) -> None:
    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


class SopranoTokenizer:
    kind = "soprano"

    def __init__(self, path: str | Path, text_rows: list[int], rows: list[int], prompt: tuple[str, ...] = PROMPT):
        self.path = Path(path)
        self.tok = load_auto_tokenizer(self.path)
        self.text_rows, self.rows, self.prompt = list(text_rows), list(rows), tuple(prompt)
        self._local = {sid: j for j, sid in enumerate(self.text_rows)}
        vocab = self.tok.get_vocab()
        missing = [p for p in self.prompt if p not in vocab]
        if missing:
            raise UserError(f"{self.path}: Soprano tokenizer has no token {missing[0]!r}")
        self._head = [vocab[self.prompt[0]], vocab[self.prompt[1]]]
        self._tail = vocab[self.prompt[2]]

    def __len__(self) -> int:
        return len(self.text_rows)

    @property
    def text_symbols(self) -> tuple[str, ...]:
        """Soprano's token names of the text ids (vocab.json's ``text_symbols``)."""
        return tuple(self.tok.convert_ids_to_tokens(self.text_rows))

    def soprano_prompt_ids(self, text: str) -> list[int]:
        """Soprano's own ids of the prompt of ``text`` (a sentence after its normaliser)."""
        template = f"{self.prompt[0]}{self.prompt[1]}{text}{self.prompt[2]}"
        return list(self.tok(template, truncation=True, max_length=MAX_PROMPT_IDS)["input_ids"])

    def encode(self, text: str) -> list[int]:
        from llmtts.errors import TokenizeError

        ids = self.soprano_prompt_ids(text)
        if ids[:2] != self._head or ids[-1] != self._tail:
            raise TokenizeError(f"Soprano's tokenizer did not keep the prompt {''.join(self.prompt)} around "
                                f"the text (too long for {MAX_PROMPT_IDS} ids, or a template adds tokens): "
                                f"{text[:60]!r}")
        out = []
        for sid in ids[2:-1]:
            if sid not in self._local:
                raise TokenizeError(f"Soprano id {sid} ({self.tok.convert_ids_to_tokens(sid)!r}) in the text is not "
                                    f"a text token: {text[:60]!r}")
            out.append(self._local[sid])
        return out

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode([self.text_rows[i] for i in ids])

    # --- frontend.json ------------------------------------------------------------------------------
    def save(self, out_dir: Path) -> dict:
        """Copy the tokenizer files to ``out_dir/tokenizer``; the keys frontend.json needs."""
        dst = out_dir / "tokenizer"
        if dst.resolve() != self.path.resolve():
            copy_tokenizer_files(self.path, dst)
        return {"path": "tokenizer", "prompt": list(self.prompt), "text_rows": self.text_rows, "rows": self.rows}

    @classmethod
    def from_frontend(cls, data: dict, file: Path) -> "SopranoTokenizer":
        for key in ("text_rows", "rows", "prompt"):
            value = data.get(key)
            if not isinstance(value, list) or not value or not all(isinstance(v, (int, str)) for v in value):
                raise UserError(f"{file}: key '{key}' must be a non-empty list")
        if not all(isinstance(v, int) for v in data["text_rows"] + data["rows"]):
            raise UserError(f"{file}: 'text_rows' and 'rows' must hold integers")
        if len(data["prompt"]) != 3 or not all(isinstance(p, str) for p in data["prompt"]):
            raise UserError(f"{file}: 'prompt' must be three token strings")
        return cls(file.parent / str(data.get("path", "tokenizer")), data["text_rows"], data["rows"],
                   tuple(data["prompt"]))
