/* The durable outbox (outbox.h): queueing and delivery over HTTP and SMTP,
 * the same over every storage backend. */
#include "outbound/outbox.h"
#include "base/ts.h"
#include "outbound/email.h"
#include "store/leader.h"
#include "store/ws.h"

#include <curl/curl.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* The longest one POST may take (connect + transfer), for the lease. */
enum { CONNECT_TIMEOUT_MS = 2000, POST_TIMEOUT_MS = 5000 };

int64_t csa_outbox_backoff_ms(int attempts, double u)
{
	double ms = 1000.0;
	for (int i = 1; i < attempts && ms < 3600000.0; i++)
		ms *= 2;
	if (ms > 3600000.0)
		ms = 3600000.0;
	return (int64_t)(ms * (0.8 + 0.4 * u)); /* +-20% so retries do not stampede */
}

static void cred_release(struct csa_outbox_cred *c)
{
	free(c->user);
	free(c->password);
	free(c->header);
	memset(c, 0, sizeof(*c));
}

void csa_outbox_item_release(struct csa_outbox_item *it)
{
	free(it->url);
	free(it->payload);
	free(it->target);
	free(it->key);
	it->url = it->payload = it->target = it->key = NULL;
}

int csa_outbox_open_ws(struct csa_ws *ws, int max_attempts, struct csa_outbox **out,
                       struct csa_err *err)
{
	if (ws->pg)
		return csa_outbox_pg_open(ws->pg, max_attempts, out, err);
	char path[4200];
	if (csa_ws_path(ws, "outbox.db", path, sizeof(path)))
		return csa_error(err, CSA_ELIMIT, "workspace path too long for 'outbox.db'");
	return csa_outbox_open(path, max_attempts, out, err);
}

void csa_outbox_close(struct csa_outbox *ob)
{
	if (!ob)
		return;
	for (int i = 0; i < CSA_OUTBOX_CREDS; i++)
		cred_release(&ob->creds[i]);
	free(ob->ca_file);
	ob->ops->close(ob);
}

int csa_outbox_set_ca_file(struct csa_outbox *ob, const char *path, struct csa_err *err)
{
	char *copy = NULL;
	if (path) {
		/* read now, so a wrong path is said at start, not per delivery */
		FILE *f = fopen(path, "r");
		if (!f)
			return csa_error(err, CSA_EIO, "CA file '%s': %s", path, strerror(errno));
		fclose(f);
		if (!(copy = strdup(path)))
			return csa_error(err, CSA_ENOMEM, "out of memory");
	}
	free(ob->ca_file);
	ob->ca_file = copy;
	return CSA_OK;
}

static const struct csa_outbox_cred *cred_of(const struct csa_outbox *ob, const char *target)
{
	for (int i = 0; target && i < CSA_OUTBOX_CREDS; i++)
		if (ob->creds[i].target[0] && strcmp(ob->creds[i].target, target) == 0)
			return &ob->creds[i];
	return NULL;
}

static char *dup_or_null(const char *s, int *nomem)
{
	char *d = s ? strdup(s) : NULL;
	*nomem |= s && !d;
	return d;
}

int csa_outbox_set_credentials(struct csa_outbox *ob, const char *target, const char *user,
                               const char *password, const char *header, struct csa_err *err)
{
	struct csa_outbox_cred *slot = (struct csa_outbox_cred *)cred_of(ob, target);
	for (int i = 0; !slot && i < CSA_OUTBOX_CREDS; i++)
		if (!ob->creds[i].target[0])
			slot = &ob->creds[i];
	if (!slot || strlen(target) >= sizeof(slot->target))
		return csa_error(err, CSA_ELIMIT, "outbox: no room for the credentials of '%.40s'",
		                 target);
	cred_release(slot);
	int nomem = 0;
	slot->user = dup_or_null(user, &nomem);
	slot->password = dup_or_null(password, &nomem);
	slot->header = dup_or_null(header, &nomem);
	if (nomem) {
		cred_release(slot);
		return csa_error(err, CSA_ENOMEM, "out of memory keeping credentials of '%s'",
		                 target);
	}
	snprintf(slot->target, sizeof(slot->target), "%s", target);
	return CSA_OK;
}

static int deliverable_url(const char *url)
{
	static const char *const schemes[] = {"http://", "https://", "smtp://", "smtps://"};
	for (size_t i = 0; url && i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strncmp(url, schemes[i], strlen(schemes[i])) == 0)
			return 1;
	return 0;
}

