#!/usr/bin/env bash
# bench/usage.sh: durable usage reports per second, single ReportUsage against BatchReportUsage,
# and what the ingestion does to check latency (docs/performance.md, "Usage reports").
#
#   bench/usage.sh [--build DIR] [--customers N] [--report-customers M] [--rounds R]
#                  [--duration S] [--check-rate R] [--no-p99]
#
# Installs what is missing with apt (deploy/dev.sh deps, plus jq) and builds $ENT_BENCH_BUILD
# (default build-perf/, Release). One entd (--threads 1) pinned to core 0 on a working copy of
# the generated data set (N customers, default 100000; generated once into $ENT_BENCH_DIR/db-N
# like bench/run.sh does), every load generator pinned to core 1. Each round runs, alternately on the same daemon:
#   single     ReportUsage, closed loop, 4 connections x 16 in flight (64)
#   batch-100  BatchReportUsage of 100 records, 4 connections x 2 in flight
#   batch-1000 BatchReportUsage of 1000 records, 2 connections x 2 in flight
# Reports go to M customers drawn uniformly (default: all N), three metered features, unique
# idempotency keys. An answer comes only after the commit, so acknowledged records per second
# are durable reports per second. For each run: records/s, call latency p50/p99, and entd's CPU
# time (utime + stime from /proc) per record, which holds up better than throughput when the
# host is shared. Then, unless --no-p99: CheckEntitlement at --check-rate calls/s (open loop,
# default 2000) for S seconds on a quiet daemon, and again while batch-1000 ingestion runs; the
# p99 of both, and their ratio. Medians over rounds (min-max) in one table; every run's JSON in
# $ENT_BENCH_DIR/usage-<UTC time>.json. Every process it starts is stopped by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${ENT_BENCH_BUILD:-$ROOT/build-perf}
RESULTS=${ENT_BENCH_DIR:-$ROOT/bench/results}
CUSTOMERS=100000
REPORT_CUSTOMERS=
ROUNDS=3
DURATION=5
CHECK_RATE=2000
P99=1
FEATURES=${ENT_BENCH_FEATURES:-f_metered_0,f_metered_1,f_metered_2}
while [ $# -gt 0 ]; do
	case "$1" in
	--build) BUILD=$2; shift ;;
	--customers) CUSTOMERS=$2; shift ;;
	--report-customers) REPORT_CUSTOMERS=$2; shift ;;
	--rounds) ROUNDS=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--check-rate) CHECK_RATE=$2; shift ;;
	--no-p99) P99=0 ;;
	-h|--help) sed -n '2,22p' "$0"; exit 0 ;;
	*) echo "usage.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
REPORT_CUSTOMERS=${REPORT_CUSTOMERS:-$CUSTOMERS}
# What the README's commands install, plus jq for the table; then the Release build.
"$ROOT/deploy/dev.sh" deps jq
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
	echo "usage.sh: configuring $BUILD (Release)" >&2
	cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DENT_BUILD_BENCH=ON \
		-DENT_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$BUILD" -j2 --target entd entctl entbench bench_usage >/dev/null

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_setup entusage
log() { echo "usage.sh: $*" >&2; }

# ---- data set (generated once, cached), then a working copy the writes go to ---------------
mkdir -p "$RESULTS"
DB=$RESULTS/db-$CUSTOMERS
if [ ! -f "$DB/.complete" ]; then
	log "generating $CUSTOMERS customers into $DB (once; cached for later runs)"
	rm -rf "$DB"
	"$BUILD/entctl" generate --db "$DB" --customers "$CUSTOMERS" >"$RESULTS/db-$CUSTOMERS.txt"
	touch "$DB/.complete"
fi
cp -r "$DB" "$WORK/db"

PORT=$(free_port)
ADDR=127.0.0.1:$PORT
taskset -c 0 "$BUILD/entd" --db "$WORK/db" --listen "$ADDR" --threads 1 --map-size 64G \
	--log-level warn 2>"$WORK/entd.log" &
SPID=$!
PIDS+=("$SPID")
for _ in $(seq 300); do
	"$BUILD/entctl" health -a "$ADDR" >/dev/null 2>&1 && break
	kill -0 "$SPID" 2>/dev/null || { cat "$WORK/entd.log" >&2; exit 1; }
	sleep 0.1
done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
OUT=$RESULTS/usage-$(date -u +%Y%m%dT%H%M%SZ).json
STEAL0=$(awk '/^cpu /{print $9}' /proc/stat)

# bench NAME ENTBENCH-ARGS...: one closed-loop run; appends a JSON line with the server's CPU.
bench() {
	local name=$1 c0 c1
	shift
	c0=$(cpu "$SPID")
	if ! taskset -c 1 "$BUILD/bench/entbench" --target "$ADDR" --duration "$DURATION" \
		--warmup 1 --customers "$REPORT_CUSTOMERS" --features "$FEATURES" --strict --quiet \
		--json "$WORK/r.json" "$@" >/dev/null 2>"$WORK/eb.err"; then
		log "$name: FAILED: $(tr '\n' ' ' <"$WORK/eb.err")"
		return 0
	fi
	c1=$(cpu "$SPID")
	tail -1 "$WORK/r.json" | jq -c --arg n "$name" --arg r "$ROUND" \
		--argjson cpu "$(((c1 - c0)))" --argjson hz "$HZ" \
		'{name: $n, round: ($r|tonumber), records_per_s: .checks_per_s, calls_per_s,
		  p50_us: .latency_us.p50, p99_us: .latency_us.p99,
		  cpu_us_per_record: ($cpu / $hz * 1e6 / .total_checks), raw: .}' >>"$OUT"
}

