#!/bin/sh
# The layering of docs/ARCHITECTURE.md, checked on every #include under
# src/ (run by `make test` as the ctest test check_layers):
#
#   L0 base/   L1 store/ model/ llm/ outbound/   L2 agents/ sla/ gen/ search/
#   L3 flow/ automation/   L4 cli/ server/
#
# A file may include headers of its own layer and the layers below, never
# one above. A backend's private headers stay in its folder: the file
# backend's store/mesh.h and store/journal.h are included only from
# src/store/, and any *_internal.h only from its own folder. The same
# holds for the database backend: store/store_pg.h only from src/store/,
# so nothing above the store knows which backend holds the tickets.
# PostgreSQL itself -- libpq's <libpq-fe.h>, store/pg.h, the shared
# connection module that includes it, and store/leader_pg.h, the fence of
# a leader's writes -- is for src/store/ and for the
# files named *_pg.c in any folder (outbound/outbox_pg.c,
# server/chanmap_pg.c, ...): each other kind of shared state has its
# database backend in a file of that name beside its first backend, and
# no other file of src/ may know there is a database. hiredis
# (<hiredis/hiredis.h>) is included by src/server/redis.c alone. Each
# violation is printed as `file:line: includes X (layer N) from layer M`.
#
# With --banned CC [FLAGS...], it also checks that the forced include of
# every compile (src/base/prelude.h, then base/banned.h) makes each banned
# function a compile error, and that a program using the safe alternatives
# still compiles with the same flags: a guard that cannot silently stop
# working.
#
# Usage: scripts/check-layers.sh [SRC_DIR] [--banned CC [FLAGS...]]
# Exit status 0 when everything holds, 1 otherwise.
set -u

src=src
case "${1:-}" in
--banned | "") ;;
*) src=$1; shift ;;
esac
if [ ! -d "$src" ]; then
	echo "check-layers: '$src' is not a directory" >&2
	exit 2
fi

# layer DIR: the layer number of a top-level directory of src/, or
# nothing for a directory the diagram does not know.
layer() {
	case $1 in
	base) echo 0 ;;
	store | model | llm | outbound) echo 1 ;;
	agents | sla | gen | search) echo 2 ;;
	flow | automation) echo 3 ;;
	cli | server) echo 4 ;;
	esac
}

status=0
tmp=$(mktemp) || exit 2
trap 'rm -f "$tmp"' EXIT

# Every quoted include as "file line header", one a line.
find "$src" -name '*.[ch]' | LC_ALL=C sort | while IFS= read -r f; do
	awk -v f="$f" '
		/^[ \t]*#[ \t]*include[ \t]*"/ {
			h = $0
			sub(/^[^"]*"/, "", h)
			sub(/".*$/, "", h)
			print f, FNR, h
		}' "$f"
done >"$tmp"

while read -r file line hdr; do
	rel=${file#"$src"/}
	fdir=${rel%%/*}
	# "mesh.h" from src/store/x.c is store/mesh.h
	case $hdr in
	*/*) target=$hdr ;;
	*) target=$fdir/$hdr ;;
	esac
	hdir=${target%%/*}
	hbase=${target##*/}
	from=$(layer "$fdir")
	to=$(layer "$hdir")
	if [ -z "$from" ]; then
		echo "$file:$line: is in src/$fdir/, a directory docs/ARCHITECTURE.md gives no layer"
		status=1
		continue
	fi
	if [ -z "$to" ]; then
		# system or third-party headers are included with <>, so a
		# quoted header outside the layers is a mistake too
		echo "$file:$line: includes $hdr, which is in no layer"
		status=1
		continue
	fi
	if [ "$to" -gt "$from" ]; then
		echo "$file:$line: includes $target (layer $to) from layer $from"
		status=1
	fi
	case $target in
	store/mesh.h | store/journal.h | store/store_pg.h)
		if [ "$fdir" != store ]; then
			echo "$file:$line: includes $target (layer $to) from layer $from:" \
				"a private header of a ticket store backend, for src/store/ only"
			status=1
		fi
		;;
	store/pg.h | store/leader_pg.h)
		case $fdir/${file##*/} in
		store/* | */*_pg.c) ;;
		*)
			echo "$file:$line: includes $target (layer $to) from layer $from:" \
				"the PostgreSQL connection module, for src/store/ and *_pg.c files only"
			status=1
			;;
		esac
		;;
	esac
	case $hbase in
	*_internal.h)
		if [ "$hdir" != "$fdir" ]; then
			echo "$file:$line: includes $target (layer $to) from layer $from:" \
				"an internal header of src/$hdir/, for that folder only"
			status=1
		fi
		;;
	esac
