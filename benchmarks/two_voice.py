"""Does the speaker token work? A two-voice model (configs/pipeline/tiny-2voice.yaml) says the same training
sentences as each speaker; mean F0 and spectral centroid of what it says are compared with the same measures on
that voice's real training clips, and the ASR judge scores each speaker's words.

    python benchmarks/two_voice.py --run runs/tiny-2voice --out docs/results/two-voice --num 10

Sentences: the first NUM texts of RUN/corpus that every speaker says in the training shards (held-in: the
tiny recipe memorises, it does not generalise). Greedy decoding (the export's default), seed 0.
Writes OUT/two_voice.json (per clip and per speaker) and OUT/samples/ (the first 2 sentences per speaker);
prints a markdown table. "asked voice recognised": the clip's (F0, centroid), each divided by the two training
voices' spread, is nearer to the asked speaker's training mean than to any other speaker's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmtts.eval.voice_stats import voice_stats  # noqa: E402


def train_keys(shards: Path) -> set[str]:
    keys = set()
    for tar in sorted((shards / "train").glob("*.tar")):
        with tarfile.open(tar) as t:
            keys |= {m.name[:-5] for m in t.getmembers() if m.name.endswith(".json")}
    return keys


def held_in(run: Path, num: int) -> tuple[list[str], dict[tuple[str, str], str], list[str]]:
    """(texts, {(text, speaker): utterance id}, speakers) for texts every speaker says in the train split."""
    corpus = run / "corpus"
    speakers = dict(line.split("|", 1) for line in (corpus / "speakers.csv").read_text().splitlines())
    keys = train_keys(run / "shards" / "audio")
    clips: dict[tuple[str, str], str] = {}
    order: list[str] = []
    for line in (corpus / "metadata.csv").read_text().splitlines():
        uid, text = line.split("|")[:2]
        if uid in keys:
            clips.setdefault((text, speakers[uid]), uid)
            if text not in order:
                order.append(text)
    names = sorted(set(speakers.values()))
    texts = [t for t in order if all((t, s) in clips for s in names)][:num]
    return texts, clips, names


def hidden_states(run: Path, keys: set[str]) -> dict:
    """The training clips' teacher-forced LLM states (RUN/shards/hidden), what the decoder was fitted on."""
    from llmtts.data.parallel_map import iter_shard
    from llmtts.data.reader import hidden_format_of

    root = run / "shards" / "hidden"
    fmt, out = hidden_format_of(root), {}
    for tar in sorted((root / "train").glob("*.tar")):
        for sample in iter_shard(tar, fields=["hidden"], hidden_format=fmt):
            if sample["__key__"] in keys:
                out[sample["__key__"]] = sample["hidden"]
    return out


KINDS = ("reference", "resynth", "synth")


def summarise(rows: list[dict], names: list[str]) -> dict:
    out = {}
    for kind in KINDS:
        for s in names:
            sel = [r[kind] for r in rows if r["speaker"] == s]
            out[f"{kind}/{s}"] = {k: float(np.nanmean([x[k] for x in sel])) for k in ("f0_mean", "centroid", "voiced_fraction")}
            out[f"{kind}/{s}"]["f0_sd_across_clips"] = float(np.nanstd([x["f0_mean"] for x in sel]))
    return out


