"""One worker thread that generates every request's audio, batching concurrent requests step by step.

A ``Job`` is one HTTP request: its text's sentence prompts, resolved options (seed included) and a thread-safe
``emit(kind, payload)`` callback (``"audio"`` float32 chunk, ``"done"`` stats, ``"error"`` message). Each round
the thread (1) gives free rows of the ``SlotBatch`` to the first sentence of new jobs (arrival order), then to
later sentences of running jobs (round-robin), (2) drops rows of cancelled or expired jobs, (3) runs one batched
decode step and samples every row with its own generator, (4) retires rows that stopped, (5) decodes the round's
audio and hands it out. A job's sentences may run side by side, but its audio leaves in sentence order (chunks of
a later sentence wait until the earlier ones are out).

Why a request's audio does not depend on the batch: sentence ``j`` of a job samples from a generator seeded with
``_sentence_seed(seed, j)`` (the same seeds ``TTS.synthesize`` / ``TTS.stream`` use), one uniform per step, with
the job's own temperature / top-p and its own repetition history; the batched step only adds masked positions.
Streamed jobs cut chunks as ``StreamDecoder`` does for ``TTS.stream``, the others decode each sentence whole (as
``TTS.synthesize``); a round's decoder windows of equal length are decoded in one call. With a causal decoder a
streamed sentence decodes incrementally instead, as ``TTS.stream`` does: each state once, no window recomputed.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from llmtts.decoder.stream import can_stream
from llmtts.infer.generate import output_head
from llmtts.infer.sampling import apply_repetition_penalty, sample_next
from llmtts.infer.stream import StreamDecoder
from llmtts.infer.tts import SynthesisOptions, _sentence_seed
from llmtts.serve.engine import SlotBatch

log = logging.getLogger(__name__)


@dataclass
class Job:
    prompts: list[list[int]]
    options: SynthesisOptions  # seed resolved
    stream: bool
    emit: Callable[[str, object], None]
    deadline: float  # time.monotonic() after which the job is dropped
    cancelled: threading.Event = field(default_factory=threading.Event)
    started: int = 0  # sentences given a row so far
    cursor: int = 0  # the sentence whose audio goes out now; later sentences' audio waits in ``held``
    held: dict = field(default_factory=dict)  # sentence -> audio chunks generated ahead of the cursor
    finished: set = field(default_factory=set)  # sentences whose rows are done
    ended: bool = False
    samples: int = 0
    submitted: float = field(default_factory=time.monotonic)
    first_audio: float | None = None

    def cancel(self) -> None:
        self.cancelled.set()

    def dead(self) -> str | None:
        if self.cancelled.is_set():
            return "cancelled"
        if time.monotonic() > self.deadline:
            return "timeout"
        return None


class IncrementalRowDecoder(StreamDecoder):
    """``StreamDecoder`` over a causal decoder's incremental state (``TTS.incremental_decoder``): its chunks come
    out decoded, as ``(samples, None)``, each state through the decoder once (windows would recompute the left
    context per chunk). Rows decode alone: their states arrive at different steps."""

    def __init__(self, tts, first_chunk: int, max_chunk: int):
        super().__init__(tts.decode, tts.decoder.context, tts.samples_per_token, first_chunk, max_chunk,
                         incremental=tts.incremental_decoder())

    def push(self, hidden: torch.Tensor) -> list[tuple]:
        return [(wav, None) for wav in super().push(hidden)]

    def flush(self) -> tuple | None:
        wav = super().flush()
        return None if wav is None else (wav, None)


class DeferredStreamDecoder(StreamDecoder):
    """``StreamDecoder`` whose chunks come out undecoded, as ``(states window, (crop start, crop end))``: the
    scheduler decodes every row's chunks of a round together (windows of one length in one decoder call)."""

    def __init__(self, context: tuple[int, int], samples_per_token: int, first_chunk: int, max_chunk: int):
        super().__init__(None, context, samples_per_token, first_chunk, max_chunk)

    def _emit(self, end: int):  # StreamDecoder._emit without the decode call (same window and crop)
        return self._window(end)


