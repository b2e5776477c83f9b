"""``llmtts synthesize``: text in, wav out — one text, a file of texts (one per line), or streamed."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from llmtts.cli_paths import input_path, output_dir, output_file
from llmtts.errors import UserError

log = logging.getLogger(__name__)


def configure(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text to speak")
    input_path(src, "--text-file", help="a UTF-8 file with one text per line (blank lines skipped)")
    input_path(p, "--llm-path", holds_outputs=True, required=True, help="LLM run directory or its export/")
    input_path(p, "--decoder-path", holds_outputs=True, required=True, help="decoder run directory or its export/")
    output_file(p, "--out", help="output wav (with --text)")
    output_dir(p, "--out-dir", legacy=("000000.wav",), help="output directory (with --text-file): 000000.wav, 000001.wav ...")
    p.add_argument("--stream", action="store_true",
                   help="generate and decode chunk by chunk (prints first-chunk latency); same audio as offline")
    p.add_argument("--lookahead", type=int, default=None,
                   help="with --stream: tokens of right context before a chunk is emitted (default: the decoder's "
                        "receptive field = exact; smaller = lower latency, inexact chunk edges)")
    add_sampling_args(p)
    p.add_argument("--seed", type=int, default=None, help="fixed seed: the same text gives the same audio")
    p.add_argument("--batch-size", type=int, default=None, help="sentences generated together (default 8)")
    p.add_argument("--speaker", default=None, help="speaker name (multi-speaker models)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "int8", "int4", "auto"],
                   help="fp32 (exact) | bf16 | int8 | int4: LLM weights (int8/int4 = weight-only, int4 CPU only) "
                        "and, for the others, a bf16 decoder; fewer bytes per token, slightly different audio. "
                        "auto: each measured on this CPU, the fastest that the kernel canary clears")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    p.set_defaults(func=run)


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """Sampling flags shared by ``synthesize`` and ``eval tts``. Unset flags fall back to the LLM export's
    ``inference.json`` (the recipe's defaults), then to the built-in defaults named in the help."""
    g = p.add_argument_group("sampling (default: the export's inference.json, else the value in brackets)")
    g.add_argument("--temperature", type=float, default=None, help="0 = greedy [0.7]")
    g.add_argument("--greedy", action="store_true", help="argmax decoding: same as --temperature 0")
    g.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass [0.95]")
    g.add_argument("--top-k", type=int, default=None, help="0 = off [0]")
    g.add_argument("--repetition-penalty", type=float, default=None, help=">= 1.0 [1.2]")
    g.add_argument("--repetition-window", type=int, default=None,
                   help="recent audio tokens the penalty looks at, 0 = all [64]")
    g.add_argument("--max-tokens", type=int, default=None, help="max audio tokens per sentence [512]")


def sampling_options(args: argparse.Namespace) -> dict:
    """The sampling flags that were given (unset ones are left out, so the defaults apply), checked."""
    if args.greedy and args.temperature not in (None, 0.0):
        raise UserError(f"--greedy and --temperature {args.temperature} contradict each other: give one")
    opts = {"temperature": 0.0 if args.greedy else args.temperature, "top_p": args.top_p, "top_k": args.top_k,
            "repetition_penalty": args.repetition_penalty, "repetition_window": args.repetition_window,
            "max_tokens": args.max_tokens}
    opts = {k: v for k, v in opts.items() if v is not None}
    from llmtts.llm.export import check_inference

    return check_inference(opts, "sampling flags")


def _options(args) -> dict:
    return {**sampling_options(args), "seed": args.seed, "batch_size": args.batch_size, "speaker": args.speaker}


def _read_texts(args) -> list[str]:
    if args.text_file is None:
        return [args.text]
    f = Path(args.text_file)
    if not f.is_file():
        raise UserError(f"--text-file {f}: no such file")
    try:
        texts = [line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise UserError(f"--text-file {f}: not UTF-8 text ({exc})") from None
    if not texts:
        raise UserError(f"--text-file {f}: no non-empty lines")
    return texts


def _check_args(args) -> None:
    """Before the model loads: a bad output path or number is found in a second, not after the synthesis."""
    if args.text is not None and not args.out:
        raise UserError("--text needs --out FILE.wav")
    if args.text_file is not None and not args.out_dir:
        raise UserError("--text-file needs --out-dir DIR")
    from llmtts.io import ensure_writable_dir

    # --out and --out-dir went through the output policy already (llmtts.cli); it reads permission bits, this
    # proves a file can really be made in --out's folder (a read-only mount, another user's folder)
    if args.out:
        ensure_writable_dir(Path(args.out).parent, f"--out {args.out}: its folder")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0 (0 = torch's default), got {args.threads}")
    if args.lookahead is not None and args.lookahead < 0:
        raise UserError(f"--lookahead must be >= 0, got {args.lookahead}")


def synthesize_to_files(tts, texts: list[str], outs: list[Path], opts: dict):
    """Yield ``(out, seconds)`` as each wav is written. Texts are synthesised ``batch_size`` at a time and written
    at once, so memory holds one batch of audio, not the whole file's (a 5 MB text file held 885 MB and had
    written nothing after two minutes). Same audio as one big batch: a text's audio depends only on its seed."""
    from llmtts.audio import save_wav, save_wav_pieces

    o = tts.resolve_options(**opts)
    for t in texts:  # every text checked first: a bad line fails the run before it writes anything
        tts.prepare(t, o)
    opts = {**opts, "seed": o.seed}  # one seed for the whole file, as for one call
    if len(texts) == 1:  # one (possibly book-long) text: its sentences are written as they are made
        n = save_wav_pieces(outs[0], tts.synthesize_pieces(texts[0], **opts), tts.sample_rate)
        yield outs[0], n / tts.sample_rate
        return
    for b in range(0, len(texts), o.batch_size):
        for (wav, sr), out in zip(tts.synthesize_batch(texts[b: b + o.batch_size], **opts), outs[b: b + o.batch_size]):
            save_wav(out, wav, sr)
            yield out, len(wav) / sr


def run(args) -> int:
    import numpy as np
    import torch

    from llmtts.audio import save_wav
    from llmtts.infer.tts import TTS

    _check_args(args)
    texts = _read_texts(args)
    opts = _options(args)  # bad flags fail before the model loads
    if args.threads:
        torch.set_num_threads(args.threads)
    tts = TTS.load(args.llm_path, args.decoder_path, device=args.device, dtype=args.dtype)
    outs = [Path(args.out)] if args.text is not None else [Path(args.out_dir) / f"{i:06d}.wav" for i in range(len(texts))]
    t0 = time.perf_counter()
    total_s = 0.0
    if args.stream:
        for text, out in zip(texts, outs):
            chunks = list(tts.stream(text, lookahead=args.lookahead, **opts))
            wav = np.concatenate(chunks)
            save_wav(out, wav, tts.sample_rate)
            total_s += len(wav) / tts.sample_rate
            print(f"{out}: {len(wav) / tts.sample_rate:.2f} s in {len(chunks)} chunks, "
                  f"first chunk after {tts.last_stats['first_chunk_s'] * 1000:.0f} ms")
    else:
        for out, seconds in synthesize_to_files(tts, texts, outs, opts):
            total_s += seconds
            print(f"{out}: {seconds:.2f} s", flush=True)
    took = time.perf_counter() - t0
    print(f"{len(texts)} text(s), {total_s:.2f} s of audio in {took:.2f} s ({total_s / max(took, 1e-9):.1f}x real time)")
    return 0
