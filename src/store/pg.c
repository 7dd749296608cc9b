/* One PostgreSQL database for every backend of a process: see store/pg.h. */
#include "store/pg.h"
#include "base/hash.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Idle connections kept for reuse; more may be open while busy (one per
 * held ticket lock, one per query or transaction in flight). The server
 * runs a thread per HTTP connection: with fewer idle ones than its usual
 * concurrent requests, every request beyond them paid a new connection
 * (GET of a ticket, 32 clients: 1,800/s with 8 kept, make bench-cluster). */
#define POOL_IDLE_MAX 32
/* Seconds a connection attempt may take unless the URL says otherwise. */
#define CONNECT_TIMEOUT "10"
/* Advisory lock key of the migrations (a constant every node agrees on). */
#define MIGRATE_LOCK_KEY "7236951823456701234"

/* ---- schema migrations ----------------------------------------------- */

/* Append only, for every table of csa in the database: a released
 * migration is never edited, a change is a new one. Each runs in the
 * transaction that records it. */
static const struct {
	int version;
	const char *name;
	const char *sql;
} migrations[] = {
    {1, "tickets",
     "CREATE SEQUENCE csa_ticket_version AS bigint;"
     "CREATE TABLE csa_tickets ("
     "  id text COLLATE \"C\" PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),"
     "  version bigint NOT NULL,"
     "  e jsonb NOT NULL CHECK (jsonb_typeof(e) = 'object'),"
     "  i jsonb NOT NULL CHECK (jsonb_typeof(i) = 'object'),"
     "  t jsonb NOT NULL CHECK (jsonb_typeof(t) = 'object'),"
     "  committed_at timestamptz NOT NULL);"
     "CREATE INDEX csa_tickets_status ON csa_tickets ((e->>'conversation_status'));"
     "CREATE INDEX csa_tickets_priority ON csa_tickets ((t->>'priority'));"
     "CREATE INDEX csa_tickets_stage ON csa_tickets ((t->>'workflow_stage'));"},
    /* outbound/outbox_pg.c: claim counts the claims of an item (the fence
     * of a settle), claimed_by names the node of the latest */
    {2, "outbox",
     "CREATE TABLE csa_outbox ("
     "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     "  key text NOT NULL UNIQUE,"
     "  ticket_id text,"
     "  target text NOT NULL,"
     "  url text NOT NULL,"
     "  payload text NOT NULL,"
     "  state text NOT NULL DEFAULT 'pending'"
     "    CHECK (state IN ('pending', 'delivered', 'failed')),"
     "  attempts integer NOT NULL DEFAULT 0,"
     "  next_ms bigint NOT NULL,"
     "  last_error text,"
     "  created_ms bigint NOT NULL,"
     "  delivered_ms bigint,"
     "  claim bigint NOT NULL DEFAULT 0,"
     "  claimed_by text);"
     "CREATE INDEX csa_outbox_due ON csa_outbox (next_ms, id) WHERE state = 'pending';"
     "CREATE INDEX csa_outbox_ticket ON csa_outbox (ticket_id, id);"},
    /* server/chanmap_pg.c and server/tokens_pg.c */
    {3, "channels and tokens",
     "CREATE TABLE csa_channels ("
     "  key text COLLATE \"C\" PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 512),"
     "  ticket_id text NOT NULL,"
     "  bound_at timestamptz NOT NULL DEFAULT now());"
     "CREATE TABLE csa_tokens ("
     "  id text COLLATE \"C\" PRIMARY KEY,"
     "  name text,"
     "  role text NOT NULL CHECK (role IN ('viewer', 'agent', 'admin')),"
     "  sha256 text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),"
     "  created text NOT NULL);"},
    /* store/leader_pg.c: the fencing epoch of each leadership role, one
     * more every time a node takes the role over */
    {4, "leaders",
     "CREATE TABLE csa_leaders ("
     "  role text COLLATE \"C\" PRIMARY KEY CHECK (length(role) BETWEEN 1 AND 31),"
     "  epoch bigint NOT NULL CHECK (epoch > 0),"
     "  holder text NOT NULL,"
     "  since timestamptz NOT NULL,"
     "  renewed_at timestamptz NOT NULL);"},
    /* automation/auto_pg.c, the controller's store: the decision log,
     * review tasks, alerts, the segment phases and rollback points (keys
     * in "C" order: a run's decisions are a key range, segments are listed
     * sorted as bytes); automation/ledger_pg.c, the audit ledger: one row
     * per record, its line as hashed */
    {5, "automation and audit ledger",
     "CREATE TABLE csa_auto_decisions ("
     "  n bigint GENERATED ALWAYS AS IDENTITY,"
     "  id text COLLATE \"C\" PRIMARY KEY,"
     "  ticket_id text COLLATE \"C\" NOT NULL,"
     "  type text COLLATE \"C\" NOT NULL,"
     "  segment text COLLATE \"C\" NOT NULL,"
     "  phase integer NOT NULL,"
     "  value text,"
     "  confidence double precision,"
     "  threshold double precision,"
     "  autonomous integer NOT NULL,"
     "  critical integer NOT NULL,"
     "  created_ms bigint NOT NULL,"
     "  final text,"
     "  correct integer,"
     "  reviewed_ms bigint,"
     "  reviewer text,"
     "  decision_ms bigint,"
     "  model text,"
     "  shown integer NOT NULL DEFAULT 0,"
     "  review_weight double precision);"
     "CREATE INDEX csa_auto_decisions_gate ON csa_auto_decisions"
     "  (type, segment, phase, created_ms);"
     "CREATE INDEX csa_auto_decisions_phase ON csa_auto_decisions (phase, created_ms);"
     "CREATE INDEX csa_auto_decisions_time ON csa_auto_decisions (phase, decision_ms)"
     "  WHERE decision_ms IS NOT NULL;"
     "CREATE INDEX csa_auto_decisions_ticket ON csa_auto_decisions (ticket_id);"
     "CREATE INDEX csa_auto_decisions_new_type ON csa_auto_decisions (type, created_ms);"
     "CREATE INDEX csa_auto_decisions_rev_type ON csa_auto_decisions (type, reviewed_ms)"
     "  WHERE final IS NOT NULL;"
     "CREATE INDEX csa_auto_decisions_rev_seg ON csa_auto_decisions"
     "  (type, segment, reviewed_ms) WHERE final IS NOT NULL;"
     "CREATE TABLE csa_auto_tasks ("
     "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     "  decision_id text COLLATE \"C\" NOT NULL,"
     "  ticket_id text COLLATE \"C\" NOT NULL,"
     "  type text COLLATE \"C\" NOT NULL,"
     "  segment text COLLATE \"C\" NOT NULL,"
     "  kind text NOT NULL,"
     "  status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'deciding', 'done')),"
     "  shown integer NOT NULL,"
     "  suggestion text,"
     "  confidence double precision,"
     "  alternatives text,"
     "  score double precision NOT NULL,"
     "  created_ms bigint NOT NULL,"
     "  due_ms bigint NOT NULL,"
     "  claim text,"
     "  value text,"
     "  reviewer text);"
     "CREATE INDEX csa_auto_tasks_open ON csa_auto_tasks (status, score);"
     "CREATE INDEX csa_auto_tasks_ticket ON csa_auto_tasks (ticket_id, status);"
     "CREATE INDEX csa_auto_tasks_decision ON csa_auto_tasks (decision_id);"
     "CREATE TABLE csa_auto_alerts ("
     "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     "  created_ms bigint NOT NULL,"
     "  type text NOT NULL,"
     "  severity text NOT NULL,"
     "  scope text NOT NULL,"
     "  detail text NOT NULL,"
     "  open integer NOT NULL DEFAULT 1);"
     "CREATE INDEX csa_auto_alerts_open ON csa_auto_alerts (type, scope) WHERE open = 1;"
     "CREATE TABLE csa_auto_state ("
     "  name text COLLATE \"C\" PRIMARY KEY,"
     "  doc text NOT NULL,"
     "  saved_at timestamptz NOT NULL DEFAULT now());"
     "CREATE TABLE csa_auto_points ("
     "  id text COLLATE \"C\" PRIMARY KEY,"
     "  manifest text NOT NULL,"
     "  saved_at timestamptz NOT NULL DEFAULT now());"
     "CREATE TABLE csa_auto_point_docs ("
     "  point_id text COLLATE \"C\" NOT NULL REFERENCES csa_auto_points (id),"
     "  name text COLLATE \"C\" NOT NULL,"
     "  body bytea NOT NULL,"
     "  PRIMARY KEY (point_id, name));"
     "CREATE TABLE csa_ledger ("
     "  seq bigint PRIMARY KEY CHECK (seq > 0),"
     "  ticket_id text COLLATE \"C\","
     "  line text NOT NULL,"
     "  hash text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'));"
     "CREATE INDEX csa_ledger_ticket ON csa_ledger (ticket_id, seq)"
     "  WHERE ticket_id IS NOT NULL;"},
    /* store/blobs_pg.c: the workspace's named documents (models, the LLM
     * calibration, the knowledge base), shared by every node */
    {6, "documents",
     "CREATE SEQUENCE csa_blob_version AS bigint;"
     "CREATE TABLE csa_blobs ("
     "  name text COLLATE \"C\" PRIMARY KEY CHECK (name ~ '^(models|kb)/[^/]{1,200}$'),"
     "  version bigint NOT NULL,"
     "  body bytea NOT NULL,"
     "  put_at timestamptz NOT NULL);"},
    /* store/ws.c: the configuration every node shares (config/csa.json) */
    {7, "shared configuration",
     "ALTER TABLE csa_blobs DROP CONSTRAINT csa_blobs_name_check;"
     "ALTER TABLE csa_blobs ADD CONSTRAINT csa_blobs_name_check"
     "  CHECK (name ~ '^(models|kb|config)/[^/]{1,200}$');"},
    /* llm/calllog_pg.c: the LLM calls every node makes, one budget */
    {8, "LLM call log",
     "CREATE TABLE csa_llm_calls ("
     "  ts bigint NOT NULL,"
     "  backend text NOT NULL,"
     "  purpose text NOT NULL,"
     "  tokens_in bigint,"
     "  tokens_out bigint,"
     "  cost double precision,"
     "  latency_ms bigint,"
     "  ok boolean NOT NULL);"
     "CREATE INDEX csa_llm_calls_ts ON csa_llm_calls (ts);"},
    /* store/learnlog_pg.c: the online-learning log every node applies in
     * order (flow/online.h); its identity is one row made by the first
     * node that needs it, not here: a restore needs every table empty */
    {9, "online learning",
     "CREATE TABLE csa_online_log ("
     "  one boolean PRIMARY KEY DEFAULT true CHECK (one),"
     "  id text NOT NULL CHECK (id ~ '^[0-9a-f]{32}$'));"
     "CREATE TABLE csa_online_examples ("
     "  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     "  kind text COLLATE \"C\" NOT NULL CHECK (kind ~ '^[a-z0-9_.-]{1,31}$'),"
     "  body bytea NOT NULL CHECK (length(body) <= 65536),"
     "  added_at timestamptz NOT NULL DEFAULT now());"
     "CREATE INDEX csa_online_examples_kind ON csa_online_examples (kind, seq);"},
};
#define NMIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

