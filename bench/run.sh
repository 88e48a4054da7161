#!/usr/bin/env bash
# bench/run.sh MOATD - moatd, HAProxy and nginx side by side.
#
# All three terminate the same mutual TLS (ECDSA P-256 server certificate, client certificate
# required and verified against the device CA) and proxy to the same nginx origin over
# keep-alive connections, with the same number of workers. Measured, each REPEAT times, median
# reported: keep-alive requests/s, full mTLS handshakes/s, memory per idle mTLS connection,
# latency added over going straight to the origin. bench/README.md explains the method.
#
# Environment (defaults in brackets):
#   DURATION [10]   seconds per measurement     REPEAT [3]       runs per measurement
#   WORKERS [1]     workers/threads per proxy   WARMUP [1]       unmeasured seconds first
#   RPS_CONNS [64]  keep-alive connections      HS_CONNS [32]    concurrent handshakes
#   IDLE_CONNS [8000] idle connections          IDLE_SETTLE [2]  seconds before sampling RSS
#   LAT_RATE [1000] requests/s, latency test    LAT_CONNS [16]   connections, latency test
#   TLS [1.3]       1.2 | 1.3                   PORT_BASE [24400]
#   TESTS ["rps handshake idle latency"]        PROXIES ["moatd haproxy nginx"]
#   ORIGIN_CPU [the load core]                  NO_PIN [0]       1: do not pin anything
#   TCP [1]         1: then run bench/tcp.sh (moatd TCP listeners against HAProxy mode tcp)
#   RULES [1]       1: then run bench/rules.sh (virtual patches: 0/100/1,000 rules, ModSecurity)
set -uo pipefail # no -e: one proxy failing must not end the run

