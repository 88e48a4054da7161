#!/usr/bin/env bash
# bench/api.sh MOATD - the control plane: enrollments per second through the admin API, moatd's
# start time and memory with a large fleet in the store, and the time from a change (a rule, a
# quarantine) to its enforcement on connections that are already open (issue "control plane",
# "Benchmark"). bench/README.md ("Control plane") explains the method.
#
# 1. enroll: devices enrolled per second, factory mode and from CSRs made beforehand, with 1 and
#    8 concurrent API clients (keep-alive), ENROLL_N enrollments per run, each run on a fresh
#    store; median of REPEAT runs.
# 2. start: for each store size of SIZES (devices in one tenant, put there by bench/store_fill.c
#    in one transaction), moatd's start time (until the device listener accepts and
#    GET /v1/health answers; also until a device's first request is served) and memory (VmRSS
#    one second after, VmHWM); median of REPEAT starts.
# 3. changes: on the last of those moatd (still running), TRIALS rule trials (`moatctl rule add`,
#    then GET /tN on open connections until 403) and CHANGE_TRIALS quarantine trials, with the
#    build time of each generation from moatd's log; then the same on stores whose tenant has
#    100 and 1,000 rules (RULE_SETS). Target: rule p99 < 1 s.
#
# Environment (defaults in brackets):
#   REPEAT [3]          runs per enrollment figure, starts per store size
#   PARTS ["enroll start"]  enroll: part 1; start: parts 2 and 3, and the rule sets
#   ENROLL_N [3000]     enrollments per run       ENROLL_CLIENTS ["1 8"]  concurrent clients
#   ENROLL_MODES ["factory csr"]
#   SIZES ["0 1000 100000 1000000"]  devices in the store for parts 2 and 3
#   TRIALS [100]        rule trials per store     CHANGE_TRIALS [10] quarantine trials per store
#   CONNS [4]           open device connections during the trials
#   RULE_SETS ["100 1000"]  also the trials on a tenant with that many rules (the first of
#                       bench/rules/moat-1000.rules) and no other device than the probe
#   API_RULES [100]     rule sets up to this size are added through the API (and timed), larger
#                       ones by store_fill -R     BIG_TRIALS [10] trials of each kind with those
#   SCALE_ENROLL [30]   enrollments (1 client, factory mode) into the largest store (0: none)
#   WORKERS [1]         moatd workers            PORT_BASE [24700]
#   NO_PIN [0]          1: do not pin (default: moatd on CPU 0..n-2, clients and origin on the last)
#   MOATCTL [next to MOATD]
set -uo pipefail # no -e: a failed run is recorded, the others go on
export LC_ALL=C  # $EPOCHREALTIME and awk with a decimal point
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in bench/api
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

enter_tree "${1:-}"
MOATCTL=${MOATCTL:-$(dirname "$MOATD")/moatctl}
LIBMOAT=$(dirname "$MOATD")/libmoat.a

REPEAT=${REPEAT:-3}
PARTS=${PARTS:-enroll start}
ENROLL_N=${ENROLL_N:-3000}
ENROLL_CLIENTS=${ENROLL_CLIENTS:-1 8}
ENROLL_MODES=${ENROLL_MODES:-factory csr}
SIZES=${SIZES:-0 1000 100000 1000000}
TRIALS=${TRIALS:-100}
CHANGE_TRIALS=${CHANGE_TRIALS:-10}
CONNS=${CONNS:-4}
RULE_SETS=${RULE_SETS-100 1000}
API_RULES=${API_RULES:-100}
BIG_TRIALS=${BIG_TRIALS:-10}
SCALE_ENROLL=${SCALE_ENROLL:-30}
WORKERS=${WORKERS:-1}
PORT_BASE=${PORT_BASE:-24700}
NO_PIN=${NO_PIN:-0}

