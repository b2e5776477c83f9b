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


def test_start_from_turns_the_chain_into_a_fine_tune(tmp_path):
    from llmtts.pipeline import validate

    old = tmp_path / "old"
    for d in ("codec", "llm", "decoder_gan"):
        (old / d).mkdir(parents=True)
    cfg = PipelineConfig(run_root=str(tmp_path / "r"))
    cfg.start_from.codec, cfg.start_from.llm, cfg.start_from.decoder = (str(old / d) for d in ("codec", "llm", "decoder_gan"))
    steps = {s.name: s.argv for s in build_steps(cfg)}
    assert "codec_train" not in steps  # the old codec's token space is what the old LLM knows
    assert steps["codec_encode"][steps["codec_encode"].index("--codec-path") + 1] == str(old / "codec")
    assert steps["llm_train"][steps["llm_train"].index("--init-from") + 1] == str(old / "llm")
    assert "--from-scratch" not in steps["llm_train"]
    assert steps["decoder_recon"][steps["decoder_recon"].index("--init-from") + 1] == str(old / "decoder_gan")
    assert steps["eval_codec"][steps["eval_codec"].index("--codec-path") + 1] == str(old / "codec")
    cfg.start_from.llm = str(tmp_path / "missing")
    with pytest.raises(UserError, match="start_from.llm .*missing: directory not found"):
        validate(cfg)


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


def test_two_voice_config_renders_both_voices_and_checks_the_voice_list(tmp_path):
    from llmtts.config import load_config
    from llmtts.pipeline import resolve_config_path, validate

    cfg = load_config(PipelineConfig, resolve_config_path("configs/pipeline/tiny-2voice.yaml"), [f"run_root={tmp_path}"])
    validate(cfg)
    steps = {s.name: s.argv for s in build_steps(cfg)}
    corpus = steps["corpus"]
    assert corpus[corpus.index("--voice") + 1] == "piper,espeak:en-us+f3" and "--all-speakers" in corpus
    assert "vocab.speakers=auto" in steps["llm_train"]
    ev = steps["eval_tts"]  # the eval judges every speaker the trained model lists
    assert ev[ev.index("--speakers") + 1] == "auto"
    cfg.corpus.voice = "piper,espeak:en-us+f9"
    with pytest.raises(UserError, match="pipeline corpus.voice: voice 'espeak' has no speaker 'en-us\\+f9'"):
        validate(cfg)


def test_shard_rate_is_the_codec_configs(tmp_path):
    """The audio shards' rate is typed once, in the codec config: the pipeline reads it from there."""
    from llmtts.codec.config import CodecConfig
    from llmtts.config import load_config
    from llmtts.pipeline import resolve_config_path, validate

    cfg = load_config(PipelineConfig, resolve_config_path("configs/pipeline/tiny.yaml"), [f"run_root={tmp_path}"])
    assert cfg.shards.sample_rate == 0  # the shipped recipe does not repeat it
    codec_sr = load_config(CodecConfig, resolve_config_path(cfg.codec.config)).model.sample_rate
    shards = {s.name: s.argv for s in build_steps(cfg)}["shards"]
    assert int(shards[shards.index("--sample-rate") + 1]) == codec_sr
    validate(cfg)
    assert cfg.shards.sample_rate == codec_sr  # the resolved config records the rate used
    cfg = PipelineConfig(run_root=str(tmp_path))
    cfg.codec.overrides = ["model.sample_rate=24000"]  # a sample-rate change is one place
    shards = {s.name: s.argv for s in build_steps(cfg)}["shards"]
    assert shards[shards.index("--sample-rate") + 1] == "24000"


