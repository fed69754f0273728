#!/usr/bin/env python3
"""Writes what Python's str.lower() does, over all of Unicode, for the engine's tokenizer and its tests.

Hugging Face's BertTokenizer lower-cases with str.lower(): Unicode's full case mapping (one code point may
become several, e.g. U+0130 -> 'i' U+0307) and the Final_Sigma context for U+03A3. This script asks the running
Python for both and writes:

  src/Engine.Core/Tokenization/python-lower.txt   the table the engine reads:
      M <code point> <code point>...   lower() of every code point it changes (U+03A3 aside: context decides)
      I <first> <last>                 case-ignorable ranges (skipped when looking around a capital sigma)
      C <first> <last>                 cased, not case-ignorable, ranges
  tests/Engine.Tests/Fixtures/lowercase/cases.jsonl   strings and Python's lower() of them: every code point
      the table maps, in runs, and seeded random words that put capital sigmas in every kind of context.

The classes are read from lower() itself, not from a property table: a sigma after character c is final exactly
when c is cased and not case-ignorable; after 'A' c it is final when c is either.

Run: python3 tools/unicode/python_lower.py   (from the repository root)
"""
import json
import random
import sys
import unicodedata

SIGMA, FINAL = "\u03a3", "\u03c2"
code_points = [c for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]


def final(text):
    return text.lower()[-1] == FINAL


def classify(c):
    ch = chr(c)
    if final(ch + SIGMA):
        return "C"
    if final("A" + ch + SIGMA):
        return "I"
    return None


def ranges(values):
    out, start, prev = [], None, None
    for v in values:
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            out.append((start, prev))
            start = prev = v
    if start is not None:
        out.append((start, prev))
    return out


mapped = {c: chr(c).lower() for c in code_points if c != 0x3A3 and chr(c).lower() != chr(c)}
classes = {c: classify(c) for c in code_points}
ignorable = [c for c in code_points if classes[c] == "I"]
cased = [c for c in code_points if classes[c] == "C"]

with open("src/Engine.Core/Tokenization/python-lower.txt", "w", encoding="ascii", newline="\n") as f:
    f.write(f"# Python {sys.version.split()[0]} str.lower() (Unicode {unicodedata.unidata_version}); "
            "written by tools/unicode/python_lower.py, do not edit\n")
    for c, lowered in mapped.items():
        f.write("M %X %s\n" % (c, " ".join("%X" % ord(x) for x in lowered)))
    for kind, values in (("I", ignorable), ("C", cased)):
        for first, last in ranges(values):
            f.write("%s %X %X\n" % (kind, first, last))

rng = random.Random(20261129)
pools = {
    "cased": [chr(c) for c in cased],
    "ignorable": [chr(c) for c in ignorable],
    "other": [chr(c) for c in code_points if classes[c] is None and c != 0x3A3 and not chr(c).isspace()],
    "mapped": [chr(c) for c in mapped],
}
cases = []
keys = sorted(mapped)
for i in range(0, len(keys), 40):  # every mapped code point, in runs
    cases.append("".join(chr(c) for c in keys[i:i + 40]))
for _ in range(3000):  # capital sigmas among cased, case-ignorable and other characters
    word = []
    for _ in range(rng.randint(1, 7)):
        kind = rng.choice(["sigma", "sigma", "cased", "ignorable", "ignorable", "other", "mapped"])
        word.append(SIGMA if kind == "sigma" else rng.choice(pools[kind]))
    cases.append("".join(word))
cases += ["\u039f\u0394\u039f\u03a3", "\u03a3", "A\u03a3", "A\u03a3B", "A\u03a3.", "A'\u03a3'", "A\u0345\u03a3", "\u0130stanbul", "\u03a3\u03a3\u03a3"]
with open("tests/Engine.Tests/Fixtures/lowercase/cases.jsonl", "w", encoding="utf-8", newline="\n") as f:
    for text in cases:
        f.write(json.dumps({"text": text, "lower": text.lower()}, ensure_ascii=True) + "\n")
print(f"{len(mapped)} mappings, {len(ranges(ignorable))} ignorable and {len(ranges(cased))} cased ranges, {len(cases)} cases")