int csa_pg_schema_version(void)
{
	return migrations[NMIGRATIONS - 1].version;
}

/* ---- the pool -------------------------------------------------------- */

struct csa_pg {
	char *url;
	char where[320]; /* host:port/dbname, no password, for errors */
	pthread_mutex_t mu;
	PGconn *idle[POOL_IDLE_MAX];
	size_t nidle;
};

const char *csa_pg_where(const struct csa_pg *pg)
{
	return pg ? pg->where : "";
}

long long csa_pg_lock_key(const char *ns, const char *name)
{
	return (long long)(int64_t)csa_fnv1a_str(csa_fnv1a_str(CSA_FNV_SEED, ns), name);
}

/* libpq's message on one line, without the trailing newline. */
static void one_line(const char *in, char *out, size_t outsz)
{
	size_t n = 0;
	for (; in && *in && n + 1 < outsz; in++) {
		char ch = *in == '\n' || *in == '\t' || *in == '\r' ? ' ' : *in;
		if (ch == ' ' && (n == 0 || out[n - 1] == ' '))
			continue;
		out[n++] = ch;
	}
	while (n && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}

int csa_pg_error(const char *where, struct csa_err *err, PGconn *c, const PGresult *r,
                 const char *fmt, ...)
{
	char what[256], msg[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	const char *m = r ? PQresultErrorMessage(r) : NULL;
	if (!m || !*m)
		m = c ? PQerrorMessage(c) : "no connection";
	one_line(m, msg, sizeof(msg));
	return csa_error(err, CSA_EBACKEND, "%s: PostgreSQL at %s: %s", what, where, msg);
}

static void quiet(void *arg, const char *message)
{
	(void)arg, (void)message; /* NOTICEs ("already exists, skipping") */
}

/* host:port/dbname of a URL, for messages (never the password). */
static int describe_url(const char *url, const char *source, char *out, size_t outsz,
                        struct csa_err *err)
{
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(url, &perr);
	if (!opts) {
		char msg[200];
		one_line(perr ? perr : "out of memory", msg, sizeof(msg));
		PQfreemem(perr);
		return csa_error(err, CSA_EINVAL,
		                 "%s is not a PostgreSQL connection URL "
		                 "(postgresql://user:password@host:port/dbname): %s",
		                 source, msg);
	}
	const char *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL, *user = NULL;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val || !*o->val)
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			db = o->val;
		else if (strcmp(o->keyword, "user") == 0)
			user = o->val;
	}
	snprintf(out, outsz, "%s:%s/%s",
	         host       ? host
	         : hostaddr ? hostaddr
	                    : "localhost",
	         port ? port : "5432",
	         db     ? db
	         : user ? user
	                : "(default database)");
	PQconninfoFree(opts);
	return CSA_OK;
}

