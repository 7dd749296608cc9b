#!/bin/sh
# csa on several nodes, from Debian packages, on this machine's loopback:
# one PostgreSQL server (a private one, in DIR), Redis when redis-server is
# installed, N `csa serve` nodes on one database and HAProxy in front of
# them. The topology of deploy/docker-compose.yml without containers, for
# tests, benchmarks and people without Docker (docs/DEPLOY.md).
#
#   scripts/cluster.sh start [-n N] [-d DIR] [-p PORT] [-c CSA] [-H HISTORY.jsonl]
#   scripts/cluster.sh status [-d DIR]
#   scripts/cluster.sh stop [-d DIR] [--clean]
#
# start: N nodes (default 3) behind http://127.0.0.1:PORT (default 8000);
#   node i listens on PORT+i, PostgreSQL on PORT+100, Redis on PORT+101.
#   DIR (default /tmp/csa-cluster) holds everything: pg/ (the database
#   cluster, owned by the postgres user when run as root: PostgreSQL refuses
#   to run as root), node<i>/ (each node's workspace directory: csa.json,
#   models, the state not in the database yet), logs, haproxy.cfg, and
#   cluster.env (the URLs, ports, pids and an admin token: source it).
#   -H imports labelled history through node 1 (tickets, decisions and the
#   trained models into the database, which every node reads).
# status: each node's /readyz, through HAProxy and directly.
# stop: the nodes (SIGTERM: they finish their requests), HAProxy, Redis and
#   PostgreSQL (fast shutdown: committed data is kept). --clean removes DIR.
#
# Every step checks what it did and stops with the reason and the log's
# tail; a start that fails stops what it had started and removes the
# database cluster it had created, so it can be run again in the same DIR.
set -eu

die() {
	echo "cluster.sh: $*" >&2
	exit 1
}

cmd=${1:-}
[ -n "$cmd" ] || die "usage: cluster.sh start|status|stop [options] (see the comment at the top)"
shift
N=3
DIR=${CSA_CLUSTER_DIR:-/tmp/csa-cluster}
PORT=8000
CSA=
HISTORY=
CLEAN=0
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=$2; shift 2 ;;
	-d) DIR=$2; shift 2 ;;
	-p) PORT=$2; shift 2 ;;
	-c) CSA=$2; shift 2 ;;
	-H) HISTORY=$2; shift 2 ;;
	--clean) CLEAN=1; shift ;;
	*) die "unknown option '$1'" ;;
	esac
done
case $N in '' | *[!0-9]*) die "-n wants a number of nodes, not '$N'" ;; esac
[ "$N" -ge 1 ] && [ "$N" -le 50 ] || die "-n: 1 to 50 nodes, not $N"
case $PORT in '' | *[!0-9]*) die "-p wants a port number, not '$PORT'" ;; esac
[ "$PORT" -ge 1024 ] && [ "$PORT" -le 65000 ] || die "-p: a port from 1024 to 65000, not $PORT"

here=$(cd "$(dirname "$0")/.." && pwd)
# only start runs csa; status and stop work from cluster.env and the pids
if [ "$cmd" = start ] && [ -z "$CSA" ]; then
	for c in "$here/build/csa" "$here/build-release/csa" "$(command -v csa 2>/dev/null || true)"; do
		[ -n "$c" ] && [ -x "$c" ] && { CSA=$c; break; }
	done
	[ -n "$CSA" ] || die "no csa binary found: build it (make) or give -c PATH"
fi
[ -z "$CSA" ] || CSA=$(cd "$(dirname "$CSA")" && pwd)/$(basename "$CSA")

# as_pg CMD...: run a PostgreSQL binary as the postgres user when root
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

tail_of() {
	[ -f "$1" ] && tail -n 5 "$1" | sed 's/^/    /' >&2 || true
}

# wait_ready URL LOG WHAT: until URL answers 200, at most 60 s
wait_ready() {
	i=0
	until curl -sf -o /dev/null "$1"; do
		i=$((i + 1))
		if [ $i -gt 600 ]; then
			echo "cluster.sh: $3 did not become ready at $1 within 60 s; its log:" >&2
			tail_of "$2"
			return 1
		fi
		sleep 0.1
	done
}

