"""A validation split whose only clip is rejected (issue 11 item 5) is found at start: evaluation is switched
off with a one-line warning and the run finishes with its checkpoint and export, instead of failing at the
final evaluation after all of training (and again on every resume); with trainer.best_metric it is an error."""
import json
from pathlib import Path

from llmtts.cli import main as cli_main
from codec_shards_helper import write_audio_shards

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "codec" / "tiny.yaml"


def train(shards: Path, run: Path, *extra: str) -> int:
    return cli_main(["codec", "train", "--config", str(CONFIG), "--input-dir", str(shards), "--save-dir", str(run),
                     "trainer.max_steps=2", "trainer.eval_every=1", "data.crop_samples=4096",
                     "data.batch_budget=8192", "log.progress=false", "trainer.eval_batches=1", *extra])


def test_unusable_validation_split_is_found_at_start(tmp_path, caplog, capsys):
    # utt0003 is the validation split's only clip, and its FLAC is garbage: the reader rejects it.
    shards = write_audio_shards(tmp_path / "shards", {"train": [3], "val": [1]}, corrupt={"utt0003"})
    run = tmp_path / "run"
    with caplog.at_level("WARNING"):
        assert train(shards, run) == 0
    warnings = [r.getMessage() for r in caplog.records if "validation disabled" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "no usable samples" in warnings[0]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2] and not [r for r in rows if r["split"] == "val"]
    assert (run / "export" / "model.safetensors").is_file()
    assert (run / "checkpoints" / "step_00000002" / "COMPLETE").is_file()

    capsys.readouterr()
    assert train(shards, tmp_path / "best", "trainer.best_metric=loss") == 2
    err = capsys.readouterr().err
    assert "trainer.best_metric=loss needs validation data" in err
    assert not (tmp_path / "best" / "checkpoints").exists()
