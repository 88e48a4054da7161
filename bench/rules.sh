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

MOATD=${1:-}
[ -n "$MOATD" ] && case $MOATD in /*) ;; *) MOATD=$PWD/$MOATD ;; esac
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
MOATD=${MOATD:-$ROOT/build/release/moatd}
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
LG=$B/loadgen
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
declare -A PID=()  # running servers, by name
declare -A NA=()   # target -> why it has no figures
declare -A NEG=()  # target -> negotiated TLS parameters
LG_PIDS=() # loadgens running in the background

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

for t in $TARGETS; do
	[ -n "${PORT[$t]:-}" ] || { echo "rules.sh: unknown target $t" >&2; exit 2; }
done

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
	for p in "${LG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${LG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	LG_PIDS=()
	for n in "${!PID[@]}"; do stop_server "$n"; done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

REASON= # why the last start, sanity or wait_listen failed

wait_listen() { # NAME PORT LOGFILE: waits up to 30 s for the port (1,000 rules compile first)
	local name=$1 port=$2 logf=$3 i
	for i in $(seq 300); do
		if ! kill -0 "${PID[$name]}" 2>/dev/null; then
			wait "${PID[$name]}" 2>/dev/null
			REASON="exited at start: $(tail -n 3 "$logf" 2>/dev/null | tr '\n' ' ')"
			unset "PID[$name]"
			return 1
		fi
		listening "$port" && return 0
		sleep 0.1
	done
	REASON="not listening on 127.0.0.1:$port after 30 s"
	stop_server "$name"
	return 1
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

# ---- checks, build, limits, pinning ----

for t in openssl nginx cc ss pgrep curl python3; do
	command -v "$t" >/dev/null || { echo "rules.sh: $t is required" >&2; exit 1; }
done
mkdir -p "$PKI" "$CONF" "$LOGS" "$OUT" "$GEN"
rm -f "$LOGS"/* "$OUT"/*
cc -O2 -Wall -Wextra -Werror bench/loadgen.c -lssl -lcrypto -o "$LG" || exit 1

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

ulimit -n "$(ulimit -Hn)" 2>/dev/null
FD_LIMIT=$(ulimit -n)
[ "$FD_LIMIT" = unlimited ] && FD_LIMIT=1048576

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
	openssl req -new -key "$d/device.key" -subj "/CN=$DEVICE_CN" -out "$d/device.csr" ||
		return 1
	openssl x509 -req -in "$d/device.csr" -CA "$d/device-ca.crt" -CAkey "$d/device-ca.key" \
		-CAcreateserial -days 30 -extfile "$d/ext.cnf" -extensions device \
		-out "$d/device.crt" 2>/dev/null || return 1
	openssl verify -CAfile "$d/device-ca.crt" -purpose sslclient "$d/device.crt" >/dev/null &&
		openssl verify -CAfile "$d/server-ca.crt" -purpose sslserver "$d/server.crt" >/dev/null
}
make_pki || { echo "rules.sh: could not make the bench PKI" >&2; exit 1; }

# ---- configurations (as in run.sh) ----

mkdir -p "$B/origin/tmp"
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

nginx_conf() { # TARGET MODSEC-RULES-FILE-OR-EMPTY
	local t=$1 rules=$2
	mkdir -p "$B/$t/tmp"
	cat >"$CONF/$t.conf" <<EOF
${rules:+load_module $MODSEC_SO;}
worker_processes $WORKERS;
daemon off;
pid $B/$t/nginx.pid;
error_log $LOGS/$t-error.log warn;
worker_rlimit_nofile $FD_LIMIT;
events {
	worker_connections $((FD_LIMIT - 100));
}
http {
	access_log off;
	client_body_temp_path $B/$t/tmp;
	proxy_temp_path $B/$t/tmp;
	fastcgi_temp_path $B/$t/tmp;
	uwsgi_temp_path $B/$t/tmp;
	scgi_temp_path $B/$t/tmp;
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
		listen 127.0.0.1:${PORT[$t]} ssl backlog=4096;
		server_name $SNI;
		ssl_certificate $PKI/server.crt;
		ssl_certificate_key $PKI/server.key;
		ssl_client_certificate $PKI/device-ca.crt;
		ssl_verify_client on;
		ssl_protocols TLSv1.2 TLSv1.3;
		${rules:+modsecurity on;}
		${rules:+modsecurity_rules_file $rules;}
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

start_origin() {
	"${PIN_ORIGIN[@]}" nginx -p "$B/origin/" -e "$LOGS/origin-error.log" -c "$CONF/origin.conf" \
		>"$LOGS/origin.out" 2>&1 &
	PID[origin]=$!
	wait_listen origin "$ORIGIN_PORT" "$LOGS/origin.out"
}

start_target() { # TARGET: sets REASON on failure
	local t=$1 logf=$LOGS/$1.out
	if listening "${PORT[$t]}"; then
		REASON="port ${PORT[$t]} is already in use"
		return 1
	fi
	case $t in
	moatd-*)
		[ -x "$MOATD" ] || { REASON="$MOATD not found (not built yet)"; return 1; }
		if ! "$MOATD" -t -c "$CONF/$t.conf" >"$LOGS/$t-check.out" 2>&1; then
			REASON="configuration refused: $(head -n 3 "$LOGS/$t-check.out" | tr '\n' ' ')"
			return 1
		fi
		"${PIN_PROXY[@]}" "$MOATD" -c "$CONF/$t.conf" >>"$logf" 2>&1 &
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
		"${PIN_PROXY[@]}" nginx -p "$B/$t/" -e "$LOGS/$t-error.log" -c "$CONF/$t.conf" \
			>>"$logf" 2>&1 &
		;;
	esac
	PID[$t]=$!
	wait_listen "$t" "${PORT[$t]}" "$logf" || return 1
	sleep 0.3 # nginx: let the workers come up
}

proxy_pids() { descendants "${PID[$1]}"; }

alive() { [ -n "${PID[$1]:-}" ] && kill -0 "${PID[$1]}" 2>/dev/null; }

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
	LG_PIDS=()
	for i in "${!MIX[@]}"; do
		# shellcheck disable=SC2046
		"${PIN_LOAD[@]}" "$LG" -m rps -n "$n" -d "$d" -w "$w" $(tls_args "$t") "$@" \
			-u "${MIX[$i]}" >"$OUT/$tag-$i.kv" 2>"$LOGS/$tag-$i.txt" &
		pids+=($!)
		LG_PIDS+=($!)
	done
	for i in "${pids[@]}"; do wait "$i"; done
	LG_PIDS=()
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
	"${PIN_LOAD[@]}" "$LG" -m rps -n 1 -d 1 -w 0 -a "127.0.0.1:${PORT[$t]}" -s "$SNI" -V "$TLS" \
		>"$OUT/nocert-$t.kv" 2>"$LOGS/nocert-$t.txt"
	if [ "$(kv requests "$(grep '^mode=' "$OUT/nocert-$t.kv")")" != 0 ]; then
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
# Each appends "rps TARGET REPEAT key=value..." to $OUT/results.txt; ok=0 marks a run whose
# figures are not to be trusted (errors, non-2xx, server gone), with the reason in why=.

record() { echo "$*" >>"$OUT/results.txt"; }

busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $9}' /proc/stat; }
irq_ticks() { awk '/^cpu / {print $7 + $8}' /proc/stat; }
now_ns() { date +%s%N; }
HZ=$(getconf CLK_TCK)

# CPU accounting around one run, in % of one core over the run's wall time, as in run.sh: the
# server, the origin, loadgen, everything else on the machine ("other"), interrupt and softirq.
cpu_begin() { # TARGET
	A_PROXY_PIDS=$(proxy_pids "$1")
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
	CPU_LOADGEN=$(awk -v l="${1:-0}" -v s="$(((t1 - A_T0) / 1000000))" 'BEGIN {printf "%.0f", l / (s / 1000) * 100}')
}

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

if ! start_origin; then
	echo "rules.sh: the origin (nginx) did not start; see $LOGS/origin-error.log" >&2
	exit 1
fi

: >"$OUT/sanity-attacks.txt"
ACTIVE=()
for t in $TARGETS; do
	if start_target "$t" && sanity "$t"; then
		ACTIVE+=("$t")
		log "${LABEL[$t]} on 127.0.0.1:${PORT[$t]}: ready (${NEG[$t]})"
	else
		NA[$t]=$REASON
		stop_server "$t"
		log "${LABEL[$t]}: n/a: $REASON"
	fi
done
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
for t in "${ACTIVE[@]}"; do
	alive "$t" || { [ -z "${NA[$t]:-}" ] && NA[$t]="exited during the run: $(tail -n 2 "$LOGS/$t.out" | tr '\n' ' ')"; }
done

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
cleanup

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

median() {
	sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
fig() { # TARGET FIELD: median over the valid runs
	awk -v t="$1" -v f="$2" '$2 == t && / ok=1/ {for (i = 4; i <= NF; i++) {n = index($i, "="); if (substr($i, 1, n - 1) == f) print substr($i, n + 1)}}' \
		"$OUT/results.txt" 2>/dev/null | median
}
runs() { awk -v t="$1" '$2 == t {n++; if (/ ok=1/) v++} END {printf "%d/%d", v, n}' "$OUT/results.txt" 2>/dev/null; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a" || b + 0 <= 0) print "n/a"; else printf "%.2f", a / b}'; }
ratio3() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a" || b + 0 <= 0) print "n/a"; else printf "%.3f", a / b}'; }
round() { awk -v a="$1" -v d="${2:-0}" 'BEGIN {if (a == "n/a" || a == "") print "n/a"; else printf "%.*f", d, a}'; }
paired() { # A B FIELD: A/B for each repeat where both runs are valid
	awk -v a="$1" -v b="$2" -v f="$3" '/ ok=1/ && ($2 == a || $2 == b) {for (i = 4; i <= NF; i++) {n = index($i, "="); if (substr($i, 1, n - 1) == f) v[$2, $3] = substr($i, n + 1)}}
		END {for (r = 1; r <= 99; r++) if ((a, r) in v && (b, r) in v && v[b, r] > 0) s = s sprintf(" %.2f", v[a, r] / v[b, r]); print s == "" ? "n/a" : substr(s, 2)}' "$OUT/results.txt" 2>/dev/null
}
minus() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a") print "n/a"; else printf "%.1f", a - b}'; }

declare -A RPS=() US=()
for t in moatd-0 moatd-100 moatd-1000 nginx-0 modsec-100 modsec-1000; do
	RPS[$t]=n/a US[$t]=n/a
	[[ " ${ACTIVE[*]} " == *" $t "* ]] && [ -z "${NA[$t]:-}" ] || continue
	RPS[$t]=$(round "$(fig "$t" value)")
	US[$t]=$(round "$(fig "$t" us_per_op)" 1)
done

{
	echo "moat rules bench - $(date -u +%Y-%m-%d), $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $(uname -sr)"
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
		printf '%-36s %10s %11s us %10s %12s\n' "${LABEL[$t]}" "${RPS[$t]}" "${US[$t]}" "$vs" "$(runs "$t")"
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
		line+="  $t $(round "$(fig "$t" proxy_cpu)")/$(round "$(fig "$t" origin_cpu)")/$(round "$(fig "$t" loadgen_cpu)")/$(round "$(fig "$t" other_cpu)")/$(round "$(fig "$t" irq_cpu)")"
	done
	echo "CPU (median % of a core, server/origin/loadgen/other/irq):$line"
	under=""
	for t in "${ACTIVE[@]}"; do
		c=$(round "$(fig "$t" proxy_cpu)")
		[ "$c" = n/a ] && continue
		[ "$c" -lt $((90 * PROXY_CORES)) ] && under+=" $t ${c}%;"
	done
	[ -n "$under" ] && echo "NOTE: server below 90% of its $PROXY_CORES core(s):${under%;}. The limit was elsewhere (the load core, other processes): such a req/s figure is a lower bound, and the server CPU per request is the better comparison."
	noisy=$(awk '{for (i = 4; i <= NF; i++) if ($i ~ /^other_cpu=/) {split($i, a, "="); if (a[2] + 0 > 10) n++}} END {print n + 0}' "$OUT/results.txt" 2>/dev/null)
	[ "$noisy" -gt 0 ] && echo "WARNING: in $noisy runs other processes used more than 10% of a core: the machine was not quiet"
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
	echo
	echo "all runs ($OUT/results.txt):"
	sed 's/^/  /' "$OUT/results.txt" 2>/dev/null
} | tee "$OUT/summary.txt"
