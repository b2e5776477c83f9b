"""``llmtts data prepare``: a folder of raw recordings -> an LJSpeech-layout dataset that ``data shards`` reads.

Stages per recording (``run.py``): decode (``audio.py``) -> cut at pauses with Silero VAD (``segment.py``) ->
trim silence -> transcribe each cut with an offline faster-whisper model (``transcribe.py``) -> loudness
normalisation (``loudness.py``) -> wavs + a per-recording part file (``writer.py``), from which
``metadata.csv``, ``speakers.csv``, ``cuts.jsonl`` and ``prepare.json`` are rebuilt at the end.
"""
