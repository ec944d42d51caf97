#!/usr/bin/env bash
# bench/run.sh: measure entd against the gRPC ceiling (ref_noop) and Redis, on one machine.
#
# Installs what is missing with apt first (deploy/dev.sh deps, plus nghttp2-client for h2load
# and redis-server/redis-tools unless --no-h2load / --no-redis).
#
#   bench/run.sh            full run: 1,000,000 customers, 3 rounds, 10 s windows (~8 min)
#   bench/run.sh --quick    100,000 customers, 1 round, 3 s windows (< 2 min with cached data)
#
# Options: --rounds N  --customers N  --duration S  --warmup S  --no-redis  --no-h2load
# Environment:
#   ENT_BENCH_BUILD     build directory (default <repo>/build-perf, configured Release)
#   ENT_BENCH_DIR       data and results (default <repo>/bench/results); the generated
#                       database is cached there as db-<customers>/
#   ENT_BENCH_SERVER_CPU / ENT_BENCH_CLIENT_CPU   cores to pin to (default 0 / 1)
#   ENT_BENCH_FEATURES  feature codes checked (default: metered features every plan grants)
#   ENT_BENCH_DIST      uniform or zipf customer choice (default uniform)
#
# Method (docs/performance.md): the servers are pinned to one core and every load generator to
# the other; entd and the reference are measured alternately, metric by metric, in several
# rounds, and the table shows medians with the min-max spread. Every process the script
# starts is stopped by its PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${ENT_BENCH_BUILD:-$ROOT/build-perf}
RESULTS=${ENT_BENCH_DIR:-$ROOT/bench/results}
SCPU=${ENT_BENCH_SERVER_CPU:-0}
CCPU=${ENT_BENCH_CLIENT_CPU:-1}
FEATURES=${ENT_BENCH_FEATURES:-f_metered_0,f_metered_1,f_metered_2}
DIST=${ENT_BENCH_DIST:-uniform}
PY=/usr/bin/python3

QUICK=0
ROUNDS=3
CUSTOMERS=1000000
DURATION=10
WARMUP=2
DO_REDIS=1
DO_H2LOAD=1
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1; ROUNDS=1; CUSTOMERS=100000; DURATION=3; WARMUP=1 ;;
	--rounds) ROUNDS=$2; shift ;;
	--customers) CUSTOMERS=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--warmup) WARMUP=$2; shift ;;
	--no-redis) DO_REDIS=0 ;;
	--no-h2load) DO_H2LOAD=0 ;;
	-h|--help) sed -n '2,22p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done