B=$ROOT/build/bench/api
LOGS=$B/logs
OUT=$B/out
RUNS=$B/runs
PY=/usr/bin/python3
HELP=$ROOT/bench/api
SNI=bench.moat.test
TENANT=bench
PROBE=probe-0001
DEV_PORT=$((PORT_BASE + 43))
ADMIN_PORT=$((PORT_BASE + 90))
ADMIN=127.0.0.1:$ADMIN_PORT
ORIGIN_PORT=$((PORT_BASE + 80))
RESULTS=$OUT/results.txt
MOATD_PID=
ORIGIN_PID=

# ---- processes (moatd and the origin by their PIDs; record, kv, log and the rest: lib.sh) ----

stop_pid() { # PID: TERM, then KILL after 10 s
	local pid=$1 _
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}

stop_moatd() { stop_pid "$MOATD_PID"; MOATD_PID=; }

cleanup() {
	trap - EXIT INT TERM
	stop_moatd
	stop_pid "$ORIGIN_PID"
	ORIGIN_PID=
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- checks, build, pinning ----

require cc nginx ss python3 taskset
[ -x "$MOATD" ] || { echo "api.sh: $MOATD not found (make O=... build/.../moatd)" >&2; exit 1; }
[ -x "$MOATCTL" ] || { echo "api.sh: $MOATCTL not found (set MOATCTL)" >&2; exit 1; }
[ -f "$LIBMOAT" ] || { echo "api.sh: $LIBMOAT not found (store_fill links it)" >&2; exit 1; }
$PY -c 'import cryptography' 2>/dev/null ||
	{ echo "api.sh: python3-cryptography is required (CSRs)" >&2; exit 1; }
for p in $ENROLL_CLIENTS $REPEAT $ENROLL_N $TRIALS $CHANGE_TRIALS $CONNS $SIZES $RULE_SETS \
	$API_RULES $BIG_TRIALS $SCALE_ENROLL; do
	case $p in '' | *[!0-9]*) echo "api.sh: not a number: $p" >&2; exit 2 ;; esac
