"""``llmtts info MODEL``: what an LLM export holds (architecture, vocabulary, front end, speakers), read from its
JSON files only: no weights are loaded, so it answers instantly for any model size. ``--formats`` loads them and
measures every weight format on this CPU (seconds)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from llmtts.cli_paths import input_path
from llmtts.errors import UserError


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def model_info(model: str | Path) -> dict:
    """The facts ``llmtts info`` prints, as a dict (also what ``--json`` writes)."""
    from llmtts.export_dir import resolve_export
    from llmtts.llm.vocab import Vocab

    export = resolve_export(model, verify=False)  # JSON only: instant; loading the weights verifies them
    if not (export / "vocab.json").is_file():
        raise UserError(f"{export}: no vocab.json (llmtts info reads LLM exports: an llm run or its export/)")
    vocab = Vocab.load(export / "vocab.json")
    hf = _read_json(export / "config.json") if (export / "config.json").is_file() else {}
    frontend = _read_json(export / "frontend.json") if (export / "frontend.json").is_file() else {}
    return {"export": str(export), "architecture": (hf.get("architectures") or ["?"])[0],
            "num_hidden_layers": hf.get("num_hidden_layers"), "hidden_size": hf.get("hidden_size"),
            "embedding_rows": vocab.size, "n_audio": vocab.n_audio, "n_text": vocab.n_text,
            "tokenizer": frontend.get("tokenizer"), "normalizer": frontend.get("normalizer"),
            "speakers": list(vocab.speakers)}


def format_table(model: str | Path, device: str = "cpu") -> dict:
    """Every weight format of this model measured on this machine (``dtype_choice``): what ``--dtype auto`` picks."""
    from llmtts.infer.canary import CANARY_TEXT, cpu_kernel_family
    from llmtts.infer.dtype_choice import describe, measure_formats, pick
    from llmtts.llm import load_llm
    from llmtts.llm.hidden import prompt_ids

    llm, vocab, frontend = load_llm(model, device=device)
    speaker = vocab.speakers[0] if vocab.speakers else None
    prompt = prompt_ids(vocab, frontend, frontend.normalize(CANARY_TEXT), speaker=speaker, normalized=True)
    rows = measure_formats(llm, prompt, vocab)
    return {"cpu": cpu_kernel_family(), "auto": pick(rows), "lines": describe(rows),
            "formats": [r.__dict__ for r in rows]}


def _main(args: argparse.Namespace) -> int:
    info = model_info(args.model)
    if args.formats:
        info["formats"] = format_table(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    spk = info["speakers"]
    print(f"model:      {info['export']}")
    print(f"network:    {info['architecture']}, {info['num_hidden_layers']} layers, hidden size {info['hidden_size']}, "
          f"{info['embedding_rows']} embedding rows")
    print(f"vocabulary: {info['n_audio']} audio codes, {info['n_text']} text ids (tokenizer {info['tokenizer']}, "
          f"normalizer {info['normalizer']})")
    print(f"speakers:   {', '.join(spk) if spk else 'none (single-speaker model)'}"
          + (f"  ({len(spk)}; pick one with --speaker NAME)" if spk else ""))
    if args.formats:
        f = info["formats"]
        print(f"formats:    measured here ({f['cpu']}), batch 1; --dtype auto picks {f['auto']}")
        for line in f["lines"]:
            print(f"  {line}")
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    input_path(parser, "model", help="an llm run directory or its export/ directory")
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    parser.add_argument("--formats", action="store_true",
                        help="also load the weights and measure every format on this CPU (kernel canary + ms/token): "
                             "what --dtype auto picks here")
    parser.set_defaults(func=_main)
