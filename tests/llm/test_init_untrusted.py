"""``--init-from`` of a folder someone else made never unpickles: a pickled ``pytorch_model.bin`` (with no
safetensors beside it) and a training checkpoint (DCP ``.metadata`` is a pickle) are one-line errors, and the
payload never runs (issue 11 item 2)."""
import os
import pickle

from llmtts.cli import main
from token_shards import make_token_shards

TINY = "configs/llm/tiny.yaml"
FAST = ["log.progress=false", "log.tensorboard=false", "vocab.n_audio=64", "model.num_hidden_layers=2",
        "model.hidden_size=64", "model.intermediate_size=192", "model.head_dim=16", "trainer.max_steps=1"]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _init_from(shards, source, run, capsys) -> tuple[int, str]:
    capsys.readouterr()  # only what the command prints
    rc = main(["llm", "train", "--input-dir", str(shards), "--save-dir", str(run), "--init-from", str(source),
               "--config", TINY, *FAST])
    return rc, capsys.readouterr().err.strip()


def test_pickled_weights_and_checkpoints_are_refused(tiny_model, tmp_path, capsys):
    shards = make_token_shards(tmp_path / "tok", n_train=4, n_val=0)
    marker = tmp_path / "pwned"
    foreign = tmp_path / "foreign"
    tiny_model.save_pretrained(foreign)  # a real Qwen3 config.json ...
    (foreign / "model.safetensors").unlink()  # ... whose weights are only a pickle
    (foreign / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(str(marker))))
    rc, err = _init_from(shards, foreign, tmp_path / "run1", capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and str(foreign) in err
    assert not marker.exists()

    # A training run's folder without an export (only checkpoints, i.e. pickles): refused, nothing unpickled.
    run = tmp_path / "ckpt_run"
    assert main(["llm", "train", "--input-dir", str(shards), "--save-dir", str(run), "--from-scratch",
                 "--config", TINY, *FAST]) == 0
    meta = next((run / "checkpoints").glob("step_*/dcp/.metadata"))
    meta.write_bytes(pickle.dumps(_Payload(str(marker))))
    (run / "export").rename(tmp_path / "moved_export")
    rc, err = _init_from(shards, run, tmp_path / "run2", capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and "config.json" in err
    assert not marker.exists()
    pickle.loads(meta.read_bytes())  # the payloads are live: the refusals are what kept them from running
    assert marker.is_dir()