log() { printf '[run.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- processes we start, and their clean-up --------------------------------------------
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_setup entbench

pin_s=(); pin_c=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	pin_s=(taskset -c "$SCPU"); pin_c=(taskset -c "$CCPU")
else
	log "WARNING: fewer than 2 cores or no taskset: server and load generator are not pinned"
fi


# ---- packages and build ----------------------------------------------------------------
# What the README's commands install, plus the bench's own tools (h2load, redis-server and
# redis-benchmark), unless their rows are turned off.
bench_pkgs=()
[ "$DO_H2LOAD" = 1 ] && bench_pkgs+=(nghttp2-client)
[ "$DO_REDIS" = 1 ] && bench_pkgs+=(redis-server redis-tools)
"$ROOT/deploy/dev.sh" deps "${bench_pkgs[@]}"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
	log "configuring $BUILD (Release)"
	cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DENT_BUILD_BENCH=ON \
		-DENT_BUILD_TESTS=OFF >"$WORK/cmake.log" 2>&1 || { cat "$WORK/cmake.log" >&2; exit 1; }
fi
log "building entd entctl entbench ref_noop in $BUILD"
cmake --build "$BUILD" -j2 --target entd entctl entbench ref_noop >"$WORK/build.log" 2>&1 ||
	{ tail -30 "$WORK/build.log" >&2; exit 1; }
ENTD=$BUILD/entd
ENTCTL=$BUILD/entctl
ENTBENCH=$BUILD/bench/entbench
REF=$BUILD/bench/ref_noop

# ---- data set (generated once, cached) -------------------------------------------------
mkdir -p "$RESULTS"
DB=$RESULTS/db-$CUSTOMERS
if [ ! -f "$DB/.complete" ]; then
	log "generating $CUSTOMERS customers into $DB (once; cached for later runs)"
	rm -rf "$DB"
	"$ENTCTL" generate --db "$DB" --customers "$CUSTOMERS" >"$RESULTS/db-$CUSTOMERS.txt"
	touch "$DB/.complete"
fi

# ---- servers ---------------------------------------------------------------------------
ENTD_PORT=$(free_port)
REF_PORT=$(free_port)
ENTD_ADDR=127.0.0.1:$ENTD_PORT
REF_ADDR=127.0.0.1:$REF_PORT
"${pin_s[@]}" "$ENTD" --db "$DB" --listen "$ENTD_ADDR" --threads 1 --map-size 64G \
	--log-level warn 2>"$WORK/entd.log" &
ENTD_PID=$!
PIDS+=("$ENTD_PID")
"${pin_s[@]}" "$REF" --listen "$REF_ADDR" --threads 1 2>"$WORK/ref.log" &
REF_PID=$!
PIDS+=("$REF_PID")
for _ in $(seq 300); do
	"$ENTCTL" health -a "$ENTD_ADDR" >/dev/null 2>&1 && break
	kill -0 "$ENTD_PID" 2>/dev/null || { cat "$WORK/entd.log" >&2; exit 1; }
	sleep 0.1
done
"$ENTCTL" health -a "$ENTD_ADDR" >/dev/null || { log "entd did not become healthy"; exit 1; }
log "entd pid $ENTD_PID on $ENTD_ADDR, ref_noop pid $REF_PID on $REF_ADDR"

RUNS=$WORK/runs.jsonl
: >"$RUNS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# How busy the machine was apart from us: all non-idle CPU time (steal included) minus the
# CPU time of the processes this script ran, over the run. Jiffies of /proc/stat's cpu line.
cpu_busy() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $9}' /proc/stat; }
proc_cpu() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
read -r BUSY_START STEAL_START <<<"$(cpu_busy)"
T_START=$(date +%s.%N)
OURS_EXTRA=0 # CPU of processes not waited for by this shell (redis-server)

# One entbench run in the background, its JSON line appended to $RUNS under \a label when it
# finishes; sets EB_PID. Extra arguments go to entbench. eb_finish waits for it, logs the
# outcome and adds the server's CPU time per call over the whole run (warm-up included), a
# measure that holds up better than throughput when other work shares the machine.
eb_start() {
	local label=$1 target=$2
	shift 2
	EB_SERVER_PID=$REF_PID
	[ "$target" = "$ENTD_ADDR" ] && EB_SERVER_PID=$ENTD_PID
	EB_CPU0=$(proc_cpu "$EB_SERVER_PID")
	rm -f "$WORK/eb.json"
	"${pin_c[@]}" "$ENTBENCH" --target "$target" --duration "$DURATION" --warmup "$WARMUP" \
		--customers "$CUSTOMERS" --features "$FEATURES" --dist "$DIST" --strict --quiet \
		--label "$label" --json "$WORK/eb.json" "$@" >/dev/null 2>"$WORK/eb.err" &
	EB_PID=$!
	PIDS+=("$EB_PID")
}
eb_finish() {
	local label=$1 rc=0 cpu
	wait "$EB_PID" || rc=$?
	cpu=$(( $(proc_cpu "$EB_SERVER_PID") - EB_CPU0 ))
	if [ ! -s "$WORK/eb.json" ]; then
		# A run that could not even start leaves no JSON: record the failure for the table.
		jq -nc --arg l "$label" '{tool:"entbench", label:$l, status:"FAILED"}' >"$WORK/eb.json"
	fi
	cat "$WORK/eb.json" >>"$RUNS"
	jq -c --arg l "cpu.$label" --argjson j "$cpu" --argjson hz "$(getconf CLK_TCK)" \
		'select(.total_calls > 0) | {tool:"cpu", label:$l, status:.status, server_cpu_s:($j/$hz),
		 us_per_call:($j/$hz*1e6/.total_calls), us_per_check:($j/$hz*1e6/.total_checks)}' \
		"$WORK/eb.json" >>"$RUNS" 2>/dev/null || true
	if [ "$rc" -ne 0 ]; then
		log "$label: FAILED (entbench exit $rc)"
		cat "$WORK/eb.err" >&2
		return 0
	fi
	log "$label: $(jq -r '"\(.calls_per_s|floor) calls/s, \(.checks_per_s|floor) checks/s, p50 \(.latency_us.p50) us, p99 \(.latency_us.p99) us"' "$WORK/eb.json"), server $(tail -1 "$RUNS" | jq -r '.us_per_check*10|floor/10') us CPU/check"
}
entbench() {
	eb_start "$@"
	eb_finish "$1"
}