/* A new connection to 'url'. */
static int connect_url(const char *url, const char *where, PGconn **out, struct csa_err *err)
{
	/* expand_dbname: 'url' is parsed as a connection string; its own
	 * settings come after, so they win over these defaults. Keepalives:
	 * a node notices a server that vanished within about 30 s. */
	const char *const keys[] = {
	    "connect_timeout",     "application_name", "keepalives", "keepalives_idle",
	    "keepalives_interval", "keepalives_count", "dbname",     NULL};
	const char *const vals[] = {CONNECT_TIMEOUT, "csa", "1", "15", "5", "3", url, NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (!c)
		return csa_error(err, CSA_ENOMEM, "out of memory connecting to PostgreSQL at %s",
		                 where);
	if (PQstatus(c) != CONNECTION_OK) {
		char msg[300];
		one_line(PQerrorMessage(c), msg, sizeof(msg));
		PQfinish(c);
		return csa_error(err, CSA_EBACKEND, "cannot connect to PostgreSQL at %s: %s", where,
		                 msg);
	}
	PQsetNoticeProcessor(c, quiet, NULL);
	/* and the server notices a node that vanished (power lost, cable cut:
	 * no FIN ever comes) within about 30 s instead of the system's two
	 * hours, and drops its session with the advisory locks it held */
	const char *host = PQhost(c);
	if (host && host[0] != '/' && host[0] != '@') {
		int rc = csa_pg_exec(where, c, "setting the keepalives of a connection",
		                     "SET tcp_keepalives_idle = 15; "
		                     "SET tcp_keepalives_interval = 5; "
		                     "SET tcp_keepalives_count = 3",
		                     0, NULL, NULL, err);
		if (rc) {
			PQfinish(c);
			return rc;
		}
	}
	*out = c;
	return CSA_OK;
}

int csa_pg_get(struct csa_pg *pg, PGconn **out, struct csa_err *err)
{
	pthread_mutex_lock(&pg->mu);
	PGconn *c = pg->nidle ? pg->idle[--pg->nidle] : NULL;
	pthread_mutex_unlock(&pg->mu);
	if (c) {
		*out = c;
		return CSA_OK;
	}
	return connect_url(pg->url, pg->where, out, err);
}

void csa_pg_put(struct csa_pg *pg, PGconn *c)
{
	if (!c)
		return;
	if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE) {
		pthread_mutex_lock(&pg->mu);
		if (pg->nidle < POOL_IDLE_MAX) {
			pg->idle[pg->nidle++] = c;
			c = NULL;
		}
		pthread_mutex_unlock(&pg->mu);
	}
	if (c)
		PQfinish(c);
}

