#!/usr/bin/env bash
# bench/rules.sh MOATD - the cost of virtual patches (issue 4, "Benchmark").
#
# 1. moatd keep-alive requests/s under a realistic benign request mix with 0, 100 and 1,000
#    generated virtual patches (bench/rules/gen.py), none of which matches the traffic;
#    target: 1,000 rules cost at most 10% of the 0-rule rate.
# 2. The same 100 patches as ModSecurity SecRules in nginx + libnginx-mod-http-modsecurity
#    (SecRuleEngine On, those rules only, no CRS), same mTLS termination, origin and traffic;
#    target: moatd at least 5 times nginx + ModSecurity's requests/s. nginx without
#    ModSecurity and nginx + ModSecurity with the 1,000 rules are measured for context.
# 3. rules_eval_bench: nanoseconds per request to evaluate the 100 and 1,000 rules.
# Every server runs at once, each on its own port, pinned to the proxy core; only one is under
# load at a time, and the repeats are interleaved. bench/README.md ("Rules") explains the
# method.
#
# Environment (defaults in brackets):
#   DURATION [10]   seconds per measurement     REPEAT [3]       runs per measurement
#   WORKERS [1]     moatd workers, nginx worker_processes        WARMUP [1] unmeasured seconds
#   RPS_CONNS [64]  keep-alive connections, spread evenly over the requests of the mix
#   TLS [1.3]       1.2 | 1.3                   PORT_BASE [24600]
#   TARGETS ["moatd-0 moatd-100 moatd-1000 nginx-0 modsec-100 modsec-1000"]
#   MICRO [1]       1: run rules_eval_bench     MICRO_EVALS [200000] MICRO_RUNS [7]
#   PERF [1]        1: then profile moatd with 0, 100 and 1,000 rules under the same load (perf,
#                   if installed); PERF_KEEP=1 keeps the perf.data files (about 50 MB each)
#   ORIGIN_CPU [the load core]                  NO_PIN [0]       1: do not pin anything
set -uo pipefail # no -e: one server failing must not end the run
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

enter_tree "${1:-}"
LIBMOAT=$(dirname "$MOATD")/libmoat.a

DURATION=${DURATION:-10}
REPEAT=${REPEAT:-3}
WORKERS=${WORKERS:-1}
WARMUP=${WARMUP:-1}
RPS_CONNS=${RPS_CONNS:-64}
TLS=${TLS:-1.3}
PORT_BASE=${PORT_BASE:-24600}
TARGETS=${TARGETS:-moatd-0 moatd-100 moatd-1000 nginx-0 modsec-100 modsec-1000}
MICRO=${MICRO:-1}
MICRO_EVALS=${MICRO_EVALS:-200000}
MICRO_RUNS=${MICRO_RUNS:-7}
PERF=${PERF:-1}
PERF_KEEP=${PERF_KEEP:-0}
NO_PIN=${NO_PIN:-0}
MODSEC_SO=${MODSEC_SO:-/usr/share/nginx/modules/ngx_http_modsecurity_module.so}

B=$ROOT/build/bench/rules
PKI=$B/pki
CONF=$B/conf
LOGS=$B/logs
OUT=$B/out
GEN=$B/gen
CLIENT=$B/loadgen
MB=$B/rules_eval_bench
SNI=bench.moat.test
DEVICE_CN=bench-device-0001
ORIGIN_PORT=$((PORT_BASE + 80))
declare -A PORT=([moatd-0]=$((PORT_BASE + 41)) [moatd-100]=$((PORT_BASE + 42))
	[moatd-1000]=$((PORT_BASE + 43)) [nginx-0]=$((PORT_BASE + 50))
	[modsec-100]=$((PORT_BASE + 51)) [modsec-1000]=$((PORT_BASE + 52)))
declare -A LABEL=([moatd-0]="moatd, no rules" [moatd-100]="moatd, 100 rules"
	[moatd-1000]="moatd, 1,000 rules" [nginx-0]="nginx, no ModSecurity"
	[modsec-100]="nginx + ModSecurity, 100 rules" [modsec-1000]="nginx + ModSecurity, 1,000 rules"
	[origin]=origin)
LISTEN_TIMEOUT=30  # for wait_listen: moatd compiles 1,000 rules before it listens