# stop_all: whatever of a cluster in DIR runs, from its pid files
stop_all() {
	[ -f "$DIR/haproxy.pid" ] && kill "$(cat "$DIR/haproxy.pid")" 2>/dev/null || true
	for f in "$DIR"/node*.pid; do
		[ -f "$f" ] || continue
		kill "$(cat "$f")" 2>/dev/null || true
	done
	for f in "$DIR"/node*.pid; do
		[ -f "$f" ] || continue
		p=$(cat "$f")
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
		kill -9 "$p" 2>/dev/null || true
		rm -f "$f"
	done
	[ -f "$DIR/redis.pid" ] && kill "$(cat "$DIR/redis.pid")" 2>/dev/null || true
	rm -f "$DIR/redis.pid" "$DIR/haproxy.pid"
	if [ -f "$DIR/pg/data/postmaster.pid" ] && [ -n "$PGBIN" ]; then
		as_pg "$PGBIN/pg_ctl" -D "$DIR/pg/data" -m fast -w stop >/dev/null 2>&1 || true
	fi
	rm -f "$DIR/cluster.env"
}

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)

case $cmd in
stop)
	stop_all
	[ $CLEAN -eq 1 ] && rm -rf "$DIR"
	exit 0
	;;
status)
	[ -f "$DIR/cluster.env" ] || die "no cluster in $DIR (cluster.sh start first)"
	# shellcheck disable=SC1091
	. "$DIR/cluster.env"
	rc=0
	printf '%-10s %-28s %s\n' "what" "url" "/readyz"
	for u in "$CSA_URL" $CSA_NODE_URLS; do
		s=$(curl -s -o /dev/null -w '%{http_code}' "$u/readyz" || true)
		[ "$s" = 200 ] || rc=1
		w=node
		[ "$u" = "$CSA_URL" ] && w=haproxy
		printf '%-10s %-28s %s\n' "$w" "$u" "$s"
	done
	exit $rc
	;;
start) ;;
*) die "unknown command '$cmd': start, status or stop" ;;
esac

# ---- start ---------------------------------------------------------------
[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] ||
	die "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin (./scripts/deps.sh installs postgresql)"
command -v haproxy >/dev/null || die "haproxy not installed (CSA_DEPS_CLUSTER=1 ./scripts/deps.sh)"
command -v curl >/dev/null || die "curl not installed (./scripts/deps.sh)"
[ "$(id -u)" -ne 0 ] || id postgres >/dev/null 2>&1 ||
	die "running as root needs the postgres user the postgresql package creates"
if [ -f "$DIR/cluster.env" ]; then
	die "a cluster is already in $DIR (cluster.sh stop -d $DIR first, --clean to remove it)"
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# the postgres user must reach its data directory; nothing else is readable
chmod 0711 "$DIR"
# A start that fails stops what it started and removes the database cluster
# it created (empty but for a failed import), so that the same command can
# run again, say with another -p after a port was taken in the meantime.
PG_CREATED=0
trap 'st=$?; [ $st -ne 0 ] && { echo "cluster.sh: start failed; stopping what started" >&2; stop_all; [ $PG_CREATED -eq 0 ] || rm -rf "$DIR/pg/data"; }; exit $st' EXIT

PGPORT=$((PORT + 100))
REDISPORT=$((PORT + 101))
for p in $PORT $PGPORT $REDISPORT $(seq $((PORT + 1)) $((PORT + N))); do
	# curl's exit status 7 is "connection refused": nothing listens there
	st=0
	curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/" 2>/dev/null || st=$?
	[ $st -eq 7 ] || die "port $p on 127.0.0.1 is in use: choose another base with -p"
done

# PostgreSQL: a private server in DIR/pg, password authentication on
# loopback, a role and database of the spec's names (§8.1)
mkdir -p "$DIR/pg"
[ "$(id -u)" -eq 0 ] && chown postgres "$DIR/pg"
chmod 0700 "$DIR/pg"
PGPASS=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | cut -c1-20)
umask 077
printf '%s\n' "$PGPASS" >"$DIR/pg/pwfile"
[ "$(id -u)" -eq 0 ] && chown postgres "$DIR/pg/pwfile"
as_pg "$PGBIN/initdb" -D "$DIR/pg/data" -U postgres --pwfile="$DIR/pg/pwfile" \
	--auth-local=scram-sha-256 --auth-host=scram-sha-256 >"$DIR/pg/initdb.log" 2>&1 ||
	{ tail_of "$DIR/pg/initdb.log"; die "initdb of $DIR/pg/data failed"; }
PG_CREATED=1
as_pg "$PGBIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/server.log" -w \
	-o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $DIR/pg -c max_connections=200" \
	start >/dev/null 2>&1 ||
	{ tail_of "$DIR/pg/server.log"; die "PostgreSQL did not start on 127.0.0.1:$PGPORT"; }
PGPASSWORD=$PGPASS "$PGBIN/psql" -q -h 127.0.0.1 -p $PGPORT -U postgres -d postgres \
	-v ON_ERROR_STOP=1 >"$DIR/pg/setup.log" 2>&1 <<SQL ||
CREATE ROLE cs_user LOGIN PASSWORD '$PGPASS';
CREATE DATABASE cs_ai_system OWNER cs_user;
SQL
	{ tail_of "$DIR/pg/setup.log"; die "creating the role and database failed"; }
