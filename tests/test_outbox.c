/* The durable outbox against a local receiver that fails on demand:
 * delivery, retries with backoff, restart durability, giving up, and
 * idempotency. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/ts.h"
#include "outbound/outbox.h"
#include "support/tutil.h"

struct receiver {
	struct MHD_Daemon *d;
	int fail_next; /* answer 503 this many times */
	int got;       /* successful deliveries */
	char last[512];
};

struct body {
	char b[512];
	size_t n;
};

static enum MHD_Result on_req(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
	(void)url, (void)method, (void)version;
	struct receiver *r = cls;
	struct body *b = *con_cls;
	if (!b) {
		*con_cls = calloc(1, sizeof(struct body));
		return MHD_YES;
	}
	if (*upload_size) {
		size_t k =
		    *upload_size < sizeof(b->b) - b->n - 1 ? *upload_size : sizeof(b->b) - b->n - 1;
		memcpy(b->b + b->n, upload, k);
		b->n += k;
		*upload_size = 0;
		return MHD_YES;
	}
	unsigned status = 200;
	if (r->fail_next > 0) {
		r->fail_next--;
		status = 503;
	} else {
		r->got++;
		snprintf(r->last, sizeof(r->last), "%.*s", (int)b->n, b->b);
	}
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode t)
{
	(void)cls, (void)c, (void)t;
	free(*con_cls);
	*con_cls = NULL;
}

static struct receiver rcv;
static char url[128], *dir;

static int setup(void **state)
{
	(void)state;
	rcv.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_req, &rcv,
	                         MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_END);
	if (!rcv.d)
		return -1;
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(rcv.d, MHD_DAEMON_INFO_BIND_PORT);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/hook", i->port);
	dir = t_tmpdir("outbox");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	MHD_stop_daemon(rcv.d);
	t_rmrf(dir);
	free(dir);
	return 0;
}

static const char *state_of(struct csa_outbox *ob, const char *ticket, int *attempts)
{
	static char st[32];
	json_t *j;
	assert_int_equal(csa_outbox_for_ticket(ob, ticket, &j, NULL), 0);
	json_t *it = json_array_get(j, json_array_size(j) - 1);
	snprintf(st, sizeof(st), "%s", csa_json_str(it, "state"));
	if (attempts)
		*attempts = (int)csa_json_int(it, "attempts", -1);
	json_decref(j);
	return st;
}

static void backoff_schedule(void **state)
{
	(void)state;
	assert_int_equal(csa_outbox_backoff_ms(1, 0.5), 1000);
	assert_int_equal(csa_outbox_backoff_ms(2, 0.5), 2000);
	assert_int_equal(csa_outbox_backoff_ms(4, 0.5), 8000);
	assert_int_equal(csa_outbox_backoff_ms(30, 0.5), 3600000);
	assert_int_equal(csa_outbox_backoff_ms(1, 0.0), 800);
	assert_true(csa_outbox_backoff_ms(1, 0.999) < 1200);
}