# Sample entd's memory while a load runs: VmRSS, and its split into file-backed pages (the
# LMDB map) and anonymous memory (everything entd allocated itself). Writes one JSON line,
# the sample of highest RssAnon, to \a out.
rss_sample() {
	local label=$1 watch=$2 out=$3 samples=$WORK/rss.samples
	: >"$samples"
	while kill -0 "$watch" 2>/dev/null; do
		awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s %s ", $1, $2} END {print ""}' \
			"/proc/$ENTD_PID/status" >>"$samples" 2>/dev/null || true
		sleep 0.5
	done
	$PY - "$label" "$samples" >"$out" <<-'PYEOF'
	import json, sys
	label, path = sys.argv[1], sys.argv[2]
	best = None
	for line in open(path):
	    f = line.split()
	    d = {f[i].rstrip(':'): int(f[i + 1]) for i in range(0, len(f) - 1, 2)}
	    if 'RssAnon' in d and (best is None or d['RssAnon'] > best['RssAnon']):
	        best = d
	if best:
	    print(json.dumps({"tool": "rss", "label": label, "vmrss_kb": best['VmRSS'],
	                      "rss_anon_kb": best['RssAnon'], "rss_file_kb": best['RssFile']}))
	PYEOF
}

# An entd run with its memory sampled.
entbench_rss() {
	local label=$1 sampler
	eb_start "$@"
	rss_sample "rss.$label" "$EB_PID" "$WORK/rss.json" &
	sampler=$!
	PIDS+=("$sampler")
	eb_finish "$label"
	wait "$sampler" || true
	cat "$WORK/rss.json" >>"$RUNS" 2>/dev/null || true
}

# h2load on one pre-encoded CheckEntitlement; h2load counts HTTP 200 as success whatever the
# grpc-status, so the answer is checked first with nghttp (grpc-status: 0 in the trailers).
BODY=$WORK/check.body
"$ENTBENCH" --write-body "$BODY" --body-customer cus_1 --body-feature "${FEATURES%%,*}"
H2PATH=/ent.v1.EntitlementService/CheckEntitlement
grpc_ok() {
	nghttp -v -H ':method: POST' -H 'content-type: application/grpc' -H 'te: trailers' \
		-d "$BODY" "http://$1$H2PATH" 2>&1 | grep -aq 'grpc-status: 0'
}
h2load_run() {
	local label=$1 addr=$2 out=$WORK/h2load.out ok=true
	grpc_ok "$addr" || ok=false
	# h2load takes whole numbers with a unit: fractional seconds become milliseconds.
	"${pin_c[@]}" h2load -D "$(awk -v s="$DURATION" 'BEGIN {printf "%dms", s * 1000}')" \
		--warm-up-time "$(awk -v s="$WARMUP" 'BEGIN {printf "%dms", s * 1000}')" -c 4 -m 32 -t 1 \
		-H 'content-type: application/grpc' -H 'te: trailers' -d "$BODY" \
		"http://$addr$H2PATH" >"$out" 2>&1 || ok=false
	grpc_ok "$addr" || ok=false
	$PY - "$label" "$out" "$ok" >>"$RUNS" <<-'EOF'
	import json, re, sys
	label, path, ok = sys.argv[1], sys.argv[2], sys.argv[3] == "true"
	text = open(path).read()
	m = re.search(r"finished in [^,]+, ([0-9.]+) req/s", text)
	c = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
	r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
	bad = (int(r.group(5)) + int(r.group(6))) if r else 1
	if c:
	    bad += sum(int(c.group(i)) for i in (2, 3, 4))
	ok = ok and m is not None and bad == 0
	print(json.dumps({"tool": "h2load", "label": label, "status": "OK" if ok else "FAILED",
	                  "calls_per_s": float(m.group(1)) if m else 0.0, "non_ok": bad}))
	EOF
	log "$label: $(tail -1 "$RUNS" | jq -r '"\(.calls_per_s|floor) req/s \(.status)"')"
}

