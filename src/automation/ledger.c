/* The file backend of the hash-chained audit ledger: audit/ledger.jsonl;
 * and what every backend shares (ledger_internal.h): a record's bytes and
 * the check of a chain. */
#include "automation/ledger.h"
#include "automation/ledger_internal.h"
#include "base/digest.h"
#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/ws.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GENESIS       LEDGER_GENESIS
#define SYNC_EVERY_NS 50000000LL

struct file_ledger {
	struct csa_ledger base; /* first: the interface's handle */
	char path[4096];
	int fd;
	pthread_mutex_t mu;
	off_t known_end;
	int64_t seq;
	char last_hash[65];
	int64_t last_sync_ns; /* for appends that flush inline (no thread) */
	int dirty;
	/* Appends are made durable by a thread of their own, every
	 * SYNC_EVERY_NS, so no append waits for a disk flush; started by the
	 * first append. */
	pthread_t syncer;
	pthread_cond_t cv;
	int syncer_on, stop;
	int sync_errno; /* a failed background flush, reported by the next append */
};

/* The shared helper (base/digest.h), checked: when OpenSSL fails, out is
 * the empty string, which never equals a 64-digit hash, so `csa audit
 * verify` reports the record instead of a wrong digest chaining on
 * unnoticed. (Its callers do not take a status yet: the ledger is being
 * changed on another branch.) */
static void sha256_hex(const void *d, size_t n, char out[65])
{
	if (csa_sha256_hex(d, n, out) != CSA_OK)
		out[0] = '\0';
}

void csa_json_digest(const json_t *v, char out[65])
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	sha256_hex(s ? s : "", s ? strlen(s) : 0, out);
	free(s);
}

/* Canonical bytes of a record without its hash. */
static char *canonical(const json_t *rec)
{
	json_t *c = json_pack(
	    "{s:O, s:O, s:O, s:O, s:O, s:O}", "seq", json_object_get(rec, "seq"), "timestamp",
	    json_object_get(rec, "timestamp"), "type", json_object_get(rec, "type"), "ticket_id",
	    json_object_get(rec, "ticket_id"), "payload", json_object_get(rec, "payload"), "prev",
	    json_object_get(rec, "prev"));
	if (!c)
		return NULL;
	char *s = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(c);
	return s;
}

/* A C string as a JSON value (escaped), or null. */
static char *json_text(const char *s)
{
	if (!s)
		return strdup("null");
	json_t *v = json_string(s);
	char *t = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
	json_decref(v);
	return t;
}

/* Re-read the tail record to learn seq and hash (another process may
 * have appended since we looked). Caller holds the flock. */
static int refresh_tail(struct file_ledger *l, struct csa_err *err)
{
	struct stat st;
	if (fstat(l->fd, &st) < 0)
		return csa_error_sys(err, "cannot stat '%s'", l->path);
	if (st.st_size == l->known_end)
		return CSA_OK;
	l->seq = 0;
	memcpy(l->last_hash, GENESIS, 65);
	if (st.st_size == 0) {
		l->known_end = 0;
		return CSA_OK;
	}
	size_t want = st.st_size < 1 << 20 ? (size_t)st.st_size : 1 << 20;
	char *buf = malloc(want + 1);
	if (!buf)
		return csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", l->path);
	ssize_t n = pread(l->fd, buf, want, st.st_size - (off_t)want);
	if (n < 0) {
		free(buf);
		return csa_error_sys(err, "cannot read '%s'", l->path);
	}
	buf[n] = '\0';
	/* Every append is one write that ends in a newline: a tail without one
	 * is an append a crash cut short, before the flush that would have
	 * made it durable. It goes, and the chain continues from the last
	 * whole record. */
	if (n > 0 && buf[n - 1] != '\n') {
		char *nl = memrchr(buf, '\n', (size_t)n);
		if (!nl && st.st_size > (off_t)want) {
			free(buf);
			return csa_error(
			    err, CSA_ECORRUPT,
			    "'%s': no whole record in the last MB (run 'csa audit verify')",
			    l->path);
		}
		off_t keep = st.st_size - (off_t)n + (nl ? nl - buf + 1 : 0);
		if (ftruncate(l->fd, keep) < 0) {
			free(buf);
			return csa_error_sys(err, "cannot cut the torn tail of '%s'", l->path);
		}
		n = nl ? nl - buf + 1 : 0;
		buf[n] = '\0';
		st.st_size = keep;
		if (keep == 0) {
			free(buf);
			l->known_end = 0;
			return CSA_OK;
		}
	}
	/* last complete line */
	char *end = buf + n;
	while (end > buf && end[-1] == '\n')
		*--end = '\0';
	char *start = strrchr(buf, '\n');
	start = start ? start + 1 : buf;
	json_t *rec = json_loads(start, 0, NULL);
	free(buf);
	if (!rec)
		return csa_error(err, CSA_ECORRUPT,
		                 "'%s': last record unreadable (run 'csa audit verify')", l->path);
	l->seq = csa_json_int(rec, "seq", 0);
	const char *h = csa_json_str(rec, "hash");
	snprintf(l->last_hash, sizeof(l->last_hash), "%s", h ? h : GENESIS);
	json_decref(rec);
	l->known_end = st.st_size;
	return CSA_OK;
}

