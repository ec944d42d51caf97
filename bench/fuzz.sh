#!/usr/bin/env bash
# bench/fuzz.sh: run one libFuzzer target for a while, growing its committed corpus.
#
#   bench/fuzz.sh TARGET SECONDS [--build DIR] [--jobs 1] [--no-nice] [-- LIBFUZZER-ARGS...]
#   bench/fuzz.sh walk 900
#   bench/fuzz.sh --list
#
# Builds the libFuzzer binaries with clang (-DENT_BUILD_FUZZ=ON, ASan+UBSan) in build-fuzz/ the
# first time, then runs tests/fuzz/fuzz_TARGET for SECONDS of wall time at nice 19 on a scratch
# copy of tests/fuzz/corpus/TARGET, merges what it found back into the committed corpus
# (-merge=1: only inputs that add coverage are kept) and prints one line for
# docs/security.md's fuzzing table: CPU seconds used (utime + stime of the fuzzer, so a busy
# machine does not inflate it), executions, coverage (libFuzzer "cov:" edges and "ft:"
# features), corpus size and findings (crash-*/leak-*/timeout-* files, left in
# build-fuzz/findings/TARGET/). Exits 1 on a finding.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build-fuzz
NICE=(nice -n 19)
TARGET=
SECONDS_WALL=
EXTRA=()

while [ $# -gt 0 ]; do
	case "$1" in
	--build) BUILD=$2; shift 2 ;;
	--no-nice) NICE=(); shift ;;
	--list) ls "$ROOT"/tests/fuzz/fuzz_*.c | sed 's/.*fuzz_//; s/\.c$//'; exit 0 ;;
	--) shift; EXTRA=("$@"); break ;;
	-h|--help) sed -n '2,16p' "$0"; exit 0 ;;
	*)
		if [ -z "$TARGET" ]; then TARGET=$1
		elif [ -z "$SECONDS_WALL" ]; then SECONDS_WALL=$1
		else echo "fuzz.sh: unexpected '$1'" >&2; exit 2; fi
		shift ;;
	esac
done
[ -n "$TARGET" ] && [ -n "$SECONDS_WALL" ] || { sed -n '2,16p' "$0"; exit 2; }
[ -f "$ROOT/tests/fuzz/fuzz_$TARGET.c" ] || { echo "fuzz.sh: no tests/fuzz/fuzz_$TARGET.c" >&2; exit 2; }

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
	CC=clang cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DENT_BUILD_FUZZ=ON \
		-DENT_BUILD_BENCH=OFF -DENT_BUILD_TESTS=ON >/dev/null
fi
"${NICE[@]}" cmake --build "$BUILD" -j2 --target "fuzz_$TARGET" >/dev/null
BIN=$BUILD/tests/fuzz/fuzz_$TARGET

CORPUS=$ROOT/tests/fuzz/corpus/$TARGET
mkdir -p "$CORPUS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-$TARGET.XXXXXX")
FIND=$BUILD/findings/$TARGET
mkdir -p "$FIND" "$WORK/grown"
trap 'rm -rf "$WORK"' EXIT
cp -r "$CORPUS"/. "$WORK/grown/" 2>/dev/null || true
# The build-fuzz tree keeps a private, unminimized corpus between runs too: a run carries the
# last one's work forward even before its finds are merged and committed.
mkdir -p "$BUILD/corpus/$TARGET"
cp -r "$BUILD/corpus/$TARGET"/. "$WORK/grown/" 2>/dev/null || true

# Inputs are small by design: a record, a config file, a JSON document, a few pages.
MAXLEN=8192
[ "$TARGET" = walk ] && MAXLEN=16384
[ "$TARGET" = import ] && MAXLEN=16384

before=$(date +%s)
set +e
/usr/bin/time -f '%U %S' -o "$WORK/time" "${NICE[@]}" "$BIN" "$WORK/grown" \
	-max_total_time="$SECONDS_WALL" -max_len="$MAXLEN" -timeout=10 -rss_limit_mb=2048 \
	-print_final_stats=1 -artifact_prefix="$FIND/" "${EXTRA[@]}" >"$WORK/log" 2>&1
status=$?
set -e
cp "$WORK/log" "$FIND/last.log"
cpu=$(awk '{printf "%.0f", $1 + $2}' "$WORK/time")
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$WORK/log" | grep -o '[0-9]*$' || echo 0)
last=$(grep -E '^#[0-9]+' "$WORK/log" | tail -1)
cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo '?')
ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo '?')

cp -r "$WORK/grown"/. "$BUILD/corpus/$TARGET/"
# Minimize into the committed corpus: only inputs that add coverage to it are added.
"${NICE[@]}" "$BIN" -merge=1 -max_len="$MAXLEN" "$CORPUS" "$WORK/grown" >"$WORK/merge.log" 2>&1 || true
findings=$(ls "$FIND" | grep -cE '^(crash|leak|timeout|oom|slow-unit)-' || true)
echo "fuzz $TARGET: cpu_s=$cpu wall_s=$(( $(date +%s) - before )) execs=$execs cov=$cov ft=$ft corpus=$(ls "$CORPUS" | wc -l) findings=$findings exit=$status"
[ "$status" -eq 0 ] || exit 1