done
mkdir -p "$LOGS" "$OUT" "$RUNS"
rm -rf "${RUNS:?}"/* "${LOGS:?}"/* "${OUT:?}"/*

# moatd, moatctl and libmoat.a are copied at the start, so that a tree rebuilt during the run
# does not mix builds; store_fill is built against the copy
cp "$MOATD" "$B/moatd.bin" && cp "$MOATCTL" "$B/moatctl.bin" && cp "$LIBMOAT" "$B/libmoat.a" ||
	exit 1
MOATD_SRC=$MOATD MOATD=$B/moatd.bin MOATCTL=$B/moatctl.bin
MOATD_SHA=$(sha256sum "$MOATD" | cut -c1-12)
MOATD_BUILT=$(date -u -r "$MOATD_SRC" +%H:%M:%S)
# shellcheck disable=SC2046
cc -O2 -Wall -Wextra -Werror -Isrc bench/store_fill.c "$B/libmoat.a" \
	$(pkg-config --libs openssl libuv inih jansson libpcre2-8 libhs sqlite3) -lpthread -lm \
	-o "$B/store_fill" 2>"$LOGS/store_fill-build.txt" ||
	{ echo "api.sh: store_fill does not build: $(head -n 5 "$LOGS/store_fill-build.txt")" >&2; exit 1; }

# moatd takes the proxy's CPUs (PIN_PROXY); everything else, the origin too, the load CPU
pin_cpus load
[ ${#PIN_LOAD[@]} -gt 0 ] &&
	PINNING="moatd on CPU $PROXY_CPUS; API clients, trial runner, moatctl and origin on CPU $LOAD_CPU (taskset)"

# ---- the origin: nginx, a small 200 for every path ----

origin_conf "$B/origin.conf" 1024

start_origin() {
	local _
	"${PIN_LOAD[@]}" nginx -p "$B/origin/" -e "$LOGS/origin-error.log" -c "$B/origin.conf" \
		>>"$LOGS/origin.out" 2>&1 &
	ORIGIN_PID=$!
	for _ in $(seq 100); do listening "$ORIGIN_PORT" && return 0; sleep 0.05; done
	return 1
}

# ---- moatd ----

# A moatd directory: its config, data dir (the store) and logs.
moatd_dir() { # DIR
	local d=$1
	mkdir -p "$d/data"
	cat >"$d/moat.conf" <<EOF
[moat]
workers = $WORKERS
data_dir = $d/data
error_log = $d/error.log
log_level = info
idle_timeout = 10m
drain_timeout = 2s
admin_listen = $ADMIN

[listener devices]
bind = 127.0.0.1:$DEV_PORT
protocol = http
EOF
}

# Starts moatd on DIR and waits until it is ready; READY holds ready.py's line. Extra
# arguments go to ready.py (--device ...).
start_moatd() { # DIR [ready.py args...]
	local d=$1 t0
	shift
	if listening "$DEV_PORT" || listening "$ADMIN_PORT"; then
		READY="ok=0 why=port_busy"
		return 1
	fi
	t0=$EPOCHREALTIME
	"${PIN_PROXY[@]}" "$MOATD" -c "$d/moat.conf" >>"$d/moatd.out" 2>&1 &
	MOATD_PID=$!
	READY=$("${PIN_LOAD[@]}" $PY "$HELP/ready.py" --t0 "$t0" --pid "$MOATD_PID" \
		--port "$DEV_PORT" --admin "$ADMIN" "$@")
	[ "$(kv ok "$READY")" = 1 ] && return 0
	log "moatd did not start ($READY): $(tail -n 3 "$d/error.log" "$d/moatd.out" 2>/dev/null | tr '\n' ' ')"
	stop_moatd
	return 1
}

token_file() { echo "$1/data/operator.token"; }

# A fresh store with the bench tenant (generated device CA and server certificate).
new_store() { # DIR
	local d=$1
	rm -rf "$d"
	moatd_dir "$d"
	start_moatd "$d" || return 1
	"${PIN_LOAD[@]}" $PY "$HELP/setup.py" tenant "$ADMIN" "$(token_file "$d")" "$TENANT" "$SNI" \
		"http://127.0.0.1:$ORIGIN_PORT" 2>>"$LOGS/setup.txt" ||
		{ log "cannot create the tenant: $(tail -n 2 "$LOGS/setup.txt")"; return 1; }
}

# ---- part 1: enrollments per second ----

part_enroll() {
	local r mode c d line csrs=$B/csrs.jsonl
	if [[ " $ENROLL_MODES " == *" csr "* ]]; then
		log "enroll: making $ENROLL_N CSRs (ECDSA P-256), not timed"
		"${PIN_LOAD[@]}" $PY "$HELP/setup.py" csrs "$csrs" "$ENROLL_N" enroll- >"$LOGS/csrs.txt" ||
			{ log "enroll: cannot make the CSRs"; return 1; }
	fi
	log "enroll: $ENROLL_N enrollments per run, modes: $ENROLL_MODES, clients: $ENROLL_CLIENTS, $REPEAT runs each (interleaved), a fresh store each"
	for r in $(seq "$REPEAT"); do
		for mode in $ENROLL_MODES; do
			for c in $ENROLL_CLIENTS; do
				d=$RUNS/enroll-$mode-$c-$r
				if ! new_store "$d"; then
					record "enroll $mode $c $r ok=0 why=no_store"
					stop_moatd
					continue
				fi
				line=$("${PIN_LOAD[@]}" $PY "$HELP/enroll.py" --admin "$ADMIN" \
					--token-file "$(token_file "$d")" --tenant "$TENANT" --mode "$mode" \
					--clients "$c" --count "$ENROLL_N" --csrs "$csrs" --pid "$MOATD_PID" \
					--log "$d/error.log" 2>>"$LOGS/enroll.txt")
				ok=1
				[ "$(kv errors "$line")" = 0 ] || ok=0
				kill -0 "$MOATD_PID" 2>/dev/null || ok=0
				record "enroll $mode $c $r ok=$ok $line"
				log "  $mode, $c client(s) #$r: $(kv per_second "$line") enrollments/s (p50 $(kv lat_p50_ms "$line") ms, p99 $(kv lat_p99_ms "$line") ms; CPU: moatd $(kv moatd_cpu_pct "$line")%, clients $(kv client_cpu_pct "$line")%, other $(kv other_cpu_pct "$line")%; $(kv gens "$line") generations built, $(kv build_ms "$line") ms)"
				stop_moatd
				rm -rf "$d/data/keys" # thousands of nothing; the store and logs stay
			done
		done
	done
}

# ---- parts 2 and 3: start, memory, changes ----

probe_args() { echo "$PROBE" "$B/probe/$PROBE.crt" "$B/probe/$PROBE.key" "$B/probe/server-ca.crt" "$SNI"; }

# The template store: the tenant and one enrolled device (the probe), moatd stopped.
make_template() {
	local d=$RUNS/template
	new_store "$d" || return 1
	"${PIN_LOAD[@]}" $PY "$HELP/setup.py" device "$ADMIN" "$(token_file "$d")" "$TENANT" "$PROBE" \
		"$B/probe" 2>>"$LOGS/setup.txt" ||
		{ log "cannot enroll the probe device: $(tail -n 2 "$LOGS/setup.txt")"; return 1; }
	stop_moatd
}

run_trials() { # LABEL KIND N [TAG]: trials on the running moatd of $D, recorded under TAG
	local label=$1 kind=$2 n=$3 tag=${4:-$2} line prefix=t
	[ "$tag" = first-rule ] && prefix=f
	# shellcheck disable=SC2046
	line=$("${PIN_LOAD[@]}" $PY "$HELP/trials.py" --kind "$kind" --admin "$ADMIN" \
		--token-file "$(token_file "$D")" --tenant "$TENANT" --port "$DEV_PORT" \
		--device $(probe_args) --log "$D/error.log" --moatctl "$MOATCTL" --conns "$CONNS" \
		--trials "$n" --name-prefix "$prefix" --out "$OUT/trials-$label-$tag.txt" \
		2>>"$LOGS/trials-$label-$tag.txt")
	record "trials $label $tag $line"
	log "  $tag trials ($label): first 403 p50 $(kv first_p50_ms "$line") ms, p99 $(kv first_p99_ms "$line") ms, max $(kv first_max_ms "$line") ms; every connection p99 $(kv all_p99_ms "$line") ms; build $(kv build_p50_ms "$line") ms (p99 $(kv build_p99_ms "$line")); undo p99 $(kv undo_p99_ms "$line") ms; dropped $(kv dropped "$line")"
	[ -n "$line" ] || log "  trials failed: $(tail -n 3 "$LOGS/trials-$label-$tag.txt" | tr '\n' ' ')"
}

# Enrollments into the big store: each one changes the tenant's devices, and the next
# generation rebuilds its registry from the store.
scale_enroll() { # LABEL
	local line
	line=$("${PIN_LOAD[@]}" $PY "$HELP/enroll.py" --admin "$ADMIN" \
		--token-file "$(token_file "$D")" --tenant "$TENANT" --mode factory --clients 1 \
		--count "$SCALE_ENROLL" --prefix scale- --pid "$MOATD_PID" --log "$D/error.log" \
		2>>"$LOGS/enroll.txt")
	record "scale $1 $line"
	log "  $SCALE_ENROLL enrollments into it (1 client, factory): $(kv per_second "$line")/s, p50 $(kv lat_p50_ms "$line") ms, p99 $(kv lat_p99_ms "$line") ms; $(kv gens "$line") generations, the longest built in $(kv build_ms_max "$line") ms"
}

part_start() {
	local n r k fill largest=0 db
	make_template || { log "start: no template store: parts 2 and 3 not run"; stop_moatd; return 1; }
	for n in $SIZES; do [ "$n" -gt "$largest" ] && largest=$n; done
	for n in $SIZES; do
		D=$RUNS/store-$n
		rm -rf "$D"
		cp -a "$RUNS/template" "$D"
		moatd_dir "$D"
		: >"$D/error.log"
		fill="devices=0 seconds=0"
		if [ "$n" -gt 0 ]; then
			log "store with $n devices: store_fill (one transaction)"
			fill=$("${PIN_PROXY[@]}" "$B/store_fill" -t "$TENANT" "$D/data/moat.db" "$n" \
				2>>"$LOGS/store_fill.txt") || { log "store_fill failed: $(tail -n 2 "$LOGS/store_fill.txt")"; continue; }
		fi
		db=$(du -b "$D/data/moat.db" | cut -f1)
		record "fill $n $fill db_bytes=$db"
		log "store with $n devices: filled in $(kv seconds "$fill") s, $((db / 1048576)) MiB; $REPEAT starts"
		for r in $(seq "$REPEAT"); do
			# shellcheck disable=SC2046
			if start_moatd "$D" --device $(probe_args | cut -d' ' -f2-); then
				record "start $n $r $READY"
				log "  start #$r: ready in $(kv ready_ms "$READY") ms (listener $(kv listen_ms "$READY"), health $(kv health_ms "$READY"), first request served $(kv served_ms "$READY")); RSS $(($(kv rss_kb "$READY") / 1024)) MiB, peak $(($(kv hwm_kb "$READY") / 1024)) MiB"
			else
				record "start $n $r $READY"
				continue
			fi
			[ "$r" -lt "$REPEAT" ] && stop_moatd
		done
		if [ -n "$MOATD_PID" ]; then
			# the first change after a start, then the steady state
			[ "$TRIALS" -gt 0 ] && run_trials "$n" rule 1 first-rule
			[ "$CHANGE_TRIALS" -gt 0 ] && run_trials "$n" quarantine "$CHANGE_TRIALS"
			[ "$TRIALS" -gt 0 ] && run_trials "$n" rule "$TRIALS"
			# the peak includes the rebuilds: the old registry lives until the new one is out
			record "mem $n $(awk '/^Vm(RSS|HWM):/ {printf "%s=%s ", ($1 == "VmRSS:" ? "rss_kb" : "hwm_kb"), $2}' "/proc/$MOATD_PID/status")"
			[ "$n" = "$largest" ] && [ "$SCALE_ENROLL" -gt 0 ] && scale_enroll "$n"
			stop_moatd
		fi
	done
	for k in $RULE_SETS; do rule_set "$k"; done
}

# Trials on a tenant with K rules (the first K of bench/rules/moat-1000.rules) and only the probe
# device: up to API_RULES of them added through the API one by one (and timed), more put into
# the store by store_fill, since every API write compiles the whole rule set.
rule_set() { # K
	local k=$1 line n=$TRIALS q=$CHANGE_TRIALS
	D=$RUNS/rules-$k
	rm -rf "$D"
	cp -a "$RUNS/template" "$D"
	moatd_dir "$D"
	: >"$D/error.log"
	if [ "$k" -gt "$API_RULES" ]; then
		"${PIN_LOAD[@]}" $PY "$HELP/setup.py" rules-tsv bench/rules/moat-1000.rules "$k" \
			"$D/rules.tsv" 2>>"$LOGS/setup.txt" &&
			line=$("${PIN_PROXY[@]}" "$B/store_fill" -t "$TENANT" -R "$D/rules.tsv" \
				"$D/data/moat.db" 0 2>>"$LOGS/store_fill.txt") ||
			{ log "rules: cannot put $k rules into the store"; return 1; }
		[ "$n" -gt "$BIG_TRIALS" ] && n=$BIG_TRIALS
		[ "$q" -gt "$BIG_TRIALS" ] && q=$BIG_TRIALS
	fi
	# shellcheck disable=SC2046
	start_moatd "$D" --device $(probe_args | cut -d' ' -f2-) || return 1
	record "rstart $k 1 $READY"
	log "store with $k rules: moatd ready in $(kv ready_ms "$READY") ms, RSS $(($(kv rss_kb "$READY") / 1024)) MiB"
	if [ "$k" -le "$API_RULES" ]; then
		line=$("${PIN_LOAD[@]}" $PY "$HELP/setup.py" rules "$ADMIN" "$(token_file "$D")" \
			"$TENANT" bench/rules/moat-1000.rules "$k" 2>>"$LOGS/setup.txt")
		record "rulesadd $k $line"
		log "  $k rules added through the API one by one in $(kv seconds "$line") s"
		sleep 1 # the last of those generations
	fi
	[ "$q" -gt 0 ] && run_trials "0+${k}rules" quarantine 1 first-quarantine
	[ "$q" -gt 0 ] && run_trials "0+${k}rules" quarantine "$q"
	[ "$n" -gt 0 ] && run_trials "0+${k}rules" rule "$n"
	stop_moatd
}

# ---- run ----

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "moat control-plane bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $NCPU CPUs, $(uname -sr)"
log "moatd: $MOATD_SRC (sha256 $MOATD_SHA, built $MOATD_BUILT UTC); WORKERS=$WORKERS REPEAT=$REPEAT"
log "pinning: $PINNING"
log "load average before starting: $LOADAVG_START"
start_origin || { echo "api.sh: the origin (nginx) did not start; see $LOGS/origin-error.log" >&2; exit 1; }
: >"$RESULTS"
T0=$(date +%s)
[[ " $PARTS " == *" enroll "* ]] && part_enroll
LOADAVG_MID=$(cut -d' ' -f1-3 /proc/loadavg)
[[ " $PARTS " == *" start "* ]] && part_start
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - T0))
cleanup

# ---- report ----

# this script's records have their own layout; median and round: lib.sh
median_of() { # KIND KEY1 KEY2 FIELD: median of FIELD over the valid records "KIND KEY1 KEY2 ..."
	awk -v k="$1" -v a="$2" -v b="$3" -v f="$4" '$1 == k && $2 == a && (b == "" || $3 == b) && !/ ok=0/ {
		for (i = 3; i <= NF; i++) {n = index($i, "="); if (n && substr($i, 1, n - 1) == f) print substr($i, n + 1)}}' \
		"$RESULTS" | median
}
one() { # KIND KEY1 KEY2 FIELD: the field of the first such record
	awk -v k="$1" -v a="$2" -v b="$3" -v f="$4" '$1 == k && $2 == a && (b == "" || $3 == b) {
		for (i = 3; i <= NF; i++) {n = index($i, "="); if (n && substr($i, 1, n - 1) == f) {print substr($i, n + 1); exit}}}' \
		"$RESULTS"
}
enroll_runs() { awk -v a="$1" -v b="$2" '$1 == "enroll" && $2 == a && $3 == b {n++; if ($5 == "ok=1") v++} END {printf "%d/%d", v, n}' "$RESULTS"; }
all_runs() { awk -v a="$1" -v b="$2" -v f="$3" '$1 == "enroll" && $2 == a && $3 == b {for (i = 5; i <= NF; i++) if (index($i, f "=") == 1) s = s sprintf(" %.0f", substr($i, length(f) + 2))} END {print substr(s, 2)}' "$RESULTS"; }
mib() { awk -v a="$1" 'BEGIN {if (a == "n/a" || a == "") print "n/a"; else printf "%.1f", a / 1024}'; }
verdict() { awk -v v="$1" -v m="$2" 'BEGIN {if (v == "" || v == "n/a" || v == "nan") print "n/a"; else print (v + 0 < m) ? "met" : "MISSED"}'; }

{
	echo "moat control-plane bench - $(machine)"
	echo "moatd: $MOATD_SRC, sha256 $MOATD_SHA, built $MOATD_BUILT UTC (copied at the start); WORKERS=$WORKERS; $($PY --version), $(openssl version | awk '{print $1, $2}'), SQLite $(pkg-config --modversion sqlite3)"
	echo "pinning: $PINNING"
	echo "load average: $LOADAVG_START at the start, $LOADAVG_MID after part 1, $LOADAVG_END at the end; $ELAPSED s in all"
	if [[ " $PARTS " == *" enroll "* ]]; then
		echo
		echo "1. Enrollments per second through the API ($ENROLL_N per run, a fresh store each; median of $REPEAT; CPU in % of one core)"
		printf '%-8s %7s %10s %16s %10s %12s %8s %8s %8s %16s %6s\n' mode clients "enroll/s" "runs" "p50 ms" "p99 ms" moatd client other "moatd ms/enroll" valid
		for mode in $ENROLL_MODES; do
			for c in $ENROLL_CLIENTS; do
				printf '%-8s %7s %10s %16s %10s %12s %7s%% %7s%% %7s%% %16s %6s\n' "$mode" "$c" \
					"$(round "$(median_of enroll "$mode" "$c" per_second)")" "$(all_runs "$mode" "$c" per_second)" \
					"$(round "$(median_of enroll "$mode" "$c" lat_p50_ms)" 2)" "$(round "$(median_of enroll "$mode" "$c" lat_p99_ms)" 2)" \
					"$(round "$(median_of enroll "$mode" "$c" moatd_cpu_pct)")" "$(round "$(median_of enroll "$mode" "$c" client_cpu_pct)")" \
					"$(round "$(median_of enroll "$mode" "$c" other_cpu_pct)")" "$(round "$(median_of enroll "$mode" "$c" moatd_ms_per_enroll)" 3)" \
					"$(enroll_runs "$mode" "$c")"
			done
		done
		echo "generations built per run (median): $(for mode in $ENROLL_MODES; do for c in $ENROLL_CLIENTS; do printf '%s/%s %s (%s ms building)  ' "$mode" "$c" "$(round "$(median_of enroll "$mode" "$c" gens)")" "$(round "$(median_of enroll "$mode" "$c" build_ms)")"; done; done)"
		hot=$(awk '$1 == "enroll" {for (i = 5; i <= NF; i++) if ($i ~ /^client_cpu_pct=/) {split($i, a, "="); if (a[2] + 0 > 90) n++}} END {print n + 0}' "$RESULTS")
		[ "$hot" -gt 0 ] && echo "NOTE: in $hot runs the clients used more than 90% of their core: those rates are lower bounds (the client was the limit)"
		noisy=$(awk '$1 == "enroll" {for (i = 5; i <= NF; i++) if ($i ~ /^other_cpu_pct=/) {split($i, a, "="); if (a[2] + 0 > 10) n++}} END {print n + 0}' "$RESULTS")
		[ "$noisy" -gt 0 ] && echo "WARNING: in $noisy enrollment runs other processes used more than 10% of a core: the machine was not quiet"
	fi
	if [[ " $PARTS " == *" start "* ]]; then
		echo
		echo "2. moatd's start and memory with N devices in the store (one tenant; median of $REPEAT starts; page cache warm; the last column: VmHWM after the trials of part 3)"
		printf '%10s %9s %9s %10s %10s %10s %10s %9s %9s %12s %14s\n' devices "fill s" "store MB" "ready ms" "listen ms" "health ms" "served ms" "RSS MiB" "HWM MiB" "RSS B/device" "HWM after ch."
		rss0=$(median_of start 0 "" rss_kb)
		for n in $SIZES; do
			rss=$(median_of start "$n" "" rss_kb)
			per=$(awk -v a="$rss" -v b="$rss0" -v n="$n" 'BEGIN {if (n == 0 || a == "n/a" || b == "n/a") print "-"; else printf "%.0f", (a - b) * 1024 / n}')
			printf '%10s %9s %9s %10s %10s %10s %10s %9s %9s %12s %14s\n' "$n" "$(round "$(one fill "$n" "" seconds)" 1)" \
				"$(awk -v b="$(one fill "$n" "" db_bytes)" 'BEGIN {printf "%.1f", b / 1e6}')" \
				"$(round "$(median_of start "$n" "" ready_ms)")" "$(round "$(median_of start "$n" "" listen_ms)")" \
				"$(round "$(median_of start "$n" "" health_ms)")" "$(round "$(median_of start "$n" "" served_ms)")" \
				"$(mib "$rss")" "$(mib "$(median_of start "$n" "" hwm_kb)")" "$per" "$(mib "$(one mem "$n" "" hwm_kb)")"
		done
		printf 'store_fill (one transaction through the store interface):'
		awk '$1 == "fill" && $2 > 0' "$RESULTS" | while read -r l; do
			printf ' %s devices in %s s (%s/s);' "$(kv devices "$l")" "$(round "$(kv seconds "$l")" 1)" "$(kv per_second "$l")"
		done
		echo
		echo
		echo "3. From a change to its enforcement on $CONNS open keep-alive connections (ms; p50 / p99 / max; 'every' = until each connection had it)"
		printf '%-12s %-16s %6s %24s %10s %10s %18s %18s %18s %8s\n' store change trials "first 403" "every p99" "API p50" "build p50/p99" "undo p50/p99" "undo build p50" dropped
		labels=$(awk '$1 == "trials" && !seen[$2]++ {print $2}' "$RESULTS")
		for l in $labels; do
			for k in first-rule first-quarantine quarantine rule; do
				f() { one trials "$l" "$k" "$1"; }
				[ -n "$(f trials)" ] || continue
				printf '%-12s %-16s %6s %24s %10s %10s %18s %18s %18s %8s\n' "$l" "$k" "$(f trials)" \
					"$(round "$(f first_p50_ms)" 1) / $(round "$(f first_p99_ms)" 1) / $(round "$(f first_max_ms)" 1)" \
					"$(round "$(f all_p99_ms)" 1)" "$(round "$(f api_p50_ms)" 1)" \
					"$(round "$(f build_p50_ms)" 1) / $(round "$(f build_p99_ms)" 1)" \
					"$(round "$(f undo_p50_ms)" 1) / $(round "$(f undo_p99_ms)" 1)" \
					"$(round "$(f undo_build_p50_ms)" 1)" "$(f dropped)"
			done
		done
		echo "(rule: t0 before 'moatctl rule add', API = moatctl's whole run; undo = rule deleted through the API. quarantine: t0 before POST .../quarantine; undo = release. first-*: the first change after moatd started.)"
		for l in $labels; do
			p99=$(one trials "$l" rule first_p99_ms)
			[ -n "$p99" ] && echo "rule change p99 < 1 s with store $l: $(verdict "$p99" 1000) ($(round "$p99" 1) ms; $(one trials "$l" rule over_1s) of $(one trials "$l" rule trials) trials over 1 s)"
			f1=$(one trials "$l" first-rule first_max_ms)
			[ -n "$f1" ] && echo "the first rule change after the start with store $l: $(round "$f1" 1) ms to the first 403 (generation built in $(round "$(one trials "$l" first-rule build_max_ms)" 1) ms)"
			f1=$(one trials "$l" first-quarantine first_max_ms)
			[ -n "$f1" ] && echo "the first quarantine after the start with store $l: $(round "$f1" 1) ms to the first 403 (generation built in $(round "$(one trials "$l" first-quarantine build_max_ms)" 1) ms)"
			q=$(one trials "$l" quarantine first_max_ms)
			[ -n "$q" ] && echo "quarantine effective within 1 s with store $l: $(verdict "$q" 1000) (slowest of $(one trials "$l" quarantine trials): $(round "$q" 1) ms; GET /v1/health during the rebuild: p50 $(round "$(one trials "$l" quarantine health_p50_ms)" 1) ms, max $(round "$(one trials "$l" quarantine health_max_ms)" 1) ms)"
		done
		awk '$1 == "rulesadd" {print $2, $0}' "$RESULTS" | while read -r k l; do
			echo "$k rules added through the API one by one in $(round "$(kv seconds "$l")" 1) s"
		done
		awk '$1 == "rstart" {print $2, $0}' "$RESULTS" | while read -r k l; do
			echo "moatd with $k rules in the tenant: ready in $(round "$(kv ready_ms "$l")") ms, RSS $(mib "$(kv rss_kb "$l")") MiB, peak $(mib "$(kv hwm_kb "$l")") MiB"
		done
		s=$(awk '$1 == "scale"' "$RESULTS")
		[ -n "$s" ] && echo "enrollments into the store of $(awk '{print $2}' <<<"$s") devices (1 client, factory): $(round "$(kv per_second "$s")" 2)/s, p50 $(round "$(kv lat_p50_ms "$s")") ms, p99 $(round "$(kv lat_p99_ms "$s")") ms; $(kv gens "$s") generations, the longest built in $(round "$(kv build_ms_max "$s")") ms"
	fi
	results_listing
} | tee "$OUT/summary.txt"
