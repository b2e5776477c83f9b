"""Training throughput of the three Soprano-sized stages, and whether the shard reader keeps up with them.

    python benchmarks/train_throughput.py --threads 2                # CPU: a few steps each, ratios
    python benchmarks/train_throughput.py --device cuda --steps 30   # GPU: bf16 autocast, absolute + MFU

* LLM (configs/llm/soprano-80m.yaml, 79.7 M): real (non-pad) tokens/s with packing (first-fit rows of
  ``--row-length``, block-diagonal mask) vs padding (per-utterance rows, same token budget per step), on the
  speech-like lengths of ``benchmarks/llm.py``; forward + backward + AdamW. MFU = achieved FLOP/s / peak with
  FLOPs per real token = ``6 * N + 6 * L * H * d_head * S``: N = parameters without the input embedding
  table (a lookup, no matmul), S = the mean utterance length (attention stays inside an utterance; causal,
  so the 12 * L * H * d_head * S of forward + backward is halved). Peak: ``--peak-tflops``, else the card's
  dense bf16 (H100/H200: 989) or, on a CPU, clock x 32 fp32 FLOP/cycle (AVX2: 2 FMA x 8 lanes) per CPU-second.
* Codec (configs/codec/soprano.yaml) and decoder (configs/decoder/soprano.yaml): audio seconds per second of a
  generator step (reconstruction losses, the configs' crops and batch; the GAN discriminators are left out, so
  a GAN step costs more).
* Reader: one epoch of local shards at Soprano's layout read by ``ShardLoader`` (audio for the codec, codes for
  the LLM, audio + states for the decoder), audio seconds per second, beside each stage's consumption
  (goal >= 5x).

Times are wall clock for CUDA (synchronised) and process CPU time on a CPU (steadier on a shared machine).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
TOKENS_PER_S = 15.625  # Soprano: 32 kHz / 2048 samples per token


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def cpu_peak_flops() -> tuple[float, str]:
    """Peak per CPU-second (times on a CPU are process CPU time, summed over threads): one core's fp32 FMA rate
    at the clock /proc/cpuinfo reports (nominal; a boost clock would lower the MFU)."""
    ghz = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                ghz = float(line.split(":")[1]) / 1000
                break
    except OSError:
        pass
    ghz = ghz or 2.5
    return ghz * 1e9 * 32, f"per CPU-second {ghz:.2f} GHz x 32 fp32 FLOP/cycle (AVX2: 2 FMA x 8 lanes)"


def peak_flops(device: torch.device, given: float) -> tuple[float, str]:
    if given:
        return given * 1e12, f"--peak-tflops {given:g}"
    if device.type == "cuda":
        name = torch.cuda.get_device_properties(device).name
        peak = next((v for k, v in (("H100", 989e12), ("H200", 989e12), ("A100", 312e12)) if k in name), 0.0)
        return peak, f"{name} dense bf16 {peak / 1e12:g} TFLOP/s" if peak else f"{name}: unknown peak"
    return cpu_peak_flops()


def llm_stage(args, device: torch.device) -> dict:
    from llm import packed_batches, padded_random, speech_like_segments

    from llmtts.config import load_config
    from llmtts.llm.config import LLMConfig
    from llmtts.llm.loss import lm_loss
    from llmtts.llm.model import build_model
    from llmtts.llm.vocab import Vocab

    cfg = load_config(LLMConfig, ROOT / "configs/llm/soprano-80m.yaml", [])
    vocab = Vocab(n_audio=8000, n_text=95, size=8192)
    segs = speech_like_segments(args.utterances, vocab, args.row_length)
    torch.manual_seed(0)
    model = build_model(cfg.model, vocab.size).to(device).train()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    amp = device.type == "cuda"
    audio_range = (vocab.audio_offset, vocab.audio_offset + vocab.n_audio)
    m = cfg.model
    n = sum(p.numel() for p in model.parameters()) - model.model.embed_tokens.weight.numel()
    mean_len = float(np.mean([len(s) for s in segs]))
    flops_per_token = 6 * n + 6 * m.num_hidden_layers * m.num_attention_heads * m.head_dim * mean_len
    out = {"params_no_embedding": n, "mean_utterance_tokens": mean_len, "flops_per_token": flops_per_token}
    for name, batches in (("packed", packed_batches(segs, args.row_length, args.budget)),
                          ("padded", padded_random(segs, args.budget))):
        model.load_state_dict(init)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batches = batches[: args.steps + 1]
        times = []
        for i, b in enumerate(batches):
            b = b.to(device)
            t0 = clock(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(input_ids=b.input_ids, position_ids=b.position_ids).logits
                loss, _ = lm_loss(logits, b, 0.1, audio_range)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i:  # the first step warms up the allocator and kernels
                times.append((clock(device) - t0, b.n_real, b.input_ids.numel()))
        real, total, dt = sum(t[1] for t in times), sum(t[2] for t in times), sum(t[0] for t in times)
        audio_share = sum(len(s) - s.n_prompt - 1 for s in segs) / sum(len(s) for s in segs)
        out[name] = {"tokens_per_s": real / dt, "padding": 1 - real / total, "steps": len(times),
                     "audio_s_per_s": real / dt * audio_share / TOKENS_PER_S}
    return out


def audio_stage(kind: str, args, device: torch.device) -> dict:
    """Audio seconds per second of a generator step of the codec or the decoder (reconstruction losses)."""
    from llmtts.config import load_config
    from llmtts.nn.losses import ReconstructionLoss

    if kind == "codec":
        from llmtts.codec.config import CodecConfig
        from llmtts.codec.model import CodecModel

        cfg = load_config(CodecConfig, ROOT / "configs/codec/soprano.yaml", [])
        model, n = CodecModel(cfg.model), cfg.data.crop_samples
    else:
        from llmtts.decoder.config import DecoderConfig
        from llmtts.decoder.model import HiddenDecoder

        cfg = load_config(DecoderConfig, ROOT / "configs/decoder/soprano.yaml", [])
        model, n = HiddenDecoder(cfg.model), cfg.recon_crop_tokens * cfg.model.samples_per_token
    batch = min(cfg.data.max_batch_size, cfg.data.batch_budget // n)
    if device.type == "cpu" and not args.full_batch:
        batch = min(batch, 2)  # a CPU step of 16 crops takes minutes; the rate per audio second is what counts
    target = 0.1 * torch.randn(batch, n, device=device)
    if kind == "codec":
        def forward():
            o = model(target)
            return o.wav, o.target
    else:
        hidden = torch.randn(batch, n // cfg.model.samples_per_token, cfg.model.hidden_size, device=device)

        def forward():
            return model(hidden), target
    m = cfg.model
    model = model.to(device).train()
    loss_fn = ReconstructionLoss(m.sample_rate, m.n_fft, cfg.loss.mel_resolutions, cfg.loss.stft_resolutions,
                                 cfg.loss.mel_weight, cfg.loss.stft_weight).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(args.audio_steps + 1):
        t0 = clock(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            wav, tgt = forward()
            loss, _ = loss_fn(wav.float(), tgt.float())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(clock(device) - t0)
    step = statistics.median(times)
    return {"audio_s_per_s": batch * n / m.sample_rate / step, "batch": batch, "crop_s": n / m.sample_rate,
            "step_s": step}


def reader_rates(args) -> dict:
    """Audio seconds per second of one epoch of local Soprano-layout shards, per stage's fields."""
    from remote_read import read_epoch, write_shards

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage, kind, fields in (("codec", "audio", ["audio"]), ("llm", "tokens", ["codes"]),
                                    ("decoder", "hidden", ["audio", "hidden"])):
            root = Path(tmp) / kind
            write_shards(root, args.shards, args.per_shard, args.seconds, kind=kind, sample_rate=32000,
                         samples_per_token=2048, hidden_size=512)
            wall, n = read_epoch(str(root), fields, args.workers, steady=args.workers > 0)
            out[stage] = n * args.seconds / wall
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed LLM steps per mode (after one warm-up)")
    ap.add_argument("--audio-steps", type=int, default=2, help="timed codec / decoder steps")
    ap.add_argument("--utterances", type=int, default=0, help="LLM utterances (0: enough for the steps)")
    ap.add_argument("--budget", type=int, default=0, help="LLM tokens per step (0: 4096 on CPU, the config's on GPU)")
    ap.add_argument("--row-length", type=int, default=1024)
    ap.add_argument("--full-batch", action="store_true", help="codec/decoder: the config's batch even on a CPU")
    ap.add_argument("--peak-tflops", type=float, default=0.0)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--per-shard", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=4.0, help="audio per shard sample")
    ap.add_argument("--workers", type=int, default=0, help="reader DataLoader workers")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    args.budget = args.budget or (4096 if device.type == "cpu" else 32768)
    args.utterances = args.utterances or max(40, int((args.steps + 2) * args.budget / 110))
    peak, peak_note = peak_flops(device, args.peak_tflops)
    res = {"device": str(device), "threads": args.threads, "peak_flops": peak, "peak": peak_note}
    if device.type == "cuda":
        res["card"] = torch.cuda.get_device_name(device)
    res["llm"] = llm = llm_stage(args, device)
    res["codec"] = audio_stage("codec", args, device)
    res["decoder"] = audio_stage("decoder", args, device)
    res["reader"] = reader = reader_rates(args)
    unit = "rates per CPU-second (process CPU time, all threads)" if device.type == "cpu" else "wall clock"
    print(f"{res.get('card', 'CPU')}, {args.threads} threads, {unit}; peak {peak_note}")
    for mode in ("packed", "padded"):
        r = llm[mode]
        r["mfu"] = llm["flops_per_token"] * r["tokens_per_s"] / peak if peak else None
        print(f"LLM soprano-80m {mode}: {r['tokens_per_s']:,.0f} real tok/s, padding {r['padding']:.0%}, "
              f"{r['audio_s_per_s']:.2f} audio s/s, MFU {r['mfu']:.1%} ({r['steps']} steps)")
    print(f"LLM packed / padded: {llm['packed']['tokens_per_s'] / llm['padded']['tokens_per_s']:.2f}x; FLOPs/token "
          f"{llm['flops_per_token'] / 1e6:.0f} M (6 x {llm['params_no_embedding'] / 1e6:.1f} M + attention at mean "
          f"{llm['mean_utterance_tokens']:.0f} tokens)")
    consume = {"codec": res["codec"]["audio_s_per_s"], "decoder": res["decoder"]["audio_s_per_s"],
               "llm": llm["packed"]["audio_s_per_s"]}
    for stage in ("codec", "llm", "decoder"):
        extra = res.get(stage, {})
        note = f" (batch {extra['batch']} x {extra['crop_s']:.2f} s, step {extra['step_s']:.2f} s)" if "batch" in extra \
            else ""
        print(f"{stage:8s} trainer consumes {consume[stage]:8.2f} audio s/s{note}; reader ({args.workers} workers) "
              f"{reader[stage]:8.1f} audio s/s = {reader[stage] / consume[stage]:.0f}x (goal >= 5x)")
    if args.json:
        from llmtts.io import write_json_atomic

        write_json_atomic(args.json, res)


if __name__ == "__main__":
    main()
