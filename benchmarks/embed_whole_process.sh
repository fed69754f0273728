#!/usr/bin/env bash
# Whole-process embedding, engine vs ONNX Runtime (issue 12): `engine embed` and the same pipeline on ONNX Runtime
# (`Engine.Benchmarks ort-embed`: same tokenizer, same length-ordered batches, mean pooling, L2 normalisation) over the
# first N texts of a TSV with a `text` column (default: the SpamAssassin test split of tools/spam/prepare.py), cut to
# 128 tokens. Checks that both print the same embeddings, then times both processes with hyperfine.
#   benchmarks/embed_whole_process.sh [TSV] [N]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tsv="${1:-/tmp/spamdata/test.tsv}"
count="${2:-512}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$tsv" "$count" "$work/texts.txt" <<'PY'
import csv, sys
csv.field_size_limit(1 << 30)
with open(sys.argv[1], newline='', encoding='utf-8') as f:
    rows = [r['text'].replace('\n', ' ').replace('\r', ' ') for r in csv.DictReader(f, delimiter='\t')]
with open(sys.argv[3], 'w', encoding='utf-8') as out:
    out.write('\n'.join(rows[:int(sys.argv[2])]) + '\n')
PY
dotnet build "$root/benchmarks/Engine.Benchmarks" -c Release -v q -nologo >/dev/null
"$root/engine" embed --quiet "builds the launcher's program once" >/dev/null
ort="dotnet $root/benchmarks/Engine.Benchmarks/bin/Release/net10.0/Engine.Benchmarks.dll ort-embed $work/texts.txt 32 128"
engine="$root/engine embed --input $work/texts.txt --max-length 128 --batch-size 32 --quiet"
$engine > "$work/engine.jsonl"
$ort > "$work/ort.jsonl"
/usr/bin/python3 - "$work/engine.jsonl" "$work/ort.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b), (len(a), len(b))
worst = min(sum(x * y for x, y in zip(u, v)) for u, v in zip(a, b))
print(f"{len(a)} embeddings; lowest cosine engine vs ONNX Runtime: {worst:.7f}")
assert worst > 0.9999
PY
hyperfine --warmup 1 --runs "${RUNS:-5}" -n engine "$engine > /dev/null" -n onnxruntime "$ort > /dev/null"
