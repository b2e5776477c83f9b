"""Soprano-Encoder import (``llmtts import soprano --encoder encoder.pth``): the imported encoder gives the codes of
a reference forward written here from the published facts with plain torch ops (none of the project's modules),
``llmtts codec encode`` works with the encoder-only export, decoding is a one-line error, and bad checkpoints are
one-line errors naming the key."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import soprano_fixture
from llmtts.audio import encode_flac, resample
from llmtts.codec.export import load_codec
from llmtts.data.shards import ShardSetWriter, build_index, read_index, write_index
from llmtts.errors import UserError
from llmtts.interop.soprano.decoder import read_pth
from llmtts.interop.soprano.encoder import import_encoder, save_encoder

SR = 32000


# ----------------------------------------------------------------------------- the reference, from the facts
def ref_melbank(n_freqs: int, n_mels: int, sr: int) -> torch.Tensor:
    """HTK-scale triangles over 0 .. sr/2, unnormalised (torchaudio MelSpectrogram's defaults)."""
    def hz2mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)
    edges = 700.0 * (10 ** (np.linspace(hz2mel(0.0), hz2mel(sr / 2), n_mels + 2) / 2595.0) - 1.0)
    f = np.linspace(0, sr // 2, n_freqs)
    fb = np.zeros((n_freqs, n_mels))
    for m in range(n_mels):
        lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
        fb[:, m] = np.maximum(0.0, np.minimum((f - lo) / (c - lo), (hi - f) / (hi - c)))
    return torch.from_numpy(fb).float()


def ref_latent(sd: dict[str, torch.Tensor], wav: torch.Tensor) -> torch.Tensor:
    """wav [N] -> latent [T, 5]: log-mel(50, n_fft 2048, hop 512, centred) -> conv k1 -> LN -> ConvNeXt blocks
    (dw k5) -> LN -> every 4th frame -> linear."""
    spec = torch.stft(wav[None], 2048, 512, window=torch.hann_window(2048), center=True, pad_mode="reflect",
                      return_complex=True).abs()[0]                       # [1025, F]
    x = torch.log(torch.clamp(ref_melbank(1025, 50, SR).T @ spec, min=5e-3))[None]  # [1, 50, F]
    x = F.conv1d(x, sd["encoder.embed.weight"], sd["encoder.embed.bias"])
    ln = lambda t, p: F.layer_norm(t, t.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps=1e-6)  # noqa: E731
    x = ln(x.transpose(1, 2), "encoder.norm").transpose(1, 2)
    n_blocks = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.convnext."))
    for i in range(n_blocks):
        p = f"encoder.convnext.{i}."
        w = sd[p + "dwconv.weight"]
        h = F.conv1d(x, w, sd[p + "dwconv.bias"], padding=w.shape[-1] // 2, groups=w.shape[0]).transpose(1, 2)
        h = ln(h, p + "norm")
        h = F.linear(F.gelu(F.linear(h, sd[p + "mlp.pwconv1.weight"], sd[p + "mlp.pwconv1.bias"])),
                     sd[p + "mlp.pwconv2.weight"], sd[p + "mlp.pwconv2.bias"])
        x = x + (sd[p + "gamma"] * h).transpose(1, 2)
    x = ln(x.transpose(1, 2), "encoder.final_layer_norm")[0]             # [F, D]
    return F.linear(x[::4], sd["downsampler.weight"], sd["downsampler.bias"])


def ref_fsq(z: torch.Tensor, levels=(8, 8, 5, 5, 5)) -> tuple[torch.Tensor, torch.Tensor]:
    """codes [T] and the distance of each pre-rounding value to its nearest rounding boundary [T, 5]."""
    code = torch.zeros(z.shape[0], dtype=torch.long)
    margin = torch.zeros_like(z)
    basis = 1
    for i, L in enumerate(levels):
        half = (L - 1) * (1 - 1e-3) / 2
        off = 0.5 if L % 2 == 0 else 0.0
        v = torch.tanh(z[:, i] + math.tan(off / half)) * half - off
        margin[:, i] = (v - torch.floor(v) - 0.5).abs()
        code += (torch.round(v).long() + L // 2) * basis
        basis *= L
    return code, margin


def speechlike(n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    x = sum(0.2 / k * np.sin(2 * np.pi * k * np.cumsum(f0) / SR) for k in range(1, 12))
    x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)
    return torch.from_numpy(x.astype(np.float32))


# ----------------------------------------------------------------------------- tests
def test_imported_encoder_matches_reference_forward_at_soprano_shapes(tmp_path):
    sd = soprano_fixture.encoder_state("real", seed=11)
    torch.save(sd, tmp_path / "encoder.pth")
    enc = import_encoder(read_pth(tmp_path / "encoder.pth"), "encoder.pth")
    assert (enc.cfg.dim, enc.cfg.num_layers, enc.cfg.embed_kernel, enc.cfg.dw_kernel) == (768, 8, 1, 5)
    assert 27e6 < sum(p.numel() for p in enc.parameters()) < 30e6  # "~28 M parameters"
    save_encoder(enc, tmp_path / "codec")
    codec = load_codec(tmp_path / "codec")  # through the export, as `codec encode` loads it
    for n, seed in ((3 * SR, 0), (2048 * 20 + 777, 1)):
        wav = speechlike(n, seed)
        with torch.no_grad():
            z_ref = ref_latent(sd, wav)
            z = codec.encode_latent(wav[None])[0]
            codes = codec.encode(wav[None])[0]
        assert z.shape == z_ref.shape == (codec.num_tokens(n), 5) and z.shape[0] == -(-(n // 512 + 1) // 4)
        assert torch.allclose(z, z_ref, atol=1e-4, rtol=1e-4), (z - z_ref).abs().max()
        want, margin = ref_fsq(z_ref)
        sure = (margin > 1e-3).all(-1)  # a value within 1e-3 of a rounding boundary may round either way
        assert sure.float().mean() > 0.9
        assert torch.equal(codes[sure], want[sure])
        assert len(set(codes.tolist())) >= 5  # not one saturated code: the comparison sees several FSQ digits move
        assert int(codes.max()) < 8000


def test_codec_encode_with_imported_encoder_and_decode_refused(tmp_path, capsys):
    from llmtts.cli import main

    sd = soprano_fixture.encoder_state("tiny", seed=2)
    torch.save(sd, tmp_path / "encoder.pth")
    save_encoder(import_encoder(read_pth(tmp_path / "encoder.pth"), "e"), tmp_path / "codec")
    # audio shards at 16 kHz: encode resamples to the encoder's 32 kHz
    w = ShardSetWriter(tmp_path / "audio", "train", samples_per_shard=2)
    lengths = [16000, 23456, 9000]
    for i, n in enumerate(lengths):
        wav = speechlike(2 * n, i).numpy()[::2].copy()
        w.write(f"u{i}", {"flac": encode_flac(wav, 16000), "json": {"text": "hi", "normalized_text": "hi",
                                                                     "speaker": "me", "duration_s": n / 16000,
                                                                     "sample_rate": 16000, "source": "t"}})
    write_index(tmp_path / "audio", build_index("audio", w.close(), sample_rate=16000))
    assert main(["codec", "encode", "--codec-path", str(tmp_path / "codec"), "--input-dir", str(tmp_path / "audio"),
                 "--out", str(tmp_path / "tok"), "--device", "cpu", "--no-progress", "--batch-size", "3"]) == 0
    index = read_index(tmp_path / "tok")
    assert index["kind"] == "tokens" and index["codebook_size"] == 8000 and index["samples_per_token"] == 2048
    from llmtts.data.parallel_map import iter_shard

    codec = load_codec(tmp_path / "codec")
    got = {s["__key__"]: s for tar in sorted((tmp_path / "tok" / "train").glob("*.tar"))
           for s in iter_shard(tar, fields=["audio", "codes"])}
    assert sorted(got) == ["u0", "u1", "u2"]
    inputs = {s["__key__"]: s for tar in sorted((tmp_path / "audio" / "train").glob("*.tar"))
              for s in iter_shard(tar, fields=["audio"])}
    for key, s in got.items():
        n = s["json"]["num_samples"]
        assert s["codes"].shape == (codec.num_tokens(n),) and s["json"]["n_tokens"] == s["codes"].shape[0]
        assert len(s["audio"]) == s["codes"].shape[0] * 2048 >= n  # padded to whole tokens
        # batched (3 clips of different lengths in one forward call) = each clip alone
        wav = resample(inputs[key]["audio"], 16000, SR)
        alone = codec.encode(torch.from_numpy(wav)[None])[0].numpy()
        assert np.array_equal(s["codes"], alone)
    with pytest.raises(UserError, match="encoder only"):
        codec.decode(torch.zeros(1, 4, dtype=torch.long))
    rc = main(["eval", "codec", "--codec-path", str(tmp_path / "codec"), "--input-dir", str(tmp_path / "audio"),
               "--out", str(tmp_path / "ev"), "--split", "train", "--limit", "1"])
    assert rc == 2 and "encoder only" in capsys.readouterr().err
    # LLM training samples decoded with the shards' codec: refused when training starts, not at the first round
    rc = main(["llm", "train", "--config", "configs/llm/tiny.yaml", "--from-scratch", "--input-dir",
               str(tmp_path / "tok"), "--save-dir", str(tmp_path / "llm"), "samples.every=2", "trainer.max_steps=4"])
    err = capsys.readouterr().err
    assert rc == 2 and "Soprano's encoder only" in err and "samples.decoder" in err


@pytest.mark.parametrize("mutate, message", [
    (lambda sd: sd.pop("encoder.convnext.1.mlp.pwconv2.bias"), "missing key 'encoder.convnext.1.mlp.pwconv2.bias'"),
    (lambda sd: sd.update({"encoder.extra.weight": torch.zeros(3)}), "unexpected key 'encoder.extra.weight'"),
    (lambda sd: sd.update({"encoder.convnext.0.gamma": torch.zeros(7)}), "key 'encoder.convnext.0.gamma' has shape"),
    (lambda sd: sd.update({"downsampler.weight": torch.zeros(4, 32)}), "key 'downsampler.weight' has shape"),
    (lambda sd: sd.update({"quant.levels": torch.tensor([8, 8, 8, 8, 8])}), "key 'quant.levels'"),
    (lambda sd: sd.pop("encoder.embed.weight"), "missing key 'encoder.embed.weight'"),
])
def test_bad_encoder_checkpoint_is_one_line_error(tmp_path, mutate, message):
    sd = soprano_fixture.encoder_state("tiny")
    mutate(sd)
    torch.save(sd, tmp_path / "encoder.pth")
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")) as exc:
        import_encoder(read_pth(tmp_path / "encoder.pth"), str(tmp_path / "encoder.pth"))
    assert "\n" not in str(exc.value) and "encoder.pth" in str(exc.value)


def test_encoder_variants_accepted_and_pickle_refused(tmp_path):
    sd = soprano_fixture.encoder_state("tiny", seed=4)
    base = import_encoder(dict(sd), "a")
    # a whole autoencoder checkpoint (encoder under "encoder.", a mel decoder beside it) and Vocos' block names
    whole = {"encoder." + k: v for k, v in sd.items()} | {"decoder.embed.weight": torch.zeros(2, 5, 1)}
    vocos = {k.replace(".mlp.pwconv", ".pwconv"): v for k, v in sd.items()}
    wav = speechlike(SR, 3)[None]
    with torch.no_grad():
        want = base.encode_latent(wav)
        for variant in (whole, vocos):
            assert torch.equal(import_encoder(variant, "b").encode_latent(wav), want)
        # a checkpoint's own mel filterbank is used (and saved with the export)
        fb = base.fb.clone()
        fb[:, 0] *= 3.0
        own = import_encoder(dict(sd) | {"mel_spec.mel_scale.fb": fb}, "c")
        assert torch.equal(own.fb, fb) and not torch.allclose(own.encode_latent(wav), want)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"encoder.embed.weight": Evil()}))
    with pytest.raises(UserError, match="refused|unreadable"):
        read_pth(tmp_path / "evil.pth")


def test_import_soprano_with_encoder_cli(tmp_path, capsys):
    from llmtts.cli import main
    from llmtts.interop.soprano.encoder import SopranoEncoder

    soprano_fixture.build(tmp_path / "model", "tiny", seed=1)
    torch.save(soprano_fixture.encoder_state("tiny"), tmp_path / "encoder.pth")
    assert main(["import", "soprano", "--model-dir", str(tmp_path / "model"), "--encoder", str(tmp_path / "encoder.pth"),
                 "--out", str(tmp_path / "imp")]) == 0
    assert "encoder only" in capsys.readouterr().out
    codec = load_codec(tmp_path / "imp" / "codec")
    assert isinstance(codec, SopranoEncoder) and codec.quantizer.codebook_size == 8000
    summary = __import__("json").loads((tmp_path / "imp" / "soprano_import.json").read_text())
    assert summary["codec"] == str(tmp_path / "imp" / "codec") and summary["n_audio"] == 8000
    # an LLM with another number of audio tokens than the encoder's 8000 codes: one line, nothing written
    soprano_fixture.build(tmp_path / "small", "small")
    rc = main(["import", "soprano", "--model-dir", str(tmp_path / "small"), "--encoder", str(tmp_path / "encoder.pth"),
               "--out", str(tmp_path / "imp2")])
    err = capsys.readouterr().err
    assert rc == 2 and "8000 codes but the LLM has 1000 audio tokens" in err and not (tmp_path / "imp2").exists()
