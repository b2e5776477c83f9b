"""Typed config of the decoder stage (stage 3): hidden states -> waveform."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from llmtts.data.hidden_format import DEFAULT_DTYPE, DTYPES
from llmtts.errors import UserError
from llmtts.nn.vocoder_config import ReconLossConfig, VocoderGanConfig
from llmtts.token_space import DEFAULT_SAMPLE_RATE, DEFAULT_SAMPLES_PER_TOKEN
from llmtts.train.config import DataConfig, LogConfig, ParallelConfig, TrainerConfig


# The token space's facts a decoder shares with its input (llmtts.token_space says where each comes from).
TOKEN_FACTS = ("hidden_size", "sample_rate", "samples_per_token")


@dataclass
class DecoderModelConfig:
    """The architecture; also what ``export/config.json`` stores under ``"model"``. ``hidden_size``,
    ``sample_rate`` and ``samples_per_token`` are the token space's facts: 0 = read from the training input
    (``resolved``; the stage config's default), a set value must equal the input's."""

    hidden_size: int = 512  # d of the LLM's hidden states (the input)
    sample_rate: int = DEFAULT_SAMPLE_RATE
    samples_per_token: int = DEFAULT_SAMPLES_PER_TOKEN
    upsample: int = 4  # frames per token (linear interpolation); samples_per_token = upsample * hop_length
    dim: int = 768
    intermediate_dim: int = 2304
    num_layers: int = 8
    n_fft: int = 2048
    hop_length: int = 512
    embed_kernel: int = 7  # input conv of the backbone (Soprano: 1)
    dw_kernel: int = 7  # depthwise conv of every ConvNeXt block (Soprano: 3)
    # "centered": T states -> T * upsample frames (align_corners=False) -> "same" iSTFT -> T * samples_per_token
    # samples (the edge convention). "soprano": Soprano's decoder, T -> upsample * (T - 1) + 1 frames
    # (align_corners=True) -> centred iSTFT with DC/Nyquist zeroed -> (T - 1) * samples_per_token samples
    # (state t sits on sample t * samples_per_token; the last token's half is dropped). Imported Soprano
    # decoders use it (llmtts.interop.soprano).
    edges: Literal["centered", "soprano"] = "centered"
    # Frames of future context per convolution: -1 = centred (k // 2 each side, the default); 0 = causal; n = at
    # most n. What an exact stream waits for is the decoder's right context in tokens (``context_tokens``): 8 for
    # the soprano shapes centred, 1 causal (only the upsampling and the iSTFT overlap look ahead), 4 with 1 frame;
    # the left context grows by what the right loses (recomputed per chunk: throughput, not latency).
    conv_lookahead: int = -1

    def __post_init__(self) -> None:
        for key in TOKEN_FACTS:
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 1 (or 0: from the training input), got {getattr(self, key)}")
        for key in ("upsample", "dim", "intermediate_dim", "num_layers", "n_fft", "hop_length", "embed_kernel",
                    "dw_kernel"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.embed_kernel % 2 != 1 or self.dw_kernel % 2 != 1:
            raise ValueError(f"embed_kernel and dw_kernel must be odd, got {self.embed_kernel}, {self.dw_kernel}")
        if self.edges not in ("centered", "soprano"):
            raise ValueError(f"edges must be 'centered' or 'soprano', got {self.edges!r}")
        if self.conv_lookahead < -1:
            raise ValueError(f"conv_lookahead must be -1 (centred), 0 (causal) or more, got {self.conv_lookahead}")
        if self.conv_lookahead >= 0 and self.edges == "soprano":
            raise ValueError("conv_lookahead (uncentred convolutions) is not part of Soprano's decoder (edges: soprano)")
        if self.samples_per_token and self.upsample * self.hop_length != self.samples_per_token:
            raise ValueError(f"upsample ({self.upsample}) x hop_length ({self.hop_length}) must equal "
                             f"samples_per_token ({self.samples_per_token})")
        if (self.n_fft - self.hop_length) % 2:
            raise ValueError(f"n_fft - hop_length must be even, got {self.n_fft} - {self.hop_length}")


    @property
    def is_resolved(self) -> bool:
        return all(getattr(self, key) for key in TOKEN_FACTS)

    def resolved(self, facts: dict, source: str) -> "DecoderModelConfig":
        """This config with its unset (0) token facts taken from ``facts`` (the input index, the LLM's width);
        a set value that differs from ``facts`` is a one-line error naming ``source`` and the key."""
        values = {}
        for key in TOKEN_FACTS:
            have, want = getattr(self, key), facts.get(key)
            if want is not None and have and int(want) != have:
                raise UserError(f"{source}: {key}={want} but the decoder config has model.{key}={have}")
            if not have and want is None:
                raise UserError(f"{source}: does not say its {key}: set model.{key} in the decoder config")
            values[key] = have or int(want)
        try:
            return replace(self, **values)
        except ValueError as exc:
            raise UserError(f"{source}: {exc} (model.upsample x model.hop_length must give the input's "
                            "samples_per_token)") from None


@dataclass
class DecoderLossConfig(ReconLossConfig):
    pass  # the shared knobs with Vocos' defaults (mel 45)


@dataclass
class DecoderGanConfig(VocoderGanConfig):
    # Discriminator-only steps before the generator sees adversarial losses (the recon init is good
    # already; an untrained discriminator would push it around).
    disc_warmup_steps: int = 0
    disc_lr: float = 0.0  # 0 = trainer.optim.lr


@dataclass
class DecoderConfig:
    # The token facts default to 0: read from --input-dir's index.json (and --llm-path's width) at start-up.
    model: DecoderModelConfig = field(default_factory=lambda: DecoderModelConfig(
        hidden_size=0, sample_rate=0, samples_per_token=0))
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    log: LogConfig = field(default_factory=LogConfig)
    loss: DecoderLossConfig = field(default_factory=DecoderLossConfig)
    gan: DecoderGanConfig = field(default_factory=DecoderGanConfig)
    stage: Literal["recon", "gan"] = "recon"
    # Training crops in tokens: recon sees long crops, gan random short ones (Vocos: 16384 samples).
    recon_crop_tokens: int = 64
    gan_crop_tokens: int = 8
    # A decoder run/export to start from (``--init-from``); required for stage gan.
    init_from: str = ""
    # On-the-fly mode: compute hidden states from token shards with this frozen LLM (``--llm-path``).
    llm_path: str = ""
    # On-the-fly mode rounds the states as hidden shards of this dtype store them (fp16 | bf16 | int8,
    # llmtts.data.hidden_format), so both modes train on the same values. Hidden shards say their own format.
    hidden_dtype: str = DEFAULT_DTYPE

    def __post_init__(self) -> None:
        if self.recon_crop_tokens < 1 or self.gan_crop_tokens < 1:
            raise ValueError("recon_crop_tokens and gan_crop_tokens must be >= 1")
        if self.hidden_dtype not in DTYPES:
            raise ValueError(f"hidden_dtype must be one of {', '.join(DTYPES)}, got {self.hidden_dtype!r}")

    @property
    def crop_tokens(self) -> int:
        return self.gan_crop_tokens if self.stage == "gan" else self.recon_crop_tokens
