"""The measured inputs of docs/scaling.md: FLOPs and CPU cost per unit of work of each stage's model.

    OMP_NUM_THREADS=1 python benchmarks/scaling_inputs.py [--json benchmarks/results/scaling-inputs.json]

Per model, at the recipe's shapes (random weights: cost does not depend on them):
* FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, forward; a
  training step is counted as forward + backward of the same call; it does not count CPU attention
  (``scaled_dot_product_attention``), which scaling_plan.py adds per utterance);
* CPU seconds of one forward (inference) or forward+backward (training) on one thread, best of 3.
Models: the Soprano codec's encoder (configs/codec/soprano.yaml, per audio second: ``codec encode``), the
soprano-80m LLM and a ~300 M Qwen3 (per token, rows of 2048 tokens: ``dump-hidden`` forward and training), the
Soprano decoder (configs/decoder/soprano.yaml, per audio second of crop: training).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from llmtts.config import load_config

REPO = Path(__file__).resolve().parents[1]
# The larger LLM of docs/scaling.md: Soprano's layout widened (Qwen3-0.6B-like body, this vocabulary).
LLM_300M = ["model.hidden_size=1024", "model.intermediate_size=3072", "model.num_hidden_layers=24",
            "model.num_attention_heads=8", "model.num_key_value_heads=2", "model.head_dim=128"]


def cost(fn, train: bool, reps: int = 3) -> tuple[float, float]:
    """(FLOPs, best CPU seconds) of ``fn()`` (+ backward of its sum when ``train``)."""
    def once():
        out = fn()
        if train:
            out.float().pow(2).mean().backward()

    with FlopCounterMode(display=False) as fc:
        once()
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        once()
        best = min(best, time.process_time() - t0)
    return float(fc.get_total_flops()), best


def llm(overrides: list[str], row: int, cpu_row: int = 256) -> dict:
    """Forward FLOPs per token in rows of ``row`` tokens, counted on 1- and 2-layer copies (layers are equal:
    total = one-layer model + (L - 1) x the second layer), training FLOPs per token counted at ``cpu_row``
    (forward + backward), and CPU seconds per token of the full model at ``cpu_row`` (a 2048-token step of
    the 300 M model takes minutes on one thread)."""
    from llmtts.llm.config import LLMConfig
    from llmtts.llm.model import build_model

    cfg = load_config(LLMConfig, REPO / "configs/llm/soprano-80m.yaml", overrides)
    layers = cfg.model.num_hidden_layers
    # FlopCounterMode does not count CPU scaled_dot_product_attention: docs/scaling.md adds it from these.
    out = {"row": row, "cpu_row": cpu_row, "hidden_size": cfg.model.hidden_size, "layers": layers,
           "heads": cfg.model.num_attention_heads, "head_dim": cfg.model.head_dim}
    fwd = {}
    for k in (1, 2):
        cfg.model.num_hidden_layers = k
        model = build_model(cfg.model, cfg.model.vocab_size)
        ids = torch.randint(0, cfg.model.vocab_size, (1, row))
        with torch.no_grad():
            fwd[k], _ = cost(lambda: model(input_ids=ids).logits, train=False, reps=0)
    out["fwd_flops_per_token"] = (fwd[1] + (layers - 1) * (fwd[2] - fwd[1])) / row
    cfg.model.num_hidden_layers = layers
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.model.vocab_size)
    out["params"] = sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, cfg.model.vocab_size, (1, cpu_row))
    with torch.no_grad():
        f_fwd, s_fwd = cost(lambda: model(input_ids=ids).logits, train=False, reps=2)
    f_train, s_train = cost(lambda: model(input_ids=ids).logits, train=True, reps=1)
    out.update(fwd_cpu_s_per_token=s_fwd / cpu_row, train_cpu_s_per_token=s_train / cpu_row,
               train_over_fwd_flops=f_train / f_fwd)
    out["train_flops_per_token"] = out["fwd_flops_per_token"] * out["train_over_fwd_flops"]
    return out


def codec_encoder(seconds: float) -> dict:
    from llmtts.codec.config import CodecConfig
    from llmtts.codec.model import CodecModel

    cfg = load_config(CodecConfig, REPO / "configs/codec/soprano.yaml", [])
    model = CodecModel(cfg.model).eval()
    wav = 0.1 * torch.randn(1, int(cfg.model.sample_rate * seconds))
    with torch.no_grad():
        f, s = cost(lambda: model.encode(wav).float(), train=False)
    return {"params": sum(p.numel() for p in model.parameters()), "fwd_flops_per_audio_s": f / seconds,
            "fwd_cpu_s_per_audio_s": s / seconds}


def decoder(seconds: float) -> dict:
    from llmtts.decoder.config import DecoderConfig
    from llmtts.decoder.model import HiddenDecoder

    cfg = load_config(DecoderConfig, REPO / "configs/decoder/soprano.yaml", [])
    m = cfg.model
    model = HiddenDecoder(m)
    t = int(seconds * m.sample_rate / m.samples_per_token)
    hidden = torch.randn(1, t, m.hidden_size)
    f, s = cost(lambda: model(hidden), train=True)
    with torch.no_grad():
        f_fwd, _ = cost(lambda: model(hidden), train=False, reps=1)
    sec = t * m.samples_per_token / m.sample_rate
    return {"params": sum(p.numel() for p in model.parameters()), "train_flops_per_audio_s": f / sec,
            "fwd_flops_per_audio_s": f_fwd / sec, "train_cpu_s_per_audio_s": s / sec,
            "recon_crop_s": cfg.recon_crop_tokens * m.samples_per_token / m.sample_rate}


def corpus(shard_dir: Path) -> dict:
    """Audio shards (``llmtts data shards``): FLAC bytes and normalised-text characters per audio second."""
    import tarfile

    seconds = flac = chars = samples = 0
    for shard in sorted(shard_dir.glob("*/*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                ext = m.name.split(".", 1)[1]
                if ext == "flac":
                    flac += m.size
                elif ext == "json":
                    meta = json.loads(tar.extractfile(m).read())
                    seconds += float(meta["duration_s"])
                    chars += len(meta.get("normalized_text", ""))
                    samples += 1
    index = json.loads((shard_dir / "index.json").read_text())
    return {"dir": str(shard_dir), "sample_rate": index.get("sample_rate"), "samples": samples, "seconds": seconds,
            "flac_B_per_audio_s": flac / seconds, "text_chars_per_audio_s": chars / seconds,
            "mean_utterance_s": seconds / samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks/results/scaling-inputs.json")
    ap.add_argument("--audio-shards", type=Path, default=None,
                    help="an audio shard folder (`llmtts data shards --sample-rate 32000`): FLAC bytes and text per s")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {"command": "OMP_NUM_THREADS=1 python benchmarks/scaling_inputs.py", "torch": torch.__version__,
           "threads": torch.get_num_threads()}
    if args.audio_shards:
        out["corpus"] = corpus(args.audio_shards)
        out["command"] += f" --audio-shards {args.audio_shards}"
        print("corpus", out["corpus"], flush=True)
    out["codec_encoder"] = codec_encoder(4.0)
    print("codec encoder", out["codec_encoder"], flush=True)
    out["decoder"] = decoder(4.096)
    print("decoder", out["decoder"], flush=True)
    out["llm_80m"] = llm([], 2048)
    print("llm 80m", out["llm_80m"], flush=True)
    out["llm_300m"] = llm(LLM_300M, 2048)
    out["llm_300m"]["overrides"] = LLM_300M
    print("llm 300m", out["llm_300m"], flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
