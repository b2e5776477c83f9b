"""``llmtts serve``: an OpenAI-compatible speech server (FastAPI + uvicorn) with step-level request batching.

Design and limits: docs/serve.md.
"""
