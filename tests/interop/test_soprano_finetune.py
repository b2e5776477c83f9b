"""Fine-tuning an imported Soprano LLM: ``llm train --init-from IMPORTED vocab.tokenizer=frontend:IMPORTED`` keeps
specials, audio codes and text rows by meaning, trains, resumes, and the result still exports to Soprano."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

import soprano_fixture
from llmtts.cli import main
from llmtts.interop.soprano.exporter import export_soprano
from llmtts.interop.soprano.importer import import_soprano
from llmtts.llm.export import load_llm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))
from token_shards import make_token_shards  # noqa: E402

FAST = ["log.progress=false", "log.tensorboard=false", "trainer.log_every=1", "packing.enabled=true",
        "packing.row_length=128", "data.batch_budget=256", "trainer.optim.warmup_steps=1",
        "trainer.optim.schedule=constant", "trainer.optim.lr=1e-4", "trainer.eval_every=0"]


def metrics(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in x]


def test_finetune_from_imported_soprano_keeps_rows_trains_and_resumes(tmp_path, soprano_decoder_dir):
    soprano_fixture.build(tmp_path / "model", "small", seed=3)
    import_soprano(tmp_path / "model", tmp_path / "imp")
    llm = tmp_path / "imp" / "llm"
    m0, v0, _ = load_llm(llm)
    shards = make_token_shards(tmp_path / "tok", n_train=6, n_val=0, n_audio=1000)
    run = tmp_path / "ft"
    args = ["llm", "train", "--config", "configs/llm/tiny.yaml", "--input-dir", str(shards), "--save-dir", str(run),
            "--init-from", str(llm), f"vocab.tokenizer=frontend:{llm}", f"model.vocab_size={v0.size}", *FAST]
    assert main([*args, "trainer.max_steps=3"]) == 0
    m1, v1, f1 = load_llm(run)
    assert v1 == v0 and f1.tokenizer.kind == "soprano" and f1.normalizer == "soprano"
    e0, e1 = m0.get_input_embeddings().weight, m1.get_input_embeddings().weight
    # Rows kept by meaning (then moved a little by 3 steps at lr 1e-4), not re-initialised:
    close = torch.nn.functional.cosine_similarity(e0[1:v0.used], e1[1:v0.used], dim=1)
    assert close.min() > 0.9, close.min()
    losses = [m["loss_audio"] for m in metrics(run)]
    assert len(losses) == 3 and all(x == x for x in losses)
    assert main([*args, "trainer.max_steps=5"]) == 0  # resume from step 3
    assert [m["step"] for m in metrics(run)] == [1, 2, 3, 4, 5]
    # The fine-tuned LLM goes back to Soprano's layout: Soprano row of [STOP] = the fine-tuned stop row.
    m2, v2, f2 = load_llm(run)
    out = export_soprano(run, soprano_decoder_dir, tmp_path / "back")
    back = load_file(str(out / "model.safetensors"))
    stop = soprano_fixture.SPECIALS.index("[STOP]")
    assert torch.equal(back["lm_head.weight"][stop], m2.lm_head.weight[v2.stop])
    assert torch.equal(back["model.embed_tokens.weight"][4 + 9], m2.get_input_embeddings().weight[v2.audio_offset + 9])
    assert not torch.equal(back["lm_head.weight"], load_file(str(tmp_path / "model" / "model.safetensors"))["lm_head.weight"])
