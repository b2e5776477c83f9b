"""Text in, waveform out: ``TTS.load(llm_path, decoder_path)`` then ``synthesize`` / ``synthesize_batch`` /
``stream``.

Text goes through the LLM's own front end (normaliser + tokenizer from ``frontend.json``), is split into
sentences (``text.py``), each sentence is generated with a KV cache (``generate.py``) and its hidden
states are decoded to audio (``llmtts.decoder``); the sentences' audio is concatenated.

Randomness: sentence ``j`` of a text is sampled with its own generator seeded from ``(seed, j)``. A text
therefore gives the same audio alone, inside ``synthesize_batch`` and through ``stream`` (up to rounding: with
bf16 / int8 weights a batch of other texts may sample another token now and then; ``stream`` generates the same
batches as ``synthesize`` and so the same tokens at every precision: docs/inference.md).
"""
from __future__ import annotations

import copy
import logging
import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from llmtts.decoder.export import load_decoder
from llmtts.decoder.model import HiddenDecoder, shard_precision
from llmtts.errors import UserError
from llmtts.infer.cast import DTYPES, cast_llm
from llmtts.infer.canary import CANARY_TEXT, KERNEL_REL_BOUND, canary_enabled, check_cast
from llmtts.infer.generate import generate, generate_steps
from llmtts.infer.sampling import SamplingConfig
from llmtts.infer.stream import StreamDecoder
from llmtts.text.sentences import is_speakable

log = logging.getLogger(__name__)

# LLM weight formats. Decoding one token reads every weight once, so on a CPU fewer bytes per weight is
# the main speed lever; bf16 / int8 states differ from fp32 by a few 1e-2 relative (documented trade-off).
LOAD_DTYPES = DTYPES + ("auto",)  # auto: the fastest format the kernel canary clears on this CPU (dtype_choice.py)


