"""llm-tts-factory: codec -> Qwen LLM -> Vocos decoder TTS, trained from scratch."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy so that `import llmtts` (and the CLI's --help) does not import transformers.
    if name == "TTS":
        from llmtts.infer.tts import TTS

        return TTS
    raise AttributeError(name)
