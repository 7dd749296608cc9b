#!/bin/sh
# Run every fuzz target of a CSA_FUZZ build for SECONDS each, starting from
# the committed corpus (fuzz/corpus/<name>). Inputs that reach new code go
# to BUILD/corpus/<name>; an input that crashes a target or breaks one of
# its properties is written to BUILD/crash/<name>-* and makes this fail.
# Copy such an input into fuzz/corpus/<name> with the fix, and the replay
# tests of `make test` keep it.
#
# usage: scripts/fuzz.sh BUILD SECONDS
set -eu
build=$1
seconds=$2
root=$(cd "$(dirname "$0")/.." && pwd)
failed=""
mkdir -p "$build/crash"
for corpus in "$root"/fuzz/corpus/*/; do
	name=$(basename "$corpus")
	bin="$build/fuzz_$name"
	if [ ! -x "$bin" ]; then
		echo "fuzz: no target '$bin' for corpus '$corpus'" >&2
		exit 1
	fi
	work="$build/corpus/$name"
	mkdir -p "$work"
	# fuzz/<name>.dict: tokens the format is made of, for the mutations
	dict=""
	if [ -f "$root/fuzz/$name.dict" ]; then
		dict="-dict=$root/fuzz/$name.dict"
	fi
	echo "fuzz: $name for ${seconds}s"
	# shellcheck disable=SC2086 # $dict is one word or none
	if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$bin" $dict -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$build/crash/$name-" "$work" "$corpus" \
		>"$build/fuzz_$name.log" 2>&1; then
		echo "fuzz: $name FAILED, see $build/fuzz_$name.log and $build/crash/" >&2
		failed="$failed $name"
	fi
	tail -n 1 "$build/fuzz_$name.log"
done
if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed" >&2
	exit 1
fi
echo "fuzz: every target ran ${seconds}s without a finding"
