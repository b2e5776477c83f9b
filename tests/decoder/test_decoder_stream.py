"""Incremental decoding of a causal decoder (``llmtts.decoder.stream``): pushed piece by piece, the audio equals
the offline forward over all states, whatever the pieces."""
from __future__ import annotations

import pytest
import torch

from llmtts.decoder.config import DecoderModelConfig
from llmtts.decoder.model import HiddenDecoder
from llmtts.decoder.stream import DecoderStream, can_stream


def causal_decoder(**kw) -> HiddenDecoder:
    base = dict(hidden_size=16, sample_rate=16000, samples_per_token=256, upsample=4, dim=16, intermediate_dim=32,
                num_layers=3, n_fft=256, hop_length=64, conv_lookahead=0)
    base.update(kw)
    torch.manual_seed(0)
    dec = HiddenDecoder(DecoderModelConfig(**base)).double().eval()
    for b in dec.backbone.blocks:
        b.gamma.data.fill_(1.0)  # strong residuals: every convolution's history matters
    return dec


@pytest.mark.parametrize("T,pieces", [(1, [1]), (2, [1, 1]), (2, [2]), (9, [1] * 9), (9, [3, 3, 3]), (23, [1, 2, 4, 8, 8]),
                                      (23, [23]), (23, [0, 5, 0, 18])])
def test_pieces_concatenate_to_the_offline_output(T, pieces):
    dec = causal_decoder()
    h = torch.randn(2, T, 16, dtype=torch.double)
    with torch.no_grad():
        offline = dec(h)
    stream, out, at = DecoderStream(dec), [], 0
    for i, n in enumerate(pieces):
        out.append(stream.push(h[:, at: at + n], final=i == len(pieces) - 1))
        at += n
    got = torch.cat(out, 1)
    assert got.shape == offline.shape
    torch.testing.assert_close(got, offline, atol=1e-9 * offline.abs().max().item(), rtol=0)


def test_audio_leaves_as_soon_as_no_later_state_can_change_it():
    dec = causal_decoder()
    right, spt, pad = dec.context[1], 256, (256 - 64) // 2
    assert right == 1
    h = torch.randn(1, 6, 16, dtype=torch.double)
    stream = DecoderStream(dec)
    assert stream.push(h[:, :1]).shape[1] == 0  # token 0's frames wait for token 1
    # After token t arrives, tokens < t are framed: samples up to t * spt - the iSTFT's trimmed overlap are final.
    for t in range(1, 6):
        assert stream.push(h[:, t: t + 1]).shape[1] == (spt if t > 1 else spt - pad)
    assert stream.push(h[:, :0], final=True).shape[1] == spt + pad


def test_only_causal_centred_decoders_stream():
    assert can_stream(causal_decoder()) and not can_stream(causal_decoder(conv_lookahead=-1))
    with pytest.raises(ValueError, match="causal"):
        DecoderStream(causal_decoder(conv_lookahead=1))
