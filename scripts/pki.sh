#!/bin/sh
# A development PKI for trying Moat: a CA for server certificates, the demo tenant's server
# certificate, a device CA with a revocation list, and device certificates.
#
#   scripts/pki.sh demo [DIR]            everything the demo needs (DIR: var/demo)
#   scripts/pki.sh device DIR NAME       one more device certificate, DIR/NAME.pem and .key
#   scripts/pki.sh revoke DIR NAME       revoke DIR/NAME.pem and rewrite DIR/device.crl
#
# Idempotent: only what is missing is created, and a certificate that has expired (or
# expires within a day), or no longer matches its key or its CA, is issued again. So is a
# CRL that expires within a week. Nothing else is touched; on success the script prints one
# line per file it wrote, and nothing when there was nothing to do.
#
# Keys are ECDSA P-256, mode 0600. CAs are valid for 10 years, everything else for 1.
# The device CA keeps an `openssl ca` database in DIR/device-ca/ with its configuration in
# DIR/openssl.cnf; by hand, from DIR: openssl ca -config openssl.cnf -gencrl -out device.crl
#
# These are demo credentials with unencrypted keys: never use them for a real fleet.
set -eu

TENANT=demo
SERVER_NAMES="DNS:demo.moat.localhost,DNS:*.demo.moat.localhost,DNS:localhost,IP:127.0.0.1"
CA_DAYS=3650
LEAF_DAYS=365
CRL_DAYS=30
CRL_RENEW_SECONDS=604800 # a week
LEAF_RENEW_SECONDS=86400 # a day

usage() {
	cat >&2 <<'EOF'
usage: scripts/pki.sh demo [DIR]          create what the demo needs (DIR: var/demo)
       scripts/pki.sh device DIR NAME     issue a device certificate DIR/NAME.pem
       scripts/pki.sh revoke DIR NAME     revoke DIR/NAME.pem and rewrite DIR/device.crl
EOF
	exit 2
}

die() {
	echo "pki: $*" >&2
	exit 1
}

# Runs a command quietly; on failure shows what it printed and stops.
TMP=""
cleanup() {
	if [ -n "$TMP" ]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

q() {
	if ! "$@" >"$TMP/out" 2>&1; then
		cat "$TMP/out" >&2
		die "failed: $*"
	fi
}

created() {
	printf 'created  %s\n' "$*"
}

check_name() {
	case "$1" in
	"" | -* | .* | *[!A-Za-z0-9._-]*)
		die "bad device name '$1' (letters, digits, '.', '_', '-')"
		;;
	esac
	case "$1" in
	server | server-ca | device-ca) die "'$1' is reserved" ;;
	esac
}