@dataclass
class _Row:
    job: Job
    sentence: int
    gen: torch.Generator
    max_new: int
    decoder: DeferredStreamDecoder | None
    hidden: list[torch.Tensor] = field(default_factory=list)
    history: list[int] = field(default_factory=list)
    count: int = 0
    next_id: int = 0
    done: bool = False


class Scheduler:
    def __init__(self, tts, max_batch: int = 8, max_queue: int = 64, metrics=None,
                 first_chunk: int = 1, max_chunk: int = 32):
        self.tts, self.max_batch, self.max_queue, self.metrics = tts, max_batch, max_queue, metrics
        self.first_chunk, self.max_chunk = first_chunk, max_chunk
        self.batch = SlotBatch(tts.llm, max_batch)
        self.incremental = can_stream(tts.decoder)  # a causal decoder: streams carry its state
        v = tts.vocab
        self.stop_id = v.stop
        self._heads: dict[bool, tuple] = {}
        self.pending: deque[Job] = deque()  # new jobs, arrival order (bounded by max_queue)
        self.running: list[Job] = []  # admitted jobs with sentences still waiting for a row, arrival order
        self.rows: list[_Row] = []
        self._out: list[tuple] = []  # this round's (job, sentence, states window | samples | None, crop | None), in order
        self.cv = threading.Condition()
        self._stop = False
        self.failed: str | None = None
        self.thread = threading.Thread(target=self._loop, name="llmtts-scheduler", daemon=True)

    # --- called from the server's threads ----------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self.cv:
            self._stop = True
            self.cv.notify_all()
        self.thread.join(timeout)

    def submit(self, job: Job) -> bool:
        """Queue ``job``; False when ``max_queue`` jobs already wait (the caller answers 429)."""
        with self.cv:
            if len(self.pending) >= self.max_queue:  # clients that left while queued give their place back
                gone = [j for j in self.pending if j.cancelled.is_set()]
                self.pending = deque(j for j in self.pending if not j.cancelled.is_set())
                for j in gone:
                    self._finish(j, "cancelled")
            if self._stop or self.failed or len(self.pending) >= self.max_queue:
                return False
            self.pending.append(job)
            self.cv.notify()
        self._gauges()
        return True

    def queue_depth(self) -> int:
        return len(self.pending)

    def active(self) -> int:
        return len(self.rows)

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self.pending))
            self.metrics.active_rows.set(len(self.rows))

    # --- the worker thread -------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            with torch.inference_mode():
                while not self._stop:
                    self._round()
        except Exception as exc:  # the engine is broken: fail every job, health turns 503
            log.exception("scheduler failed")
            self.failed = f"{type(exc).__name__}: {exc}"
            for job in [r.job for r in self.rows] + self.running + list(self.pending):
                job.emit("error", "internal error in the generation engine")

    def _round(self) -> None:
        with self.cv:
            while not (self.rows or self.pending or self.running or self._stop):
                self.cv.wait(0.5)
            new = []
            while len(self.rows) + len(new) < self.max_batch and self.pending:
                new.append(self.pending.popleft())
        for job in new:  # a new request's first sentence comes first (time to first audio) ...
            self._join(job)
        self._fill()  # ... then spare rows take later sentences of running requests, round-robin
        for row in self.rows:
            row.done = row.done or row.job.dead() is not None
        self._retire()
        self._gauges()
        if not self.rows:
            self._decode_out()
            return
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(self.rows))
        h = self.batch.step([r.next_id for r in self.rows])
        self._sample(self.rows, h)
        self._retire()
        self._gauges()  # the last job's row is gone now: the gauge must not read 1 while the server idles
        self._decode_out()

    def _decode_out(self) -> None:
        """Decode this round's chunks — windows of equal length stacked into one decoder call (the same math
        per window) — then hand them out in the order they were made; sentence ends follow their last chunk."""
        out, self._out = self._out, []
        by_len: dict[int, list[int]] = {}
        wavs: dict[int, np.ndarray] = {}
        for k, (_, _, window, _) in enumerate(out):
            if isinstance(window, np.ndarray):  # decoded already (IncrementalRowDecoder)
                wavs[k] = window
            elif window is not None:
                by_len.setdefault(window.shape[0], []).append(k)
        for ks in by_len.values():
            if len(ks) == 1:
                wavs[ks[0]] = self.tts.decode(out[ks[0]][2])
            else:
                for k, wav in zip(ks, self._decode_batch(torch.stack([out[k][2] for k in ks]))):
                    wavs[k] = wav
        for k, (job, j, window, crop) in enumerate(out):
            if job.ended:
                continue
            if window is None:
                self._sentence_done(job, j)
            else:
                self._audio(job, j, wavs[k] if crop is None else wavs[k][crop[0]: crop[1]])

    def _decode_batch(self, hidden: torch.Tensor) -> np.ndarray:
        """``TTS.decode`` for ``[G, T, d]`` (kept in step with it: the tests compare against ``TTS.synthesize``)."""
        from llmtts.decoder.model import shard_precision

        dec = self.tts.decoder
        dev = next(dec.parameters()).device
        if getattr(dec.cfg, "edges", None) != "soprano":
            hidden = shard_precision(hidden)
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.tts.decoder_bf16):
            return dec(hidden.to(dev)).float().cpu().numpy()

    def _head(self, full: bool) -> tuple:
        """``(callable, lo, hi)``: the output rows a row samples from — [stop] + audio ids, or every row for
        ``sampling.full_vocab`` (imported Soprano models), as ``generate_steps`` chooses."""
        if full not in self._heads:
            v, lm_head = self.tts.vocab, self.tts.llm.lm_head
            lo, hi = (0, lm_head.out_features) if full else (v.stop, v.audio_offset + v.n_audio)
            self._heads[full] = (output_head(lm_head, lo, hi), lo, hi)
        return self._heads[full]

    def _fill(self) -> None:
        while len(self.rows) < self.max_batch and self.running:
            for job in list(self.running):
                if len(self.rows) < self.max_batch:
                    self._join(job)

    def _join(self, job: Job) -> None:
        """Give the job's next sentence a row (or end the job if its client is gone or its time is up)."""
        if job in self.running:
            self.running.remove(job)
        reason = job.dead()
        if reason:
            self._finish(job, reason)
            return
        j = job.started
        job.started += 1
        if job.started < len(job.prompts):
            self.running.append(job)
        o = job.options
        prompt = job.prompts[j]
        max_new = o.max_new_tokens(len(prompt))
        dec = None
        if job.stream and self.incremental:
            dec = IncrementalRowDecoder(self.tts, self.first_chunk, self.max_chunk)
        elif job.stream:
            dec = DeferredStreamDecoder(self.tts.decoder.context, self.tts.samples_per_token,
                                        self.first_chunk, self.max_chunk)
        row = _Row(job, j, torch.Generator().manual_seed(_sentence_seed(o.seed, j)), max_new, dec)
        if getattr(o.sampling, "penalize_prompt", 0):  # the prompt's ids start the penalty's history
            _, lo, hi = self._head(bool(getattr(o.sampling, "full_vocab", 0)))
            row.history = [t - lo for t in prompt if lo <= t < hi] or [hi - lo]  # untrimmed until the first token
        h = self.batch.join(prompt, max_new)
        self.rows.append(row)
        self._sample([row], h[None])  # the prefill's state gives the first token, as in generate_steps

    def _sample(self, rows: list[_Row], h: torch.Tensor) -> None:
        """One token for each of ``rows`` from its state (``h [n, d]``). Rows with the same sampling settings are
        sampled together, exactly as ``generate_steps`` samples a batch: row-wise filters, a padded repetition
        history, one uniform per row from the row's own generator."""
        groups: dict = {}
        for i, row in enumerate(rows):
            o = row.job.options
            groups.setdefault((tuple(vars(o.sampling).values()), o.min_tokens), []).append(i)
        for idx in groups.values():
            self._sample_group([rows[i] for i in idx], h[idx])

    def _sample_group(self, rows: list[_Row], h: torch.Tensor) -> None:
        o = rows[0].job.options
        s = o.sampling
        head, lo, hi = self._head(bool(getattr(s, "full_vocab", 0)))
        stop_col = self.stop_id - lo
        logits = head(h).float()  # [n, hi - lo]
        early = [i for i, row in enumerate(rows) if row.count < o.min_tokens]
        if early:
            logits[early, stop_col] = float("-inf")
        width = max((len(row.history) for row in rows), default=0)
        if s.repetition_penalty != 1.0 and width:
            hist = torch.full((len(rows), width), hi - lo, dtype=torch.long)  # hi - lo = padding (no effect)
            for i, row in enumerate(rows):
                if row.history:
                    hist[i, width - len(row.history):] = torch.as_tensor(row.history, dtype=torch.long)
            logits = apply_repetition_penalty(logits, hist.to(logits.device), s.repetition_penalty)
        toks = sample_next(logits, s, [row.gen for row in rows]).tolist()
        states = h.float()
        for i, (row, tok) in enumerate(zip(rows, toks)):
            self._take(row, tok, states[i: i + 1], stop_col, lo)

    def _take(self, row: _Row, tok: int, state: torch.Tensor, stop_col: int, lo: int) -> None:
        """Book-keeping for one sampled token (head-slice index ``tok``) and its state ``[1, d]``."""
        if tok == stop_col:  # [stop]: its state is dropped
            row.done = True
            return
        s = row.job.options.sampling
        row.count += 1
        row.history.append(tok)
        if s.repetition_window and len(row.history) > s.repetition_window:
            row.history = row.history[-s.repetition_window:]
        row.next_id = tok + lo
        if row.decoder is not None:
            for window, crop in row.decoder.push(state):
                self._out.append((row.job, row.sentence, window, crop))
        else:
            row.hidden.append(state)
        if row.count >= row.max_new:
            row.done = True

    def _audio(self, job: Job, j: int, wav: np.ndarray) -> None:
        """Sentence ``j``'s audio goes out now if ``j`` is the job's current sentence, else it waits its turn."""
        if j != job.cursor:
            job.held.setdefault(j, []).append(wav)
            return
        if job.first_audio is None:
            job.first_audio = time.monotonic()
            if self.metrics is not None:
                self.metrics.first_audio.observe(job.first_audio - job.submitted)
        job.samples += len(wav)
        job.emit("audio", wav)

    def _retire(self) -> None:
        """Rows that stopped leave the batch (highest index first: ``leave`` moves the last row down)."""
        for i in range(len(self.rows) - 1, -1, -1):
            row = self.rows[i]
            if not row.done:
                continue
            self.batch.leave(i)
            self.rows[i] = self.rows[-1]
            self.rows.pop()
            job = row.job
            if job.ended:
                continue
            reason = job.dead()
            if reason:
                self._finish(job, reason)
                continue
            if row.decoder is not None:
                tail = row.decoder.flush()
                if tail is not None:
                    self._out.append((job, row.sentence, *tail))
            elif row.hidden:
                self._out.append((job, row.sentence, torch.cat(row.hidden), None))
            self._out.append((job, row.sentence, None, None))  # the sentence ends after its last chunk

    def _sentence_done(self, job: Job, j: int) -> None:
        """Advance the job's cursor past finished sentences, releasing the audio they held; end a complete job."""
        job.finished.add(j)
        while job.cursor in job.finished:
            job.cursor += 1
            for wav in job.held.pop(job.cursor, []):
                self._audio(job, job.cursor, wav)
        if job.cursor == len(job.prompts):
            self._finish(job, None)

    def _finish(self, job: Job, reason: str | None) -> None:
        if job.ended:
            return
        job.ended = True
        if job in self.running:
            self.running.remove(job)
        seconds = job.samples / self.tts.sample_rate
        if self.metrics is not None:
            self.metrics.jobs.labels(outcome=reason or "ok").inc()
            self.metrics.audio_seconds.inc(seconds)
        if reason:
            job.emit("error", reason)
        else:
            job.emit("done", {"audio_seconds": seconds, "sentences": len(job.prompts)})
