"""Inference: ``TTS`` (``tts.py``: load, synthesize, synthesize_batch, stream), KV-cached generation
(``generate.py``, ``fast_decode.py``), sampling (``sampling.py``), streaming decode (``stream.py``), sentence
splitting (``text.py``), int8 weights (``quant.py``) and ``llmtts synthesize`` (``cli.py``)."""