MOATD=${1:-}
[ -n "$MOATD" ] && case $MOATD in /*) ;; *) MOATD=$PWD/$MOATD ;; esac
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
MOATD=${MOATD:-$ROOT/build/release/moatd}

DURATION=${DURATION:-10}
REPEAT=${REPEAT:-3}
WORKERS=${WORKERS:-1}
WARMUP=${WARMUP:-1}
RPS_CONNS=${RPS_CONNS:-64}
HS_CONNS=${HS_CONNS:-32}
IDLE_CONNS=${IDLE_CONNS:-8000}
IDLE_SETTLE=${IDLE_SETTLE:-2}
LAT_RATE=${LAT_RATE:-1000}
LAT_CONNS=${LAT_CONNS:-16}
TLS=${TLS:-1.3}
PORT_BASE=${PORT_BASE:-24400}
TESTS=${TESTS:-rps handshake idle latency}
PROXIES=${PROXIES:-moatd haproxy nginx}
NO_PIN=${NO_PIN:-0}

B=$ROOT/build/bench
PKI=$B/pki
CONF=$B/conf
LOGS=$B/logs
OUT=$B/out
LG=$B/loadgen
SNI=bench.moat.test
ORIGIN_PORT=$((PORT_BASE + 80))
declare -A PORT=([moatd]=$((PORT_BASE + 43)) [haproxy]=$((PORT_BASE + 44)) [nginx]=$((PORT_BASE + 45)))
declare -A LABEL=([moatd]=moatd [haproxy]=HAProxy [nginx]=nginx [origin]=origin)
declare -A PID=()  # running servers, by name
declare -A NA=()   # proxy -> why it has no figures
declare -A NEG=()  # proxy -> negotiated TLS parameters
LG_PIDS=() # idle-test loadgens running in the background
CUR_LG=    # the loadgen being waited for

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- processes ----

descendants() { # PID: the process and all its descendants
	local p=$1 c
	echo "$p"
	for c in $(pgrep -P "$p" 2>/dev/null); do descendants "$c"; done
}

stop_server() { # NAME
	local name=$1 pid=${PID[$1]:-} all i p
	[ -n "$pid" ] || return 0
	all=$(descendants "$pid")
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	# still there after 5 s: kill it and the children it had (nginx workers)
	if kill -0 "$pid" 2>/dev/null; then
		for p in $all; do kill -KILL "$p" 2>/dev/null; done
	fi
	wait "$pid" 2>/dev/null
	unset "PID[$name]"
}

cleanup() {
	local p n
	trap - EXIT INT TERM
	for p in "${LG_PIDS[@]}" $CUR_LG; do kill -TERM "$p" 2>/dev/null; done
	for n in "${!PID[@]}"; do stop_server "$n"; done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

REASON= # why the last start_proxy, sanity or wait_listen failed

wait_listen() { # NAME PORT LOGFILE: waits up to 10 s for the port
	local name=$1 port=$2 logf=$3 i
	for i in $(seq 100); do
		if ! kill -0 "${PID[$name]}" 2>/dev/null; then
			wait "${PID[$name]}" 2>/dev/null
			REASON="exited at start: $(tail -n 3 "$logf" 2>/dev/null | tr '\n' ' ')"
			unset "PID[$name]"
			return 1
		fi
		listening "$port" && return 0
		sleep 0.1
	done
	REASON="not listening on 127.0.0.1:$port after 10 s"
	stop_server "$name"
	return 1
}

rss_kb() { # PIDs...: sum of VmRSS in KiB
	local p s=0 v
	for p in "$@"; do
		v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
		s=$((s + ${v:-0}))
	done
	echo "$s"
}

cpu_ticks() { # PIDs...: user + system clock ticks (all threads)
	local p s=0 v
	for p in "$@"; do
		v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
		s=$((s + ${v:-0}))
	done
	echo "$s"
}

kv() { # KEY LINE: the value of KEY in a key=value line
	awk -v k="$1" '{for (i = 1; i <= NF; i++) {n = index($i, "="); if (substr($i, 1, n - 1) == k) {print substr($i, n + 1); exit}}}' <<<"$2"
}

# ---- checks, limits, pinning ----

for t in openssl haproxy nginx cc ss pgrep; do
	command -v "$t" >/dev/null || { echo "run.sh: $t is required" >&2; exit 1; }
done
mkdir -p "$PKI" "$CONF" "$LOGS" "$OUT"
rm -f "$LOGS"/* "$OUT"/*
cc -O2 -Wall -Wextra -Werror bench/loadgen.c -lssl -lcrypto -o "$LG" || exit 1

ulimit -n "$(ulimit -Hn)" 2>/dev/null
FD_LIMIT=$(ulimit -n)
[ "$FD_LIMIT" = unlimited ] && FD_LIMIT=1048576
# every client connection may need an origin connection too: HAProxy reserves two descriptors
# per connection and refuses to start if it cannot, nginx counts both in worker_connections
HA_MAXCONN=$(((FD_LIMIT - 200) / 2))
NGX_CONNS=$((FD_LIMIT - 100))
MOAT_MAXCONN=$((FD_LIMIT - 500))
IDLE_PER_PROC=$((FD_LIMIT - 100))

NCPU=$(nproc)
PROXY_CORES=$NCPU
PIN_PROXY=() PIN_LOAD=() PIN_ORIGIN=()
if [ "$NO_PIN" != 1 ] && [ "$NCPU" -ge 2 ] && command -v taskset >/dev/null &&
	taskset -c 0 true 2>/dev/null; then
	LOAD_CPU=$((NCPU - 1))
	PROXY_CPUS=0
	[ "$NCPU" -gt 2 ] && PROXY_CPUS=0-$((NCPU - 2))
	ORIGIN_CPU=${ORIGIN_CPU:-$LOAD_CPU}
	PIN_PROXY=(taskset -c "$PROXY_CPUS")
	PIN_LOAD=(taskset -c "$LOAD_CPU")
	PIN_ORIGIN=(taskset -c "$ORIGIN_CPU")
	PINNING="proxy on CPU $PROXY_CPUS; loadgen on CPU $LOAD_CPU; origin on CPU $ORIGIN_CPU (taskset)"
	PROXY_CORES=$((NCPU - 1))
else
	PINNING="not pinned (taskset unavailable, fewer than 2 CPUs, or NO_PIN=1)"
fi
[ "$WORKERS" -lt "$PROXY_CORES" ] && PROXY_CORES=$WORKERS

# ---- PKI: ECDSA P-256, made with the openssl CLI ----

make_pki() {
	local d=$PKI
	rm -f "$d"/*
	cat >"$d/ext.cnf" <<-EOF
		[ca]
		basicConstraints = critical, CA:TRUE
		keyUsage = critical, keyCertSign, cRLSign
		subjectKeyIdentifier = hash
		[server]
		basicConstraints = critical, CA:FALSE
		keyUsage = critical, digitalSignature
		extendedKeyUsage = serverAuth
		subjectAltName = DNS:$SNI, IP:127.0.0.1
		authorityKeyIdentifier = keyid
		[device]
		basicConstraints = critical, CA:FALSE
		keyUsage = critical, digitalSignature
		extendedKeyUsage = clientAuth
		authorityKeyIdentifier = keyid
	EOF
	for k in server-ca device-ca server device; do
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$k.key" || return 1
	done
	openssl req -x509 -new -key "$d/server-ca.key" -subj "/CN=Moat bench server CA" -days 30 \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" -out "$d/server-ca.crt" || return 1
	openssl req -x509 -new -key "$d/device-ca.key" -subj "/CN=Moat bench device CA" -days 30 \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" -out "$d/device-ca.crt" || return 1
	openssl req -new -key "$d/server.key" -subj "/CN=$SNI" -out "$d/server.csr" || return 1
	openssl x509 -req -in "$d/server.csr" -CA "$d/server-ca.crt" -CAkey "$d/server-ca.key" \
		-CAcreateserial -days 30 -extfile "$d/ext.cnf" -extensions server \
		-out "$d/server.crt" 2>/dev/null || return 1
	openssl req -new -key "$d/device.key" -subj "/CN=bench-device-0001" -out "$d/device.csr" ||
		return 1
	openssl x509 -req -in "$d/device.csr" -CA "$d/device-ca.crt" -CAkey "$d/device-ca.key" \
		-CAcreateserial -days 30 -extfile "$d/ext.cnf" -extensions device \
		-out "$d/device.crt" 2>/dev/null || return 1
	cat "$d/server.crt" "$d/server.key" >"$d/server.pem" # HAProxy wants both in one file
	openssl verify -CAfile "$d/device-ca.crt" -purpose sslclient "$d/device.crt" >/dev/null &&
		openssl verify -CAfile "$d/server-ca.crt" -purpose sslserver "$d/server.crt" >/dev/null
}
make_pki || { echo "run.sh: could not make the bench PKI" >&2; exit 1; }

# ---- configurations ----

mkdir -p "$B/origin/logs" "$B/nginx/logs" "$B/moatd-data"
for d in origin nginx; do mkdir -p "$B/$d/tmp"; done

cat >"$CONF/origin.conf" <<EOF
# The origin: answers every request with a small body, keeps connections for a long time.
worker_processes 1;
daemon off;
pid $B/origin/nginx.pid;
error_log $LOGS/origin-error.log warn;
worker_rlimit_nofile $FD_LIMIT;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $B/origin/tmp;
	proxy_temp_path $B/origin/tmp;
	fastcgi_temp_path $B/origin/tmp;
	uwsgi_temp_path $B/origin/tmp;
	scgi_temp_path $B/origin/tmp;
	keepalive_timeout 600s;
	keepalive_requests 100000000;
	server {
		listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
		location / {
			default_type text/plain;
			return 200 "hello from the bench origin\n";
		}
	}
}
EOF

cat >"$CONF/moatd.conf" <<EOF
; moatd: mTLS termination in front of the bench origin.
[moat]
workers = $WORKERS
data_dir = $B/moatd-data
error_log = $LOGS/moatd-error.log
log_level = warn
handshake_timeout = 10s
idle_timeout = 600s
request_header_timeout = 600s
max_connections = $MOAT_MAXCONN
max_connections_per_ip = 0
origin_keepalive = 64

[listener bench]
bind = 127.0.0.1:${PORT[moatd]}
protocol = http
default_tenant = bench

[tenant bench]
hosts = $SNI
cert = $PKI/server.crt
key = $PKI/server.key
device_ca = $PKI/device-ca.crt
mtls = require
device_id = cn
origin = http://127.0.0.1:$ORIGIN_PORT
EOF

# HAProxy and nginx forward the same identity that moatd adds, so that all three do the
# same job (nginx 1.22 offers only a SHA-1 fingerprint of the client certificate).
cat >"$CONF/haproxy.cfg" <<EOF
global
	nbthread $WORKERS
	maxconn $HA_MAXCONN
	ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
	mode http
	option http-keep-alive
	timeout connect 5s
	timeout client 600s
	timeout server 60s
	timeout http-request 600s
	timeout http-keep-alive 600s
	maxconn $HA_MAXCONN

frontend bench
	bind 127.0.0.1:${PORT[haproxy]} ssl crt $PKI/server.pem ca-file $PKI/device-ca.crt verify required
	http-request del-header X-Forwarded-For
	http-request del-header X-Real-IP
	http-request set-header Moat-Tenant bench
	http-request set-header Moat-Device %[ssl_c_s_dn(CN)]
	http-request set-header Moat-Cert-Sha256 %[ssl_c_der,sha2(256),hex,lower]
	http-request set-header Moat-Cert-Serial %[ssl_c_serial,hex]
	http-request set-header Moat-Cert-Verified SUCCESS
	http-request set-header Moat-Request-Id %[uuid]
	http-request set-header Forwarded for=%[src];proto=https
	default_backend origin

backend origin
	http-reuse always
	server origin 127.0.0.1:$ORIGIN_PORT
EOF

cat >"$CONF/nginx.conf" <<EOF
worker_processes $WORKERS;
daemon off;
pid $B/nginx/nginx.pid;
error_log $LOGS/nginx-error.log warn;
worker_rlimit_nofile $FD_LIMIT;
events {
	worker_connections $NGX_CONNS;
}
http {
	access_log off;
	client_body_temp_path $B/nginx/tmp;
	proxy_temp_path $B/nginx/tmp;
	fastcgi_temp_path $B/nginx/tmp;
	uwsgi_temp_path $B/nginx/tmp;
	scgi_temp_path $B/nginx/tmp;
	keepalive_timeout 600s;
	keepalive_requests 100000000;
	client_header_timeout 600s;

	map \$ssl_client_s_dn \$device_cn {
		default "";
		~CN=(?<cn>[^,/]+) \$cn;
	}
	upstream origin {
		server 127.0.0.1:$ORIGIN_PORT;
		keepalive 64;
		keepalive_requests 100000000;
		keepalive_timeout 600s;
	}
	server {
		listen 127.0.0.1:${PORT[nginx]} ssl backlog=4096;
		server_name $SNI;
		ssl_certificate $PKI/server.crt;
		ssl_certificate_key $PKI/server.key;
		ssl_client_certificate $PKI/device-ca.crt;
		ssl_verify_client on;
		ssl_protocols TLSv1.2 TLSv1.3;
		location / {
			proxy_pass http://origin;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Forwarded-For "";
			proxy_set_header X-Real-IP "";
			proxy_set_header Moat-Tenant bench;
			proxy_set_header Moat-Device \$device_cn;
			proxy_set_header Moat-Cert-Sha256 \$ssl_client_fingerprint;
			proxy_set_header Moat-Cert-Serial \$ssl_client_serial;
			proxy_set_header Moat-Cert-Verified \$ssl_client_verify;
			proxy_set_header Moat-Request-Id \$request_id;
			proxy_set_header Forwarded "for=\$remote_addr;proto=https";
		}
	}
}
EOF

# ---- servers ----

start_origin() {
	"${PIN_ORIGIN[@]}" nginx -p "$B/origin/" -e "$LOGS/origin-error.log" -c "$CONF/origin.conf" \
		>"$LOGS/origin.out" 2>&1 &
	PID[origin]=$!
	wait_listen origin "$ORIGIN_PORT" "$LOGS/origin.out"
}

start_proxy() { # NAME: sets REASON on failure
	local p=$1 logf=$LOGS/$1.out
	if listening "${PORT[$p]}"; then
		REASON="port ${PORT[$p]} is already in use"
		return 1
	fi
	case $p in
	moatd)
		[ -x "$MOATD" ] || { REASON="$MOATD not found (not built yet)"; return 1; }
		if ! "$MOATD" -t -c "$CONF/moatd.conf" >"$LOGS/moatd-check.out" 2>&1; then
			REASON="configuration refused: $(head -n 2 "$LOGS/moatd-check.out" | tr '\n' ' ')"
			return 1
		fi
		"${PIN_PROXY[@]}" "$MOATD" -c "$CONF/moatd.conf" >>"$logf" 2>&1 &
		;;
	haproxy)
		"${PIN_PROXY[@]}" haproxy -db -f "$CONF/haproxy.cfg" >>"$logf" 2>&1 &
		;;
	nginx)
		"${PIN_PROXY[@]}" nginx -p "$B/nginx/" -e "$LOGS/nginx-error.log" \
			-c "$CONF/nginx.conf" >>"$logf" 2>&1 &
		;;
	esac
	PID[$p]=$!
	wait_listen "$p" "${PORT[$p]}" "$logf" || return 1
	sleep 0.3 # nginx: let the workers come up
}

proxy_pids() { descendants "${PID[$1]}"; }

alive() { [ -n "${PID[$1]:-}" ] && kill -0 "${PID[$1]}" 2>/dev/null; }

# ---- loadgen ----

tls_args() { # PROXY
	if [ "$1" = origin ]; then
		echo "-a 127.0.0.1:$ORIGIN_PORT -P -H $SNI"
	else
		echo "-a 127.0.0.1:${PORT[$1]} -s $SNI -V $TLS -c $PKI/device.crt -k $PKI/device.key"
	fi
}

LINE= # the result line of the last loadgen run

# Runs one loadgen on the load CPU and sets LINE. It runs in the background and is waited for,
# so that a signal to this script is handled at once (and the loadgen killed by cleanup).
loadgen() { # NAME-FOR-LOG ARGS...
	local tag=$1 pid
	shift
	"${PIN_LOAD[@]}" "$LG" "$@" >"$OUT/$tag.kv" 2>"$LOGS/$tag.txt" &
	pid=$!
	CUR_LG=$pid
	wait "$pid"
	CUR_LG=
	LINE=$(grep '^mode=' "$OUT/$tag.kv" | tail -n 1)
}

# A proxy is only measured if a request with the device certificate (and the server
# certificate verified) succeeds and one without a client certificate is refused.
sanity() { # PROXY: sets REASON on failure
	local p=$1 line
	# shellcheck disable=SC2046
	loadgen "sanity-$p" -m rps -n 1 -d 1 -w 0 -C "$PKI/server-ca.crt" $(tls_args "$p")
	line=$LINE
	if [ "$(kv requests "$line")" = "" ] || [ "$(kv requests "$line")" -lt 1 ] ||
		[ "$(kv non2xx "$line")" != 0 ] || [ "$(kv errors "$line")" != 0 ]; then
		REASON="no good response with the device certificate: $(grep -m1 'loadgen:' "$LOGS/sanity-$p.txt")"
		return 1
	fi
	NEG[$p]="$(sed -n 's/.*(\(TLS[^ ]* [^ ]* [^ ,]*\),.*/\1/p' "$LOGS/sanity-$p.txt" | head -n 1)"
	loadgen "nocert-$p" -m rps -n 1 -d 1 -w 0 -a "127.0.0.1:${PORT[$p]}" -s "$SNI" -V "$TLS"
	line=$LINE
	if [ "$(kv requests "$line")" != 0 ]; then
		REASON="a client without a certificate was served: mTLS is not enforced"
		return 1
	fi
}

