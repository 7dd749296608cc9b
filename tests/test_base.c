/* Unit tests of base/: timestamps, ids, JSON errors, config, atomic writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/config.h"
#include "base/fsops.h"
#include "base/ids.h"
#include "base/jdump.h"
#include "base/json.h"
#include "base/ts.h"
#include "base/walckpt.h"

static void ts_roundtrip(void **state)
{
	(void)state;
	char buf[CSA_TS_LEN];
	int64_t ms;
	assert_string_equal(csa_ts_format(0, buf), "1970-01-01T00:00:00.000Z");
	assert_string_equal(csa_ts_format(1795734186123LL, buf), "2026-11-26T23:03:06.123Z");
	assert_int_equal(csa_ts_parse("2026-11-26T23:03:06.123Z", &ms), 0);
	assert_int_equal(ms, 1795734186123LL);
	/* offsets and fraction lengths */
	assert_int_equal(csa_ts_parse("2026-11-27T00:03:06.1+01:00", &ms), 0);
	assert_int_equal(ms, 1795734186100LL);
	assert_int_equal(csa_ts_parse("2024-02-29T00:00:00Z", &ms), 0);
	assert_string_equal(csa_ts_format(ms, buf), "2024-02-29T00:00:00.000Z");
	/* every day of a leap and a normal year survives a round trip */
	for (int64_t d = 0; d < 800; d++) {
		int64_t t = 1704067200000LL + d * 86400000LL + 12345;
		int64_t back;
		assert_int_equal(csa_ts_parse(csa_ts_format(t, buf), &back), 0);
		assert_int_equal(back, t);
	}
}

static void ts_rejects(void **state)
{
	(void)state;
	int64_t ms;
	const char *bad[] = {"",
	                     "2026-11-27",
	                     "2026-13-01T00:00:00Z",
	                     "2023-02-29T00:00:00Z",
	                     "2026-11-27T24:00:00Z",
	                     "2026-11-27T21:03:06",
	                     "2026-11-27T21:03:06.Z",
	                     "2026-11-27T21:03:06Zjunk",
	                     "yesterday",
	                     NULL};
	for (int i = 0; bad[i]; i++)
		assert_int_equal(csa_ts_parse(bad[i], &ms), CSA_EPARSE);
	assert_int_equal(csa_ts_parse(NULL, &ms), CSA_EPARSE);
}

static void ids(void **state)
{
	(void)state;
	struct csa_err err = {0};
	assert_true(csa_id_valid("T-42_abc"));
	assert_false(csa_id_valid(""));
	assert_false(csa_id_valid("../x"));
	assert_false(csa_id_valid("a/b"));
	assert_false(csa_id_valid("a b"));
	assert_false(csa_id_valid("é"));
	char long_id[70];
	memset(long_id, 'a', 65);
	long_id[65] = '\0';
	assert_false(csa_id_valid(long_id));
	long_id[64] = '\0';
	assert_true(csa_id_valid(long_id));
	assert_int_equal(csa_id_check("ab\0cd", 5, &err), CSA_EINVAL);
	assert_non_null(strstr(err.msg, "0x00"));
	char gen[CSA_ID_MAX + 1], gen2[CSA_ID_MAX + 1];
	csa_id_generate("T", gen, sizeof(gen));
	csa_id_generate("T", gen2, sizeof(gen2));
	assert_true(csa_id_valid(gen));
	assert_string_not_equal(gen, gen2);
}

static void json_errors_name_place(void **state)
{
	(void)state;
	struct csa_err err = {0};
	json_t *j = NULL;
	const char *txt = "{\n  \"a\": 1,\n  \"b\" 2\n}";
	assert_int_equal(csa_json_parse(txt, strlen(txt), "x.json", &j, &err), CSA_EPARSE);
	assert_non_null(strstr(err.msg, "x.json line 3"));
	assert_int_equal(csa_json_parse("{\"a\":1,\"a\":2}", 13, "dup", &j, &err), CSA_EPARSE);
	assert_int_equal(csa_json_parse("{\"a\":\"\0\"}", 9, "nul", &j, &err), CSA_EPARSE);
	assert_non_null(strstr(err.msg, "NUL"));
}

