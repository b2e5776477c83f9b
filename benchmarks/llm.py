"""LLM training throughput: packed rows vs padded per-utterance batches, same data, model and run.

    python benchmarks/llm.py [--config configs/llm/tiny.yaml] [--utterances 80] [--device cpu] [--threads 1]
                             [--mfu]   # GPU: also MFU of the config in bf16 (+ --compile)

Data: length-varied speech, durations log-normal (median 5 s, sigma 0.7, clipped to 0.5..30 s) at
15.625 tokens/s plus ~14 characters/s of text, like LibriTTS. Every mode trains on the same utterances
for one pass (forward + backward + AdamW step) with the same token budget per step:

* packed (mask):     first-fit-decreasing into rows of ``packing.row_length``, transformers' block-diagonal
                     mask (``packing.attention=mask``, the default)
* packed (segments): the same rows, causal SDPA per utterance (``packing.attention=segments``)
* padded (random):   per-utterance rows in shuffled order, padded to the longest of the batch
* padded (bucketed): per-utterance rows sorted by length in buckets (the shard reader's batching)

Printed: real (non-pad) training tokens per second of each mode and the ratio packed / padded.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from llmtts.config import load_config
from llmtts.data.reader import bucket_batches
from llmtts.llm.attention import register
from llmtts.llm.config import LLMConfig
from llmtts.llm.loss import lm_loss
from llmtts.llm.model import build_model
from llmtts.llm.packing import Segment, pack, pad
from llmtts.llm.vocab import Vocab, round_up


def speech_like_segments(n: int, vocab: Vocab, max_len: int, seed: int = 0) -> list[Segment]:
    rng = np.random.default_rng(seed)
    segs = []
    while len(segs) < n:
        dur = float(np.clip(rng.lognormal(np.log(5.0), 0.7), 0.5, 30.0))
        n_audio, n_text = max(1, round(dur * 15.625)), max(1, round(dur * 14))
        text = rng.integers(0, vocab.n_text, n_text) + vocab.text_offset
        audio = rng.integers(0, vocab.n_audio, n_audio) + vocab.audio_offset
        ids = np.concatenate([[vocab.stop, vocab.text_start], text, [vocab.speech_start], audio, [vocab.stop]])
        if len(ids) <= max_len:
            segs.append(Segment(ids.astype(np.int64), n_text + 3))
    return segs


def step_groups(segs, row_length, budget):
    """Utterances grouped into steps of ~``budget`` real tokens (input order, like a shuffled stream)."""
    cap = max(1, budget // row_length) * row_length * 0.95
    out, cur, n = [], [], 0
    for s in segs:
        if cur and n + len(s) > cap:
            out.append(cur)
            cur, n = [], 0
        cur.append(s)
        n += len(s)
    return out + ([cur] if cur else [])


def packed_batches(segs, row_length, budget):
    return [pack(g, row_length) for g in step_groups(segs, row_length, budget)]


def padded_random(segs, budget):
    mean = float(np.mean([len(s) for s in segs]))
    per = max(1, int(budget // mean))  # same real tokens per step as the packed mode on average
    return [pad(segs[i:i + per]) for i in range(0, len(segs), per)]


def padded_bucketed(segs, budget, max_batch):
    groups = bucket_batches(segs, len, budget, max_batch, bucket_size=len(segs), rng=np.random.default_rng(0))
    return [pad(g) for g in groups]


def run(model, batches, vocab, device, amp) -> tuple[float, float]:
    """(real tokens per second, share of padded positions)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    audio_range = (vocab.audio_offset, vocab.audio_offset + vocab.n_audio)

    def step(b):
        b = b.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(input_ids=b.input_ids, position_ids=b.position_ids).logits
            loss, _ = lm_loss(logits, b, 0.1, audio_range)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(batches[0])  # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    # On a CPU shared with other jobs, process CPU time is far steadier than wall time (see --threads).
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    t0 = clock()
    for b in batches:
        step(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = clock() - t0
    real = sum(b.n_real for b in batches)
    total = sum(b.input_ids.numel() for b in batches)
    return real / dt, 1 - real / total


def mfu(model, cfg: LLMConfig, vocab, device, compile_: bool) -> None:
    """Model FLOPs utilisation of packed bf16 training (6 * params * tokens + attention)."""
    props = torch.cuda.get_device_properties(device)
    peak = {"H100": 989e12, "H200": 989e12, "A100": 312e12}.get(
        next((k for k in ("H100", "H200", "A100") if k in props.name), ""), 0.0)
    segs = speech_like_segments(4000, vocab, cfg.packing.row_length)
    batches = packed_batches(segs, cfg.packing.row_length, cfg.data.batch_budget)[:30]
    if compile_:
        for layer in model.model.layers:
            layer.compile()
    tok_s, _ = run(model, batches, vocab, device, amp=True)
    n = sum(p.numel() for p in model.parameters())
    m = cfg.model
    attn = 12 * m.num_hidden_layers * m.num_attention_heads * m.head_dim * float(np.mean([len(s) for s in segs])) / 2
    flops_per_tok = 6 * n + attn
    print(f"[{props.name}] packed bf16{' +compile' if compile_ else ''}: {tok_s:,.0f} tok/s, "
          f"{flops_per_tok * tok_s / 1e12:.1f} TFLOP/s" + (f", MFU {flops_per_tok * tok_s / peak:.1%}" if peak else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/llm/tiny.yaml")
    ap.add_argument("--utterances", type=int, default=80)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--budget", type=int, default=4096, help="tokens per step (0: the config's data.batch_budget)")
    ap.add_argument("--row-length", type=int, default=1024,
                    help="packed row length; fits 30 s utterances (0: the config's packing.row_length)")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU: torch threads (default 1: CPU time is then a steady measure on a shared machine)")
    ap.add_argument("--mfu", action="store_true", help="GPU: MFU of the config, packed bf16 (+ compile)")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. model.num_hidden_layers=2")
    args = ap.parse_args()
    cfg = load_config(LLMConfig, args.config, args.overrides)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    n_audio = cfg.vocab.n_audio or 1000
    vocab = Vocab(n_audio=n_audio, n_text=95, size=cfg.model.vocab_size or round_up(4 + n_audio + 95))
    row = args.row_length or cfg.packing.row_length
    budget = max(args.budget or cfg.data.batch_budget, row)
    segs = speech_like_segments(args.utterances, vocab, row)
    torch.manual_seed(0)
    model = build_model(cfg.model, vocab.size).to(device).train()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    amp = device.type == "cuda"
    results = {}
    packed = packed_batches(segs, row, budget)
    segments = register()
    for name, attn, batches in (("packed (mask)", cfg.model.attn_implementation, packed),
                                ("packed (segments)", segments, packed),
                                ("padded (random)", cfg.model.attn_implementation, padded_random(segs, budget)),
                                ("padded (bucketed)", cfg.model.attn_implementation,
                                 padded_bucketed(segs, budget, cfg.data.max_batch_size))):
        model.load_state_dict(init)
        model.set_attn_implementation(attn)
        tok_s, waste = run(model, batches, vocab, device, amp)
        results[name] = tok_s
        print(f"{name:18s} {tok_s:10,.0f} real tok/s{' (CPU time)' if device.type == 'cpu' else ''}   padding {waste:5.1%}   {len(batches)} steps")
    best = "packed (mask)"  # what packing.attention=auto picks
    print(f"ratio {best} / padded (random):   {results[best] / results['padded (random)']:.2f}x  (target >= 2x)")
    print(f"ratio {best} / padded (bucketed): {results[best] / results['padded (bucketed)']:.2f}x")
    if args.mfu and device.type == "cuda":
        model.load_state_dict(init)
        model.set_attn_implementation(cfg.model.attn_implementation)
        mfu(model, cfg, vocab, device, compile_=False)
        model.load_state_dict(init)
        mfu(model, cfg, vocab, device, compile_=True)


if __name__ == "__main__":
    main()