def test_second_pipeline_on_same_root_is_refused(tmp_path):
    import fcntl

    (tmp_path / ".pipeline").mkdir()
    with open(tmp_path / ".pipeline" / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        step = Step("x", [sys.executable, "-c", "pass"], lambda: True)
        with pytest.raises(UserError, match="another `llmtts pipeline` is running"):
            Runner(tmp_path, [step], echo=lambda m: None).run()
    Runner(tmp_path, [step], echo=lambda m: None).run()  # released: runs


# ----------------------------------------------------------------------------- the whole tiny pipeline
# Even tinier than configs/pipeline/tiny.yaml: every stage runs a few steps. This is also issue #7's end-to-end
# test (built-in corpus -> ... -> synthesize a wav).
E2E_OVERRIDES = [
    "corpus.num_utterances=10", "shards.val_fraction=0.2", "shards.workers=1", "threads=1",
    "codec.overrides=[trainer.max_steps=4]", "llm.overrides=[trainer.max_steps=4]",
    "decoder_recon.overrides=[trainer.max_steps=2]", "decoder_gan.overrides=[trainer.max_steps=2]",
    "eval.num_utterances=1", "eval.train_utterances=2", "eval.codec_limit=2",
]


def _tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every file of the training runs: a retrain or re-export changes them."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
            for d in ("codec", "llm", "decoder_recon", "decoder_gan") for p in (root / d).rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tiny_pipeline_end_to_end_and_rerun_does_no_training(tmp_path, capsys):
    import re

    import soundfile as sf

    from llmtts.cli import main

    root = tmp_path / "run"
    argv = ["pipeline", "--config", "configs/pipeline/tiny.yaml", "--run-root", str(root), *E2E_OVERRIDES]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"wav: {root / 'synth' / 'sample.wav'}" in out and f"report: {root / 'report.html'}" in out

    # the wav: the decoder's sample rate, whole tokens of audio
    dec = json.loads((root / "decoder_gan" / "export" / "config.json").read_text())
    sr, spt = dec["sample_rate"], dec["samples_per_token"]
    info = sf.info(root / "synth" / "sample.wav")
    assert info.samplerate == sr and info.channels == 1
    assert info.frames > 0 and info.frames % spt == 0
    # eval tts knows the generated token count: the audio is exactly tokens * samples_per_token
    ev = json.loads((root / "eval" / "tts" / "tts_eval.json").read_text())
    for u in ev["utterances"]:
        assert u["n_tokens"] > 0
        assert sf.info(root / "eval" / "tts" / u["wav"]).frames == u["n_tokens"] * spt
        assert u["ref_wer"] is not None and u["ref_wer"] < 0.5  # the judge understands the Piper references
    assert list(ev["sets"]) == ["train", "unseen"]  # sentences it trained on, and sentences it never saw
    assert [ev["sets"][k]["num_utterances"] for k in ("train", "unseen")] == [2, 1]
    for name, summary in ev["sets"].items():
        # A set's WER is its utterances' errors over their words: a word-weighted mean of their WERs, so it lies
        # between their smallest and largest (a set scored from another set's rows, or a plain sum, would not).
        rows = [u for u in ev["utterances"] if u["set"] == name]
        for key, set_key in (("wer", "wer"), ("ref_wer", "ref_wer")):
            lo, hi = min(u[key] for u in rows), max(u[key] for u in rows)
            assert lo - 1e-9 <= summary[set_key] <= hi + 1e-9, (name, key, summary[set_key], lo, hi)
        assert summary["max_length_share"] == sum(u["hit_max_length"] for u in rows) / len(rows)
    assert "WER train " in out and "WER unseen " in out  # the pipeline's closing lines
    # the ladder (the pipeline passes its codec): every reference also judged through the codec and as the decoder's
    # rendering of the LLM's teacher-forced states for its codes
    for name, summary in ev["sets"].items():
        assert summary["codec_wer"] is not None and summary["teacher_forced_wer"] is not None
        assert 0.0 <= summary["teacher_forced_top1"] <= 1.0 and summary["teacher_forced_nll"] > 0.0
        assert f"where the words go ({name}): references " in out
    for u in ev["utterances"]:
        assert u["tf_tokens"] > 0 and sf.info(root / "eval" / "tts" / u["tf_wav"]).frames == u["tf_tokens"] * spt
        assert sf.info(root / "eval" / "tts" / u["codec_wav"]).frames > 0 and isinstance(u["codec_hypothesis"], str)

    # every stage chained: token and hidden shards, exports
    assert json.loads((root / "shards" / "tokens" / "index.json").read_text())["kind"] == "tokens"
    assert json.loads((root / "shards" / "hidden" / "index.json").read_text())["kind"] == "hidden"

    # the report: all sections, a curve per training stage, players for reference / codec / synthesis
    page = (root / "report.html").read_text()
    for sec in ("pipeline", "curves", "codec", "tts", "audio", "spectrograms"):
        assert f'<section id="{sec}">' in page
    assert re.findall(r"<h3>(codec|llm|decoder_recon|decoder_gan)</h3>", page) == \
        ["codec", "llm", "decoder_recon", "decoder_gan"]
    assert "eval/codec/codec_eval.json" in page
    assert "<td>LLM top-1 accuracy on the reference codes</td>" in page  # the ladder's rows
    # the pipeline's sample; per-sentence rows (synthesis + reference) for 2 train + 1 unseen sentences; and
    # reference, codec reconstruction and synthesis of each evaluated utterance
    assert len(re.findall(r"<audio ", page)) == 1 + 3 * 2 + 3 * 3 and "<em>not available</em>" not in page

    # re-run: every step is skipped and no training run is touched (--until: the report, which always runs,
    # was rendered and checked above; rendering it twice more would cost time and check nothing new)
    before = _tree_state(root)
    assert main([*argv, "--until", "eval_tts"]) == 0
    steps = json.loads((root / "pipeline.json").read_text())["steps"]
    assert all(s["status"] == "skipped (complete)" for s in steps if s["name"] != "report"), steps
    assert _tree_state(root) == before

    # interrupted after its last checkpoint but before the export: the decoder step resumes, does not retrain
    import shutil

    shutil.rmtree(root / "decoder_gan" / "export")
    n_rows = len((root / "decoder_gan" / "metrics.jsonl").read_text().splitlines())
    assert main([*argv, "--until", "decoder_gan"]) == 0
    status = {s["name"]: s["status"] for s in json.loads((root / "pipeline.json").read_text())["steps"]}
    assert status["decoder_gan"] == "done" and status["llm_train"] == "skipped (complete)"
    assert (root / "decoder_gan" / "export" / "config.json").is_file()
    train_rows = [json.loads(r) for r in (root / "decoder_gan" / "metrics.jsonl").read_text().splitlines()[n_rows:]]
    assert not [r for r in train_rows if r.get("split") == "train"], "the resumed step trained again"

    # a fine-tune from this run (configs/pipeline/finetune-tiny.yaml): another voice, the codec kept, the LLM and
    # the decoder continuing from this run's exports
    ft = tmp_path / "finetune"
    assert main(["pipeline", "--config", "configs/pipeline/finetune-tiny.yaml", "--run-root", str(ft),
                 f"start_from.codec={root / 'codec'}", f"start_from.llm={root / 'llm'}",
                 f"start_from.decoder={root / 'decoder_gan'}", *E2E_OVERRIDES, "eval.codec=false",
                 "--until", "eval_tts"]) == 0  # its report would be the same page as the one checked above
    names = [s["name"] for s in json.loads((ft / "pipeline.json").read_text())["steps"]]
    assert "codec_train" not in names and not (ft / "codec").exists()
    for stage, old in (("llm", root / "llm"), ("decoder_recon", root / "decoder_gan")):
        _assert_started_from(ft / stage / "export" / "model.safetensors", old / "export" / "model.safetensors")
    assert (ft / "eval" / "tts" / "tts_eval.json").is_file()


def _assert_started_from(new: Path, old: Path) -> None:
    """A few fine-tune steps move the weights a little; a fresh initialisation would be as far as the norms."""
    from safetensors.torch import load_file

    a, b = load_file(str(new)), load_file(str(old))
    # body matrices only: embedding rows beyond the vocabulary start fresh on purpose (llm/init.py)
    shared = [k for k in b if k in a and a[k].shape == b[k].shape and a[k].dim() == 2
              and "embed" not in k and "lm_head" not in k]
    assert shared, f"{new}: no weight matrices in common with {old}"
    for k in shared:
        rel = float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12))
        assert rel < 0.2, f"{new}: {k} moved {rel:.2f} of its norm from {old}: not started from it"