# ---- measurements ----
# Each appends a line "TEST PROXY REPEAT key=value..." to $OUT/results.txt; ok=0 marks a run
# whose figures are not to be trusted (errors, non-2xx, proxy gone), with the reason in why=.

record() { echo "$*" >>"$OUT/results.txt"; }

# CPU accounting around one loadgen run, in % of one core over the run's wall time: the
# proxy, the origin, everything else on the machine ("other": processes that are not part of
# the benchmark, plus steal time; it shows how noisy the run was), and interrupt and softirq
# time, which the kernel charges to no process (on loopback, mostly TCP/IP work for the run).
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $9}' /proc/stat; }
irq_ticks() { awk '/^cpu / {print $7 + $8}' /proc/stat; }
now_ns() { date +%s%N; }
HZ=$(getconf CLK_TCK)

cpu_begin() { # PROXY-or-origin
	A_PROXY_PIDS=""
	[ "$1" != origin ] && A_PROXY_PIDS=$(proxy_pids "$1")
	A_ORIGIN_PIDS=$(descendants "${PID[origin]}")
	A_T0=$(now_ns)
	A_B0=$(busy_ticks)
	A_I0=$(irq_ticks)
	# shellcheck disable=SC2086
	A_P0=$(cpu_ticks $A_PROXY_PIDS)
	# shellcheck disable=SC2086
	A_O0=$(cpu_ticks $A_ORIGIN_PIDS)
}

