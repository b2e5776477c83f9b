"""Summarise a ``scripts/gpu-smoke.sh`` run: LLM tokens/s, MFU, peak memory per stage, and WER per eval set.

    python benchmarks/gpu_smoke_report.py runs/gpu-smoke [--json OUT.json]

MFU = 6 x parameters x tokens/s / the GPU's dense bf16 peak (the usual transformer estimate; attention's
quadratic FLOPs are left out, so it slightly understates the real utilisation). Unknown GPUs print n/a.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# Dense bf16 tensor-core peak, FLOP/s (vendor datasheets, SXM parts).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def _rows(run: Path, stage: str) -> list[dict]:
    f = run / stage / "metrics.jsonl"
    if not f.is_file():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def _params(export: Path) -> int | None:
    from safetensors import safe_open

    f = export / "model.safetensors"
    if not f.is_file():
        return None
    with safe_open(str(f), "pt") as sf:
        return sum(_numel(sf.get_slice(k).get_shape()) for k in sf.keys())


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _gpu_peak(run: Path) -> tuple[str, float | None]:
    try:
        env = json.loads((run / "llm" / "env.json").read_text())
    except (OSError, ValueError):
        return "unknown", None
    names = [str(d.get("name", d)) if isinstance(d, dict) else str(d) for d in env.get("cuda_devices", [])]
    name = names[0] if names else env.get("device", "unknown")
    for key, peak in PEAK_BF16.items():
        if key in name:
            return name, peak
    return name, None


def summarise(run: Path) -> dict:
    out: dict = {"run": str(run)}
    llm = [r for r in _rows(run, "llm") if r.get("split") == "train" and "tok_per_s" in r]
    steady = llm[len(llm) // 4:] or llm  # skip warm-up / compilation windows
    tok_s = statistics.median(r["tok_per_s"] for r in steady) if steady else None
    n = _params(run / "llm" / "export")
    gpu, peak = _gpu_peak(run)
    out.update(gpu=gpu, llm_params=n, llm_tokens_per_s=tok_s, llm_steps=llm[-1]["step"] if llm else None,
               mfu=(6 * n * tok_s / peak) if (tok_s and n and peak) else None)
    for stage in ("codec", "llm", "decoder_recon", "decoder_gan"):
        mem = [r["peak_mem_gib"] for r in _rows(run, stage) if "peak_mem_gib" in r]
        out[f"{stage}_peak_mem_gib"] = max(mem) if mem else None
    try:
        sets = json.loads((run / "eval" / "tts" / "tts_eval.json").read_text()).get("sets", {})
    except (OSError, ValueError):
        sets = {}
    out["wer"] = {name: {"wer": s.get("wer"), "ceiling": s.get("ref_wer")} for name, s in sets.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--json", type=Path, help="also write the summary here")
    a = ap.parse_args(argv)
    if not a.run.is_dir():
        print(f"gpu_smoke_report: {a.run}: no such run directory", file=sys.stderr)
        return 2
    s = summarise(a.run)
    fmt = lambda v, f="{:.3g}": "n/a" if v is None else f.format(v)  # noqa: E731
    print(f"GPU: {s['gpu']}")
    print(f"LLM: {fmt(s['llm_params'], '{:,}')} parameters, {fmt(s['llm_tokens_per_s'], '{:,.0f}')} tokens/s "
          f"(median of steady windows, {s['llm_steps']} steps), MFU {fmt(s['mfu'], '{:.1%}')}")
    print("peak memory GiB: " + ", ".join(f"{k[:-13]} {fmt(s[k], '{:.1f}')}" for k in s if k.endswith("_peak_mem_gib")))
    for name, w in s["wer"].items():
        print(f"WER {name}: {fmt(w['wer'])} (ceiling {fmt(w['ceiling'])})")
    if a.json:
        a.json.write_text(json.dumps(s, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
