"""Spell integers, decimals, ordinals and years as English words (no dependencies)."""
from __future__ import annotations

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                      "nine": "ninth", "twelve": "twelfth"}


def _below_thousand(n: int) -> str:
    words = []
    if n >= 100:
        words.append(_ONES[n // 100] + " hundred")
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else ""))
    elif n > 0 or not words:
        words.append(_ONES[n])
    return " ".join(words)


def spell_int(n: int) -> str:
    """12345 -> 'twelve thousand three hundred forty-five'. Beyond 10^15: digit by digit."""
    if n < 0:
        return "minus " + spell_int(-n)
    if n >= 10**15:
        return spell_digits(str(n))
    if n < 1000:
        return _below_thousand(n)
    words = []
    for scale, name in _SCALES:
        if n >= scale:
            words.append(_below_thousand(n // scale) + " " + name)
            n %= scale
    if n:
        words.append(_below_thousand(n))
    return " ".join(words)


def spell_digits(digits: str) -> str:
    """'0314' -> 'zero three one four'."""
    return " ".join(_ONES[int(d)] for d in digits if d.isdigit())


def spell_decimal(text: str) -> str:
    """'3.14' -> 'three point one four'; '.5' -> 'point five'."""
    whole, _, frac = text.partition(".")
    head = spell_int(int(whole)) if whole else ""
    return (head + " point " + spell_digits(frac)).strip() if frac else head


def spell_ordinal(n: int) -> str:
    """21 -> 'twenty-first'."""
    words = spell_int(n)
    head, sep, last = words.rpartition(" ") if "-" not in words.rsplit(" ", 1)[-1] else words.rpartition("-")
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def spell_year(n: int) -> str:
    """1984 -> 'nineteen eighty-four', 1905 -> 'nineteen oh five', 2007 -> 'two thousand seven',
    2024 -> 'twenty twenty-four', 1900 -> 'nineteen hundred'."""
    if not 1000 <= n <= 2099 or 2000 <= n <= 2009:
        return spell_int(n)
    hi, lo = divmod(n, 100)
    if lo == 0:
        return spell_int(hi) + " hundred"
    if lo < 10:
        return spell_int(hi) + " oh " + _ONES[lo]
    return spell_int(hi) + " " + spell_int(lo)