cpu_end() { # LOADGEN-CPU-SECONDS: sets CPU_PROXY CPU_ORIGIN CPU_OTHER CPU_IRQ CPU_PROXY_S
	local p1 o1 b1 i1 t1
	# shellcheck disable=SC2086
	p1=$(cpu_ticks $A_PROXY_PIDS)
	# shellcheck disable=SC2086
	o1=$(cpu_ticks $A_ORIGIN_PIDS)
	b1=$(busy_ticks)
	i1=$(irq_ticks)
	t1=$(now_ns)
	CPU_PROXY_S=$(awk -v p="$((p1 - A_P0))" -v hz="$HZ" 'BEGIN {printf "%.3f", p / hz}')
	read -r CPU_PROXY CPU_ORIGIN CPU_OTHER CPU_IRQ < <(awk -v p="$((p1 - A_P0))" \
		-v o="$((o1 - A_O0))" -v b="$((b1 - A_B0))" -v i="$((i1 - A_I0))" -v l="${1:-0}" \
		-v hz="$HZ" -v t="$((t1 - A_T0))" 'BEGIN {
		s = t / 1e9; other = (b - p - o) / hz - l; if (other < 0) other = 0
		printf "%.0f %.0f %.0f %.0f\n", p / hz / s * 100, o / hz / s * 100, other / s * 100,
			i / hz / s * 100 }')
}

