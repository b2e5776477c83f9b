"""The batching scheduler in-process: jobs that share decode steps (joining and leaving mid-way) each get the
audio ``TTS.synthesize`` gives for their seed and options; a cancelled job leaves without disturbing the others."""
from __future__ import annotations

import queue
import time

import numpy as np

from infer_helpers import assert_audio_close
from llmtts.serve.metrics import Metrics
from llmtts.serve.scheduler import Job, Scheduler

TEXTS = ["Hello there, how are you today?", "Short one.",
         "Hello, my name is Soma Siddhartha. I paid $3.50 on May 1st! Did it work?",
         "A fourth request, with a comma.", "And the fifth text arrives last."]


def _job(tts, text, stream, out: queue.Queue, key, **opts):
    o = tts.resolve_options(**opts)
    return Job(tts.prepare(text, o), o, stream, lambda kind, p: out.put((key, kind, p)), time.monotonic() + 120)


def _collect(out: queue.Queue, n: int) -> dict:
    got: dict = {}
    ends = 0
    while ends < n:
        key, kind, p = out.get(timeout=120)
        if kind == "audio":
            got.setdefault(key, []).append(p)
        else:
            got.setdefault(("end", key), (kind, p))
            ends += 1
    return got


def test_batched_jobs_equal_synthesize_alone(serve_tts):
    tts = serve_tts
    metrics = Metrics()
    sched = Scheduler(tts, max_batch=3, max_queue=16, metrics=metrics)
    out: queue.Queue = queue.Queue()
    opts = [dict(seed=11 + i, temperature=0.5 + 0.2 * (i % 3), top_p=0.9 if i % 2 else None) for i in range(5)]
    for i, text in enumerate(TEXTS):  # all queued before the thread starts: the first round batches 3 of them
        assert sched.submit(_job(tts, text, i % 2 == 0, out, i, **opts[i]))
    sched.start()
    try:
        got = _collect(out, len(TEXTS))
    finally:
        sched.stop()
    for i, text in enumerate(TEXTS):
        assert got[("end", i)][0] == "done"
        alone, _ = tts.synthesize(text, **opts[i])
        assert_audio_close(np.concatenate(got[i]), alone)
    rows = metrics.registry.get_sample_value("llmtts_batch_size_sum")
    steps = metrics.registry.get_sample_value("llmtts_batch_size_count")
    assert rows / steps > 1.5  # rows really shared steps (5 jobs, 3 rows)
    assert max(sched.batch.lens or [0]) == 0 and sched.active() == 0


def test_cancelled_job_leaves_and_the_others_are_unchanged(serve_tts):
    tts = serve_tts
    sched = Scheduler(tts, max_batch=2, max_queue=4)
    out: queue.Queue = queue.Queue()
    victim = _job(tts, TEXTS[2] * 3, True, out, "victim", seed=1)
    keep = _job(tts, TEXTS[0], False, out, "keep", seed=2)
    sched.submit(victim)
    sched.submit(keep)
    sched.start()
    try:
        assert out.get(timeout=60)[:2] == ("victim", "audio")  # streaming: it is generating
        victim.cancel()
        got = _collect(out, 2)
    finally:
        sched.stop()
    assert got[("end", "victim")] == ("error", "cancelled")
    assert got[("end", "keep")][0] == "done"
    assert_audio_close(np.concatenate(got["keep"]), tts.synthesize(TEXTS[0], seed=2)[0])


def test_full_queue_refuses(serve_tts):
    sched = Scheduler(serve_tts, max_batch=1, max_queue=2)  # not started: nothing leaves the queue
    out: queue.Queue = queue.Queue()
    assert [sched.submit(_job(serve_tts, "Hi there.", False, out, i, seed=0)) for i in range(3)] == [True, True, False]
    assert sched.queue_depth() == 2


