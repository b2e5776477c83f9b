"""Audio samples during LLM training: every ``samples.every`` steps, synthesise a few fixed held-out sentences
with the current weights, decode them, log the audio and the offline judge's WER.

Loss curves do not say whether a TTS model speaks; a judge listening to sentences it never trained on does.
Decoding: through a decoder export when ``samples.decoder`` names one (the real path, but a decoder is
fitted to *one* LLM's states, so use one trained on an earlier checkpoint of this run only as a rough
guide), else through the codec that made the training tokens (its path is in the token shards'
``index.json``): codes -> codec decoder, which needs no decoder at all and shows what the LLM predicts.
Runs on rank 0 only, on the unwrapped model (no collectives: skipped under FSDP2 / ZeRO-3, whose forward
needs every rank).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from llmtts.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class SamplesConfig:
    every: int = 0              # steps between sample rounds; 0 = off (also run at the end of training)
    texts: list[str] = field(default_factory=list)  # empty: the first `num` built-in held-out sentences
    num: int = 4
    decoder: str = ""           # decoder export/run dir; "" = the codec from the token shards' index.json
    judge: bool = True          # transcribe with the offline ASR judge (needs the eval extra) and log WER
    asr: str = ""               # local faster-whisper model dir; "" = the default judge
    temperature: float = 0.0    # 0 = greedy: the most likely audio, comparable from round to round
    seed: int = 0
    max_tokens: int = 512

    def __post_init__(self) -> None:
        if self.every < 0 or self.num < 1 or self.max_tokens < 1:
            raise ValueError("samples: every >= 0, num >= 1 and max_tokens >= 1 required")


def sample_texts(cfg: SamplesConfig) -> list[str]:
    if cfg.texts:
        return list(cfg.texts)
    from llmtts.data.corpus import select_sentences

    return select_sentences("heldout")[: cfg.num]


def check_codec_decodes(codec_path: str) -> None:
    """Samples without ``samples.decoder`` decode codes with the shards' codec: an encoder-only codec (Soprano's
    encoder) cannot, which should fail when training starts, not at the first sample round."""
    import json

    try:
        kind = json.loads((Path(codec_path) / "config.json").read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        try:
            kind = json.loads((Path(codec_path) / "export" / "config.json").read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            return
    if kind == "soprano-encoder":
        raise UserError(f"samples: the token shards' codec ({codec_path}) is Soprano's encoder only and makes no "
                        "audio: set samples.decoder (e.g. the imported Soprano decoder), or samples.every=0")


class TrainingSampler:
    """Built once per run on rank 0; ``__call__(model, logger, step)`` does one sample round."""

    def __init__(self, cfg: SamplesConfig, vocab, frontend, codec_path: str | Path | None):
        self.cfg, self.vocab, self.frontend = cfg, vocab, frontend
        self.texts = sample_texts(cfg)
        self._decode, self.sample_rate = self._decoder(cfg, codec_path)
        self._judge = None
        if cfg.judge:
            from llmtts.asr import ASRJudge

            self._judge = ASRJudge(cfg.asr or None, cpu_threads=1)

    def _decoder(self, cfg: SamplesConfig, codec_path):
        if cfg.decoder:
            from llmtts.decoder.export import load_decoder

            dec, _ = load_decoder(cfg.decoder)
            return (lambda hidden, codes: dec(hidden[None])[0]), dec.cfg.sample_rate
        if not codec_path or not Path(codec_path).exists():
            raise UserError(f"samples: no decoder given and the token shards' codec ({codec_path or 'not recorded'}) "
                            "is not available: set samples.decoder, or samples.every=0")
        from llmtts.codec.export import load_codec

        check_codec_decodes(codec_path)
        codec = load_codec(codec_path).eval()
        return (lambda hidden, codes: codec.decode(codes[None])[0]), codec.sample_rate

    @torch.no_grad()
    def __call__(self, model, logger, step: int) -> dict[str, float]:
        from llmtts.eval.wer import word_counts
        from llmtts.infer.generate import generate
        from llmtts.infer.sampling import SamplingConfig
        from llmtts.llm.hidden import prompt_ids

        was_training = model.training
        model.eval()
        try:
            speaker = self.vocab.speakers[0] if self.vocab.speakers else None
            prompts = [prompt_ids(self.vocab, self.frontend, self.frontend.normalize(t), speaker=speaker,
                                  normalized=True) for t in self.texts]
            out = generate(model, prompts, stop_id=self.vocab.stop, audio_offset=self.vocab.audio_offset,
                           n_audio=self.vocab.n_audio, sampling=SamplingConfig(temperature=self.cfg.temperature),
                           max_new_tokens=[self.cfg.max_tokens] * len(prompts), pad_id=self.vocab.pad,
                           generators=[torch.Generator().manual_seed(self.cfg.seed + i) for i in range(len(prompts))],
                           cuda_graphs=False)  # a graph recorded per round would only add work
        finally:
            model.train(was_training)
        edits = words = 0
        for i, text in enumerate(self.texts):
            hidden, codes = out.hidden[i].float().cpu(), torch.as_tensor(out.codes[i]).long().cpu()
            wav = self._decode(hidden, codes).float().cpu().numpy() if len(codes) else np.zeros(1, np.float32)
            logger.log_audio(f"samples/{i}", wav, self.sample_rate, step)
            if self._judge is not None:
                c = word_counts(text, self._judge.transcribe(wav, self.sample_rate))
                edits, words = edits + c.edits, words + c.ref_len
        metrics = {"sample_runaway": float(np.mean([not s for s in out.stopped]))}
        if self._judge is not None:
            metrics["sample_wer"] = edits / max(words, 1)
        logger.log_metrics(metrics, step, "samples")
        return metrics
