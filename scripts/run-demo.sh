#!/bin/sh
# make run: a demo workspace built by replaying generated history (`csa
# replay --workdir`: the models trained on the first 500 tickets, then the
# rest decided as they would have been, a simulated team reviewing, the
# phases earned along the way; the history ends now, so the charts have a
# past), then `csa serve` on port 8000 (PORT to change it) with a
# simulated stream of new tickets arriving through the API (every ARRIVAL
# seconds, 2) and a simulated review team working the queue (`csa
# demo-team`, right with probability TEAM_ACCURACY, 0.95), so the gates
# see decisions and reviews and automation grows while one watches: the
# controller ticks every 10 s and may advance the workspace phase
# (demo-config.json). The dashboard URL and an admin token are printed.
# Ctrl-C stops everything.
set -eu
CSA=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
WS=${CSA_HOME:-demo-ws}
PORT=${PORT:-8000}

if [ ! -f "$WS/csa.json" ]; then
	echo "make run: replaying 3000 past tickets (about half a minute)..." >&2
	HISTORY=$(mktemp)
	# the generator spaces tickets by minutes: its history is placed so
	# that its last ticket arrived a few minutes ago
	"$CSA" demo-data --tickets 3000 --seed 42 --out "$HISTORY"
	LAST=$(tail -n 1 "$HISTORY" | sed -n 's/^.*"created_at":"\([^"]*\)".*$/\1/p')
	SPAN=$(($(date -u -d "$LAST" +%s) - $(date -u -d 2026-01-01T00:00:00Z +%s)))
	START=$(date -u -d "@$(($(date +%s) - SPAN - 300))" +%Y-%m-%dT%H:%M:%S.000Z)
	"$CSA" demo-data --tickets 3000 --seed 42 --start "$START" --out "$HISTORY"
	# the phase journey of the replay, and where it ended
	"$CSA" replay --data "$HISTORY" --workdir "$WS" --quiet >&2 || {
		rm -f "$HISTORY"
		exit 1
	}
	rm -f "$HISTORY"
fi
ADMIN=$("$CSA" token create --role admin --name demo-admin --dir "$WS" | sed -n 's/.*"token": "\(.*\)".*/\1/p')
AGENT=$("$CSA" token create --role agent --name demo-stream --dir "$WS" | sed -n 's/.*"token": "\(.*\)".*/\1/p')

ARRIVAL=${ARRIVAL:-2}
TEAM_ACCURACY=${TEAM_ACCURACY:-0.95}
# the demo's pace: the controller every 10 s instead of every minute, and
# the gates may move the workspace phase (a team decides that itself)
printf '{"automation": {"tick_seconds": 10, "advance_workspace": true}}\n' >"$WS/demo-config.json"
MODEL_CONFIG_PATH="$WS/demo-config.json" "$CSA" serve --dir "$WS" --port "$PORT" &
SERVER=$!
STREAM=
TEAM=
trap 'kill $SERVER $STREAM $TEAM 2>/dev/null; wait $SERVER 2>/dev/null' INT TERM EXIT

# new tickets arrive every few seconds, as a support inbox would, with
# what a person would decide for each, for the simulated team
"$CSA" demo-data --tickets 2000 --seed "$(date +%s)" --stream --out "$WS/stream.jsonl" \
	--answers "$WS/answers.jsonl"
(
	sleep 2
	while IFS= read -r ticket; do
		curl -s -o /dev/null -H "Authorization: Bearer $AGENT" \
			-H 'Content-Type: application/json' --data "$ticket" \
			"http://127.0.0.1:$PORT/api/tickets" || true
		sleep "$ARRIVAL"
	done <"$WS/stream.jsonl"
) &
STREAM=$!
(
	sleep 2 # the server listening
	CSA_TOKEN=$AGENT exec "$CSA" demo-team --url "http://127.0.0.1:$PORT" \
		--answers "$WS/answers.jsonl" --accuracy "$TEAM_ACCURACY" --pace 0.4 >/dev/null
) &
TEAM=$!

sleep 1
cat <<MSG

  csa is running.
  Dashboard:    http://127.0.0.1:$PORT/
  Admin token:  $ADMIN
  (paste the token in the dashboard: the inbox lists the tickets, a new one
  arrives every $ARRIVAL s, and a simulated review team decides the queue:
  watch the Phase page)
  Stop with Ctrl-C.

MSG
wait $SERVER
