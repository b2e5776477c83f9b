"""The audio token space's defaults, in one place, and where each token fact comes from.

- ``sample_rate`` and ``samples_per_token``: the codec config (``model.*``); ``llmtts codec encode`` writes both into
  the token shards' ``index.json``; ``llmtts llm dump-hidden`` carries them on and adds ``hidden_size`` (the LLM's
  width) and ``codebook_size`` (``n_audio``). The pipeline's audio shards take the codec's rate
  (``shards.sample_rate: 0``); ``llmtts data shards --sample-rate`` defaults to the same constant.
- The decoder stage reads ``hidden_size``, ``sample_rate`` and ``samples_per_token`` from its input ``index.json``
  (``--llm-path``'s width on the fly) when its config leaves them out (0, the stage config's default); a value that
  is set and differs from the input is a one-line error at start-up (``DecoderModelConfig.resolved``).
"""

DEFAULT_SAMPLE_RATE = 32000  # Soprano's rate; the default of every config that has a sample rate
DEFAULT_SAMPLES_PER_TOKEN = 2048  # Soprano's: 15.6 tokens/s at 32 kHz