# p99 NAME [BACKGROUND-ENTBENCH-ARGS...]: open-loop checks, optionally under a report load.
p99() {
	local name=$1 bg=
	shift
	if [ $# -gt 0 ]; then
		taskset -c 1 "$BUILD/bench/entbench" --target "$ADDR" --duration $((DURATION + 2)) \
			--warmup 0 --customers "$REPORT_CUSTOMERS" --features "$FEATURES" --strict \
			--quiet --json "$WORK/bg.json" "$@" >/dev/null 2>>"$WORK/eb.err" &
		bg=$!
		PIDS+=("$bg")
		sleep 1 # the ingestion is running before the checks start
	fi
	taskset -c 1 "$BUILD/bench/entbench" --target "$ADDR" --mode unary --rate "$CHECK_RATE" \
		--connections 2 --duration "$DURATION" --warmup 0 --customers "$CUSTOMERS" \
		--features "$FEATURES" --strict --quiet --json "$WORK/c.json" >/dev/null \
		2>>"$WORK/eb.err" || log "$name: check load FAILED"
	local during=null
	if [ -n "$bg" ]; then
		wait "$bg" || log "$name: background load FAILED"
		during=$(tail -1 "$WORK/bg.json" | jq '.checks_per_s')
	fi
	tail -1 "$WORK/c.json" | jq -c --arg n "$name" --arg r "$ROUND" --argjson bg "$during" \
		'{name: $n, round: ($r|tonumber), check_p50_us: .latency_us.p50,
		  check_p99_us: .latency_us.p99, checks_per_s, records_per_s_meanwhile: $bg,
		  raw: .}' >>"$OUT"
}

for ROUND in $(seq "$ROUNDS"); do
	log "round $ROUND/$ROUNDS"
	bench single --mode report --connections 4 --inflight 16
	bench batch-100 --mode report-batch --batch-size 100 --connections 4 --inflight 2
	bench batch-1000 --mode report-batch --batch-size 1000 --connections 2 --inflight 2
	if [ "$P99" = 1 ]; then
		p99 checks-quiet
		p99 checks-during-batch-1000 --mode report-batch --batch-size 1000 --connections 2 \
			--inflight 2
	fi
done
STEAL1=$(awk '/^cpu /{print $9}' /proc/stat)

# ---- the table ---------------------------------------------------------------------------
med() { jq -s -r --arg n "$1" --arg k "$2" '[.[] | select(.name == $n) | .[$k] | select(. != null)]
	| sort | if length == 0 then "-" else
	"\(.[(length - 1) / 2 | floor] | . * 10 | round / 10) [\(.[0] | . * 10 | round / 10)-\(.[-1] | . * 10 | round / 10)]" end' "$OUT"; }
echo
echo "entd pinned to core 0 (--threads 1), load on core 1; $CUSTOMERS customers, reports over $REPORT_CUSTOMERS; $ROUNDS round(s) of ${DURATION}s; load average $(cut -d' ' -f1-3 /proc/loadavg); steal $(((STEAL1 - STEAL0) / HZ)) s"
printf '%-12s | %-26s | %-24s | %-24s | %-22s\n' load "durable records/s" "call p50 us" "call p99 us" "entd CPU us/record"
printf '%s\n' "-------------|----------------------------|--------------------------|--------------------------|-----------------------"
for n in single batch-100 batch-1000; do
	printf '%-12s | %-26s | %-24s | %-24s | %-22s\n' "$n" "$(med $n records_per_s)" "$(med $n p50_us)" \
		"$(med $n p99_us)" "$(med $n cpu_us_per_record)"
done
if [ "$P99" = 1 ]; then
	echo
	printf '%-26s | %-24s | %-24s | %-22s\n' "checks at $CHECK_RATE/s (open loop)" "p50 us" "p99 us" "records/s meanwhile"
	for n in checks-quiet checks-during-batch-1000; do
		printf '%-26s | %-24s | %-24s | %-22s\n' "$n" "$(med $n check_p50_us)" "$(med $n check_p99_us)" \
			"$(med $n records_per_s_meanwhile)"
	done
	jq -s -r '[.[] | select(.name == "checks-quiet")] as $q | [.[] | select(.name == "checks-during-batch-1000")] as $d
		| [range(0; [$q, $d] | map(length) | min)] | map($d[.].check_p99_us / $q[.].check_p99_us) | sort
		| if length == 0 then empty else "check p99 during / quiet, per round: \(map(. * 100 | round / 100))" end' "$OUT"
fi
echo "runs: $OUT"
