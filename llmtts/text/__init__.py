"""Text front end: written text -> spoken form (``normalize_text``, per-language registry)."""
from llmtts.text.normalize import get_normalizer, normalize_text, register_normalizer

__all__ = ["get_normalizer", "normalize_text", "register_normalizer"]
