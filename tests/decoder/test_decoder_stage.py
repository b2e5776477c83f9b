"""Decoder training through the real CLI and trainer: recon, gan from recon, resume, on-the-fly mode."""
from __future__ import annotations

import json

import pytest
import torch

from llmtts.cli import main
from llmtts.config import load_config
from llmtts.data.hidden_format import HiddenFormat
from llmtts.decoder.config import DecoderConfig
from llmtts.decoder.export import load_decoder
from llmtts.decoder.stage import DecoderStage
from llmtts.errors import UserError

from decoder_helpers import TINY_OVERRIDES


def train(*args, steps):
    return main(["decoder", "train", *map(str, args), f"trainer.max_steps={steps}", *TINY_OVERRIDES])


def steps_logged(run):
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line).get("split") == "train"]


@pytest.fixture(scope="module")
def recon_run(data):
    run = data["root"] / "recon"
    assert train("--input-dir", data["hidden"], "--save-dir", run, "--stage", "recon", steps=3) == 0
    return run


def test_recon_exports_a_loadable_decoder(recon_run, data):
    model, meta = load_decoder(recon_run)
    assert meta["sample_rate"] == 16000 and meta["samples_per_token"] == 256
    assert meta["llm"] == {"hidden_size": 32, "n_audio": 64}  # carried over from the hidden shards' index
    rows = [json.loads(line) for line in (recon_run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert {"loss", "mel", "stft_sc", "stft_mag"} <= set(train_rows[-1])
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in train_rows)


def test_gan_starts_from_recon_and_resumes_with_its_discriminator(recon_run, data):
    cfg = load_config(DecoderConfig, None, TINY_OVERRIDES + ["stage=gan", f"init_from={recon_run}"])
    stage = DecoderStage(cfg, data["root"] / "unused", data["hidden"])
    models = stage.build_models()
    recon, _ = load_decoder(recon_run)
    for k, v in recon.state_dict().items():
        assert torch.equal(models["gen"].state_dict()[k], v), k
    assert "disc" in models and stage.optimizer_groups() == {"gen": ["gen"], "disc": ["disc"]}

    run = data["root"] / "gan"
    assert train("--input-dir", data["hidden"], "--save-dir", run, "--stage", "gan", "--init-from", recon_run, steps=2) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert {"loss_disc", "adv", "feature_matching"} <= set(rows[-1])
    # A longer run in the same dir resumes at step 2 (that the discriminator and both optimizers are restored
    # tensor for tensor: test_decoder_resume.py::test_decoder_gan_resume_restores_discriminator_and_optimizers_exactly).
    assert train("--input-dir", data["hidden"], "--save-dir", run, "--stage", "gan", "--init-from", recon_run, steps=3) == 0
    assert steps_logged(run) == [1, 2, 3]
    load_decoder(run)


def test_both_input_modes_give_identical_decoder_inputs(data):
    """Hidden shards (dump-hidden, packed forwards) vs on-the-fly states from the frozen LLM (one utterance
    per forward): same crops, same vectors up to float16 rounding of float-level differences."""
    base = TINY_OVERRIDES + ["recon_crop_tokens=1000"]
    hidden_stage = DecoderStage(load_config(DecoderConfig, None, base), data["root"] / "a", data["hidden"])
    otf_stage = DecoderStage(load_config(DecoderConfig, None, base + [f"llm_path={data['llm']}"]),
                             data["root"] / "b", data["tokens"])
    dev = torch.device("cpu")

    def collect(stage):
        out = {}
        for batch in stage.loader("train", 0, 1, train=False):
            x = stage.inputs(batch, dev)
            for it, h, a in zip(batch.items, x, batch.audio):
                if it.key in out:
                    return out
                out[it.key] = (it.start, h[: batch.n], a)
        return out

    a, b = collect(hidden_stage), collect(otf_stage)
    assert set(a) == set(b) and len(a) == 6
    same = total = 0
    for key in a:
        (sa, ha, wa), (sb, hb, wb) = a[key], b[key]
        assert sa == sb and ha.shape == hb.shape and torch.equal(wa, wb)
        # Equal up to one step of the shards' format where the float-level difference crossed a rounding point.
        if HiddenFormat().dtype == "int8":
            assert ((ha - hb).abs() <= 1.01 * ha.abs().amax(-1, keepdim=True) / 127).all()
        else:
            torch.testing.assert_close(ha, hb, atol=4e-3, rtol=4e-3)
        same += int((ha == hb).sum())
        total += ha.numel()
    assert same / total > 0.95


def test_bad_inputs_are_user_errors(data, tmp_path):
    cfg = load_config(DecoderConfig, None, TINY_OVERRIDES)
    with pytest.raises(UserError, match="kind 'tokens'.*dump-hidden"):
        DecoderStage(cfg, tmp_path, data["tokens"]).train_data(0, 1)
    wrong = load_config(DecoderConfig, None, TINY_OVERRIDES + ["model.hidden_size=48"])
    with pytest.raises(UserError, match="hidden_size=32"):
        DecoderStage(wrong, tmp_path, data["hidden"]).train_data(0, 1)
    with pytest.raises(UserError, match="hidden size 32"):
        DecoderStage(load_config(DecoderConfig, None, TINY_OVERRIDES + ["model.hidden_size=48",
                                                                       f"llm_path={data['llm']}"]), tmp_path, data["tokens"])
    assert main(["decoder", "train", "--input-dir", str(tmp_path / "nope"), "--save-dir", str(tmp_path / "r")]) == 2


def test_token_facts_come_from_the_input(data, tmp_path):
    """A decoder config that leaves hidden_size / sample_rate / samples_per_token out reads them from its input
    (hidden shards' index, or token shards' index + the LLM's width); RUN/config.yaml records the values."""
    from llmtts.decoder.model import HiddenDecoder

    facts = ("model.hidden_size=", "model.sample_rate=", "model.samples_per_token=")
    bare = [o for o in TINY_OVERRIDES if not o.startswith(facts)]
    explicit = load_config(DecoderConfig, None, TINY_OVERRIDES).model
    assert load_config(DecoderConfig, None, bare).model.sample_rate == 0  # the stage config's default: unset
    assert DecoderStage(load_config(DecoderConfig, None, bare), tmp_path / "a", data["hidden"]).cfg.model == explicit
    otf = DecoderStage(load_config(DecoderConfig, None, bare + [f"llm_path={data['llm']}"]), tmp_path / "b",
                       data["tokens"])
    assert otf.cfg.model == explicit
    with pytest.raises(ValueError, match="unset token facts"):  # never a model of the placeholder sizes
        HiddenDecoder(load_config(DecoderConfig, None, bare).model)
    with pytest.raises(UserError, match="needs --input-dir"):
        DecoderStage(load_config(DecoderConfig, None, bare), tmp_path / "c")
    run = tmp_path / "run"
    assert main(["decoder", "train", "--input-dir", str(data["hidden"]), "--save-dir", str(run),
                 "trainer.max_steps=1", *bare]) == 0
    assert load_config(DecoderConfig, run / "config.yaml").model == explicit


def test_bad_samples_are_skipped_and_counted(tmp_path):
    import numpy as np

    from llmtts.audio import encode_flac
    from llmtts.data.shards import ShardSetWriter, build_index, write_index

    w = ShardSetWriter(tmp_path / "h", "train", samples_per_shard=10)
    meta = {"text": "x", "normalized_text": "x", "speaker": "s", "duration_s": 0.1, "sample_rate": 16000}
    wav = np.zeros(20 * 256, dtype=np.float32)
    w.write("good", {"flac": encode_flac(wav, 16000), "hidden.npy": np.zeros((20, 32), np.float16), "json": meta})
    w.write("wide", {"flac": encode_flac(wav, 16000), "hidden.npy": np.zeros((20, 48), np.float16), "json": meta})
    w.write("short", {"flac": encode_flac(wav[:1000], 16000), "hidden.npy": np.zeros((20, 32), np.float16), "json": meta})
    w.write("nohidden", {"flac": encode_flac(wav, 16000), "json": meta})
    nan = np.zeros((20, 32), np.float16)
    nan[3, 5] = np.nan
    w.write("nan", {"flac": encode_flac(wav, 16000), "hidden.npy": nan, "json": meta})
    write_index(tmp_path / "h", build_index("hidden", w.close(), sample_rate=16000, samples_per_token=256))
    stage = DecoderStage(load_config(DecoderConfig, None, TINY_OVERRIDES), tmp_path / "run", tmp_path / "h")
    loader = stage.loader("train", 0, 1, train=False)
    keys = []
    for batch in loader:
        keys += [it.key for it in batch.items]
        if "good" in keys:
            break
    assert keys == ["good"]
    stats = loader.stats
    assert stats["transform_error:HiddenSizeMismatch"] == 1 and stats["transform_error:AudioTokenMismatch"] == 1
    assert stats["missing_hidden.npy"] == 1 and stats["transform_error:NonFiniteHidden"] == 1
