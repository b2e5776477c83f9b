"""Re-fitting an imported Soprano decoder: ``decoder train --init-from IMPORTED_DECODER`` with Soprano's edges
(output one token shorter than the target audio) trains from the imported weights, and the result loads in
``TTS.load`` next to the imported LLM."""
from __future__ import annotations

import json

import numpy as np
import torch

import soprano_fixture
from llmtts.audio import encode_flac
from llmtts.cli import main
from llmtts.data.shards import ShardSetWriter, build_index, write_index
from llmtts.decoder.export import load_decoder
from llmtts.infer.tts import TTS
from llmtts.interop.soprano.importer import import_soprano

SR, SPT = 32000, 2048
SMALL = soprano_fixture.SMALL
OVERRIDES = [f"model.dim={SMALL['dec_dim']}", f"model.intermediate_dim={SMALL['dec_inter']}",
             f"model.num_layers={SMALL['dec_layers']}", "recon_crop_tokens=8", "data.batch_budget=65536",
             "data.max_batch_size=2", "data.shuffle_buffer=2", "trainer.device=cpu", "trainer.precision=fp32",
             "trainer.log_every=1", "trainer.eval_every=0", "trainer.eval_batches=1", "log.tensorboard=false",
             "log.progress=false", "trainer.optim.warmup_steps=0", "trainer.optim.lr=1e-3"]


def token_shards(out, n=4, n_audio=1000):
    rng = np.random.default_rng(0)
    w = ShardSetWriter(out, "train", samples_per_shard=2)
    for i in range(n):
        T = int(rng.integers(10, 16))
        t = np.arange(T * SPT) / SR
        wav = (0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t)).astype(np.float32)
        text = "hello there, general kenobi."
        w.write(f"train_{i:03d}", {"flac": encode_flac(wav, SR), "codes.npy": rng.integers(0, n_audio, T).astype(np.int16),
                                   "json": {"text": text, "normalized_text": text, "speaker": "s0",
                                            "duration_s": T * SPT / SR, "sample_rate": SR, "source": "test",
                                            "n_tokens": T, "samples_per_token": SPT, "num_samples": T * SPT}})
    write_index(out, build_index("tokens", w.close(), sample_rate=SR, samples_per_token=SPT,
                                 codebook_size=n_audio, num_codebooks=1))
    return out


def test_refit_imported_decoder_on_the_fly(tmp_path):
    soprano_fixture.build(tmp_path / "model", "small", seed=5)
    import_soprano(tmp_path / "model", tmp_path / "imp")
    shards = token_shards(tmp_path / "tok")
    run = tmp_path / "refit"
    rc = main(["decoder", "train", "--config", "configs/decoder/soprano-1.1.yaml", "--input-dir", str(shards),
               "--llm-path", str(tmp_path / "imp" / "llm"), "--init-from", str(tmp_path / "imp" / "decoder"),
               "--save-dir", str(run), "--stage", "recon", "trainer.max_steps=3", *OVERRIDES])
    assert rc == 0
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert [s["step"] for s in steps] == [1, 2, 3] and all(np.isfinite(s["loss"]) for s in steps)
    before, _ = load_decoder(tmp_path / "imp" / "decoder")
    after, _ = load_decoder(run)
    assert after.cfg == before.cfg and after.cfg.edges == "soprano"
    w0, w1 = before.backbone.embed.weight, after.backbone.embed.weight
    assert not torch.equal(w0, w1) and torch.nn.functional.cosine_similarity(w0.flatten(), w1.flatten(), 0) > 0.9
    tts = TTS.load(tmp_path / "imp" / "llm", run)
    wav, _ = tts.synthesize("Hello there.", max_tokens=6, seed=0)
    assert wav.shape == (5 * SPT,) and np.isfinite(wav).all()
