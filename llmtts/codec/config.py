"""Typed config of the codec stage: ``model`` (architecture + token rate), ``loss``, ``gan`` and the shared
``data`` / ``trainer`` / ``parallel`` / ``log`` sections from ``llmtts.train.config``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from llmtts.nn.vocoder_config import ReconLossConfig, VocoderGanConfig
from llmtts.token_space import DEFAULT_SAMPLE_RATE, DEFAULT_SAMPLES_PER_TOKEN
from llmtts.train.config import DataConfig, LogConfig, OptimConfig, ParallelConfig, TrainerConfig


@dataclass
class CodecModelConfig:
    sample_rate: int = DEFAULT_SAMPLE_RATE
    # One token per this many samples (T = ceil(N / samples_per_token)); must be a multiple of hop_length.
    samples_per_token: int = DEFAULT_SAMPLES_PER_TOKEN
    # Encoder features: log-mel with this STFT; the decoder's iSTFT head uses the same n_fft / hop.
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 50
    # Encoder: ConvNeXt at frame rate -> strided conv (frames_per_token) -> ConvNeXt at token rate.
    encoder_dim: int = 768
    encoder_intermediate_dim: int = 2304
    encoder_layers: int = 8
    encoder_token_layers: int = 2
    # Quantizer: "fsq" gives one code per token ([T], what the LLM uses); "residual_fsq" gives [T, Q].
    quantizer: Literal["fsq", "residual_fsq"] = "fsq"
    levels: list[int] = field(default_factory=lambda: [8, 8, 5, 5, 5])
    num_quantizers: int = 1
    # Decoder: linear + transposed conv up to frame rate -> Vocos backbone -> iSTFT head ("same" padding).
    decoder_dim: int = 512
    decoder_intermediate_dim: int = 1536
    decoder_layers: int = 8

    def __post_init__(self) -> None:
        if self.samples_per_token % self.hop_length:
            raise ValueError(f"samples_per_token ({self.samples_per_token}) must be a multiple of hop_length "
                             f"({self.hop_length})")
        if (self.n_fft - self.hop_length) % 2:
            raise ValueError(f"n_fft - hop_length must be even ({self.n_fft} - {self.hop_length})")
        if self.quantizer == "fsq" and self.num_quantizers != 1:
            raise ValueError("quantizer 'fsq' has exactly one codebook; use 'residual_fsq' for num_quantizers > 1")
        if any(lv < 3 for lv in self.levels):
            raise ValueError(f"every FSQ level must be >= 3, got {self.levels}")

    @property
    def frames_per_token(self) -> int:
        return self.samples_per_token // self.hop_length


@dataclass
class CodecLossConfig(ReconLossConfig):
    mel_weight: float = 15.0
    # FSQ collapse guard: weight x mean(relu(|z| - latent_bound)^2) on the pre-quantizer latent. FSQ bounds z with
    # tanh; a latent dimension pushed deep into saturation gets no gradient and its code digit freezes (measured: a
    # tiny codec whose 4 latent dims sat at |z| ~ 3-5 used 5 of 1000 codes; the LLM trained on those tokens said
    # nothing intelligible). The penalty is zero inside +-latent_bound, where every FSQ level is still reachable.
    latent_range_weight: float = 1.0
    latent_bound: float = 2.0

    def __post_init__(self) -> None:
        if self.latent_range_weight < 0 or self.latent_bound <= 0:
            raise ValueError(f"latent_range_weight must be >= 0 and latent_bound > 0, got "
                             f"{self.latent_range_weight}, {self.latent_bound}")


@dataclass
class CodecGanConfig(VocoderGanConfig):
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"feature_matching_weight": "fm_weight"}
    # Adversarial training starts at this optimizer step (reconstruction-only before); < 0 disables it.
    start_step: int = 20000
    max_channels: int = 512


@dataclass
class CodecDataConfig(DataConfig):
    # Training items are random crops of this many samples (rounded down to whole tokens; shorter clips are
    # zero-padded), so a batch is a dense [B, crop] tensor.
    crop_samples: int = 32768
    batch_budget: int = 8 * 32768


@dataclass
class CodecConfig:
    model: CodecModelConfig = field(default_factory=CodecModelConfig)
    data: CodecDataConfig = field(default_factory=CodecDataConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        optim=OptimConfig(lr=2e-4, betas=[0.8, 0.99], weight_decay=0.0, schedule="cosine", warmup_steps=500)))
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    log: LogConfig = field(default_factory=LogConfig)
    loss: CodecLossConfig = field(default_factory=CodecLossConfig)
    gan: CodecGanConfig = field(default_factory=CodecGanConfig)
