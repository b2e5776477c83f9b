"""Stage 3: the Vocos decoder on LLM hidden states (``model.py``), its recon/gan training stage (``stage.py``),
export/load (``export.py``: ``load_decoder(path) -> (model, meta)``) and ``llmtts decoder train`` (``cli.py``)."""
