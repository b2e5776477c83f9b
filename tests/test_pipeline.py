"""The pipeline: step skipping / resume logic on fast real subprocess steps, then the whole tiny pipeline."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from llmtts.errors import UserError
from llmtts.pipeline import PipelineConfig, Runner, Step, build_steps


def _step(name: str, out: Path, counter: Path, fail_flag: Path | None = None) -> Step:
    """A real subprocess that counts its runs, optionally fails, and writes its output last."""
    code = (
        "import sys, pathlib\n"
        f"c = pathlib.Path({str(counter)!r}); c.write_text(c.read_text() + {name!r} + '\\n' if c.exists() else {name!r} + '\\n')\n"
        f"print('working on', {name!r})\n"
        + (f"if pathlib.Path({str(fail_flag)!r}).exists(): print('boom'); sys.exit(3)\n" if fail_flag else "")
        + f"pathlib.Path({str(out)!r}).write_text('ok')\n"
    )
    return Step(name, [sys.executable, "-c", code], out.is_file, [str(out)])


def _runs(counter: Path) -> list[str]:
    return counter.read_text().split() if counter.exists() else []


def test_runner_skips_complete_steps_and_resumes_after_failure(tmp_path):
    root, counter, flag = tmp_path / "run", tmp_path / "count.txt", tmp_path / "fail"
    steps = [_step("a", tmp_path / "a.out", counter), _step("b", tmp_path / "b.out", counter, flag),
             _step("c", tmp_path / "c.out", counter)]
    flag.touch()
    msgs: list[str] = []
    with pytest.raises(UserError, match=r"step 'b' failed \(exit status 3\).*01_b.log"):
        Runner(root, steps, echo=msgs.append).run()
    assert _runs(counter) == ["a", "b"]
    assert "boom" in (root / "logs" / "01_b.log").read_text()
    assert any("boom" in m for m in msgs)  # the failing step's tail is shown
    state = json.loads((root / "pipeline.json").read_text())["steps"]
    assert [s["status"] for s in state] == ["done", "failed", "pending"]

    flag.unlink()
    Runner(root, steps, echo=msgs.append).run()
    assert _runs(counter) == ["a", "b", "b", "c"]  # a not redone, b retried, c run

    Runner(root, steps, echo=msgs.append).run()
    assert _runs(counter) == ["a", "b", "b", "c"]  # everything complete: nothing runs
    state = json.loads((root / "pipeline.json").read_text())["steps"]
    assert all(s["status"] == "skipped (complete)" for s in state)


def test_runner_reruns_when_outputs_vanish_and_from_step(tmp_path):
    root, counter = tmp_path / "run", tmp_path / "count.txt"
    steps = [_step(n, tmp_path / f"{n}.out", counter) for n in "abc"]
    Runner(root, steps, echo=lambda m: None).run()
    (tmp_path / "b.out").unlink()  # a marker without its outputs is not complete
    Runner(root, steps, echo=lambda m: None).run()
    assert _runs(counter) == ["a", "b", "c", "b"]
    r = Runner(root, steps, echo=lambda m: None)
    r.forget_from("b")
    r.run(until="b")
    assert _runs(counter) == ["a", "b", "c", "b", "b"]
    with pytest.raises(UserError, match="unknown step"):
        r.forget_from("nope")


def test_step_exiting_zero_without_outputs_fails(tmp_path):
    step = Step("liar", [sys.executable, "-c", "print('done!')"], lambda: False, ["x"])
    with pytest.raises(UserError, match="outputs are incomplete"):
        Runner(tmp_path, [step], echo=lambda m: None).run()


def test_build_steps_chain_every_stage_in_order(tmp_path):
    cfg = PipelineConfig(run_root=str(tmp_path / "r"))
    names = [s.name for s in build_steps(cfg)]
    assert names == ["corpus", "shards", "codec_train", "codec_encode", "llm_train", "dump_hidden",
                     "decoder_recon", "decoder_gan", "synthesize", "eval_codec", "references", "eval_tts", "report"]
    cfg.corpus.input_dir = str(tmp_path)
    cfg.eval.texts = str(tmp_path / "t.txt")
    names = [s.name for s in build_steps(cfg)]
    assert "corpus" not in names and "references" not in names


def test_validate_fails_fast_on_stage_config_typos(tmp_path):
    from llmtts.pipeline import validate

    cfg = PipelineConfig(run_root=str(tmp_path))
    for sec in (cfg.llm, cfg.decoder_recon, cfg.decoder_gan):
        sec.config = ""  # class defaults: this test is about the codec section
    validate(cfg)  # consistent
    cfg.codec.overrides = ["trainer.max_stepz=3"]
    with pytest.raises(UserError, match=r"pipeline codec: .*max_stepz"):
        validate(cfg)
    cfg.codec.overrides = []
    cfg.shards.sample_rate = 22050
    with pytest.raises(UserError, match="sample_rate"):
        validate(cfg)


def test_second_pipeline_on_same_root_is_refused(tmp_path):
    import fcntl

    (tmp_path / ".pipeline").mkdir()
    with open(tmp_path / ".pipeline" / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        step = Step("x", [sys.executable, "-c", "pass"], lambda: True)
        with pytest.raises(UserError, match="another `llmtts pipeline` is running"):
            Runner(tmp_path, [step], echo=lambda m: None).run()
    Runner(tmp_path, [step], echo=lambda m: None).run()  # released: runs
