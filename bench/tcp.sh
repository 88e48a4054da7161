#!/usr/bin/env bash
# bench/tcp.sh MOATD - moatd's TCP listeners next to HAProxy in TCP mode.
#
# Both terminate the same mutual TLS (ECDSA P-256 server certificate, client certificate
# required and verified against the device CA) and forward the decrypted byte stream to the
# same plain-TCP origin (tcpload serve), with the same number of workers. Measured, each REPEAT
# times, median reported: throughput in MB/s (10^6 bytes) with 1 and 100 streams, upload
# (device -> origin) and download (origin -> device), the proxy's CPU time per MB, and memory
# per idle mTLS connection (each with its origin connection open). bench/README.md ("TCP")
# explains the method.
#
# Environment (defaults in brackets):
#   DURATION [10]    seconds per measurement     REPEAT [3]       runs per measurement
#   WORKERS [1]      moatd workers, HAProxy nbthread              WARMUP [1] unmeasured seconds
#   STREAMS ["1 100"] concurrent streams          DIRS ["up down"] up: device -> origin
#   IDLE_CONNS [8000] idle connections            IDLE_SETTLE [2]  seconds before sampling RSS
#   IDLE_ECHO ["1 65536"] bytes echoed through each idle connection before it is held
#   PROBE_RATE [5]   new connections per second during the stream tests, each timed from
#                    connect() to a 1-byte echo through the origin (0: none)
#   TLS [1.3]        1.2 | 1.3                    PORT_BASE [24500]
#   TCP_TESTS ["stream idle"]                     PROXIES ["moatd haproxy"] (others ignored)
#   MOAT_TCP_BUFFER  moatd tcp_buffer (unset: moatd's default, 64k)
#   HA_BUFSIZE       HAProxy tune.bufsize (unset: HAProxy's default, 16384)
#   ORIGIN_CPU [the load core]                   NO_PIN [0]       1: do not pin anything
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
STREAMS=${STREAMS:-1 100}
DIRS=${DIRS:-up down}
IDLE_CONNS=${IDLE_CONNS:-8000}
IDLE_SETTLE=${IDLE_SETTLE:-2}
IDLE_ECHO=${IDLE_ECHO:-1 65536}
TLS=${TLS:-1.3}
PROBE_RATE=${PROBE_RATE:-5}
PORT_BASE=${PORT_BASE:-24500}
TCP_TESTS=${TCP_TESTS:-stream idle}
NO_PIN=${NO_PIN:-0}
MOAT_TCP_BUFFER=${MOAT_TCP_BUFFER:-}
HA_BUFSIZE=${HA_BUFSIZE:-}

PROXY_LIST=()
for p in ${PROXIES:-moatd haproxy}; do
	case $p in moatd | haproxy) PROXY_LIST+=("$p") ;; esac
done

B=$ROOT/build/bench/tcp
PKI=$B/pki
CONF=$B/conf
LOGS=$B/logs
OUT=$B/out
TL=$B/tcpload
SNI=bench.moat.test
ORIGIN_PORT=$((PORT_BASE + 80))
COUNTERS=$B/origin-counters
declare -A PORT=([moatd]=$((PORT_BASE + 43)) [haproxy]=$((PORT_BASE + 44)))
declare -A LABEL=([moatd]=moatd [haproxy]=HAProxy [origin]=origin)
declare -A PID=()  # running servers, by name
declare -A NA=()   # proxy -> why it has no figures
declare -A NEG=()  # proxy -> negotiated TLS parameters
TL_PIDS=() # idle-test clients running in the background
CUR_TL=    # the client being waited for

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
	if kill -0 "$pid" 2>/dev/null; then
		for p in $all; do kill -KILL "$p" 2>/dev/null; done
	fi
	wait "$pid" 2>/dev/null
	unset "PID[$name]"
}

