#!/bin/sh
# The deployment files (deploy/) hold together: docker-compose accepts the
# compose file (Debian's docker-compose; no engine is needed to check it),
# every variable it sets is one csa reads, and csa serve starts with the
# configuration it mounts. Usage: check-deploy.sh SRC CSA
set -eu
SRC=$1
CSA=$2
fail() { echo "check-deploy: $*" >&2; exit 1; }

# on a copy with the example's postgres.env, as a user makes it
TMPD=$(mktemp -d)
cp -r "$SRC/deploy" "$TMPD/"
cp "$TMPD/deploy/postgres.env.example" "$TMPD/deploy/postgres.env"
docker-compose -f "$TMPD/deploy/docker-compose.yml" config -q ||
	{ rm -rf "$TMPD"; fail "deploy/docker-compose.yml: docker-compose config refuses it"; }
# every service the spec names, scaled behind the proxy
services=$(docker-compose -f "$TMPD/deploy/docker-compose.yml" config --services | sort | tr '\n' ' ')
rm -rf "$TMPD"
[ "$services" = "cs-ai-system file-monitor postgres proxy redis " ] ||
	fail "deploy/docker-compose.yml: services are '$services'"
# the database's password is in the env file, never in the compose file
if grep -Eq 'PASSWORD=[^$]|postgres(ql)?://[^@/]*:[^@/]*@' "$SRC/deploy/docker-compose.yml"; then
	fail "deploy/docker-compose.yml holds a password: it belongs in postgres.env"
fi
grep -q '^/deploy/postgres.env$' "$SRC/.gitignore" ||
	fail ".gitignore does not keep deploy/postgres.env out of git"
haproxy -c -q -f "$SRC/deploy/haproxy.cfg" || fail "deploy/haproxy.cfg: haproxy -c refuses it"

# the spec's variables, and the one the image sets, are read by csa
for v in PHASE MODEL_CONFIG_PATH DATA_PATH SYNC_CHECK_INTERVAL ALERT_WEBHOOK_URL CSA_WEB_DIR REDIS_URL DATABASE_URL; do
	grep -q "getenv(\"$v\")" "$SRC"/src/*/*.c ||
		fail "deploy/ sets $v, which no source file of csa reads"
done

# csa serve starts with the mounted configuration over a new workspace
TMP=$(mktemp -d)
# the server is stopped and waited for before its workspace goes: a
# graceful stop still writes under .csa/ (a checkpoint), which an rm
# racing it finds not empty
PID=
trap 'if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
rm -rf "$TMP"' EXIT
"$CSA" init "$TMP/ws" >/dev/null
MODEL_CONFIG_PATH="$SRC/deploy/config/models.json" PHASE=PHASE_1 \
	"$CSA" serve --dir "$TMP/ws" --port 0 >"$TMP/out" 2>"$TMP/err" &
PID=$!
i=0
until grep -q '"listening"' "$TMP/out"; do
	kill -0 "$PID" 2>/dev/null ||
		fail "csa serve with deploy/config/models.json stopped: $(cat "$TMP/err")"
	i=$((i + 1))
	[ "$i" -lt 100 ] || fail "csa serve did not listen within 10 s"
	sleep 0.1
done
echo "check-deploy: the compose file, its variables and its configuration hold"
