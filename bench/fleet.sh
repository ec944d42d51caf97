#!/usr/bin/env bash
# bench/fleet.sh: fleet mode figures (docs/performance.md, "Fleet mode"): one nats-server -js and
# three entd replicas on loopback, driven by bench/fleet_bench.py (its docstring has the method
# of each figure):
#   write on one node -> visible on the others (p50/p99), replica apply rate from the stream,
#   ReportUsage / ConsumeEntitlement through the fleet, checks during a 100,000-customer plan
#   change vs quiet, bootstrap of a new replica from a 1,000,000-customer snapshot.
#
#   bench/fleet.sh                 everything (the 1M-customer data set is generated once and
#                                  cached in bench/results; ~3.7 GB, a few minutes)
#   bench/fleet.sh --quick         100,000 customers for the bootstrap, 2 s windows
#   bench/fleet.sh --only visible,apply   some figures only
#
# Options: --customers N (fleet data set, default 100000) --bootstrap-customers N (default
# 1000000; 0 skips) --duration S (default 5) --only LIST
# Environment: ENT_BENCH_BUILD (default <repo>/build-perf, Release), ENT_BENCH_DIR (data and
# results, default <repo>/bench/results). Every process is started by the script and stopped by
# its PID (fleet_bench.py); results are appended to $ENT_BENCH_DIR/fleet.jsonl.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${ENT_BENCH_BUILD:-$ROOT/build-perf}
RESULTS=${ENT_BENCH_DIR:-$ROOT/bench/results}
args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) args+=(--bootstrap-customers 100000 --duration 2 --visible-samples 200) ;;
	--customers | --bootstrap-customers | --duration | --only | --visible-samples)
		args+=("$1" "$2")
		shift
		;;
	-h | --help)
		sed -n '2,20p' "$0"
		exit 0
		;;
	*)
		echo "fleet.sh: unknown option $1" >&2
		exit 2
		;;
	esac
	shift
done
"$ROOT/deploy/dev.sh" deps
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
	cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DENT_BUILD_BENCH=ON \
		-DENT_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$BUILD" -j2 --target entd entctl entbench >/dev/null
mkdir -p "$RESULTS"
exec /usr/bin/python3 "$ROOT/bench/fleet_bench.py" --entd "$BUILD/entd" --entctl "$BUILD/entctl" \
	--entbench "$BUILD/bench/entbench" --cache "$RESULTS" --json "$RESULTS/fleet.jsonl" "${args[@]}"