def test_one_request_sentences_share_steps_and_stream_in_order(serve_tts):
    """A request's sentences take spare rows (4 sentences, 4 rows, one request): the audio still streams in
    sentence order and equals ``synthesize`` (later sentences' chunks wait until the earlier ones are out)."""
    tts = serve_tts
    text = "First sentence is here. The second one follows it. Then comes a third one. And the fourth ends it."
    o = tts.resolve_options(seed=21, min_chars=5)
    assert len(tts.prepare(text, o)) == 4
    metrics = Metrics()
    sched = Scheduler(tts, max_batch=4, max_queue=4, metrics=metrics)
    out: queue.Queue = queue.Queue()
    sched.submit(Job(tts.prepare(text, o), o, True, lambda kind, p: out.put(("job", kind, p)), time.monotonic() + 120))
    sched.start()
    try:
        got = _collect(out, 1)
    finally:
        sched.stop()
    assert got[("end", "job")][0] == "done"
    assert metrics.registry.get_sample_value("llmtts_batch_size_bucket", {"le": "4.0"}) > \
        metrics.registry.get_sample_value("llmtts_batch_size_bucket", {"le": "3.0"})  # steps with all 4 rows
    assert_audio_close(np.concatenate(got["job"]), tts.synthesize(text, seed=21, min_chars=5)[0])


def test_expired_job_ends_with_timeout_and_the_next_one_runs(serve_tts):
    tts = serve_tts
    sched = Scheduler(tts, max_batch=1, max_queue=4)
    out: queue.Queue = queue.Queue()
    o = tts.resolve_options(seed=3)
    late = Job(tts.prepare("Too late.", o), o, False, lambda kind, p: out.put(("late", kind, p)), time.monotonic() - 1)
    sched.submit(late)
    sched.submit(_job(tts, "Hello there.", False, out, "ok", seed=3))
    sched.start()
    try:
        got = _collect(out, 2)
    finally:
        sched.stop()
    assert got[("end", "late")] == ("error", "timeout") and "late" not in got
    assert got[("end", "ok")][0] == "done"


def test_a_causal_decoder_streams_each_state_once_beside_whole_requests(serve_tts):
    """With a causal decoder, streamed requests decode incrementally (as ``TTS.stream``): every frame through the
    decoder's stack once, no left context recomputed per chunk; whole requests batched beside them are unchanged."""
    from dataclasses import replace

    import torch

    from llmtts import TTS
    from llmtts.decoder.model import HiddenDecoder

    torch.manual_seed(0)
    dec = HiddenDecoder(replace(serve_tts.decoder.cfg, conv_lookahead=0)).eval()
    for b in dec.backbone.blocks:
        b.gamma.data.fill_(1.0)  # strong residuals: the left context matters, so recomputing it would show
    tts = TTS(serve_tts.llm, serve_tts.vocab, serve_tts.frontend, dec)
    texts, seeds = [TEXTS[0], TEXTS[3], TEXTS[1]], [31, 32, 33]
    frames: list[int] = []
    hook = dec.backbone.embed.register_forward_hook(lambda m, i, o: frames.append(o.shape[-1]))
    try:
        alone = [tts.synthesize(t, seed=s)[0] for t, s in zip(texts, seeds)]
        offline = sum(frames)
        frames.clear()
        sched = Scheduler(tts, max_batch=3, max_queue=4, first_chunk=1, max_chunk=4)
        out: queue.Queue = queue.Queue()
        for i, (t, s) in enumerate(zip(texts, seeds)):
            assert sched.submit(_job(tts, t, i < 2, out, i, seed=s))  # two streamed, one whole
        sched.start()
        try:
            got = _collect(out, len(texts))
        finally:
            sched.stop()
    finally:
        hook.remove()
    assert len(got[0]) > 4 and len(got[1]) > 4 and len(got[2]) == 1  # small chunks vs one whole sentence
    for i in range(len(texts)):
        assert got[("end", i)][0] == "done"
        assert_audio_close(np.concatenate(got[i]), alone[i])
    assert sum(frames) == offline  # windows would decode their left context again for every chunk
    assert sched.incremental
