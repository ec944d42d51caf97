#!/usr/bin/env bash
# The README's two commands, and their parts:
#   deploy/dev.sh run    install what is missing, build, load the demo data, start entd
#   deploy/dev.sh test   install what is missing, build, run every test (release + ASan/UBSan)
#   deploy/dev.sh fleet  a local fleet: one nats-server -js and three entd on loopback
#   deploy/dev.sh deps [PACKAGE...] | build   (deps: the build and test packages, plus any named)
# Works on a fresh Debian 12 machine as root or as a user with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
jobs=$(nproc 2>/dev/null || echo 2)

# Build and test dependencies, all from Debian 12's own archive.
build_pkgs=(build-essential cmake pkg-config libgrpc-dev libprotobuf-dev protobuf-compiler
	protobuf-c-compiler libprotobuf-c-dev liblmdb-dev libuv1-dev libjansson-dev libyaml-dev libmicrohttpd-dev libcmocka-dev libnats-dev)
# golang-go + nats.go: the reference NATS client, built by the fleet snapshot suite to prove that
# our object-store layout interoperates (tests/integration/fleet/objinterop); nats-io/jwt: the
# fleet TLS suite makes operator-mode credentials with it (tests/integration/fleet/credsgen).
test_pkgs=(python3 python3-grpcio python3-protobuf lmdb-utils openssl procps nats-server
	golang-go golang-github-nats-io-go-nats-dev golang-github-nats-io-jwt-dev
	clang time) # clang (libFuzzer) and /usr/bin/time: bench/fuzz.sh

deps() {
	local missing=() p
	for p in "${build_pkgs[@]}" "${test_pkgs[@]}" "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "dev.sh: installing ${missing[*]}" >&2
	local sudo=()
	[ "$(id -u)" = 0 ] || sudo=(sudo)
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() { # build DIR [cmake args...]
	local dir=$1
	shift
	cmake -S "$top" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
	cmake --build "$dir" -j"$jobs"
}

run() {
	deps
	build build
	local data=${ENTD_DEMO_DIR:-$top/.ent-demo}
	mkdir -p "$data"
	if [ ! -f "$data/data.mdb" ]; then
		build/entctl import --db "$data" deploy/demo/demo.json
	fi
	if [ ! -s "$data/admin-token" ]; then
		(umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$data/admin-token")
	fi
	local addr=${ENTD_ADDR:-127.0.0.1:50051}
	cat <<MSG

entd is starting on $addr and unix:$data/entd.sock with the demo data in $data.
In another terminal:
  build/entctl health
  build/entctl check cus_acme api_calls 10
  build/entctl get cus_acme
  ENTD_ADMIN_TOKEN=\$(cat $data/admin-token) build/entctl admin status
Stop it with Ctrl-C.

MSG
	export ENTD_ADMIN_TOKEN
	ENTD_ADMIN_TOKEN=$(cat "$data/admin-token")
	exec build/entd --db "$data" --listen "$addr" --listen "unix:$data/entd.sock"
}

# A local fleet for a newcomer (docs/fleet.md): one nats-server with JetStream and three entd
# replicas on loopback, each with its own directory under $ENTD_FLEET_DIR (default .ent-fleet).
# Write on one, read on another; Ctrl-C stops all four (by their PIDs).
fleet() {
	deps
	build build
	local dir=${ENTD_FLEET_DIR:-$top/.ent-fleet}
	local nats_port=${ENTD_NATS_PORT:-4222} base=${ENTD_FLEET_PORT:-50051}
	local a1=127.0.0.1:$base a2=127.0.0.1:$((base + 1)) a3=127.0.0.1:$((base + 2))
	mkdir -p "$dir"
	if [ ! -s "$dir/admin-token" ]; then
		(umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/admin-token")
	fi
	pids=() # global: the EXIT trap runs after this function has returned
	stop_fleet() {
		local p
		for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
		wait 2>/dev/null || true
	}
	trap stop_fleet EXIT INT TERM
	nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
	pids+=($!)
	local i
	for i in $(seq 50); do
		(exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break
		sleep 0.1
	done
	export ENTD_ADMIN_TOKEN
	ENTD_ADMIN_TOKEN=$(cat "$dir/admin-token")
	for i in 1 2 3; do
		build/entd --db "$dir/entd-$i" --listen "127.0.0.1:$((base + i - 1))" \
			--fleet-nats "nats://127.0.0.1:$nats_port" >"$dir/entd-$i.log" 2>&1 &
		pids+=($!)
	done
	for i in 1 2 3; do
		for _ in $(seq 100); do
			build/entctl health -a "127.0.0.1:$((base + i - 1))" >/dev/null 2>&1 && break
			sleep 0.1
		done
	done
	cat <<MSG

A fleet is running: nats-server on 127.0.0.1:$nats_port (JetStream in $dir/nats) and three
entd replicas on $a1, $a2, $a3 (logs in $dir). In another terminal:
  export ENTD_ADMIN_TOKEN=\$(cat $dir/admin-token)
  build/entctl admin -a $a1 feature upsert '{"code":"sso","type":"FEATURE_TYPE_BOOLEAN"}'
  build/entctl admin -a $a3 feature get sso          # written on 1, read on 3
  build/entctl fleet status -a $a1 -a $a2 -a $a3
Stop it with Ctrl-C.

MSG
	wait
}

test_all() {
	deps
	build build
	(cd build && ctest -j"$jobs" --output-on-failure --timeout 900)
	# The whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
	build build-asan -DENT_ASAN=ON -DENT_BUILD_BENCH=OFF
	(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest -j"$jobs" --output-on-failure --timeout 1800)
	# ThreadSanitizer on the modules whose threads meet in our own code: the writer (RPC
	# threads hand it work), metrics (per-thread counters read by the scraper), store and model.
	# Suites that cross gRPC's completion queues are left out: libgrpc and absl are not
	# instrumented, so TSan cannot see their synchronisation and reports false races.
	build build-tsan -DENT_TSAN=ON -DENT_BUILD_BENCH=OFF
	(cd build-tsan && TSAN_OPTIONS=halt_on_error=1 \
		ctest -j"$jobs" --output-on-failure --timeout 1800 -R 'unit\.test_(writer|metrics|store|model)$')
}

case "${1:-}" in
deps)
	shift
	deps "$@"
	;;
build) deps && build build ;;
run) run ;;
fleet) fleet ;;
test) test_all ;;
*)
	echo "usage: deploy/dev.sh run|fleet|test|deps|build" >&2
	exit 2
	;;
esac
