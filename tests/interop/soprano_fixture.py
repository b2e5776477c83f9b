"""A Soprano-shaped model directory with seeded random weights, built the same way by the tests (project venv)
and by ``make_soprano_reference.py`` (a venv with soprano-tts 0.2.0). Standalone: torch, safetensors and JSON
only, no llmtts import, so both environments run the very same code.

Layout of the directory (as ``ekwek/Soprano-1.1-80M``): ``config.json`` (Qwen3), ``model.safetensors``,
``tokenizer.json`` + ``tokenizer_config.json`` + ``special_tokens_map.json``, ``decoder.pth`` (SopranoDecoder keys).
Token order is deliberately not this project's: ``[STOP] [PAD] [TEXT] [START]``, audio ``[0]..[N-1]``, text
characters, ``[UNK]``, and a few embedding rows no token names (up to 8192 rows at the real shapes).

Weights: one ``torch.Generator`` per directory, tensors drawn in a fixed order. ``lm_head`` is scaled so logits
spread by ~10 (the top two of a greedy step are far apart: Soprano's "greedy" is sampling at temperature 0.001).
``weights_digest`` hashes every tensor so a test can tell "different checkpoint" from "different output".
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

TEXT_CHARS = list(" abcdefghijklmnopqrstuvwxyz0123456789!$%&'*,-.?")
SPECIALS = ["[STOP]", "[PAD]", "[TEXT]", "[START]"]
UNNAMED_ROWS = 3

# Real Soprano-1.1-80M shapes (NOTES.md) and a small stand-in with the same structure. The hidden size stays
# 512: SopranoTTS.infer_batch pads decoder input with 512-wide zeros.
REAL = dict(n_audio=8000, hidden=512, layers=17, inter=2304, heads=4, kv_heads=1, head_dim=128,
            dec_dim=768, dec_layers=8, dec_inter=2304, rows=8192)
SMALL = dict(n_audio=1000, hidden=512, layers=2, inter=256, heads=4, kv_heads=1, head_dim=32,
             dec_dim=64, dec_layers=2, dec_inter=192)
# The fine-tune pipeline's stand-in: Soprano's 8000 codes (what its encoder makes) around a very small LLM/decoder.
TINY = dict(n_audio=8000, hidden=64, layers=2, inter=128, heads=2, kv_heads=1, head_dim=32,
            dec_dim=32, dec_layers=2, dec_inter=64)


def vocab_tokens(n_audio: int) -> list[str]:
    return SPECIALS + [f"[{c}]" for c in range(n_audio)] + TEXT_CHARS + ["[UNK]"]


def tokenizer_json(tokens: list[str], audio_names: bool = True) -> dict:
    vocab = {t: i for i, t in enumerate(tokens) if audio_names or not (t[0] == "[" and t[1:-1].isdigit())}
    special = [{"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True} for t in SPECIALS + ["[UNK]"]]
    # A BPE model without merges is one id per character; the specials are matched before it runs.
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": special, "normalizer": None,
            "pre_tokenizer": None, "post_processor": None, "decoder": None,
            "model": {"type": "BPE", "dropout": None, "unk_token": "[UNK]", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": vocab, "merges": []}}


def qwen3_config(s: dict, vocab_size: int, stop: int, pad: int) -> dict:
    return {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": vocab_size,
            "hidden_size": s["hidden"], "intermediate_size": s["inter"], "num_hidden_layers": s["layers"],
            "num_attention_heads": s["heads"], "num_key_value_heads": s["kv_heads"], "head_dim": s["head_dim"],
            "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "rope_scaling": None,
            "max_position_embeddings": 4096, "tie_word_embeddings": False, "attention_bias": False,
            "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True, "use_sliding_window": False,
            "sliding_window": None, "max_window_layers": s["layers"], "bos_token_id": None, "eos_token_id": stop,
            "pad_token_id": pad, "torch_dtype": "float32"}


def llm_shapes(s: dict, V: int) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, kind) in a fixed order; kind: 'w' weight, 'n' norm, 'e' embedding, 'h' lm_head."""
    d, hd = s["hidden"], s["head_dim"]
    out = [("model.embed_tokens.weight", (V, d), "e")]
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (d,), "n"), (p + "post_attention_layernorm.weight", (d,), "n"),
                (p + "self_attn.q_proj.weight", (s["heads"] * hd, d), "w"),
                (p + "self_attn.k_proj.weight", (s["kv_heads"] * hd, d), "w"),
                (p + "self_attn.v_proj.weight", (s["kv_heads"] * hd, d), "w"),
                (p + "self_attn.o_proj.weight", (d, s["heads"] * hd), "w"),
                (p + "self_attn.q_norm.weight", (hd,), "n"), (p + "self_attn.k_norm.weight", (hd,), "n"),
                (p + "mlp.gate_proj.weight", (s["inter"], d), "w"), (p + "mlp.up_proj.weight", (s["inter"], d), "w"),
                (p + "mlp.down_proj.weight", (d, s["inter"]), "w")]
    return out + [("model.norm.weight", (d,), "n"), ("lm_head.weight", (V, d), "h")]


