"""``llmtts export soprano``: this project's LLM + decoder -> a directory ``soprano-tts`` loads."""
from __future__ import annotations

import argparse

from llmtts.cli_paths import input_path, output_dir


def _run(args) -> int:
    from llmtts.interop.soprano.exporter import export_soprano

    out = export_soprano(args.llm_path, args.decoder_path, args.out)
    print(f"wrote {out} (load with: SopranoTTS(model_path='{out}'))")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("soprano", help="write a directory soprano-tts loads (SopranoTTS(model_path=DIR))",
                       description="Write config.json + model.safetensors + Soprano's tokenizer + decoder.pth. Needs "
                                   "an LLM imported from Soprano (fine-tuned or not) and a decoder of Soprano's shape; "
                                   "otherwise a one-line error names the setting that differs.")
    input_path(p, "--llm-path", required=True, help="LLM run or export directory")
    input_path(p, "--decoder-path", required=True, help="decoder run or export directory")
    output_dir(p, "--out", required=True, help="output directory")
    p.set_defaults(func=_run)