static void retries_until_delivered_and_once_only(void **state)
{
	(void)state;
	char path[512];
	snprintf(path, sizeof(path), "%s/a.db", dir);
	struct csa_outbox *ob;
	struct csa_err err = {0};
	assert_int_equal(csa_outbox_open(path, 8, &ob, &err), 0);
	json_t *p = json_pack("{s:s}", "text", "Ticket T1 escalated to BILLING");
	assert_int_equal(
	    csa_outbox_enqueue(ob, "T1|d1|mattermost", "T1", "mattermost", url, p, &err), 1);
	assert_int_equal(
	    csa_outbox_enqueue(ob, "T1|d1|mattermost", "T1", "mattermost", url, p, &err), 0);
	json_decref(p);
	rcv.fail_next = 2;
	int64_t now = csa_now_ms();
	int n;
	assert_int_equal(csa_outbox_deliver_due(ob, now, 10, &n, &err), 0);
	assert_int_equal(n, 0);
	int attempts;
	assert_string_equal(state_of(ob, "T1", &attempts), "pending");
	assert_int_equal(attempts, 1);
	/* not due again before its backoff */
	assert_int_equal(csa_outbox_deliver_due(ob, now + 500, 10, &n, &err), 0);
	assert_string_equal(state_of(ob, "T1", &attempts), "pending");
	assert_int_equal(attempts, 1);
	assert_int_equal(csa_outbox_deliver_due(ob, now + 1300, 10, &n, &err), 0); /* 2nd fails */
	assert_int_equal(csa_outbox_deliver_due(ob, now + 10000, 10, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(state_of(ob, "T1", &attempts), "delivered");
	assert_int_equal(attempts, 3);
	assert_int_equal(rcv.got, 1);
	assert_non_null(strstr(rcv.last, "escalated to BILLING"));
	/* delivered items are not sent again */
	assert_int_equal(csa_outbox_deliver_due(ob, now + 100000, 10, &n, &err), 0);
	assert_int_equal(rcv.got, 1);
	csa_outbox_close(ob);
}

static void survives_a_restart_and_gives_up(void **state)
{
	(void)state;
	char path[512];
	snprintf(path, sizeof(path), "%s/b.db", dir);
	struct csa_outbox *ob;
	struct csa_err err = {0};
	json_t *p = json_pack("{s:s}", "text", "after restart");
	assert_int_equal(csa_outbox_open(path, 3, &ob, &err), 0);
	assert_int_equal(csa_outbox_enqueue(ob, "k-restart", "T2", "webhook", url, p, &err), 1);
	assert_int_equal(
	    csa_outbox_enqueue(ob, "k-dead", "T3", "webhook", "http://127.0.0.1:1/x", p, &err), 1);
	csa_outbox_close(ob); /* the process stops before delivering */
	int before = rcv.got;
	assert_int_equal(csa_outbox_open(path, 3, &ob, &err), 0);
	int n;
	int64_t now = csa_now_ms();
	assert_int_equal(csa_outbox_deliver_due(ob, now, 10, &n, &err), 0);
	assert_int_equal(rcv.got, before + 1);
	assert_string_equal(state_of(ob, "T2", NULL), "delivered");
	/* a dead endpoint: retried, then failed after max attempts */
	for (int k = 1; k <= 3; k++)
		assert_int_equal(
		    csa_outbox_deliver_due(ob, now + (int64_t)k * 3600 * 1000 * 2, 10, &n, &err),
		    0);
	int attempts;
	assert_string_equal(state_of(ob, "T3", &attempts), "failed");
	assert_int_equal(attempts, 3);
	json_t *j;
	assert_int_equal(csa_outbox_for_ticket(ob, "T3", &j, &err), 0);
	assert_non_null(csa_json_str(json_array_get(j, 0), "last_error"));
	json_decref(j);
	/* bad URLs are refused at the door */
	assert_int_equal(
	    csa_outbox_enqueue(ob, "k-bad", "T4", "webhook", "file:///etc/passwd", p, &err),
	    CSA_EINVAL);
	json_decref(p);
	csa_outbox_close(ob);
}

/* The storage contract a backend keeps (here outbox.db through two
 * handles, as two processes would have): a claimed item is nobody else's
 * until its lease ends; an item whose deliverer died is claimed again
 * then; a delivered one never again. */
static void claims_are_leased(void **state)
{
	(void)state;
	char path[512];
	snprintf(path, sizeof(path), "%s/lease.db", dir);
	struct csa_outbox *a, *b;
	struct csa_err err = {0};
	assert_int_equal(csa_outbox_open(path, 8, &a, &err), 0);
	assert_int_equal(csa_outbox_open(path, 8, &b, &err), 0);
	json_t *p = json_pack("{s:s}", "text", "x");
	const char *keys[] = {"k1", "k2", "k3"};
	for (int k = 0; k < 3; k++)
		assert_int_equal(csa_outbox_enqueue(a, keys[k], "T9", "webhook", url, p, &err), 1);
	json_decref(p);
	int64_t now = csa_now_ms();
	struct csa_outbox_item *v;
	int n;
	assert_int_equal(a->ops->claim_due(a, now, 10, 60000, NULL, &v, &n, &err), 0);
	assert_int_equal(n, 3);
	for (int i = 0; i < n; i++) {
		free(v[i].url);
		free(v[i].payload);
		free(v[i].target);
	}
	free(v);
	assert_int_equal(b->ops->claim_due(b, now + 59000, 10, 60000, NULL, &v, &n, &err), 0);
	assert_int_equal(n, 0); /* a holds them */
	free(v);
	/* a died: the lease ends, b claims them all */
	assert_int_equal(b->ops->claim_due(b, now + 60001, 10, 60000, NULL, &v, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0].attempts, 0);
	assert_int_equal(
	    b->ops->settle(b, v[0].id, 1, "delivered", now + 60002, now + 61000, "", &err), 0);
	for (int i = 0; i < n; i++) {
		free(v[i].url);
		free(v[i].payload);
		free(v[i].target);
	}
	free(v);
	assert_int_equal(a->ops->claim_due(a, now + 200000, 10, 60000, NULL, &v, &n, &err), 0);
	assert_int_equal(n, 2); /* never the delivered one again */
	for (int i = 0; i < n; i++) {
		free(v[i].url);
		free(v[i].payload);
		free(v[i].target);
	}
	free(v);
	csa_outbox_close(a);
	csa_outbox_close(b);
}

struct deliverer {
	char path[512];
	int delivered;
	int rc;
};

static void *deliver_all(void *arg)
{
	struct deliverer *d = arg;
	struct csa_outbox *ob;
	if ((d->rc = csa_outbox_open(d->path, 8, &ob, NULL)))
		return NULL;
	int n;
	do {
		n = 0;
		d->rc = csa_outbox_deliver_due(ob, csa_now_ms(), 3, &n, NULL);
		d->delivered += n;
	} while (d->rc == 0 && n > 0);
	csa_outbox_close(ob);
	return NULL;
}

/* Two servers delivering from one outbox at once: each item reaches its
 * receiver once (the claim, not luck, keeps them apart). */
static void two_deliverers_post_each_item_once(void **state)
{
	(void)state;
	struct deliverer d[2];
	memset(d, 0, sizeof(d));
	snprintf(d[0].path, sizeof(d[0].path), "%s/two.db", dir);
	snprintf(d[1].path, sizeof(d[1].path), "%s/two.db", dir);
	struct csa_outbox *ob;
	struct csa_err err = {0};
	assert_int_equal(csa_outbox_open(d[0].path, 8, &ob, &err), 0);
	for (int k = 0; k < 30; k++) {
		char key[16];
		snprintf(key, sizeof(key), "two-%d", k);
		json_t *p = json_pack("{s:s}", "text", key);
		assert_int_equal(csa_outbox_enqueue(ob, key, "T8", "webhook", url, p, &err), 1);
		json_decref(p);
	}
	int before = rcv.got;
	pthread_t th[2];
	for (int k = 0; k < 2; k++)
		pthread_create(&th[k], NULL, deliver_all, &d[k]);
	for (int k = 0; k < 2; k++)
		pthread_join(th[k], NULL);
	assert_int_equal(d[0].rc, 0);
	assert_int_equal(d[1].rc, 0);
	assert_int_equal(d[0].delivered + d[1].delivered, 30);
	assert_int_equal(rcv.got - before, 30);
	json_t *j;
	assert_int_equal(csa_outbox_for_ticket(ob, "T8", &j, &err), 0);
	size_t i;
	json_t *it;
	json_array_foreach(j, i, it)
	{
		assert_string_equal(csa_json_str(it, "state"), "delivered");
		assert_int_equal(csa_json_int(it, "attempts", 0), 1);
	}
	json_decref(j);
	csa_outbox_close(ob);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(backoff_schedule),
	    cmocka_unit_test(retries_until_delivered_and_once_only),
	    cmocka_unit_test(survives_a_restart_and_gives_up),
	    cmocka_unit_test(claims_are_leased),
	    cmocka_unit_test(two_deliverers_post_each_item_once),
	};
	int rc = cmocka_run_group_tests(tests, setup, teardown);
	curl_global_cleanup();
	return rc;
}
