#!/bin/sh
# make bench-server: the HTTP service under load on loopback (wrk from
# Debian). Prints one table; nothing passes or fails.
#   - startup time to /readyz (first start after the import, which left the
#     history index behind, and a restart) and resident memory with N
#     tickets (100,000)
#   - GET /api/metrics: the first request, and the median of the next five
#   - GET /api/tickets/{id} requests per second
#   - the inbox: the first page of GET /api/tickets under each of a dozen
#     filters and sorts (median of 5 each; the worst median and the worst
#     single request; the goal is 100 ms)
#   - POST /api/tickets (full pipeline, durable): peak rate and latency with
#     wrk, then latency at a fixed rate (BENCH_RATE/s for BENCH_RATE_SECONDS,
#     open loop, measured from when each request was due: bench_loadgen.c)
set -eu
CSA=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
LOADGEN=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
RATE=${BENCH_RATE:-200}
RATE_DUR=${BENCH_RATE_SECONDS:-60}
N=${BENCH_TICKETS:-100000}
DUR=${BENCH_SECONDS:-20}
command -v wrk >/dev/null || { echo "bench-server: wrk not installed (CSA_DEPS_BENCH=1 ./scripts/deps.sh)" >&2; exit 1; }
WS=$(mktemp -d /tmp/csa-bench-server-XXXXXX)
PID=
# the server finishes its in-flight requests before the workspace goes
trap '[ -n "$PID" ] && kill $PID 2>/dev/null && wait $PID 2>/dev/null; rm -rf "$WS"' EXIT
"$CSA" init "$WS" >/dev/null
"$CSA" demo-data --tickets 3000 --seed 1 --out "$WS/h.jsonl"
"$CSA" import "$WS/h.jsonl" --dir "$WS" >/dev/null
"$CSA" demo-data --tickets "$N" --seed 2 --out "$WS/bulk.jsonl"
"$CSA" import "$WS/bulk.jsonl" --no-train --dir "$WS" >/dev/null 2>&1 || true
TOKEN=$("$CSA" token create --role admin --dir "$WS" | sed -n 's/.*"token": "\(.*\)".*/\1/p')
# no rate limit for the benchmark's token
sed -i 's/"server": {/"server": {"rate_per_second": 0, /' "$WS/csa.json"
PORT=18765
START=$(date +%s.%N)
"$CSA" serve --dir "$WS" --port $PORT >/dev/null 2>&1 &
PID=$!
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do sleep 0.05; done
READY=$(echo "$(date +%s.%N) - $START" | bc -l)
# a restart: the history index saved at the first stop is reused
kill $PID
wait $PID || true
START=$(date +%s.%N)
"$CSA" serve --dir "$WS" --port $PORT >/dev/null 2>&1 &
PID=$!
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do sleep 0.05; done
RESTART=$(echo "$(date +%s.%N) - $START" | bc -l)
RSS=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
TICKETS=$(ls "$WS/Tickets/tickets" | wc -l)

# the inbox: the first request waits for the index's first catch-up
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/tickets?limit=1"
INBOX_MED=0
INBOX_MAX=0
for args in "" "sort=sla_due" "sort=priority" "status=active" "priority=CRITICAL" \
	"category=BILLING_INQUIRY" "sla=breached" "sla=at_risk" "sla=on_time&sort=sla_due" \
	"review=true" "autonomous=true" "assigned=nobody&sort=priority" "q=refund" \
	"q=charged%20twice&sort=priority" "q=zqxnothing"; do
	for k in 1 2 3 4 5; do
		curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" \
			"http://127.0.0.1:$PORT/api/tickets?limit=50&$args"
	done | sort -n >"$WS/inbox.txt"
	MED=$(sed -n 3p "$WS/inbox.txt")
	MAX=$(sed -n 5p "$WS/inbox.txt")
	INBOX_MED=$(echo "if ($MED > $INBOX_MED) $MED else $INBOX_MED" | bc -l)
	INBOX_MAX=$(echo "if ($MAX > $INBOX_MAX) $MAX else $INBOX_MAX" | bc -l)
done

# the KPIs, which the metrics page asks for every 5 s: the first request
# reads every ticket, the next ones only what was committed since
metrics() {
	curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" \
		"http://127.0.0.1:$PORT/api/metrics"
}
METRICS_FIRST=$(metrics)
METRICS_NEXT=$(for k in 1 2 3 4 5; do metrics; done | sort -n | sed -n 3p)

wrk -t2 -c32 -d${DUR}s -H "Authorization: Bearer $TOKEN" \
	"http://127.0.0.1:$PORT/api/tickets/H000042" >"$WS/get.txt"
GET_RPS=$(awk '/Requests\/sec/ {print $2}' "$WS/get.txt")

cat >"$WS/post.lua" <<'LUA'
counter = 0
request = function()
  counter = counter + 1
  local body = '{"ticket_id": "W' .. math.random(1, 1000000000) .. '-' .. counter .. '", "client_name": "Load", "customer": {"subscription_tier": "STANDARD"}, "messages": [{"content": "I was charged twice for invoice INV-1234, please refund"}]}'
  return wrk.format("POST", "/api/tickets", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer TOKEN"}, body)
end
LUA
sed -i "s/TOKEN/$TOKEN/" "$WS/post.lua"
wrk -t1 -c4 -d${DUR}s --latency -s "$WS/post.lua" "http://127.0.0.1:$PORT" >"$WS/post.txt"
POST_RPS=$(awk '/Requests\/sec/ {print $2}' "$WS/post.txt")
P50=$(awk '$1 == "50%" {print $2}' "$WS/post.txt")
P99=$(awk '$1 == "99%" {print $2}' "$WS/post.txt")

FIXED=$("$LOADGEN" "http://127.0.0.1:$PORT/api/tickets" "$TOKEN" "$RATE" "$RATE_DUR" || true)

printf '%-44s %s\n' "tickets in the workspace" "$TICKETS"
printf '%-44s %.2f s\n' "first start to /readyz (after the import)" "$READY"
printf '%-44s %.2f s\n' "restart to /readyz" "$RESTART"
printf '%-44s %s MB\n' "resident memory after start" "$((RSS / 1024))"
printf '%-44s %.1f / %.1f ms\n' "GET /api/tickets first page, 15 filters" \
	"$(echo "$INBOX_MED * 1000" | bc -l)" "$(echo "$INBOX_MAX * 1000" | bc -l)"
printf '%-44s\n' "  (worst median / worst single request)"
printf '%-44s %.1f / %.1f ms\n' "GET /api/metrics first / next (median of 5)" \
	"$(echo "$METRICS_FIRST * 1000" | bc -l)" "$(echo "$METRICS_NEXT * 1000" | bc -l)"
printf '%-44s %s\n' "GET /api/tickets/{id} requests/s (32 conn)" "$GET_RPS"
printf '%-44s %s\n' "POST /api/tickets (pipeline) requests/s" "$POST_RPS"
printf '%-44s %s / %s\n' "POST latency p50 / p99 (4 conn, max rate)" "$P50" "$P99"
printf '%-44s %s\n' "POST at a fixed ${RATE}/s for ${RATE_DUR} s" "$FIXED"
