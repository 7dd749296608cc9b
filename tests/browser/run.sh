#!/bin/sh
# The dashboard in Debian's Chromium, driven by playwright-core from npm:
# installs what it needs (the browser through scripts/deps.sh, the npm
# packages into tests/browser/node_modules), then runs dashboard.mjs (review,
# metrics) and workspace.mjs (inbox, ticket page, axe-core).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
CSA=$1
ARTIFACTS=${2:-$HERE/../../build/artifacts}
CSA_DEPS_BROWSER=1 "$HERE/../../scripts/deps.sh"
if [ ! -d "$HERE/node_modules/playwright-core" ] || [ ! -d "$HERE/node_modules/axe-core" ]; then
	(cd "$HERE" && npm ci --no-audit --no-fund --silent)
fi
mkdir -p "$ARTIFACTS"
node "$HERE/dashboard.mjs" "$CSA" "$ARTIFACTS"
exec node "$HERE/workspace.mjs" "$CSA" "$ARTIFACTS"
