#!/usr/bin/env bash
# Check what can be checked of deploy/ without Docker or Kubernetes (deploy/README.md says what
# each step proves and what it cannot).
#
#   deploy/check.sh lint     yamllint on the manifests and configs; `entd --check-config` on
#                            every shipped config (paths moved into a temporary directory);
#                            systemd-analyze verify and security on the unit. Any machine with
#                            yamllint, systemd and a built entd ($ENTD, or build*/entd).
#   deploy/check.sh image    Run deploy/Dockerfile's steps for real, in order, in a pristine
#                            Debian 12 root, then the image's start command, health check and
#                            stop signal. Destroys the root it runs in: only ever run it as
#                              /work/shared/tools/fresh-debian 'deploy/check.sh image'
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

pass() { printf 'PASS  %s\n' "$*"; }
fail() {
	printf 'FAIL  %s\n' "$*"
	failures=$((failures + 1))
}
skip() { printf 'SKIP  %s\n' "$*"; }
failures=0

# ---- lint ------------------------------------------------------------------------------------

lint() {
	if yamllint deploy/k8s deploy/entd.example.yaml deploy/entd.container.yaml; then
		pass "yamllint (default rules): deploy/k8s/*.yaml, deploy/entd.*.yaml"
	else
		fail "yamllint"
	fi
	lint_configs
	lint_nats
	# verify insists that ExecStart's binary exists: point the unit at a stub for the check.
	local tmp
	tmp=$(mktemp -d)
	printf '#!/bin/sh\nexit 0\n' >"$tmp/entd"
	chmod 0755 "$tmp/entd"
	sed "s#/usr/bin/entd#$tmp/entd#g" deploy/systemd/entd.service >"$tmp/entd.service"
	if systemd-analyze verify "$tmp/entd.service"; then
		pass "systemd-analyze verify deploy/systemd/entd.service (ExecStart path stubbed)"
	else
		fail "systemd-analyze verify"
	fi
	local score
	score=$(systemd-analyze security --offline=true "$tmp/entd.service" 2>/dev/null |
		sed -n 's/.*Overall exposure level for entd.service: \([0-9.]* [A-Z]*\).*/\1/p')
	if [ -n "$score" ]; then
		pass "systemd-analyze security --offline: exposure $score"
	else
		skip "systemd-analyze security --offline (not supported by this systemd)"
	fi
	rm -rf "$tmp"
}

# The shipped configs through the real `entd --check-config`. They name absolute paths of the
# image and the manifests (/run/entd, /etc/entd, /var/lib/entd, group entd) that a developer's
# machine does not have, so copies are checked with those moved into a temporary directory
# holding stand-ins: a test certificate made with openssl, a token file. `image` checks the
# configs as written, on the paths the Dockerfile creates.
lint_configs() {
	local entd=${ENTD:-}
	if [ -z "$entd" ]; then
		# The newest build*/entd.
		local f
		for f in build*/entd; do
			if [ -x "$f" ] && { [ -z "$entd" ] || [ "$f" -nt "$entd" ]; }; then
				entd=$f
			fi
		done
	fi
	if [ -z "$entd" ] || [ ! -x "$entd" ]; then
		skip "entd --check-config: no built entd (set ENTD=path/to/entd)"
		return 0
	fi
	if ! command -v openssl >/dev/null; then
		skip "entd --check-config: openssl is needed for the stand-in certificate"
		return 0
	fi
	local tmp group
	tmp=$(mktemp -d)
	group=$(id -gn)
	mkdir -p "$tmp/run/entd" "$tmp/etc/entd/tls" "$tmp/etc/entd/secrets" "$tmp/var/lib" \
		"$tmp/var/log/entd"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj /CN=entd -keyout "$tmp/etc/entd/tls/tls.key" \
		-out "$tmp/etc/entd/tls/tls.crt" 2>/dev/null
	cp "$tmp/etc/entd/tls/tls.crt" "$tmp/etc/entd/tls/ca.crt"
	openssl rand -hex 32 >"$tmp/etc/entd/secrets/admin-token"
	configmap_yaml deploy/k8s/config.yaml 1 >"$tmp/k8s-sidecar.yaml"
	configmap_yaml deploy/k8s/config.yaml 2 >"$tmp/k8s-standalone.yaml"
	configmap_yaml deploy/k8s/sidecar-fleet.yaml 1 >"$tmp/k8s-sidecar-fleet.yaml"
	cp deploy/entd.example.yaml "$tmp/example.yaml"
	cp deploy/entd.container.yaml "$tmp/container.yaml"
	local f
	for f in example container k8s-sidecar k8s-standalone k8s-sidecar-fleet; do
		sed -i -e "s#/run/entd#$tmp/run/entd#g" -e "s#/etc/entd#$tmp/etc/entd#g" \
			-e "s#/var/lib/entd#$tmp/var/lib/entd#g" -e "s#/var/log/entd#$tmp/var/log/entd#g" \
			-e "s#group: entd\$#group: $group#" "$tmp/$f.yaml"
		if "$entd" --check-config "$tmp/$f.yaml" >"$tmp/out" 2>&1; then
			pass "entd --check-config $f (paths under a temporary directory)"
		else
			cat "$tmp/out"
			fail "entd --check-config $f"
		fi
	done
	printf 'threads: 0\n' >"$tmp/broken.yaml"
	if "$entd" --check-config "$tmp/broken.yaml" >"$tmp/out" 2>&1; then
		fail "a broken config passed entd --check-config"
	elif grep -q 'threads: 0 is not in 1..256' "$tmp/out"; then
		pass "a broken config fails, naming key and value: $(head -1 "$tmp/out")"
	else
		cat "$tmp/out"
		fail "a broken config fails without naming the key"
	fi
	rm -rf "$tmp"
}

