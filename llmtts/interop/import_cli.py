"""``llmtts import soprano``: a local Soprano model directory -> this project's LLM + decoder exports."""
from __future__ import annotations

import argparse

from llmtts.cli_paths import input_path, output_dir


def _run(args) -> int:
    from llmtts.interop.soprano.importer import import_soprano

    s = import_soprano(args.model_dir, args.out, audio_first_id=args.audio_first_id, n_audio=args.n_audio,
                       encoder=args.encoder)
    print(f"imported {s['source']}: LLM {s['llm_parameters']:,} parameters ({s['n_audio']} audio codes, "
          f"{s['n_text']} text tokens) -> {s['llm']}; decoder {s['decoder_parameters']:,} parameters -> {s['decoder']}")
    if "codec" in s:
        print(f"encoder {s['codec_parameters']:,} parameters -> {s['codec']} (encoder only: "
              f"llmtts codec encode --codec-path {s['codec']} ...)")
    print(f"synthesize: llmtts synthesize --llm-path {s['llm']} --decoder-path {s['decoder']} --text '...' --out a.wav")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("soprano", help="import a Soprano model directory (LLM + decoder.pth)",
                       description="Turn a local Soprano model directory (config.json, model.safetensors, "
                                   "tokenizer.json, decoder.pth) into this project's exports OUT/llm and OUT/decoder. "
                                   "Nothing is downloaded; .pth files are read with weights_only=True.")
    input_path(p, "--model-dir", required=True, help="local Soprano model directory")
    output_dir(p, "--out", legacy=("soprano_import.json",), required=True, help="output directory (gets llm/, decoder/, soprano_import.json)")
    input_path(p, "--encoder", default=None,
                   help="Soprano-Encoder's encoder.pth: also write OUT/codec, an encoder-only codec export for "
                        "`llmtts codec encode` (Soprano's 8000 codes)")
    p.add_argument("--audio-first-id", type=int, default=None,
                   help="Soprano id of audio code 0, for a tokenizer whose audio token names carry no number")
    p.add_argument("--n-audio", type=int, default=None,
                   help="number of audio codes (default: 8000 with --audio-first-id; without numbered audio names, "
                        "the longest run of unnamed rows)")
    p.set_defaults(func=_run)
