"""Soprano-Encoder's ``encoder.pth`` -> an encoder-only codec export (``llmtts codec encode`` turns shards into
Soprano's 8000 audio codes with it).

Architecture (the published facts, NOTES.md): 32 kHz audio -> log-mel (50 bins, n_fft 2048, hop 512, centred STFT
with reflect padding, magnitude, HTK mel scale, ``log(clamp(mel, 5e-3))``) -> Vocos ConvNeXt backbone (input conv
kernel 1, 8 blocks of 768 with depthwise kernel 5, final LayerNorm) -> every 4th frame kept -> Linear to 5 dims ->
FSQ levels [8, 8, 5, 5, 5] = 8000 codes. One token per 2048 samples; a clip of N samples has
``ceil((N // 512 + 1) / 4)`` tokens and token t sits on sample ``t * 2048`` (what ``edges: soprano`` decoders
expect). Widths, depth and kernels are read from the weights' shapes.

Key names (``encoder.pth`` of the published ``Encoder`` module; docs/soprano.md lists them)::

    encoder.embed.{weight,bias}  encoder.norm.{weight,bias}  encoder.final_layer_norm.{weight,bias}
    encoder.convnext.N.{dwconv.weight,dwconv.bias,norm.weight,norm.bias,mlp.pwconv1.*,mlp.pwconv2.*,gamma}
    downsampler.{weight,bias}
    optional buffers: mel_spec.spectrogram.window, mel_spec.mel_scale.fb (used when present: the checkpoint's own
    filterbank), quant.{levels,half_levels,offset,shift,_basis} (levels checked)

Also accepted: Vocos' own block names (``pwconv1`` without ``mlp.``) and a whole autoencoder checkpoint whose encoder
sits under ``encoder.`` (its mel-decoder keys ``decoder.*`` are ignored). Anything else is a one-line error naming
the key. FSQ is Soprano's: ``tanh(z + tan(offset / h)) * h - offset`` with ``h = (L - 1)(1 - 1e-3) / 2``,
offset 0.5 for even L, rounded; index ``sum(digit_i * prod(L_j, j < i))`` (first dimension least significant).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from llmtts.errors import UserError
from llmtts.interop.soprano.decoder import checked_weight, load_checked, state_shape
from llmtts.nn.vocos import VocosBackbone

KIND = "soprano-encoder"
SOPRANO_LEVELS = [8, 8, 5, 5, 5]
_BLOCK = re.compile(r"^encoder\.convnext\.(\d+)\.(.+)$")
OPTIONAL_BUFFERS = ("mel_spec.spectrogram.window", "mel_spec.mel_scale.fb", "quant.levels", "quant.half_levels",
                    "quant.offset", "quant.shift", "quant._basis")


@dataclass
class SopranoEncoderConfig:
    sample_rate: int = 32000
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 50
    dim: int = 768
    intermediate_dim: int = 2304
    num_layers: int = 8
    embed_kernel: int = 1
    dw_kernel: int = 5
    frames_per_token: int = 4
    levels: list[int] = field(default_factory=lambda: list(SOPRANO_LEVELS))
    log_floor: float = 5e-3

    @property
    def samples_per_token(self) -> int:
        return self.hop_length * self.frames_per_token


def htk_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """``[n_fft // 2 + 1, n_mels]`` triangular filters on the HTK mel scale, no normalisation (torchaudio's
    ``MelSpectrogram`` defaults, which Soprano's encoder uses)."""
    freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1, dtype=torch.float64)
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
    pts = torch.linspace(mel(0.0), mel(sample_rate / 2), n_mels + 2, dtype=torch.float64)
    hz = 700.0 * (10.0 ** (pts / 2595.0) - 1.0)
    diff = hz[1:] - hz[:-1]
    slopes = hz[None, :] - freqs[:, None]
    down, up = -slopes[:, :-2] / diff[:-1], slopes[:, 2:] / diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).float()


