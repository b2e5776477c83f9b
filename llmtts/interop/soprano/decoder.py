"""Soprano's ``decoder.pth`` <-> this project's decoder (``llmtts.decoder``, ``edges: soprano``).

Soprano's ``SopranoDecoder`` (soprano/vocos/decoder.py) is a Vocos backbone (embed kernel 1, depthwise kernel 3,
8 ConvNeXt blocks of 768) + an iSTFT head (n_fft 2048, hop 512, centred, DC/Nyquist zeroed) after a linear
interpolation T -> 4 (T - 1) + 1 frames: ``DecoderModelConfig(edges="soprano", embed_kernel=1, dw_kernel=3)``.
Its state dict differs from ours only in names, and holds the iSTFT window as a buffer.

``.pth`` files are read with ``torch.load(weights_only=True)`` only: a pickle that would run code is refused.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from llmtts.decoder.config import DecoderModelConfig
from llmtts.decoder.model import HiddenDecoder
from llmtts.errors import UserError

# Fixed in SopranoDecoder's constructor and SopranoTTS (not stored in decoder.pth).
HOP_LENGTH = 512
UPSAMPLE = 4
SAMPLE_RATE = 32000
# SopranoTTS builds SopranoDecoder() with its defaults: an exported decoder must have exactly these.
SOPRANO_DECODER = dict(hidden_size=512, dim=768, intermediate_dim=2304, num_layers=8, embed_kernel=1, dw_kernel=3,
                       n_fft=2048, hop_length=HOP_LENGTH, upsample=UPSAMPLE, samples_per_token=2048,
                       sample_rate=SAMPLE_RATE, edges="soprano")
WINDOW_KEY = "head.istft.window"

_BLOCK = re.compile(r"^decoder\.convnext\.(\d+)\.(.+)$")


def read_pth(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` state dict from a ``.pth`` file, never running code from it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: refused: not a plain tensor checkpoint (weights_only load: {first[:160]})") from None
    except Exception as exc:  # zip/EOF/runtime errors of a truncated or corrupted file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: unreadable or corrupted checkpoint ({type(exc).__name__}: {first[:160]})") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise UserError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    return obj


def to_project_name(key: str) -> str | None:
    """Soprano key -> our key (None: the iSTFT window buffer, which we recompute)."""
    if key == WINDOW_KEY:
        return None
    m = _BLOCK.match(key)
    if m:
        return f"backbone.blocks.{m.group(1)}.{m.group(2)}"
    for src, dst in (("decoder.final_layer_norm.", "backbone.final_norm."), ("decoder.", "backbone."),
                     ("head.out.", "head.out.")):
        if key.startswith(src):
            return dst + key[len(src):]
    return "?" + key  # never a valid name: reported as unexpected


def to_soprano_name(key: str) -> str:
    m = re.match(r"^backbone\.blocks\.(\d+)\.(.+)$", key)
    if m:
        return f"decoder.convnext.{m.group(1)}.{m.group(2)}"
    if key.startswith("backbone.final_norm."):
        return "decoder.final_layer_norm." + key[len("backbone.final_norm."):]
    if key.startswith("backbone."):
        return "decoder." + key[len("backbone."):]
    return key


def state_shape(sd: dict, key: str, ndim: int, source: str) -> tuple[int, ...]:
    """The shape of ``sd[key]``, checked to exist with ``ndim`` dimensions (one-line errors naming the key)."""
    if key not in sd:
        raise UserError(f"{source}: missing key '{key}'")
    if sd[key].dim() != ndim:
        raise UserError(f"{source}: key '{key}' has shape {list(sd[key].shape)}, expected {ndim} dimensions")
    return tuple(sd[key].shape)


def config_from_state(sd: dict[str, torch.Tensor], source: str) -> DecoderModelConfig:
    """The architecture a Soprano decoder state dict implies (widths, depth, kernels, n_fft)."""
    dim, hidden, embed_k = state_shape(sd, "decoder.embed.weight", 3, source)
    layers = 1 + max((int(m.group(1)) for k in sd if (m := _BLOCK.match(k))), default=-1)
    if layers == 0:
        raise UserError(f"{source}: missing key 'decoder.convnext.0.dwconv.weight' (no ConvNeXt blocks)")
    dw_k = state_shape(sd, "decoder.convnext.0.dwconv.weight", 3, source)[2]
    inter = state_shape(sd, "decoder.convnext.0.pwconv1.weight", 2, source)[0]
    n_fft = state_shape(sd, "head.out.weight", 2, source)[0] - 2
    try:
        return DecoderModelConfig(hidden_size=hidden, dim=dim, intermediate_dim=inter, num_layers=layers,
                                  embed_kernel=embed_k, dw_kernel=dw_k, n_fft=n_fft, hop_length=HOP_LENGTH,
                                  upsample=UPSAMPLE, samples_per_token=UPSAMPLE * HOP_LENGTH, sample_rate=SAMPLE_RATE,
                                  edges="soprano")
    except ValueError as exc:
        raise UserError(f"{source}: not a Soprano decoder ({exc})") from None


def checked_weight(key: str, name: str | None, value: torch.Tensor, want: dict[str, torch.Tensor],
                   source: str) -> torch.Tensor:
    """Soprano's ``key`` (our ``name``) checked against the model's state dict ``want``: known, same shape, finite."""
    if name is None or name not in want:
        raise UserError(f"{source}: unexpected key '{key}'")
    if value.shape != want[name].shape:
        raise UserError(f"{source}: key '{key}' has shape {list(value.shape)}, expected {list(want[name].shape)}")
    if not torch.isfinite(value).all():
        raise UserError(f"{source}: key '{key}' holds NaN or infinite values")
    return value.float()


def load_checked(model: nn.Module, mapped: dict[str, torch.Tensor], source: str,
                 soprano_name: Callable[[str], str]) -> nn.Module:
    """Load ``mapped`` into ``model`` once every one of its entries is there (a missing one named as Soprano's key)."""
    for name in model.state_dict():
        if name not in mapped:
            raise UserError(f"{source}: missing key '{soprano_name(name)}'")
    model.load_state_dict(mapped)
    return model.eval()


def import_decoder(sd: dict[str, torch.Tensor], source: str) -> HiddenDecoder:
    """Soprano state dict -> our ``HiddenDecoder`` with its weights; every key and shape checked."""
    from llmtts.export_dir import refuse_non_finite

    refuse_non_finite(sd, source)
    cfg = config_from_state(sd, source)
    model = HiddenDecoder(cfg)
    want = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        name = to_project_name(key)
        if name is None:
            if tuple(value.shape) != (cfg.n_fft,):
                raise UserError(f"{source}: key '{key}' has shape {list(value.shape)}, expected [{cfg.n_fft}]")
            continue
        mapped[name] = checked_weight(key, name, value, want, source)
    return load_checked(model, mapped, source, to_soprano_name)


def export_decoder(model: HiddenDecoder, source: str) -> dict[str, torch.Tensor]:
    """Our decoder -> Soprano's state dict; a one-line error naming the first setting ``SopranoDecoder()``
    cannot load."""
    cfg = model.cfg
    for key, want in SOPRANO_DECODER.items():
        if getattr(cfg, key) != want:
            raise UserError(f"{source}: decoder {key} is {getattr(cfg, key)!r}, Soprano's runtime builds "
                            f"SopranoDecoder() with {key}={want!r}")
    sd = {to_soprano_name(k): v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    sd[WINDOW_KEY] = torch.hann_window(cfg.n_fft)
    return sd
