"""Codec model: exact token/sample arithmetic for both shipped configs, quantizer round trips, batching
invariance, and the tiny codec overfitting one short clip."""
import math
from pathlib import Path

import pytest
import torch

from llmtts.codec.config import CodecConfig, CodecModelConfig
from llmtts.codec.model import CodecModel, num_tokens
from llmtts.codec.quantizer import Quantizer, codebook_usage
from llmtts.config import ConfigError, load_config
from llmtts.nn import MultiResolutionMelLoss, MultiResolutionSTFTLoss

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "codec"


def _small(cfg: CodecModelConfig) -> CodecModelConfig:
    """Same token arithmetic as ``cfg`` (rate, spt, n_fft, hop, levels), tiny widths so the test is fast."""
    d = dict(vars(cfg))
    d.update(encoder_dim=16, encoder_intermediate_dim=32, encoder_layers=1, encoder_token_layers=1,
             decoder_dim=16, decoder_intermediate_dim=32, decoder_layers=1)
    return CodecModelConfig(**d)


@pytest.mark.parametrize("name,rate,spt", [("soprano", 32000, 2048), ("tiny", 16000, 1024)])
def test_token_sample_arithmetic_for_shipped_configs(name, rate, spt):
    cfg = load_config(CodecConfig, CONFIGS / f"{name}.yaml").model
    assert (cfg.sample_rate, cfg.samples_per_token) == (rate, spt)
    model = CodecModel(_small(cfg)).eval()
    for n in (1, spt - 1, spt, spt + 1, 3 * spt + 7, 5 * spt - 1):
        t = math.ceil(n / spt)
        assert num_tokens(n, spt) == model.num_tokens(n) == t
        with torch.no_grad():
            codes = model.encode(torch.randn(2, n) * 0.1)
            out = model(torch.randn(1, n) * 0.1)
            wav = model.decode(codes)
        assert codes.shape == (2, t)
        assert wav.shape == (2, t * spt)
        assert out.wav.shape == out.target.shape == (1, t * spt)
        assert out.codes.shape == (1, t)
    if name == "soprano":
        assert model.quantizer.codebook_size == 8000
        assert model.tokens_per_second == pytest.approx(15.625)
        assert model.quantizer.bits_per_token * model.tokens_per_second == pytest.approx(202.6, abs=0.1)


def test_bad_model_configs_fail_with_the_key():
    with pytest.raises(ConfigError, match="multiple of hop_length"):
        load_config(CodecConfig, CONFIGS / "tiny.yaml", ["model.samples_per_token=1000"])
    with pytest.raises(ConfigError, match="residual_fsq"):
        load_config(CodecConfig, CONFIGS / "tiny.yaml", ["model.num_quantizers=2"])


@pytest.mark.parametrize("kind,nq", [("fsq", 1), ("residual_fsq", 3)])
def test_quantizer_round_trip(kind, nq):
    torch.manual_seed(0)
    q = Quantizer(kind, [8, 5, 5, 5], nq)
    z = torch.randn(2, 11, q.dim) * 2
    zq, codes = q(z)
    assert codes.shape == ((2, 11) if nq == 1 else (2, 11, nq))
    assert codes.min() >= 0 and codes.max() < q.codebook_size == 1000
    # codes -> latent reproduces the forward's quantized latent, and re-quantizing it gives the same codes
    assert torch.allclose(q.decode(codes), zq, atol=1e-5)
    # every code of a codebook decodes to a distinct latent (the code -> latent map is invertible)
    every = torch.arange(q.codebook_size)[None]
    table = q.decode(every if nq == 1 else every[..., None].expand(-1, -1, nq).contiguous())[0]
    assert torch.unique(table, dim=0).shape[0] == q.codebook_size
    if kind == "fsq":
        assert torch.equal(q.q.codes_to_indices(q.decode(codes)), codes)
    else:
        # more residual stages approximate the input better than the first stage alone
        first = Quantizer(kind, [8, 5, 5, 5], 1)
        c = q.q.soft_clamp_input_value  # ResidualFSQ soft-clamps its input first; that is what it approximates
        target = torch.tanh(z / c) * c
        err_all = (zq - target).abs().mean()
        err_one = (first(z)[0] - target).abs().mean()
        assert err_all < 0.5 * err_one
    with pytest.raises(ValueError, match="codes must be"):
        q.decode(torch.full(codes.shape, 1000))


def test_codebook_usage():
    assert codebook_usage(torch.tensor([0, 1, 2, 3]), 8) == pytest.approx({"code_use": 0.5, "perplexity": 4.0})
    stats = codebook_usage(torch.zeros(10, dtype=torch.long), 8)
    assert stats == pytest.approx({"code_use": 0.125, "perplexity": 1.0})
    both = codebook_usage(torch.tensor([[[0, 0], [1, 0]]]), 4)  # residual [B, T, Q]: averaged over Q
    assert both == pytest.approx({"code_use": (0.5 + 0.25) / 2, "perplexity": (2.0 + 1.0) / 2})