measure_rps_like() { # TEST PROXY REPEAT
	local t=$1 p=$2 r=$3 line ok=1 why="" key conns mode us_op
	if [ "$t" = rps ]; then key=rps conns=$RPS_CONNS mode=rps; else key=hps conns=$HS_CONNS mode=handshake; fi
	cpu_begin "$p"
	# shellcheck disable=SC2046
	loadgen "$t-$p-$r" -m "$mode" -n "$conns" -d "$DURATION" -w "$WARMUP" $(tls_args "$p")
	line=$LINE
	cpu_end "$(kv cpu_s "$line")"
	if [ -z "$line" ]; then
		ok=0 why="loadgen_gave_no_result"
	elif [ "$(kv errors "$line")" != 0 ] || [ "$(kv non2xx "$line")" != 0 ] ||
		[ "$(kv resumed "$line")" != 0 ]; then
		ok=0 why="errors=$(kv errors "$line"),non2xx=$(kv non2xx "$line"),resumed=$(kv resumed "$line")"
	fi
	alive "$p" || { ok=0 why="proxy_exited"; }
	us_op=$(awk -v c="$CPU_PROXY_S" -v n="$(kv total "$line")" 'BEGIN {if (n > 0) printf "%.1f", c / n * 1e6; else print "n/a"}')
	record "$t $p $r value=$(kv "$key" "$line") us_per_op=$us_op proxy_cpu=$CPU_PROXY origin_cpu=$CPU_ORIGIN loadgen_cpu=$(kv cpu_pct "$line") other_cpu=$CPU_OTHER irq_cpu=$CPU_IRQ p50_us=$(kv p50_us "$line") p99_us=$(kv p99_us "$line") ok=$ok why=$why"
	log "  $t ${LABEL[$p]} #$r: $(kv "$key" "$line")/s, $us_op us proxy CPU each (CPU: proxy ${CPU_PROXY}%, origin ${CPU_ORIGIN}%, loadgen $(kv cpu_pct "$line")%, other ${CPU_OTHER}%, irq ${CPU_IRQ}%)${why:+ [$why]}"
}