for t in $TARGETS; do
	[ -n "${PORT[$t]:-}" ] || { echo "rules.sh: unknown target $t" >&2; exit 2; }
done

trap stop_all EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- checks, build, limits, pinning ----

require openssl nginx cc ss pgrep curl python3
mkdir -p "$PKI" "$CONF" "$LOGS" "$OUT" "$GEN"
rm -f "$LOGS"/* "$OUT"/*
build_client loadgen "$CLIENT" || exit 1

# the rule sets, traffic and attacks, generated afresh; the committed copies in bench/rules/
# are for reading and must be the same
rm -f "$GEN"/*
python3 bench/rules/gen.py "$GEN" 100 1000 || { echo "rules.sh: gen.py failed" >&2; exit 1; }
ATTACKS_100=$GEN/attacks-first-100.txt
awk -F'\t' '$1 ~ /^vp-/ && substr($1, 4) + 0 <= 100' "$GEN/attacks.txt" >"$ATTACKS_100"
GEN_SAME=yes
for f in "$GEN"/*; do
	[ "$f" = "$ATTACKS_100" ] && continue
	cmp -s "$f" "bench/rules/$(basename "$f")" || GEN_SAME="no ($(basename "$f") differs from bench/rules/; regenerate them with: python3 bench/rules/gen.py bench/rules)"
done

# moatd and libmoat.a are copied at the start, so that a tree rebuilt during the run does not
# mix builds (the microbenchmark links the copy of libmoat.a)
if [ -x "$MOATD" ]; then
	cp "$MOATD" "$B/moatd.bin" && MOATD_SRC=$MOATD && MOATD=$B/moatd.bin
	[ -f "$LIBMOAT" ] && cp "$LIBMOAT" "$B/libmoat.a" && LIBMOAT=$B/libmoat.a
fi
MOATD_SRC=${MOATD_SRC:-$MOATD}
# the microbenchmark, built now against the same libmoat.a and headers
MB_OK=0
# shellcheck disable=SC2046
[ "$MICRO" = 1 ] && [ -f "$LIBMOAT" ] &&
	cc -O2 -Isrc bench/rules_eval_bench.c "$LIBMOAT" \
		$(pkg-config --libs openssl libuv inih jansson libpcre2-8 libhs) -lpthread -lm \
		-o "$MB" 2>"$LOGS/rules_eval_bench-build.txt" && MB_OK=1
MOATD_SHA=$(sha256sum "$MOATD" 2>/dev/null | cut -c1-12)
MOATD_BUILT=$(date -u -r "$MOATD_SRC" +%H:%M:%S 2>/dev/null)

raise_fd_limit
pin_cpus loadgen

# ---- the request mix ----
# gen.py's requests.txt: target, then header lines, tab-separated. loadgen sends
# "GET <-u> HTTP/1.1\r\nHost: ...\r\nUser-Agent: moat-loadgen\r\n\r\n", so -u carries the
# target, " HTTP/1.1", the header lines, and a last "X-Bench:" that takes loadgen's " HTTP/1.1"
# as its value. One loadgen process per request of the mix, RPS_CONNS / (number of requests)
# connections each, all on the load CPU.

MIX=()
while IFS= read -r line; do
	case $line in '#'* | '') continue ;; esac
	IFS=$'\t' read -r -a f <<<"$line"
	u="${f[0]} HTTP/1.1"$'\r\n'
	for h in "${f[@]:1}"; do u+="$h"$'\r\n'; done
	MIX+=("${u}X-Bench:")
done <"$GEN/requests.txt"
NMIX=${#MIX[@]}
CONNS_PER=$((RPS_CONNS / NMIX))
[ "$CONNS_PER" -ge 1 ] || CONNS_PER=1

# ---- PKI: ECDSA P-256, made with the openssl CLI (lib.sh) ----

make_pki || { echo "rules.sh: could not make the bench PKI" >&2; exit 1; }

# ---- configurations (as in run.sh) ----

origin_conf "$CONF/origin.conf" 4096 "$FD_LIMIT" 4096

moatd_conf() { # TARGET RULES-FILE-OR-EMPTY
	local t=$1 rules=$2
	mkdir -p "$B/$t-data"
	cat >"$CONF/$t.conf" <<EOF
; moatd: mTLS termination in front of the bench origin, with ${rules:+the rules of $rules}${rules:-no rules}.
[moat]
workers = $WORKERS
data_dir = $B/$t-data
error_log = $LOGS/$t-error.log
log_level = warn
security_log = $LOGS/$t-security.log
handshake_timeout = 10s
idle_timeout = 600s
request_header_timeout = 600s
max_connections = $((FD_LIMIT - 500))
max_connections_per_ip = 0
origin_keepalive = 64
; three moatd run at once: none opens the admin API (by default on 127.0.0.1:9900)
admin_listen = off

[listener bench]
bind = 127.0.0.1:${PORT[$t]}
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
devices = $GEN/devices.ini
${rules:+rules = $rules}
EOF
}

for t in $TARGETS; do
	case $t in
	moatd-0) moatd_conf "$t" "" ;;
	moatd-*) moatd_conf "$t" "$GEN/moat-${t#moatd-}.rules" ;;
	nginx-0) nginx_conf "$t" "" ;;
	modsec-*) nginx_conf "$t" "$GEN/modsec-${t#modsec-}.conf" ;;
	esac
done

# ---- servers ----

start_proxy() { # TARGET: sets REASON on failure
	local t=$1
	port_free "$t" || return 1
	case $t in
	moatd-*)
		moatd_conf_ok "$t" "$MOATD" 3 || return 1
		launch_proxy "$t" "$MOATD" -c "$CONF/$t.conf"
		;;
	nginx-* | modsec-*)
		if [ "$t" != nginx-0 ] && [ ! -f "$MODSEC_SO" ]; then
			REASON="$MODSEC_SO not found (apt-get install libnginx-mod-http-modsecurity)"
			return 1
		fi
		if ! nginx -t -p "$B/$t/" -e "$LOGS/$t-error.log" -c "$CONF/$t.conf" >"$LOGS/$t-check.out" 2>&1; then
			REASON="configuration refused: $(grep -m 2 -E 'emerg|error|ModSecurity' "$LOGS/$t-check.out" | tr '\n' ' ')"
			return 1
		fi
		launch_proxy "$t" nginx -p "$B/$t/" -e "$LOGS/$t-error.log" -c "$CONF/$t.conf"
		;;
	esac
}

tls_args() { # TARGET
	echo "-a 127.0.0.1:${PORT[$1]} -s $SNI -V $TLS -c $PKI/device.crt -k $PKI/device.key"
}

# ---- the mix: one loadgen per request, all at once ----
# Sets MIX_LINE to the sums over the processes (rps, requests, total, non2xx, errors,
# reconnects, resumed, cpu_s) and MIX_BAD to the first problem seen, if any.

MIX_LINE="" MIX_BAD=""
run_mix() { # TAG CONNS-PER-REQUEST DURATION WARMUP TARGET [EXTRA-LOADGEN-ARGS...]
	local tag=$1 n=$2 d=$3 w=$4 t=$5 i pids=() f line
	shift 5
	CLIENT_PIDS=()
	for i in "${!MIX[@]}"; do
		# shellcheck disable=SC2046
		"${PIN_LOAD[@]}" "$CLIENT" -m rps -n "$n" -d "$d" -w "$w" $(tls_args "$t") "$@" \
			-u "${MIX[$i]}" >"$OUT/$tag-$i.kv" 2>"$LOGS/$tag-$i.txt" &
		pids+=($!)
		CLIENT_PIDS+=($!)
	done
	for i in "${pids[@]}"; do wait "$i"; done
	CLIENT_PIDS=()
	MIX_BAD=
	for i in "${!MIX[@]}"; do
		line=$(grep '^mode=' "$OUT/$tag-$i.kv" 2>/dev/null | tail -n 1)
		if [ -z "$line" ]; then
			MIX_BAD="loadgen_${i}_gave_no_result:$(grep -m1 'loadgen:' "$LOGS/$tag-$i.txt" | tr ' ' '_')"
			continue
		fi
		echo "$line"
	done >"$OUT/$tag.lines"
	MIX_LINE=$(awk '{for (i = 1; i <= NF; i++) {n = index($i, "="); k = substr($i, 1, n - 1); v = substr($i, n + 1);
		if (k ~ /^(rps|requests|total|non2xx|errors|reconnects|resumed|cpu_s|fatal)$/) s[k] += v}}
		END {printf "procs=%d", NR; for (k in s) printf " %s=%s", k, s[k]; printf "\n"}' "$OUT/$tag.lines")
	[ "$(kv procs "$MIX_LINE")" = "$NMIX" ] || MIX_BAD=${MIX_BAD:-only_$(kv procs "$MIX_LINE")_of_${NMIX}_loadgens_reported}
}

# ---- sanity checks before measuring ----
# Every request of the mix gets a 2xx with the device certificate (and the server certificate
# verified against the server CA); a client without a certificate gets nothing; and the engines
# with rules block attacks, sent with curl: with 100 rules, every attack of gen.py's
# attacks.txt on the first 100 rules; with 1,000, one attack of each kind (sanity.txt). The rule
# that blocked each is read from moatd's answer ("rule") and from nginx's error log for
# ModSecurity (msg), and the two engines must have blocked each attack with the same rule.

declare -A BLOCKED=() # target -> "rule rule ..." (the rule that blocked each sanity attack)

curl_to() { # TARGET TARGET-PATH HEADER...: prints the status; the body in $OUT/curl.body
	local t=$1 path=$2 hs=() h
	shift 2
	for h in "$@"; do hs+=(-H "$h"); done
	curl -sS -g --path-as-is --max-time 5 --cacert "$PKI/server-ca.crt" --cert "$PKI/device.crt" \
		--key "$PKI/device.key" --resolve "$SNI:${PORT[$t]}:127.0.0.1" "${hs[@]}" \
		-o "$OUT/curl.body" -w '%{http_code}' "https://$SNI:${PORT[$t]}$path" 2>>"$LOGS/curl.txt"
}

sanity() { # TARGET: sets REASON on failure
	local t=$1 line code rid got nblocked=0 nsent=0 before list=$GEN/sanity.txt
	case $t in *-100) list=$ATTACKS_100 ;; esac
	run_mix "sanity-$t" 1 1 0 "$t" -C "$PKI/server-ca.crt"
	line=$MIX_LINE
	if [ -n "$MIX_BAD" ] || [ "$(kv errors "$line")" != 0 ] || [ "$(kv non2xx "$line")" != 0 ] ||
		[ "$(kv requests "$line")" -lt "$NMIX" ]; then
		REASON="the request mix did not get only 2xx answers: ${MIX_BAD:-$line}; $(grep -h -m1 'loadgen:' "$LOGS"/sanity-"$t"-*.txt | head -n 1)"
		return 1
	fi
	NEG[$t]="$(sed -n 's/.*(\(TLS[^ ]* [^ ]* [^ ,]*\),.*/\1/p' "$LOGS/sanity-$t-0.txt" | head -n 1)"
	run_client "nocert-$t" -m rps -n 1 -d 1 -w 0 -a "127.0.0.1:${PORT[$t]}" -s "$SNI" -V "$TLS"
	if [ "$(kv requests "$LINE")" != 0 ]; then
		REASON="a client without a certificate was served: mTLS is not enforced"
		return 1
	fi
	BLOCKED[$t]=""
	while IFS=$'\t' read -r -a f; do
		case ${f[0]} in '#'* | '') continue ;; esac
		rid=${f[0]}
		nsent=$((nsent + 1))
		before=$( { wc -l <"$LOGS/$t-error.log"; } 2>/dev/null || echo 0)
		code=$(curl_to "$t" "${f[1]}" "${f[@]:2}")
		got=-
		case $t in
		moatd-*)
			[ "$code" = 403 ] && got=$(sed -n 's/.*"rule":"\([^"]*\)".*/\1/p' "$OUT/curl.body")
			;;
		modsec-*)
			sleep 0.1
			[ "$code" = 403 ] && got=$(tail -n +"$((before + 1))" "$LOGS/$t-error.log" |
				sed -n "s/.*\[msg \"\([^\"]*\)\"\].*/\1/p" | tail -n 1)
			;;
		esac
		echo "$t $rid ${f[1]} -> $code ${got:--}" >>"$OUT/sanity-attacks.txt"
		BLOCKED[$t]+="$got "
		[ "$code" = 403 ] && [ -n "$got" ] && [ "$got" != - ] && nblocked=$((nblocked + 1))
		case $t in
		moatd-0 | nginx-0)
			[ "$code" = 200 ] || log "  note: ${LABEL[$t]} answered $code to the attack on $rid (${f[1]})"
			;;
		*)
			if [ "$code" != 403 ] || [ -z "$got" ] || [ "$got" = - ]; then
				REASON="the attack on $rid (${f[1]}) was not blocked: status $code"
				return 1
			fi
			;;
		esac
	done <"$list"
	case $t in
	moatd-0 | nginx-0) ;;
	*) log "  ${LABEL[$t]}: $nblocked of $nsent attacks blocked ($(basename "$list"))" ;;
	esac
}

