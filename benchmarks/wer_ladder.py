"""Where a trained model loses the words: the judge's WER at each rung from the recording to generated speech,
on the same sentences, so the gap between two rungs is one component's cost.

    python benchmarks/wer_ladder.py --run runs/cpu-small --out runs/wer-ladder [--n 32]

Rungs (each judged by the offline ASR judge, corpus-level WER over the set's sentences):

1. ``reference``: the recordings themselves (the judge's ceiling).
2. ``codec``: recording -> codec codes -> codec decoder: what the LLM's targets sound like.
3. ``teacher_forced``: the recording's codes fed to the LLM after the sentence's prompt (as in training), the
   post-norm states at the audio positions through the hidden-state decoder: the decoder's rendering of the
   *right* tokens — what generation would give if the LLM predicted every token of the recording.
4. ``generated``: greedy generation from the text alone (``TTS.synthesize``): what a user gets.

Also per sentence, from the teacher-forced pass: the LLM's top-1 accuracy on the recording's codes and their
mean negative log-likelihood (nats) — how far its predictions are from the recording's tokens.
Reads a finished run: ``RUN/codec``, the LLM the run's evaluation used (``llm/best`` when kept), ``RUN/decoder_gan``
and the references of its unseen set (``RUN/eval/references``: LJSpeech layout, ``metadata.csv`` + ``wavs/``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from llmtts.audio import load_audio, resample, save_wav


def llm_of(run: Path) -> Path:
    best = run / "llm" / "best"
    return best if (best / "export").is_dir() or (best / "config.json").is_file() else run / "llm"


def read_set(ref_dir: Path, n: int) -> list[tuple[str, str]]:
    rows = []
    for line in (ref_dir / "metadata.csv").read_text(encoding="utf-8").splitlines():
        parts = line.split("|")
        if len(parts) >= 2 and (ref_dir / "wavs" / f"{parts[0]}.wav").is_file():
            rows.append((parts[0], parts[1]))
    return rows[:n] if n else rows


@torch.inference_mode()
def teacher_forced(tts, text: str, codes: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The decoder's audio on the LLM's states for the recording's codes; top-1 accuracy and mean NLL of them."""
    from llmtts.llm.hidden import audio_state_positions, forward_with_hidden, prompt_ids

    v = tts.vocab
    prompt = prompt_ids(v, tts.frontend, text)
    ids = torch.tensor([prompt + v.audio_ids(codes).tolist()])
    logits, hidden, _ = forward_with_hidden(tts.llm, ids)
    pos = audio_state_positions(len(prompt), len(codes))
    # the logits audio token i was predicted from, over [stop] + audio ids (generation's choice set)
    lg = logits[0, pos, v.stop: v.audio_offset + v.n_audio].float()
    target = torch.from_numpy(codes.astype(np.int64)) + (v.audio_offset - v.stop)
    nll = float(torch.nn.functional.cross_entropy(lg, target))
    acc = float((lg.argmax(-1) == target).float().mean())
    return tts.decode(hidden[0, pos]), acc, nll


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a finished pipeline run directory")
    ap.add_argument("--references", help="LJSpeech-layout set (default: RUN/eval/references)")
    ap.add_argument("--n", type=int, default=32, help="sentences (default: %(default)s; 0 = all)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from llmtts import TTS
    from llmtts.codec.export import load_codec
    from llmtts.eval.asr import ASRJudge
    from llmtts.eval.wer import cer, wer

    run, out = Path(args.run), Path(args.out)
    ref_dir = Path(args.references) if args.references else run / "eval" / "references"
    utts = read_set(ref_dir, args.n)
    if not utts:
        raise SystemExit(f"{ref_dir}: no sentences with a wav")
    t0 = time.perf_counter()
    tts = TTS.load(llm_of(run), run / "decoder_gan")
    codec = load_codec(run / "codec")
    if codec.sample_rate != tts.sample_rate:
        raise SystemExit(f"codec rate {codec.sample_rate} != decoder rate {tts.sample_rate}")
    judge = ASRJudge()
    rungs = ("reference", "codec", "teacher_forced", "generated")
    hyps: dict[str, list[str]] = {r: [] for r in rungs}
    rows = []
    for uid, text in utts:
        wav, sr = load_audio(ref_dir / "wavs" / f"{uid}.wav")
        x = resample(wav, sr, codec.sample_rate)
        with torch.inference_mode():
            codes = codec.encode(torch.from_numpy(x)[None])
            rec = codec.decode(codes)[0, : x.size].float().numpy()
        codes = codes[0].numpy()
        tf, acc, nll = teacher_forced(tts, text, codes)
        gen, _ = tts.synthesize(text, temperature=0.0, seed=0)
        audio = {"reference": (wav, sr), "codec": (rec, codec.sample_rate), "teacher_forced": (tf, tts.sample_rate),
                 "generated": (gen, tts.sample_rate)}
        row = {"id": uid, "text": text, "codes": int(codes.size), "generated_tokens": tts.last_stats["tokens"],
               "tf_top1": round(acc, 4), "tf_nll": round(nll, 4)}
        for r in rungs:
            a, a_sr = audio[r]
            save_wav(out / r / f"{uid}.wav", a, a_sr)
            hyp = judge.transcribe(a, a_sr)
            hyps[r].append(hyp)
            row[r] = {"hypothesis": hyp, "wer": round(wer(text, hyp), 4)}
        rows.append(row)
        print(uid, {r: row[r]["wer"] for r in rungs}, "top1", row["tf_top1"], flush=True)
    refs = [t for _, t in utts]
    summary = {
        "run": str(run), "references": str(ref_dir), "sentences": len(utts),
        "wer": {r: round(wer(refs, hyps[r]), 4) for r in rungs},
        "cer": {r: round(cer(refs, hyps[r]), 4) for r in rungs},
        "tf_top1_mean": round(float(np.mean([r["tf_top1"] for r in rows])), 4),
        "tf_nll_mean": round(float(np.mean([r["tf_nll"] for r in rows])), 4),
        "generated_over_recorded_length": round(sum(r["generated_tokens"] for r in rows)
                                                / sum(r["codes"] for r in rows), 3),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "wer_ladder.json").write_text(json.dumps({"summary": summary, "utterances": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
