"""Interoperability with other TTS projects' checkpoints (import into this project's exports, export back)."""