# ---- measurements ----
# Each records "rps TARGET REPEAT key=value..." (lib.sh's record); the CPU accounting, as in
# run.sh, is lib.sh's cpu_begin and cpu_end.

measure() { # TARGET REPEAT
	local t=$1 r=$2 line ok=1 why="" us_op
	cpu_begin "$t"
	run_mix "rps-$t-$r" "$CONNS_PER" "$DURATION" "$WARMUP" "$t"
	line=$MIX_LINE
	cpu_end "$(kv cpu_s "$line")"
	if [ -n "$MIX_BAD" ]; then
		ok=0 why=$MIX_BAD
	elif [ "$(kv errors "$line")" != 0 ] || [ "$(kv non2xx "$line")" != 0 ] ||
		[ "$(kv resumed "$line")" != 0 ]; then
		ok=0 why="errors=$(kv errors "$line"),non2xx=$(kv non2xx "$line"),resumed=$(kv resumed "$line")"
	fi
	alive "$t" || { ok=0 why="server_exited"; }
	us_op=$(awk -v c="$CPU_PROXY_S" -v n="$(kv total "$line")" 'BEGIN {if (n > 0) printf "%.1f", c / n * 1e6; else print "n/a"}')
	record "rps $t $r value=$(awk -v v="$(kv rps "$line")" 'BEGIN {printf "%.1f", v}') us_per_op=$us_op proxy_cpu=$CPU_PROXY origin_cpu=$CPU_ORIGIN loadgen_cpu=$CPU_LOADGEN other_cpu=$CPU_OTHER irq_cpu=$CPU_IRQ total=$(kv total "$line") ok=$ok why=$why"
	log "  ${LABEL[$t]} #$r: $(kv rps "$line") req/s, $us_op us server CPU each (CPU: server ${CPU_PROXY}%, origin ${CPU_ORIGIN}%, loadgen ${CPU_LOADGEN}%, other ${CPU_OTHER}%, irq ${CPU_IRQ}%)${why:+ [$why]}"
}

