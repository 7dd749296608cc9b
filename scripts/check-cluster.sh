#!/bin/sh
# ctest check_cluster: scripts/cluster.sh as a user runs it, and a node
# killed under load. Two csa nodes on one private PostgreSQL behind
# HAProxy; tickets are posted through HAProxy from four clients, review
# tasks decided by a fifth and follow-up messages written by a sixth,
# while node 1 is killed with SIGKILL. Every ticket acknowledged (201) must
# then be served, whole, through HAProxy and by the surviving node, with
# its decisions in the audit ledger; every acknowledged review must be
# done and audited, every acknowledged message in its ticket; and `csa
# verify` and `csa audit verify` must pass on the database. Then `cluster.sh stop --clean` leaves nothing.
#
# Usage: scripts/check-cluster.sh CSA
set -eu
CSA=$1
here=$(cd "$(dirname "$0")/.." && pwd)
DIR=$(mktemp -d /tmp/csa-check-cluster-XXXXXX)
fail() {
	echo "check-cluster: $*" >&2
	for f in "$DIR"/node*.log "$DIR"/haproxy.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; tail -n 5 "$f" >&2; }
	done
	exit 1
}
trap '"$here/scripts/cluster.sh" stop -d "$DIR" --clean >/dev/null 2>&1 || true; rm -f "$DIR.history.jsonl" "$DIR.start.log"' EXIT

# labelled history, so the nodes' models decide (and audit) every ticket
"$CSA" demo-data --tickets 300 --seed 5 --out "$DIR.history.jsonl" >/dev/null ||
	fail "csa demo-data failed"
# a free base port: the script refuses one in use. On the first port that
# is free, a start whose import fails must leave DIR so that the same start
# runs again there (it once left its database cluster behind, and initdb
# refused the retry).
base=
failed_once=0
for try in 1 2 3 4 5 6 7 8; do
	p=$((20000 + ($$ * 7 + try * 997) % 30000))
	if [ $failed_once -eq 0 ]; then
		if "$here/scripts/cluster.sh" start -n 2 -p $p -d "$DIR" -c "$CSA" -H "$DIR.missing.jsonl" >"$DIR.start.log" 2>&1; then
			fail "cluster.sh start with a missing history file succeeded"
		fi
		grep -q "in use" "$DIR.start.log" && continue
		grep -q "importing '$DIR.missing.jsonl' failed" "$DIR.start.log" ||
			{ cat "$DIR.start.log" >&2; fail "cluster.sh start failed otherwise than on the missing history"; }
		[ ! -e "$DIR/pg/data" ] || fail "a failed start left its database cluster in $DIR/pg/data"
		[ ! -e "$DIR/cluster.env" ] || fail "a failed start left $DIR/cluster.env"
		failed_once=1
	fi
	if "$here/scripts/cluster.sh" start -n 2 -p $p -d "$DIR" -c "$CSA" -H "$DIR.history.jsonl" >"$DIR.start.log" 2>&1; then
		base=$p
		break
	fi
	grep -q "in use" "$DIR.start.log" || { cat "$DIR.start.log" >&2; rm -f "$DIR.start.log"; fail "cluster.sh start failed"; }
done
rm -f "$DIR.start.log"
[ -n "$base" ] || fail "no free ports found for the cluster"
# shellcheck disable=SC1091
. "$DIR/cluster.env"
"$here/scripts/cluster.sh" status -d "$DIR" >/dev/null || fail "status: a node is not ready"

