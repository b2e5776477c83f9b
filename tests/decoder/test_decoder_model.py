"""Decoder model: exact output length, receptive field, export round trip."""
from __future__ import annotations

import pytest
import torch

from llmtts.decoder.config import DecoderModelConfig
from llmtts.decoder.export import load_decoder, save_decoder
from llmtts.decoder.model import HiddenDecoder, context_tokens, receptive_field_tokens
from llmtts.errors import UserError


def tiny_cfg(**kw) -> DecoderModelConfig:
    base = dict(hidden_size=16, sample_rate=16000, samples_per_token=256, upsample=4, dim=16, intermediate_dim=32,
                num_layers=2, n_fft=256, hop_length=64)
    base.update(kw)
    return DecoderModelConfig(**base)


@pytest.mark.parametrize("T", [1, 2, 7, 33])
def test_output_is_exactly_T_times_samples_per_token(T):
    m = HiddenDecoder(tiny_cfg()).eval()
    with torch.no_grad():
        y = m(torch.randn(2, T, 16))
    assert y.shape == (2, T * 256)
    assert torch.isfinite(y).all()


def test_other_hop_and_upsample_also_exact():
    cfg = tiny_cfg(samples_per_token=300, upsample=3, hop_length=100, n_fft=300)
    with torch.no_grad():
        assert HiddenDecoder(cfg)(torch.randn(1, 5, 16)).shape == (1, 1500)


def test_config_rejects_inconsistent_frame_arithmetic():
    with pytest.raises(ValueError, match="samples_per_token"):
        tiny_cfg(upsample=3)


def test_soprano_receptive_field_is_8_tokens():
    from llmtts.config import load_config
    from llmtts.decoder.config import DecoderConfig

    cfg = load_config(DecoderConfig, "configs/decoder/soprano.yaml")
    assert (cfg.model.hidden_size, cfg.model.sample_rate, cfg.model.samples_per_token) == (512, 32000, 2048)
    assert receptive_field_tokens(cfg.model) == 8


@pytest.mark.parametrize("num_layers,lookahead", [(1, -1), (3, -1), (3, 0), (3, 1), (2, 5)])
def test_a_token_influences_only_its_receptive_field(num_layers, lookahead):
    cfg = tiny_cfg(num_layers=num_layers, conv_lookahead=lookahead)
    torch.manual_seed(0)
    m = HiddenDecoder(cfg).double().eval()
    # Strong residual branches so influence reaches as far as it can (default init damps it to ~0).
    for b in m.backbone.blocks:
        b.gamma.data.fill_(1.0)
    (left, right), T, j = context_tokens(cfg), 30, 15
    # Uncentred convolutions move context from the right to the left (5 frames >= k // 2 = 3: centred again).
    assert (left > right) == (lookahead in (0, 1)) and receptive_field_tokens(cfg) == max(left, right)
    h = torch.randn(1, T, 16, dtype=torch.double)
    h2 = h.clone()
    h2[0, j] += 1.0
    with torch.no_grad():
        diff = (m(h2) - m(h)).abs().reshape(T, -1).amax(1)
    touched = (diff > 0).nonzero().flatten()
    # Token j reaches the outputs of tokens that have it in their context: j - right .. j + left.
    assert touched.min() >= j - right and touched.max() <= j + left
    # The bound is exact: the first and the last token it reaches are the context's ends.
    assert touched.min() == j - right and touched.max() == j + left, (touched.min(), touched.max(), j, left, right)


def test_causal_convolutions_leave_one_token_of_right_context_and_load_the_same_weights():
    from dataclasses import replace

    from llmtts.config import load_config
    from llmtts.decoder.config import DecoderConfig

    stream = load_config(DecoderConfig, "configs/decoder/soprano-stream.yaml").model
    assert stream.conv_lookahead == 0 and context_tokens(stream) == (15, 1)
    assert context_tokens(replace(stream, conv_lookahead=1)) == (13, 4)  # one frame of future per convolution
    assert context_tokens(replace(stream, conv_lookahead=-1)) == (8, 8)  # = configs/decoder/soprano.yaml
    plain = HiddenDecoder(tiny_cfg())
    causal = HiddenDecoder(tiny_cfg(conv_lookahead=0))
    causal.load_state_dict(plain.state_dict())  # same parameters: a plain decoder can start a causal one
    with pytest.raises(ValueError, match="conv_lookahead"):
        tiny_cfg(conv_lookahead=0, edges="soprano")
    with pytest.raises(ValueError, match="conv_lookahead"):
        tiny_cfg(conv_lookahead=-2)


def test_export_round_trip(tmp_path):
    torch.manual_seed(0)
    m = HiddenDecoder(tiny_cfg()).eval()
    save_decoder(m, tmp_path / "run" / "export", llm_info={"hidden_size": 16})
    loaded, meta = load_decoder(tmp_path / "run")  # a run dir resolves to its export/
    h = torch.randn(1, 4, 16)
    with torch.no_grad():
        assert torch.equal(m(h), loaded(h))
    assert meta["receptive_field_tokens"] == receptive_field_tokens(m.cfg) and meta["llm"] == {"hidden_size": 16}


def test_load_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such run"):
        load_decoder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a decoder export"):
        load_decoder(tmp_path / "empty")
    save_decoder(HiddenDecoder(tiny_cfg()), tmp_path / "bad")
    (tmp_path / "bad" / "config.json").write_text('{"model": {"hidden_size": 16, "upsample": 3}}')
    with pytest.raises(UserError, match="config.json"):
        load_decoder(tmp_path / "bad")


@pytest.mark.parametrize("kw", [{}, dict(edges="soprano"), dict(conv_lookahead=0), dict(conv_lookahead=1)])
def test_sentences_of_any_lengths_decode_together_as_each_alone(kw):
    """One padded backbone call for several sentences (lengths 1..33, incl. ones with no output under Soprano's
    edges) gives each sentence exactly its own decode: every convolution sees zeros past a sentence's end."""
    torch.manual_seed(0)
    m = HiddenDecoder(tiny_cfg(**kw)).eval()
    with torch.no_grad():  # layer scales start near 0, which would hide the convolutions' edges
        for block in m.backbone.blocks:
            block.gamma.fill_(1.0)
    hiddens = [torch.randn(T, 16) for T in (7, 1, 33, 2, 12)]
    with torch.no_grad():
        together = m.forward_many(hiddens)
        for h, y in zip(hiddens, together):
            alone = m(h[None])[0]
            assert y.shape == alone.shape == (m.output_samples(h.shape[0]),)
            peak = alone.abs().max().item() if alone.numel() else 1.0
            torch.testing.assert_close(y, alone, atol=1e-5 * max(peak, 1e-3), rtol=0)
    with pytest.raises(ValueError, match="per sentence"):
        m.forward_many([torch.randn(1, 4, 16)])
