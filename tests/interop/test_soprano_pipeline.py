"""``configs/pipeline/finetune-soprano.yaml`` end to end on a tiny Soprano-shaped stand-in (Soprano's layout, 8000
codes, random weights, tiny widths): import (LLM + decoder + encoder) -> shards from "the user's recordings" ->
encode with the imported encoder -> LLM fine-tune from the import -> dump hidden -> decoder re-fit from the
imported decoder (recon, GAN) -> synthesize -> report; a rerun skips every step."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from safetensors.torch import load_file

import soprano_fixture
from llmtts.cli import main

SR = 32000
TEXTS = ["hello there, this is my voice.", "the quick brown fox jumps.", "one more sentence to learn.",
         "a short one.", "what a nice day it is.", "good night and good luck."]
DEC = ["model.hidden_size=64", "model.dim=32", "model.intermediate_dim=64", "model.num_layers=2",
       "recon_crop_tokens=8", "gan_crop_tokens=4", "data.batch_budget=65536", "data.max_batch_size=2",
       "data.shuffle_buffer=2", "data.num_workers=0", "trainer.max_steps=2", "trainer.eval_every=0",
       "trainer.log_every=1", "trainer.precision=fp32", "trainer.optim.warmup_steps=0", "log.progress=false",
       "log.tensorboard=false"]


def recordings(root: Path) -> Path:
    """An LJSpeech-format folder (metadata.csv + wavs/) of speech-like tones: the user's own data."""
    rng = np.random.default_rng(0)
    (root / "wavs").mkdir(parents=True)
    rows = []
    for i, text in enumerate(TEXTS):
        n = int(SR * rng.uniform(0.8, 1.3))
        t = np.arange(n) / SR
        f0 = rng.uniform(100, 200) * (1 + 0.1 * np.sin(2 * np.pi * 2 * t))
        wav = sum(0.2 / k * np.sin(2 * np.pi * k * np.cumsum(f0) / SR) for k in range(1, 8)) * np.hanning(n)
        sf.write(root / "wavs" / f"u{i:02d}.wav", wav.astype(np.float32), SR)
        rows.append(f"u{i:02d}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def tiny_variant(tmp: Path, model: Path, encoder: Path, corpus: Path) -> Path:
    """The shipped config with the stand-in's paths and tiny budgets (the recipe's own overrides kept first)."""
    cfg = yaml.safe_load(Path("configs/pipeline/finetune-soprano.yaml").read_text())
    cfg["start_from"] = {"soprano": str(model), "soprano_encoder": str(encoder)}
    cfg["corpus"] = {"input_dir": str(corpus), "format": "ljspeech"}
    cfg["shards"].update(workers=1, samples_per_shard=4, val_fraction=0.2)
    cfg["threads"] = 1
    cfg["llm"]["overrides"] += ["trainer.max_steps=4", "trainer.eval_every=0", "trainer.log_every=1",
                                "data.num_workers=0", "data.batch_budget=4096", "packing.row_length=512",
                                "log.progress=false", "log.tensorboard=false"]
    cfg["decoder_recon"]["overrides"] += DEC
    cfg["decoder_gan"]["overrides"] += DEC + ["gan.disc_warmup_steps=0"]
    cfg["synthesize"]["extra"] += ["--max-tokens", "6"]
    cfg["eval"] = {"enabled": False}
    out = tmp / "finetune-soprano-tiny.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


def moved(new: Path, old: Path, prefix: str = "") -> float:
    """Largest relative change of the shared weight matrices: a few steps from ``old`` move them a little."""
    a, b = load_file(str(new)), load_file(str(old))
    shared = [k for k in b if k in a and a[k].shape == b[k].shape and a[k].dim() >= 2 and k.startswith(prefix)]
    assert shared
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)) for k in shared)