# tickets whose review tasks people decide, and to which customers write
# again, while node 1 dies
api() { # METHOD PATH [BODY]: the status code; the body in $DIR/body
	curl -s -o "$DIR/body" -w '%{http_code}' --max-time 30 -X "$1" \
		-H "Authorization: Bearer $CSA_TOKEN" -H 'Content-Type: application/json' \
		${3:+-d "$3"} "$CSA_URL$2" || true
}
k=0
while [ $k -lt 12 ]; do
	k=$((k + 1))
	[ "$(api POST /api/tickets "{\"ticket_id\":\"R$k\",\"client_name\":\"Ann\",\"messages\":[{\"content\":\"the app crashes at login $k\"}]}")" = 201 ] ||
		fail "ticket R$k not created before the kill"
done
[ "$(api GET '/api/reviews?status=open&limit=500')" = 200 ] || fail "cannot list the review tasks"
grep -o '"task_id":[0-9]*,"decision_id":"[^"]*","ticket_id":"R[0-9]*","decision_type":"priority"' "$DIR/body" |
	sed 's/"task_id":\([0-9]*\).*"ticket_id":"\([^"]*\)".*/\1 \2/' >"$DIR/tasks"
[ "$(wc -l <"$DIR/tasks")" -ge 12 ] || fail "expected a priority task per R ticket, found $(wc -l <"$DIR/tasks")"
decide() {
	while read -r task ticket; do
		[ "$(api POST "/api/reviews/$task/decide" '{"value":"LOW","decision_ms":1000}')" = 200 ] &&
			echo "$task $ticket" >>"$DIR/decided"
	done <"$DIR/tasks"
}
write_again() {
	k=0
	while [ $k -lt 12 ]; do
		k=$((k + 1))
		[ "$(api POST "/api/tickets/R$k/messages" "{\"side\":\"external\",\"message\":{\"content\":\"still broken, take $k\",\"message_id\":\"again-$k\"}}")" = 201 ] &&
			echo "R$k" >>"$DIR/written"
	done
}

# four clients post tickets through HAProxy, one decides reviews and one
# writes follow-ups; node 1 dies in the middle
post() {
	c=$1
	k=0
	while [ $k -lt 30 ]; do
		k=$((k + 1))
		id="K$c-$k"
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -X POST \
			-H "Authorization: Bearer $CSA_TOKEN" -H 'Content-Type: application/json' \
			-d "{\"ticket_id\":\"$id\",\"client_name\":\"Kim\",\"messages\":[{\"content\":\"my card $id was charged twice\"}]}" \
			"$CSA_URL/api/tickets" || true)
		[ "$code" = 201 ] && echo "$id" >>"$DIR/acked.$c"
	done
}
for c in 1 2 3 4; do post $c & done
decide &
write_again &
sleep 1
kill -9 "$(cat "$DIR/node1.pid")"
wait
acked=$(cat "$DIR"/acked.* 2>/dev/null | wc -l)
[ "$acked" -ge 60 ] || fail "only $acked of 120 tickets acknowledged with node 2 alive"

# every acknowledged ticket, through HAProxy and from node 2
node2=$(echo "$CSA_NODE_URLS" | cut -d' ' -f2)
for id in $(cat "$DIR"/acked.*); do
	for u in "$CSA_URL" "$node2"; do
		got=$(curl -sf -H "Authorization: Bearer $CSA_TOKEN" "$u/api/tickets/$id" |
			sed -n 's/.*"ticket_id":"\([^"]*\)".*/\1/p' | head -n 1) ||
			fail "acknowledged ticket $id not served by $u"
		[ "$got" = "$id" ] || fail "$u served '$got' for acknowledged ticket $id"
	done
done
"$CSA" --dir "$DIR/node2" verify >"$DIR/verify.txt" 2>&1 || {
	cat "$DIR/verify.txt" >&2
	fail "csa verify failed on the database after the kill"
}
# the audit chain both nodes appended to is one chain that verifies, and
# every acknowledged ticket's decisions are in it
"$CSA" --dir "$DIR/node2" audit verify >"$DIR/audit.txt" 2>&1 || {
	cat "$DIR/audit.txt" >&2
	fail "csa audit verify failed on the database after the kill"
}
for id in $(cat "$DIR"/acked.*); do
	"$CSA" --dir "$DIR/node2" audit show "$id" | grep -q '"type": "decision"' ||
		fail "acknowledged ticket $id has no decision in the audit ledger"
done
# every acknowledged review is done with its value and audited, every
# acknowledged message is in its ticket
decided=$(cat "$DIR/decided" 2>/dev/null | wc -l)
written=$(cat "$DIR/written" 2>/dev/null | wc -l)
[ "$decided" -ge 6 ] || fail "only $decided of $(wc -l <"$DIR/tasks") reviews acknowledged with node 2 alive"
[ "$written" -ge 6 ] || fail "only $written of 12 follow-ups acknowledged with node 2 alive"
[ "$(api GET '/api/reviews?status=done&limit=500')" = 200 ] || fail "cannot list the done review tasks"
while read -r task ticket; do
	grep -q "\"task_id\":$task,[^}]*\"status\":\"done\"" "$DIR/body" ||
		fail "acknowledged review of task $task is not done"
	"$CSA" --dir "$DIR/node2" audit show "$ticket" | grep -q '"type": "review"' ||
		fail "acknowledged review of task $task ($ticket) is not in the audit ledger"
done <"$DIR/decided"
for id in $(cat "$DIR/written" 2>/dev/null); do
	[ "$(api GET "/api/tickets/$id")" = 200 ] || fail "ticket $id not served after the kill"
	grep -q "still broken, take ${id#R}\"" "$DIR/body" ||
		fail "acknowledged follow-up of $id is not in its ticket"
done
echo "check-cluster: $acked tickets, $decided reviews and $written follow-ups acknowledged through HAProxy with node 1 killed; all kept (served by node 2, decisions and reviews audited); verify and audit verify clean"
"$here/scripts/cluster.sh" stop -d "$DIR" --clean || fail "cluster.sh stop failed"
[ ! -e "$DIR" ] || fail "stop --clean left $DIR"