PGresult *csa_pg_query(struct csa_pg *pg, PGconn **c, const char *what, const char *sql, int n,
                       const char *const *params, struct csa_err *err, int *rc)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!*c && (*rc = csa_pg_get(pg, c, err)))
			return NULL;
		PGresult *r = PQexecParams(*c, sql, n, NULL, params, NULL, NULL, 0);
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
			*rc = CSA_OK;
			return r;
		}
		/* a pooled connection that died while idle: once more on a new
		 * one (a statement that was cut mid-way by a restart was
		 * rolled back by the server with its session) */
		if (PQstatus(*c) == CONNECTION_BAD && attempt == 0) {
			PQclear(r);
			PQfinish(*c);
			*c = NULL;
			continue;
		}
		*rc = csa_pg_error(pg->where, err, *c, r, "%s", what);
		PQclear(r);
		return NULL;
	}
	return NULL; /* not reached */
}

int csa_pg_exec(const char *where, PGconn *c, const char *what, const char *sql, int n,
                const char *const *params, PGresult **keep, struct csa_err *err)
{
	PGresult *r =
	    n || keep ? PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		int rc = csa_pg_error(where, err, c, r, "%s", what);
		PQclear(r);
		return rc;
	}
	if (keep)
		*keep = r;
	else
		PQclear(r);
	return CSA_OK;
}