def test_training_steps_go_through_the_launcher(tmp_path):
    cfg = PipelineConfig(run_root=str(tmp_path))
    cfg.launch.mode, cfg.launch.nproc_per_node = "local", 4
    steps = {s.name: s.argv for s in build_steps(cfg)}
    for name in ("codec_train", "codec_encode", "llm_train", "dump_hidden", "decoder_recon", "decoder_gan"):
        argv = steps[name]
        i = argv.index("launch")
        assert argv[i + 1: i + 5] == ["--mode", "local", "--nproc-per-node", "4"], argv
    assert "launch" not in steps["corpus"] and "launch" not in steps["report"]
    cfg.launch.mode, cfg.launch.cluster = "slurm", "slurm/example.yaml"
    argv = {s.name: s.argv for s in build_steps(cfg)}["llm_train"]
    assert "--wait" in argv and argv[argv.index("--cluster") + 1].endswith("slurm/example.yaml")


def test_sigterm_is_forwarded_to_the_running_step(tmp_path):
    """A preempted pipeline stops its step the way the trainer expects (SIGTERM -> checkpoint) and exits."""
    import signal
    import subprocess
    import time

    started, got_term = tmp_path / "started", tmp_path / "got_term"
    child = (
        "import signal, sys, time, pathlib\n"
        f"def h(*a): pathlib.Path({str(got_term)!r}).write_text('checkpointed'); sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, h)\n"
        f"pathlib.Path({str(started)!r}).touch()\n"
        "time.sleep(60)\n"
    )
    driver = (
        "import sys\n"
        "from llmtts.pipeline import Runner, Step\n"
        f"step = Step('train', [sys.executable, '-c', {child!r}], lambda: False)\n"
        "try:\n"
        f"    Runner({str(tmp_path / 'run')!r}, [step]).run()\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", driver])
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert started.exists()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert got_term.read_text() == "checkpointed"
    state = json.loads((tmp_path / "run" / "pipeline.json").read_text())["steps"]
    assert state[0]["status"] == "interrupted"
    assert not (tmp_path / "run" / ".pipeline" / "train.json").exists()


