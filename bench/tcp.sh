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
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

enter_tree "${1:-}"

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
CLIENT=$B/tcpload
SNI=bench.moat.test
ORIGIN_PORT=$((PORT_BASE + 80))
COUNTERS=$B/origin-counters
declare -A PORT=([moatd]=$((PORT_BASE + 43)) [haproxy]=$((PORT_BASE + 44)))
declare -A LABEL=([moatd]=moatd [haproxy]=HAProxy [origin]=origin)

trap stop_all EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- checks, limits, pinning ----

require openssl haproxy cc ss pgrep
mkdir -p "$PKI" "$CONF" "$LOGS" "$OUT" "$B/moatd-data"
rm -f "$LOGS"/* "$OUT"/*
build_client tcpload "$CLIENT" || exit 1

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

raise_fd_limit
# each device connection has an origin connection: two descriptors in the proxy. HAProxy
# reserves two per connection and refuses to start if it cannot.
HA_MAXCONN=$(((FD_LIMIT - 200) / 2))
MOAT_MAXCONN=$(((FD_LIMIT - 500) / 2))
IDLE_PER_PROC=$((FD_LIMIT - 100))

pin_cpus load

# ---- PKI: ECDSA P-256, made with the openssl CLI (lib.sh) ----

make_pki || { echo "tcp.sh: could not make the bench PKI" >&2; exit 1; }

# ---- configurations ----

cat >"$CONF/moatd.conf" <<EOF
; moatd: mTLS termination, the decrypted stream forwarded to the bench origin.
[moat]
workers = $WORKERS
admin_listen = off
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
	launch_origin "$CLIENT" -m serve -a "127.0.0.1:$ORIGIN_PORT" -O "$COUNTERS"
}

start_proxy() { # NAME: sets REASON on failure
	local p=$1
	port_free "$p" || return 1
	case $p in
	moatd)
		moatd_conf_ok moatd "$MOATD_RUN" || return 1
		launch_proxy moatd "$MOATD_RUN" -c "$CONF/moatd.conf"
		;;
	haproxy)
		launch_proxy haproxy haproxy -db -f "$CONF/haproxy.cfg"
		;;
	esac
}

# ---- the client ----

tls_args() { # PROXY
	echo "-a 127.0.0.1:${PORT[$1]} -s $SNI -V $TLS -c $PKI/device.crt -k $PKI/device.key"
}

# A proxy is only measured if 256 KiB sent with the device certificate (and the server
# certificate verified against the server CA) come back unchanged from the origin's echo, and
# nothing comes back to a client without a certificate.
sanity() { # PROXY: sets REASON on failure
	local p=$1
	# shellcheck disable=SC2046
	run_client "sanity-$p" -m check -C "$PKI/server-ca.crt" $(tls_args "$p")
	if [ "$(kv echo_ok "$LINE")" != 1 ]; then
		REASON="no echo through the proxy with the device certificate: $(grep -m1 'tcpload:' "$LOGS/sanity-$p.txt")"
		return 1
	fi
	NEG[$p]="$(kv tls "$LINE") $(kv cipher "$LINE") $(kv group "$LINE")"
	run_client "nocert-$p" -m check -a "127.0.0.1:${PORT[$p]}" -s "$SNI" -V "$TLS"
	if [ "$(kv echo_ok "$LINE")" != 0 ]; then
		REASON="a client without a certificate got through: mTLS is not enforced"
		return 1
	fi
}

# ---- measurements ----
# Each records a line (lib.sh's record).

measure_stream() { # DIR STREAMS PROXY REPEAT
	local d=$1 n=$2 p=$3 r=$4 t="$1-$2" line ok=1 why=""
	# shellcheck disable=SC2046
	run_client "$t-$p-$r" -m "$d" -n "$n" -d "$DURATION" -w "$WARMUP" -O "$COUNTERS" -r "$PROBE_RATE" \
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

# Memory per idle connection (lib.sh's measure_idle_rss): a freshly started proxy, one echo
# through it, RSS, then IDLE_CONNS connections that each echo ECHO bytes through the origin and
# are then held, RSS again after IDLE_SETTLE s.
measure_idle() { # ECHO PROXY REPEAT
	# shellcheck disable=SC2046
	measure_idle_rss "idle-$1" "$2" "$3" -m check -q $(tls_args "$2") -- -b "$1" $(tls_args "$2")
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

bring_up "${PROXY_LIST[@]}"

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
note_exited
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
stop_all
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
END=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "done; load average: $LOAD_AFTER"

# ---- report ----

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
	echo "moat TCP bench - $(machine)"
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
		noisy_warning
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
	results_listing
} | tee "$OUT/summary.txt"