measure_latency() { # PROXY-or-origin REPEAT
	local p=$1 r=$2 line ok=1 why=""
	cpu_begin "$p"
	# shellcheck disable=SC2046
	loadgen "latency-$p-$r" -m latency -n "$LAT_CONNS" -r "$LAT_RATE" -d "$DURATION" \
		-w "$WARMUP" $(tls_args "$p")
	line=$LINE
	cpu_end "$(kv cpu_s "$line")"
	if [ -z "$line" ]; then
		ok=0 why="loadgen_gave_no_result"
	elif [ "$(kv errors "$line")" != 0 ] || [ "$(kv non2xx "$line")" != 0 ] ||
		[ "$(kv incomplete "$line")" != 0 ]; then
		ok=0 why="errors=$(kv errors "$line"),non2xx=$(kv non2xx "$line"),incomplete=$(kv incomplete "$line")"
	fi
	if [ "$p" != origin ]; then alive "$p" || { ok=0 why="proxy_exited"; }; fi
	record "latency $p $r p50=$(kv p50_us "$line") p99=$(kv p99_us "$line") p999=$(kv p999_us "$line") max=$(kv max_us "$line") achieved=$(kv achieved_rps "$line") proxy_cpu=$CPU_PROXY other_cpu=$CPU_OTHER ok=$ok why=$why"
	log "  latency ${LABEL[$p]} #$r: p50 $(kv p50_us "$line") us, p99 $(kv p99_us "$line") us, p99.9 $(kv p999_us "$line") us (other CPU ${CPU_OTHER}%)${why:+ [$why]}"
}

# Memory per idle connection: a freshly started proxy, one short warm-up, RSS, then
# IDLE_CONNS connections held open after their handshake, RSS again after IDLE_SETTLE s.
measure_idle() { # PROXY REPEAT
	local p=$1 r=$2 why="" pids base after nproc left n i f up=0 failed=0 dropped=0 ok=1 kib
	local files=() lgp=()
	stop_server "$p"
	start_proxy "$p" || {
		record "idle $p $r ok=0 why=restart_failed"
		log "  idle ${LABEL[$p]} #$r: restart failed: $REASON"
		return
	}
	# shellcheck disable=SC2046
	loadgen "idle-warm-$p-$r" -m rps -n 4 -d 1 -w 0 -q $(tls_args "$p")
	sleep 0.5
	pids=$(proxy_pids "$p")
	# shellcheck disable=SC2086
	base=$(rss_kb $pids)
	nproc=$(((IDLE_CONNS + IDLE_PER_PROC - 1) / IDLE_PER_PROC))
	left=$IDLE_CONNS
	for i in $(seq "$nproc"); do
		n=$(((left + nproc - i) / (nproc - i + 1)))
		left=$((left - n))
		f=$OUT/idle-$p-$r-$i.kv
		files+=("$f")
		# shellcheck disable=SC2046
		"${PIN_LOAD[@]}" "$LG" -m idle -n "$n" -d 600 -i 100 $(tls_args "$p") \
			>"$f" 2>"$LOGS/idle-$p-$r-$i.txt" &
		lgp+=($!)
		LG_PIDS+=($!)
	done
	for f in "${files[@]}"; do
		for i in $(seq 1800); do
			grep -q '^ready=' "$f" 2>/dev/null && break
			sleep 0.1
		done
	done
	sleep "$IDLE_SETTLE"
	# shellcheck disable=SC2086
	after=$(rss_kb $pids)
	for i in "${lgp[@]}"; do kill -USR1 "$i" 2>/dev/null; done
	for i in "${lgp[@]}"; do wait "$i" 2>/dev/null; done
	LG_PIDS=() # idle-test loadgens running in the background
CUR_LG=    # the loadgen being waited for
	for f in "${files[@]}"; do
		up=$((up + $(kv up "$(grep '^mode=' "$f")" || echo 0)))
		failed=$((failed + $(kv failed "$(grep '^mode=' "$f")" || echo 0)))
		dropped=$((dropped + $(kv dropped "$(grep '^mode=' "$f")" || echo 0)))
	done
	if [ "$up" -lt "$IDLE_CONNS" ]; then ok=0 why="only_${up}_of_${IDLE_CONNS}_up(failed=$failed,dropped=$dropped)"; fi
	alive "$p" || { ok=0 why="proxy_exited"; }
	kib=n/a
	[ "$up" -gt 0 ] && kib=$(awk -v a="$base" -v b="$after" -v n="$up" 'BEGIN {printf "%.2f", (b - a) / n}')
	record "idle $p $r value=$kib base_kb=$base after_kb=$after up=$up ok=$ok why=$why"
	log "  idle ${LABEL[$p]} #$r: $up up, RSS $base -> $after KiB, $kib KiB per connection${why:+ [$why]}"
	stop_server "$p"
}

# ---- run ----

log "moat bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $NCPU CPUs, $(uname -sr)"
log "DURATION=$DURATION REPEAT=$REPEAT WORKERS=$WORKERS TLS=$TLS RPS_CONNS=$RPS_CONNS HS_CONNS=$HS_CONNS IDLE_CONNS=$IDLE_CONNS LAT_RATE=$LAT_RATE LAT_CONNS=$LAT_CONNS"
log "pinning: $PINNING; open files per process: $FD_LIMIT"
log "load average before starting: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$IDLE_CONNS" -gt $((HA_MAXCONN - 100)) ] &&
	log "warning: IDLE_CONNS=$IDLE_CONNS is more than HAProxy's maxconn ($HA_MAXCONN) allows with $FD_LIMIT open files"

