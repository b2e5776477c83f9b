"""Evidence for docs/results.md from a finished pipeline run: wall time per stage, codec metrics (and its
reconstruction WER when evaluated), the LLM's best validation loss, WER per evaluation set against its
ceiling, learning curves as one PNG, and a few short 16 kHz FLAC samples of unseen sentences.

    python benchmarks/recipe_results.py runs/cpu-small --name cpu-small --out docs/results [--samples 4]

Writes OUT/NAME/curves.png, OUT/NAME/samples/*.flac, OUT/NAME/summary.json and prints a markdown block.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def stage_times(run: Path) -> dict[str, float]:
    return {s["name"]: s["wall_s"] for s in _json(run / "pipeline.json").get("steps", []) if s.get("wall_s")}


def curves(run: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("codec", "mel", "codec mel L1"), ("llm", "loss_audio", "LLM audio-token loss (nats)"),
              ("decoder_recon", "mel", "decoder mel L1")]
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.6))
    for ax, (stage, key, title) in zip(axes, panels):
        rows = _jsonl(run / stage / "metrics.jsonl")
        for split, style in (("train", "-"), ("val", "o-")):
            pts = [(r["step"], r[key]) for r in rows if r.get("split") == split and key in r]
            if pts:
                ax.plot(*zip(*pts), style, label=split, ms=3)
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend()
    ax = axes[3]
    samples = [(r["step"], r["sample_wer"]) for r in _jsonl(run / "llm" / "metrics.jsonl")
               if r.get("split") == "samples" and "sample_wer" in r]
    if samples:
        ax.plot(*zip(*samples), "o-")
    ax.set_title("LLM samples: judge WER (held-out, codec-decoded)")
    ax.set_xlabel("step")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)


def flac_samples(run: Path, out_dir: Path, n: int, set_name: str = "unseen") -> list[str]:
    import soundfile as sf

    from llmtts.audio import resample

    ev = _json(run / "eval" / "tts" / "tts_eval.json")
    rows = [u for u in ev.get("utterances", []) if u.get("set") == set_name and u.get("wav")][:n]
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for u in rows:
        wav, sr = sf.read(run / "eval" / "tts" / u["wav"], dtype="float32")
        wav = resample(wav, sr, 16000)[: 16000 * 6]  # short: the repository stays small
        name = f"{u['id']}.flac"
        sf.write(out_dir / name, np.clip(wav, -1, 1), 16000, format="FLAC")
        names.append(f"{name}: \"{u['text']}\" -> \"{u.get('hypothesis', '')}\" (WER {u.get('wer', float('nan')):.2f})")
    return names


def summarise(run: Path) -> dict:
    ev = _json(run / "eval" / "tts" / "tts_eval.json")
    codec = {}
    for f in sorted((run / "eval" / "codec").glob("*.json")):
        codec = _json(f).get("summary", _json(f))
    best = _json(run / "llm" / "best" / "best.json")
    return {"stage_wall_s": stage_times(run), "total_wall_s": round(sum(stage_times(run).values()), 1),
            "codec_eval": {k: v for k, v in codec.items() if isinstance(v, (int, float))},
            "llm_best": best,
            "sets": {k: {m: s.get(m) for m in ("num_utterances", "wer", "cer", "ref_wer", "max_length_share")}
                     for k, s in ev.get("sets", {}).items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--set", default="unseen", help="evaluation set the FLAC samples come from (default unseen)")
    a = ap.parse_args(argv)
    if not (a.run / "pipeline.json").is_file():
        print(f"recipe_results: {a.run}: not a pipeline run (no pipeline.json)", file=sys.stderr)
        return 2
    dest = a.out / a.name
    s = summarise(a.run)
    curves(a.run, dest / "curves.png")
    s["samples"] = flac_samples(a.run, dest / "samples", a.samples, a.set)
    (dest / "summary.json").write_text(json.dumps(s, indent=1) + "\n")
    print(f"### {a.name}\n")
    print("| stage | wall s |\n|---|---:|")
    for k, v in s["stage_wall_s"].items():
        print(f"| {k} | {v:.0f} |")
    print(f"| **total** | **{s['total_wall_s']:.0f}** |\n")
    if s["llm_best"]:
        print(f"LLM best: {s['llm_best']['metric']} {s['llm_best']['value']:.3f} at step {s['llm_best']['step']}\n")
    if s["codec_eval"]:
        print("codec: " + ", ".join(f"{k} {v:.3g}" for k, v in s["codec_eval"].items()) + "\n")
    print("| set | n | WER | CER | ceiling (judge on references) | runaway |\n|---|---:|---:|---:|---:|---:|")
    for k, v in s["sets"].items():
        f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
        print(f"| {k} | {v['num_utterances']} | {f(v['wer'])} | {f(v['cer'])} | {f(v['ref_wer'])} | "
              f"{f(v['max_length_share'])} |")
    print("\nSamples:\n" + "\n".join(f"- {x}" for x in s["samples"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