# The NATS cluster configs through nats-server's own parser (`-t`): the three loopback files
# and the one in k8s/nats.yaml's ConfigMap (its $POD_NAME from the environment, as the pod has).
lint_nats() {
	local ns
	ns=$(command -v nats-server || true)
	if [ -z "$ns" ]; then
		skip "nats-server -t: nats-server not installed (Debian package nats-server)"
		return 0
	fi
	local f
	for f in deploy/nats/nats-1.conf deploy/nats/nats-2.conf deploy/nats/nats-3.conf; do
		if "$ns" -t -c "$f" >/dev/null 2>&1; then
			pass "nats-server -t $f"
		else
			fail "nats-server -t $f"
		fi
	done
	local tmp
	tmp=$(mktemp -d)
	awk '/^  nats.conf: \|/ { inside = 1; next }
		inside && /^[^ ]/ { inside = 0 }
		inside && /^  [^ ]/ { inside = 0 }
		inside { sub(/^    /, ""); print }' deploy/k8s/nats.yaml >"$tmp/nats.conf"
	if [ -s "$tmp/nats.conf" ] && POD_NAME=nats-0 "$ns" -t -c "$tmp/nats.conf" >/dev/null 2>&1; then
		pass "nats-server -t on the nats.conf of deploy/k8s/nats.yaml"
	else
		fail "nats-server -t on the nats.conf of deploy/k8s/nats.yaml"
	fi
	rm -rf "$tmp"
}

# ---- image: the Dockerfile, interpreted --------------------------------------------------

# The Dockerfile's instructions with continuation lines joined, comments dropped.
dockerfile_lines() {
	sed -e '/^[[:space:]]*#/d' deploy/Dockerfile |
		sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | sed -e '/^[[:space:]]*$/d'
}

# Words of a JSON array of plain strings: ["a", "b c"] -> one word per line.
json_words() {
	sed -e 's/^[[:space:]]*\[[[:space:]]*"//' -e 's/"[[:space:]]*\][[:space:]]*$//' \
		-e 's/"[[:space:]]*,[[:space:]]*"/\n/g' <<<"$1"
}