if ! start_origin; then
	echo "run.sh: the origin (nginx) did not start; see $LOGS/origin-error.log" >&2
	exit 1
fi
# shellcheck disable=SC2046
loadgen origin-check -m rps -n 1 -d 1 -w 0 $(tls_args origin)
line=$LINE
[ "$(kv requests "$line")" -ge 1 ] 2>/dev/null || { echo "run.sh: the origin does not answer" >&2; exit 1; }

ACTIVE=()
for p in $PROXIES; do
	if start_proxy "$p" && sanity "$p"; then
		ACTIVE+=("$p")
		log "${LABEL[$p]} on 127.0.0.1:${PORT[$p]}: ready (${NEG[$p]})"
	else
		NA[$p]=$REASON
		stop_server "$p"
		log "${LABEL[$p]}: n/a: $REASON"
	fi
done

for t in $TESTS; do
	case $t in
	rps | handshake)
		log "$t: ${DURATION}s x $REPEAT per proxy"
		for r in $(seq "$REPEAT"); do
			for p in "${ACTIVE[@]}"; do
				alive "$p" && measure_rps_like "$t" "$p" "$r"
			done
		done
		;;
	latency)
		log "latency: $LAT_RATE req/s over $LAT_CONNS connections, ${DURATION}s x $REPEAT, origin direct first"
		for r in $(seq "$REPEAT"); do
			measure_latency origin "$r"
			for p in "${ACTIVE[@]}"; do
				alive "$p" && measure_latency "$p" "$r"
			done
		done
		;;
	idle) ;; # last: it restarts the proxies
	*) log "unknown test $t" ;;
	esac
done
for p in "${ACTIVE[@]}"; do
	alive "$p" || { [ -z "${NA[$p]:-}" ] && NA[$p]="exited during the run: $(tail -n 2 "$LOGS/$p.out" | tr '\n' ' ')"; }
done
if [[ " $TESTS " == *" idle "* ]]; then
	log "idle: $IDLE_CONNS connections x $REPEAT per proxy (fresh proxy each time)"
	for r in $(seq "$REPEAT"); do
		for p in "${ACTIVE[@]}"; do
			[ -n "${NA[$p]:-}" ] && continue
			measure_idle "$p" "$r"
		done
	done
fi
cleanup

# ---- report ----