static void config_defaults_and_overrides(void **state)
{
	(void)state;
	struct csa_config cfg;
	struct csa_err err = {0};
	assert_int_equal(csa_config_init_default(&cfg), 0);
	assert_true(csa_config_in_list(&cfg, "taxonomy.categories", "BILLING_INQUIRY"));
	assert_int_equal(json_array_size(csa_config_get(&cfg, "taxonomy.strategies")), 5);
	assert_int_equal(cfg.limits.max_message_bytes, 65536);
	csa_config_release(&cfg);

	char path[] = "/tmp/csa-cfg-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *over = "{\"limits\": {\"max_message_bytes\": 100}}";
	assert_int_equal(write(fd, over, strlen(over)), (ssize_t)strlen(over));
	close(fd);
	assert_int_equal(csa_config_load(path, &cfg, &err), 0);
	assert_int_equal(cfg.limits.max_message_bytes, 100);
	assert_int_equal(cfg.limits.max_attachments, 32); /* default kept */
	csa_config_release(&cfg);

	const char *bad = "{\"limits\": {\"max_message_bytes\": \"big\"}}";
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
	close(fd);
	assert_int_equal(csa_config_load(path, &cfg, &err), CSA_ESCHEMA);
	assert_non_null(strstr(err.msg, "max_message_bytes"));
	unlink(path);
}

/* csa_fs_ident_fd/_path give what stat gives of which file it is, its
 * length and its names, for a file, a second name of it, and none. */
static void ident_is_stat_without_times(void **state)
{
	(void)state;
	char dir[] = "/tmp/csa-ident-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char a[512], b[512];
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	int fd = open(a, O_CREAT | O_RDWR, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "twelve bytes", 12), 12);
	assert_int_equal(link(a, b), 0);
	struct stat st;
	struct csa_fs_ident byfd, bypath;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(csa_fs_ident_fd(fd, &byfd), 0);
	assert_int_equal(csa_fs_ident_path(b, &bypath), 0);
	assert_true(byfd.dev == st.st_dev && byfd.ino == st.st_ino);
	assert_true(bypath.dev == st.st_dev && bypath.ino == st.st_ino);
	assert_int_equal(byfd.size, 12);
	assert_int_equal(bypath.size, 12);
	assert_int_equal(byfd.nlink, 2);
	unlink(b);
	assert_int_equal(csa_fs_ident_fd(fd, &byfd), 0);
	assert_int_equal(byfd.nlink, 1);
	errno = 0;
	assert_int_equal(csa_fs_ident_path(b, &bypath), -1);
	assert_int_equal(errno, ENOENT);
	close(fd);
	unlink(a);
	rmdir(dir);
}

static void atomic_write_faults_keep_old(void **state)
{
	(void)state;
	char dir[] = "/tmp/csa-aw-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/f", dir);
	struct csa_err err = {0};
	assert_int_equal(csa_fs_write_atomic(path, "old", 3, &err), 0);
	enum csa_fs_op ops[] = {CSA_FS_OPEN, CSA_FS_WRITE, CSA_FS_FSYNC, CSA_FS_RENAME};
	for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
		csa_fault_arm(ops[k], 1, EIO);
		assert_int_not_equal(csa_fs_write_atomic(path, "new", 3, &err), 0);
		assert_true(csa_fault_fired());
		csa_fault_disarm();
		char *buf;
		size_t len;
		assert_int_equal(csa_fs_read_all(path, 100, &buf, &len, &err), 0);
		assert_string_equal(buf, "old");
		free(buf);
	}
	unlink(path);
	rmdir(dir);
}

/* The writer's commits fill the WAL; the background thread, not the writer,
 * copies it back, and every row stays readable. */