DATABASE_URL="postgresql://cs_user:$PGPASS@127.0.0.1:$PGPORT/cs_ai_system"
export DATABASE_URL

# Redis, when installed
REDIS_URL=
if command -v redis-server >/dev/null; then
	mkdir -p "$DIR/redis"
	redis-server --port $REDISPORT --bind 127.0.0.1 --dir "$DIR/redis" --save "" \
		--appendonly no --daemonize yes --pidfile "$DIR/redis.pid" \
		--logfile "$DIR/redis/redis.log" >/dev/null ||
		{ tail_of "$DIR/redis/redis.log"; die "redis-server did not start on 127.0.0.1:$REDISPORT"; }
	REDIS_URL="redis://127.0.0.1:$REDISPORT/0"
	export REDIS_URL
fi

# the nodes' workspaces: the first one applies the schema migrations
for i in $(seq 1 "$N"); do
	"$CSA" init "$DIR/node$i" >"$DIR/node$i.init.log" 2>&1 ||
		{ tail_of "$DIR/node$i.init.log"; die "csa init of node $i failed"; }
done
if [ -n "$HISTORY" ]; then
	"$CSA" --dir "$DIR/node1" import "$HISTORY" >"$DIR/import.log" 2>&1 ||
		{ tail_of "$DIR/import.log"; die "importing '$HISTORY' failed"; }
fi
TOKEN=$("$CSA" --dir "$DIR/node1" token create --role admin --name cluster |
	sed -n 's/.*"token": "\(.*\)".*/\1/p')
[ -n "$TOKEN" ] || die "could not create an admin token"

NODE_URLS=
for i in $(seq 1 "$N"); do
	np=$((PORT + i))
	setsid "$CSA" --dir "$DIR/node$i" serve --port $np --bind 127.0.0.1 \
		>"$DIR/node$i.log" 2>&1 </dev/null &
	echo $! >"$DIR/node$i.pid"
	NODE_URLS="$NODE_URLS http://127.0.0.1:$np"
done
for i in $(seq 1 "$N"); do
	wait_ready "http://127.0.0.1:$((PORT + i))/readyz" "$DIR/node$i.log" "node $i"
done

# HAProxy: round robin over the nodes that answer /readyz; SSE streams
# (the live events) stay open for an hour
{
	cat <<CFG
global
	pidfile $DIR/haproxy.pid
	maxconn 4000
defaults
	mode http
	timeout connect 2s
	timeout client 60s
	timeout server 60s
	timeout tunnel 1h
	retries 2
	option redispatch
frontend csa
	bind 127.0.0.1:$PORT
	default_backend nodes
backend nodes
	balance roundrobin
	option httpchk GET /readyz
	http-check expect status 200
CFG
	for i in $(seq 1 "$N"); do
		printf '\tserver node%d 127.0.0.1:%d check inter 1s fall 2 rise 1\n' "$i" $((PORT + i))
	done
} >"$DIR/haproxy.cfg"
haproxy -c -q -f "$DIR/haproxy.cfg" >"$DIR/haproxy.log" 2>&1 ||
	{ tail_of "$DIR/haproxy.log"; die "haproxy refused $DIR/haproxy.cfg"; }
haproxy -D -f "$DIR/haproxy.cfg" >>"$DIR/haproxy.log" 2>&1 ||
	{ tail_of "$DIR/haproxy.log"; die "haproxy did not start on 127.0.0.1:$PORT"; }
wait_ready "http://127.0.0.1:$PORT/readyz" "$DIR/haproxy.log" "HAProxy"

cat >"$DIR/cluster.env" <<ENV
# csa cluster started $(date -u +%Y-%m-%dT%H:%M:%SZ) by scripts/cluster.sh
DATABASE_URL='$DATABASE_URL'
REDIS_URL='$REDIS_URL'
CSA_URL='http://127.0.0.1:$PORT'
CSA_NODE_URLS='$(echo $NODE_URLS)'
CSA_TOKEN='$TOKEN'
CSA_NODES=$N
export DATABASE_URL REDIS_URL CSA_URL CSA_NODE_URLS CSA_TOKEN
ENV
trap - EXIT
echo "csa cluster: $N node(s) behind http://127.0.0.1:$PORT (PostgreSQL 127.0.0.1:$PGPORT${REDIS_URL:+, Redis 127.0.0.1:$REDISPORT})"
echo "  . $DIR/cluster.env   # DATABASE_URL, CSA_URL, CSA_TOKEN (admin) for csa and curl"
echo "  scripts/cluster.sh status -d $DIR ; scripts/cluster.sh stop -d $DIR [--clean]"