# COPY SRC... DST, relative to the context (the checkout) or to another stage's filesystem,
# which is this same root (the build stage's files are where it left them).
do_copy() {
	local from="" args=() workdir=$1
	shift
	for a in "$@"; do
		case $a in
		--from=*) from=${a#--from=} ;;
		*) args+=("$a") ;;
		esac
	done
	local dst=${args[-1]} n=$((${#args[@]} - 1)) i src
	[[ $dst == /* ]] || dst=$workdir/$dst
	for ((i = 0; i < n; i++)); do
		src=${args[i]}
		[ -n "$from" ] || src=$top/$src
		if [ -d "$src" ]; then
			mkdir -p "$dst"
			cp -a "$src/." "$dst/"
		elif [[ $dst == */ ]]; then
			mkdir -p "$dst"
			cp -a "$src" "$dst"
		else
			mkdir -p "$(dirname "$dst")"
			cp -a "$src" "$dst"
		fi
	done
}

image() {
	[ "$(id -u)" = 0 ] || {
		echo "check.sh image: run it as root in a throwaway Debian 12 root (fresh-debian)" >&2
		exit 2
	}
	# fresh-debian copies the checkout to /src: anywhere else this is somebody's machine, and
	# the stage switch below purges packages.
	[ "$top" = /src ] || {
		echo "check.sh image: only inside fresh-debian (the checkout must be at /src)" >&2
		exit 2
	}
	grep -q '^VERSION_CODENAME=bookworm' /etc/os-release || {
		echo "check.sh image: not Debian 12" >&2
		exit 2
	}
	export DEBIAN_FRONTEND=noninteractive
	local base_pkgs stage=0 workdir=/ user=root entrypoint=() healthcheck=() line
	base_pkgs=$(dpkg-query -W -f '${Package}\n' | sort)
	# (No process substitution here: a fresh root has no /dev/fd.)
	dockerfile_lines >/tmp/check-dockerfile
	while IFS= read -r line; do
		local op=${line%%[[:space:]]*} rest
		rest=${line#"$op"}
		rest=${rest#"${rest%%[![:space:]]*}"}
		case $op in
		FROM)
			stage=$((stage + 1))
			workdir=/
			user=root
			if [ "$stage" -gt 1 ]; then
				# A new stage starts from a clean base: remove every package the previous
				# stage installed, so the runtime stage must name all it needs itself.
				local extra
				dpkg-query -W -f '${Package}\n' | sort >/tmp/check-pkgs.now
				extra=$(echo "$base_pkgs" | comm -13 - /tmp/check-pkgs.now | tr '\n' ' ')
				if [ -n "$extra" ]; then
					# shellcheck disable=SC2086
					apt-get purge -y -qq $extra >/dev/null
					apt-get autoremove -y -qq >/dev/null
				fi
				pass "stage $stage ($rest): build-stage packages purged"
			fi
			;;
		ARG) export "${rest?}" ;;
		WORKDIR)
			workdir=$rest
			mkdir -p "$workdir"
			;;
		RUN)
			echo "RUN $rest" | cut -c1-100
			if (cd "$workdir" && bash -euo pipefail -c "$rest") >/tmp/check-run.log 2>&1; then
				pass "RUN (stage $stage)"
			else
				tail -30 /tmp/check-run.log
				fail "RUN (stage $stage): $rest"
				return 1
			fi
			;;
		COPY)
			# shellcheck disable=SC2086
			do_copy "$workdir" $rest
			;;
		USER) user=$rest ;;
		ENTRYPOINT) mapfile -t entrypoint <<<"$(json_words "$rest")" ;;
		HEALTHCHECK)
			mapfile -t healthcheck <<<"$(json_words "${rest#*CMD}")"
			;;
		VOLUME | EXPOSE | STOPSIGNAL | LABEL | ENV) ;;
		*) fail "unknown Dockerfile instruction $op" ;;
		esac
	done </tmp/check-dockerfile

	local uid=${user%%:*} gid=${user##*:}
	as_user() { setpriv --reuid "$uid" --regid "$gid" --clear-groups -- "$@"; }
	pass "image built: USER $user, ENTRYPOINT ${entrypoint[*]}"

	# Every shared library resolves with the runtime packages alone.
	local bin
	for bin in /usr/bin/entd /usr/bin/entctl; do
		if ldd "$bin" | grep -q 'not found'; then
			ldd "$bin" | grep 'not found'
			fail "ldd $bin: missing libraries"
		else
			pass "ldd $bin: every library found in the runtime packages"
		fi
	done

	check_configs

	# The image's start command, as the image's user, then its health check and stop signal.
	local log=/tmp/entd-run.log pid
	# setpriv execs the command, so $! is entd itself and receives the SIGTERM below.
	setpriv --reuid "$uid" --regid "$gid" --clear-groups -- "${entrypoint[@]}" >"$log" 2>&1 &
	pid=$!
	if as_user "${healthcheck[@]}" --wait 20 >/tmp/health.out 2>&1; then
		pass "HEALTHCHECK ${healthcheck[*]}: $(cat /tmp/health.out)"
	else
		cat /tmp/health.out "$log"
		fail "HEALTHCHECK ${healthcheck[*]}"
	fi
	if http_get 127.0.0.1 9464 /readyz | head -1 | grep -q ' 200 '; then
		pass "GET http://127.0.0.1:9464/readyz: 200"
		if http_get 127.0.0.1 9464 /metrics | grep -q '^entd_rpc_calls_total'; then
			pass "GET /metrics: Prometheus text with entd_rpc_calls_total"
		else
			fail "GET /metrics"
		fi
	else
		fail "GET http://127.0.0.1:9464/readyz (metrics.listen in the image's config)"
	fi
	kill -TERM "$pid" 2>/dev/null || true
	local rc=0 t0=$SECONDS
	wait "$pid" || rc=$?
	if [ "$rc" = 0 ]; then
		pass "SIGTERM: exit 0 after $((SECONDS - t0)) s"
	else
		tail -20 "$log"
		fail "SIGTERM: exit status $rc"
	fi
	sed -n '1,5p' "$log" | cut -c1-160
}