# ---- phase 1: throughput, A/B per metric per round -------------------------------------
for r in $(seq "$ROUNDS"); do
	log "round $r/$ROUNDS: throughput"
	entbench_rss "entd.unary.r$r" "$ENTD_ADDR" --mode unary --connections 4 --inflight 32
	entbench "ref.unary.r$r" "$REF_ADDR" --mode unary --connections 4 --inflight 32
	if [ "$DO_H2LOAD" = 1 ]; then
		h2load_run "entd.h2load.r$r" "$ENTD_ADDR"
		h2load_run "ref.h2load.r$r" "$REF_ADDR"
	fi
	entbench_rss "entd.stream.r$r" "$ENTD_ADDR" --mode stream --connections 4 --inflight 4 \
		--stream-window 32
	entbench_rss "entd.batch100.r$r" "$ENTD_ADDR" --mode batch --batch-size 100 \
		--connections 4 --inflight 4
done

# ---- phase 2: latency at a fixed rate: half of entd's median unary peak ----------------
RATE=$(jq -rs '[.[] | select(.label // "" | startswith("entd.unary.")) | select(.status=="OK") | .calls_per_s] | sort | if length==0 then 0 else .[(length/2|floor)] / 2 | floor end' "$RUNS")
if [ "$RATE" -gt 0 ]; then
	for r in $(seq "$ROUNDS"); do
		log "round $r/$ROUNDS: open loop at $RATE calls/s"
		entbench "entd.open.r$r" "$ENTD_ADDR" --mode unary --rate "$RATE" --connections 4
		entbench "ref.open.r$r" "$REF_ADDR" --mode unary --rate "$RATE" --connections 4
	done
else
	log "no successful entd unary run: open-loop phase skipped"
fi

# ---- phase 3: Redis GET on as many keys ------------------------------------------------
if [ "$DO_REDIS" = 1 ] && command -v redis-server >/dev/null; then
	REDIS_PORT=$(free_port)
	"${pin_s[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
		--appendonly no --daemonize no --logfile "$WORK/redis.log" &
	REDIS_PID=$!
	PIDS+=("$REDIS_PID")
	for _ in $(seq 100); do
		redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	# redis-benchmark -r N asks for key:<12-digit n>; load exactly those, values about the
	# size of a CheckEntitlementResponse.
	log "loading $CUSTOMERS keys into redis-server pid $REDIS_PID"
	$PY - "$CUSTOMERS" <<-'EOF' | redis-cli -p "$REDIS_PORT" --pipe >"$WORK/redis-load.log"
	import sys
	n = int(sys.argv[1])
	v = b"x" * 64
	out = sys.stdout.buffer
	for i in range(n):
	    k = b"key:%012d" % i
	    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
	EOF
	for r in $(seq "$ROUNDS"); do
		for p in 1 100; do
			label=redis.get.p$p.r$r
			# About --duration seconds at typical rates: redis-benchmark counts requests.
			n=$(awk -v d="$DURATION" -v p="$p" 'BEGIN {printf "%d", d * (p == 1 ? 60000 : 400000)}')
			redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
			"${pin_c[@]}" redis-benchmark -p "$REDIS_PORT" -t get -r "$CUSTOMERS" -n "$n" \
				-c 50 -P "$p" --csv >"$WORK/redis.csv" 2>/dev/null || true
			hits=$(redis-cli -p "$REDIS_PORT" info stats | tr -d '\r' | awk -F: '/^keyspace_hits/ {print $2}')
			miss=$(redis-cli -p "$REDIS_PORT" info stats | tr -d '\r' | awk -F: '/^keyspace_misses/ {print $2}')
			rps=$(awk -F'","' '/^"GET/ {print $2}' "$WORK/redis.csv" | tr -d '"')
			jq -nc --arg l "$label" --arg rps "${rps:-0}" --arg h "${hits:-0}" \
				--arg m "${miss:-0}" --argjson p "$p" \
				'{tool:"redis-benchmark", label:$l, pipeline:$p, calls_per_s:($rps|tonumber),
				  hits:($h|tonumber), misses:($m|tonumber),
				  status:(if ($rps|tonumber) > 0 and ($m|tonumber) == 0 then "OK" else "FAILED" end)}' \
				>>"$RUNS"
			log "$label: $(tail -1 "$RUNS" | jq -r '"\(.calls_per_s|floor) GET/s, \(.misses) misses"')"
		done
	done
	OURS_EXTRA=$(proc_cpu "$REDIS_PID")
	kill -TERM "$REDIS_PID" 2>/dev/null || true