static void wal_checkpoints_run_in_the_background(void **state)
{
	(void)state;
	char dir[] = "/tmp/csa-wal-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256], wal[300];
	snprintf(path, sizeof(path), "%s/db", dir);
	snprintf(wal, sizeof(wal), "%s-wal", path);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	/* as every connection of csa's: a RESTART checkpoint makes it wait */
	assert_int_equal(sqlite3_busy_timeout(db, 10000), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                              "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
	                              "CREATE TABLE t(x BLOB);",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	struct csa_walckpt *c;
	struct csa_err err = {0};
	assert_int_equal(csa_walckpt_start(db, path, 16, &c, &err), 0);
	sqlite3_stmt *st;
	assert_int_equal(
	    sqlite3_prepare_v2(db, "INSERT INTO t VALUES(zeroblob(3000))", -1, &st, NULL),
	    SQLITE_OK);
	/* 400 commits of about a page each: 25 times the threshold */
	for (int i = 0; i < 400; i++) {
		assert_int_equal(sqlite3_step(st), SQLITE_DONE);
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	/* the rows are copied back into the database file itself */
	struct stat st_db = {0};
	for (int i = 0; i < 500 && (st_db.st_size <= 100 * 4096 || csa_walckpt_count(c) == 0);
	     i++) {
		usleep(10000);
		assert_int_equal(stat(path, &st_db), 0);
	}
	assert_true(st_db.st_size > 100 * 4096);
	assert_true(csa_walckpt_count(c) > 0);
	csa_walckpt_stop(c);
	sqlite3_close(db);
	/* a fresh connection reads every row from the file */
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 400);
	sqlite3_finalize(st);
	sqlite3_close(db);
	unlink(wal);
	snprintf(wal, sizeof(wal), "%s-shm", path);
	unlink(wal);
	unlink(path);
	rmdir(dir);
}

/* csa_jdump_compact() against json_dumps() with the same flags: the same
 * bytes, or NULL from both. */
static void same_as_jansson(const json_t *v, int precision)
{
	size_t len = 99;
	char *a = csa_jdump_compact(v, precision, &len);
	char *b =
	    json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(precision));
	if (!a || !b) {
		if (a || b)
			fail_msg("one dumper failed, the other wrote '%s'", a ? a : b);
		free(a);
		free(b);
		return;
	}
	if (strcmp(a, b) != 0)
		fail_msg("precision %d:\n  fast:    %s\n  jansson: %s", precision, a, b);
	assert_int_equal(len, strlen(b));
	free(a);
	free(b);
}

static uint64_t jd_rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A random value of at most 'depth' levels: reals over the whole range
 * of magnitudes (and their bit patterns at random), integers to both
 * ends, strings of control characters, quotes, ASCII and UTF-8. */
static json_t *jd_random(uint64_t *s, int depth)
{
	static const char *const pieces[] = {"a",  "\"",       "\\",           "\n",
	                                     "\t", "\x01",     "\x1f",         "\x7f",
	                                     "/",  "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
	                                     " ",  "\b",       "\f",           "\r",
	                                     "0",  "}"};
	int kind = (int)(jd_rng(s) % (depth > 0 ? 9 : 6));
	switch (kind) {
	case 0: {
		double m = (double)(jd_rng(s) >> 11) / 9007199254740992.0;
		int e = (int)(jd_rng(s) % 80) - 40;
		double v = m;
		for (; e > 0; e--)
			v *= 10;
		for (; e < 0; e++)
			v /= 10;
		return json_real(jd_rng(s) % 2 ? v : -v);
	}
	case 1: {
		uint64_t bits = jd_rng(s);
		double v;
		memcpy(&v, &bits, sizeof(v));
		return v == v && v - v == 0 ? json_real(v) : json_real(0.5); /* finite */
	}
	case 2:
		return json_integer((json_int_t)jd_rng(s));
	case 3: {
		char buf[64] = "";
		size_t n = jd_rng(s) % 8;
		for (size_t i = 0; i < n; i++)
			strcat(buf, pieces[jd_rng(s) % (sizeof(pieces) / sizeof(pieces[0]))]);
		return json_string(buf);
	}
	case 4:
		return jd_rng(s) % 2 ? json_true() : json_false();
	case 5:
		return json_null();
	case 6:
	case 7: {
		json_t *o = json_object();
		size_t n = jd_rng(s) % 6;
		for (size_t i = 0; i < n; i++) {
			char key[32];
			snprintf(key, sizeof(key), "%s%zu",
			         pieces[jd_rng(s) % (sizeof(pieces) / sizeof(pieces[0]))], i);
			json_object_set_new(o, key, jd_random(s, depth - 1));
		}
		return o;
	}
	default: {
		json_t *a = json_array();
		size_t n = jd_rng(s) % 6;
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, jd_random(s, depth - 1));
		return a;
	}
	}
}

/* The store's serialiser writes what jansson writes, byte for byte:
 * awkward reals and strings, random documents, and the cases it hands to
 * jansson (invalid UTF-8 in a value, where both fail, and in a key, where
 * jansson writes half of it; a container inside itself; a bare value). */
