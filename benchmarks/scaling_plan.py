"""docs/scaling.md's tables, computed from measured inputs and stated assumptions.

    python benchmarks/scaling_plan.py [--inputs benchmarks/results/scaling-inputs.json]
        [--reads benchmarks/results/data-remote-cpu-2core.json]
        [--formats docs/results/hidden-formats/storage.json] > tables.md

Measured inputs come from three JSON files, each written by the command named in it (``benchmarks/
scaling_inputs.py``: FLOPs and CPU seconds per unit of each model, the corpus' FLAC bytes and text rate;
``benchmarks/data.py --remote``: per-process reader rates; ``benchmarks/hidden_formats.py``: bytes of each
hidden-state format). Everything else is in ``ASSUMPTIONS`` below, each with its reason; change one and
re-run to regenerate the tables.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOURS = (100, 1_000, 10_000)
TOKENS_PER_S = 15.625  # 32 kHz / 2048 samples per token (configs/codec/soprano.yaml): a fact of the recipe
TAR_MEMBER_B = 512 + 256  # a tar header + on average half a 512-byte block of padding, per member
SAMPLES_PER_SHARD = 1000  # configs/pipeline/soprano.yaml shards.samples_per_shard
# configs/llm/soprano-80m.yaml (max_steps, data.batch_budget), configs/decoder/soprano.yaml (max_steps,
# data.max_batch_size), configs/pipeline/soprano.yaml (launch.nproc_per_node)
RECIPE = {"llm_steps": 100_000, "llm_tokens_per_gpu_step": 32_768, "decoder_steps": 100_000,
          "decoder_crops_per_gpu_step": 16, "gpus": 8}

ASSUMPTIONS = {
    "gpu_peak_flops": (989e12, "H100 SXM dense bf16 peak (vendor figure); no GPU was lent to measure"),
    "mfu_llm_train": ({"soprano-80m": 0.15, "~300M": 0.30}, "packed Qwen3 training in bf16: d=512 matmuls keep an "
                      "H100 far from peak; a 1024-wide model does better"),
    "mfu_llm_dump": (0.30, "teacher-forced forward of packed rows (dump-hidden)"),
    "mfu_decoder_train": (0.20, "ConvNeXt + iSTFT + mel/STFT losses: depthwise convs and FFTs run far below peak"),
    "mfu_codec_encode": (0.20, "ConvNeXt encoder on mel frames, as the decoder"),
    "flac_B_per_audio_s": (40_000, "32 kHz 16-bit speech recorded full-band; FLAC keeps ~60 % of 64 kB/s PCM. "
                           "Measured on the built-in corpus: see inputs (Piper renders 22 kHz, upsampled: a lower "
                           "bound)"),
    "mean_utterance_s": (5.0, "LibriTTS-like median (benchmarks/llm.py); the built-in corpus' is in the inputs"),
    "text_tokens_per_audio_s": (14.0, "characters per second of read English (benchmarks/llm.py); Piper reads "
                                "faster, see inputs"),
    "epochs": ({100: 50, 1_000: 20, 10_000: 5}, "passes over the data for the LLM and the decoder: fewer as the "
               "corpus grows (a planning guess: Soprano's recipe is unpublished)"),
    "ingest_audio_s_per_s_per_worker": (340, "docs/data.md `python benchmarks/data.py`: resample + FLAC encode, "
                                        "one worker (24 kHz)"),
    "ingest_workers": (32, "one CPU node's cores for `llmtts data shards --workers`"),
    "gpus_per_node": (8, "one HGX node"),
    "target_train_days": (2.0, "wall time a training run is sized to (GPUs = GPU-hours / 48 h, rounded up to nodes)"),
    "slurm_time_limit_h": (24, "a common partition limit; trainers checkpoint and requeue before it "
                           "(docs/launch.md)"),
    "map_tasks": (16, "array size for codec encode / dump-hidden (one GPU each; finished shards are skipped "
                  "on requeue)"),
    "reader_goal": (5.0, "issue 18: readers deliver >= 5x what the GPU consumes"),
    "compression_ratio_d512": ("measured at d=128", "the zlib ratio of the tiny LLM's 128-d states is assumed for "
                               "512-d and 1024-d states"),
}


def a(key):
    return ASSUMPTIONS[key][0]


def hours(h: float) -> str:
    return f"{h * 60:.0f} min" if h < 1 else f"{h:,.1f} h"


def gpu_h(h: float) -> str:
    return f"{h:,.2f}" if h < 10 else f"{h:,.0f}"


def fmt_bytes(b: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            return f"{b / scale:,.1f} {unit}"
    return f"{b:,.0f} B"


def stored_bytes_per_s(hidden_size: int, fmt: dict, d_tiny: int) -> dict:
    """Bytes per audio second of each shard kind (each stage copies the audio forward, so each kind holds it)."""
    per_sample = TAR_MEMBER_B / a("mean_utterance_s")  # per member, spread over the utterance
    audio = a("flac_B_per_audio_s") + 2 * per_sample  # flac + json
    codes = TOKENS_PER_S * 2 + 128 / a("mean_utterance_s") + per_sample  # int16 .npy
    # States: the format's bytes per value at this width; compressed formats keep the ratio measured at d_tiny.
    raw_per_token = {"fp16": 2 * hidden_size, "bf16": 2 * hidden_size, "int8": hidden_size + 2}[fmt["dtype"]]
    ratio = fmt["payload_B_per_audio_s"] / fmt["raw_B_per_audio_s_tiny"]  # 1.0 uncompressed
    hidden = TOKENS_PER_S * raw_per_token * ratio + 128 / a("mean_utterance_s") + per_sample
    return {"audio": audio, "tokens": audio + codes, "hidden": audio + codes + hidden, "states_only": hidden}


def llm_rates(llm: dict, corpus_text: float, mfu: float) -> dict:
    tok_per_audio_s = TOKENS_PER_S + corpus_text + 3 / a("mean_utterance_s")  # + [STOP][TEXT]..[START]..[STOP]
    # Attention (not in the counted FLOPs): QK^T and AV, 4 * heads * head_dim per context token per layer,
    # over each utterance's own causal context (packed rows attend within their utterance), i.e. half its length.
    ctx = tok_per_audio_s * a("mean_utterance_s") / 2
    attn = 4 * llm["layers"] * llm["heads"] * llm["head_dim"] * ctx
    train_tok_s = a("gpu_peak_flops") * mfu / (llm["train_flops_per_token"] + 3 * attn)
    dump_tok_s = a("gpu_peak_flops") * a("mfu_llm_dump") / (llm["fwd_flops_per_token"] + attn)
    return {"tok_per_audio_s": tok_per_audio_s, "train_tok_s": train_tok_s, "dump_tok_s": dump_tok_s,
            "train_audio_s_per_s": train_tok_s / tok_per_audio_s}


def tables(inp: dict, reads: dict, formats: dict, fmt_name: str) -> str:
    out = []
    text = a("text_tokens_per_audio_s")
    fmt = dict(formats[fmt_name])
    d_tiny = fmt["hidden_size"]
    base = next(v for v in formats.values() if v["format"] == "fp16+none")
    fmt["dtype"] = fmt["format"].split("+")[0]
    # The uncompressed payload of this dtype at d_tiny: the baseline's scaled by bytes per value.
    per_val = {"fp16": 2, "bf16": 2, "int8": (d_tiny + 2) / d_tiny}[fmt["dtype"]]
    fmt["raw_B_per_audio_s_tiny"] = base["payload_B_per_audio_s"] * per_val / 2
    dec, enc = inp["decoder"], inp["codec_encoder"]
    dec_crop_s = dec["recon_crop_s"]
    read = {(r["kind"], r.get("format"), r["location"], r["workers"]): r for r in reads["reads"]}
    for name, llm in (("soprano-80m", inp["llm_80m"]), ("~300M", inp["llm_300m"])):
        d = llm["hidden_size"]
        bps = stored_bytes_per_s(d, fmt, d_tiny)
        r = llm_rates(llm, text, a("mfu_llm_train")[name])
        out.append(f"\n### LLM {name} ({llm['params'] / 1e6:.0f} M parameters, d={d}; decoder "
                   f"{dec['params'] / 1e6:.1f} M; hidden shards {fmt['format']})\n")
        out.append("| | " + " | ".join(f"{h:,} h" for h in HOURS) + " |")
        out.append("|---|" + "---:|" * len(HOURS))
        rows: dict[str, list[str]] = {}

        def row(label, values):
            rows.setdefault(label, []).extend(values)

        for h in HOURS:
            sec = h * 3600.0
            n_utt = sec / a("mean_utterance_s")
            shards = math.ceil(n_utt / SAMPLES_PER_SHARD)
            ep = a("epochs")[h]
            row("**storage** audio shards", [fmt_bytes(bps["audio"] * sec)])
            row("token shards (audio + codes)", [fmt_bytes(bps["tokens"] * sec)])
            row(f"hidden shards (+ states {fmt['format']})", [fmt_bytes(bps["hidden"] * sec)])
            row("of which states", [fmt_bytes(bps["states_only"] * sec)])
            row("shards per kind (1,000 utterances each)", [f"{shards:,}"])
            row("one hidden shard", [fmt_bytes(bps["hidden"] * a("mean_utterance_s") * SAMPLES_PER_SHARD)])
            row("**ingest** (`data shards`, CPU node) wall",
                [hours(sec / (a('ingest_audio_s_per_s_per_worker') * a('ingest_workers')) / 3600)])
            enc_gpu_h = sec * enc["fwd_flops_per_audio_s"] / (a("gpu_peak_flops") * a("mfu_codec_encode")) / 3600
            row("**codec encode** GPU-h", [gpu_h(enc_gpu_h)])
            row("codec encode CPU core-h (measured rate)", [f"{sec * enc['fwd_cpu_s_per_audio_s'] / 3600:,.0f}"])
            tokens_epoch = sec * r["tok_per_audio_s"]
            dump_gpu_h = tokens_epoch / r["dump_tok_s"] / 3600
            row("**dump-hidden** GPU-h (one pass)", [gpu_h(dump_gpu_h)])
            row("dump-hidden CPU core-h (measured rate)", [f"{tokens_epoch * llm['fwd_cpu_s_per_token'] / 3600:,.0f}"])
            train_tokens = tokens_epoch * ep
            llm_gpu_h = train_tokens / r["train_tok_s"] / 3600
            row("epochs (LLM and decoder; assumption)", [f"{ep}"])
            row("**LLM train** tokens", [f"{train_tokens / 1e9:,.2f} B"])
            row("LLM GPU-h", [gpu_h(llm_gpu_h)])
            crops = n_utt * ep  # one crop per utterance per epoch
            dec_gpu_h = crops * dec_crop_s * dec["train_flops_per_audio_s"] / (
                a("gpu_peak_flops") * a("mfu_decoder_train")) / 3600
            row(f"**decoder train** crops of {dec_crop_s:.1f} s (one per utterance per epoch)",
                [f"{crops / 1e6:,.2f} M"])
            row("decoder GPU-h", [gpu_h(dec_gpu_h)])
            for stage, gh in (("LLM", llm_gpu_h), ("decoder", dec_gpu_h)):
                gpus = max(a("gpus_per_node"), math.ceil(gh / (24 * a("target_train_days")) / a("gpus_per_node"))
                           * a("gpus_per_node"))
                wall = gh / gpus
                limit = min(a("slurm_time_limit_h"), max(1, math.ceil(2 * wall)))  # 2x margin, >= 1 h
                requeues = max(0, math.ceil(wall / limit) - 1)
                row(f"SLURM {stage} train: nodes x GPUs, wall, `--time-min`, requeues",
                    [f"{gpus // a('gpus_per_node')} x {a('gpus_per_node')}, {hours(wall)}, {limit * 60}, {requeues}"])
            for stage, gh in (("codec encode", enc_gpu_h), ("dump-hidden", dump_gpu_h)):
                tasks = min(a("map_tasks"), shards)
                limit = max(1, math.ceil(2 * gh / tasks))
                row(f"SLURM {stage}: `--array` x 1 GPU, h per task, `--time-min`",
                    [f"{tasks} x {hours(gh / tasks)}, {limit * 60}"])
        out += [f"| {k} | " + " | ".join(v) + " |" for k, v in rows.items()]
        # The recipes as configured run fixed step counts on 8 GPUs, whatever the corpus size.
        rec_tokens = RECIPE["llm_steps"] * RECIPE["llm_tokens_per_gpu_step"] * RECIPE["gpus"]
        rec_crops = RECIPE["decoder_steps"] * RECIPE["decoder_crops_per_gpu_step"] * RECIPE["gpus"]
        rec_dec_h = rec_crops * dec_crop_s * dec["train_flops_per_audio_s"] / (
            a("gpu_peak_flops") * a("mfu_decoder_train")) / 3600
        out.append(f"\nThe recipes as configured (configs/llm/soprano-80m.yaml: {RECIPE['llm_steps']:,} steps x "
                   f"{RECIPE['llm_tokens_per_gpu_step']:,} tokens x {RECIPE['gpus']} GPUs; configs/decoder/soprano.yaml: "
                   f"{RECIPE['decoder_steps']:,} steps x {RECIPE['decoder_crops_per_gpu_step']} crops x {RECIPE['gpus']} GPUs) "
                   f"train {rec_tokens / 1e9:.1f} B tokens = {rec_tokens / r['train_tok_s'] / 3600:,.0f} GPU-h "
                   f"and {rec_crops / 1e6:.1f} M crops = {rec_dec_h:,.1f} GPU-h: "
                   f"{rec_tokens / (tokens_epoch / h * 1000):,.0f} epochs of 1,000 h for the LLM.")
        # Reader throughput: what one GPU consumes vs one reader process (measured, loopback S3, in-process).
        llm_samples = r["train_audio_s_per_s"] / a("mean_utterance_s")
        dec_crops = a("gpu_peak_flops") * a("mfu_decoder_train") / (dec["train_flops_per_audio_s"] * dec_crop_s)
        out.append(f"\nReader throughput per GPU ({name}): what one GPU consumes (at the MFU above) vs one reader "
                   f"process (benchmarks/data.py --remote, 5 s samples at 32 kHz, in-process; local and loopback S3):\n")
        out.append("| stage | one GPU consumes | bytes/s per GPU | one reader process, local / S3 | "
                   "processes per GPU for 5x, local / S3 |")
        out.append("|---|---:|---:|---:|---:|")
        for stage, kind, fname, need, nbytes, unit in (
                ("LLM (token shards, codes only)", "tokens", None, llm_samples, r["train_audio_s_per_s"] * bps["tokens"],
                 f"{r['train_tok_s']:,.0f} tok/s = {llm_samples:,.0f} utt/s"),
                ("decoder (hidden shards, audio + states)", "hidden", fmt["format"], dec_crops,
                 dec_crops * a("mean_utterance_s") * bps["hidden"], f"{dec_crops:,.0f} crops/s = utt/s")):
            loc = {w: read.get((kind, fname, w, 0)) for w in ("local", "s3")}
            if not all(loc.values()):
                continue
            per = {w: v["audio_s_per_s"] / a("mean_utterance_s") for w, v in loc.items()}
            out.append(f"| {stage} | {unit} | {fmt_bytes(nbytes)}/s | {per['local']:,.0f} / {per['s3']:,.0f} utt/s | "
                       f"{math.ceil(a('reader_goal') * need / per['local']):,} / "
                       f"{math.ceil(a('reader_goal') * need / per['s3']):,} |")
    return "\n".join(out)


def assumptions_table() -> str:
    lines = ["| assumption | value | why |", "|---|---|---|"]
    for k, (v, why) in ASSUMPTIONS.items():
        lines.append(f"| `{k}` | {v} | {why} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=Path, default=REPO / "benchmarks/results/scaling-inputs.json")
    ap.add_argument("--reads", type=Path, default=REPO / "benchmarks/results/data-remote-cpu-2core.json")
    ap.add_argument("--formats", type=Path, default=REPO / "docs/results/hidden-formats/storage.json")
    ap.add_argument("--format", default=None, help="hidden format row of --formats (default: dump-hidden's default)")
    args = ap.parse_args()
    from llmtts.data.hidden_format import HiddenFormat

    inp, reads, formats = (json.loads(p.read_text()) for p in (args.inputs, args.reads, args.formats))
    default = HiddenFormat()
    fmt_name = args.format or f"{default.dtype}-{default.compression}"
    print("Assumptions (`benchmarks/scaling_plan.py` ASSUMPTIONS):\n")
    print(assumptions_table())
    c = inp.get("corpus", {})
    print(f"\nMeasured (`{inp['command']}`, torch {inp['torch']}, {inp['threads']} thread): codec encoder "
          f"{inp['codec_encoder']['fwd_flops_per_audio_s'] / 1e9:.2f} GFLOP and "
          f"{inp['codec_encoder']['fwd_cpu_s_per_audio_s']:.3f} CPU s per audio s; decoder training "
          f"{inp['decoder']['train_flops_per_audio_s'] / 1e9:.2f} GFLOP and {inp['decoder']['train_cpu_s_per_audio_s']:.3f}"
          f" CPU s per audio s; soprano-80m {inp['llm_80m']['train_flops_per_token'] / 1e6:.0f} MFLOP per training "
          f"token, {inp['llm_80m']['fwd_cpu_s_per_token'] * 1e3:.2f} CPU ms per forward token; ~300M "
          f"{inp['llm_300m']['train_flops_per_token'] / 1e6:.0f} MFLOP, {inp['llm_300m']['fwd_cpu_s_per_token'] * 1e3:.2f}"
          f" ms" + (f"; built-in corpus at 32 kHz: FLAC {c['flac_B_per_audio_s'] / 1e3:.1f} kB per audio s, "
                    f"{c['text_chars_per_audio_s']:.1f} text characters per s, mean utterance "
                    f"{c['mean_utterance_s']:.2f} s" if c else "") + ".")
    print(tables(inp, reads, formats, fmt_name))


if __name__ == "__main__":
    main()