# ---- run ----

log "moat rules bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $NCPU CPUs, $(uname -sr)"
log "DURATION=$DURATION REPEAT=$REPEAT WORKERS=$WORKERS TLS=$TLS RPS_CONNS=$RPS_CONNS ($NMIX requests x $CONNS_PER connections)"
log "pinning: $PINNING"
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before starting: $LOADAVG_START"
[ "$GEN_SAME" = yes ] || log "warning: generated rule sets: $GEN_SAME"

if ! start_nginx_origin; then
	echo "rules.sh: the origin (nginx) did not start; see $LOGS/origin-error.log" >&2
	exit 1
fi

: >"$OUT/sanity-attacks.txt"
# shellcheck disable=SC2086
bring_up $TARGETS
# moatd and ModSecurity must agree on which rule blocks each attack
AGREE=""
agree() { # MOATD-TARGET MODSEC-TARGET
	local a=${BLOCKED[$1]:-} b=${BLOCKED[$2]:-} n same=0 diffs="" i
	[ -n "$a" ] && [ -n "$b" ] || return 0
	read -r -a x <<<"$a"
	read -r -a y <<<"$b"
	n=${#x[@]}
	for i in "${!x[@]}"; do
		if [ "${x[$i]}" = "${y[$i]:-}" ] && [ "${x[$i]}" != - ]; then
			same=$((same + 1))
		else
			diffs+=" ${x[$i]}/${y[$i]:-}"
		fi
	done
	AGREE+="${AGREE:+; }$(echo "${LABEL[$1]}" | sed 's/moatd, //') $same of $n attacks blocked by the same rule in both${diffs:+ (differ, moatd/ModSecurity:$diffs)}"
}
agree moatd-100 modsec-100
agree moatd-1000 modsec-1000
[ -n "$AGREE" ] && log "moatd and ModSecurity: $AGREE"

log "requests/s: ${DURATION}s x $REPEAT per server, interleaved"
for r in $(seq "$REPEAT"); do
	for t in "${ACTIVE[@]}"; do
		alive "$t" && measure "$t" "$r"
	done
done
note_exited

# ---- profile (PERF=1): where moatd's time goes, with 0, 100 and 1,000 rules ----
# perf samples moatd's CPU time (-F 999, DWARF call chains) under the same load. The share of
# the rules is the inclusive time of the three calls moatd makes for them on every request
# (src/http/proxy.c apply_rules, inlined): moat_worker_rules_scratch (sizing the scratch),
# moat_devices_find (the device record) and moat_rules_eval. Being a share of one run's own
# samples, it does not depend on how fast the machine was during that run.
PERF_DONE=()
declare -A PERF_REQS=() PERF_SHARE=()
[ "$PERF" = 1 ] && ! command -v perf >/dev/null && log "perf: not installed (apt-get install linux-perf): no profile"
if [ "$PERF" = 1 ] && command -v perf >/dev/null; then
	for t in moatd-0 moatd-100 moatd-1000; do
		alive "$t" || continue
		log "perf: ${LABEL[$t]}, ${DURATION}s under the same load"
		perf record -F 999 --call-graph dwarf -o "$OUT/perf-$t.data" -p "${PID[$t]}" \
			>"$LOGS/perf-record-$t.txt" 2>&1 &
		perfpid=$!
		sleep 0.5
		run_mix "perf-$t" "$CONNS_PER" "$DURATION" 0 "$t"
		kill -INT "$perfpid" 2>/dev/null
		wait "$perfpid" 2>/dev/null
		perf report -i "$OUT/perf-$t.data" --no-children --percent-limit 0.5 --stdio \
			-g none --sort dso,symbol >"$OUT/perf-$t.txt" 2>/dev/null
		perf report -i "$OUT/perf-$t.data" --children --percent-limit 0.05 --stdio \
			-g none --sort symbol >"$OUT/perf-$t-children.txt" 2>/dev/null
		PERF_SHARE[$t]=$(awk '($4 == "moat_rules_eval" || $4 == "moat_worker_rules_scratch" ||
			$4 == "moat_devices_find") && !seen[$4]++ {gsub("%", "", $1); s += $1
			d = d sprintf(" %s %s%%,", $4, $1)}
			END {printf "%.1f%%%s", s, d ? " (" substr(d, 2, length(d) - 2) ")" : ""}' "$OUT/perf-$t-children.txt")
		PERF_DONE+=("$t")
		PERF_REQS[$t]=$(kv total "$MIX_LINE")
		[ "$PERF_KEEP" = 1 ] || rm -f "$OUT/perf-$t.data"
	done
fi
stop_all

# ---- microbenchmark ----
MICRO_OUT=
if [ "$MICRO" = 1 ]; then
	if [ "$MB_OK" = 1 ]; then
		log "rules_eval_bench: $MICRO_RUNS runs of $MICRO_EVALS evaluations (pinned like the proxy)"
		"${PIN_PROXY[@]}" "$MB" -n "$MICRO_EVALS" -r "$MICRO_RUNS" -a "$GEN/attacks.txt" \
			"$GEN/requests.txt" "$GEN/moat-100.rules" "$GEN/moat-1000.rules" \
			>"$OUT/micro.txt" 2>"$LOGS/micro.txt"
		MICRO_STATUS=$?
		MICRO_OUT=$OUT/micro.txt
		[ "$MICRO_STATUS" = 0 ] || log "rules_eval_bench failed ($MICRO_STATUS): $(tail -n 3 "$LOGS/micro.txt" | tr '\n' ' ')"
	else
		log "rules_eval_bench: not run: it could not be built against $LIBMOAT (see $LOGS/rules_eval_bench-build.txt)"
	fi
fi

# ---- report ----

# median, fig, runs, ratio, round and minus: lib.sh
ratio3() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a" || b + 0 <= 0) print "n/a"; else printf "%.3f", a / b}'; }
paired() { # A B FIELD: A/B for each repeat where both runs are valid
	awk -v a="$1" -v b="$2" -v f="$3" '/ ok=1/ && ($2 == a || $2 == b) {for (i = 4; i <= NF; i++) {n = index($i, "="); if (substr($i, 1, n - 1) == f) v[$2, $3] = substr($i, n + 1)}}
		END {for (r = 1; r <= 99; r++) if ((a, r) in v && (b, r) in v && v[b, r] > 0) s = s sprintf(" %.2f", v[a, r] / v[b, r]); print s == "" ? "n/a" : substr(s, 2)}' "$OUT/results.txt" 2>/dev/null
}

declare -A RPS=() US=()
for t in moatd-0 moatd-100 moatd-1000 nginx-0 modsec-100 modsec-1000; do
	RPS[$t]=n/a US[$t]=n/a
	[[ " ${ACTIVE[*]} " == *" $t "* ]] && [ -z "${NA[$t]:-}" ] || continue
	RPS[$t]=$(round "$(fig rps "$t" value)")
	US[$t]=$(round "$(fig rps "$t" us_per_op)" 1)
done

{
	echo "moat rules bench - $(machine)"
	echo "WORKERS=$WORKERS DURATION=${DURATION}s REPEAT=$REPEAT TLS $TLS; median of $REPEAT runs; $RPS_CONNS keep-alive connections: $NMIX requests in the mix x $CONNS_PER"
	echo "pinning: $PINNING; load average at the start: $LOADAVG_START"
	echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), libmodsecurity $(dpkg-query -W -f '${Version}' libmodsecurity3 2>/dev/null || echo '?'), $(openssl version | awk '{print $1, $2}')$([ -x "$MOATD" ] && echo ", $("$MOATD" -v 2>&1 | head -n 1)")"
	echo "moatd: $MOATD_SRC, sha256 $MOATD_SHA, built $MOATD_BUILT UTC (copied at the start, with its libmoat.a)"
	echo "rule sets: bench/rules/gen.py (the same as the committed copies: $GEN_SAME)"
	echo
	printf '%-36s %10s %14s %10s %12s\n' "" "req/s" "server CPU/req" "vs base" "valid runs"
	for t in moatd-0 moatd-100 moatd-1000 nginx-0 modsec-100 modsec-1000; do
		[[ " $TARGETS " == *" $t "* ]] || continue
		case $t in moatd-*) base=moatd-0 ;; *) base=nginx-0 ;; esac
		vs=$(ratio "${RPS[$t]}" "${RPS[$base]}")
		[ "$t" = "$base" ] && vs=1.00
		printf '%-36s %10s %11s us %10s %12s\n' "${LABEL[$t]}" "${RPS[$t]}" "${US[$t]}" "$vs" "$(runs rps "$t")"
	done
	echo
	# three decimals, and the verdicts on them: 0.898 is not 0.90
	r1000=$(ratio3 "${RPS[moatd-1000]}" "${RPS[moatd-0]}")
	r100=$(ratio3 "${RPS[moatd-100]}" "${RPS[moatd-0]}")
	rms=$(ratio "${RPS[moatd-100]}" "${RPS[modsec-100]}")
	rms1000=$(ratio "${RPS[moatd-1000]}" "${RPS[modsec-1000]}")
	cpu1000=$(ratio3 "${US[moatd-0]}" "${US[moatd-1000]}")
	verdict() { awk -v r="$1" -v m="$2" 'BEGIN {if (r == "n/a") print "n/a"; else if (r + 0 >= m) print "met"; else print "MISSED"}'; }
	echo "moatd 1,000 rules / 0 rules, req/s:           $r1000  (target >= 0.900: $(verdict "$r1000" 0.90))"
	echo "moatd 100 rules / 0 rules, req/s:             $r100"
	echo "  the same within each repeat (runs next to each other), 1,000/0: $(paired moatd-1000 moatd-0 value); 100/0: $(paired moatd-100 moatd-0 value)"
	echo "  moatd CPU per request within each repeat, 0/1,000: $(paired moatd-0 moatd-1000 us_per_op); 0/100: $(paired moatd-0 moatd-100 us_per_op)"
	echo "moatd 0 / 1,000 rules, server CPU per request: $cpu1000  (the same target on the cost side: $(verdict "$cpu1000" 0.90)); the 1,000 rules add $(minus "${US[moatd-1000]}" "${US[moatd-0]}") us of moatd CPU per request, 100 rules $(minus "${US[moatd-100]}" "${US[moatd-0]}") us"
	echo "moatd / nginx+ModSecurity, 100 rules, req/s:  $rms   (target >= 5: $(verdict "$rms" 5))"
	echo "moatd / nginx+ModSecurity, 1,000 rules:       $rms1000"
	echo "nginx + ModSecurity: 100 rules add $(minus "${US[modsec-100]}" "${US[nginx-0]}") us of nginx CPU per request, 1,000 rules $(minus "${US[modsec-1000]}" "${US[nginx-0]}") us"
	[ -n "$AGREE" ] && echo "attacks blocked with a 403 by the same rule in moatd and in ModSecurity: $AGREE"
	echo
	line=""
	for t in "${ACTIVE[@]}"; do
		line+="  $t $(round "$(fig rps "$t" proxy_cpu)")/$(round "$(fig rps "$t" origin_cpu)")/$(round "$(fig rps "$t" loadgen_cpu)")/$(round "$(fig rps "$t" other_cpu)")/$(round "$(fig rps "$t" irq_cpu)")"
	done
	echo "CPU (median % of a core, server/origin/loadgen/other/irq):$line"
	under=""
	for t in "${ACTIVE[@]}"; do
		c=$(round "$(fig rps "$t" proxy_cpu)")
		[ "$c" = n/a ] && continue
		[ "$c" -lt $((90 * PROXY_CORES)) ] && under+=" $t ${c}%;"
	done
	[ -n "$under" ] && echo "NOTE: server below 90% of its $PROXY_CORES core(s):${under%;}. The limit was elsewhere (the load core, other processes): such a req/s figure is a lower bound, and the server CPU per request is the better comparison."
	noisy_warning
	for t in $TARGETS; do
		[ -n "${NA[$t]:-}" ] && echo "${LABEL[$t]}: n/a - ${NA[$t]}"
	done
	if [ -n "$MICRO_OUT" ]; then
		echo
		echo "rules_eval_bench (one thread on the proxy core, the $NMIX requests of the mix round-robin; median of $MICRO_RUNS runs of $MICRO_EVALS evaluations):"
		while read -r l; do
			printf '  %5s rules: %6s ns per request (fastest run %s); %s ns with cold caches (1 MiB read before each evaluation); %s ns without the prefilter; compiled in %s ms; %s values, %s prefilter databases\n' \
				"$(kv rules "$l")" "$(kv ns_median "$l")" "$(kv ns_min "$l")" "$(kv cold_ns_median "$l")" \
				"$(kv noprefilter_ns_median "$l")" "$(kv compile_ms "$l")" "$(kv values "$l")" "$(kv databases "$l")"
		done <"$MICRO_OUT"
		grep -h 'checked:' "$LOGS/micro.txt" | sed 's/^ */  /'
	fi
	if [ "${#PERF_DONE[@]}" -gt 0 ]; then
		echo
		echo "perf: share of moatd's CPU time spent on the rules (inclusive, same run):"
		for t in "${PERF_DONE[@]}"; do
			printf '  %-20s %s\n' "${LABEL[$t]}:" "${PERF_SHARE[$t]}"
		done
		if [ -n "${PERF_SHARE[moatd-1000]:-}" ]; then
			sh1000=${PERF_SHARE[moatd-1000]%%%*}
			echo "  1,000 rules: $sh1000% of moatd's CPU (target <= 10%: $(awk -v v="$sh1000" 'BEGIN {print (v + 0 <= 10) ? "met" : "MISSED"}')); as a rate, $(awk -v v="$sh1000" 'BEGIN {printf "%.3f", 1 - v / 100}') of the 0-rule rate if nothing else changed"
		fi
	fi
	for t in "${PERF_DONE[@]}"; do
		echo
		echo "perf, ${LABEL[$t]}, ${PERF_REQS[$t]} requests (self time, entries above 0.5%; $OUT/perf-$t.txt):"
		grep -E '^ +[0-9]' "$OUT/perf-$t.txt" | head -n 25
	done
	results_listing
} | tee "$OUT/summary.txt"
