"""soprano-tts 0.2.0's own runtime on a Soprano-shaped model directory, timed on request (run by
``benchmarks/vs_soprano.py`` with the Python of a venv that has soprano-tts; no llmtts import).

Protocol: one JSON object per line on stdin, one JSON answer per line on the original stdout (soprano prints its
warnings to stdout, so they are sent to stderr):
``{"op": "infer", "text": ..., "tokens": N}`` -> ``{"wall_s", "samples"}`` (``SopranoTTS.infer``, exactly N tokens:
``generate`` gets ``min_new_tokens = max_new_tokens = N``); ``{"op": "stream", "text": ...}`` ->
``{"first_chunk_s"}`` (``infer_stream``, time to its first chunk); ``{"op": "quit"}``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def load(model_dir: str, threads: int):
    import torch
    from soprano.backends.transformers import TransformersModel
    from soprano.tts import SopranoTTS
    from soprano.vocos.decoder import SopranoDecoder

    torch.set_num_threads(threads)
    # SopranoTTS.__init__ with model_path does the same, plus a warm-up infer of up to 512 tokens; assembled by hand
    # (as tests/interop/make_soprano_reference.py) so the caller decides the warm-up.
    tts = SopranoTTS.__new__(SopranoTTS)
    tts.pipeline = TransformersModel(device="cpu", model_path=model_dir)
    tts.device, tts.backend = "cpu", "transformers"
    tts.decoder = SopranoDecoder()
    state = torch.load(str(Path(model_dir) / "decoder.pth"), weights_only=True, map_location="cpu")
    tts.decoder.load_state_dict(state)
    tts.decoder.eval()
    tts.decoder_batch_size, tts.RECEPTIVE_FIELD, tts.TOKEN_SIZE = 1, 4, 2048
    return tts


def force_length(tts) -> dict:
    """Make every ``generate`` produce exactly ``box["tokens"]`` tokens (a random model may say [STOP] early)."""
    box = {"tokens": 512}
    orig = tts.pipeline.model.generate

    def generate(*args, **kwargs):
        kwargs["max_new_tokens"] = kwargs["min_new_tokens"] = box["tokens"]
        return orig(*args, **kwargs)

    tts.pipeline.model.generate = generate
    return box


def main() -> int:
    model_dir, threads = sys.argv[1], int(sys.argv[2])
    proto = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr
    import soprano  # noqa: F401  (fails here, with a clear traceback, in a venv without it)
    import torch

    tts = load(model_dir, threads)
    box = force_length(tts)
    proto.write(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}) + "\n")
    proto.flush()
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        torch.manual_seed(0)
        t = time.perf_counter()
        if req["op"] == "infer":
            box["tokens"] = int(req["tokens"])
            wav = tts.infer(req["text"])
            ans = {"wall_s": time.perf_counter() - t, "samples": int(wav.shape[0])}
        else:
            stream = tts.infer_stream(req["text"])
            next(stream)
            ans = {"first_chunk_s": time.perf_counter() - t}
            stream.close()
        proto.write(json.dumps(ans) + "\n")
        proto.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
