#!/bin/bash
# Four reviewers decide the same open review task at once, on TASKS tasks
# of a generated workspace served on a free loopback port: how many of the
# four were told their decision won (exactly one may), and how many
# decisions the tasks' rows hold afterwards. Usage:
#   bench/decide-race.sh build/csa [TASKS] [TICKETS]
set -eu
CSA=$(realpath "$1")
TASKS=${2:-15}
TICKETS=${3:-600}
WS=$(mktemp -d /tmp/csa-race.XXXXXX)
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$WS"' EXIT
"$CSA" init "$WS/ws" >/dev/null
"$CSA" demo-data --tickets "$TICKETS" --seed 7 --out "$WS/h.jsonl" >/dev/null
"$CSA" --dir "$WS/ws" import "$WS/h.jsonl" >/dev/null
for i in $(seq 1 "$TASKS"); do
	printf '{"ticket_id": "RACE%d", "client_name": "Ann", "messages": [{"content": "I was charged twice for my order %d"}]}\n' "$i" "$i" |
		"$CSA" --dir "$WS/ws" ingest --json - >/dev/null
done
TOKEN=$("$CSA" --dir "$WS/ws" token create --role agent --name race | sed -n 's/.*"token": "\(.*\)".*/\1/p')
PORT=$(( (RANDOM % 20000) + 30000 ))
"$CSA" --dir "$WS/ws" serve --port "$PORT" >"$WS/serve.log" 2>&1 &
PID=$!
H=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -sf "$H/healthz" >/dev/null && break; sleep 0.1; done
TASK_IDS=$(curl -s -H "Authorization: Bearer $TOKEN" "$H/api/reviews?status=open&limit=$TASKS" |
	grep -o '"task_id": *[0-9]*' | grep -o '[0-9]*$' | head -n "$TASKS")
won_hist=(0 0 0 0 0)
for t in $TASK_IDS; do
	labels=$(curl -s -H "Authorization: Bearer $TOKEN" "$H/api/reviews?status=open&limit=1000" |
		tr '{' '\n' | grep "\"task_id\": *$t," | sed 's/.*"labels": *\[\([^]]*\)\].*/\1/' | tr -d '" ' | tr ',' ' ')
	set -- $labels
	for k in 1 2 3 4; do
		v=${!k:-$1}
		curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $TOKEN" \
			-H 'Content-Type: application/json' -d "{\"value\": \"$v\"}" \
			"$H/api/reviews/$t/decide" >"$WS/r.$t.$k" &
	done
	wait $(jobs -p | grep -v "^$PID$") 2>/dev/null || true
	won=$(cat "$WS"/r."$t".* | grep -c '^200$' || true)
	won_hist[$won]=$(( ${won_hist[$won]} + 1 ))
done
echo "tasks: $(echo $TASK_IDS | wc -w), four concurrent decides each"
for w in 0 1 2 3 4; do
	echo "  tasks where $w of 4 answered 200: ${won_hist[$w]}"
done