median() { # values on stdin (one per line); "n/a" if none
	sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

fig() { # TEST PROXY FIELD: median over the valid runs
	awk -v t="$1" -v p="$2" -v f="$3" '$1 == t && $2 == p && / ok=1/ {for (i = 4; i <= NF; i++) {n = index($i, "="); if (substr($i, 1, n - 1) == f) print substr($i, n + 1)}}' \
		"$OUT/results.txt" 2>/dev/null | median
}

runs() { # TEST PROXY: "valid/total"
	awk -v t="$1" -v p="$2" '$1 == t && $2 == p {n++; if (/ ok=1/) v++} END {printf "%d/%d", v, n}' "$OUT/results.txt" 2>/dev/null
}

ratio() { # A B
	awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a" || b + 0 <= 0 || a + 0 < 0) print "n/a"; else printf "%.2f", a / b}'
}

minus() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a") print "n/a"; else printf "%.1f", a - b}'; }

round() { awk -v a="$1" -v d="${2:-0}" 'BEGIN {if (a == "n/a") print "n/a"; else printf "%.*f", d, a}'; }

declare -A V=()
for p in moatd haproxy nginx; do
	V[rps,$p]=$(round "$(fig rps "$p" value)")
	V[handshake,$p]=$(round "$(fig handshake "$p" value)")
	V[idle,$p]=$(round "$(fig idle "$p" value)" 2)
	V[rpsus,$p]=$(round "$(fig rps "$p" us_per_op)" 1)
	V[hsus,$p]=$(round "$(fig handshake "$p" us_per_op)")
	V[p50,$p]=$(fig latency "$p" p50)
	V[p99,$p]=$(fig latency "$p" p99)
	V[add50,$p]=$(minus "${V[p50,$p]}" "$(fig latency origin p50)")
	V[add99,$p]=$(minus "${V[p99,$p]}" "$(fig latency origin p99)")
	for k in rps handshake idle p50 p99 add50 add99 rpsus hsus; do
		[ -n "${NA[$p]:-}" ] && V[$k,$p]=n/a
	done
done

{
	echo "moat bench - $(date -u +%Y-%m-%d), $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $(uname -sr)"
	echo "WORKERS=$WORKERS DURATION=${DURATION}s REPEAT=$REPEAT TLS $TLS; median of $REPEAT runs"
	echo "pinning: $PINNING"
	echo "haproxy $(haproxy -v | head -n 1 | awk '{print $3}'), nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $(openssl version | awk '{print $1, $2}')$([ -z "${NA[moatd]:-}" ] && echo ", $("$MOATD" -v 2>&1 | head -n 1)")"
	echo
	printf '%-44s %10s %10s %10s %14s %12s\n' "" moatd HAProxy nginx moatd/HAProxy moatd/nginx
	row() { # LABEL KEY better
		printf '%-44s %10s %10s %10s %14s %12s\n' "$1" "${V[$2,moatd]}" "${V[$2,haproxy]}" "${V[$2,nginx]}" \
			"$(ratio "${V[$2,moatd]}" "${V[$2,haproxy]}")" "$(ratio "${V[$2,moatd]}" "${V[$2,nginx]}")"
	}
	[[ " $TESTS " == *" rps "* ]] && row "keep-alive requests/s ($RPS_CONNS conns) [higher]" rps
	[[ " $TESTS " == *" handshake "* ]] && row "full mTLS handshakes/s ($HS_CONNS conc.) [higher]" handshake
	[[ " $TESTS " == *" rps "* ]] && row "  proxy CPU per request, us [lower]" rpsus
	[[ " $TESTS " == *" handshake "* ]] && row "  proxy CPU per handshake+request, us [lower]" hsus
	[[ " $TESTS " == *" idle "* ]] && row "KiB RSS per idle mTLS conn (at $IDLE_CONNS) [lower]" idle
	if [[ " $TESTS " == *" latency "* ]]; then
		row "p50 latency added, us ($LAT_RATE req/s) [lower]" add50
		row "p99 latency added, us ($LAT_RATE req/s) [lower]" add99
		echo
		echo "latency at $LAT_RATE req/s over $LAT_CONNS connections, absolute (us):"
		printf '  %-10s p50 %8s   p99 %8s\n' "origin" "$(fig latency origin p50)" "$(fig latency origin p99)"
		for p in moatd haproxy nginx; do
			printf '  %-10s p50 %8s   p99 %8s\n' "${LABEL[$p]}" "${V[p50,$p]}" "${V[p99,$p]}"
		done
	fi
	echo
	for t in rps handshake latency; do
		[[ " $TESTS " == *" $t "* ]] || continue
		line=""
		for p in moatd haproxy nginx; do
			[ -n "${NA[$p]:-}" ] && continue
			if [ "$t" = latency ]; then
				line+="  ${LABEL[$p]} $(round "$(fig "$t" "$p" other_cpu)")"
			else
				line+="  ${LABEL[$p]} $(round "$(fig "$t" "$p" proxy_cpu)")/$(round "$(fig "$t" "$p" origin_cpu)")/$(round "$(fig "$t" "$p" loadgen_cpu)")/$(round "$(fig "$t" "$p" other_cpu)")/$(round "$(fig "$t" "$p" irq_cpu)")"
			fi
		done
		if [ "$t" = latency ]; then
			echo "CPU used by other processes during latency runs (median % of a core):$line"
		else
			echo "CPU during $t runs (median % of a core, proxy/origin/loadgen/other/irq):$line"
		fi
	done
	under=""
	for t in rps handshake; do
		[[ " $TESTS " == *" $t "* ]] || continue
		for p in moatd haproxy nginx; do
			[ -n "${NA[$p]:-}" ] && continue
			c=$(round "$(fig "$t" "$p" proxy_cpu)")
			[ "$c" = n/a ] && continue
			[ "$c" -lt $((90 * PROXY_CORES)) ] && under+=" $t/${LABEL[$p]} ${c}%;"
		done
	done
	[ -n "$under" ] && echo "NOTE: proxy below 90% of its $PROXY_CORES core(s):${under%;}. The limit was elsewhere (the load core, other processes, kernel softirq work): such a figure is a lower bound, and the CPU cost per operation is the better comparison."
	noisy=$(awk '{for (i = 4; i <= NF; i++) if ($i ~ /^other_cpu=/) {split($i, a, "="); if (a[2] + 0 > 10) n++}} END {print n + 0}' "$OUT/results.txt" 2>/dev/null)
	[ "$noisy" -gt 0 ] && echo "WARNING: in $noisy runs other processes used more than 10% of a core: the machine was not quiet"
	for p in moatd haproxy nginx; do
		[ -n "${NA[$p]:-}" ] && echo "${LABEL[$p]}: n/a - ${NA[$p]}"
		[ -n "${NEG[$p]:-}" ] && echo "${LABEL[$p]}: negotiated ${NEG[$p]}"
		for t in $TESTS; do
			[ -z "${NA[$p]:-}" ] || continue
			v=$(runs "$t" "$p")
			case $v in "${REPEAT}/${REPEAT}" | 0/0) ;; *) echo "${LABEL[$p]}: $t: only $v runs valid" ;; esac
		done
	done
	echo
	echo "all runs ($OUT/results.txt):"
	sed 's/^/  /' "$OUT/results.txt" 2>/dev/null
} | tee "$OUT/summary.txt"

# ---- TCP listeners: bench/tcp.sh, with the same moatd and environment ----
if [ "${TCP:-1}" = 1 ]; then
	echo
	"$ROOT/bench/tcp.sh" "$MOATD"
fi

# ---- virtual patches: bench/rules.sh, with the same moatd and environment ----
if [ "${RULES:-1}" = 1 ]; then
	echo
	"$ROOT/bench/rules.sh" "$MOATD"
fi