# The configuration: extensions for every certificate kind, and the device CA's database.
# Paths are relative: openssl always runs with DIR as its working directory.
write_config() {
	cat >"$TMP/openssl.cnf" <<EOF
# Written by scripts/pki.sh; rewritten on every run. Use from this directory, e.g.
#   openssl ca -config openssl.cnf -revoke device-2.pem && openssl ca -config openssl.cnf -gencrl -out device.crl

[ ca ]
default_ca = device_ca

[ device_ca ]
dir = ./device-ca
database = \$dir/index.txt
new_certs_dir = \$dir/certs
crlnumber = \$dir/crlnumber
rand_serial = yes
certificate = ./device-ca.pem
private_key = ./device-ca.key
default_md = sha256
default_days = $LEAF_DAYS
default_crl_days = $CRL_DAYS
policy = device_policy
unique_subject = no
copy_extensions = none
x509_extensions = device_cert
crl_extensions = crl_ext
email_in_dn = no

[ device_policy ]
organizationName = optional
commonName = supplied

[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = unused

[ ca_cert ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ server_cert ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $SERVER_NAMES

[ device_cert ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ crl_ext ]
authorityKeyIdentifier = keyid
EOF
	if ! cmp -s "$TMP/openssl.cnf" openssl.cnf; then
		mv "$TMP/openssl.cnf" openssl.cnf
	fi
}

# new_key FILE: an ECDSA P-256 key, mode 0600, unless FILE exists. NEW_KEY=1 if made.
NEW_KEY=0
new_key() {
	NEW_KEY=0
	[ -s "$1" ] && return 0
	NEW_KEY=1
	(
		umask 077
		q openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.tmp"
	)
	chmod 600 "$1.tmp"
	mv "$1.tmp" "$1"
	created "$D/$1"
}

# cert_ok CERT KEY [CAFILE]: CERT exists, matches KEY, is valid for a while yet and,
# with CAFILE, verifies against it.
cert_ok() {
	[ -s "$1" ] || return 1
	openssl x509 -in "$1" -noout -checkend "$LEAF_RENEW_SECONDS" >/dev/null 2>&1 || return 1
	a=$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null) || return 1
	b=$(openssl pkey -in "$2" -pubout 2>/dev/null) || return 1
	[ "$a" = "$b" ] || return 1
	if [ $# -ge 3 ]; then
		openssl verify -CAfile "$3" "$1" >/dev/null 2>&1 || return 1
	fi
	return 0
}

# A serial number: 16 random bytes, positive.
rand_serial() {
	echo "0x7$(openssl rand -hex 16 | cut -c2-)"
}

# ensure_ca NAME CN: NAME.key and a self-signed NAME.pem (renewed with the same key when it
# expires, so what it issued stays valid).
ensure_ca() {
	new_key "$1.key"
	cert_ok "$1.pem" "$1.key" && return 0
	q openssl req -config openssl.cnf -new -x509 -key "$1.key" -days "$CA_DAYS" \
		-subj "/O=Moat demo/CN=$2" -extensions ca_cert -set_serial "$(rand_serial)" \
		-sha256 -out "$1.pem.tmp"
	mv "$1.pem.tmp" "$1.pem"
	created "$D/$1.pem"
}

# The device CA, its database and its CRL. A new device CA key starts a new database.
ensure_device_ca() {
	ensure_ca device-ca "Moat demo device CA"
	if [ "$NEW_KEY" = 1 ] || [ ! -f device-ca/index.txt ]; then
		rm -rf device-ca
		mkdir -p device-ca/certs
		: >device-ca/index.txt
		echo "unique_subject = no" >device-ca/index.txt.attr
		echo 1000 >device-ca/crlnumber
		rm -f device.crl
	fi
	mkdir -p device-ca/certs
	[ -f device-ca/crlnumber ] || echo 1000 >device-ca/crlnumber
	if ! crl_ok; then
		gen_crl
		created "$D/device.crl"
	fi
}

# The CRL exists, is signed by the device CA and is not about to expire.
crl_ok() {
	[ -s device.crl ] || return 1
	openssl crl -in device.crl -CAfile device-ca.pem -noout >/dev/null 2>&1 || return 1
	next=$(openssl crl -in device.crl -noout -nextupdate 2>/dev/null) || return 1
	next=$(date -d "${next#nextUpdate=}" +%s 2>/dev/null) || return 1
	[ "$next" -gt $(($(date +%s) + CRL_RENEW_SECONDS)) ]
}

gen_crl() {
	q openssl ca -config openssl.cnf -batch -gencrl -out device.crl.tmp
	mv device.crl.tmp device.crl
}

# issue_device NAME: NAME.key and NAME.pem from the device CA.
issue_device() {
	new_key "$1.key"
	cert_ok "$1.pem" "$1.key" device-ca.pem && return 0
	cat >"$TMP/ext.cnf" <<EOF
[ device_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = URI:urn:moat:$TENANT:$1
EOF
	q openssl req -config openssl.cnf -new -key "$1.key" -subj "/O=Moat demo/CN=$1" \
		-out "$TMP/$1.csr"
	q openssl ca -config openssl.cnf -batch -notext -in "$TMP/$1.csr" \
		-extfile "$TMP/ext.cnf" -extensions device_ext -out "$1.pem.tmp"
	mv "$1.pem.tmp" "$1.pem"
	created "$D/$1.pem (CN $1, URI urn:moat:$TENANT:$1)"
}

issue_server() {
	new_key server.key
	cert_ok server.pem server.key server-ca.pem && return 0
	q openssl req -config openssl.cnf -new -key server.key \
		-subj "/O=Moat demo/CN=demo.moat.localhost" -out "$TMP/server.csr"
	q openssl x509 -req -in "$TMP/server.csr" -CA server-ca.pem -CAkey server-ca.key \
		-set_serial "$(rand_serial)" -days "$LEAF_DAYS" -sha256 \
		-extfile openssl.cnf -extensions server_cert -out server.pem.tmp
	mv server.pem.tmp server.pem
	created "$D/server.pem (demo.moat.localhost, *.demo.moat.localhost, localhost, 127.0.0.1)"
}

# Opens DIR (creating it), takes its lock and moves into it.
enter() {
	D=${1%/}
	[ -n "$D" ] || D=/
	mkdir -p "$D"
	cd "$D"
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/moat-pki.XXXXXX")
	if command -v flock >/dev/null 2>&1; then
		exec 9>.lock
		flock 9
	fi
	command -v openssl >/dev/null 2>&1 || die "openssl not found (apt-get install openssl)"
	write_config
}

cmd_demo() {
	enter "${1:-var/demo}"
	ensure_ca server-ca "Moat demo server CA"
	issue_server
	ensure_device_ca
	issue_device device-1
	issue_device device-2
}

cmd_device() {
	check_name "$2"
	enter "$1"
	ensure_device_ca
	issue_device "$2"
}

cmd_revoke() {
	check_name "$2"
	enter "$1"
	[ -s "$2.pem" ] || die "no certificate $D/$2.pem"
	if [ ! -s device-ca.pem ] || [ ! -f device-ca/index.txt ]; then
		die "no device CA in $D"
	fi
	openssl verify -CAfile device-ca.pem "$2.pem" >/dev/null 2>&1 ||
		die "$D/$2.pem was not issued by $D/device-ca.pem"
	serial=$(openssl x509 -in "$2.pem" -noout -serial)
	serial=${serial#serial=}
	# index.txt: status, expiry, revocation date, serial, file, subject (tab-separated)
	if awk -F '\t' -v s="$serial" '$1 == "R" && toupper($4) == toupper(s) { f = 1 } END { exit !f }' \
		device-ca/index.txt; then
		crl_ok || gen_crl
		printf 'already revoked  %s (serial %s)\n' "$D/$2.pem" "$serial"
		return 0
	fi
	q openssl ca -config openssl.cnf -batch -revoke "$2.pem"
	gen_crl
	printf 'revoked  %s (serial %s)\n' "$D/$2.pem" "$serial"
	printf 'updated  %s: moatd applies it on reload (SIGHUP)\n' "$D/device.crl"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
demo)
	[ $# -le 1 ] || usage
	cmd_demo "$@"
	;;
device)
	[ $# -eq 2 ] || usage
	cmd_device "$@"
	;;
revoke)
	[ $# -eq 2 ] || usage
	cmd_revoke "$@"
	;;
-h | --help | help) usage ;;
*) usage ;;
esac
