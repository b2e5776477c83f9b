"""The LLM stage through the real CLI, trainer, shard reader and export (tiny model, seconds)."""
import json

import torch

from llmtts.cli import main
from token_shards import make_token_shards

TINY = "configs/llm/tiny.yaml"
FAST = ["packing.enabled=true", "log.progress=false", "log.tensorboard=false", "trainer.log_every=1", "vocab.n_audio=64",
        "packing.row_length=128", "data.batch_budget=512", "model.max_position_embeddings=256",
        "model.num_hidden_layers=2", "model.hidden_size=64", "model.intermediate_size=192", "model.head_dim=16"]


def metrics(run, split="train"):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [m for m in lines if m["split"] == split]


def train(shards, run, *extra, init=("--from-scratch",)):
    return main(["llm", "train", "--input-dir", str(shards), "--save-dir", str(run), *init,
                 "--config", TINY, *FAST, *extra])


def test_tiny_overfits_exports_and_resumes(tmp_path):
    from transformers import AutoModelForCausalLM

    shards = make_token_shards(tmp_path / "tok", n_train=8, n_val=4, extra_bad=True)
    run = tmp_path / "run"
    assert train(shards, run, "trainer.max_steps=30", "trainer.optim.warmup_steps=5",
                 "trainer.optim.schedule=constant") == 0
    losses = [m["loss_audio"] for m in metrics(run)]
    assert len(losses) == 30
    assert sum(losses[-3:]) / 3 <= 0.5 * losses[0], losses
    # The two bad samples (codes out of range, no text) are skipped and counted, never fatal.
    assert metrics(run)[-1]["skipped_samples"] >= 2
    val = metrics(run, "val")[-1]
    assert 0.0 <= val["audio_acc"] <= 1.0 and val["loss"] > 0
    # Export: a plain HF directory plus our vocabulary files.
    export = run / "export"
    model = AutoModelForCausalLM.from_pretrained(str(export), local_files_only=True)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    vocab = json.loads((export / "vocab.json").read_text())
    assert vocab["n_audio"] == 64 and vocab["audio_offset"] == 4
    assert model.get_input_embeddings().weight.shape[0] == vocab["size"]
    # Resume: 6 more steps continue the curve (no restart from the initial loss).
    assert train(shards, run, "trainer.max_steps=36", "trainer.optim.warmup_steps=5",
                 "trainer.optim.schedule=constant") == 0
    resumed = [m for m in metrics(run) if m["step"] > 30]
    assert [m["step"] for m in resumed] == list(range(31, 37))
    assert resumed[0]["loss_audio"] < 0.6 * losses[0]


def test_init_from_export_remaps_embeddings(tmp_path, caplog):
    shards = make_token_shards(tmp_path / "tok", n_train=4, n_val=0)
    first = tmp_path / "first"
    assert train(shards, first, "trainer.max_steps=2") == 0
    from llmtts.llm import load_llm

    m1, v1, _ = load_llm(first)
    # Continue with a larger codebook: specials, old audio codes and characters keep their rows.
    second = tmp_path / "second"
    with caplog.at_level("INFO"):
        assert train(shards, second, "trainer.max_steps=1", "vocab.n_audio=80", "trainer.optim.lr=0",
                     init=("--init-from", str(first))) == 0
    assert "kept" in caplog.text and "by meaning" in caplog.text
    m2, v2, _ = load_llm(second)
    e1, e2 = m1.get_input_embeddings().weight, m2.get_input_embeddings().weight
    torch.testing.assert_close(e2[:4 + 64], e1[:4 + 64])                       # specials + shared audio codes
    torch.testing.assert_close(e2[v2.text_offset:v2.used], e1[v1.text_offset:v1.used])  # characters moved up
    torch.testing.assert_close(m2.model.layers[0].mlp.up_proj.weight, m1.model.layers[0].mlp.up_proj.weight)


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    shards = make_token_shards(tmp_path / "tok", n_train=4, n_val=0)
    assert main(["llm", "train", "--input-dir", str(shards), "--save-dir", str(tmp_path / "r"), "--config", TINY]) == 2
    assert "exactly one of --from-scratch or --init-from" in capsys.readouterr().err
    multi = make_token_shards(tmp_path / "multi", n_train=4, n_val=0, multi_codebook=True)
    assert train(multi, tmp_path / "r2") == 2
    err = capsys.readouterr().err
    assert "single-codebook" in err and "[T, Q]" in err and len(err.strip().splitlines()) == 1
    # A run's vocabulary cannot change under it on resume.
    assert train(shards, tmp_path / "r3", "trainer.max_steps=1") == 0
    assert train(shards, tmp_path / "r3", "trainer.max_steps=2", "vocab.n_audio=100") == 2
    assert "different vocabulary" in capsys.readouterr().err
