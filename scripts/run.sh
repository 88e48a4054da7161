#!/bin/bash
# `make run`: the demo gateway on this machine, in the foreground.
#
#   scripts/run.sh MOATD
#
# Creates the demo PKI if missing (var/demo/), starts a demo origin on 127.0.0.1:8080 (Debian's
# nginx, no root needed, everything under var/origin/) that echoes what it receives, prints what
# to try, and runs `MOATD -c etc/moat.conf` in the foreground. Ctrl-C (or SIGTERM) drains
# moatd; the origin is stopped when moatd exits. SIGHUP and SIGUSR1 are passed on to moatd.
set -euo pipefail

GATEWAY_PORT=8443
ORIGIN_PORT=8080
HOST=demo.moat.localhost
PKI=var/demo
ORIGIN=var/origin
CONF=etc/moat.conf

die() {
	echo "run: $*" >&2
	exit 1
}

[ $# -eq 1 ] || {
	echo "usage: scripts/run.sh MOATD" >&2
	exit 2
}
MOATD=$1
case "$MOATD" in
/*) ;;
*/*) MOATD=$PWD/$MOATD ;;
*) MOATD=$(command -v "$MOATD") || die "$1: not found" ;;
esac

cd "$(dirname "$0")/.."
ROOT=$PWD
[ -x "$MOATD" ] || die "$MOATD: not built (make all)"
MOATCTL=$(dirname "$MOATD")/moatctl
case "$MOATCTL" in "$ROOT"/*) MOATCTL=${MOATCTL#"$ROOT"/} ;; esac
[ -f "$CONF" ] || die "$CONF: missing"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || die "nginx not found (make deps)"
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

# --- the demo origin ----------------------------------------------------------------------

# Prints the pid of a demo origin (an nginx master with our prefix) still running, if any.
origin_pid() {
	local pid cmd
	pid=$(cat "$ORIGIN/nginx.pid" 2>/dev/null) || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ "$cmd" == *nginx*" -p $ROOT/$ORIGIN/ "* ]] || return 1
	echo "$pid"
}

stop_origin() {
	local pid i
	pid=$(origin_pid) || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	rm -f "$ORIGIN/nginx.pid"
	return 0
}

# One map per echoed value: JSON null when absent, the value in quotes when it needs no
# escaping (or has just two double quotes, as in `Forwarded: for="[::1]"`), else a placeholder.
json_map() {
	sed -e "s/@VAR@/$1/" -e "s/@OUT@/$2/" <<'EOF'
    map $@VAR@ $@OUT@ {
        ""                                                   null;
        "~^([^\"\\\\]*)$"                                    "\"$1\"";
        "~^([^\"\\\\]*)\"([^\"\\\\]*)\"([^\"\\\\]*)$"        "\"$1\\\"$2\\\"$3\"";
        default                                              "\"(not shown: needs escaping)\"";
    }
EOF
}

write_origin_conf() {
	local h maps="" fields="" sep=""
	for h in Moat-Tenant Moat-Device Moat-Cert-Sha256 Moat-Cert-Serial Moat-Cert-Verified \
		Moat-Request-Id Forwarded X-Forwarded-For X-Real-IP; do
		local v
		v=$(echo "$h" | tr 'A-Z-' 'a-z_')
		maps+=$(json_map "http_$v" "json_$v")$'\n'
		fields+="$sep\\n    \"$h\": \$json_$v"
		sep=","
	done
	maps+=$(json_map request_uri json_uri)$'\n'
	cat >"$ORIGIN/nginx.conf.tmp" <<EOF
# The demo origin behind moatd. Written by scripts/run.sh on every start: edits are lost.
# It answers every request with what it received, so you can see what Moat forwards.
worker_processes 1;
pid nginx.pid;
error_log logs/error.log warn;

events {
    worker_connections 256;
}

http {
    access_log logs/access.log;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server_tokens off;
    client_max_body_size 0;

    # JSON-ready copies of what is echoed: null when absent.
$maps
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        default_type application/json;
        location / {
            return 200 '{\\n  "origin": "moat demo origin",\\n  "method": "\$request_method",\\n  "uri": \$json_uri,\\n  "headers": {$fields\\n  }\\n}\\n';
        }
    }
}
EOF
	mv "$ORIGIN/nginx.conf.tmp" "$ORIGIN/nginx.conf"
}

# Starts nginx in the foreground of a background job; waits until it answers.
start_origin() {
	local i prefix="$ROOT/$ORIGIN/"
	mkdir -p "$ORIGIN/logs" "$ORIGIN/tmp"
	write_origin_conf
	"$NGINX" -p "$prefix" -c nginx.conf -t -q || die "the demo origin's configuration ($ORIGIN/nginx.conf) is bad"
	setsid "$NGINX" -p "$prefix" -c nginx.conf -g 'daemon off;' </dev/null &
	NGINX_PID=$!
	for ((i = 0; i < 50; i++)); do
		kill -0 "$NGINX_PID" 2>/dev/null ||
			die "the demo origin did not start; see $ORIGIN/logs/error.log"
		if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$ORIGIN_PORT/" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	die "the demo origin does not answer on 127.0.0.1:$ORIGIN_PORT; see $ORIGIN/logs/error.log"
}

# --- ports ----------------------------------------------------------------------------------

# Succeeds if nothing else listens on ADDR:PORT: binds it (as moatd and nginx will) and lets go.
port_free() {
	if [ -x /usr/bin/python3 ]; then
		/usr/bin/python3 - "$1" "$2" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
EOF
	elif (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
		return 1
	fi
}

# Who holds PORT, when we can tell.
port_owner() {
	command -v ss >/dev/null 2>&1 || return 0
	ss -Hltnp "sport = :$1" 2>/dev/null |
		sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/ (held by \1, pid \2)/p' | sed -n 1p || true
}

check_port() {
	local owner
	port_free "$1" "$2" && return 0
	owner=$(port_owner "$2")
	echo "run: port $2 is busy$owner: $3 needs it." >&2
	case "$owner" in
	*moatd*) echo "run: is \`make run\` already running in another terminal? Ctrl-C it there." >&2 ;;
	*) echo "run: stop whatever listens there (ss -ltnp 'sport = :$2' shows it) and try again." >&2 ;;
	esac
	exit 1
}

# --- main -----------------------------------------------------------------------------------

NGINX_PID=""
MOATD_PID=""
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
	trap - EXIT INT TERM HUP USR1
	if [ -n "$MOATD_PID" ] && kill -0 "$MOATD_PID" 2>/dev/null; then
		kill -TERM "$MOATD_PID" 2>/dev/null || true
		wait "$MOATD_PID" 2>/dev/null || true
	fi
	if [ -n "$NGINX_PID" ]; then
		kill -TERM "$NGINX_PID" 2>/dev/null || true
		wait "$NGINX_PID" 2>/dev/null || true
		rm -f "$ORIGIN/nginx.pid"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p var
scripts/pki.sh demo "$PKI"
# A running `make run` holds the gateway port: it is checked before a demo origin left over
# from an earlier run is stopped, so a second `make run` cannot take the first one's origin.
check_port 0.0.0.0 "$GATEWAY_PORT" "moatd (listener devices in $CONF)"
stop_origin
check_port 127.0.0.1 "$ORIGIN_PORT" "the demo origin"
start_origin

# A configuration moatd refuses is reported before anything else is printed.
"$MOATD" -t -c "$CONF" >/dev/null || die "moatd refuses $CONF (see above)"

# moatd and the origin run in sessions of their own, so Ctrl-C reaches only this script,
# which passes it on to moatd once, as SIGTERM (drain); the origin is stopped after moatd.
setsid "$MOATD" -c "$CONF" &
MOATD_PID=$!
trap 'kill -TERM "$MOATD_PID" 2>/dev/null' INT TERM
trap 'kill -HUP "$MOATD_PID" 2>/dev/null' HUP
trap 'kill -USR1 "$MOATD_PID" 2>/dev/null' USR1

# The directions come once moatd listens, so they are the last thing on the screen.
for ((i = 0; i < 50; i++)); do
	kill -0 "$MOATD_PID" 2>/dev/null || break
	port_free 0.0.0.0 "$GATEWAY_PORT" || break
	sleep 0.1
done
if kill -0 "$MOATD_PID" 2>/dev/null; then
	B="" N=""
	if [ -t 1 ]; then
		B=$(tput bold 2>/dev/null || true)
		N=$(tput sgr0 2>/dev/null || true)
	fi
	C="curl --cacert $PKI/server-ca.pem"
	R="--resolve $HOST:$GATEWAY_PORT:127.0.0.1 https://$HOST:$GATEWAY_PORT/hello"
	cat <<EOF

${B}Moat demo${N}: moatd (pid $MOATD_PID) with $CONF
  gateway  https://$HOST:$GATEWAY_PORT  listener devices, tenant demo
  origin   http://127.0.0.1:$ORIGIN_PORT  nginx, answers with what it received
  PKI      $PKI/  dev CAs, device-1 and device-2 (more: scripts/pki.sh device $PKI NAME)
  admin    http://127.0.0.1:9900/v1  operator token: $(cat var/operator.token 2>/dev/null || echo "(see var/operator.token)")

${B}Try, from another terminal in $ROOT:${N}

  # device-1 shows its certificate: the origin sees who it is (Moat-Device, Moat-Cert-*)
  $C --cert $PKI/device-1.pem --key $PKI/device-1.key \\
       $R

  # no client certificate: refused in the TLS handshake
  $C \\
       $R

  # a device cannot speak for another: add -H 'Moat-Device: device-2' to the first one

  # revoke device-2 and reload moatd: its next connection is refused
  scripts/pki.sh revoke $PKI device-2 && kill -HUP $MOATD_PID

  # the admin API and moatctl (docs/api.md, docs/moatctl.md): the operator token was created
  # at the first start and is kept in var/operator.token (mode 0600)
  export MOAT_TOKEN=\$(cat var/operator.token)
  $MOATCTL tenant list
  $MOATCTL tenant add acme --host acme.moat.localhost --origin http://127.0.0.1:$ORIGIN_PORT
  $MOATCTL device enroll acme cam-0001 --model cam-x --firmware 1.2.0 --out var/cam-0001/

  access log  tail -f var/access.log
  stop        Ctrl-C: moatd drains, then the demo origin stops too

EOF
fi

set +e
while kill -0 "$MOATD_PID" 2>/dev/null; do
	wait "$MOATD_PID"
done
wait "$MOATD_PID"
rc=$?
MOATD_PID=""
[ "$rc" -eq 0 ] || echo "run: moatd exited with status $rc" >&2
exit "$rc"
