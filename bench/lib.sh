# bench/lib.sh - the helpers that run.sh, tcp.sh, rules.sh and api.sh share; each sources it
# first (`. "$(dirname "$0")/lib.sh"`) and the functions read the script's own variables when
# they are called: B, CONF, LOGS, OUT, PKI, SNI, ORIGIN_PORT, the arrays PORT, PID, LABEL, NA
# and NEG, CLIENT (the loadgen or tcpload binary), and the script's start_proxy and sanity.
#
#   messages, records   log, kv, record, ME
#   processes           descendants, stop_server, stop_all, listening, wait_listen, port_free,
#                       launch_origin, launch_proxy, moatd_conf_ok, proxy_pids, alive,
#                       bring_up, note_exited
#   set-up              enter_tree, require, build_client, raise_fd_limit, pin_cpus, make_pki,
#                       origin_conf, nginx_conf, start_nginx_origin
#   load                run_client, measure_idle_rss
#   /proc accounting    rss_kb, cpu_ticks, cpu_begin, cpu_end
#   report              median, fig, runs, ratio, round, minus, noisy_warning, machine,
#                       results_listing
# shellcheck shell=bash disable=SC2034 # what it sets is read by the scripts

declare -A PORT=() LABEL=() # the servers' ports and names in the report, set by the scripts
declare -A PID=()  # running servers, by name
declare -A NA=()   # server -> why it has no figures
declare -A NEG=()  # server -> negotiated TLS parameters
ME=${0##*/}        # the script's name, for its messages
LISTEN_TIMEOUT=10  # seconds wait_listen waits for a server's port
CLIENT_PIDS=()     # clients running in the background, stopped by stop_all
CUR_CLIENT=        # the client run_client is waiting for
LINE=              # the result line of the last run_client
REASON=            # why the last start, sanity check or wait_listen failed
HZ=$(getconf CLK_TCK)

# The moatd to measure: MOATD from the first argument (relative to where the script was
# started), by default build/release/moatd; ROOT, the tree, becomes the working directory.
enter_tree() { # [MOATD]
	MOATD=${1:-}
	[ -n "$MOATD" ] && case $MOATD in /*) ;; *) MOATD=$PWD/$MOATD ;; esac
	cd "$(dirname "$0")/.." || exit 1
	ROOT=$PWD
	MOATD=${MOATD:-$ROOT/build/release/moatd}
}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

kv() { # KEY LINE: the value of KEY in a key=value line
	awk -v k="$1" '{for (i = 1; i <= NF; i++) {n = index($i, "="); if (substr($i, 1, n - 1) == k) {print substr($i, n + 1); exit}}}' <<<"$2"
}

# Each measurement appends a line "TEST NAME REPEAT key=value..." to $OUT/results.txt; ok=0
# marks a run whose figures are not to be trusted, with the reason in why=.
record() { echo "$*" >>"$OUT/results.txt"; }

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

stop_all() { # the clients, then every server; also the EXIT trap
	local p n
	trap - EXIT INT TERM
	for p in "${CLIENT_PIDS[@]}" $CUR_CLIENT; do kill -TERM "$p" 2>/dev/null; done
	for p in "${CLIENT_PIDS[@]}" $CUR_CLIENT; do wait "$p" 2>/dev/null; done
	CLIENT_PIDS=() CUR_CLIENT=
	for n in "${!PID[@]}"; do stop_server "$n"; done
}

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

wait_listen() { # NAME PORT LOGFILE: waits up to LISTEN_TIMEOUT s for the port
	local name=$1 port=$2 logf=$3 i
	for i in $(seq $((LISTEN_TIMEOUT * 10))); do
		if ! kill -0 "${PID[$name]}" 2>/dev/null; then
			wait "${PID[$name]}" 2>/dev/null
			REASON="exited at start: $(tail -n 3 "$logf" 2>/dev/null | tr '\n' ' ')"
			unset "PID[$name]"
			return 1
		fi
		listening "$port" && return 0
		sleep 0.1
	done
	REASON="not listening on 127.0.0.1:$port after $LISTEN_TIMEOUT s"
	stop_server "$name"
	return 1
}

port_free() { # NAME: PORT[NAME] is free; else REASON
	listening "${PORT[$1]}" || return 0
	REASON="port ${PORT[$1]} is already in use"
	return 1
}

launch_origin() { # COMMAND...: the origin, on the origin CPU, until it listens on ORIGIN_PORT
	"${PIN_ORIGIN[@]}" "$@" >"$LOGS/origin.out" 2>&1 &
	PID[origin]=$!
	wait_listen origin "$ORIGIN_PORT" "$LOGS/origin.out"
}

launch_proxy() { # NAME COMMAND...: a server under test, on the proxy CPUs, until it listens
	local name=$1
	shift
	"${PIN_PROXY[@]}" "$@" >>"$LOGS/$name.out" 2>&1 &
	PID[$name]=$!
	wait_listen "$name" "${PORT[$name]}" "$LOGS/$name.out" || return 1
	sleep 0.3 # nginx: let the workers come up
}

moatd_conf_ok() { # NAME BINARY [LINES]: BINARY -t accepts $CONF/NAME.conf; else REASON
	[ -x "$2" ] || { REASON="$MOATD not found (not built yet)"; return 1; }
	"$2" -t -c "$CONF/$1.conf" >"$LOGS/$1-check.out" 2>&1 && return 0
	REASON="configuration refused: $(head -n "${3:-2}" "$LOGS/$1-check.out" | tr '\n' ' ')"
	return 1
}

proxy_pids() { descendants "${PID[$1]}"; }

alive() { [ -n "${PID[$1]:-}" ] && kill -0 "${PID[$1]}" 2>/dev/null; }

# Starts each server with the script's start_proxy; those that pass its sanity check are
# measured (ACTIVE), the others get the reason in NA.
bring_up() { # NAME...
	local p
	ACTIVE=()
	for p in "$@"; do
		if start_proxy "$p" && sanity "$p"; then
			ACTIVE+=("$p")
			log "${LABEL[$p]} on 127.0.0.1:${PORT[$p]}: ready (${NEG[$p]})"
		else
			NA[$p]=$REASON
			stop_server "$p"
			log "${LABEL[$p]}: n/a: $REASON"
		fi
	done
}

note_exited() { # a server of ACTIVE that is gone has no figures: NA says why
	local p
	for p in "${ACTIVE[@]}"; do
		alive "$p" && continue
		[ -z "${NA[$p]:-}" ] && NA[$p]="exited during the run: $(tail -n 2 "$LOGS/$p.out" | tr '\n' ' ')"
	done
}

# ---- set-up ----

require() { # COMMAND...: exits unless each is installed
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null || { echo "$ME: $t is required" >&2; exit 1; }
	done
}

build_client() { # NAME OUTPUT: bench/NAME.c (loadgen, tcpload) with the code they share
	cc -O2 -Wall -Wextra -Werror "bench/$1.c" bench/tlsclient.c -lssl -lcrypto -o "$2"
}

raise_fd_limit() { # sets FD_LIMIT, the open-file limit raised to the hard one
	ulimit -n "$(ulimit -Hn)" 2>/dev/null
	FD_LIMIT=$(ulimit -n)
	[ "$FD_LIMIT" = unlimited ] && FD_LIMIT=1048576
	return 0
}

# The servers under test on CPUs 0..n-2, the load (and by default the origin) on the last:
# sets PIN_PROXY, PIN_LOAD and PIN_ORIGIN (taskset prefixes, empty when not pinned), NCPU,
# LOAD_CPU, PROXY_CPUS, PROXY_CORES (the cores the servers can use) and PINNING.
pin_cpus() { # LOAD-NAME: what the load is called in PINNING
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
		PINNING="proxy on CPU $PROXY_CPUS; $1 on CPU $LOAD_CPU; origin on CPU $ORIGIN_CPU (taskset)"
		PROXY_CORES=$((NCPU - 1))
	else
		PINNING="not pinned (taskset unavailable, fewer than 2 CPUs, or NO_PIN=1)"
	fi
	if [ "$WORKERS" -lt "$PROXY_CORES" ]; then PROXY_CORES=$WORKERS; fi
}

# The bench PKI in $PKI, ECDSA P-256, made with the openssl CLI: a server CA and a device CA,
# the server certificate (SNI and 127.0.0.1; also in server.pem with its key, for HAProxy) and
# one device certificate (CN DEVICE_CN, by default bench-device-0001).
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
	openssl req -new -key "$d/device.key" -subj "/CN=${DEVICE_CN:-bench-device-0001}" \
		-out "$d/device.csr" || return 1
	openssl x509 -req -in "$d/device.csr" -CA "$d/device-ca.crt" -CAkey "$d/device-ca.key" \
		-CAcreateserial -days 30 -extfile "$d/ext.cnf" -extensions device \
		-out "$d/device.crt" 2>/dev/null || return 1
	cat "$d/server.crt" "$d/server.key" >"$d/server.pem" # HAProxy wants both in one file
	openssl verify -CAfile "$d/device-ca.crt" -purpose sslclient "$d/device.crt" >/dev/null &&
		openssl verify -CAfile "$d/server-ca.crt" -purpose sslserver "$d/server.crt" >/dev/null
}

# The origin's nginx configuration (prefix $B/origin/): a small 200 for every path, connections
# kept for a long time. NOFILE and BACKLOG are left to nginx when empty.
origin_conf() { # FILE WORKER-CONNECTIONS [NOFILE [BACKLOG]]
	local nofile="" backlog=""
	[ -n "${3:-}" ] && nofile="worker_rlimit_nofile $3;"
	[ -n "${4:-}" ] && backlog=" backlog=$4"
	mkdir -p "$B/origin/tmp"
	cat >"$1" <<EOF
# The origin: answers every request with a small body, keeps connections for a long time.
worker_processes 1;
daemon off;
pid $B/origin/nginx.pid;
error_log $LOGS/origin-error.log warn;
$nofile
events { worker_connections $2; }
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
		listen 127.0.0.1:$ORIGIN_PORT$backlog;
		location / {
			default_type text/plain;
			return 200 "hello from the bench origin\n";
		}
	}
}
EOF
}

# nginx as a server under test (run.sh, rules.sh), $CONF/NAME.conf with its prefix $B/NAME/:
# the same mutual TLS as moatd, to the origin over keep-alive connections, forwarding the
# identity that moatd adds (nginx 1.22 offers only a SHA-1 fingerprint of the client
# certificate); with MODSEC-RULES-FILE, ModSecurity with those rules. worker_connections counts
# the client and the origin connections.
nginx_conf() { # NAME [MODSEC-RULES-FILE]
	local t=$1 rules=${2:-}
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

start_nginx_origin() { # the origin of origin_conf, from $CONF/origin.conf
	launch_origin nginx -p "$B/origin/" -e "$LOGS/origin-error.log" -c "$CONF/origin.conf"
}

# ---- load ----

# Runs one client ($CLIENT) on the load CPU and sets LINE. It runs in the background and is
# waited for, so that a signal to the script is handled at once (and the client stopped).
run_client() { # NAME-FOR-LOG ARGS...
	local tag=$1 pid
	shift
	"${PIN_LOAD[@]}" "$CLIENT" "$@" >"$OUT/$tag.kv" 2>"$LOGS/$tag.txt" &
	pid=$!
	CUR_CLIENT=$pid
	wait "$pid"
	CUR_CLIENT=
	LINE=$(grep '^mode=' "$OUT/$tag.kv" | tail -n 1)
}

# Memory per idle connection: a freshly started proxy, one warm-up run of the client, RSS, then
# IDLE_CONNS connections held by the client in idle mode, in as many processes as the open-file
# limit needs (IDLE_PER_PROC each), and RSS again after IDLE_SETTLE s. The client's arguments:
# those of the warm-up run, then after "--" those added to "-m idle -n N -d 600 -i 100".
measure_idle_rss() { # TEST PROXY REPEAT WARM-UP-ARGS... -- IDLE-ARGS...
	local t=$1 p=$2 r=$3 why="" pids base after nproc left n i f up=0 failed=0 dropped=0 ok=1 kib
	local warm=() files=() held=() last
	shift 3
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		warm+=("$1")
		shift
	done
	[ $# -gt 0 ] && shift
	stop_server "$p"
	start_proxy "$p" || {
		record "$t $p $r ok=0 why=restart_failed"
		log "  $t ${LABEL[$p]} #$r: restart failed: $REASON"
		return
	}
	run_client "$t-warm-$p-$r" "${warm[@]}"
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
		"${PIN_LOAD[@]}" "$CLIENT" -m idle -n "$n" -d 600 -i 100 "$@" \
			>"$f" 2>"$LOGS/$t-$p-$r-$i.txt" &
		held+=($!)
		CLIENT_PIDS+=($!)
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
	for i in "${held[@]}"; do kill -USR1 "$i" 2>/dev/null; done
	for i in "${held[@]}"; do wait "$i" 2>/dev/null; done
	CLIENT_PIDS=()
	for f in "${files[@]}"; do
		last=$(grep '^mode=' "$f")
		up=$((up + $(kv up "$last") + 0))
		failed=$((failed + $(kv failed "$last") + 0))
		dropped=$((dropped + $(kv dropped "$last") + 0))
	done
	if [ "$up" -lt "$IDLE_CONNS" ]; then ok=0 why="only_${up}_of_${IDLE_CONNS}_up(failed=$failed,dropped=$dropped)"; fi
	alive "$p" || { ok=0 why="proxy_exited"; }
	kib=n/a
	[ "$up" -gt 0 ] && kib=$(awk -v a="$base" -v b="$after" -v n="$up" 'BEGIN {printf "%.2f", (b - a) / n}')
	record "$t $p $r value=$kib base_kb=$base after_kb=$after up=$up ok=$ok why=$why"
	log "  $t ${LABEL[$p]} #$r: $up up, RSS $base -> $after KiB, $kib KiB per connection${why:+ [$why]}"
	stop_server "$p"
}

# ---- /proc accounting ----

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

# CPU accounting around one client run, in % of one core over the run's wall time: the proxy,
# the origin, the client, everything else on the machine ("other": processes that are not part
# of the benchmark, plus steal time; it shows how noisy the run was), and interrupt and softirq
# time, which the kernel charges to no process (on loopback, mostly TCP/IP work for the run).
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $9}' /proc/stat; }
irq_ticks() { awk '/^cpu / {print $7 + $8}' /proc/stat; }
now_ns() { date +%s%N; }

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

# sets CPU_PROXY CPU_ORIGIN CPU_OTHER CPU_IRQ CPU_LOADGEN (%) and CPU_PROXY_S (seconds)
cpu_end() { # CLIENT-CPU-SECONDS
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
	CPU_LOADGEN=$(awk -v l="${1:-0}" -v s="$(((t1 - A_T0) / 1000000))" 'BEGIN {printf "%.0f", (s > 0 ? l / (s / 1000) * 100 : 0)}')
}

# ---- report ----

median() { # values on stdin (one per line); "n/a" if none
	sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

fig() { # TEST NAME FIELD: median over the valid runs
	awk -v t="$1" -v p="$2" -v f="$3" '$1 == t && $2 == p && / ok=1/ {for (i = 4; i <= NF; i++) {n = index($i, "="); if (substr($i, 1, n - 1) == f) print substr($i, n + 1)}}' \
		"$OUT/results.txt" 2>/dev/null | grep -v '^n/a$' | median
}

runs() { # TEST NAME: "valid/total"
	awk -v t="$1" -v p="$2" '$1 == t && $2 == p {n++; if (/ ok=1/) v++} END {printf "%d/%d", v, n}' "$OUT/results.txt" 2>/dev/null
}

ratio() { # A B
	awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a" || b + 0 <= 0 || a + 0 < 0) print "n/a"; else printf "%.2f", a / b}'
}

round() { awk -v a="$1" -v d="${2:-0}" 'BEGIN {if (a == "n/a" || a == "" || a == "nan") print "n/a"; else printf "%.*f", d, a}'; }

minus() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a") print "n/a"; else printf "%.1f", a - b}'; }

results_listing() { # the end of each summary: every run's record
	echo
	echo "all runs ($OUT/results.txt):"
	sed 's/^/  /' "$OUT/results.txt" 2>/dev/null
}

noisy_warning() { # a WARNING line if other processes took more than 10% of a core in any run
	local n
	n=$(awk '{for (i = 4; i <= NF; i++) if ($i ~ /^other_cpu=/) {split($i, a, "="); if (a[2] + 0 > 10) n++}} END {print n + 0}' "$OUT/results.txt" 2>/dev/null)
	if [ "${n:-0}" -gt 0 ]; then
		echo "WARNING: in $n runs other processes used more than 10% of a core: the machine was not quiet"
	fi
}

machine() { # the date, the CPUs and the kernel, for a summary's first line
	echo "$(date -u +%Y-%m-%d), $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $(uname -sr)"
}