fi

# ---- summary ---------------------------------------------------------------------------
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
read -r BUSY_END STEAL_END <<<"$(cpu_busy)"
T_END=$(date +%s.%N)
# Children this shell waited for (entbench, h2load, redis-benchmark...): bash's `times`.
# (In this shell, not in a $(...) subshell, whose child counters start at zero.)
times >"$WORK/times"
CHILD_CPU_S=$(tail -1 "$WORK/times" | awk '{for (i = 1; i <= 2; i++) {split($i, a, "m"); s += a[1] * 60 + a[2]} print s}')
OURS_JIFFIES=$(( $(proc_cpu "$ENTD_PID") + $(proc_cpu "$REF_PID") + OURS_EXTRA ))
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$RESULTS/$STAMP.json
$PY - "$RUNS" "$OUT" <<EOF
import json, statistics, sys, platform, os

runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out_path = sys.argv[2]
meta = {
    "time": "$STAMP", "quick": $QUICK == 1, "rounds": $ROUNDS, "customers": $CUSTOMERS,
    "duration_s": $DURATION, "warmup_s": $WARMUP, "features": "$FEATURES", "dist": "$DIST",
    "open_loop_rate": $RATE, "server_cpu": "$SCPU", "client_cpu": "$CCPU",
    "build_dir": "$BUILD", "build_type": os.popen("grep -m1 '^CMAKE_BUILD_TYPE' '$BUILD/CMakeCache.txt' | cut -d= -f2").read().strip(),
    "loadavg_start": "$LOAD_START", "loadavg_end": "$LOAD_END",
    "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
    "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                       if l.startswith("model name")), "?"),
    "commit": os.popen("git -C '$ROOT' rev-parse --short HEAD 2>/dev/null").read().strip(),
}

def values(prefix, key="calls_per_s", tool=None):
    v = []
    for r in runs:
        if not r.get("label", "").startswith(prefix) or (tool and r.get("tool") != tool):
            continue
        if r.get("status", "OK") != "OK":
            continue
        x = r
        for k in key.split("."):
            x = x.get(k, {}) if isinstance(x, dict) else {}
        if isinstance(x, (int, float)):
            v.append(float(x))
    return v

def stat(v):
    return None if not v else {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}

def fmt(s, unit=""):
    if not s:
        return "-"
    def f(x):
        if unit == "us": return "%.0f" % x
        if unit == "us1": return "%.2f" % x
        if unit == "MB": return "%.1f" % x
        return "{:,.0f}".format(x)
    if s["n"] > 1:
        return "%s [%s-%s]" % (f(s["median"]), f(s["min"]), f(s["max"]))
    return f(s["median"])

failed = [r["label"] for r in runs
          if r.get("tool") in ("entbench", "h2load", "redis-benchmark") and r.get("status") != "OK"]

