"""``vocab.speakers: auto``: the speaker table comes from the token shards' index (real CLI, trainer and export)."""
import json

import pytest

from llmtts.cli import main
from llmtts.errors import UserError
from llmtts.llm.stage import resolve_speakers
from llmtts.llm.config import VocabConfig
from test_train import train
from token_shards import make_token_shards


def test_auto_speakers_from_the_index_with_a_minimum_count(tmp_path, capsys):
    # 9 utterances over three speakers: alice 3, bob 3, carol 3 in train; val adds alice and bob once each.
    shards = make_token_shards(tmp_path / "tok", n_train=9, n_val=2, speakers=("alice", "bob", "carol"))
    index = json.loads((shards / "index.json").read_text())
    assert {k: v["num_samples"] for k, v in index["speakers"].items()} == {"alice": 4, "bob": 4, "carol": 3}
    run = tmp_path / "run"
    assert train(shards, run, "trainer.max_steps=2", "vocab.speakers=auto", "vocab.min_speaker_utterances=4") == 0
    vocab = json.loads((run / "export" / "vocab.json").read_text())
    assert vocab["speakers"] == ["alice", "bob"]  # carol has 3 < 4: no token, her utterances are skipped
    from llmtts.llm import load_llm

    _, v, _ = load_llm(run)
    with pytest.raises(UserError, match=r"unknown speaker 'carol'.*alice.*bob"):
        v.speaker_id("carol")
    # `llmtts info` lists them (from the JSON files alone).
    assert main(["info", str(run)]) == 0
    assert "speakers:   alice, bob  (2;" in capsys.readouterr().out
    assert main(["info", str(run / "export"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["speakers"] == ["alice", "bob"]
    assert main(["info", str(shards)]) == 2
    assert "not an export directory" in capsys.readouterr().err
    # An explicit list still wins, in its own order.
    assert resolve_speakers(VocabConfig(speakers=["bob", "carol"]), index) == ("bob", "carol")
    # Nobody reaches the minimum: one line, exit 2.
    assert train(shards, tmp_path / "r2", "trainer.max_steps=1", "vocab.speakers=auto",
                 "vocab.min_speaker_utterances=50") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "vocab.speakers=auto" in err and "min_speaker_utterances" in err
    assert main(["llm", "train", "--input-dir", str(shards), "--save-dir", str(tmp_path / "r3"), "--from-scratch",
                 "--config", "configs/llm/tiny.yaml", "vocab.speakers=everyone"]) == 2