@pytest.mark.slow
def test_finetune_soprano_pipeline_end_to_end_on_tiny_stand_in(tmp_path, capsys):
    soprano_fixture.build(tmp_path / "soprano", "tiny", seed=21)
    torch.save(soprano_fixture.encoder_state("tiny", seed=3), tmp_path / "encoder.pth")
    config = tiny_variant(tmp_path, tmp_path / "soprano", tmp_path / "encoder.pth", recordings(tmp_path / "mine"))
    root = tmp_path / "run"
    argv = ["pipeline", "--config", str(config), "--run-root", str(root)]
    assert main(argv) == 0, capsys.readouterr().err[-3000:]
    steps = json.loads((root / "pipeline.json").read_text())["steps"]
    assert [s["name"] for s in steps] == ["import", "shards", "codec_encode", "llm_train", "dump_hidden",
                                          "decoder_recon", "decoder_gan", "synthesize", "report"]
    imp = root / "soprano"
    # encoded with the imported encoder: Soprano's 8000 codes, 2048 samples per token at 32 kHz
    index = json.loads((root / "shards" / "tokens" / "index.json").read_text())
    assert index["codec"] == str((imp / "codec").resolve()) and index["codebook_size"] == 8000
    assert index["sample_rate"] == SR and index["samples_per_token"] == 2048
    # the LLM continued from the import, with its front end and its row count
    from llmtts.llm.export import load_llm

    _, v_imp, _ = load_llm(imp / "llm")
    _, v_ft, f_ft = load_llm(root / "llm")
    assert v_ft == v_imp and f_ft.tokenizer.kind == "soprano"
    assert 0 < moved(root / "llm" / "export" / "model.safetensors", imp / "llm" / "model.safetensors",
                     "model.layers.") < 0.2
    # the decoder re-fitted from Soprano's decoder, then GAN from the re-fit; it loads next to the new LLM
    recon = root / "decoder_recon" / "export" / "model.safetensors"
    assert 0 < moved(recon, imp / "decoder" / "model.safetensors") < 0.2
    from llmtts.infer.tts import TTS

    tts = TTS.load(root / "llm", root / "decoder_gan")
    assert tts.decoder.cfg.edges == "soprano"
    info = sf.info(root / "synth" / "sample.wav")
    assert info.samplerate == SR and info.frames > 0 and info.frames % 2048 == 0
    assert (root / "report.html").is_file()
    # every step is now complete: a rerun would skip them all (the report is always rewritten)
    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0
    marks = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines() if line.strip())
    assert all(marks[s["name"]] == "[complete]" for s in steps if s["name"] != "report"), marks


def test_soprano_start_builds_import_first_and_no_codec_reconstruction(tmp_path):
    """Without running anything: the import step comes first, its exports fill start_from, the LLM trains with the
    imported front end, and nothing asks the encoder-only codec for audio."""
    from llmtts.config import load_config
    from llmtts.errors import UserError
    from llmtts.pipeline import PipelineConfig, build_steps, validate

    (tmp_path / "soprano").mkdir()
    (tmp_path / "encoder.pth").write_bytes(b"")
    (tmp_path / "mine").mkdir()
    base = [f"run_root={tmp_path / 'run'}", f"start_from.soprano={tmp_path / 'soprano'}",
            f"corpus.input_dir={tmp_path / 'mine'}", "eval.codec=true"]
    cfg = load_config(PipelineConfig, "configs/pipeline/finetune-soprano.yaml",
                      [*base, f"start_from.soprano_encoder={tmp_path / 'encoder.pth'}"])
    validate(cfg)
    steps = {s.name: s.argv for s in build_steps(cfg)}
    imp = tmp_path / "run" / "soprano"
    assert list(steps)[:3] == ["import", "shards", "codec_encode"] and "codec_train" not in steps
    assert steps["import"][-2:] == ["--encoder", str(tmp_path / "encoder.pth")]
    assert steps["codec_encode"][steps["codec_encode"].index("--codec-path") + 1] == str(imp / "codec")
    llm = steps["llm_train"]
    assert llm[llm.index("--init-from") + 1] == str(imp / "llm") and f"vocab.tokenizer=frontend:{imp / 'llm'}" in llm
    rec = steps["decoder_recon"]
    assert rec[rec.index("--init-from") + 1] == str(imp / "decoder")
    assert "eval_codec" not in steps and "--codec-path" not in steps["eval_tts"]
    # without the encoder (and no codec given) the tokens would not be Soprano's: refused before anything runs
    with pytest.raises(UserError, match="soprano_encoder"):
        validate(load_config(PipelineConfig, "configs/pipeline/finetune-soprano.yaml", base))
    with pytest.raises(UserError, match="file not found"):
        validate(load_config(PipelineConfig, "configs/pipeline/finetune-soprano.yaml",
                             [*base, f"start_from.soprano_encoder={tmp_path / 'nope.pth'}"]))