def test_batched_encode_matches_one_clip_at_a_time():
    torch.manual_seed(0)
    cfg = load_config(CodecConfig, CONFIGS / "tiny.yaml").model
    model = CodecModel(cfg).eval()
    clips = [torch.randn(n) * 0.2 for n in (1500, 5000, 3072)]
    batch = torch.zeros(3, 5000)
    for i, c in enumerate(clips):
        batch[i, : len(c)] = c
    with torch.no_grad():
        codes = model.encode(batch, torch.tensor([len(c) for c in clips]))
        for i, c in enumerate(clips):
            alone = model.encode(c[None])[0]
            assert torch.equal(codes[i, : len(alone)], alone)


def _voiced(n: int, sr: int) -> torch.Tensor:
    t = torch.arange(n) / sr
    f0 = 120 + 40 * torch.sin(2 * math.pi * 2 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sr
    return sum(torch.sin(k * phase) / k for k in range(1, 8)) * 0.2 * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t))


def test_tiny_codec_overfits_one_clip():
    torch.manual_seed(0)
    cfg = load_config(CodecConfig, CONFIGS / "tiny.yaml")
    model = CodecModel(cfg.model)
    mel = MultiResolutionMelLoss(cfg.model.sample_rate, cfg.loss.mel_resolutions)
    stft = MultiResolutionSTFTLoss(cfg.loss.stft_resolutions)
    opt = torch.optim.AdamW(model.parameters(), 2e-3, betas=(0.8, 0.99))
    x = _voiced(8000, cfg.model.sample_rate)[None]
    losses = []
    for _ in range(150):
        out = model(x)
        mel_loss = mel(out.wav, out.target)
        loss = cfg.loss.mel_weight * mel_loss + stft(out.wav, out.target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(mel_loss.item())
    assert min(losses[-10:]) <= 0.5 * losses[0], (losses[0], losses[-10:])


def test_residual_codec_layout():
    cfg = load_config(CodecConfig, CONFIGS / "tiny.yaml", ["model.quantizer=residual_fsq", "model.num_quantizers=2"]).model
    model = CodecModel(_small(cfg)).eval()
    with torch.no_grad():
        codes = model.encode(torch.randn(2, 3000) * 0.1)
        wav = model.decode(codes)
    assert codes.shape == (2, 3, 2) and wav.shape == (2, 3 * 1024)
    assert model.quantizer.bits_per_token == pytest.approx(2 * math.log2(1000))


def test_codebook_monitor_rolls_over_recent_batches():
    from llmtts.codec.quantizer import CodebookMonitor

    mon = CodebookMonitor(8, window=2)
    assert mon.update(torch.tensor([[0, 1]])) == pytest.approx({"code_use": 0.25, "perplexity": 2.0})
    assert mon.update(torch.tensor([[2, 3]])) == pytest.approx({"code_use": 0.5, "perplexity": 4.0})
    # the first batch left the window
    assert mon.update(torch.tensor([[2, 3]])) == pytest.approx({"code_use": 0.25, "perplexity": 2.0})
    res = CodebookMonitor(4).update(torch.tensor([[[0, 0], [1, 0]]]))  # [B, T, Q]
    assert res == pytest.approx({"code_use": (0.5 + 0.25) / 2, "perplexity": (2.0 + 1.0) / 2})


def test_latent_range_penalty_revives_a_saturated_fsq_latent():
    """A latent pushed deep into FSQ's tanh gets no gradient from the reconstruction; the penalty pulls it back."""
    from llmtts.codec.model import latent_range_penalty

    cfg = load_config(CodecConfig, CONFIGS / "tiny.yaml").model
    torch.manual_seed(0)
    wav = torch.randn(2, 4 * cfg.samples_per_token) * 0.1
    bias_grads = {}
    for weight in (0.0, 1.0):
        model = CodecModel(_small(cfg))
        with torch.no_grad():
            model.to_latent.bias.fill_(5.0)  # every latent dim saturated: the collapse seen in training
        out = model(wav)
        loss = MultiResolutionMelLoss(cfg.sample_rate, [[512, 128, 40]])(out.wav, out.target)
        loss = loss + weight * latent_range_penalty(out.latent, 2.0)
        loss.backward()
        bias_grads[weight] = model.to_latent.bias.grad.clone()
    assert bias_grads[0.0].abs().max() < 1e-3  # the reconstruction alone cannot move it
    assert (bias_grads[1.0] > 0.5).all()  # gradient descent lowers every saturated dim
    z = torch.tensor([-3.0, -1.5, 0.0, 1.9, 2.5])
    assert latent_range_penalty(z, 2.0).item() == pytest.approx((1.0 + 0.25) / 5)
