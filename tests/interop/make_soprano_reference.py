"""Generate the parity references in tests/interop/soprano_ref/ with soprano-tts 0.2.0's own code.

Run in a separate venv that has soprano-tts (it is not a dependency of this project)::

    python3.11 -m venv .cache/soprano-venv
    .cache/soprano-venv/bin/pip install soprano-tts==0.2.0 torch==2.13.0 transformers==5.25.0
    .cache/soprano-venv/bin/python tests/interop/make_soprano_reference.py            # small + real shapes

For each case it builds the seeded Soprano-shaped directory of ``soprano_fixture.py`` (the test rebuilds the
very same one: the weight digests are stored to prove it), runs ``SopranoTTS.infer`` (its text cleaning,
sentence splitting, prompt, Hugging Face ``generate`` with temperature 0 -> 0.001, top_p 0.95, repetition
penalty 1.2, hidden-state collection, decoder and cropping), and writes ``CASE.json`` (generated Soprano ids,
weight digests, the smallest top-1/top-2 logit gap seen, versions) and ``CASE.npy`` (the waveform, float32).

Only one thing is changed in Soprano's run: ``generate`` gets ``max_new_tokens=CAP`` instead of 512 (a random
model never says [STOP]; 512 tokens would make multi-megabyte references). The test passes the same cap.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import soprano_fixture  # noqa: E402

# (case, fixture size, text, token cap)
CASES = [
    ("small_hello", "small", "Hello world, this is a test.", 12),
    ("small_numbers", "small", "Dr. Smith paid $3.50 at 10:30 for 2 apples!", 12),
    ("real_hello", "real", "Hello world, this is a test.", 6),
]
# Soprano's text cleaning and splitting on awkward inputs: the test checks the port gives the same.
NORMALIZER_PROBES = ["Hello world!", "Dr. Smith paid $3.50 at 10:30 for 2 apples!", "It's 1999; call 555-123-4567.",
                     "The CPU & GPU use 16GB (about 50%).", "Ünïcödé — quotes “here”... and soooo on?!",
                     "First. Second sentence is a bit longer than thirty chars. Third!",
                     "A very long sentence " * 20 + "ends here."]


def run_case(name: str, size: str, text: str, cap: int, out_dir: Path) -> dict:
    from soprano.backends.transformers import TransformersModel
    from soprano.tts import SopranoTTS
    from soprano.vocos.decoder import SopranoDecoder

    with tempfile.TemporaryDirectory() as tmp:
        info = soprano_fixture.build(tmp, size)
        s = info["shapes"]
        pipeline = TransformersModel(device="cpu", model_path=tmp)
        record: dict = {"sequences": [], "min_gap": float("inf")}
        orig_generate = pipeline.model.generate

        def capped_generate(*args, **kwargs):
            kwargs["max_new_tokens"] = cap
            kwargs["output_logits"] = True  # raw logits: lets us check greedy steps were unambiguous
            out = orig_generate(*args, **kwargs)
            n_prompt = kwargs["input_ids"].shape[1]
            seq = out.sequences[0, n_prompt:].tolist()
            eos = pipeline.model.config.eos_token_id
            record["finish"] = "stop" if eos in seq else "length"
            record["sequences"].append(seq[: seq.index(eos)] if eos in seq else seq)  # ids before [STOP]
            record["prompt_ids"] = kwargs["input_ids"][0].tolist()
            from transformers import RepetitionPenaltyLogitsProcessor

            penalty = RepetitionPenaltyLogitsProcessor(penalty=kwargs["repetition_penalty"])
            for j, logits in enumerate(out.logits):  # the gap the sampler at temperature 0.001 saw
                scores = penalty(out.sequences[:, : n_prompt + j], logits.float().clone())
                top = torch.topk(scores[0], 2).values
                record["min_gap"] = min(record["min_gap"], float(top[0] - top[1]))
            return out

        pipeline.model.generate = capped_generate
        # SopranoTTS.__init__ would download the real decoder and build SopranoDecoder() at full size; the small
        # case needs its own widths, so the object is assembled by hand and Soprano's own infer() runs on it.
        tts = SopranoTTS.__new__(SopranoTTS)
        tts.pipeline, tts.device, tts.backend = pipeline, "cpu", "transformers"
        tts.decoder = SopranoDecoder(num_input_channels=s["hidden"], decoder_num_layers=s["dec_layers"],
                                     decoder_dim=s["dec_dim"], decoder_intermediate_dim=s["dec_inter"])
        state = torch.load(str(Path(tmp) / "decoder.pth"), weights_only=True, map_location="cpu")
        tts.decoder.load_state_dict(state)
        tts.decoder.eval()
        tts.decoder_batch_size, tts.RECEPTIVE_FIELD, tts.TOKEN_SIZE = 1, 4, 2048
        torch.manual_seed(0)
        wav = tts.infer(text, temperature=0.0).numpy().astype(np.float32)
    np.save(out_dir / f"{name}.npy", wav)
    import transformers

    import soprano  # noqa: F401

    ref = {"case": name, "size": size, "text": text, "cap": cap, "tokens": record["sequences"],
           "prompt_ids": record["prompt_ids"], "finish": record["finish"], "min_top2_gap": record["min_gap"], "samples": int(wav.shape[0]),
           "llm_digest": info["llm_digest"], "decoder_digest": info["decoder_digest"],
           "versions": {"soprano-tts": "0.2.0", "torch": torch.__version__, "transformers": transformers.__version__}}
    (out_dir / f"{name}.json").write_text(json.dumps(ref, indent=1))
    return ref


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "soprano_ref"))
    ap.add_argument("--cases", nargs="*", default=[c[0] for c in CASES])
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    from soprano.tts import SopranoTTS
    from soprano.utils.text_normalizer import clean_text

    norm = [{"text": t, "clean": clean_text(t.strip()),
             "prompts": [p[0] for p in SopranoTTS._preprocess_text(None, [t])]} for t in NORMALIZER_PROBES]
    (out / "normalizer.json").write_text(json.dumps(norm, indent=1))
    for name, size, text, cap in CASES:
        if name in args.cases:
            ref = run_case(name, size, text, cap, out)
            print(f"{name}: {len(ref['tokens'][0])} tokens {ref['tokens'][0][:8]}..., {ref['samples']} samples, "
                  f"min top-2 gap {ref['min_top2_gap']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