# Machine noise: CPU used by anything but our processes, as a share of all cores.
hz = os.sysconf("SC_CLK_TCK")
elapsed = $T_END - $T_START
busy = ($BUSY_END - $BUSY_START) / hz
ours = $OURS_JIFFIES / hz + $CHILD_CPU_S
other = max(busy - ours, 0.0)
meta["elapsed_s"] = round(elapsed, 1)
meta["cpu_busy_s"] = round(busy, 1)
meta["cpu_ours_s"] = round(ours, 1)
meta["cpu_other_share"] = round(other / (elapsed * os.cpu_count()), 3)
meta["cpu_steal_share"] = round(($STEAL_END - $STEAL_START) / hz / (elapsed * os.cpu_count()), 3)
meta["noisy"] = meta["cpu_other_share"] > 0.05 or meta["cpu_steal_share"] > 0.05
rss = [r for r in runs if r.get("tool") == "rss"]
# Memory: the peak over every sampled entd run, not a median.
def peak(v):
    return None if not v else {"median": max(v), "min": min(v), "max": max(v), "n": 1}
anon_mb = peak([r["rss_anon_kb"] / 1024 for r in rss])
vmrss_mb = peak([r["vmrss_kb"] / 1024 for r in rss])
file_mb = peak([r["rss_file_kb"] / 1024 for r in rss])

S = {
    "entd_unary": stat(values("entd.unary.")), "ref_unary": stat(values("ref.unary.")),
    "entd_h2load": stat(values("entd.h2load.")), "ref_h2load": stat(values("ref.h2load.")),
    "entd_stream": stat(values("entd.stream.", "checks_per_s")),
    "entd_batch100": stat(values("entd.batch100.", "checks_per_s")),
    "entd_open_p99": stat(values("entd.open.", "latency_us.p99")),
    "ref_open_p99": stat(values("ref.open.", "latency_us.p99")),
    "entd_open_p50": stat(values("entd.open.", "latency_us.p50")),
    "ref_open_p50": stat(values("ref.open.", "latency_us.p50")),
    "entd_unary_p99": stat(values("entd.unary.", "latency_us.p99")),
    "ref_unary_p99": stat(values("ref.unary.", "latency_us.p99")),
    "redis_get": stat(values("redis.get.p1.")), "redis_get_p100": stat(values("redis.get.p100.")),
    "entd_cpu_us_unary": stat(values("cpu.entd.unary.", "us_per_call")),
    "ref_cpu_us_unary": stat(values("cpu.ref.unary.", "us_per_call")),
    "entd_cpu_us_stream": stat(values("cpu.entd.stream.", "us_per_check")),
    "entd_cpu_us_batch100": stat(values("cpu.entd.batch100.", "us_per_check")),
    "entd_rss_anon_mb": anon_mb, "entd_vmrss_mb": vmrss_mb, "entd_rss_file_mb": file_mb,
}

def med(k):
    return S[k]["median"] if S[k] else None

def ratio(a, b):
    return None if a is None or not b else a / b

rows = []
def row(metric, e, r, rat, target=None, ok=None):
    verdict = "" if ok is None else ("PASS" if ok else "MISS")
    rows.append((metric, e, r, "-" if rat is None else "%.2f" % rat,
                 (target or "") + ((" " + verdict) if verdict else "")))

rate = meta["open_loop_rate"]
x = ratio(med("entd_unary"), med("ref_unary"))
row("unary calls/s (entbench, closed loop)", fmt(S["entd_unary"]), fmt(S["ref_unary"]), x,
    ">= 0.85", None if x is None else x >= 0.85)
x = ratio(med("entd_h2load"), med("ref_h2load"))
row("unary calls/s (h2load, one key)", fmt(S["entd_h2load"]), fmt(S["ref_h2load"]), x,
    ">= 0.85", None if x is None else x >= 0.85)
x = ratio(med("entd_stream"), med("entd_unary"))
row("stream checks/s (vs entd unary)", fmt(S["entd_stream"]), fmt(S["entd_unary"]), x,
    ">= 2.5", None if x is None else x >= 2.5)
b = med("entd_batch100")
row("batch-100 checks/s", fmt(S["entd_batch100"]), "-", None, ">= 1,000,000",
    None if b is None else b >= 1e6)
row("batch-100 checks/s vs Redis GET -P 100", fmt(S["entd_batch100"]), fmt(S["redis_get_p100"]),
    ratio(b, med("redis_get_p100")), "info")
row("unary calls/s vs Redis GET", fmt(S["entd_unary"]), fmt(S["redis_get"]),
    ratio(med("entd_unary"), med("redis_get")), "info")