def decoder_shapes(s: dict) -> list[tuple[str, tuple[int, ...], str]]:
    D, d, inter = s["dec_dim"], s["hidden"], s["dec_inter"]
    out = [("decoder.embed.weight", (D, d, 1), "w"), ("decoder.embed.bias", (D,), "b"),
           ("decoder.norm.weight", (D,), "n"), ("decoder.norm.bias", (D,), "b")]
    for i in range(s["dec_layers"]):
        p = f"decoder.convnext.{i}."
        out += [(p + "dwconv.weight", (D, 1, 3), "w"), (p + "dwconv.bias", (D,), "b"), (p + "norm.weight", (D,), "n"),
                (p + "norm.bias", (D,), "b"), (p + "pwconv1.weight", (inter, D), "w"), (p + "pwconv1.bias", (inter,), "b"),
                (p + "pwconv2.weight", (D, inter), "w"), (p + "pwconv2.bias", (D,), "b"), (p + "gamma", (D,), "g")]
    return out + [("decoder.final_layer_norm.weight", (D,), "n"), ("decoder.final_layer_norm.bias", (D,), "b"),
                  ("head.out.weight", (2050, D), "w"), ("head.out.bias", (2050,), "b")]


def _draw(shapes, g: torch.Generator, d: int) -> dict[str, torch.Tensor]:
    out = {}
    for name, shape, kind in shapes:
        x = torch.randn(shape, generator=g)
        if kind == "n":
            x = 1.0 + 0.1 * x
        elif kind == "h":
            x = x * (10.0 / d ** 0.5)  # logits spread ~10: greedy steps are never near-ties
        elif kind == "e":
            x = x * 0.5
        elif kind == "g":
            x = 0.35 + 0.05 * x  # Soprano's layer scale starts at 1/sqrt(8)
        elif kind == "b":
            x = 0.02 * x
        else:
            x = x * (1.0 / shape[-1] ** 0.5 if len(shape) == 2 else 0.5 / (shape[1] * shape[2]) ** 0.5)
        out[name] = x.contiguous()
    return out


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def build(out: str | Path, size: str = "small", seed: int = 1234, audio_names: bool = True) -> dict:
    """Write the directory; returns ``{"llm_digest", "decoder_digest", "shapes"}``. ``audio_names=False``: the
    tokenizer leaves the audio rows unnamed (Soprano's runtime never turns audio ids into text)."""
    s = {"small": SMALL, "tiny": TINY, "real": REAL}[size]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokens = vocab_tokens(s["n_audio"])
    V = max(len(tokens) + UNNAMED_ROWS, s.get("rows", 0))
    g = torch.Generator().manual_seed(seed)
    llm = _draw(llm_shapes(s, V), g, s["hidden"])
    dec = _draw(decoder_shapes(s), g, s["hidden"])
    dec["head.istft.window"] = torch.hann_window(2048)
    save_file(llm, str(out / "model.safetensors"), metadata={"format": "pt"})
    torch.save(dec, str(out / "decoder.pth"))
    stop, pad = tokens.index("[STOP]"), tokens.index("[PAD]")
    (out / "config.json").write_text(json.dumps(qwen3_config(s, V, stop, pad), indent=1))
    (out / "tokenizer.json").write_text(json.dumps(tokenizer_json(tokens, audio_names)))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512, "pad_token": "[PAD]",
        "eos_token": "[STOP]", "unk_token": "[UNK]", "clean_up_tokenization_spaces": False}, indent=1))
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"pad_token": "[PAD]", "eos_token": "[STOP]", "unk_token": "[UNK]"}, indent=1))
    return {"llm_digest": weights_digest(llm), "decoder_digest": weights_digest(dec), "shapes": s}


# Soprano-Encoder (``encoder.pth``): Soprano's shapes (log-mel 50 -> 8 x 768 ConvNeXt, kernels 1 / 5 -> 5 dims) and a
# tiny stand-in with the same layout. Key names as docs/soprano.md assumes them.
ENCODER_REAL = dict(n_mels=50, dim=768, inter=2304, layers=8, dw=5)
ENCODER_TINY = dict(n_mels=50, dim=32, inter=64, layers=2, dw=5)


def encoder_shapes(e: dict) -> list[tuple[str, tuple[int, ...], str]]:
    D, inter = e["dim"], e["inter"]
    out = [("encoder.embed.weight", (D, e["n_mels"], 1), "w"), ("encoder.embed.bias", (D,), "b"),
           ("encoder.norm.weight", (D,), "n"), ("encoder.norm.bias", (D,), "b")]
    for i in range(e["layers"]):
        p = f"encoder.convnext.{i}."
        out += [(p + "dwconv.weight", (D, 1, e["dw"]), "w"), (p + "dwconv.bias", (D,), "b"),
                (p + "norm.weight", (D,), "n"), (p + "norm.bias", (D,), "b"),
                (p + "mlp.pwconv1.weight", (inter, D), "w"), (p + "mlp.pwconv1.bias", (inter,), "b"),
                (p + "mlp.pwconv2.weight", (D, inter), "w"), (p + "mlp.pwconv2.bias", (D,), "b"),
                (p + "gamma", (D,), "g")]
    return out + [("encoder.final_layer_norm.weight", (D,), "n"), ("encoder.final_layer_norm.bias", (D,), "b"),
                  ("downsampler.weight", (5, D), "w"), ("downsampler.bias", (5,), "b")]


def encoder_state(size: str = "tiny", seed: int = 7) -> dict[str, torch.Tensor]:
    """Seeded random ``encoder.pth`` contents (+ the FSQ buffers a checkpoint may carry). The projection to the
    5 FSQ dims is scaled so latents spread over every level (|z| ~ 2)."""
    e = ENCODER_REAL if size == "real" else ENCODER_TINY
    sd = _draw(encoder_shapes(e), torch.Generator().manual_seed(seed), e["dim"])
    sd["downsampler.weight"] = sd["downsampler.weight"] * 2.0
    sd["quant.levels"] = torch.tensor([8, 8, 5, 5, 5], dtype=torch.int32).view(1, 1, 5)
    sd["quant._basis"] = torch.tensor([1, 8, 64, 320, 1600], dtype=torch.int32)
    return sd
