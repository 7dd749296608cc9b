#!/bin/sh
# Install the Debian packages csa builds, tests and runs with.
# postgresql (Debian 12: PostgreSQL 15, binaries in /usr/lib/postgresql/15/bin)
# is the ticket store's database backend; the tests start private servers
# of it (tests/support/tpg.c), never the system one the package sets up.
# libhiredis-dev is Redis's C client, which csa links (src/server/redis.c:
# live events and rate limits shared by several nodes, REDIS_URL), so it is
# a base package like libpq-dev; redis-server is the server the tests start
# privately (tests/support/tredis.c) and the one scripts and docs/DEPLOY.md
# run on one host; csa itself never needs one running (no Redis configured:
# one node, as before).
# Idempotent and fast when everything is present: apt is only called for
# packages dpkg does not already report as installed.
set -eu

PKGS="build-essential cmake pkg-config clang-format \
libjansson-dev libcurl4-openssl-dev libmicrohttpd-dev libsqlite3-dev \
libcmocka-dev libssl-dev zlib1g-dev sqlite3 curl \
postgresql libpq-dev libhiredis-dev redis-server"

# Optional extras: browser tests (chromium), the deploy check and
# benchmark peers.
if [ "${CSA_DEPS_BROWSER:-0}" = 1 ]; then
	PKGS="$PKGS chromium nodejs"
fi
# Tests only: the check of deploy/'s compose file (no engine needed).
if [ "${CSA_DEPS_TEST:-0}" = 1 ]; then
	PKGS="$PKGS docker-compose"
fi
# scripts/cluster.sh: HAProxy in front of the nodes (and the tests that run
# the cluster: check_cluster).
if [ "${CSA_DEPS_CLUSTER:-0}" = 1 ] || [ "${CSA_DEPS_TEST:-0}" = 1 ]; then
	PKGS="$PKGS haproxy"
fi
if [ "${CSA_DEPS_BENCH:-0}" = 1 ]; then
	PKGS="$PKGS wrk fasttext liblinear-tools python3-sklearn"
fi

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