void csa_pg_rollback(PGconn *c)
{
	if (c)
		PQclear(PQexec(c, "ROLLBACK"));
}

/* ---- migrations ------------------------------------------------------ */

static int migrate_on(PGconn *c, const char *where, int *applied, struct csa_err *err)
{
	int rc, n = 0;
	PGresult *r = NULL;
	if (applied)
		*applied = 0;
	if ((rc = csa_pg_exec(where, c, "schema migration: BEGIN", "BEGIN", 0, NULL, NULL, err)))
		return rc;
	const char *key[] = {MIGRATE_LOCK_KEY};
	if ((rc = csa_pg_exec(where, c, "schema migration: waiting for the migration lock",
	                      "SELECT pg_advisory_xact_lock($1::bigint)", 1, key, NULL, err)))
		goto fail;
	if ((rc = csa_pg_exec(where, c, "schema migration: looking for schema_migrations",
	                      "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL, &r,
	                      err)))
		goto fail;
	int have_table = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	r = NULL;
	if (!have_table &&
	    (rc = csa_pg_exec(where, c, "schema migration: creating schema_migrations",
	                      "CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
	                      "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
	                      0, NULL, NULL, err)))
		goto fail;
	if ((rc = csa_pg_exec(where, c, "schema migration: reading schema_migrations",
	                      "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL,
	                      &r, err)))
		goto fail;
	long current = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	r = NULL;
	if (current > csa_pg_schema_version()) {
		rc = csa_error(err, CSA_ESTATE,
		               "the database at %s has schema version %ld, newer than this csa "
		               "knows (%d): upgrade csa on this machine",
		               where, current, csa_pg_schema_version());
		goto fail;
	}
	for (size_t k = 0; k < NMIGRATIONS; k++) {
		if (migrations[k].version <= current)
			continue;
		char what[160], ver[16];
		snprintf(what, sizeof(what), "schema migration %d (%s)", migrations[k].version,
		         migrations[k].name);
		snprintf(ver, sizeof(ver), "%d", migrations[k].version);
		const char *p[] = {ver, migrations[k].name};
		if ((rc = csa_pg_exec(where, c, what, migrations[k].sql, 0, NULL, NULL, err)) ||
		    (rc = csa_pg_exec(where, c, what,
		                      "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
		                      2, p, NULL, err)))
			goto fail;
		n++;
	}
	if ((rc = csa_pg_exec(where, c, "schema migration: COMMIT", "COMMIT", 0, NULL, NULL, err)))
		goto fail;
	if (applied)
		*applied = n;
	return CSA_OK;
fail:
	csa_pg_rollback(c);
	return rc;
}