def test_changed_command_is_reported_not_silently_ignored(tmp_path):
    root, counter = tmp_path / "run", tmp_path / "count.txt"
    Runner(root, [_step("a", tmp_path / "a.out", counter)], echo=lambda m: None).run()
    changed = _step("a", tmp_path / "a.out", counter)
    changed.argv = changed.argv + ["--new-flag"]
    msgs: list[str] = []
    Runner(root, [changed], echo=msgs.append).run()
    assert _runs(counter) == ["a"] and "--from a" in msgs[0]


def test_state_records_wall_and_cpu_time(tmp_path):
    burn = Step("burn", [sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"],
                lambda: True)
    Runner(tmp_path, [burn], echo=lambda m: None).run()
    st = json.loads((tmp_path / "pipeline.json").read_text())["steps"][0]
    assert st["cpu_s"] >= 0.3 and st["wall_s"] >= 0.3


def test_missing_eval_extra_skips_evaluation_not_the_pipeline(tmp_path, monkeypatch):
    import importlib.util

    from llmtts.pipeline import drop_unavailable_evals

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("faster_whisper", "pesq")
                        else real(name, *a))
    cfg = PipelineConfig(run_root=str(tmp_path))
    notes: list[str] = []
    drop_unavailable_evals(cfg, echo=notes.append)
    names = [s.name for s in build_steps(cfg)]
    assert "eval_tts" not in names and "eval_codec" not in names and names[-2:] == ["synthesize", "report"]
    assert len(notes) == 2 and all("pip install -e '.[eval]'" in n for n in notes)


def test_threads_setting_reaches_the_steps(tmp_path):
    out = tmp_path / "omp.txt"
    step = Step("t", [sys.executable, "-c", f"import os, pathlib; pathlib.Path({str(out)!r}).write_text("
                                           "os.environ.get('OMP_NUM_THREADS', '-'))"], out.is_file)
    Runner(tmp_path / "run", [step], echo=lambda m: None, env={"OMP_NUM_THREADS": "1"}).run()
    assert out.read_text() == "1"


def test_help_lists_every_step_name(tmp_path):
    from llmtts.cli import build_parser

    names = [s.name for s in build_steps(PipelineConfig(run_root=str(tmp_path)))]
    sub = build_parser()._subparsers._group_actions[0].choices["pipeline"]
    assert all(n in sub.epilog for n in names)


def test_multi_process_launch_needs_a_parallel_strategy(tmp_path):
    from llmtts.pipeline import validate

    cfg = PipelineConfig(run_root=str(tmp_path))
    cfg.llm.config = cfg.decoder_recon.config = cfg.decoder_gan.config = ""
    cfg.launch.mode, cfg.launch.nproc_per_node = "local", 2
    with pytest.raises(UserError, match=r"codec's parallel.strategy is 'none'.*codec.overrides=\[parallel.strategy=ddp\]"):
        validate(cfg)
    for sec in (cfg.codec, cfg.llm, cfg.decoder_recon, cfg.decoder_gan):
        sec.overrides = ["parallel.strategy=ddp"]
    validate(cfg)
