#!/usr/bin/env bash
# Coverage-guided fuzzing of every reader of untrusted bytes (tools/Engine.Fuzz, FuzzTargets): SharpFuzz
# instruments the engine's assemblies for AFL++ (Debian's afl++), and afl-fuzz runs each target for EXECS inputs
# from its seeds, with a dictionary of the formats' tokens (tokens.dict). Then every saved crash and hang is replayed, and one line per target goes to OUT/summary.tsv:
#   target  execs  crashes  hangs  replayed bugs  paths  coverage  seconds
#   bash tools/fuzz/run.sh [EXECS] [TARGET...]        (default: 1000000 inputs, every target; OUT=.fuzz)
# A target has passed when crashes, hangs and replayed bugs are all 0. Inputs time out after 2 s (a hang).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
execs="${1:-1000000}"; shift || true
out="${OUT:-$root/.fuzz}"

command -v afl-fuzz >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq afl++ >/dev/null; }
# Two copies: plain (seeds, replays) and instrumented (afl-fuzz only: instrumented code needs AFL's shared memory).
rm -rf "$out/plain" "$out/bin"
dotnet publish "$root/tools/Engine.Fuzz" -c Release -o "$out/plain" --nologo -v quiet >&2
cp -r "$out/plain" "$out/bin"
fuzz=(dotnet "$out/plain/engine-fuzz.dll")
"${fuzz[@]}" instrument "$out/bin/Engine.Core.dll" "$out/bin/engine.dll"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <("${fuzz[@]}" list | cut -f1)

export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 \
  AFL_FORKSRV_INIT_TMOUT=60000
summary="$out/summary.tsv"
[ -f "$summary" ] || printf 'target\texecs\tcrashes\thangs\treplayed_bugs\tpaths\tcoverage\tseconds\n' > "$summary"
for target in "${targets[@]}"; do
  seeds="$out/seeds/$target" findings="$out/findings/$target"
  rm -rf "$seeds" "$findings"; mkdir -p "$out/findings"
  "${fuzz[@]}" seeds "$target" "$seeds"
  start=$(date +%s)
  afl-fuzz -i "$seeds" -o "$findings" -x "$root/tools/fuzz/tokens.dict" -t 2000 -m none -E "$execs" -- "$(command -v dotnet)" "$out/bin/engine-fuzz.dll" afl "$target" > "$out/afl-$target.log" 2>&1 \
    || { echo "afl-fuzz failed on $target; see $out/afl-$target.log" >&2; tail -20 "$out/afl-$target.log" >&2; exit 1; }
  stats="$findings/default/fuzzer_stats"
  stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  bugs=0
  for kind in crashes hangs; do
    if compgen -G "$findings/default/$kind/id:*" >/dev/null; then
      "${fuzz[@]}" replay "$target" "$findings/default/$kind"/id:* > "$out/replay-$target-$kind.log" || bugs=$((bugs + 1))
    fi
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$(stat execs_done)" "$(stat saved_crashes)" "$(stat saved_hangs)" "$bugs" \
    "$(stat corpus_count)" "$(stat bitmap_cvg)" "$(( $(date +%s) - start ))" | tee -a "$summary"
done