done <"$tmp" >"$tmp.out"
# the database client library, included with <>, is for src/store/ and
# the *_pg.c backends alone
find "$src" -name '*.[ch]' | LC_ALL=C sort | while IFS= read -r f; do
	rel=${f#"$src"/}
	[ "${rel%%/*}" = store ] && continue
	case $f in *_pg.c) continue ;; esac
	awk -v f="$f" '/^[ \t]*#[ \t]*include[ \t]*<libpq/ {
		print f ":" FNR ": includes libpq (<libpq-fe.h>), the database backends'"'"'" \
			" library, for src/store/ and *_pg.c files only" }' "$f"
done >>"$tmp.out"
# hiredis: the link to Redis (src/server/redis.c) is the only file that
# talks to Redis; events and rate limits go through server/redis.h
find "$src" -name '*.[ch]' | LC_ALL=C sort | while IFS= read -r f; do
	[ "${f#"$src"/}" = server/redis.c ] && continue
	awk -v f="$f" '/^[ \t]*#[ \t]*include[ \t]*<(hiredis\/)?hiredis/ {
		print f ":" FNR ": includes hiredis, which only src/server/redis.c may" \
			" (the rest goes through server/redis.h)" }' "$f"
done >>"$tmp.out"
if [ -s "$tmp.out" ]; then
	cat "$tmp.out"
	status=1
fi
rm -f "$tmp.out"

if [ "${1:-}" = --banned ]; then
	shift
	if [ $# -lt 1 ]; then
		echo "check-layers: --banned needs a compiler" >&2
		exit 2
	fi
	cc=$1
	shift
	prelude=$src/base/prelude.h
	dir=$(mktemp -d) || exit 2
	trap 'rm -f "$tmp"; rm -rf "$dir"' EXIT
	# the safe alternatives compile: a failure below is the ban's doing
	cat >"$dir/ok.c" <<-'EOF'
		#include <stdio.h>
		#include <stdlib.h>
		#include <string.h>
		#include <time.h>
		int main(void)
		{
			char b[16];
			struct tm tm;
			time_t t = 0;
			snprintf(b, sizeof(b), "%ld", strtol("1", NULL, 10));
			return gmtime_r(&t, &tm) == NULL || localtime_r(&t, &tm) == NULL;
		}
	EOF
	if ! "$cc" "$@" -include "$prelude" -I"$src" -fsyntax-only "$dir/ok.c" 2>"$dir/ok.err"; then
		echo "check-layers: a program using the safe alternatives does not compile with" \
			"the forced include '$prelude':"
		cat "$dir/ok.err"
		status=1
	fi
	for use in 'strcpy(b, "x")' 'strcat(b, "x")' 'sprintf(b, "%d", 1)' \
		'vsprintf(b, "%d", ap)' 'strtok(b, ",")' 'atoi("1")' 'gmtime(&t)' 'localtime(&t)'; do
		fn=${use%%(*}
		# the system header included again after the forced one, as a
		# .c file does: its include guard must keep the ban in place
		cat >"$dir/$fn.c" <<-EOF
			#include <stdarg.h>
			#include <stdio.h>
			#include <stdlib.h>
			#include <string.h>
			#include <time.h>
			void f(va_list ap);
			void f(va_list ap)
			{
				char b[16] = "";
				time_t t = 0;
				(void)ap, (void)b, (void)t;
				(void)$use;
			}
		EOF
		if "$cc" "$@" -include "$prelude" -I"$src" -fsyntax-only "$dir/$fn.c" \
			>/dev/null 2>&1; then
			echo "check-layers: '$fn' compiles with the forced include '$prelude':" \
				"banned.h no longer bans it"
			status=1
		fi
	done
fi

exit $status
