"""``llmtts data prepare`` on made-up "long recordings": cut accuracy, transcript WER and speed.

    python benchmarks/data_prepare.py [--threads 1]

Input: Piper renders of known sentences joined with known pauses (0.8-1.5 s) into two files, one stereo
44.1 kHz and one mono 22.05 kHz (the same material as tests/data/test_prepare.py). Prints, per beam size, the
distance of every cut edge from the speech it holds, the WER against the known text, and the speed as a
ratio to real time and to the baseline measured in the same run: Whisper alone transcribing each whole
recording in one call (no VAD, no cutting, no loudness, no files).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from llmtts.audio import resample
from llmtts.data.prepare.audio import read_recording
from llmtts.data.prepare.run import PrepareConfig, prepare
from llmtts.data.prepare.transcribe import Transcriber
from llmtts.data.voices import PiperVoiceSynth
from llmtts.eval.wer import wer

RECORDINGS = [
    ("bob", "talk.wav", 44100, 2, ["The quick brown fox jumps over the lazy dog.",
                                   "She sells fresh bread at the market every morning.",
                                   "Please close the window before you leave the house."], [0.8, 1.2, 0.7]),
    ("alice", "notes.flac", 22050, 1, ["We walked along the river until the sun went down.",
                                       "My brother plays the piano very well."], [1.5, 0.7]),
]


def render(root: Path) -> tuple[dict, float]:
    voice = PiperVoiceSynth(threads=1)
    truth, total = {}, 0.0
    for folder, name, sr, channels, sentences, pauses in RECORDINGS:
        parts, spans, t = [np.zeros(int(0.6 * sr), np.float32)], [], 0.6
        for text, pause in zip(sentences, pauses):
            wav = voice.synthesize(text, "joe")
            loud = np.flatnonzero(np.abs(wav) > 0.01)
            speech = resample(wav[loud[0]:loud[-1] + 1], voice.sample_rate, sr)
            spans.append((t, t + len(speech) / sr))
            parts += [speech, np.zeros(int(pause * sr), np.float32)]
            t += (len(speech) + int(pause * sr)) / sr
        mono = 0.5 * np.concatenate(parts)
        (root / folder).mkdir(parents=True)
        sf.write(root / folder / name, np.stack([mono, 0.7 * mono], 1) if channels == 2 else mono, sr)
        truth[f"{folder}/{name}"] = (spans, sentences)
        total += len(mono) / sr
    return truth, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="Whisper CPU threads (default 1)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        truth, total = render(tmp / "rec")
        whisper = Transcriber(None, "en", 5, args.threads)
        whisper._model()  # load outside the timing, as prepare's own model load is a one-off too
        t0 = time.perf_counter()
        for src in truth:
            whisper(*read_recording(tmp / "rec" / src))
        base = time.perf_counter() - t0
        print(f"{total:.1f} s of audio; baseline (Whisper on each whole recording): {base:.1f} s")
        for beam in (5, 1):
            out = tmp / f"out{beam}"
            t0 = time.perf_counter()
            prepare(tmp / "rec", out, PrepareConfig(beam_size=beam, asr_threads=args.threads), progress=False)
            dt = time.perf_counter() - t0
            cuts = [json.loads(x) for x in (out / "cuts.jsonl").read_text().splitlines()]
            lead, tail, refs, hyps = [], [], [], []
            for src, (spans, sentences) in truth.items():
                mine = sorted((c for c in cuts if c["source"] == src), key=lambda c: c["start_s"])
                for c, (a, b) in zip(mine, spans):
                    lead.append(a - c["start_s"])
                    tail.append(c["end_s"] - b)
                refs += sentences
                hyps += [c["text"] for c in mine]
            print(f"beam {beam}: {len(cuts)} cuts for {len(refs)} sentences; edges {min(lead + tail):.3f}.."
                  f"{max(lead + tail):.3f} s outside the speech; WER {wer(refs, hyps):.3f}; {dt:.1f} s = "
                  f"{total / dt:.2f}x real time, {dt / base:.2f}x the baseline's time")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
