#!/bin/sh
# Installs the Debian packages that moat needs to build, test, fuzz and benchmark.
# Idempotent: packages already present are skipped, and apt is not touched at all when
# nothing is missing, so `make run` on a prepared machine starts at once.
set -eu

PKGS="build-essential pkg-config clang libclang-rt-14-dev clang-format clang-tidy cppcheck \
libssl-dev openssl libuv1-dev libinih-dev libjansson-dev libsqlite3-dev libpcre2-dev \
zlib1g-dev libzstd-dev libcmocka-dev libhyperscan-dev libcurl4-openssl-dev sqlite3 \
curl nginx libnginx-mod-http-modsecurity haproxy mosquitto mosquitto-clients python3 python3-pytest procps psmisc"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Daemons from Debian packages (nginx, haproxy, mosquitto) must not start on install:
# the tests start their own copies on free ports.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod 755 /usr/sbin/policy-rc.d
	trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq || true
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
