# Sourced by the bench shell scripts (run.sh, cpu.sh, callgrind.sh, usage.sh): the processes
# a script starts and their clean-up, its working directory, a free loopback port.

# bench_setup NAME: PIDS=() (the script appends every process it starts in the background) and
# WORK, a new temporary directory; at exit every process in PIDS gets SIGTERM, then SIGKILL if
# it is still there 10 s later, and WORK is removed.
bench_setup() {
	PIDS=()
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}

# A loopback TCP port nobody listens on right now.
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
