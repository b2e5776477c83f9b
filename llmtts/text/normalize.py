"""Text normalisation: written text -> the spoken form the TTS model reads.

``normalize_text("Dr. Smith paid $3.50 on May 1st, 1999.")``
-> ``"doctor smith paid three dollars fifty cents on may first, nineteen ninety-nine."``

The English normaliser handles unicode -> ASCII, cardinals, decimals, ordinals, years and decades,
times, currency ($ £ € ¥), percentages, common abbreviations and symbols, and whitespace. The output
holds only ASCII letters, spaces and ``.,!?;:'"-()`` so a character-level tokenizer sees a small,
closed alphabet. Other languages plug in through ``register_normalizer(lang, fn)``; the LLM front end
and the corpus's ``normalized_text`` column both go through ``get_normalizer(lang)``.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Protocol

from llmtts.errors import UserError
from llmtts.text.numbers import spell_decimal, spell_digits, spell_int, spell_ordinal, spell_year


class Normalizer(Protocol):
    def __call__(self, text: str, lowercase: bool = True) -> str: ...


# --- unicode -> ASCII -------------------------------------------------------------------------
# Typographic characters NFKD does not map to ASCII by itself; currency signs stay for the currency rule.
_UNICODE_MAP = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": " - ", "\u2015": " - ", "\u2212": "-",
    "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u3000": " ",
    "\u00d7": " times ", "\u00f7": " divided by ", "\u00b0": " degrees ", "\u00bd": " one half ",
    "\u00bc": " one quarter ", "\u00be": " three quarters ", "\u00a7": " section ", "\u00b6": " ",
    "\u00df": "ss", "\u00e6": "ae", "\u00c6": "AE", "\u0153": "oe", "\u0152": "OE", "\u00f8": "o", "\u00d8": "O",
    "\u0142": "l", "\u0141": "L", "\u00f0": "d", "\u00fe": "th", "\u2022": " ", "\u00b7": " ",
}
_CURRENCY_SIGNS = "$\u00a3\u20ac\u00a5"


def to_ascii(text: str) -> str:
    """Map typographic punctuation, strip accents (café -> cafe) and drop what has no ASCII form.
    Currency signs are kept so that the currency rule can read them."""
    text = "".join(_UNICODE_MAP.get(ch, ch) for ch in text)
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if ch.isascii() or ch in _CURRENCY_SIGNS)


# --- abbreviations ----------------------------------------------------------------------------
# Title-like abbreviations (always followed by a name); matched case-sensitively with their dot.
_TITLES = {
    "Mr": "mister", "Mrs": "misses", "Ms": "miss", "Messrs": "messieurs", "Prof": "professor",
    "Gen": "general", "Gov": "governor", "Capt": "captain", "Lt": "lieutenant", "Col": "colonel",
    "Sgt": "sergeant", "Rev": "reverend", "Hon": "honorable", "Sen": "senator", "Rep": "representative",
    "Mt": "mount", "Ft": "fort", "Maj": "major", "Cpl": "corporal", "Pres": "president",
}
_SUFFIXES = {
    "Jr": "junior", "Sr": "senior", "Inc": "incorporated", "Ltd": "limited", "Co": "company",
    "Corp": "corporation", "Ave": "avenue", "Blvd": "boulevard", "Rd": "road", "Dept": "department",
    "Jan": "january", "Feb": "february", "Mar": "march", "Apr": "april", "Aug": "august", "Sept": "september",
    "Sep": "september", "Oct": "october", "Nov": "november", "Dec": "december",
}
_LOWER_ABBR = [
    (re.compile(r"\betc\.", re.I), "et cetera."),
    (re.compile(r"\be\.g\.", re.I), "for example"),
    (re.compile(r"\bi\.e\.", re.I), "that is"),
    (re.compile(r"\bvs\.?(?=\s)", re.I), "versus"),
    (re.compile(r"\bapprox\.", re.I), "approximately"),
    (re.compile(r"\b(a|p)\.\s?m\.", re.I), lambda m: m.group(1).lower() + " m" + _end_dot(m)),
    (re.compile(r"\bU\.S\.A\.(?=\s|$)"), "U S A"),
    (re.compile(r"\bU\.S\.(?=\s|$)"), "U S"),
    (re.compile(r"\bU\.K\.(?=\s|$)"), "U K"),
]
_TITLE_RE = re.compile(r"\b(" + "|".join(sorted(_TITLES, key=len, reverse=True)) + r")\.(?=\s|$)")
_SUFFIX_RE = re.compile(r"\b(" + "|".join(sorted(_SUFFIXES, key=len, reverse=True)) + r")\.")
# Ambiguous ones: "Dr. Smith" (doctor) vs "Elm Dr." (drive), "St. Louis" (saint) vs "Main St." (street).
_DR_ST_RE = re.compile(r"\b(Dr|St)\.(\s+(?=[A-Z]))?")
_NO_RE = re.compile(r"\b(No|no|Nos|nos)\.\s*(?=\d)")


def _end_dot(m: re.Match) -> str:
    """The abbreviation's dot also ends the sentence when the text ends or a capital follows."""
    rest = m.string[m.end():].lstrip()
    return "." if not rest or rest[0].isupper() else ""