int csa_outbox_enqueue(struct csa_outbox *ob, const char *key, const char *ticket_id,
                       const char *target, const char *url, const json_t *payload,
                       struct csa_err *err)
{
	if (!key || !target || !deliverable_url(url))
		return csa_error(err, CSA_EINVAL,
		                 "outbox: key, target and an http(s) or smtp(s) URL are required");
	char *body = json_dumps(payload, JSON_COMPACT);
	if (!body)
		return csa_error(err, CSA_ENOMEM, "out of memory queueing a delivery");
	int rc = ob->ops->enqueue(ob, key, ticket_id, target, url, body, csa_now_ms(), err);
	free(body);
	return rc;
}

int csa_outbox_for_ticket(struct csa_outbox *ob, const char *ticket_id, json_t **out,
                          struct csa_err *err)
{
	return ob->ops->for_ticket(ob, ticket_id, out, err);
}

void csa_outbox_set_hook(struct csa_outbox *ob, const struct csa_outbox_hook *h)
{
	memset(&ob->hook, 0, sizeof(ob->hook));
	if (h)
		ob->hook = *h;
}

void csa_outbox_set_fence(struct csa_outbox *ob, struct csa_leader *l)
{
	ob->fence = l;
}

/* The start of an answer (enough for {"ok": false, "error": ...}, and for
 * the object a created resource is answered with). */
struct answer {
	char b[16384];
	size_t n;
};

static size_t keep_start(char *p, size_t sz, size_t n, void *ud)
{
	struct answer *a = ud;
	size_t k = sz * n;
	size_t room = sizeof(a->b) - 1 - a->n;
	memcpy(a->b + a->n, p, k < room ? k : room);
	a->n += k < room ? k : room;
	a->b[a->n] = '\0';
	return sz * n;
}

/* Slack's Web API answers 200 with {"ok": false, "error": "..."} when it
 * refuses: that is a failure, with Slack's reason. */
static int refused_in_body(const struct answer *a, char *why, size_t whysz)
{
	json_t *j = json_loads(a->b, 0, NULL);
	int refused = json_is_object(j) && json_is_false(json_object_get(j, "ok"));
	if (refused) {
		const char *e = json_string_value(json_object_get(j, "error"));
		snprintf(why, whysz, "refused: %.200s", e ? e : "ok is false");
	}
	json_decref(j);
	return refused;
}

/* Send one JSON body by 'method' (POST, PUT), with an extra header line
 * when given; 0 on 2xx, else an error text in 'why'. The answer's start
 * in *a. */
static int request(const char *method, const char *url, const char *body, const char *header,
                   const char *key, const char *ca_file, struct answer *a, char *why,
                   size_t whysz)
{
	CURL *c = curl_easy_init();
	if (!c) {
		snprintf(why, whysz, "cannot create an HTTP handle");
		return -1;
	}
	a->n = 0;
	a->b[0] = '\0';
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	if (h && header)
		curl_slist_append(h, header);
	/* the same on every attempt, by any node: a receiver that keeps the
	 * keys it saw processes the item once (a key with a control
	 * character, which no caller of csa makes, would split the header) */
	char idem[600];
	if (h && key && strcspn(key, "\r\n") == strlen(key) &&
	    (size_t)snprintf(idem, sizeof(idem), "Idempotency-Key: %s", key) < sizeof(idem))
		curl_slist_append(h, idem);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	if (strcmp(method, "POST") != 0)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)POST_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	if (ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_start);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
	CURLcode r = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (r != CURLE_OK) {
		snprintf(why, whysz, "%s", curl_easy_strerror(r));
		return -1;
	}
	if (status < 200 || status > 299) {
		snprintf(why, whysz, "HTTP %ld", status);
		return -1;
	}
	return refused_in_body(a, why, whysz) ? -1 : 0;
}

/* Submit an e-mail item: {"mail_from", "rcpt_to", "data"}. */
static int send_mail(const char *url, const char *payload, const struct csa_outbox_cred *cr,
                     const char *ca_file, char *why, size_t whysz)
{
	json_t *j = json_loads(payload, 0, NULL);
	const char *from = json_string_value(json_object_get(j, "mail_from"));
	const char *to = json_string_value(json_object_get(j, "rcpt_to"));
	json_t *data = json_object_get(j, "data");
	int rc = -1;
	if (!from || !to || !json_is_string(data)) {
		snprintf(why, whysz, "e-mail item without mail_from, rcpt_to and data");
	} else {
		struct csa_smtp_login login = {cr ? cr->user : NULL, cr ? cr->password : NULL,
		                               ca_file};
		rc = csa_smtp_send(url, &login, from, to, json_string_value(data),
		                   json_string_length(data), POST_TIMEOUT_MS, why, whysz);
	}
	json_decref(j);
	return rc;
}