def recognised(rows: list[dict], summary: dict, names: list[str]) -> dict:
    """Nearest training-voice mean in (F0, centroid), each scaled by the training voices' spread."""
    refs = np.array([[summary[f"reference/{s}"]["f0_mean"], summary[f"reference/{s}"]["centroid"]] for s in names])
    scale = np.maximum(refs.std(axis=0), 1e-6)
    hits = {s: 0 for s in names}
    for r in rows:
        x = np.array([r["synth"]["f0_mean"], r["synth"]["centroid"]])
        nearest = names[int(np.argmin(np.linalg.norm((refs - x) / scale, axis=1)))] if np.isfinite(x).all() else None
        r["nearest_voice"] = nearest
        hits[r["speaker"]] += nearest == r["speaker"]
    return hits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a finished tiny-2voice pipeline run root")
    ap.add_argument("--out", required=True)
    ap.add_argument("--num", type=int, default=10, help="held-in sentences (default 10)")
    ap.add_argument("--asr", default=None, help="faster-whisper model dir (default: the project's tiny.en)")
    ap.add_argument("--samples", type=int, default=2, help="sentences per speaker kept as FLAC (default 2)")
    args = ap.parse_args()
    from llmtts import TTS
    from llmtts.asr import ASRJudge
    from llmtts.eval.wer import word_counts

    run, out = Path(args.run), Path(args.out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    texts, clips, names = held_in(run, args.num)
    tts = TTS.load(run / "llm", run / "decoder_gan")
    judge = ASRJudge(args.asr, cpu_threads=int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    import torch

    states = hidden_states(run, {clips[(t, s)] for t in texts for s in names})
    rows, t0 = [], time.time()
    for i, text in enumerate(texts):
        for s in names:
            ref, ref_sr = sf.read(run / "corpus" / "wavs" / f"{clips[(text, s)]}.wav", dtype="float32")
            wav, sr = tts.synthesize(text, speaker=s, seed=0)
            # the decoder on the clip's own teacher-forced states: what this decoder makes of the real voice
            resynth = tts.decode(torch.as_tensor(np.asarray(states[clips[(text, s)]], dtype=np.float32)))
            row = {"text": text, "speaker": s, "reference_id": clips[(text, s)], "reference": voice_stats(ref, ref_sr),
                   "resynth": voice_stats(resynth, sr), "synth": voice_stats(wav, sr),
                   # equal length and ~0 difference: generation reproduced this speaker's training tokens
                   "synth_vs_resynth": {"samples": [int(wav.size), int(resynth.size)],
                                        "max_abs_diff": float(np.abs(wav - resynth).max()) if wav.size == resynth.size else None}}
            for kind, (w, r) in (("reference", (ref, ref_sr)), ("resynth", (resynth, sr)), ("synth", (wav, sr))):
                hyp = judge.transcribe(w, r)
                c = word_counts(text, hyp)
                row[kind].update(asr=hyp, word_errors=c.edits, words=c.ref_len)
            rows.append(row)
            if i < args.samples:
                sf.write(out / "samples" / f"{i:02d}_{s}.flac", wav, sr)
    summary = summarise(rows, names)
    for kind in KINDS:
        for s in names:
            sel = [r[kind] for r in rows if r["speaker"] == s]
            summary[f"{kind}/{s}"]["wer"] = sum(x["word_errors"] for x in sel) / max(1, sum(x["words"] for x in sel))
    hits = recognised(rows, summary, names)
    same = {s: sum(r["synth_vs_resynth"]["max_abs_diff"] is not None and r["synth_vs_resynth"]["max_abs_diff"] < 1e-3
                   for r in rows if r["speaker"] == s) for s in names}
    by_text = {}
    for r in rows:
        by_text.setdefault(r["text"], []).append(r["synth_vs_resynth"]["samples"][0])
    differ = sum(len(set(v)) > 1 for v in by_text.values())
    result = {"run": str(run), "speakers": names, "num_sentences": len(texts), "summary": summary,
              "asked_voice_recognised": hits, "generated_equals_own_training_states": same,
              "texts_whose_two_voices_differ_in_length": differ, "seconds": round(time.time() - t0, 1), "clips": rows}
    (out / "two_voice.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(texts)} held-in sentences x {len(names)} speakers, {result['seconds']} s")
    print("| voice | audio | mean F0 (Hz) | F0 sd across clips | spectral centroid (Hz) | voiced frames | judge WER | asked voice recognised |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for s in names:
        for kind in KINDS:
            m = summary[f"{kind}/{s}"]
            rec = f"{hits[s]}/{len(texts)}" if kind == "synth" else ""
            label = {"reference": "training clips", "resynth": "decoder on the clips' own LLM states",
                     "synth": f"generated, --speaker {s}"}[kind]
            print(f"| {s} | {label} | {m['f0_mean']:.1f} | {m['f0_sd_across_clips']:.1f} | {m['centroid']:.0f} | "
                  f"{m['voiced_fraction']:.2f} | {m['wer']:.3f} | {rec} |")
    print("generated audio = the decoder on that speaker's own training states (max |diff| < 1e-3): "
          + ", ".join(f"{s} {same[s]}/{len(texts)}" for s in names)
          + f"; the two voices' clips of a sentence differ in length for {differ}/{len(texts)} sentences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