def _dr_st(m: re.Match) -> str:
    before_name = m.group(2) is not None
    if m.group(1) == "Dr":
        return "doctor " if before_name else "drive" + _end_dot(m)
    return "saint " if before_name else "street" + _end_dot(m)


def expand_abbreviations(text: str) -> str:
    for pattern, repl in _LOWER_ABBR:
        text = pattern.sub(repl, text)
    text = _NO_RE.sub(lambda m: "numbers " if m.group(1).lower() == "nos" else "number ", text)
    text = _DR_ST_RE.sub(_dr_st, text)
    text = _TITLE_RE.sub(lambda m: _TITLES[m.group(1)], text)
    return _SUFFIX_RE.sub(lambda m: _SUFFIXES[m.group(1)] + _end_dot(m), text)


# --- numbers ----------------------------------------------------------------------------------
_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?|\.\d+"
_SCALE = r"(?:\s*(thousand|million|billion|trillion|[mMbBkK]n?)\b)?"
_CURRENCY_RE = re.compile(r"(-?)([" + _CURRENCY_SIGNS + r"])\s?(" + _NUM + r")" + _SCALE)
_CURRENCY_NAMES = {"$": ("dollar", "dollars", "cent", "cents"), "\u00a3": ("pound", "pounds", "penny", "pence"),
                   "\u20ac": ("euro", "euros", "cent", "cents"), "\u00a5": ("yen", "yen", "sen", "sen")}
_SCALE_WORDS = {"k": "thousand", "m": "million", "mn": "million", "b": "billion", "bn": "billion"}
_PERCENT_RE = re.compile(r"(" + _NUM + r")\s?(%|percent\b|per cent\b)")
_ORDINAL_RE = re.compile(r"\b(\d+(?:,\d{3})*)(st|nd|rd|th)\b", re.I)
_DECADE_RE = re.compile(r"\b(1\d|20)(\d0)'?s\b")
_SHORT_DECADE_RE = re.compile(r"(?<![\w'])'?([2-9]0)'?s\b")
_TIME_RE = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_YEAR_RE = re.compile(r"(?<![\d.,])(1[1-9]\d\d|20\d\d)(?!\d|,\d{3}|\.\d)")
_NUMBER_RE = re.compile(r"(?<![\w.])(-)?(" + _NUM + r")")
_DIGITS_RE = re.compile(r"\d+")
_HASH_NUMBER_RE = re.compile(r"#\s*(?=\d)")


def _scale_word(raw: str | None) -> str:
    if not raw:
        return ""
    return _SCALE_WORDS.get(raw.lower(), raw.lower())


def _number_words(num: str) -> str:
    num = num.replace(",", "")
    return spell_decimal(num) if "." in num else spell_int(int(num))


def _currency(m: re.Match) -> str:
    minus, sign, num, scale = m.group(1), m.group(2), m.group(3).replace(",", ""), _scale_word(m.group(4))
    one, many, sub_one, sub_many = _CURRENCY_NAMES[sign]
    prefix = "minus " if minus else ""
    if scale:  # "$2.5 million" -> "two point five million dollars"
        return f"{prefix}{_number_words(num)} {scale} {many}"
    whole, _, frac = num.partition(".")
    units = int(whole) if whole else 0
    if len(frac) == 2:
        cents = int(frac)
        parts = []
        if units:
            parts.append(f"{spell_int(units)} {one if units == 1 else many}")
        if cents or not units:
            parts.append(f"{spell_int(cents)} {sub_one if cents == 1 else sub_many}")
        return prefix + " ".join(parts)
    if frac:
        return f"{prefix}{spell_decimal(num)} {many}"
    return f"{prefix}{spell_int(units)} {one if units == 1 else many}"