/* An item of the hooked target: the request its hook writes now, and
 * the answer handed back to it. */
static int deliver_hooked(struct csa_outbox *ob, const struct csa_outbox_item *it,
                          const struct csa_outbox_cred *cr, char *why, size_t whysz)
{
	struct csa_outbox_req req = {.method = ""};
	int rc = ob->hook.prepare(ob->hook.ctx, it, &req, why, whysz);
	if (rc == 0 && (!req.url || !req.body || !deliverable_url(req.url))) {
		snprintf(why, whysz, "the %s hook wrote no request", it->target);
		rc = -1;
	}
	struct answer *a = rc == 0 ? malloc(sizeof(*a)) : NULL;
	if (rc == 0 && !a) {
		snprintf(why, whysz, "out of memory for the answer");
		rc = -1;
	}
	if (rc == 0 && (rc = request(req.method, req.url, req.body, cr ? cr->header : NULL,
	                             it->key, ob->ca_file, a, why, whysz)) == 0 &&
	    ob->hook.answered)
		ob->hook.answered(ob->hook.ctx, it, &req, a->b);
	free(a);
	free(req.url);
	free(req.body);
	return rc;
}

/* One attempt at one item, by its target's hook or its URL's scheme. */
static int deliver_one(struct csa_outbox *ob, const struct csa_outbox_item *it, char *why,
                       size_t whysz)
{
	const struct csa_outbox_cred *cr = cred_of(ob, it->target);
	if (ob->hook.target[0] && strcmp(ob->hook.target, it->target) == 0)
		return deliver_hooked(ob, it, cr, why, whysz);
	if (strncmp(it->url, "smtp", 4) == 0)
		return send_mail(it->url, it->payload, cr, ob->ca_file, why, whysz);
	struct answer *a = malloc(sizeof(*a));
	if (!a) {
		snprintf(why, whysz, "out of memory for the answer");
		return -1;
	}
	int rc = request("POST", it->url, it->payload, cr ? cr->header : NULL, it->key, ob->ca_file,
	                 a, why, whysz);
	free(a);
	return rc;
}

static double jitter(void)
{
	unsigned char r[2] = {0};
	if (getrandom(r, sizeof(r), 0) != 2)
		r[0] = r[1] = 0;
	return (double)(r[0] << 8 | r[1]) / 65536.0;
}

int csa_outbox_deliver_due(struct csa_outbox *ob, int64_t now_ms, int max, int *delivered,
                           struct csa_err *err)
{
	return csa_outbox_deliver_target(ob, now_ms, max, NULL, delivered, err);
}

int csa_outbox_deliver_target(struct csa_outbox *ob, int64_t now_ms, int max, const char *target,
                              int *delivered, struct csa_err *err)
{
	struct csa_outbox_item *v = NULL;
	int n = 0, ok = 0;
	if (delivered)
		*delivered = 0;
	int rc;
	if (ob->fence && (rc = csa_leader_check(ob->fence, err)))
		return rc;
	/* the lease outlasts the round: every claimed item posted in turn */
	int64_t lease =
	    (int64_t)(max > 0 ? max : 1) * (CONNECT_TIMEOUT_MS + POST_TIMEOUT_MS) + 1000;
	rc = ob->ops->claim_due(ob, now_ms, max, lease, target, &v, &n, err);
	/* the items claimed so far still go out, without any lock held */
	for (int i = 0; i < n; i++) {
		char why[256] = "";
		int good = v[i].url && v[i].payload && v[i].target && v[i].key &&
		           deliver_one(ob, &v[i], why, sizeof(why)) == 0;
		if (!good && !why[0])
			snprintf(why, sizeof(why), "out of memory reading the item");
		int attempts = v[i].attempts + 1;
		const char *state = good                           ? "delivered"
		                    : attempts >= ob->max_attempts ? "failed"
		                                                   : "pending";
		struct csa_err serr = {0};
		/* an item delivered but not marked so goes out again when its
		 * lease ends (the receiver sees it twice): the caller hears */
		int src =
		    ob->ops->settle(ob, &v[i], attempts, state, now_ms,
		                    now_ms + csa_outbox_backoff_ms(attempts, jitter()), why, &serr);
		if (src && rc == CSA_OK) {
			rc = src;
			if (err)
				csa_error(err, src, "item %lld %s but its state not saved: %s",
				          (long long)v[i].id, good ? "delivered" : "failed",
				          serr.msg);
		}
		ok += good;
		csa_outbox_item_release(&v[i]);
	}
	free(v);
	if (delivered)
		*delivered = ok;
	return rc;
}
