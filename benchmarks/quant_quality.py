"""What int8 / int4 weights cost in quality, measured on a trained model: judge WER (``llmtts eval tts``, greedy,
same sentences) at each LLM weight format, and the mel distance of each format's audio to the fp32 audio of the
same sentence (mean |log-mel difference|, 80 mels at the decoder's n_fft / hop, as ``llmtts eval decoder``).

    python benchmarks/quant_quality.py --run runs/tiny --out runs/quant-quality --copy-to docs/results/quant

Greedy decoding makes fp32 the reference: a format that rounds differently may pick other tokens somewhere in a
sentence, after which its audio is a different (possibly as good) rendition; ``same_tokens`` counts the sentences
whose token count equals fp32's (``same_length``), and the mel distance is over the common length.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from llmtts.audio import LogMel, load_audio


def llm_of(run: Path) -> Path:
    """The LLM the run's own evaluation used: ``llm/best`` where the recipe keeps its best validation checkpoint
    (``llm_checkpoint: best``, e.g. cpu-small: its last steps over-fit), else ``llm``."""
    best = run / "llm" / "best"
    return best if (best / "export").is_dir() or (best / "config.json").is_file() else run / "llm"


def run_eval(run: Path, out: Path, dtype: str, n_train: int, n_unseen: int) -> dict:
    from llmtts.cli import main

    args = ["eval", "tts", "--llm-path", str(llm_of(run)), "--decoder-path", str(run / "decoder_gan"),
            "--out", str(out / dtype), "--set", f"train:{n_train}={run / 'shards/audio/train'}",
            "--set-name", "unseen", "--max-utterances", str(n_unseen), "--reference-dir", str(run / "eval/references"),
            "--greedy", "--seed", "0", "--dtype", dtype]
    if main(args) != 0:
        raise SystemExit(f"eval tts failed for {dtype}")
    return json.loads((out / dtype / "tts_eval.json").read_text())


def mel_distance(a: np.ndarray, b: np.ndarray, mel: LogMel) -> float:
    n = min(len(a), len(b))
    ma, mb = mel(torch.from_numpy(a[:n].copy())[None])[0], mel(torch.from_numpy(b[:n].copy())[None])[0]
    return float((ma - mb).abs().mean())


def compare(reports: dict[str, dict], out: Path, mel: LogMel) -> dict:
    def utts(dtype):
        return {(u["set"], u["id"]): u for u in reports[dtype]["utterances"]}

    base = utts("fp32")
    table = {}
    for dtype, rep in reports.items():
        rows = {s: {"wer": v["wer"], "cer": v["cer"], "ref_wer": v.get("ref_wer"), "x_real_time": v["x_real_time"]}
                for s, v in rep["sets"].items()}
        for s in rows:
            dists, same, ref_d = [], 0, []
            for key, u in utts(dtype).items():
                if key[0] != s:
                    continue
                b = base[key]
                wav = load_audio(out / dtype / u["wav"])[0]
                dists.append(mel_distance(wav, load_audio(out / "fp32" / b["wav"])[0], mel))
                same += u["n_tokens"] == b["n_tokens"]
                if u.get("ref_wav"):
                    ref_d.append(mel_distance(wav, load_audio(out / dtype / u["ref_wav"])[0], mel))
            rows[s].update(mel_distance_to_fp32=float(np.mean(dists)), same_length=f"{same}/{len(dists)}",
                           mel_distance_to_reference=float(np.mean(ref_d)) if ref_d else None)
        table[dtype] = rows
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a pipeline run directory (llm/, decoder_gan/, shards/, eval/)")
    ap.add_argument("--out", default="runs/quant-quality")
    ap.add_argument("--dtypes", default="fp32,int8,int4")
    ap.add_argument("--train", type=int, default=16, help="training sentences (the quick start's eval uses 16)")
    ap.add_argument("--unseen", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--copy-to", default="", help="also copy each tts_eval.json and the summary here")
    ap.add_argument("--score-only", action="store_true", help="re-score the evaluations already in --out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run, out = Path(args.run), Path(args.out)
    dtypes = args.dtypes.split(",")
    if dtypes[0] != "fp32":
        raise SystemExit("--dtypes must start with fp32 (the reference)")
    reports = {d: json.loads((out / d / "tts_eval.json").read_text()) if args.score_only
               else run_eval(run, out, d, args.train, args.unseen) for d in dtypes}
    cfg = json.loads((run / "decoder_gan/export/config.json").read_text())["model"]
    mel = LogMel(cfg["sample_rate"], cfg["n_fft"], cfg["hop_length"], 80)
    table = compare(reports, out, mel)
    print(f"{'dtype':6} {'set':7} {'WER':>6} {'CER':>6} {'mel vs fp32':>11} {'same len':>8} {'mel vs ref':>10} {'x RT':>6}")
    for d, rows in table.items():
        for s, r in rows.items():
            ref = "-" if r["mel_distance_to_reference"] is None else f"{r['mel_distance_to_reference']:.3f}"
            print(f"{d:6} {s:7} {r['wer']:6.3f} {r['cer']:6.3f} {r['mel_distance_to_fp32']:11.3f} "
                  f"{r['same_length']:>8} {ref:>10} {r['x_real_time']:6.1f}")
    (out / "summary.json").write_text(json.dumps(table, indent=1))
    if args.copy_to:
        dst = Path(args.copy_to)
        dst.mkdir(parents=True, exist_ok=True)
        for d in dtypes:
            shutil.copy(out / d / "tts_eval.json", dst / f"tts_eval_{d}.json")
        shutil.copy(out / "summary.json", dst / "summary.json")


if __name__ == "__main__":
    main()