static void *sync_loop(void *arg)
{
	struct file_ledger *l = arg;
	pthread_mutex_lock(&l->mu);
	while (!l->stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += SYNC_EVERY_NS;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&l->cv, &l->mu, &until);
		if (!l->dirty || l->stop)
			continue;
		/* appends go on during the flush; those it misses stay dirty */
		l->dirty = 0;
		pthread_mutex_unlock(&l->mu);
		int failed = csa_fs_fsync(l->fd, 1) < 0 ? errno : 0;
		pthread_mutex_lock(&l->mu);
		if (failed) {
			l->dirty = 1;
			l->sync_errno = failed;
		}
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/* Caller holds l->mu. Without a thread, appends flush inline as before. */
static void start_syncer(struct file_ledger *l)
{
	if (l->syncer_on)
		return;
	l->syncer_on = pthread_create(&l->syncer, NULL, sync_loop, l) == 0 ? 1 : -1;
}

static int f_sync(struct csa_ledger *b, struct csa_err *err)
{
	struct file_ledger *l = (struct file_ledger *)b;
	pthread_mutex_lock(&l->mu);
	int rc = CSA_OK;
	if (l->dirty) {
		if (csa_fs_fsync(l->fd, 1) < 0)
			rc = csa_error_sys(err, "cannot fsync ledger '%s'", l->path);
		else
			l->dirty = 0;
		l->last_sync_ns = csa_mono_ns();
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

static void f_close(struct csa_ledger *b)
{
	struct file_ledger *l = (struct file_ledger *)b;
	pthread_mutex_lock(&l->mu);
	int joined = l->syncer_on == 1;
	l->stop = 1;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (joined)
		pthread_join(l->syncer, NULL);
	f_sync(b, NULL);
	close(l->fd);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

int ledger_parts(const struct csa_ledger_rec *recs, size_t n, struct ledger_part *parts,
                 struct csa_err *err)
{
	memset(parts, 0, n * sizeof(*parts));
	for (size_t i = 0; i < n; i++) {
		json_t *none = recs[i].payload ? NULL : json_object();
		parts[i].body = json_dumps(recs[i].payload ? recs[i].payload : none,
		                           JSON_COMPACT | JSON_SORT_KEYS);
		parts[i].ty = json_text(recs[i].type);
		parts[i].tid = json_text(recs[i].ticket_id);
		json_decref(none);
		if (!parts[i].body || !parts[i].ty || !parts[i].tid) {
			ledger_parts_free(parts, n);
			return csa_error(err, CSA_ENOMEM, "out of memory writing the ledger");
		}
	}
	return CSA_OK;
}

void ledger_parts_free(struct ledger_part *parts, size_t n)
{
	for (size_t i = 0; parts && i < n; i++) {
		free(parts[i].body);
		free(parts[i].ty);
		free(parts[i].tid);
		parts[i] = (struct ledger_part){0};
	}
}

/* Each record is written by hand around its one serialised part, the
 * payload (keys sorted): its canonical form for the hash and its line then
 * cost one json_dumps, not three. canonical() below, which verify uses,
 * gives the same bytes for the parsed line. */
int ledger_lines(const struct ledger_part *parts, size_t n, int64_t last_seq,
                 const char *last_hash, const char *ts, struct ledger_line *lines,
                 struct csa_err *err)
{
	char prev[65];
	snprintf(prev, sizeof(prev), "%s", last_hash);
	memset(lines, 0, n * sizeof(*lines));
	for (size_t i = 0; i < n; i++) {
		long long seq = (long long)(last_seq + 1 + (int64_t)i);
		char *c = NULL;
		int len;
		if (asprintf(&c,
		             "{\"payload\":%s,\"prev\":\"%s\",\"seq\":%lld,\"ticket_id\":%s,"
		             "\"timestamp\":\"%s\",\"type\":%s}",
		             parts[i].body, prev, seq, parts[i].tid, ts, parts[i].ty) < 0)
			c = NULL;
		if (c)
			sha256_hex(c, strlen(c), lines[i].hash);
		free(c);
		if (!c || (len = asprintf(&lines[i].text,
		                          "{\"seq\":%lld,\"timestamp\":\"%s\",\"type\":%s,"
		                          "\"ticket_id\":%s,\"payload\":%s,\"prev\":\"%s\","
		                          "\"hash\":\"%s\"}",
		                          seq, ts, parts[i].ty, parts[i].tid, parts[i].body, prev,
		                          lines[i].hash)) < 0) {
			lines[i].text = NULL;
			ledger_lines_free(lines, n);
			return csa_error(err, CSA_ENOMEM, "out of memory writing the ledger");
		}
		lines[i].len = (size_t)len;
		memcpy(prev, lines[i].hash, sizeof(prev));
	}
	return CSA_OK;
}

void ledger_lines_free(struct ledger_line *lines, size_t n)
{
	for (size_t i = 0; lines && i < n; i++) {
		free(lines[i].text);
		lines[i].text = NULL;
	}
}

static int f_append_many(struct csa_ledger *b, const struct csa_ledger_rec *recs, size_t n,
                         int64_t *seq_out, struct csa_err *err)
{
	struct file_ledger *l = (struct file_ledger *)b;
	if (n == 0)
		return CSA_OK;
	char ts[CSA_TS_LEN];
	csa_ts_format(csa_now_ms(), ts);
	/* serialised before the lock is taken */
	struct ledger_part *pt = calloc(n, sizeof(*pt));
	struct ledger_line *ln = calloc(n, sizeof(*ln));
	int rc = pt && ln ? ledger_parts(recs, n, pt, err)
	                  : csa_error(err, CSA_ENOMEM, "out of memory writing the ledger");
	if (rc)
		goto out;
	pthread_mutex_lock(&l->mu);
	if (flock(l->fd, LOCK_EX) < 0) {
		rc = csa_error_sys(err, "cannot lock ledger '%s'", l->path);
		goto unlocked;
	}
	if ((rc = refresh_tail(l, err)) ||
	    (rc = ledger_lines(pt, n, l->seq, l->last_hash, ts, ln, err)))
		goto unlock;
	char prev[65];
	memcpy(prev, ln[n - 1].hash, sizeof(prev));
	/* the lines go out in one write, so a batch is appended whole or not
	 * at all */
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	for (size_t i = 0; out && i < n; i++) {
		fwrite(ln[i].text, 1, ln[i].len, out);
		fputc('\n', out);
	}
	if (!out || fclose(out) != 0) {
		free(buf);
		rc = csa_error(err, CSA_ENOMEM, "out of memory writing the ledger");
		goto unlock;
	}
	if (csa_fs_write_all(l->fd, buf, len) < 0) {
		rc = csa_error_sys(err, "cannot append to ledger '%s'", l->path);
		/* a partial line would break the chain: cut it off */
		if (l->known_end >= 0 && ftruncate(l->fd, l->known_end) < 0)
			l->known_end = -1;
		free(buf);
		goto unlock;
	}
	free(buf);
	l->seq += n;
	memcpy(l->last_hash, prev, 65);
	l->known_end += (off_t)len;
	l->dirty = 1;
	if (seq_out)
		*seq_out = l->seq - (int64_t)n + 1;
	if (l->sync_errno) {
		errno = l->sync_errno;
		l->sync_errno = 0;
		rc = csa_error_sys(
		    err, "cannot fsync ledger '%s' (records appended before this one)", l->path);
	}
	start_syncer(l);
	if (l->syncer_on < 0 && csa_mono_ns() - l->last_sync_ns > SYNC_EVERY_NS) {
		if (csa_fs_fsync(l->fd, 1) < 0)
			rc = csa_error_sys(err, "cannot fsync ledger '%s'", l->path);
		else
			l->dirty = 0;
		l->last_sync_ns = csa_mono_ns();
	}
unlock:
	flock(l->fd, LOCK_UN);
unlocked:
	pthread_mutex_unlock(&l->mu);
out:
	ledger_lines_free(ln, n);
	ledger_parts_free(pt, n);
	free(ln);
	free(pt);
	return rc;
}

/* 'whole' is 0 for a last line without its newline: an append cut short. */
typedef int (*line_fn)(void *ctx, const char *line, size_t lineno, int whole);

static int each_line(const char *path, line_fn fn, void *ctx, struct csa_err *err)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		if (errno == ENOENT)
			return CSA_OK; /* an empty ledger */
		return csa_error_sys(err, "cannot open ledger '%s'", path);
	}
	char *buf = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t n;
	int rc = 0;
	while (!rc && (n = getline(&buf, &cap, f)) >= 0) {
		lineno++;
		int whole = n && buf[n - 1] == '\n';
		if (whole)
			buf[n - 1] = '\0';
		rc = fn(ctx, buf, lineno, whole);
	}
	free(buf);
	fclose(f);
	return rc > 0 ? CSA_OK : rc;
}

void ledger_verify_init(struct ledger_verify *v)
{
	v->seq = 0;
	memcpy(v->prev, GENESIS, 65);
	v->report = json_pack("{s:b}", "ok", 1);
}

json_t *ledger_verify_end(struct ledger_verify *v)
{
	json_object_set_new(v->report, "records", json_integer(v->seq));
	return v->report;
}

int ledger_verify_line(struct ledger_verify *v, const char *line, size_t lineno, int whole)
{
	if (!whole) {
		/* not a record: the next append removes it */
		json_object_set_new(v->report, "torn_tail", json_true());
		return 1;
	}
	const char *problem = NULL;
	json_t *rec = json_loads(line, 0, NULL);
	if (!rec) {
		problem = "not a JSON record (torn or edited)";
	} else if (csa_json_int(rec, "seq", -1) != v->seq + 1) {
		problem = "sequence number out of order (record removed, inserted or moved)";
	} else if (!csa_json_str(rec, "prev") || strcmp(csa_json_str(rec, "prev"), v->prev) != 0) {
		problem = "does not link to the record before it";
	} else {
		char *c = canonical(rec);
		char h[65];
		sha256_hex(c ? c : "", c ? strlen(c) : 0, h);
		free(c);
		const char *have = csa_json_str(rec, "hash");
		if (!have || strcmp(have, h) != 0)
			problem = "content does not match its hash (record edited)";
		else
			memcpy(v->prev, h, 65);
	}
	if (problem) {
		json_object_set_new(v->report, "ok", json_false());
		json_object_set_new(v->report, "first_bad_seq", json_integer(v->seq + 1));
		json_object_set_new(v->report, "line", json_integer((json_int_t)lineno));
		json_object_set_new(v->report, "problem", json_string(problem));
		json_decref(rec);
		return 1; /* stop */
	}
	v->seq++;
	json_decref(rec);
	return 0;
}

static int verify_line(void *vc, const char *line, size_t lineno, int whole)
{
	return ledger_verify_line(vc, line, lineno, whole);
}

static int f_verify(struct csa_ledger *b, json_t **report, struct csa_err *err)
{
	struct file_ledger *l = (struct file_ledger *)b;
	struct ledger_verify v;
	ledger_verify_init(&v);
	int rc = each_line(l->path, verify_line, &v, err);
	if (rc) {
		json_decref(v.report);
		return rc;
	}
	*report = ledger_verify_end(&v);
	return CSA_OK;
}

struct tctx {
	const char *id;
	size_t idlen;
	json_t *out;
};

static int trail_line(void *vc, const char *line, size_t lineno, int whole)
{
	(void)lineno;
	struct tctx *t = vc;
	if (!whole)
		return 0;
	/* cheap filter before parsing */
	if (!strstr(line, t->id))
		return 0;
	json_t *rec = json_loads(line, 0, NULL);
	const char *tid = csa_json_str(rec, "ticket_id");
	if (tid && strcmp(tid, t->id) == 0)
		json_array_append(t->out, rec);
	json_decref(rec);
	return 0;
}

static int f_trail(struct csa_ledger *b, const char *ticket_id, json_t **out, struct csa_err *err)
{
	struct file_ledger *l = (struct file_ledger *)b;
	struct tctx t = {ticket_id, strlen(ticket_id), json_array()};
	int rc = each_line(l->path, trail_line, &t, err);
	if (rc) {
		json_decref(t.out);
		return rc;
	}
	*out = t.out;
	return CSA_OK;
}

static const struct csa_ledger_ops file_ops = {.append_many = f_append_many,
                                               .sync = f_sync,
                                               .verify = f_verify,
                                               .trail = f_trail,
                                               .close = f_close};

int csa_ledger_open(const char *path, struct csa_ledger **out, struct csa_err *err)
{
	struct file_ledger *l = calloc(1, sizeof(*l));
	if (!l)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the ledger");
	snprintf(l->path, sizeof(l->path), "%s", path);
	l->fd = csa_fs_open(path, O_RDWR | O_CREAT | O_APPEND, 0644);
	if (l->fd < 0) {
		int rc = csa_error_sys(err, "cannot open ledger '%s'", path);
		free(l);
		return rc;
	}
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	l->known_end = -1;
	l->last_sync_ns = csa_mono_ns();
	l->base.ops = &file_ops;
	*out = &l->base;
	return CSA_OK;
}

int csa_ledger_open_ws(struct csa_ws *ws, struct csa_ledger **out, struct csa_err *err)
{
	if (ws->pg)
		return csa_ledger_pg_open(ws->pg, out, err);
	char path[4096];
	if (csa_ws_path(ws, "audit/ledger.jsonl", path, sizeof(path)))
		return csa_error(err, CSA_ELIMIT, "workspace path too long: '%s'", ws->root);
	return csa_ledger_open(path, out, err);
}