# HTTP/1.0 GET with bash's /dev/tcp (the slim image has no curl).
http_get() {
	exec 3<>"/dev/tcp/$1/$2" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
	cat <&3
	exec 3<&-
}

# The ConfigMap data key entd.yaml, N-th occurrence, with its block indentation removed.
configmap_yaml() {
	awk -v want="$2" '
		/^  entd.yaml: \|/ { n++; inside = (n == want); next }
		inside && /^[^ ]/ { inside = 0 }
		inside && /^  [^ ]/ { inside = 0 }
		inside { sub(/^    /, ""); print }' "$1"
}

check_configs() {
	# What each config needs on disk, as the Dockerfile and the manifests provide it.
	install -d -o "$uid" -g "$gid" /var/log/entd
	# For this check only: test certificates (the runtime stage removed the apt lists).
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends openssl >/dev/null
	install -d -m 0750 -g "$gid" /etc/entd/tls /etc/entd/secrets
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj /CN=entd -keyout /etc/entd/tls/tls.key -out /etc/entd/tls/tls.crt 2>/dev/null
	cp /etc/entd/tls/tls.crt /etc/entd/tls/ca.crt
	openssl rand -hex 32 >/etc/entd/secrets/admin-token
	chgrp -R "$gid" /etc/entd/tls /etc/entd/secrets
	chmod 0640 /etc/entd/tls/* /etc/entd/secrets/*

	local dir
	dir=$(mktemp -d)
	cp deploy/entd.example.yaml "$dir/example.yaml"
	configmap_yaml deploy/k8s/config.yaml 1 >"$dir/k8s-sidecar.yaml"
	configmap_yaml deploy/k8s/config.yaml 2 >"$dir/k8s-standalone.yaml"
	printf 'threads: 0\n' >"$dir/broken.yaml"
	chmod 0644 "$dir"/*.yaml
	chmod 0755 "$dir"
	local checker=(/usr/bin/entd --check-config)
	local f
	for f in /etc/entd/entd.yaml "$dir/example.yaml" "$dir/k8s-sidecar.yaml" \
		"$dir/k8s-standalone.yaml"; do
		if as_user "${checker[@]}" "$f" >"$dir/out" 2>&1; then
			pass "${checker[*]##*/} $f (as uid $uid)"
		else
			cat "$dir/out"
			fail "${checker[*]##*/} $f"
		fi
	done
	if as_user "${checker[@]}" "$dir/broken.yaml" >"$dir/out" 2>&1; then
		fail "a broken config passed the check"
	elif grep -q 'threads: 0 is not in 1..256' "$dir/out"; then
		pass "a broken config fails, naming key and value: $(head -1 "$dir/out")"
	else
		cat "$dir/out"
		fail "a broken config fails without naming the key"
	fi
}

case "${1:-lint}" in
lint) lint ;;
image) image ;;
*)
	echo "usage: deploy/check.sh [lint|image]" >&2
	exit 2
	;;
esac
if [ "$failures" -gt 0 ]; then
	echo "$failures check(s) failed"
	exit 1
fi
echo "all checks passed"