cleanup() {
	local p n
	trap - EXIT INT TERM
	for p in "${TL_PIDS[@]}" $CUR_TL; do kill -TERM "$p" 2>/dev/null; done
	for p in "${TL_PIDS[@]}" $CUR_TL; do wait "$p" 2>/dev/null; done
	TL_PIDS=() CUR_TL=
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

kv() { # KEY LINE: the value of KEY in a key=value line
	awk -v k="$1" '{for (i = 1; i <= NF; i++) {n = index($i, "="); if (substr($i, 1, n - 1) == k) {print substr($i, n + 1); exit}}}' <<<"$2"
}

# ---- checks, limits, pinning ----

for t in openssl haproxy cc ss pgrep; do
	command -v "$t" >/dev/null || { echo "tcp.sh: $t is required" >&2; exit 1; }
done
mkdir -p "$PKI" "$CONF" "$LOGS" "$OUT" "$B/moatd-data"
rm -f "$LOGS"/* "$OUT"/*
cc -O2 -Wall -Wextra -Werror bench/tcpload.c -lssl -lcrypto -o "$TL" || exit 1

# moatd is copied once, so that every measurement uses the same binary even when the tree is
# rebuilt during the run
MOATD_RUN=$B/moatd
MOATD_ID=
for i in 1 2 3 4 5; do # a binary being relinked right now is retried a few times
	rm -f "$MOATD_RUN"
	if [ -x "$MOATD" ] && cp "$MOATD" "$MOATD_RUN" && "$MOATD_RUN" -v >/dev/null 2>&1; then
		MOATD_ID="$(sha256sum "$MOATD_RUN" | cut -c1-12), built $(date -u -r "$MOATD" +%Y-%m-%dT%H:%M:%SZ)"
		break
	fi
	rm -f "$MOATD_RUN"
	[ -e "$MOATD" ] || break
	sleep 3
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null
FD_LIMIT=$(ulimit -n)
[ "$FD_LIMIT" = unlimited ] && FD_LIMIT=1048576
# each device connection has an origin connection: two descriptors in the proxy. HAProxy
# reserves two per connection and refuses to start if it cannot.
HA_MAXCONN=$(((FD_LIMIT - 200) / 2))
MOAT_MAXCONN=$(((FD_LIMIT - 500) / 2))
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
	PINNING="proxy on CPU $PROXY_CPUS; load on CPU $LOAD_CPU; origin on CPU $ORIGIN_CPU (taskset)"
	PROXY_CORES=$((NCPU - 1))
else
	PINNING="not pinned (taskset unavailable, fewer than 2 CPUs, or NO_PIN=1)"
fi
[ "$WORKERS" -lt "$PROXY_CORES" ] && PROXY_CORES=$WORKERS

# ---- PKI: ECDSA P-256, made with the openssl CLI (the same recipe as run.sh) ----

make_pki() {
	local d=$PKI k
	rm -f "$d"/*
	cat >"$d/ext.cnf" <<-EOF
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
make_pki || { echo "tcp.sh: could not make the bench PKI" >&2; exit 1; }

# ---- configurations ----

cat >"$CONF/moatd.conf" <<EOF
; moatd: mTLS termination, the decrypted stream forwarded to the bench origin.
[moat]
workers = $WORKERS
data_dir = $B/moatd-data
error_log = $LOGS/moatd-error.log
log_level = warn
handshake_timeout = 10s
tcp_idle_timeout = 600s
max_connections = $MOAT_MAXCONN
max_connections_per_ip = 0
${MOAT_TCP_BUFFER:+tcp_buffer = $MOAT_TCP_BUFFER}

[listener bench_tcp]
bind = 127.0.0.1:${PORT[moatd]}
protocol = tcp
default_tenant = bench

[tenant bench]
hosts = $SNI
cert = $PKI/server.crt
key = $PKI/server.key
device_ca = $PKI/device-ca.crt
mtls = require
device_id = cn
tcp_origin = tcp://127.0.0.1:$ORIGIN_PORT
EOF

cat >"$CONF/haproxy.cfg" <<EOF
global
	nbthread $WORKERS
	maxconn $HA_MAXCONN
	ssl-default-bind-options ssl-min-ver TLSv1.2
${HA_BUFSIZE:+	tune.bufsize $HA_BUFSIZE}

defaults
	mode tcp
	timeout connect 5s
	timeout client 600s
	timeout server 600s
	maxconn $HA_MAXCONN

frontend bench_tcp
	bind 127.0.0.1:${PORT[haproxy]} ssl crt $PKI/server.pem ca-file $PKI/device-ca.crt verify required
	default_backend origin

backend origin
	server origin 127.0.0.1:$ORIGIN_PORT
EOF

# ---- servers ----

start_origin() {
	"${PIN_ORIGIN[@]}" "$TL" -m serve -a "127.0.0.1:$ORIGIN_PORT" -O "$COUNTERS" \
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
		[ -x "$MOATD_RUN" ] || { REASON="$MOATD not found (not built yet)"; return 1; }
		if ! "$MOATD_RUN" -t -c "$CONF/moatd.conf" >"$LOGS/moatd-check.out" 2>&1; then
			REASON="configuration refused: $(head -n 2 "$LOGS/moatd-check.out" | tr '\n' ' ')"
			return 1
		fi
		"${PIN_PROXY[@]}" "$MOATD_RUN" -c "$CONF/moatd.conf" >>"$logf" 2>&1 &
		;;
	haproxy)
		"${PIN_PROXY[@]}" haproxy -db -f "$CONF/haproxy.cfg" >>"$logf" 2>&1 &
		;;
	esac
	PID[$p]=$!
	wait_listen "$p" "${PORT[$p]}" "$logf" || return 1
	sleep 0.3
}

proxy_pids() { descendants "${PID[$1]}"; }

alive() { [ -n "${PID[$1]:-}" ] && kill -0 "${PID[$1]}" 2>/dev/null; }

# ---- the client ----

tls_args() { # PROXY
	echo "-a 127.0.0.1:${PORT[$1]} -s $SNI -V $TLS -c $PKI/device.crt -k $PKI/device.key"
}

LINE= # the result line of the last tcpload run

# Runs one client on the load CPU and sets LINE; in the background and waited for, so that a
# signal to this script is handled at once.
tcpload() { # NAME-FOR-LOG ARGS...
	local tag=$1 pid
	shift
	"${PIN_LOAD[@]}" "$TL" "$@" >"$OUT/$tag.kv" 2>"$LOGS/$tag.txt" &
	pid=$!
	CUR_TL=$pid
	wait "$pid"
	CUR_TL=
	LINE=$(grep '^mode=' "$OUT/$tag.kv" | tail -n 1)
}

# A proxy is only measured if 256 KiB sent with the device certificate (and the server
# certificate verified against the server CA) come back unchanged from the origin's echo, and
# nothing comes back to a client without a certificate.
sanity() { # PROXY: sets REASON on failure
	local p=$1
	# shellcheck disable=SC2046
	tcpload "sanity-$p" -m check -C "$PKI/server-ca.crt" $(tls_args "$p")
	if [ "$(kv echo_ok "$LINE")" != 1 ]; then
		REASON="no echo through the proxy with the device certificate: $(grep -m1 'tcpload:' "$LOGS/sanity-$p.txt")"
		return 1
	fi
	NEG[$p]="$(kv tls "$LINE") $(kv cipher "$LINE") $(kv group "$LINE")"
	tcpload "nocert-$p" -m check -a "127.0.0.1:${PORT[$p]}" -s "$SNI" -V "$TLS"
	if [ "$(kv echo_ok "$LINE")" != 0 ]; then
		REASON="a client without a certificate got through: mTLS is not enforced"
		return 1
	fi
}

# ---- measurements ----
# Each appends "TEST PROXY REPEAT key=value..." to $OUT/results.txt; ok=0 marks a run whose
# figures are not to be trusted, with the reason in why=.

record() { echo "$*" >>"$OUT/results.txt"; }

measure_stream() { # DIR STREAMS PROXY REPEAT
	local d=$1 n=$2 p=$3 r=$4 t="$1-$2" line ok=1 why=""
	# shellcheck disable=SC2046
	tcpload "$t-$p-$r" -m "$d" -n "$n" -d "$DURATION" -w "$WARMUP" -O "$COUNTERS" -r "$PROBE_RATE" \
		-p "$(proxy_pids "$p" | paste -sd,)" -o "${PID[origin]}" $(tls_args "$p")
	line=$LINE
	if [ -z "$line" ]; then
		ok=0 why="no_result:$(grep -m1 'tcpload:' "$LOGS/$t-$p-$r.txt" | tr ' ' '_')"
	elif [ "$(kv ok "$line")" != 1 ]; then
		ok=0 why="streams_up=$(kv streams_up "$line"),errors=$(kv errors "$line"),failed=$(kv failed "$line")"
	fi
	alive "$p" || { ok=0 why="proxy_exited"; }
	record "$t $p $r value=$(kv mbps "$line") us_per_mb=$(awk -v v="$(kv proxy_ms_per_mb "$line")" 'BEGIN {if (v == "" || v == "n/a") print "n/a"; else printf "%.0f", v * 1000}') proxy_cpu=$(kv proxy_cpu "$line") origin_cpu=$(kv origin_cpu "$line") loadgen_cpu=$(kv loadgen_cpu "$line") other_cpu=$(kv other_cpu "$line") irq_cpu=$(kv irq_cpu "$line") min=$(kv stream_min_mbps "$line") max=$(kv stream_max_mbps "$line") fairness=$(kv fairness "$line") probes=$(kv probes "$line") probe_p50=$(kv probe_p50_ms "$line") probe_p90=$(kv probe_p90_ms "$line") probe_max=$(kv probe_max_ms "$line") probe_unfinished=$(kv probe_unfinished "$line") probe_failed=$(kv probe_failed "$line") ok=$ok why=$why"
	log "  $t ${LABEL[$p]} #$r: $(kv mbps "$line") MB/s, proxy $(kv proxy_ms_per_mb "$line") ms CPU per MB (CPU: proxy $(kv proxy_cpu "$line")%, origin $(kv origin_cpu "$line")%, load $(kv loadgen_cpu "$line")%, other $(kv other_cpu "$line")%, irq $(kv irq_cpu "$line")%; per stream $(kv stream_min_mbps "$line")..$(kv stream_max_mbps "$line"), fairness $(kv fairness "$line"); new connections p50 $(kv probe_p50_ms "$line") ms, p90 $(kv probe_p90_ms "$line") ms, $(kv probe_unfinished "$line") of $(kv probes "$line") unfinished)${why:+ [$why]}"
}

# Memory per idle connection: a freshly started proxy, one echo through it, RSS, then
# IDLE_CONNS connections that each echo ECHO bytes through the origin and are then held,
# RSS again after IDLE_SETTLE s.
measure_idle() { # ECHO PROXY REPEAT
	local e=$1 p=$2 r=$3 why="" pids base after nproc left n i f up=0 failed=0 dropped=0 ok=1 kib
	local files=() tlp=() t="idle-$1"
	stop_server "$p"
	start_proxy "$p" || {
		record "$t $p $r ok=0 why=restart_failed"
		log "  $t ${LABEL[$p]} #$r: restart failed: $REASON"
		return
	}
	# shellcheck disable=SC2046
	tcpload "$t-warm-$p-$r" -m check -q $(tls_args "$p")
	sleep 0.5
	pids=$(proxy_pids "$p")
	# shellcheck disable=SC2086
	base=$(rss_kb $pids)
	nproc=$(((IDLE_CONNS + IDLE_PER_PROC - 1) / IDLE_PER_PROC))
	left=$IDLE_CONNS
	for i in $(seq "$nproc"); do
		n=$(((left + nproc - i) / (nproc - i + 1)))
		left=$((left - n))
		f=$OUT/$t-$p-$r-$i.kv
		files+=("$f")
		# shellcheck disable=SC2046
		"${PIN_LOAD[@]}" "$TL" -m idle -n "$n" -b "$e" -d 600 -i 100 $(tls_args "$p") \
			>"$f" 2>"$LOGS/$t-$p-$r-$i.txt" &
		tlp+=($!)
		TL_PIDS+=($!)
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
	for i in "${tlp[@]}"; do kill -USR1 "$i" 2>/dev/null; done
	for i in "${tlp[@]}"; do wait "$i" 2>/dev/null; done
	TL_PIDS=()
	for f in "${files[@]}"; do
		up=$((up + $(kv up "$(grep '^mode=' "$f")" || echo 0)))
		failed=$((failed + $(kv failed "$(grep '^mode=' "$f")" || echo 0)))
		dropped=$((dropped + $(kv dropped "$(grep '^mode=' "$f")" || echo 0)))
	done
	if [ "$up" -lt "$IDLE_CONNS" ]; then ok=0 why="only_${up}_of_${IDLE_CONNS}_up(failed=$failed,dropped=$dropped)"; fi
	alive "$p" || { ok=0 why="proxy_exited"; }
	kib=n/a
	[ "$up" -gt 0 ] && kib=$(awk -v a="$base" -v b="$after" -v n="$up" 'BEGIN {printf "%.2f", (b - a) / n}')
	record "$t $p $r value=$kib base_kb=$base after_kb=$after up=$up ok=$ok why=$why"
	log "  $t ${LABEL[$p]} #$r: $up up, RSS $base -> $after KiB, $kib KiB per connection${why:+ [$why]}"
	stop_server "$p"
}

# ---- run ----

START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "moat TCP bench: $START, $NCPU CPUs, $(uname -sr)"
log "DURATION=$DURATION REPEAT=$REPEAT WORKERS=$WORKERS WARMUP=$WARMUP TLS=$TLS STREAMS=\"$STREAMS\" DIRS=\"$DIRS\" PROBE_RATE=$PROBE_RATE IDLE_CONNS=$IDLE_CONNS IDLE_ECHO=\"$IDLE_ECHO\""
log "pinning: $PINNING; open files per process: $FD_LIMIT"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before starting: $LOAD_BEFORE"
[ "$IDLE_CONNS" -gt $((HA_MAXCONN - 100)) ] &&
	log "warning: IDLE_CONNS=$IDLE_CONNS is more than HAProxy's maxconn ($HA_MAXCONN) allows with $FD_LIMIT open files"

if ! start_origin; then
	echo "tcp.sh: the origin (tcpload serve) did not start: $REASON" >&2
	exit 1
fi

ACTIVE=()
for p in "${PROXY_LIST[@]}"; do
	if start_proxy "$p" && sanity "$p"; then
		ACTIVE+=("$p")
		log "${LABEL[$p]} on 127.0.0.1:${PORT[$p]}: ready (${NEG[$p]})"
	else
		NA[$p]=$REASON
		stop_server "$p"
		log "${LABEL[$p]}: n/a: $REASON"
	fi
done

if [[ " $TCP_TESTS " == *" stream "* ]]; then
	for d in $DIRS; do
		for n in $STREAMS; do
			log "$d, $n stream(s): ${DURATION}s x $REPEAT per proxy"
			for r in $(seq "$REPEAT"); do
				for p in "${ACTIVE[@]}"; do
					alive "$p" && measure_stream "$d" "$n" "$p" "$r"
				done
			done
		done
	done
fi
for p in "${ACTIVE[@]}"; do
	alive "$p" || { [ -z "${NA[$p]:-}" ] && NA[$p]="exited during the run: $(tail -n 2 "$LOGS/$p.out" | tr '\n' ' ')"; }
done
if [[ " $TCP_TESTS " == *" idle "* ]]; then
	for e in $IDLE_ECHO; do
		log "idle: $IDLE_CONNS connections, $e byte(s) echoed each, x $REPEAT per proxy (fresh proxy each time)"
		for r in $(seq "$REPEAT"); do
			for p in "${ACTIVE[@]}"; do
				[ -n "${NA[$p]:-}" ] && continue
				measure_idle "$e" "$p" "$r"
			done
		done
	done
fi
cleanup
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
END=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "done; load average: $LOAD_AFTER"

# ---- report ----

median() { # values on stdin (one per line); "n/a" if none
	sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

fig() { # TEST PROXY FIELD: median over the valid runs
	awk -v t="$1" -v p="$2" -v f="$3" '$1 == t && $2 == p && / ok=1/ {for (i = 4; i <= NF; i++) {n = index($i, "="); if (substr($i, 1, n - 1) == f) print substr($i, n + 1)}}' \
		"$OUT/results.txt" 2>/dev/null | grep -v '^n/a$' | median
}

runs() { # TEST PROXY: "valid/total"
	awk -v t="$1" -v p="$2" '$1 == t && $2 == p {n++; if (/ ok=1/) v++} END {printf "%d/%d", v, n}' "$OUT/results.txt" 2>/dev/null
}

ratio() { # A B
	awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a" || b + 0 <= 0 || a + 0 < 0) print "n/a"; else printf "%.2f", a / b}'
}

round() { awk -v a="$1" -v d="${2:-0}" 'BEGIN {if (a == "n/a") print "n/a"; else printf "%.*f", d, a}'; }

val() { # TEST PROXY FIELD DECIMALS
	if [ -n "${NA[$2]:-}" ] || [[ " ${PROXY_LIST[*]} " != *" $2 "* ]]; then echo n/a; return; fi
	round "$(fig "$1" "$2" "$3")" "$4"
}

row() { # LABEL TEST FIELD DECIMALS
	local a b
	a=$(val "$2" moatd "$3" "$4")
	b=$(val "$2" haproxy "$3" "$4")
	printf '%-54s %10s %10s %14s\n' "$1" "$a" "$b" "$(ratio "$a" "$b")"
}

# the new-connection p50: ">=" when probes were still unfinished at the end of the window (in
# the median run), as their wait so far is only a lower bound
probe_row() { # LABEL TEST
	local a b ra rb r
	a=$(val "$2" moatd probe_p50 1)
	b=$(val "$2" haproxy probe_p50 1)
	r=$(ratio "$a" "$b")
	ra=$a rb=$b
	[ "$(val "$2" moatd probe_unfinished 0)" != 0 ] && [ "$a" != n/a ] && ra=">=$a" && [ "$r" != n/a ] && r=">=$r"
	[ "$(val "$2" haproxy probe_unfinished 0)" != 0 ] && [ "$b" != n/a ] && rb=">=$b" && r="n/a"
	printf '%-54s %10s %10s %14s\n' "$1" "$ra" "$rb" "$r"
}

dirname_() { [ "$1" = up ] && echo "upload (device->origin)" || echo "download (origin->device)"; }

{
	echo "moat TCP bench - $(date -u +%Y-%m-%d), $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $(uname -sr)"
	echo "WORKERS=$WORKERS DURATION=${DURATION}s WARMUP=${WARMUP}s REPEAT=$REPEAT TLS $TLS; median of $REPEAT runs; MB = 10^6 bytes"
	echo "pinning: $PINNING"
	echo "haproxy $(haproxy -v | head -n 1 | awk '{print $3}'), $(openssl version | awk '{print $1, $2}')$([ -x "$MOATD_RUN" ] && echo ", $("$MOATD_RUN" -v 2>&1 | head -n 1)")"
	[ -n "$MOATD_ID" ] && echo "moatd binary: $MOATD (sha256 $MOATD_ID), copied at the start and used throughout"
	echo "buffers: moatd tcp_buffer ${MOAT_TCP_BUFFER:-64k (default)} per direction; HAProxy tune.bufsize ${HA_BUFSIZE:-16384 (default)}"
	echo "ran $START .. $END; load average $LOAD_BEFORE at the start, $LOAD_AFTER at the end"
	echo
	printf '%-54s %10s %10s %14s\n' "" moatd HAProxy moatd/HAProxy
	if [[ " $TCP_TESTS " == *" stream "* ]]; then
		for d in $DIRS; do
			for n in $STREAMS; do
				row "$(dirname_ "$d") MB/s, $n stream(s) [higher]" "$d-$n" value 1
			done
		done
		for d in $DIRS; do
			for n in $STREAMS; do
				row "  proxy CPU us per MB, $d, $n stream(s) [lower]" "$d-$n" us_per_mb 0
			done
		done
		if [ "$PROBE_RATE" != 0 ]; then
			for d in $DIRS; do
				for n in $STREAMS; do
					probe_row "new conn. during $d, $n stream(s), p50 ms [lower]" "$d-$n"
				done
			done
		fi
	fi
	if [[ " $TCP_TESTS " == *" idle "* ]]; then
		for e in $IDLE_ECHO; do
			row "KiB RSS per idle mTLS conn ($IDLE_CONNS, ${e} B echoed) [lower]" "idle-$e" value 2
		done
	fi
	echo
	if [[ " $TCP_TESTS " == *" stream "* ]]; then
		echo "CPU during the measured windows (median % of a core, proxy/origin/load/other/irq):"
		for d in $DIRS; do
			for n in $STREAMS; do
				line=""
				for p in "${PROXY_LIST[@]}"; do
					[ -n "${NA[$p]:-}" ] && continue
					line+="  ${LABEL[$p]} $(val "$d-$n" "$p" proxy_cpu 0)/$(val "$d-$n" "$p" origin_cpu 0)/$(val "$d-$n" "$p" loadgen_cpu 0)/$(val "$d-$n" "$p" other_cpu 0)/$(val "$d-$n" "$p" irq_cpu 0)"
				done
				printf '  %-6s %3s stream(s):%s\n' "$d" "$n" "$line"
			done
		done
		for d in $DIRS; do
			for n in $STREAMS; do
				[ "$n" -gt 1 ] || continue
				line=""
				for p in "${PROXY_LIST[@]}"; do
					[ -n "${NA[$p]:-}" ] && continue
					line+="  ${LABEL[$p]} $(val "$d-$n" "$p" min 2)..$(val "$d-$n" "$p" max 2) ($(val "$d-$n" "$p" fairness 3))"
				done
				echo "per-stream MB/s, $d, $n streams, slowest..fastest (Jain's fairness index; medians):$line"
			done
		done
		if [ "$PROBE_RATE" != 0 ]; then
			echo "new connections during the stream tests ($PROBE_RATE/s; connect, full handshake, 1-byte echo through the origin), medians of p50/p90/max ms (unfinished at the end/started):"
			for d in $DIRS; do
				for n in $STREAMS; do
					line=""
					for p in "${PROXY_LIST[@]}"; do
						[ -n "${NA[$p]:-}" ] && continue
						line+="  ${LABEL[$p]} $(val "$d-$n" "$p" probe_p50 1)/$(val "$d-$n" "$p" probe_p90 1)/$(val "$d-$n" "$p" probe_max 1) ($(val "$d-$n" "$p" probe_unfinished 0)/$(val "$d-$n" "$p" probes 0))"
					done
					printf '  %-6s %3s stream(s):%s\n' "$d" "$n" "$line"
				done
			done
		fi
		under=""
		for d in $DIRS; do
			for n in $STREAMS; do
				for p in "${PROXY_LIST[@]}"; do
					[ -n "${NA[$p]:-}" ] && continue
					c=$(val "$d-$n" "$p" proxy_cpu 0)
					[ "$c" = n/a ] && continue
					[ "$c" -lt $((90 * PROXY_CORES)) ] && under+=" $d-$n/${LABEL[$p]} ${c}%;"
				done
			done
		done
		[ -n "$under" ] && echo "NOTE: proxy below 90% of its $PROXY_CORES core(s):${under%;}. The limit was elsewhere (the load core, other processes, kernel softirq work): such a figure is a lower bound; the CPU per MB is the better comparison."
		noisy=$(awk '{for (i = 4; i <= NF; i++) if ($i ~ /^other_cpu=/) {split($i, a, "="); if (a[2] + 0 > 10) n++}} END {print n + 0}' "$OUT/results.txt" 2>/dev/null)
		[ "$noisy" -gt 0 ] && echo "WARNING: in $noisy runs other processes used more than 10% of a core: the machine was not quiet"
	fi
	for p in "${PROXY_LIST[@]}"; do
		[ -n "${NA[$p]:-}" ] && echo "${LABEL[$p]}: n/a - ${NA[$p]}"
		[ -n "${NEG[$p]:-}" ] && echo "${LABEL[$p]}: negotiated ${NEG[$p]}"
		[ -n "${NA[$p]:-}" ] && continue
		tests=()
		if [[ " $TCP_TESTS " == *" stream "* ]]; then
			for d in $DIRS; do for n in $STREAMS; do tests+=("$d-$n"); done; done
		fi
		if [[ " $TCP_TESTS " == *" idle "* ]]; then
			for e in $IDLE_ECHO; do tests+=("idle-$e"); done
		fi
		for t in "${tests[@]}"; do
			v=$(runs "$t" "$p")
			case $v in "${REPEAT}/${REPEAT}" | 0/0) ;; *) echo "${LABEL[$p]}: $t: only $v runs valid" ;; esac
		done
	done
	echo
	echo "all runs ($OUT/results.txt):"
	sed 's/^/  /' "$OUT/results.txt" 2>/dev/null
} | tee "$OUT/summary.txt"
