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
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

enter_tree "${1:-}"

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
CLIENT=$B/loadgen
SNI=bench.moat.test
ORIGIN_PORT=$((PORT_BASE + 80))
declare -A PORT=([moatd]=$((PORT_BASE + 43)) [haproxy]=$((PORT_BASE + 44)) [nginx]=$((PORT_BASE + 45)))
declare -A LABEL=([moatd]=moatd [haproxy]=HAProxy [nginx]=nginx [origin]=origin)

trap stop_all EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- checks, limits, pinning ----

require openssl haproxy nginx cc ss pgrep
mkdir -p "$PKI" "$CONF" "$LOGS" "$OUT"
rm -f "$LOGS"/* "$OUT"/*
build_client loadgen "$CLIENT" || exit 1

raise_fd_limit
# every client connection may need an origin connection too: HAProxy reserves two descriptors
# per connection and refuses to start if it cannot (nginx: lib.sh's nginx_conf)
HA_MAXCONN=$(((FD_LIMIT - 200) / 2))
MOAT_MAXCONN=$((FD_LIMIT - 500))
IDLE_PER_PROC=$((FD_LIMIT - 100))

pin_cpus loadgen

# ---- PKI: ECDSA P-256, made with the openssl CLI (lib.sh) ----

make_pki || { echo "run.sh: could not make the bench PKI" >&2; exit 1; }

# ---- configurations ----

mkdir -p "$B/origin/logs" "$B/nginx/logs" "$B/moatd-data"

origin_conf "$CONF/origin.conf" 4096 "$FD_LIMIT" 4096

cat >"$CONF/moatd.conf" <<EOF
; moatd: mTLS termination in front of the bench origin.
[moat]
workers = $WORKERS
admin_listen = off
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

# HAProxy and nginx (lib.sh's nginx_conf) forward the same identity that moatd adds, so that
# all three do the same job.
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

nginx_conf nginx

# ---- servers ----

start_proxy() { # NAME: sets REASON on failure
	local p=$1
	port_free "$p" || return 1
	case $p in
	moatd)
		moatd_conf_ok moatd "$MOATD" || return 1
		launch_proxy moatd "$MOATD" -c "$CONF/moatd.conf"
		;;
	haproxy)
		launch_proxy haproxy haproxy -db -f "$CONF/haproxy.cfg"
		;;
	nginx)
		launch_proxy nginx nginx -p "$B/nginx/" -e "$LOGS/nginx-error.log" -c "$CONF/nginx.conf"
		;;
	esac
}

# ---- loadgen ----

tls_args() { # PROXY
	if [ "$1" = origin ]; then
		echo "-a 127.0.0.1:$ORIGIN_PORT -P -H $SNI"
	else
		echo "-a 127.0.0.1:${PORT[$1]} -s $SNI -V $TLS -c $PKI/device.crt -k $PKI/device.key"
	fi
}

# A proxy is only measured if a request with the device certificate (and the server
# certificate verified) succeeds and one without a client certificate is refused.
sanity() { # PROXY: sets REASON on failure
	local p=$1 line
	# shellcheck disable=SC2046
	run_client "sanity-$p" -m rps -n 1 -d 1 -w 0 -C "$PKI/server-ca.crt" $(tls_args "$p")
	line=$LINE
	if [ "$(kv requests "$line")" = "" ] || [ "$(kv requests "$line")" -lt 1 ] ||
		[ "$(kv non2xx "$line")" != 0 ] || [ "$(kv errors "$line")" != 0 ]; then
		REASON="no good response with the device certificate: $(grep -m1 'loadgen:' "$LOGS/sanity-$p.txt")"
		return 1
	fi
	NEG[$p]="$(sed -n 's/.*(\(TLS[^ ]* [^ ]* [^ ,]*\),.*/\1/p' "$LOGS/sanity-$p.txt" | head -n 1)"
	run_client "nocert-$p" -m rps -n 1 -d 1 -w 0 -a "127.0.0.1:${PORT[$p]}" -s "$SNI" -V "$TLS"
	line=$LINE
	if [ "$(kv requests "$line")" != 0 ]; then
		REASON="a client without a certificate was served: mTLS is not enforced"
		return 1
	fi
}

# ---- measurements ----
# Each records a line (lib.sh's record); the CPU accounting is lib.sh's cpu_begin and cpu_end.

measure_rps_like() { # TEST PROXY REPEAT
	local t=$1 p=$2 r=$3 line ok=1 why="" key conns mode us_op
	if [ "$t" = rps ]; then key=rps conns=$RPS_CONNS mode=rps; else key=hps conns=$HS_CONNS mode=handshake; fi
	cpu_begin "$p"
	# shellcheck disable=SC2046
	run_client "$t-$p-$r" -m "$mode" -n "$conns" -d "$DURATION" -w "$WARMUP" $(tls_args "$p")
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
	run_client "latency-$p-$r" -m latency -n "$LAT_CONNS" -r "$LAT_RATE" -d "$DURATION" \
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

measure_idle() { # PROXY REPEAT: lib.sh's measure_idle_rss
	# shellcheck disable=SC2046
	measure_idle_rss idle "$1" "$2" -m rps -n 4 -d 1 -w 0 -q $(tls_args "$1") -- $(tls_args "$1")
}

# ---- run ----

log "moat bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $NCPU CPUs, $(uname -sr)"
log "DURATION=$DURATION REPEAT=$REPEAT WORKERS=$WORKERS TLS=$TLS RPS_CONNS=$RPS_CONNS HS_CONNS=$HS_CONNS IDLE_CONNS=$IDLE_CONNS LAT_RATE=$LAT_RATE LAT_CONNS=$LAT_CONNS"
log "pinning: $PINNING; open files per process: $FD_LIMIT"
log "load average before starting: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$IDLE_CONNS" -gt $((HA_MAXCONN - 100)) ] &&
	log "warning: IDLE_CONNS=$IDLE_CONNS is more than HAProxy's maxconn ($HA_MAXCONN) allows with $FD_LIMIT open files"

if ! start_nginx_origin; then
	echo "run.sh: the origin (nginx) did not start; see $LOGS/origin-error.log" >&2
	exit 1
fi
# shellcheck disable=SC2046
run_client origin-check -m rps -n 1 -d 1 -w 0 $(tls_args origin)
line=$LINE
[ "$(kv requests "$line")" -ge 1 ] 2>/dev/null || { echo "run.sh: the origin does not answer" >&2; exit 1; }

# shellcheck disable=SC2086
bring_up $PROXIES

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
note_exited
if [[ " $TESTS " == *" idle "* ]]; then
	log "idle: $IDLE_CONNS connections x $REPEAT per proxy (fresh proxy each time)"
	for r in $(seq "$REPEAT"); do
		for p in "${ACTIVE[@]}"; do
			[ -n "${NA[$p]:-}" ] && continue
			measure_idle "$p" "$r"
		done
	done
fi
stop_all

# ---- report ----

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
	echo "moat bench - $(machine)"
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
	noisy_warning
	for p in moatd haproxy nginx; do
		[ -n "${NA[$p]:-}" ] && echo "${LABEL[$p]}: n/a - ${NA[$p]}"
		[ -n "${NEG[$p]:-}" ] && echo "${LABEL[$p]}: negotiated ${NEG[$p]}"
		for t in $TESTS; do
			[ -z "${NA[$p]:-}" ] || continue
			v=$(runs "$t" "$p")
			case $v in "${REPEAT}/${REPEAT}" | 0/0) ;; *) echo "${LABEL[$p]}: $t: only $v runs valid" ;; esac
		done
	done
	results_listing
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