# The open-loop row holds only while the reference keeps the schedule: a no-op server whose
# sends had to queue for a free slot stalled with the host, and the row then compares stalls.
ref_open = [r for r in runs if r.get("tool") == "entbench" and r.get("status") == "OK"
            and r.get("label", "").startswith("ref.open.")]
ref_behind = [r["label"] for r in ref_open if r.get("backlog_max", 0) > 0]
meta["open_ref_fell_behind"] = ref_behind
x = ratio(med("entd_open_p99"), med("ref_open_p99"))
row("open loop p99 us @ %s/s" % "{:,}".format(rate), fmt(S["entd_open_p99"], "us"),
    fmt(S["ref_open_p99"], "us"), x,
    "<= 1.5" + (" (ref behind %d/%d)" % (len(ref_behind), len(ref_open)) if ref_behind else ""),
    None if x is None else x <= 1.5)
row("open loop p50 us @ %s/s" % "{:,}".format(rate), fmt(S["entd_open_p50"], "us"),
    fmt(S["ref_open_p50"], "us"), ratio(med("entd_open_p50"), med("ref_open_p50")), "info")
row("closed loop unary p99 us", fmt(S["entd_unary_p99"], "us"), fmt(S["ref_unary_p99"], "us"),
    ratio(med("entd_unary_p99"), med("ref_unary_p99")), "info")
x = ratio(med("entd_cpu_us_unary"), med("ref_cpu_us_unary"))
row("server CPU us per unary call", fmt(S["entd_cpu_us_unary"], "us1"), fmt(S["ref_cpu_us_unary"], "us1"),
    x, "info (<= 1/0.85 = 1.18)")
row("server CPU us per check: stream, batch-100", fmt(S["entd_cpu_us_stream"], "us1") + ", " +
    fmt(S["entd_cpu_us_batch100"], "us1"), fmt(S["entd_cpu_us_unary"], "us1"), None, "info")
a = med("entd_rss_anon_mb")
row("RssAnon MB at peak (beyond mapped DB)", fmt(S["entd_rss_anon_mb"], "MB"), "-", None, "< 50",
    None if a is None else a < 50)
row("VmRSS MB at peak", fmt(S["entd_vmrss_mb"], "MB"), "-", None, "info")
row("RssFile MB at peak (mapped DB pages)", fmt(S["entd_rss_file_mb"], "MB"), "-", None, "info")

hdr = ("metric", "entd", "reference", "ratio", "target")
w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(5)]
lines = [" | ".join(str(c).ljust(w[i]) for i, c in enumerate(hdr)),
         "-|-".join("-" * w[i] for i in range(5))]
lines += [" | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) for r in rows]
table = "\n".join(lines)
print()
print("entd benchmark %s  (%s; %d customers; %d round(s) x %ss; load avg %s -> %s)" % (
    meta["time"], "QUICK" if meta["quick"] else "full", meta["customers"], meta["rounds"],
    meta["duration_s"], meta["loadavg_start"], meta["loadavg_end"]))
print("reference: unary rows = ref_noop (constant answer, gRPC ceiling); stream row = entd unary;"
      " Redis rows = redis-server GET")
print("cells: median [min-max] over rounds; memory: peak of all samples")
print("machine: %s, %d cpus; other processes used %.0f%% of all CPU during the run, steal %.0f%%%s" % (
    meta["cpu_model"], meta["cpus"],
    100 * meta["cpu_other_share"], 100 * meta["cpu_steal_share"],
    "  -> NOISY: compare ratios only" if meta["noisy"] else ""))
print(table)
if ref_behind:
    print("\nopen loop: the reference fell behind its own schedule in " + ", ".join(ref_behind) +
          " (sends queued for a free slot): the host stalled, and the open-loop row compares"
          " stalled servers")
if failed:
    print("\nFAILED runs (excluded from the medians): " + ", ".join(failed))
json.dump({"meta": meta, "summary": S, "table": [dict(zip(hdr, r)) for r in rows],
           "failed": failed, "runs": runs}, open(out_path, "w"), indent=1)
print("\nall results: " + out_path)
sys.exit(1 if failed else 0)
EOF
