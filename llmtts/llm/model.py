"""Build the text -> audio-token LLM: a stock ``transformers.Qwen3ForCausalLM`` (no custom code, so
an export loads with ``AutoModelForCausalLM.from_pretrained``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM


@dataclass
class LLMModelConfig:
    # Embedding rows; 0 = the vocabulary's size rounded up to a multiple of 64.
    vocab_size: int = 0
    hidden_size: int = 512
    intermediate_size: int = 2304
    num_hidden_layers: int = 17
    num_attention_heads: int = 4
    num_key_value_heads: int = 1
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    # Dropout on the attention probabilities while training (Qwen3's only dropout; stock transformers, so exports
    # stay plain Qwen3). A regulariser for small models on little data; inference never applies it. Unlike the
    # shape fields above it also applies when fine-tuning from --init-from (set_attention_dropout).
    attention_dropout: float = 0.0
    # "sdpa" (default; FlexAttention has no CPU backward), "eager", "flash_attention_2" ...
    attn_implementation: str = "sdpa"

    def __post_init__(self) -> None:
        if self.num_attention_heads % max(self.num_key_value_heads, 1):
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"attention_dropout must be in [0, 1), got {self.attention_dropout}")


def qwen3_config(cfg: LLMModelConfig, vocab_size: int) -> Qwen3Config:
    hf = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        initializer_range=cfg.initializer_range,
        attention_dropout=cfg.attention_dropout,
        # Training must run without a KV cache: transformers 5 builds the packed (block-diagonal)
        # mask only when no cache exists. Inference passes use_cache=True explicitly.
        use_cache=False,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=3,
    )
    hf._attn_implementation = cfg.attn_implementation
    return hf


def set_attention_dropout(model: Qwen3ForCausalLM, p: float) -> None:
    """Train ``model`` (e.g. one loaded by ``--init-from``) with attention dropout ``p``: each attention module
    copied the rate from the config when it was built, so both are set."""
    model.config.attention_dropout = p
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = p


def build_model(cfg: LLMModelConfig, vocab_size: int, device: str | torch.device | None = None) -> Qwen3ForCausalLM:
    """A freshly initialised model. ``device="meta"`` builds without allocating (parameter counts)."""
    hf = qwen3_config(cfg, vocab_size)
    if device is not None:
        with torch.device(device):
            model = Qwen3ForCausalLM(hf)
    else:
        model = Qwen3ForCausalLM(hf)
    model.config.use_cache = False
    return model


def replace_embeddings(model: Qwen3ForCausalLM, emb_in: torch.Tensor, emb_out: torch.Tensor) -> None:
    """Give ``model`` these input/output embedding matrices (``[rows, d]`` each; the output one is ignored when
    tied) and a matching ``config.vocab_size``: how a vocabulary is remapped (``--init-from``, Soprano import/export)."""
    model.resize_token_embeddings(emb_in.shape[0], mean_resizing=False)
    model.get_input_embeddings().weight.data.copy_(emb_in)
    if not model.config.tie_word_embeddings:
        model.get_output_embeddings().weight.data.copy_(emb_out)
    model.config.vocab_size = emb_in.shape[0]


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
