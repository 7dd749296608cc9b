#!/bin/sh
# make run: the main job on an embedded default.
set -eu
CSA=${1:-build/csa}
exec "$CSA" help