def _decade(words: str) -> str:
    # "nineteen eighty" -> "nineteen eighties"; "nineteen hundred" -> "nineteen hundreds"
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _time(m: re.Match) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes == 0:
        return f"{spell_int(hours)} o'clock" if hours else "midnight"
    if minutes < 10:
        return f"{spell_int(hours)} oh {spell_int(minutes)}"
    return f"{spell_int(hours)} {spell_int(minutes)}"


def _number(m: re.Match) -> str:
    num = m.group(2)
    # Leading zeros mean a code, not a quantity: "007", "02134" are read digit by digit.
    words = spell_digits(num) if len(num) > 1 and num[0] == "0" and num[1].isdigit() else _number_words(num)
    # Spaces keep "4x4" from gluing into "fourx"; extra spaces are collapsed later.
    return " " + ("minus " + words if m.group(1) else words) + " "


def expand_numbers(text: str) -> str:
    text = _HASH_NUMBER_RE.sub("number ", text)
    text = _CURRENCY_RE.sub(_currency, text)
    text = _PERCENT_RE.sub(lambda m: _number_words(m.group(1)) + " percent", text)
    text = _ORDINAL_RE.sub(lambda m: spell_ordinal(int(m.group(1).replace(",", ""))), text)
    text = _DECADE_RE.sub(lambda m: _decade(spell_year(int(m.group(1) + m.group(2)))), text)
    text = _SHORT_DECADE_RE.sub(lambda m: _decade(spell_int(int(m.group(1)))), text)
    text = _TIME_RE.sub(_time, text)
    text = _YEAR_RE.sub(lambda m: spell_year(int(m.group(1))), text)
    text = _NUMBER_RE.sub(_number, text)
    # Whatever digits remain (e.g. "4x4", "B52") are read digit by digit.
    return _DIGITS_RE.sub(lambda m: " " + spell_digits(m.group(0)) + " ", text)


# --- symbols and cleanup ----------------------------------------------------------------------
_SYMBOLS = [
    (re.compile(r"\s*&\s*"), " and "),
    (re.compile(r"\s*\+\s*"), " plus "),
    (re.compile(r"\s*=\s*"), " equals "),
    (re.compile(r"\s*@\s*"), " at "),
    (re.compile(r"%"), " percent "),
]
_ALLOWED = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,!?;:'\"-()")
_BRACKETS = str.maketrans({"[": "(", "]": ")", "{": "(", "}": ")"})
_SPACE_RE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([.,!?;:)])")
_SPACE_AFTER_PAREN_RE = re.compile(r"\(\s+")


def normalize_english(text: str, lowercase: bool = True) -> str:
    """English written text -> spoken form (see module docstring)."""
    text = to_ascii(text)
    text = expand_abbreviations(text)
    text = expand_numbers(text)
    for pattern, repl in _SYMBOLS:
        text = pattern.sub(repl, text)
    text = text.translate(_BRACKETS)
    text = "".join(ch if ch in _ALLOWED else " " for ch in text)
    text = _SPACE_RE.sub(" ", text).strip()
    text = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)
    text = _SPACE_AFTER_PAREN_RE.sub("(", text)
    return text.lower() if lowercase else text


# --- registry ---------------------------------------------------------------------------------
_REGISTRY: dict[str, Normalizer] = {"en": normalize_english}


def register_normalizer(lang: str, fn: Normalizer) -> None:
    """Add or replace the normaliser for a language code (``fn(text, lowercase=True) -> str``)."""
    _REGISTRY[lang.lower()] = fn


def get_normalizer(lang: str = "en") -> Normalizer:
    """The normaliser for ``lang`` ("en", "en-US" and "en_GB" all give the English one)."""
    key = lang.lower().replace("_", "-")
    fn = _REGISTRY.get(key) or _REGISTRY.get(key.split("-")[0])
    if fn is None:
        raise UserError(f"no text normaliser for language '{lang}' (known: {', '.join(sorted(_REGISTRY))}); "
                        "add one with llmtts.text.normalize.register_normalizer")
    return fn


def normalize_text(text: str, lowercase: bool = True, lang: str = "en") -> str:
    return get_normalizer(lang)(text, lowercase=lowercase)
