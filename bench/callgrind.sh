#!/usr/bin/env bash
# bench/callgrind.sh: instructions the server executes per check, counted by callgrind. Unlike
# time, the count does not move when other tenants share the machine, so it is the measure
# for CPU work (codecs, batching, gRPC batches); it does not see cache or TLB misses, which
# bench_lookup and bench/cpu.sh measure.
#
#   bench/callgrind.sh [--entd BIN | --ref] [--db DIR] [--customers N] [--rate R]
#                      [--duration S] [--keep DIR] -- ENTBENCH-ARGS...
#
#   bench/callgrind.sh -- --mode unary --connections 4
#   bench/callgrind.sh --rate 20 -- --mode batch --batch-size 100 --connections 4
#
# Runs the server under callgrind twice with the same wall time: idle, then under an open-loop
# entbench load of R calls/s (default 500; 0: closed loop, as streams need) for S seconds
# (default 10). Instructions per check =
# (loaded total - idle total) / checks answered, so start-up, shutdown and idle polling cancel
# out. --ref measures ref_noop instead (the gRPC floor). --keep DIR keeps the profiles
# (callgrind_annotate --inclusive=yes DIR/loaded.out).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENTD=$ROOT/build-perf/entd
CUSTOMERS=1000000
DB=
RATE=500
DURATION=10
KEEP=
REF=0
FEATURES=${ENT_BENCH_FEATURES:-f_metered_0,f_metered_1,f_metered_2}
while [ $# -gt 0 ]; do
	case "$1" in
	--entd) ENTD=$2; shift ;;
	--ref) REF=1 ;;
	--db) DB=$2; shift ;;
	--customers) CUSTOMERS=$2; shift ;;
	--rate) RATE=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--keep) KEEP=$2; shift ;;
	--) shift; break ;;
	-h|--help) sed -n '2,18p' "$0"; exit 0 ;;
	*) echo "callgrind.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
DB=${DB:-$ROOT/bench/results/db-$CUSTOMERS}
ENTBENCH=$ROOT/build-perf/bench/entbench
ENTCTL=$ROOT/build-perf/entctl

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_setup entcg

# run NAME LOAD(0|1): the server under callgrind for warm-up + duration; sets IR to its total.
# Not called in $(...): a subshell would keep the server's PID from the clean-up on failure.
run() {
	local name=$1 load=$2 port addr pid
	shift 2
	port=$(free_port)
	addr=127.0.0.1:$port
	# A 4 GiB map: valgrind cannot reserve the daemon's usual 64 GiB.
	if [ "$REF" = 1 ]; then
		taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.out" \
			"$ROOT/build-perf/bench/ref_noop" --listen "$addr" --threads 1 \
			>"$WORK/$name.log" 2>&1 &
	else
		taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.out" \
			"$ENTD" --db "$DB" --listen "$addr" --threads 1 --map-size 4G \
			--log-level warn >"$WORK/$name.log" 2>&1 &
	fi
	pid=$!
	PIDS+=("$pid")
	for _ in $(seq 600); do
		if [ "$REF" = 1 ]; then
			(echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && sleep 1 && break
		else
			"$ENTCTL" health -a "$addr" >/dev/null 2>&1 && break
		fi
		kill -0 "$pid" 2>/dev/null || { cat "$WORK/$name.log" >&2; exit 1; }
		sleep 0.2
	done
	if [ "$load" = 1 ]; then
		local rate=()
		[ "$RATE" != 0 ] && rate=(--rate "$RATE")
		taskset -c 1 "$ENTBENCH" --target "$addr" "${rate[@]}" --duration "$DURATION" \
			--warmup 1 --customers "$CUSTOMERS" --features "$FEATURES" --strict --quiet \
			--json "$WORK/load.json" "$@" >/dev/null 2>"$WORK/eb.err" ||
			{ cat "$WORK/eb.err" >&2; exit 1; }
	else
		sleep $((DURATION + 1))
	fi
	kill -TERM "$pid"
	wait "$pid" || true
	IR=$(awk '/^summary:/ {print $2}' "$WORK/$name.out")
}

run idle 0
idle=$IR
run loaded 1 "$@"
loaded=$IR
checks=$(jq -r '.total_checks' "$WORK/load.json")
calls=$(jq -r '.total_calls' "$WORK/load.json")
[ -n "$KEEP" ] && mkdir -p "$KEEP" && cp "$WORK/loaded.out" "$WORK/idle.out" "$KEEP/"
awk -v i="$idle" -v l="$loaded" -v c="$checks" -v n="$calls" 'BEGIN {
	printf "idle %d Ir, loaded %d Ir, %d calls, %d checks\n", i, l, n, c
	printf "server instructions per call: %.0f, per check: %.0f\n", (l - i) / n, (l - i) / c }'
