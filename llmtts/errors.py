"""Errors that are the user's to fix: the CLI prints them as one line (no traceback) and exits 2."""


class UserError(Exception):
    """Bad input, path or config. The message must name the file / sample / key and say what to do."""


class TokenizeError(UserError, ValueError):
    """Text holds something the tokenizer cannot encode; the message names the character."""
