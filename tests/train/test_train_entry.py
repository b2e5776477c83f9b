import argparse

from llmtts.train.entry import add_train_args
from llmtts.train.toy import main


def test_train_args_and_overrides():
    p = argparse.ArgumentParser()
    add_train_args(p)
    args, extra = p.parse_known_args(["--save-dir", "r", "trainer.max_steps=3"])
    assert (args.save_dir, args.resume, args.config, args.input_dir) == ("r", "auto", None, None)
    assert args.accepts_overrides and extra == ["trainer.max_steps=3"]


def test_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["train", "--save-dir", str(tmp_path / "r"), "trainer.max_stepz=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "max_stepz" in err and len(err.splitlines()) == 1
    assert main(["train", "--save-dir", str(tmp_path / "r"), "--input-dir", str(tmp_path / "none")]) == 2
    assert "--input-dir" in capsys.readouterr().err


def test_run_to_completion_returns_0(tmp_path):
    rc = main(["train", "--save-dir", str(tmp_path), "trainer.max_steps=2", "log.progress=false",
               "log.tensorboard=false"])
    assert rc == 0 and (tmp_path / "export" / "model.safetensors").is_file()


def test_bad_save_dir_and_optimizer_values_are_one_line_errors(tmp_path, capsys):
    """Issue 11, item 10: these were tracebacks (the save dir at the first write, lr=-1 in torch's AdamW)."""
    (tmp_path / "file").write_text("mine")
    cases = [(["--save-dir", str(tmp_path / "file")], "--save-dir"),
             (["--save-dir", str(tmp_path / "file" / "run")], "cannot write there"),
             (["--save-dir", str(tmp_path / "r"), "trainer.optim.lr=-1"], "trainer.optim: lr must be"),
             (["--save-dir", str(tmp_path / "r"), "trainer.optim.lr=.nan"], "trainer.optim: lr must be"),
             (["--save-dir", str(tmp_path / "r"), "trainer.optim.betas=[0.9, 1.5]"], "betas"),
             (["--save-dir", str(tmp_path / "r"), "trainer.optim.warmup_steps=-1"], "warmup_steps")]
    for args, words in cases:
        assert main(["train", *args, "trainer.max_steps=2", "log.progress=false", "log.tensorboard=false"]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "file").read_text() == "mine"
