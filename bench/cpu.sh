#!/usr/bin/env bash
# bench/cpu.sh: server CPU time per check for one load shape, the repeatable measure used to
# judge an optimisation on a shared machine (docs/performance.md, "Optimisations").
#
#   bench/cpu.sh [--build DIR] [--db DIR] [--customers N] [--server entd|ref|ab] [--runs R]
#                [--perf FILE] [--duration S] [--base ENTD] -- ENTBENCH-ARGS...
#
#   bench/cpu.sh -- --mode batch --batch-size 100 --connections 4 --inflight 4
#   bench/cpu.sh --perf /tmp/batch.data -- --mode batch
#   bench/cpu.sh --server ab -- --mode unary --connections 4 --inflight 32
#
# Starts the server pinned to core 0 (entd --threads 1 on the cached data set, or ref_noop;
# "ab": both, measured alternately run by run), runs entbench pinned to core 1 R times (default
# 3) and prints, per run, the throughput and the server's CPU time (utime + stime from /proc)
# divided by the checks it answered, then the median (and with ab, the median of the entd/ref
# ratios of CPU per check and of throughput, pair by pair: the figure that survives a noisy
# machine best). --base ENTD compares entd with another entd binary (a build without the change
# under test) the same way, instead of with ref_noop. With --perf, `perf record -g` samples entd during its last run (cpu-clock: the
# guests here have no hardware counters). Every process it starts is stopped by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build-perf
CUSTOMERS=1000000
DB=
SERVER=entd
RUNS=3
PERF=
DURATION=5
BASE=
FEATURES=${ENT_BENCH_FEATURES:-f_metered_0,f_metered_1,f_metered_2}
while [ $# -gt 0 ]; do
	case "$1" in
	--build) BUILD=$2; shift ;;
	--db) DB=$2; shift ;;
	--customers) CUSTOMERS=$2; shift ;;
	--server) SERVER=$2; shift ;;
	--runs) RUNS=$2; shift ;;
	--perf) PERF=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--base) BASE=$2; SERVER=ab; shift ;;
	--) shift; break ;;
	-h|--help) sed -n '2,16p' "$0"; exit 0 ;;
	*) echo "cpu.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
DB=${DB:-$ROOT/bench/results/db-$CUSTOMERS}
[ -f "$DB/.complete" ] || { echo "cpu.sh: no data set at $DB (bench/run.sh generates it)" >&2; exit 1; }

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_setup entcpu

# The base build serves a copy of the data set: both servers run at once (measured in turn),
# and entd locks its directory against a second process (<db>/entd.lock).
BASE_DB=
if [ -n "$BASE" ]; then
	BASE_DB=$WORK/base-db
	mkdir -p "$BASE_DB"
	cp "$DB/data.mdb" "$BASE_DB/data.mdb"
fi

# start_server KIND: sets SPID and ADDR
start_server() {
	local port
	port=$(free_port)
	ADDR=127.0.0.1:$port
	if [ "$1" = ref ] && [ -z "$BASE" ]; then
		taskset -c 0 "$BUILD/bench/ref_noop" --listen "$ADDR" --threads 1 2>"$WORK/$1.log" &
	elif [ "$1" = ref ]; then
		taskset -c 0 "$BASE" --db "$BASE_DB" --listen "$ADDR" --threads 1 --map-size 64G \
			--log-level warn 2>"$WORK/$1.log" &
	else
		taskset -c 0 "$BUILD/entd" --db "$DB" --listen "$ADDR" --threads 1 --map-size 64G \
			--log-level warn 2>"$WORK/$1.log" &
	fi
	SPID=$!
	PIDS+=("$SPID")
	for _ in $(seq 300); do
		if [ "$1" = ref ] && [ -z "$BASE" ]; then
			(echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
		else
			"$BUILD/entctl" health -a "$ADDR" >/dev/null 2>&1 && break
		fi
		kill -0 "$SPID" 2>/dev/null || { cat "$WORK/$1.log" >&2; exit 1; }
		sleep 0.1
	done
}
KINDS=("$SERVER")
[ "$SERVER" = ab ] && KINDS=(entd ref)
declare -A S_PID S_ADDR
for k in "${KINDS[@]}"; do
	start_server "$k"
	S_PID[$k]=$SPID
	S_ADDR[$k]=$ADDR
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
declare -A RES
for r in $(seq "$RUNS"); do
	for k in "${KINDS[@]}"; do
		SPID=${S_PID[$k]}
		PERF_PID=
		if [ -n "$PERF" ] && [ "$r" = "$RUNS" ] && [ "$k" != ref ]; then
			perf record -q -g -e cpu-clock -p "$SPID" -o "$PERF" -- sleep $((DURATION + 1)) \
				>/dev/null 2>&1 &
			PERF_PID=$!
			PIDS+=("$PERF_PID")
		fi
		c0=$(cpu "$SPID")
		ok=1
		taskset -c 1 "$BUILD/bench/entbench" --target "${S_ADDR[$k]}" --duration "$DURATION" \
			--warmup 1 --customers "$CUSTOMERS" --features "$FEATURES" --strict --quiet \
			--json "$WORK/r.json" "$@" >/dev/null 2>"$WORK/eb.err" || ok=0
		c1=$(cpu "$SPID")
		[ -n "$PERF_PID" ] && wait "$PERF_PID" || true
		if [ "$ok" = 0 ]; then
			echo "run $r $k: FAILED: $(tr '\n' ' ' <"$WORK/eb.err")"
			continue
		fi
		us=$(tail -1 "$WORK/r.json" | jq -r --argjson j $((c1 - c0)) --argjson hz "$HZ" '$j/$hz*1e6/.total_checks')
		qps=$(tail -1 "$WORK/r.json" | jq -r '.checks_per_s')
		RES[$k.$r]="$us $qps"
		tail -1 "$WORK/r.json" | jq -r --arg k "$k" --arg r "$r" --argjson us "$us" \
			'"run \($r) \($k): \(.calls_per_s|floor) calls/s  \(.checks_per_s|floor) checks/s  p50 \(.latency_us.p50) us  p99 \(.latency_us.p99) us  server \($us*1000|floor/1000) us CPU/check"'
	done
done
med() { sort -g | awk '{v[NR]=$1} END {if (NR) printf "%.3f (min %.3f, max %.3f, %d runs)", v[int((NR+1)/2)], v[1], v[NR], NR}'; }
for k in "${KINDS[@]}"; do
	echo "$k median server CPU per check: $(for r in $(seq "$RUNS"); do [ -n "${RES[$k.$r]:-}" ] && echo "${RES[$k.$r]}" | cut -d' ' -f1; done | med) us"
done
if [ "$SERVER" = ab ]; then
	echo "entd/ref CPU per check, pairwise: $(for r in $(seq "$RUNS"); do
		[ -n "${RES[entd.$r]:-}" ] && [ -n "${RES[ref.$r]:-}" ] &&
			echo "${RES[entd.$r]} ${RES[ref.$r]}" | awk '{print $1 / $3}'; done | med)"
	echo "entd/ref throughput, pairwise:   $(for r in $(seq "$RUNS"); do
		[ -n "${RES[entd.$r]:-}" ] && [ -n "${RES[ref.$r]:-}" ] &&
			echo "${RES[entd.$r]} ${RES[ref.$r]}" | awk '{print $2 / $4}'; done | med)"
fi