def check_device(device: str) -> None:
    """A one-line error for a device this torch build or machine does not have (else a traceback from deep
    inside the first ``.to(device)``)."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"device {device!r}: not a torch device (cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= n:
            raise UserError(f"device {device!r}: this machine has {n} CUDA device(s)"
                            + ("" if torch.backends.cuda.is_built() else " (a CPU-only torch build)"))


@dataclass
class SynthesisOptions:
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seed: int | None = None  # None = a fresh random seed per call
    max_tokens: int = 512  # per sentence (Soprano: 512 tokens = 32.8 s at 15.6 tokens/s)
    # Per-sentence guard against runaway generation: at most this many tokens per text id, plus slack.
    tokens_per_text_id: float = 4.0
    min_tokens: int = 1  # [stop] is masked for this many steps: never an empty wav
    max_chars: int = 300  # sentence length for splitting
    min_chars: int = 30  # shorter sentences are merged with a neighbour
    max_text_chars: int = 100_000  # refuse absurd inputs instead of working for hours
    batch_size: int = 8  # sentences generated together
    speaker: str | None = None
    # The model's positions (max_position_embeddings; 0 = unknown): a sentence never generates past them, where a
    # rotary model would go on producing noise instead of failing (set by TTS from the loaded model).
    max_positions: int = 0

    def max_new_tokens(self, n_prompt: int) -> int:
        n = max(self.min_tokens, min(self.max_tokens, math.ceil(self.tokens_per_text_id * n_prompt) + 16))
        return max(1, min(n, self.max_positions - n_prompt)) if self.max_positions else n


def options_from_inference(defaults: dict) -> SynthesisOptions:
    """``SynthesisOptions`` with an export's checked ``inference.json`` values (``llmtts.llm.export``) over the
    built-in defaults; an export without one gets the built-in defaults."""
    sampling_keys = set(SamplingConfig.__dataclass_fields__)
    samp = {k: v for k, v in defaults.items() if k in sampling_keys}
    rest = {k: v for k, v in defaults.items() if k not in sampling_keys}
    return SynthesisOptions(sampling=SamplingConfig(**samp), **rest)


def _sentence_seed(seed: int, j: int) -> int:
    return (seed * 1_000_003 + j * 0x9E3779B1) % (2**63 - 1)


class TTS:
    def __init__(self, llm, vocab, frontend, decoder: HiddenDecoder, decoder_meta: dict | None = None,
                 dtype: str = "fp32", options: SynthesisOptions | None = None):
        """``dtype`` other than fp32 also runs the decoder under bf16 autocast (its iSTFT stays fp32) where bf16
        is fast (a GPU, a CPU with native bf16: ``decoder_bf16``).
        ``options``: the defaults every call starts from (``load`` passes the export's ``inference.json``);
        keyword arguments of a call override them."""
        self.llm, self.vocab, self.frontend, self.decoder = llm, vocab, frontend, decoder
        self.decoder_meta = decoder_meta or {}
        if dtype not in DTYPES:
            raise UserError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        self.dtype = dtype
        self.options = options or SynthesisOptions()
        self._check_pair()
        self.last_stats: dict = {}
        self.canary = None  # the kernel canary's result (``check_against``), when it ran
        self.format_table = None  # with ``load(dtype="auto")``: every candidate format, measured (dtype_choice.py)
        self._batch_decode: bool | None = None  # None: by device (``batch_decode``)

    # --- loading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, llm_path: str | Path, decoder_path: str | Path, device: str = "cpu", dtype: str = "fp32") -> "TTS":
        """``llm_path``/``decoder_path``: run directories or their ``export/``. ``dtype``: LLM weights,
        ``fp32``, ``bf16``, ``int8`` or ``int4`` (weight-only, CPU; fewer bytes read per token: CPU decoding is
        bandwidth bound), or ``auto`` (each measured on this CPU, the fastest the canary clears: ``dtype_choice``).
        The LLM export's ``inference.json`` (the recipe's sampling defaults), if any, becomes ``self.options``."""
        from llmtts.llm import load_llm
        from llmtts.llm.export import load_inference

        if dtype not in LOAD_DTYPES:
            raise UserError(f"dtype must be one of {list(LOAD_DTYPES)}, got {dtype!r}")
        if not Path(llm_path).exists():
            raise UserError(f"LLM path {llm_path}: no such run or export directory")
        check_device(device)
        options = options_from_inference(load_inference(llm_path))  # a bad inference.json fails before loading
        decoder, meta = load_decoder(decoder_path, device=device)
        llm, vocab, frontend = load_llm(llm_path, device=device)
        table = None
        if dtype == "auto":  # measured here, for this model: the fastest format the canary clears
            from llmtts.infer.dtype_choice import describe, measure_formats, pick

            probe = cls(llm, vocab, frontend, decoder, meta, options=options)
            table = measure_formats(llm, probe.prepare(CANARY_TEXT)[0], vocab)
            dtype = pick(table)
            log.info("--dtype auto chose %s on this CPU:\n  %s", dtype, "\n  ".join(describe(table)))
        # auto's choice was checked by the canary while it was measured (the same cast, the same kernels)
        reference = copy.deepcopy(llm) if table is None and canary_enabled(dtype) else None
        tts = cls(cast_llm(llm, dtype), vocab, frontend, decoder, meta, dtype=dtype, options=options)
        if reference is not None:
            tts.check_against(reference)
        if table is not None:
            tts.canary = next(r.canary for r in table if r.dtype == dtype)
        tts.format_table = table
        return tts

    def check_against(self, reference) -> None:
        """The kernel canary (``canary.py``): this model's reduced-precision path against ``reference``, its fp32
        original, on a fixed sentence; a one-line ``UserError`` when the kernels or the format disagree.
        The result is kept in ``self.canary``."""
        prompt = self.prepare(CANARY_TEXT)[0]
        self.canary = check_cast(reference, self.llm, self.dtype, prompt, self.vocab)
        if self.canary is not None:
            log.info("kernel canary %s: states %.3f from the format's fp32 emulation (bound %.2f), picks within "
                     "1 nat of fp32's at %.0f%% of steps", self.dtype, self.canary.kernel_rel, KERNEL_REL_BOUND, 100 * self.canary.agreement)

    def _check_pair(self) -> None:
        d_llm = self.llm.config.hidden_size
        d_dec = self.decoder.cfg.hidden_size
        if d_llm != d_dec:
            raise UserError(f"LLM hidden size {d_llm} does not match the decoder's input size {d_dec}: "
                            "the decoder was trained on another LLM's states (retrain it with dump-hidden of this LLM)")
        rows = self.llm.lm_head.out_features
        if rows < self.vocab.audio_offset + self.vocab.n_audio:
            raise UserError(f"LLM has {rows} output rows but its vocabulary needs "
                            f"{self.vocab.audio_offset + self.vocab.n_audio}")
        info = self.decoder_meta.get("llm") or {}
        for key, have in (("n_audio", self.vocab.n_audio), ("vocab_size", rows), ("hidden_size", d_llm)):
            if key in info and int(info[key]) != have:
                raise UserError(f"decoder was trained on an LLM with {key}={info[key]}, this LLM has {have}")

    @property
    def decoder_bf16(self) -> bool:
        """The decoder runs under bf16 autocast: a non-fp32 dtype, unless on a CPU without native bf16, where
        autocast made the soprano decoder ~10x slower (AVX2 AMD EPYC: 64 tokens 0.9 s fp32, 10-13 s bf16)."""
        from llmtts.infer.quant import cpu_has_fast_bf16

        dev = next(self.decoder.parameters()).device
        return self.dtype != "fp32" and (dev.type != "cpu" or cpu_has_fast_bf16())

    @property
    def sample_rate(self) -> int:
        return self.decoder.cfg.sample_rate

    @property
    def samples_per_token(self) -> int:
        return self.decoder.cfg.samples_per_token

    # --- text -------------------------------------------------------------------------------------
    def _encode_sentence(self, sentence: str, speaker: str | None) -> list[int]:
        from llmtts.llm.hidden import prompt_ids

        tok = self.frontend.tokenizer
        symbols = getattr(tok, "symbols", None)
        if symbols is not None:
            # Characters the tokenizer has no id for are dropped (logged), not fatal: the normaliser
            # maps what it can to ASCII, the rest carries no speech.
            known = set(symbols)
            kept = "".join(ch for ch in sentence if ch in known)
            if kept != sentence:
                dropped = sorted(set(ch for ch in sentence if ch not in known))
                log.warning("dropped characters the model has no ids for: %s", "".join(dropped)[:40])
            sentence = kept
        return prompt_ids(self.vocab, self.frontend, sentence, speaker=speaker, normalized=True)

    def _speaker(self, o: SynthesisOptions) -> str | None:
        """The call's speaker (``o``, not ``self.options``: a per-call ``speaker=`` must reach the prompt); the
        model's first speaker when none is given; a one-line error naming the known ones for an unknown name."""
        if o.speaker is None:
            return self.vocab.speakers[0] if self.vocab.speakers else None
        if o.speaker not in self.vocab.speakers:
            known = ", ".join(self.vocab.speakers) if self.vocab.speakers else "none (a single-speaker model)"
            raise UserError(f"unknown speaker {o.speaker!r}; this model's speakers: {known}")
        return o.speaker

    def prepare(self, text: str, options: SynthesisOptions | None = None) -> list[list[int]]:
        """Text -> one prompt (LLM ids) per sentence; one-line ``UserError`` for unusable text."""
        o = options or self.options
        if not isinstance(text, str):
            raise UserError(f"text must be a string, got {type(text).__name__}")
        if not text.strip():
            raise UserError("text is empty or whitespace only: nothing to say")
        if len(text) > o.max_text_chars:
            raise UserError(f"text has {len(text)} characters, more than max_text_chars={o.max_text_chars}; "
                            "split it or raise the limit")
        speaker = self._speaker(o)
        normalized = self.frontend.normalize(text)
        sentences = self.frontend.split(normalized, o.max_chars, o.min_chars)
        prompts = []
        for s in sentences:
            ids = self._encode_sentence(s, speaker)
            if any(self.vocab.text_offset <= i for i in ids):
                prompts.append(ids)
        if not prompts or not any(is_speakable(s) for s in sentences):
            raise UserError(f"text has no speakable characters after normalisation: {text[:60]!r}")
        return prompts

    # --- synthesis --------------------------------------------------------------------------------
    def _options(self, **overrides) -> SynthesisOptions:
        o = self.options
        sampling_keys = {f for f in SamplingConfig.__dataclass_fields__}
        samp = {k: v for k, v in overrides.items() if k in sampling_keys and v is not None}
        rest = {k: v for k, v in overrides.items() if k not in sampling_keys and v is not None}
        unknown = set(rest) - set(SynthesisOptions.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown synthesis option(s): {sorted(unknown)}")
        o = replace(o, sampling=replace(o.sampling, **samp).validate(), **rest)
        if o.seed is None:
            o = replace(o, seed=random.SystemRandom().randrange(2**31))
        if o.max_tokens < 1:
            raise UserError(f"max_tokens must be >= 1, got {o.max_tokens}")
        if o.batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {o.batch_size}")
        # max_new_tokens() lets min_tokens win, so min > max would silently generate past the limit.
        if not 1 <= o.min_tokens <= o.max_tokens:
            raise UserError(f"min_tokens must be between 1 and max_tokens ({o.max_tokens}), got {o.min_tokens}")
        positions = int(getattr(self.llm.config, "max_position_embeddings", 0) or 0)
        if positions and o.min_tokens >= positions:
            raise UserError(f"min_tokens {o.min_tokens} is past the model's {positions} positions "
                            "(max_position_embeddings)")
        return replace(o, max_positions=positions)

    def resolve_options(self, **overrides) -> SynthesisOptions:
        """The options a call with these keyword arguments uses: ``self.options`` (the export's defaults)
        with the given non-None overrides, checked (e.g. to record what an evaluation ran with)."""
        return self._options(**overrides)

    def _generate(self, prompts: list[list[int]], seeds: list[int], o: SynthesisOptions):
        kw = dict(stop_id=self.vocab.stop, audio_offset=self.vocab.audio_offset, n_audio=self.vocab.n_audio,
                  sampling=o.sampling, min_new_tokens=o.min_tokens, pad_id=self.vocab.pad)
        hidden, codes = [None] * len(prompts), [None] * len(prompts)
        runaway = 0
        for b in range(0, len(prompts), o.batch_size):
            chunk = prompts[b: b + o.batch_size]
            gens = [torch.Generator().manual_seed(s) for s in seeds[b: b + o.batch_size]]
            out = generate(self.llm, chunk, max_new_tokens=[o.max_new_tokens(len(p)) for p in chunk],
                           generators=gens, **kw)
            for i in range(len(chunk)):
                hidden[b + i], codes[b + i] = out.hidden[i], out.codes[i]
                runaway += not out.stopped[i]
        if runaway:
            log.warning("%d of %d sentences reached the length limit without a stop token", runaway, len(prompts))
        self.last_stats = {"sentences": len(prompts), "tokens": sum(len(c) for c in codes), "runaway": runaway}
        return hidden, codes

    @torch.inference_mode()
    def decode(self, hidden: torch.Tensor) -> np.ndarray:
        """Hidden states ``[T, d]`` -> waveform of exactly ``T * samples_per_token`` samples
        (``(T - 1) * samples_per_token`` for a decoder with Soprano's edges: ``HiddenDecoder.output_samples``)."""
        dev = next(self.decoder.parameters()).device
        # States are rounded as the hidden shards store them (what this project's decoders train on); a
        # decoder with Soprano's edges gets them unrounded, as Soprano's own runtime hands them over.
        if self.decoder.cfg.edges != "soprano":
            hidden = shard_precision(hidden)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.decoder_bf16):
            return self.decoder(hidden.to(dev)[None])[0].float().cpu().numpy()

    @torch.inference_mode()
    def decode_many(self, hiddens: list[torch.Tensor]) -> list[np.ndarray]:
        """``decode`` of several sentences in one decoder call (``HiddenDecoder.forward_many``): each output equals
        ``decode`` of that sentence alone, up to the batched kernels' rounding."""
        dev = next(self.decoder.parameters()).device
        if self.decoder.cfg.edges != "soprano":
            hiddens = [shard_precision(h) for h in hiddens]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.decoder_bf16):
            return [w.float().cpu().numpy() for w in self.decoder.forward_many([h.to(dev) for h in hiddens])]

    @property
    def batch_decode(self) -> bool:
        """``synthesize_batch`` decodes each batch's sentences in one call: on a GPU (many small calls leave it
        idle); on a CPU the decoder is compute-bound, so one call per sentence (no padding) is as fast. Settable."""
        if self._batch_decode is None:
            return next(self.decoder.parameters()).device.type != "cpu"
        return self._batch_decode

    @batch_decode.setter
    def batch_decode(self, on: bool) -> None:
        self._batch_decode = on

    def incremental_decoder(self):
        """For a causal decoder: ``decode`` done incrementally (``llmtts.decoder.stream``), one per sentence, as
        ``(states, final) -> samples`` for ``StreamDecoder``; None for other decoders (they decode windows).
        ``TTS.stream`` and the server's streamed requests take one per sentence."""
        from llmtts.decoder.stream import DecoderStream, can_stream

        if not can_stream(self.decoder):
            return None
        stream, dev = DecoderStream(self.decoder), next(self.decoder.parameters()).device

        def push(hidden: torch.Tensor, final: bool) -> np.ndarray:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.decoder_bf16):
                return stream.push(shard_precision(hidden).to(dev)[None], final)[0].float().cpu().numpy()
        return push

    def synthesize(self, text: str, **options) -> tuple[np.ndarray, int]:
        """``(wav float32 [N], sample_rate)``. Options: see ``SynthesisOptions`` and ``SamplingConfig``."""
        return self.synthesize_batch([text], **options)[0]

    def synthesize_batch(self, texts: Sequence[str], **options) -> list[tuple[np.ndarray, int]]:
        """All sentences of all texts are generated in batches of ``batch_size``; each text's result equals
        ``synthesize(text)`` with the same seed."""
        o = self._options(**options)
        if isinstance(texts, str):
            raise UserError("synthesize_batch takes a list of texts, not a string")
        prepared = [self.prepare(t, o) for t in texts]
        flat = [p for ps in prepared for p in ps]
        seeds = [_sentence_seed(o.seed, j) for ps in prepared for j in range(len(ps))]
        hidden, _ = self._generate(flat, seeds, o)
        flat_wavs = [w for b in range(0, len(hidden), o.batch_size)
                     for w in self._decode_group(hidden[b: b + o.batch_size])]
        out, k = [], 0
        for ps in prepared:
            wavs = flat_wavs[k: k + len(ps)]
            k += len(ps)
            out.append((np.concatenate(wavs).astype(np.float32), self.sample_rate))
        return out

    def _decode_group(self, hidden: list[torch.Tensor]) -> list[np.ndarray]:
        """One generation batch's sentences: one decoder call when it batches them, else one call each."""
        return self.decode_many(hidden) if self.batch_decode else [self.decode(h) for h in hidden]

    def synthesize_pieces(self, text: str, **options) -> Iterator[np.ndarray]:
        """``synthesize(text)`` a batch of sentences at a time: yields each sentence's float32 audio in order, and
        their concatenation equals ``synthesize(text)`` with the same options and seed (the same batches, seeds
        and decoder calls). Memory holds one batch of states and audio, not the whole text's (``llmtts
        synthesize --out`` writes the pieces as they come)."""
        o = self._options(**options)
        prompts = self.prepare(text, o)
        seeds = [_sentence_seed(o.seed, j) for j in range(len(prompts))]
        totals = {"sentences": 0, "tokens": 0, "runaway": 0}
        for b in range(0, len(prompts), o.batch_size):
            hidden, _ = self._generate(prompts[b: b + o.batch_size], seeds[b: b + o.batch_size], o)
            for k in totals:
                totals[k] += self.last_stats[k]
            for w in self._decode_group(hidden):
                yield np.asarray(w, dtype=np.float32)
        self.last_stats = totals

    def stream(self, text: str, first_chunk: int = 1, max_chunk: int = 32, lookahead: int | None = None,
               **options) -> Iterator[np.ndarray]:
        """Yield float32 audio chunks as tokens are generated; their concatenation equals
        ``synthesize(text)`` (same options and seed) up to the decoder's rounding at chunk edges.
        ``self.last_stats`` gets ``first_chunk_s`` (latency from the call to the first chunk). ``lookahead`` <
        the decoder's receptive field (tokens) lowers latency at the price of inexact chunk edges
        (see ``StreamDecoder``); a causal decoder (``conv_lookahead: 0``) is exact with a right context of one token.

        Generation runs the same batches as ``synthesize`` (``batch_size`` sentences of the text together), so
        both sample the same tokens from the same states at every dtype: a bf16 / int8 batch rounds differently
        from a one-row forward, and a one-sentence-at-a-time stream used to sample other tokens now and then.
        Chunks of the sentence being played leave as they become final; later sentences of the batch are
        decoded as their states arrive and leave in order once the sentences before them have ended."""
        t0 = time.perf_counter()
        o = self._options(**options)
        prompts = self.prepare(text, o)
        kw = dict(stop_id=self.vocab.stop, audio_offset=self.vocab.audio_offset, n_audio=self.vocab.n_audio,
                  sampling=o.sampling, min_new_tokens=o.min_tokens, pad_id=self.vocab.pad)
        stats = {"sentences": len(prompts), "tokens": 0, "first_chunk_s": None}
        self.last_stats = stats
        for b in range(0, len(prompts), o.batch_size):
            batch = prompts[b: b + o.batch_size]
            gens = [torch.Generator().manual_seed(_sentence_seed(o.seed, b + i)) for i in range(len(batch))]
            steps = generate_steps(self.llm, batch, max_new_tokens=[o.max_new_tokens(len(p)) for p in batch],
                                   generators=gens, **kw)
            for chunk in self._stream_batch(steps, len(batch), first_chunk, max_chunk, lookahead, stats):
                if stats["first_chunk_s"] is None:
                    stats["first_chunk_s"] = time.perf_counter() - t0
                yield chunk

    def _stream_batch(self, steps, n: int, first_chunk: int, max_chunk: int, lookahead: int | None,
                      stats: dict) -> Iterator[np.ndarray]:
        """Chunks of ``n`` sentences generated together (``steps`` from ``generate_steps``), in sentence order:
        row ``cur`` is played; other rows' chunks wait in ``ready`` until every row before them has ended."""
        decs = [StreamDecoder(self.decode, self.decoder.context, self.samples_per_token, first_chunk, max_chunk, lookahead,
                              incremental=self.incremental_decoder()) for _ in range(n)]
        ready: list[list[np.ndarray]] = [[] for _ in range(n)]
        ended = [False] * n
        cur = 0
        for step in steps:
            stats["tokens"] += len(step.emitted)
            for j, i in enumerate(step.emitted):
                ready[i] += decs[i].push(step.hidden[j: j + 1])
            for i in range(n):
                if step.finished[i] and not ended[i]:
                    ended[i] = True
                    tail = decs[i].flush()
                    ready[i] += [] if tail is None else [tail]
            while cur < n:
                yield from ready[cur]
                ready[cur] = []
                if not ended[cur]:
                    break
                cur += 1
