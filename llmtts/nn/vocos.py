"""Vocos building blocks: ConvNeXt backbone and an iSTFT head that turns frames into a waveform.

Shapes (B = batch, F = frames, N = samples)::

    VocosBackbone:  [B, input_dim, F]  ->  [B, F, dim]
    ISTFTHead:      [B, F, dim]        ->  [B, N]

Frame <-> sample arithmetic of ``ISTFTHead`` (the edge convention depends on it):

* ``padding="same"`` (default): exactly ``N = F * hop_length`` samples. The overlap-added signal is trimmed
  by ``(n_fft - hop_length) / 2`` samples on each side, so frame ``f`` is centred on sample
  ``f * hop + hop / 2``. A model that must emit ``T * samples_per_token`` samples feeds
  ``F = T * (samples_per_token // hop_length)`` frames. Needs ``n_fft - hop_length`` even.
* ``padding="center"``: ``torch.istft(center=True)`` semantics, ``N = (F - 1) * hop_length`` samples (the
  inverse of an STFT computed with ``center=True``, which has ``N // hop + 1`` frames).

``frames_for_samples`` / ``samples_for_frames`` make that arithmetic explicit for callers.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Padding = Literal["same", "center"]


class LengthKeepingConv1d(nn.Conv1d):
    """A ``Conv1d`` that keeps the frame count. ``lookahead`` = frames of future context: -1 (default) centred,
    k // 2 frames each side ("same" padding); 0 causal (output frame f sees input frames f - k + 1 .. f); n at most
    n frames of future (the rest of the kernel on the left). Same parameters either way, so a state dict loads
    into any of them."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int = 1, lookahead: int = -1):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the length, got {kernel_size}")
        self.right = kernel_size // 2 if lookahead < 0 else min(lookahead, kernel_size // 2)
        self.left = kernel_size - 1 - self.right
        centred = self.left == self.right
        super().__init__(in_channels, out_channels, kernel_size, groups=groups, padding=self.left if centred else 0)
        self.pad_outside = not centred

    def forward(self, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        """``state`` (a dict the caller keeps between calls): streaming, frames arrive in pieces and the last
        ``k - 1`` input frames are carried to the next call; causal convolutions only (no future to wait for)."""
        if state is not None:
            if self.right:
                raise ValueError("streaming state needs causal convolutions (conv_lookahead: 0)")
            history = state.get(id(self))
            if history is None:  # the stream's start: the zeros the left padding would add
                history = x.new_zeros(*x.shape[:-1], self.left)
            x = torch.cat([history, x], -1)
            state[id(self)] = x[..., x.shape[-1] - self.left:]
            return super().forward(x)
        if self.pad_outside:
            x = nn.functional.pad(x, (self.left, self.right))
        return super().forward(x)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (k=7) -> LayerNorm -> pointwise MLP -> layer scale, residual. ``[B, C, F] -> [B, C, F]``.

    Length-preserving ("same" or causal padding) so stacking blocks never changes the frame count.
    """

    def __init__(self, dim: int, intermediate_dim: int, layer_scale_init: float = 1e-6, kernel_size: int = 7,
                 lookahead: int = -1):
        super().__init__()
        self.dwconv = LengthKeepingConv1d(dim, dim, kernel_size, groups=dim, lookahead=lookahead)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init)) if layer_scale_init > 0 else None

    def forward(self, x: torch.Tensor, state: dict | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask [B, 1, F]`` (1 = a real frame): frames past a row's end are zeroed before the convolution, so a
        padded batch row sees the zeros its own unpadded forward would pad with."""
        residual = x
        x = self.dwconv(x if mask is None else x * mask, state).transpose(1, 2)  # [B, F, C]
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        if self.gamma is not None:
            x = x * self.gamma
        return residual + x.transpose(1, 2)


class VocosBackbone(nn.Module):
    """Conv1d embedding (k=7) -> LayerNorm -> ``num_layers`` ConvNeXt blocks -> LayerNorm.

    ``[B, input_dim, F] -> [B, F, dim]`` (channels-last output, ready for a Linear head). Frame count is kept.
    """

    def __init__(self, input_dim: int, dim: int, intermediate_dim: int, num_layers: int,
                 layer_scale_init: float | None = None, embed_kernel: int = 7, dw_kernel: int = 7,
                 lookahead: int = -1):
        super().__init__()
        self.input_dim, self.dim = input_dim, dim
        # Kernels: 7 here by default; Soprano's decoder uses an embed kernel of 1 and depthwise kernels of 3.
        self.embed = LengthKeepingConv1d(input_dim, dim, embed_kernel, lookahead=lookahead)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        # Vocos scales the residual branches by 1/num_layers at init so a deep stack starts near identity.
        scale = layer_scale_init if layer_scale_init is not None else 1.0 / max(num_layers, 1)
        self.blocks = nn.ModuleList([ConvNeXtBlock(dim, intermediate_dim, scale, kernel_size=dw_kernel, lookahead=lookahead)
                                     for _ in range(num_layers)])
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, state: dict | None = None, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``state``: see ``LengthKeepingConv1d`` (causal backbones decode a stream piece by piece with it).
        ``lengths [B]``: rows padded at the end to a common frame count; every convolution then sees zeros past a
        row's own length, so each row's first ``lengths[b]`` frames equal its unpadded forward (the frames past
        it are garbage)."""
        if x.dim() != 3 or x.shape[1] != self.input_dim:
            raise ValueError(f"VocosBackbone expects [B, {self.input_dim}, F], got {tuple(x.shape)}")
        mask = None
        if lengths is not None:
            mask = (torch.arange(x.shape[-1], device=x.device)[None] < lengths[:, None].to(x.device))[:, None]
            x = x * mask
        x = self.embed(x, state)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x, state, mask)
        return self.final_norm(x.transpose(1, 2))


def samples_for_frames(frames: int, hop_length: int, padding: Padding = "same") -> int:
    """Waveform length ``ISTFTHead`` produces from ``frames`` frames."""
    return frames * hop_length if padding == "same" else (frames - 1) * hop_length


def frames_for_samples(samples: int, hop_length: int, padding: Padding = "same") -> int:
    """Frames ``ISTFTHead`` needs to produce exactly ``samples`` samples (must be a multiple of hop)."""
    if samples % hop_length:
        raise ValueError(f"{samples} samples is not a multiple of hop_length {hop_length}")
    return samples // hop_length if padding == "same" else samples // hop_length + 1


class ISTFT(nn.Module):
    """Inverse STFT (Hann window of ``n_fft``) with "same" or "center" padding (lengths: module docstring).

    "same" is done by hand (irfft -> window -> overlap-add -> divide by the window envelope -> trim) because
    ``torch.istft`` only supports centred framing.
    """

    def __init__(self, n_fft: int, hop_length: int, padding: Padding = "same"):
        super().__init__()
        if padding not in ("same", "center"):
            raise ValueError(f"padding must be 'same' or 'center', got {padding!r}")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.win_length = n_fft  # a Hann window over the whole FFT frame (as Vocos)
        if padding == "same" and (self.win_length - hop_length) % 2:
            raise ValueError(f"'same' padding needs win_length - hop_length even ({self.win_length} - {hop_length})")
        self.padding = padding
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec``: complex ``[B, n_fft // 2 + 1, F]`` -> ``[B, N]``."""
        if self.padding == "center":
            return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, self.window, center=True)
        pad = (self.win_length - self.hop_length) // 2
        y, env = self._overlap_add(spec)
        trim = slice(pad, -pad if pad else None)
        # The envelope only vanishes at the very edges (trimmed away); clamp guards the division anyway.
        return y[:, trim] / env[trim].clamp(min=1e-11)

    def _overlap_add(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windowed frames overlap-added, untrimmed: ``(signal [B, (F - 1) * hop + win], window envelope)``."""
        win, hop, frames = self.win_length, self.hop_length, spec.shape[-1]
        frames_t = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward")[:, :win] * self.window[None, :, None]
        length = (frames - 1) * hop + win
        y = nn.functional.fold(frames_t, output_size=(1, length), kernel_size=(1, win), stride=(1, hop))[:, 0, 0]
        env = nn.functional.fold(self.window.square().expand(1, frames, -1).transpose(1, 2), output_size=(1, length),
                                 kernel_size=(1, win), stride=(1, hop)).reshape(-1)
        return y, env

    def stream(self, spec: torch.Tensor, state: dict, final: bool = False) -> torch.Tensor:
        """"same" padding, frames arriving in pieces: ``spec [B, bins, m]`` (m >= 0) -> the samples that no later
        frame can change, in order; ``final`` (no more frames) also returns the tail. The concatenated outputs equal
        ``forward`` over all frames (up to summation order). ``state``: a dict the caller keeps between calls."""
        if self.padding != "same":
            raise ValueError("streaming iSTFT supports 'same' padding only")
        win, hop = self.win_length, self.hop_length
        pad = (win - hop) // 2
        frames = spec.shape[-1]
        acc, env_acc = state.get("istft", (None, None))
        if acc is None:  # the untrimmed signal's first win - hop samples, still open
            acc = spec.new_zeros(spec.shape[0], win - hop, dtype=torch.float32)
            env_acc = torch.zeros(win - hop, device=spec.device)
            state["istft_trim"] = pad  # samples still to drop at the start
        if frames:
            y, env = self._overlap_add(spec)
            y[:, : win - hop] += acc
            env[: win - hop] += env_acc
            done, acc, env_acc = y[:, : frames * hop], y[:, frames * hop:], env[frames * hop:]
            done_env = env[: frames * hop]
        else:
            done, done_env = acc[:, :0], env_acc[:0]
        if final:  # the tail, less the end trim
            done, done_env = torch.cat([done, acc[:, :pad]], 1), torch.cat([done_env, env_acc[:pad]])
        state["istft"] = (acc, env_acc)
        trim = min(state["istft_trim"], done.shape[1])
        state["istft_trim"] -= trim
        return done[:, trim:] / done_env[trim:].clamp(min=1e-11)


class ISTFTHead(nn.Module):
    """Linear ``dim -> n_fft + 2`` predicting log-magnitude and phase per bin, then inverse STFT.

    ``[B, F, dim] -> [B, N]`` with ``N = F * hop_length`` ("same") or ``(F - 1) * hop_length`` ("center").
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int, padding: Padding = "same",
                 zero_edge_bins: bool = False):
        super().__init__()
        self.n_fft, self.hop_length, self.padding = n_fft, hop_length, padding
        # Soprano's head zeroes the DC and Nyquist bins before its (centred) iSTFT; kept as an option so its
        # decoder.pth gives the same waveform here.
        self.zero_edge_bins = zero_edge_bins
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length, padding=padding)

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, F, dim]`` -> complex ``[B, n_fft // 2 + 1, F]``."""
        x = self.out(x).transpose(1, 2).float()  # iSTFT in fp32 even under bf16 autocast
        log_mag, phase = x.chunk(2, dim=1)
        # Clamp keeps exp() finite early in training (Vocos does the same).
        mag = torch.exp(log_mag).clamp(max=1e2)
        spec = torch.polar(mag, phase)
        if self.zero_edge_bins:
            spec = torch.cat([spec.new_zeros(spec[:, :1].shape), spec[:, 1:-1], spec.new_zeros(spec[:, :1].shape)], 1)
        return spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.istft(self.spectrum(x))

    def samples_for_frames(self, frames: int) -> int:
        return samples_for_frames(frames, self.hop_length, self.padding)

    def frames_for_samples(self, samples: int) -> int:
        return frames_for_samples(samples, self.hop_length, self.padding)
