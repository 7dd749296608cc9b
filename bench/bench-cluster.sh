#!/bin/sh
# make bench-cluster: tickets per second through the full pipeline,
# durable, with 1, 2 and 3 csa nodes on one PostgreSQL behind HAProxy
# (scripts/cluster.sh), next to the single-host file mode on the same
# machine; p50/p99 per row; and GET /api/tickets/{id} requests per second.
# Every row starts from the same 3,000 tickets of labelled history (models
# trained on it). Prints one table; nothing passes or fails.
#
# Environment: BENCH_SECONDS (per measurement, default 15),
# BENCH_CONNECTIONS (POST clients, default 8), BENCH_NODES (default "1 2 3").
set -eu
CSA=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "$0")/.." && pwd)
DUR=${BENCH_SECONDS:-15}
CONN=${BENCH_CONNECTIONS:-8}
NODES=${BENCH_NODES:-1 2 3}
command -v wrk >/dev/null || { echo "bench-cluster: wrk not installed (CSA_DEPS_BENCH=1 ./scripts/deps.sh)" >&2; exit 1; }
unset DATABASE_URL REDIS_URL || true
T=$(mktemp -d /tmp/csa-bench-cluster-XXXXXX)
chmod 0711 "$T"
PID=
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	for d in "$T"/c*; do
		[ -d "$d" ] && "$here/scripts/cluster.sh" stop -d "$d" >/dev/null 2>&1
	done
	rm -rf "$T"
}
trap cleanup EXIT

"$CSA" demo-data --tickets 3000 --seed 1 --out "$T/h.jsonl" >/dev/null
# no rate limit for the benchmark's token, on every node
echo '{"server": {"rate_per_second": 0}}' >"$T/over.json"
export MODEL_CONFIG_PATH="$T/over.json"

cat >"$T/post.lua" <<'LUA'
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
counter = 0
request = function()
  counter = counter + 1
  local body = '{"ticket_id": "RUN-' .. tid .. '-' .. counter .. '", "client_name": "Load", "customer": {"subscription_tier": "STANDARD"}, "messages": [{"content": "I was charged twice for invoice INV-1234, please refund"}]}'
  return wrk.format("POST", "/api/tickets", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer TOKEN"}, body)
end
LUA

# measure LABEL URL TOKEN: one row
measure() {
	label=$1 url=$2 token=$3
	sed "s/TOKEN/$token/; s/RUN/$(date +%s%N)/" "$T/post.lua" >"$T/run.lua"
	wrk -t2 -c"$CONN" -d"${DUR}s" --latency -s "$T/run.lua" "$url" >"$T/post.txt"
	rps=$(awk '/Requests\/sec/ {print $2}' "$T/post.txt")
	p50=$(awk '$1 == "50%" {print $2}' "$T/post.txt")
	p99=$(awk '$1 == "99%" {print $2}' "$T/post.txt")
	bad=$(awk '/Non-2xx/ {print $5}' "$T/post.txt")
	wrk -t2 -c32 -d"${DUR}s" -H "Authorization: Bearer $token" \
		"$url/api/tickets/H000042" >"$T/get.txt"
	get=$(awk '/Requests\/sec/ {print $2}' "$T/get.txt")
	printf '%-34s %10s %10s %10s %8s %12s\n' "$label" "$rps" "$p50" "$p99" "${bad:-0}" "$get"
}

printf '%-34s %10s %10s %10s %8s %12s\n' "setup" "tickets/s" "p50" "p99" "non-2xx" "GET/s"

# the single-host file mode: one node, no proxy
"$CSA" init "$T/files" >/dev/null
"$CSA" --dir "$T/files" import "$T/h.jsonl" >/dev/null
TOKEN=$("$CSA" --dir "$T/files" token create --role admin | sed -n 's/.*"token": "\(.*\)".*/\1/p')
PORT=18860
"$CSA" --dir "$T/files" serve --port $PORT >"$T/files.log" 2>&1 &
PID=$!
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do sleep 0.1; done
measure "files + SQLite, 1 node" "http://127.0.0.1:$PORT" "$TOKEN"
kill "$PID"
wait "$PID" || true
PID=

for n in $NODES; do
	"$here/scripts/cluster.sh" start -n "$n" -p 18900 -d "$T/c$n" -c "$CSA" -H "$T/h.jsonl" >/dev/null
	# shellcheck disable=SC1090
	. "$T/c$n/cluster.env"
	measure "PostgreSQL, $n node(s) + HAProxy" "$CSA_URL" "$CSA_TOKEN"
	"$here/scripts/cluster.sh" stop -d "$T/c$n" --clean >/dev/null
done
echo "($(nproc) cores; POST: $CONN connections, GET: 32, ${DUR} s each; $(uname -r))"