/* An observer changes nothing: the schema must be there and this
 * build's. */
static int expect_schema(PGconn *c, const char *where, struct csa_err *err)
{
	PGresult *r = NULL;
	int rc = csa_pg_exec(where, c, "reading the schema version",
	                     "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL, &r,
	                     err);
	if (rc == CSA_OK && strtol(PQgetvalue(r, 0, 0), NULL, 10) != csa_pg_schema_version())
		rc = csa_error(err, CSA_ESTATE,
		               "the database at %s has schema version %s, this csa needs %d "
		               "(run csa init with this database)",
		               where, PQgetvalue(r, 0, 0), csa_pg_schema_version());
	PQclear(r);
	return rc;
}

int csa_pg_migrate_url(const char *url, const char *source, int *applied, struct csa_err *err)
{
	char where[320];
	PGconn *c;
	int rc = describe_url(url, source, where, sizeof(where), err);
	if (rc || (rc = connect_url(url, where, &c, err)))
		return rc;
	rc = migrate_on(c, where, applied, err);
	PQfinish(c);
	return rc;
}

void csa_pg_free(struct csa_pg *pg)
{
	if (!pg)
		return;
	for (size_t k = 0; k < pg->nidle; k++)
		PQfinish(pg->idle[k]);
	pthread_mutex_destroy(&pg->mu);
	free(pg->url);
	free(pg);
}

int csa_pg_open(const char *url, const char *source, enum csa_pg_schema schema,
                struct csa_pg **out, struct csa_err *err)
{
	struct csa_pg *pg = calloc(1, sizeof(*pg));
	if (!pg || !(pg->url = strdup(url))) {
		free(pg);
		return csa_error(err, CSA_ENOMEM, "out of memory opening a PostgreSQL pool");
	}
	pthread_mutex_init(&pg->mu, NULL);
	PGconn *c = NULL;
	int rc = describe_url(url, source, pg->where, sizeof(pg->where), err);
	if (rc == CSA_OK && (rc = connect_url(url, pg->where, &c, err)))
		csa_error_prefix(err, "%s: ", source);
	if (rc == CSA_OK)
		rc = schema == CSA_PG_MIGRATE ? migrate_on(c, pg->where, NULL, err)
		                              : expect_schema(c, pg->where, err);
	if (rc) {
		if (c)
			PQfinish(c);
		csa_pg_free(pg);
		return rc;
	}
	csa_pg_put(pg, c);
	*out = pg;
	return CSA_OK;
}

char *csa_pg_hex(const void *buf, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *b = buf;
	char *h = malloc(2 * len + 1);
	for (size_t i = 0; h && i < len; i++) {
		h[2 * i] = digits[b[i] >> 4];
		h[2 * i + 1] = digits[b[i] & 15];
	}
	if (h)
		h[2 * len] = '\0';
	return h;
}