class SopranoFSQ(nn.Module):
    """Soprano's FSQ (no parameters): ``forward(z) -> (z_q, codes)``, ``decode(codes) -> z_q``."""

    kind = "fsq"
    num_codebooks = 1

    def __init__(self, levels: list[int]):
        super().__init__()
        self.levels = list(levels)
        self.dim = len(levels)
        self.codebook_size = int(math.prod(levels))
        lv = torch.tensor(levels, dtype=torch.float64)
        half = (lv - 1) * (1 - 1e-3) / 2
        offset = 0.5 - 0.5 * (lv % 2)
        self.register_buffer("half_levels", half.float(), persistent=False)
        self.register_buffer("offset", offset.float(), persistent=False)
        self.register_buffer("shift", torch.tan(offset / half).float(), persistent=False)
        self.register_buffer("width", (lv // 2).float(), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + list(levels[:-1]), dtype=torch.float64), 0)
        self.register_buffer("basis", basis.float(), persistent=False)

    @property
    def bits_per_token(self) -> float:
        return math.log2(self.codebook_size)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        digits = torch.round(torch.tanh(z.float() + self.shift) * self.half_levels - self.offset)  # centred ints
        codes = ((digits + self.width) * self.basis).sum(-1).round().long()
        return digits / self.width, codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        lv = torch.tensor(self.levels, device=codes.device)
        digits = (codes.long()[..., None] // self.basis.long()) % lv
        return (digits.float() - self.width) / self.width


class SopranoEncoder(nn.Module):
    """Encoder-only codec with this project's codec interface for ``encode`` (``decode`` is a one-line error)."""

    kind = KIND

    def __init__(self, cfg: SopranoEncoderConfig, filterbank: torch.Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        self.sample_rate, self.hop_length = cfg.sample_rate, cfg.hop_length
        self.samples_per_token, self.frames_per_token = cfg.samples_per_token, cfg.frames_per_token
        fb = filterbank if filterbank is not None else htk_mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels)
        self.register_buffer("fb", fb.float().contiguous())  # saved: the export keeps the checkpoint's filterbank
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.backbone = VocosBackbone(cfg.n_mels, cfg.dim, cfg.intermediate_dim, cfg.num_layers,
                                      embed_kernel=cfg.embed_kernel, dw_kernel=cfg.dw_kernel)
        self.to_latent = nn.Linear(cfg.dim, len(cfg.levels))
        self.quantizer = SopranoFSQ(cfg.levels)

    @property
    def tokens_per_second(self) -> float:
        return self.sample_rate / self.samples_per_token

    def num_tokens(self, num_samples: int) -> int:
        return -(-(int(num_samples) // self.hop_length + 1) // self.frames_per_token)

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` -> log-mel ``[B, n_mels, N // hop + 1]`` (centred, reflect-padded STFT magnitude)."""
        if wav.shape[-1] <= self.cfg.n_fft // 2:
            raise ValueError(f"clip of {wav.shape[-1]} samples is too short for Soprano's encoder "
                             f"(needs more than {self.cfg.n_fft // 2})")
        spec = torch.stft(wav.float(), self.cfg.n_fft, self.hop_length, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True).abs()
        return torch.log(torch.clamp(torch.matmul(self.fb.T, spec), min=self.cfg.log_floor))

    def encode_latent(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` (all the same length) -> pre-quantizer latent ``[B, T, 5]``."""
        x = self.backbone(self.features(wav))  # [B, F, dim]
        return self.to_latent(x[:, :: self.frames_per_token])

    def encode(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``wav [B, N]`` -> codes ``[B, T]``. Clips of a batch are encoded one by one at their own length: the
        reflect padding at the clip's end and the backbone's convs must not see a neighbour's zero padding."""
        if wav.dim() != 2:
            raise ValueError(f"codec expects a waveform batch [B, N], got {tuple(wav.shape)}")
        if lengths is None or bool((lengths == wav.shape[-1]).all()):
            return self.quantizer(self.encode_latent(wav))[1]
        out = torch.zeros(wav.shape[0], self.num_tokens(wav.shape[-1]), dtype=torch.long, device=wav.device)
        for i, n in enumerate(lengths.tolist()):
            codes = self.quantizer(self.encode_latent(wav[i: i + 1, : int(n)]))[1][0]
            out[i, : codes.shape[0]] = codes
        return out

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise UserError("this codec is Soprano's encoder only: it turns audio into codes but has no decoder; Soprano "
                        "makes audio from the LLM's hidden states (llmtts synthesize --decoder-path ...), and "
                        "`eval codec` / codec reconstructions need a codec trained here")


# ----------------------------------------------------------------------------- import
def _canonical(sd: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Strip the ``encoder.`` prefix of a whole-autoencoder checkpoint (dropping its mel decoder)."""
    if "encoder.embed.weight" in sd or "encoder.encoder.embed.weight" not in sd:
        return sd
    out = {}
    for k, v in sd.items():
        if k.startswith("encoder."):
            out[k[len("encoder."):]] = v
        elif not k.startswith("decoder."):
            raise UserError(f"{source}: unexpected key '{k}'")
    return out


def _to_project_name(key: str) -> str | None:
    m = _BLOCK.match(key)
    if m:
        rest = m.group(2)
        rest = rest[len("mlp."):] if rest.startswith("mlp.pwconv") else rest
        return f"backbone.blocks.{m.group(1)}.{rest}"
    if key.startswith("encoder.final_layer_norm."):
        return "backbone.final_norm." + key[len("encoder.final_layer_norm."):]
    for src, dst in (("encoder.embed.", "backbone.embed."), ("encoder.norm.", "backbone.norm."),
                     ("downsampler.", "to_latent.")):
        if key.startswith(src):
            return dst + key[len(src):]
    return None


def config_from_state(sd: dict[str, torch.Tensor], source: str) -> SopranoEncoderConfig:
    dim, n_mels, embed_k = state_shape(sd, "encoder.embed.weight", 3, source)
    layers = 1 + max((int(m.group(1)) for k in sd if (m := _BLOCK.match(k))), default=-1)
    if layers == 0:
        raise UserError(f"{source}: missing key 'encoder.convnext.0.dwconv.weight' (no ConvNeXt blocks)")
    dw_k = state_shape(sd, "encoder.convnext.0.dwconv.weight", 3, source)[2]
    pw = "encoder.convnext.0.mlp.pwconv1.weight"
    inter = state_shape(sd, pw if pw in sd else "encoder.convnext.0.pwconv1.weight", 2, source)[0]
    n_out = state_shape(sd, "downsampler.weight", 2, source)[0]
    if n_out != len(SOPRANO_LEVELS):
        raise UserError(f"{source}: key 'downsampler.weight' has shape {list(sd['downsampler.weight'].shape)}, "
                        f"expected [{len(SOPRANO_LEVELS)}, {dim}] (FSQ {SOPRANO_LEVELS})")
    if embed_k % 2 == 0 or dw_k % 2 == 0:
        raise UserError(f"{source}: even conv kernel ({embed_k}, {dw_k}); Soprano's encoder keeps the frame count")
    return SopranoEncoderConfig(n_mels=n_mels, dim=dim, intermediate_dim=inter, num_layers=layers,
                                embed_kernel=embed_k, dw_kernel=dw_k)


def _check_buffers(sd: dict[str, torch.Tensor], cfg: SopranoEncoderConfig, source: str) -> torch.Tensor | None:
    """Validate the optional buffers; returns the checkpoint's mel filterbank if it has one."""
    if "mel_spec.spectrogram.window" in sd and tuple(sd["mel_spec.spectrogram.window"].shape) != (cfg.n_fft,):
        raise UserError(f"{source}: key 'mel_spec.spectrogram.window' has shape "
                        f"{list(sd['mel_spec.spectrogram.window'].shape)}, expected [{cfg.n_fft}]")
    if "quant.levels" in sd and sd["quant.levels"].flatten().tolist() != cfg.levels:
        raise UserError(f"{source}: key 'quant.levels' is {sd['quant.levels'].flatten().tolist()}, Soprano's FSQ "
                        f"is {cfg.levels}")
    fb = sd.get("mel_spec.mel_scale.fb")
    if fb is not None and tuple(fb.shape) != (cfg.n_fft // 2 + 1, cfg.n_mels):
        raise UserError(f"{source}: key 'mel_spec.mel_scale.fb' has shape {list(fb.shape)}, expected "
                        f"[{cfg.n_fft // 2 + 1}, {cfg.n_mels}]")
    return fb


def import_encoder(sd: dict[str, torch.Tensor], source: str) -> SopranoEncoder:
    """Soprano encoder state dict -> ``SopranoEncoder`` with its weights; every key and shape checked."""
    sd = _canonical(sd, source)
    cfg = config_from_state(sd, source)
    fb = _check_buffers(sd, cfg, source)
    model = SopranoEncoder(cfg, filterbank=fb)
    want = model.state_dict()
    mapped: dict[str, torch.Tensor] = {"fb": model.fb}
    for key, value in sd.items():
        if key in OPTIONAL_BUFFERS:
            continue
        name = _to_project_name(key)
        mapped[name] = checked_weight(key, name, value, want, source)
    return load_checked(model, mapped, source, to_soprano_name)


def to_soprano_name(name: str) -> str:
    m = re.match(r"^backbone\.blocks\.(\d+)\.(.+)$", name)
    if m:
        rest = m.group(2)
        return f"encoder.convnext.{m.group(1)}." + (f"mlp.{rest}" if rest.startswith("pwconv") else rest)
    for src, dst in (("backbone.final_norm.", "encoder.final_layer_norm."), ("backbone.", "encoder."),
                     ("to_latent.", "downsampler.")):
        if name.startswith(src):
            return dst + name[len(src):]
    return name


# ----------------------------------------------------------------------------- export format
def codec_metadata(model: SopranoEncoder) -> dict:
    q = model.quantizer
    return {"kind": KIND, "encoder_only": True, "model": dataclasses.asdict(model.cfg),
            "sample_rate": model.sample_rate, "samples_per_token": model.samples_per_token,
            "tokens_per_second": model.tokens_per_second,
            "codebook": {"kind": "fsq", "levels": list(q.levels), "num_quantizers": 1,
                         "codebook_size": q.codebook_size, "num_codebooks": 1, "bits_per_token": q.bits_per_token,
                         "layout": "[T]"}}


def save_encoder(model: SopranoEncoder, out_dir: str | Path) -> Path:
    from safetensors.torch import save_file

    from llmtts.io import write_file_atomic, write_text_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    write_file_atomic(out_dir / "model.safetensors",
                      lambda tmp: save_file(state, str(tmp), metadata={"format": "pt", "kind": "llmtts-codec-" + KIND}))
    write_text_atomic(out_dir / "config.json", json.dumps(codec_metadata(model), indent=2) + "\n")
    return out_dir


def load_encoder(meta: dict, weights: Path, cfg_path: Path) -> SopranoEncoder:
    """The export's encoder (``llmtts.codec.export.load_codec`` dispatches here on ``kind``)."""
    from safetensors.torch import load_file

    try:
        cfg = SopranoEncoderConfig(**meta["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{cfg_path}: not a Soprano encoder config ({exc})") from None
    state = load_file(str(weights))
    model = SopranoEncoder(cfg, filterbank=state.get("fb"))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"{weights}: weights do not fit the config ({str(exc).splitlines()[0]})") from None
    return model.eval()
