"""This project against soprano-tts 0.2.0 on the identical checkpoint, same machine, one run, alternating.

    python benchmarks/vs_soprano.py --threads 2                     # 512 tokens per sentence, fp32/int8/int4
    python benchmarks/vs_soprano.py --soprano-python .cache/soprano-venv/bin/python --tokens 128 --reps 1

One seeded random checkpoint at Soprano-1.1-80M's exact shapes (``tests/interop/soprano_fixture.py``: 79.7 M
Qwen3 + 8 x 768 Vocos decoder) is written as a Soprano model directory; soprano-tts runs it in its own venv
(``benchmarks/soprano_worker.py``: its ``infer``, transformers backend, fp32), this project runs the same weights
imported by ``llmtts import soprano``. Both generate exactly ``--tokens`` tokens per sentence ([stop] masked) and
take turns sentence by sentence (the order rotates each round), so load from other processes hits both alike.
Reported: x-real-time (audio seconds per wall second) and ms per token per system, the ratio to soprano-tts on
the same sentences, and the streaming first chunk (soprano ``infer_stream`` vs ``TTS.stream``, exact).

soprano-tts is not a dependency: without ``--soprano-python`` a venv is made at ``--venv`` and
``soprano-tts==0.2.0`` is installed with pip from the configured index (PyPI or a local mirror), pinned to this
environment's torch and transformers versions. The model directory is built locally: no hub download.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["the quick brown fox jumps over the lazy dog while the band plays on.",
         "she sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
         "a journey of a thousand miles begins with a single step, or so they say in the old country."]
DEFAULT_VENV = ROOT / ".cache" / "soprano-venv"  # git-ignored; created by the installer when missing


# A format is reported only when the judge hears it as well as fp32 on a trained model: its WER on each set at most
# this much above fp32's (about one word in 20; two training seeds of the cpu-small recipe differ by 0.03).
MAX_WER_INCREASE = 0.05
FP32_INTELLIGIBLE = 0.5  # sets where fp32's own WER is above this are not used to judge a format


def judge_refusals(quality: str, bound: float, dtypes) -> dict[str, str]:
    """``{dtype: why}`` for the formats whose judge WER in ``quality`` (quant_quality.py's summary.json) is worse
    than fp32's by more than ``bound`` on some set fp32 says intelligibly, or that it never judged (a speed without a quality check of
    the same format is not reported)."""
    if not quality:
        return {}
    table = json.loads(Path(quality).read_text())
    out = {}
    for d in dtypes:
        if d == "fp32":
            continue
        if d not in table:
            out[d] = f"no judge WER for {d} in {quality}"
            continue
        # A set fp32 itself does not say intelligibly (the quick start's unseen sentences: WER > 1) tells nothing.
        sets = [s for s in table[d] if table["fp32"][s]["wer"] <= FP32_INTELLIGIBLE]
        if not sets:
            out[d] = f"no set in {quality} that fp32 says intelligibly (WER <= {FP32_INTELLIGIBLE})"
            continue
        worse = {s: table[d][s]["wer"] - table["fp32"][s]["wer"] for s in sets}
        bad = {s: w for s, w in worse.items() if w > bound}
        if bad:
            out[d] = "judge WER above fp32's by " + ", ".join(f"{w:.3f} ({s})" for s, w in bad.items()) + \
                f" > {bound} in {quality}"
    return out


def cpu_name() -> str:
    """The CPU's model name and the kernel family this process runs (every published speed names both)."""
    from llmtts.infer.canary import cpu_kernel_family

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        import platform

        name = platform.processor() or platform.machine()
    return f"{name} [{cpu_kernel_family()}]"


def ensure_soprano(python: str | None, venv: Path) -> str:
    """A Python that imports soprano: ``python`` as given, else ``venv``'s, installing soprano-tts there if needed."""
    if python:
        return python
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import soprano"], capture_output=True).returncode == 0:
        return str(py)
    import transformers

    print(f"installing soprano-tts==0.2.0 into {venv} (pip, the configured index only)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pins = [f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}"]
    subprocess.run([str(py), "-m", "pip", "install", "-q", "soprano-tts==0.2.0", *pins], check=True)
    return str(py)


