#!/bin/sh
# make run: a demo workspace from the generator (history imported, models
# trained), `csa serve` on port 8000 (PORT to change it) with a simulated
# stream of new tickets arriving through the API, the dashboard URL and an
# admin token printed. Ctrl-C stops everything.
set -eu
CSA=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
WS=${CSA_HOME:-demo-ws}
PORT=${PORT:-8000}

if [ ! -f "$WS/csa.json" ]; then
	"$CSA" init "$WS" >/dev/null
	echo "make run: generating 3000 past tickets and training the models..." >&2
	"$CSA" demo-data --tickets 3000 --seed 42 --out "$WS/history.jsonl"
	"$CSA" import "$WS/history.jsonl" --dir "$WS" >"$WS/import-report.json"
	# each decision type's model, with what it was measured on
	awk -F'[":, ]+' '/^    "[a-z_]+": \{/ { type = $2 }
		/"heldout_accuracy"/ { acc = $3 }
		/"heldout_n"/ { printf "  %-10s model: held-out accuracy %.3f on %d tickets\n", type, acc, $3 }' \
		"$WS/import-report.json" >&2
fi
ADMIN=$("$CSA" token create --role admin --name demo-admin --dir "$WS" | sed -n 's/.*"token": "\(.*\)".*/\1/p')
AGENT=$("$CSA" token create --role agent --name demo-stream --dir "$WS" | sed -n 's/.*"token": "\(.*\)".*/\1/p')

"$CSA" serve --dir "$WS" --port "$PORT" &
SERVER=$!
trap 'kill $SERVER $STREAM 2>/dev/null; wait $SERVER 2>/dev/null' INT TERM EXIT

# new tickets arrive every few seconds, as a support inbox would
"$CSA" demo-data --tickets 500 --seed "$(date +%s)" --stream --out "$WS/stream.jsonl"
(
	sleep 2
	while IFS= read -r ticket; do
		curl -s -o /dev/null -H "Authorization: Bearer $AGENT" \
			-H 'Content-Type: application/json' --data "$ticket" \
			"http://127.0.0.1:$PORT/api/tickets" || true
		sleep 4
	done <"$WS/stream.jsonl"
) &
STREAM=$!

sleep 1
cat <<MSG

  csa is running.
  Dashboard:    http://127.0.0.1:$PORT/
  Admin token:  $ADMIN
  (paste the token in the dashboard; new tickets arrive every 4 seconds)
  Stop with Ctrl-C.

MSG
wait $SERVER