static void fast_dump_is_jansson_byte_for_byte(void **state)
{
	(void)state;
	/* the jansson this test runs with formats reals as expected: the
	 * fast writer is in use, not only its fallback */
	assert_true(csa_jdump_is_fast());
	json_t *doc = json_pack(
	    "{s:[f, f, f, f, f, f, f, f, f], s:I, s:I, s:s, s:{}, s:[], s:n}", "reals",
	    1234567890123.0, 0.1, 1.0 / 3, -0.0, 5e-324, 1e300, 100.0, 0.99999999999,
	    9.9999999999e-5, "min", (json_int_t)INT64_MIN, "max", (json_int_t)INT64_MAX, "text",
	    "caf\xc3\xa9 \"q\" \\ / \x01\x1f\x7f \xf0\x9f\x98\x80", "o", "a", "z");
	assert_non_null(doc);
	for (int p = 0; p <= 17; p++)
		same_as_jansson(doc, p);
	json_decref(doc);
	uint64_t s = 0x9E3779B97F4A7C15ULL;
	for (int i = 0; i < 3000; i++) {
		json_t *v = json_object();
		json_object_set_new(v, "v", jd_random(&s, 4));
		same_as_jansson(v, 10);
		same_as_jansson(v, i % 18);
		json_decref(v);
	}
	/* a value that is not UTF-8: both refuse */
	json_t *bad = json_pack("{s:o}", "k", json_stringn_nocheck("ab\xff", 3));
	same_as_jansson(bad, 10);
	json_decref(bad);
	/* a key that is not UTF-8: jansson writes what it wrote of it */
	bad = json_object();
	json_object_setn_new_nocheck(bad, "k\xc3", 2, json_integer(1));
	json_object_set_new(bad, "z", json_integer(2));
	same_as_jansson(bad, 10);
	json_decref(bad);
	/* an array inside itself: both refuse */
	json_t *a = json_array(), *b = json_array();
	json_array_append(a, b);
	json_array_append(b, a);
	same_as_jansson(a, 10);
	json_array_clear(b);
	json_decref(a);
	json_decref(b);
	/* a bare value: jansson refuses it without JSON_ENCODE_ANY */
	json_t *r = json_real(1.5);
	same_as_jansson(r, 10);
	json_decref(r);
}

/* csa_real_text() against snprintf() and strtod(): random doubles of
 * every magnitude at every precision, each asked for again (a hit of the
 * cache, then a miss after many others took its slot), on two threads at
 * once (each its own cache). */
static void *real_text_matches_snprintf_on(void *arg)
{
	uint64_t s = *(uint64_t *)arg;
	int bad = 0;
	double kept[64];
	for (int i = 0; i < 50000 && !bad; i++) {
		uint64_t bits = jd_rng(&s);
		double v;
		if (i % 3 == 0) {
			v = (double)(bits % 100000) / 1000.0; /* values a ticket has */
		} else {
			memcpy(&v, &bits, sizeof(v));
			if (isnan(v))
				continue;
		}
		if (i < 64)
			kept[i] = v;
		else if (i % 7 == 0)
			v = kept[i % 64]; /* asked for again, long after */
		/* one precision, or every precision twice over (the same value
		 * at another precision is another text) */
		int p0 = 1 + (int)(jd_rng(&s) % 17), all = i % 5 == 0;
		for (int k = 0; k < (all ? 34 : 1); k++) {
			int p = all ? 1 + k % 17 : p0;
			char want[64], got[64];
			int wl = snprintf(want, sizeof(want), "%.*g", p, v);
			double wr = strtod(want, NULL), gr = 0;
			for (int again = 0; again < 2; again++) {
				int gl = csa_real_text(v, p, got, sizeof(got), again ? &gr : NULL);
				bad |= gl != wl || strcmp(got, want) != 0 ||
				       (again && memcmp(&gr, &wr, sizeof(gr)) != 0);
			}
		}
	}
	/* too small a buffer is refused, never cut */
	char tiny[4];
	bad |= csa_real_text(1.0 / 3, 10, tiny, sizeof(tiny), NULL) != -1;
	return (void *)(intptr_t)bad;
}

static void real_text_is_snprintf(void **state)
{
	(void)state;
	uint64_t seeds[2] = {0x1234567ULL, 0xABCDEF01ULL};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, real_text_matches_snprintf_on, &seeds[0]), 0);
	void *here = real_text_matches_snprintf_on(&seeds[1]), *there;
	pthread_join(th, &there);
	assert_null(here);
	assert_null(there);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ts_roundtrip),
	    cmocka_unit_test(ts_rejects),
	    cmocka_unit_test(ids),
	    cmocka_unit_test(json_errors_name_place),
	    cmocka_unit_test(fast_dump_is_jansson_byte_for_byte),
	    cmocka_unit_test(real_text_is_snprintf),
	    cmocka_unit_test(config_defaults_and_overrides),
	    cmocka_unit_test(ident_is_stat_without_times),
	    cmocka_unit_test(atomic_write_faults_keep_old),
	    cmocka_unit_test(wal_checkpoints_run_in_the_background),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