class Soprano:
    """The worker process: soprano-tts's runtime, answering timing requests."""

    def __init__(self, python: str, model_dir: Path, threads: int):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
        self.p = subprocess.Popen([python, str(ROOT / "benchmarks/soprano_worker.py"), str(model_dir), str(threads)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.p.stdout.readline()
        if not line:
            raise SystemExit(f"soprano worker exited ({self.p.wait()}); run benchmarks/soprano_worker.py by hand to "
                             "see why")
        return json.loads(line)

    def ask(self, **req) -> dict:
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.p.stdin.write('{"op": "quit"}\n')
        self.p.stdin.close()
        self.p.wait()


def build_checkpoint(root: Path) -> tuple[Path, Path]:
    """``(soprano model dir, our import)`` of one seeded random checkpoint at Soprano-1.1-80M's shapes."""
    sys.path.insert(0, str(ROOT / "tests/interop"))
    import soprano_fixture

    from llmtts.interop.soprano.importer import import_soprano

    soprano_fixture.build(root / "model", "real")
    import_soprano(root / "model", root / "ours")
    return root / "model", root / "ours"


def forced(tokens: int) -> dict:
    return dict(seed=0, max_tokens=tokens, min_tokens=tokens, tokens_per_text_id=1000.0, max_chars=1000)


def read_bandwidth_gbs(threads: int, mb: int = 512, reps: int = 5) -> float:
    """This machine's memory read bandwidth as torch sees it: the best of ``reps`` sums over ``mb`` MB (far past the
    caches), with the benchmark's thread count."""
    torch.set_num_threads(threads)
    x = torch.ones(mb * 2**20 // 4)
    best = min(timed_s(lambda: float(x.sum())) for _ in range(reps))
    return mb * 2**20 / best / 1e9


def timed_s(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def decode_bytes(llm) -> int:
    """Bytes of LLM weights one decode step reads: every projection and the output head as stored for decoding (int8
    codes + scales, packed int4 + group scales, fp32 / bf16 weights), the norms; not the embedding table (one row
    per token) nor int8's bf16 prefill copy (decode steps never read it)."""
    from torch import nn

    from llmtts.infer.quant import Int8Linear
    from llmtts.infer.quant_int4 import Int4Linear

    def size(*ts) -> int:
        return sum(t.numel() * t.element_size() for t in ts if t is not None)

    total = 0
    for m in llm.modules():
        if isinstance(m, Int8Linear):
            total += size(m.weight_int8, m.scale, m.bias)
        elif isinstance(m, Int4Linear):
            total += size(m.weight_int4, m.scales_and_zeros, m.bias)
        elif isinstance(m, nn.Linear):
            total += size(m.weight, m.bias)
        elif not isinstance(m, nn.Embedding) and not list(m.children()):
            total += size(*m.parameters(recurse=False))
    return total


def ours_offline(tts, text: str, tokens: int) -> dict:
    t = time.perf_counter()
    wav, _ = tts.synthesize(text, **forced(tokens))
    return {"wall_s": time.perf_counter() - t, "samples": len(wav)}


def ours_first_chunk(tts, text: str, tokens: int) -> float:
    gen = tts.stream(text, **forced(tokens))
    next(gen)
    gen.close()
    return tts.last_stats["first_chunk_s"]


def first_chunk_parts(tts, text: str) -> dict:
    """Where an exact first chunk's time goes: text + prompt prefill (to the first token), the R decode steps the
    decoder's right context needs, and decoding the first window (R = the decoder's right context)."""
    from llmtts.infer.generate import generate_steps

    o = tts.resolve_options(**forced(64))
    t0 = time.perf_counter()
    (prompt,) = tts.prepare(text, o)
    kw = dict(stop_id=tts.vocab.stop, audio_offset=tts.vocab.audio_offset, n_audio=tts.vocab.n_audio,
              sampling=o.sampling, min_new_tokens=o.min_tokens, pad_id=tts.vocab.pad)
    R, states, marks = tts.decoder.context[1], [], []  # right context: what the exact first chunk waits for
    for step in generate_steps(tts.llm, [prompt], max_new_tokens=[R + 1], generators=[torch.Generator()], **kw):
        states.append(step.hidden)
        marks.append(time.perf_counter())
    tts.decode(torch.cat(states))
    t_end = time.perf_counter()
    return {"R": R, "prompt_ids": len(prompt), "prefill_ms": 1000 * (marks[0] - t0),
            "steps_ms": 1000 * (marks[-1] - marks[0]), "decode_ms": 1000 * (t_end - marks[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--soprano-python", help="a Python with soprano-tts 0.2.0 installed (else --venv is used)")
    ap.add_argument("--venv", default=str(DEFAULT_VENV), help="venv to use or create for soprano-tts")
    ap.add_argument("--tokens", type=int, default=512, help="generated tokens per sentence (512 = 32.7 s)")
    ap.add_argument("--reps", type=int, default=2, help="rounds over the texts")
    ap.add_argument("--stream-reps", type=int, default=3, help="first-chunk measurements per system")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtypes", default="fp32,int8,int4")
    ap.add_argument("--json", default="", help="also write the raw results here")
    ap.add_argument("--quality", default="", help="benchmarks/quant_quality.py's summary.json for a trained model: "
                    "formats whose judge WER there exceeds fp32's by more than --max-wer-increase are not reported")
    ap.add_argument("--max-wer-increase", type=float, default=MAX_WER_INCREASE)
    args = ap.parse_args()
    logging.getLogger("llmtts.infer.tts").setLevel(logging.ERROR)  # forced lengths: no runaway warnings
    torch.set_num_threads(args.threads)
    python = ensure_soprano(args.soprano_python, Path(args.venv))
    from llmtts.errors import UserError
    from llmtts.infer.tts import TTS

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, ours_dir = build_checkpoint(Path(tmp))
        soprano = Soprano(python, model_dir, args.threads)
        systems, refused = {}, {}
        for d in args.dtypes.split(","):
            try:  # the kernel canary runs at load: a format broken on this CPU is refused, never timed
                systems[d] = TTS.load(ours_dir / "llm", ours_dir / "decoder", dtype=d)
            except UserError as e:
                refused[d] = str(e)
        refused.update(judge_refusals(args.quality, args.max_wer_increase, systems))
        for d, why in refused.items():
            systems.pop(d, None)
            print(f"{d:8} not reported: {why}", flush=True)
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, {args.threads} threads (soprano worker: {soprano.info['threads']}), "
          f"torch {torch.__version__}; soprano-tts 0.2.0 vs llmtts on one random Soprano-1.1-80M-shaped checkpoint, "
          f"{args.tokens} tokens/sentence, {len(TEXTS)} texts x {args.reps} rounds; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    soprano.ask(op="infer", text=TEXTS[0], tokens=8)  # warm-ups
    for tts in systems.values():
        ours_offline(tts, TEXTS[0], 8)
    names = ["soprano", *systems]
    walls: dict[str, list[float]] = {n: [] for n in names}
    samples: dict[str, list[int]] = {n: [] for n in names}
    for r in range(args.reps):
        for i, text in enumerate(TEXTS):
            k = (r * len(TEXTS) + i) % len(names)
            for n in names[k:] + names[:k]:  # rotate who goes first
                res = soprano.ask(op="infer", text=text, tokens=args.tokens) if n == "soprano" else \
                    ours_offline(systems[n], text, args.tokens)
                walls[n].append(res["wall_s"])
                samples[n].append(res["samples"])
    first: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.stream_reps):
        for n in names:
            first[n].append(soprano.ask(op="stream", text=TEXTS[0])["first_chunk_s"] if n == "soprano" else
                            ours_first_chunk(systems[n], TEXTS[0], args.tokens))
    soprano.close()
    parts = {n: first_chunk_parts(systems[n], TEXTS[0]) for n in systems}
    for n, p in parts.items():
        print(f"{n:8} exact first chunk = prefill {p['prefill_ms']:.0f} ms ({p['prompt_ids']} prompt ids, to the "
              f"first token) + {p['R']} steps {p['steps_ms']:.0f} ms + decode {p['decode_ms']:.0f} ms", flush=True)
    results = {"cpu": cpu_name(), "threads": args.threads, "tokens": args.tokens, "texts": TEXTS, "reps": args.reps,
               "systems": {}, "first_chunk_parts": parts}
    # Medians over sentences, and the ratio paired sentence by sentence (the two ran one after the other): a
    # shared machine stalls a process now and then for seconds, which a sum would charge to whoever ran then.
    for n in names:
        med = statistics.median(walls[n])
        row = {"x_rt": statistics.median(s / 32000 / w for s, w in zip(samples[n], walls[n])),
               "ms_per_token": med / args.tokens * 1000,
               "vs_soprano": statistics.median(a / b for a, b in zip(walls["soprano"], walls[n])),
               "x_rt_of_sums": sum(samples[n]) / 32000 / sum(walls[n]),
               "first_chunk_ms": 1000 * statistics.median(first[n]), "walls_s": walls[n], "first_chunks_s": first[n]}
        results["systems"][n] = row
        print(f"{n:8} {row['x_rt']:6.2f}x RT  {row['ms_per_token']:6.1f} ms/token  {row['vs_soprano']:5.2f}x soprano"
              f"  first chunk {row['first_chunk_ms']:5.0f} ms (exact)  | sums: {row['x_rt_of_sums']:.2f}x RT",
              flush=True)
    # Batch-1 decoding reads every weight once per token: the distance to that floor is a number, not a guess.
    bw = read_bandwidth_gbs(args.threads)
    results["read_bandwidth_gbs"] = bw
    print(f"memory read bandwidth {bw:.1f} GB/s (torch sum over 512 MB, {args.threads} threads); per token, batch 1:")
    for n, tts in systems.items():
        b = decode_bytes(tts.llm)
        floor = b / (bw * 1e9) * 1000
        ms = results["systems"][n]["ms_per_token"]
        results["systems"][n].update(decode_bytes=b, floor_ms_per_token=floor)
        print(f"  {n:6} reads {b / 1e6:6.1f} MB of weights: floor {floor:5.1f} ms/token, measured {ms:5.1f} "
              f"(x{ms / floor:.1f} the floor; the rest is compute, the decoder, sampling)")
    print(f"medians over {len(walls['soprano'])} sentences; vs soprano = median of per-sentence wall ratios; first "
          f"chunk = median of {args.stream_reps}")
    print(f"load average now {os.getloadavg()[0]:.1f}")
    if args.json:
        from llmtts.io import write_json_atomic

        write_json_atomic(args.json, results)


if __name__ == "__main__":
    main()
