/* Replies reach the customer on their channel, against local peers: an
 * SMTP sink (support/smtpsink.h) for e-mail, a fake HTTP API
 * (support/fakehttp.h) standing for Slack, Mattermost, Trello and the
 * generic webhook. Each test starts its own workspace, peers and server:
 *   test_reply [PATTERN]   runs the tests whose names match (* and ?). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/config.h"
#include "base/json.h"
#include "outbound/email.h"
#include "server/chanmap.h"
#include "server/server.h"
#include "server/server_internal.h"
#include "server/tokens.h"
#include "store/ws.h"
#include "support/fakehttp.h"
#include "support/smtpsink.h"
#include "support/thttp.h"
#include "support/tutil.h"

static char *dir;
static struct csa_ws *ws;
static struct csa_server *srv;
static struct smtp_sink *sink;
static struct fake_http *api;
static unsigned port, sink_port, api_port;
static char agent[80];
/* The next start()'s SMTP server: plain, or TLS with this certificate
 * (SINK_STARTTLS: smtp:// offering STARTTLS; SINK_SMTPS: smtps://). */
static enum { SINK_PLAIN, SINK_STARTTLS, SINK_SMTPS } sink_mode;
static char cert_dir[256], cert_file[300], key_file[300];

/* A request to the server as the agent, or with 'header' instead of its
 * token; the parsed answer (or NULL), status in r. */
static json_t *call(const char *method, const char *path, const char *body, const char *header,
                    struct t_resp *r)
{
	char auth[160];
	t_bearer(auth, agent);
	const char *h[] = {header ? header : auth, NULL};
	assert_int_equal(t_http(port, method, path, h, body, 30, r), 0);
	json_t *j = r->body ? json_loads(r->body, 0, NULL) : NULL;
	free(r->body);
	r->body = NULL;
	return j;
}

/* POST and expect 'status'; the answer (caller frees). */
static json_t *post(const char *path, const char *body, const char *header, long status)
{
	struct t_resp r;
	json_t *j = call("POST", path, body, header, &r);
	if (r.status != status) {
		char *s = j ? json_dumps(j, 0) : NULL;
		fail_msg("POST %s: %ld, expected %ld: %s", path, r.status, status, s ? s : "");
	}
	return j;
}

static json_t *get(const char *path)
{
	struct t_resp r;
	json_t *j = call("GET", path, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	return j;
}

/* A workspace with the channel settings 'channels' (merged over the
 * defaults; may be NULL), the peers, and a server on it. */
static void start(json_t *channels)
{
	struct csa_err err = {0};
	dir = t_tmpdir("reply");
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	if (sink_mode == SINK_PLAIN)
		assert_int_equal(smtp_sink_start(&sink, &sink_port), 0);
	else
		assert_int_equal(smtp_sink_start_tls(&sink, &sink_port, cert_file, key_file,
		                                     sink_mode == SINK_SMTPS),
		                 0);
	assert_int_equal(fake_http_start(&api, &api_port), 0);
	char base[64];
	snprintf(base, sizeof(base), "http://127.0.0.1:%u", api_port);
	json_t *ch =
	    json_pack("{s:{s:s, s:s}, s:s+, s:s+, s:s+}", "email", "from", "support@csa.test",
	              "from_name", "Acme Support", "slack_api_url", base, "/slack",
	              "mattermost_url", base, "/mm", "trello_api_url", base, "/trello");
	if (channels)
		csa_json_merge(ch, channels);
	json_t *over = json_pack("{s:o}", "channels", ch);
	if (csa_ws_config_override(ws, over, &err))
		fail_msg("%s", err.msg);
	json_decref(over);
	json_decref(channels);
	char *t, id[32];
	assert_int_equal(csa_token_create(dir, CSA_ROLE_AGENT, "test", &t, id, &err), 0);
	snprintf(agent, sizeof(agent), "%s", t);
	free(t);
	char smtp[64], hook[96];
	snprintf(smtp, sizeof(smtp), "%s://127.0.0.1:%u", sink_mode == SINK_SMTPS ? "smtps" : "smtp",
	         sink_port);
	snprintf(hook, sizeof(hook), "%s/webhook", base);
	setenv("CSA_SMTP_URL", smtp, 1);
	setenv("CSA_WEBHOOK_URL", hook, 1);
	struct csa_server_opts o = {"127.0.0.1", 0, 2, CSA_SOURCE_DIR "/web", 50};
	if (csa_server_start(ws, &o, &srv, &err))
		fail_msg("%s", err.msg);
	port = csa_server_port(srv);
}

static int teardown(void **state)
{
	(void)state;
	csa_server_stop(srv);
	csa_ws_close(ws);
	smtp_sink_stop(sink);
	fake_http_stop(api);
	t_rmrf(dir);
	free(dir);
	srv = NULL, ws = NULL, sink = NULL, api = NULL, dir = NULL;
	unsetenv("CSA_SMTP_URL");
	unsetenv("CSA_CA_FILE");
	if (sink_mode != SINK_PLAIN) {
		t_rmrf(cert_dir);
		sink_mode = SINK_PLAIN;
	}
	return 0;
}

/* A certificate for the next start()'s TLS server, and that server. */
static void tls_sink(int mode)
{
	char *d = t_tmpdir("cert");
	snprintf(cert_dir, sizeof(cert_dir), "%s", d);
	free(d);
	snprintf(cert_file, sizeof(cert_file), "%s/cert.pem", cert_dir);
	snprintf(key_file, sizeof(key_file), "%s/key.pem", cert_dir);
	assert_int_equal(smtp_sink_make_cert(cert_file, key_file), 0);
	sink_mode = mode;
}

/* A ticket from an e-mail sent to the inbound relay hook; its id. */
static void mail_in(const char *from, const char *subject, const char *mid, char ticket[80])
{
	json_t *m = json_pack("{s:s, s:s, s:s, s:s}", "from", from, "subject", subject, "text",
	                      "I was charged twice for invoice 77", "message_id", mid);
	char *body = json_dumps(m, 0);
	json_t *j = post("/hooks/email", body, "X-CSA-Hook-Token: hooktok", 202);
	snprintf(ticket, 80, "%s", csa_json_str(j, "ticket_id"));
	json_decref(j);
	free(body);
	json_decref(m);
}

/* A person's reply on a ticket; the answer. */
static json_t *reply(const char *ticket, const char *mid, const char *text, long status)
{
	char path[160];
	snprintf(path, sizeof(path), "/api/tickets/%s/messages", ticket);
	json_t *b =
	    json_pack("{s:s, s:{s:s, s:s, s:s, s:s}}", "side", "external", "message", "sender",
	              "cs_agent", "sender_id", "agent-7", "content", text, "message_id", mid);
	char *body = json_dumps(b, 0);
	json_t *j = post(path, body, NULL, status);
	free(body);
	json_decref(b);
	return j;
}

/* The value of header 'name' in a message's header block ("" if none). */
static void header_of(const char *msg, const char *name, char *out, size_t n)
{
	out[0] = '\0';
	size_t nl = strlen(name);
	const char *end = strstr(msg, "\r\n\r\n");
	for (const char *p = msg; p && p < end; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL) {
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (*v == ' ')
				v++;
			const char *e = strstr(v, "\r\n");
			/* folded continuation lines belong to the header */
			while (e && (e[2] == ' ' || e[2] == '\t'))
				e = strstr(e + 2, "\r\n");
			snprintf(out, n, "%.*s", (int)(e - v), v);
			return;
		}
	}
}

/* The delivery of 'target' among a ticket's deliveries, once it is
 * 'state' after at least 'attempts' attempts (waiting up to 10 s); a new
 * reference. */
static json_t *delivery(const char *ticket, const char *target, const char *state, int attempts)
{
	char path[160];
	snprintf(path, sizeof(path), "/api/tickets/%s/deliveries", ticket);
	for (int k = 0; k < 200; k++) {
		json_t *j = get(path);
		size_t i;
		json_t *d;
		json_array_foreach(json_object_get(j, "deliveries"), i, d)
		{
			if (strcmp(csa_json_str(d, "target"), target) == 0 &&
			    strcmp(csa_json_str(d, "state"), state) == 0 &&
			    csa_json_int(d, "attempts", 0) >= attempts) {
				json_incref(d);
				json_decref(j);
				return d;
			}
		}
		json_decref(j);
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	fail_msg("no %s delivery of ticket %s became %s", target, ticket, state);
	return NULL;
}

/* ---- composing, without a server ----------------------------------------------- */

static void compose_refuses_injection(void **state)
{
	(void)state;
	struct csa_mail m = {.from = "support@csa.test",
	                     .to_name = "Eve\r\nBcc: victim@evil.test",
	                     .to = "eve@example.com",
	                     .subject = "Hi\r\nBcc: victim@evil.test\nX-Evil: 1",
	                     .message_id = "<r1.T1@csa.test>",
	                     .in_reply_to = "<a@b>\r\nBcc: victim@evil.test",
	                     .references = "<ok@example.com> <bad\r\nBcc:@x> <also@example.com>",
	                     .text = "line one\n.\nline three",
	                     .date_ms = 1796600000000};
	char *out;
	size_t len;
	struct csa_err err = {0};
	assert_int_equal(csa_mail_compose(&m, &out, &len, &err), 0);
	/* no line of the header block starts a Bcc or X-Evil header */
	char *end = strstr(out, "\r\n\r\n");
	assert_non_null(end);
	for (char *p = out; p && p < end; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL) {
		assert_false(strncasecmp(p, "Bcc:", 4) == 0);
		assert_false(strncasecmp(p, "X-Evil:", 7) == 0);
	}
	assert_null(strstr(out, "In-Reply-To:")); /* an id that is not one is left out */
	assert_non_null(strstr(out, "References: <ok@example.com>\r\n <also@example.com>\r\n"));
	assert_non_null(strstr(out, "Subject: Hi Bcc: victim@evil.test X-Evil: 1\r\n"));
	/* a line holding only "." cannot end the DATA */
	assert_non_null(strstr(end, "\r\nline one\r\n=2E\r\nline three\r\n"));
	free(out);
	/* addresses are refused, not cleaned */
	m.to = "eve@example.com>\r\nRCPT TO:<x@y";
	assert_int_equal(csa_mail_compose(&m, &out, &len, &err), CSA_EINVAL);
	assert_non_null(strstr(err.msg, "To"));
	char a[100];
	assert_int_equal(csa_mail_addr_of("Ada Park <ada@example.com>", a, sizeof(a), "x", &err),
	                 0);
	assert_string_equal(a, "ada@example.com");
	assert_int_equal(csa_mail_addr_of("ada@exa mple.com", a, sizeof(a), "x", &err), CSA_EINVAL);
	/* a non-ASCII subject is sent as encoded words */
	m.to = "eve@example.com";
	m.subject = "Rückerstattung für Rechnung 77";
	assert_int_equal(csa_mail_compose(&m, &out, &len, &err), 0);
	assert_non_null(strstr(out, "Subject: =?UTF-8?B?"));
	free(out);
}

/* ---- e-mail ------------------------------------------------------------------------ */

static size_t count_of(const json_t *t, const char *doc, const char *key)
{
	return json_array_size(json_object_get(json_object_get(t, doc), key));
}

/* A person's reply reaches the customer's mailbox threaded to their last
 * message, is stored once, runs no pipeline (no new decision, no new
 * analysis note) and records the first response. */
static void email_reply_threads_and_runs_no_pipeline(void **state)
{
	(void)state;
	start(NULL);
	char t[80], path[160];
	mail_in("Ada Park <ada@example.com>", "Invoice", "<m1@example.com>", t);
	snprintf(path, sizeof(path), "/api/tickets/%s", t);
	json_t *before = get(path);
	assert_true(json_is_null(
	    json_object_get(json_object_get(json_object_get(before, "workflow"), "sla_metrics"),
	                    "first_response_time")));
	json_t *j = reply(t, "r1", "We refunded the second charge.\n.\nRegards, Sam", 201);
	assert_true(json_is_true(json_object_get(j, "reply")));
	assert_null(json_object_get(j, "agent_decisions")); /* no run */
	json_decref(j);
	assert_int_equal(smtp_sink_wait(sink, 1, 10000), 1);
	char *msg = smtp_sink_data(sink, 0), *rcpts = smtp_sink_rcpts(sink, 0), h[512], tag[100];
	assert_string_equal(rcpts, "<ada@example.com>\n");
	header_of(msg, "To", h, sizeof(h));
	assert_string_equal(h, "\"Ada Park\" <ada@example.com>");
	header_of(msg, "Subject", h, sizeof(h));
	snprintf(tag, sizeof(tag), "[%s] Invoice", t);
	assert_string_equal(h, tag);
	header_of(msg, "In-Reply-To", h, sizeof(h));
	assert_string_equal(h, "<m1@example.com>");
	header_of(msg, "References", h, sizeof(h));
	assert_string_equal(h, "<m1@example.com>");
	header_of(msg, "From", h, sizeof(h));
	assert_string_equal(h, "\"Acme Support\" <support@csa.test>");
	char mid[400];
	header_of(msg, "Message-ID", mid, sizeof(mid));
	assert_true(csa_mail_msgid_valid(mid));
	assert_non_null(strstr(msg, "\r\n\r\nWe refunded the second charge.\r\n=2E\r\nRegards"));
	free(msg);
	free(rcpts);
	json_t *d = delivery(t, "email", "delivered", 1);
	assert_int_equal(csa_json_int(d, "attempts", 0), 1);
	char key[200];
	snprintf(key, sizeof(key), "reply|%s|r1|email", t);
	assert_string_equal(csa_json_str(d, "key"), key);
	assert_string_equal(csa_json_str(d, "message_id"), "r1");
	json_decref(d);
	/* the ticket: the reply on the timeline, nothing else of a run */
	json_t *after = get(path);
	assert_int_equal(count_of(after, "workflow", "agent_decisions"),
	                 count_of(before, "workflow", "agent_decisions"));
	assert_int_equal(count_of(after, "internal_conversation", "messages"),
	                 count_of(before, "internal_conversation", "messages"));
	assert_int_equal(count_of(after, "external_conversation", "messages"), 2);
	json_t *last =
	    json_array_get(json_object_get(after, "unified_timeline"),
	                   json_array_size(json_object_get(after, "unified_timeline")) - 1);
	assert_string_equal(csa_json_str(last, "sender"), "cs_agent");
	assert_string_equal(csa_json_str(last, "side"), "external");
	json_t *frt =
	    json_object_get(json_object_get(json_object_get(after, "workflow"), "sla_metrics"),
	                    "first_response_time");
	assert_true(json_is_number(frt) && json_number_value(frt) >= 0);
	json_decref(before);
	json_decref(after);
	/* the request again: stored once, sent once */
	j = reply(t, "r1", "We refunded the second charge.\n.\nRegards, Sam", 200);
	assert_true(json_is_true(json_object_get(j, "duplicate")));
	json_decref(j);
	assert_int_equal(smtp_sink_wait(sink, 2, 1500), 1);
	/* the customer answers our e-mail (no tag in the subject): same ticket */
	json_t *m =
	    json_pack("{s:s, s:s, s:s, s:s, s:s}", "from", "ada@example.com", "subject", "Thanks",
	              "text", "got it", "message_id", "<m3@example.com>", "in_reply_to", mid);
	char *body = json_dumps(m, 0);
	j = post("/hooks/email", body, "X-CSA-Hook-Token: hooktok", 202);
	assert_string_equal(csa_json_str(j, "ticket_id"), t);
	json_decref(j);
	free(body);
	json_decref(m);
}

/* A hostile name and subject with CRLF add no header to the e-mail the
 * SMTP server receives, and go to no other recipient. */
static void hostile_customer_adds_no_header(void **state)
{
	(void)state;
	start(NULL);
	char t[80];
	mail_in("Eve\r\nBcc: victim@evil.test <eve@example.com>",
	        "Hi\r\nBcc: victim@evil.test\r\nX-Evil: 1", "<e1@example.com>", t);
	json_decref(reply(t, "r1", "Hello Eve", 201));
	assert_int_equal(smtp_sink_wait(sink, 1, 10000), 1);
	char *msg = smtp_sink_data(sink, 0), *rcpts = smtp_sink_rcpts(sink, 0);
	assert_string_equal(rcpts, "<eve@example.com>\n");
	char *end = strstr(msg, "\r\n\r\n");
	for (char *p = msg; p && p < end; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL) {
		if (strncasecmp(p, "Bcc:", 4) == 0 || strncasecmp(p, "X-Evil:", 7) == 0)
			fail_msg("a customer value became a header: %.60s", p);
	}
	free(msg);
	free(rcpts);
}

/* A customer without a usable address, or a server without SMTP: the
 * reply is refused, saying why, and not stored. */
static void undeliverable_reply_is_refused_and_not_stored(void **state)
{
	(void)state;
	start(NULL);
	char t[80], path[160];
	mail_in("ada@example.com", "Invoice", "<m1@example.com>", t);
	unsetenv("CSA_SMTP_URL"); /* and csa.json names none */
	json_t *j = reply(t, "r1", "hello", 409);
	assert_non_null(strstr(csa_json_str(j, "detail"), "no SMTP server"));
	json_decref(j);
	snprintf(path, sizeof(path), "/api/tickets/%s", t);
	json_t *tk = get(path);
	assert_int_equal(count_of(tk, "external_conversation", "messages"), 1);
	json_decref(tk);
	/* a ticket whose customer address is not one */
	char smtp[64];
	snprintf(smtp, sizeof(smtp), "%s://127.0.0.1:%u", sink_mode == SINK_SMTPS ? "smtps" : "smtp",
	         sink_port);
	setenv("CSA_SMTP_URL", smtp, 1);
	j = post(
	    "/api/tickets",
	    "{\"platform\": \"email\", \"client_name\": \"Mal\", \"customer\": {\"contact_info\": "
	    "{\"email\": \"mal@example.com>\\r\\nRCPT TO:<x@y.z\"}}, \"messages\": "
	    "[{\"content\": \"hello\"}]}",
	    NULL, 201);
	snprintf(t, sizeof(t), "%s", csa_json_str(j, "ticket_id"));
	json_decref(j);
	j = reply(t, "r2", "hello", 400);
	assert_non_null(strstr(csa_json_str(j, "detail"), "e-mail address"));
	json_decref(j);
}

/* The SMTP server refuses: the delivery is pending with its reason, and
 * the API shows it. */
static void smtp_refusal_is_shown_as_delivery_state(void **state)
{
	(void)state;
	start(NULL);
	smtp_sink_refuse_rcpt(sink, 550);
	char t[80];
	mail_in("ada@example.com", "Invoice", "<m1@example.com>", t);
	json_decref(reply(t, "r1", "hello", 201));
	json_t *d = delivery(t, "email", "pending", 1);
	assert_non_null(csa_json_str(d, "last_error"));
	assert_non_null(strstr(csa_json_str(d, "last_error"), "SMTP"));
	assert_true(csa_json_int(d, "attempts", 0) >= 1);
	json_decref(d);
	assert_int_equal(smtp_sink_wait(sink, 1, 300), 0);
}

/* With an SMTP login, a server that cannot upgrade to TLS gets no
 * message: the password never crosses in clear. */
static void smtp_login_needs_tls(void **state)
{
	(void)state;
	setenv("CSA_SMTP_USER", "csa", 1);
	setenv("CSA_SMTP_PASSWORD", "s3cret", 1);
	start(NULL); /* the outbox takes the login at start */
	unsetenv("CSA_SMTP_USER");
	unsetenv("CSA_SMTP_PASSWORD");
	char t[80];
	mail_in("ada@example.com", "Invoice", "<m1@example.com>", t);
	json_decref(reply(t, "r1", "hello", 201));
	json_t *d = delivery(t, "email", "pending", 1);
	assert_non_null(csa_json_str(d, "last_error"));
	assert_non_null(strstr(csa_json_str(d, "last_error"), "SSL"));
	json_decref(d);
	assert_int_equal(smtp_sink_wait(sink, 1, 300), 0);
}

/* A reply over SMTPS to a relay whose certificate a private CA signed
 * (CSA_CA_FILE): the TLS session is verified and the message arrives whole,
 * threaded. */
static void smtps_reply_verified_with_a_private_ca(void **state)
{
	(void)state;
	tls_sink(SINK_SMTPS);
	setenv("CSA_CA_FILE", cert_file, 1);
	start(NULL);
	char t[80], h[512], tag[100];
	mail_in("ada@example.com", "Invoice", "<m1@example.com>", t);
	json_decref(reply(t, "r1", "Refunded over TLS.", 201));
	assert_int_equal(smtp_sink_wait(sink, 1, 10000), 1);
	char *msg = smtp_sink_data(sink, 0);
	header_of(msg, "Subject", h, sizeof(h));
	snprintf(tag, sizeof(tag), "[%s] Invoice", t);
	assert_string_equal(h, tag);
	header_of(msg, "In-Reply-To", h, sizeof(h));
	assert_string_equal(h, "<m1@example.com>");
	assert_non_null(strstr(msg, "\r\n\r\nRefunded over TLS.\r\n"));
	free(msg);
	json_decref(delivery(t, "email", "delivered", 1));
}

/* The same relay without its CA: the certificate is not trusted, nothing
 * is sent, and the delivery says why. Verification is never turned off. */
static void smtps_untrusted_certificate_is_refused(void **state)
{
	(void)state;
	tls_sink(SINK_SMTPS);
	start(NULL);
	char t[80];
	mail_in("ada@example.com", "Invoice", "<m1@example.com>", t);
	json_decref(reply(t, "r1", "hello", 201));
	json_t *d = delivery(t, "email", "pending", 1);
	const char *why = csa_json_str(d, "last_error");
	assert_non_null(why);
	if (!strstr(why, "certificate") && !strstr(why, "SSL"))
		fail_msg("the delivery does not say the certificate was refused: %s", why);
	json_decref(d);
	assert_int_equal(smtp_sink_wait(sink, 1, 300), 0);
}

/* smtp:// with a login: the session is upgraded with STARTTLS before the
 * login, which the relay receives encrypted, and the message arrives. */
static void starttls_login_reaches_the_relay(void **state)
{
	(void)state;
	tls_sink(SINK_STARTTLS);
	setenv("CSA_CA_FILE", cert_file, 1);
	setenv("CSA_SMTP_USER", "csa-relay", 1);
	setenv("CSA_SMTP_PASSWORD", "s3cret", 1);
	start(NULL);
	unsetenv("CSA_SMTP_USER");
	unsetenv("CSA_SMTP_PASSWORD");
	char t[80];
	mail_in("ada@example.com", "Invoice", "<m1@example.com>", t);
	json_decref(reply(t, "r1", "Sent after STARTTLS.", 201));
	assert_int_equal(smtp_sink_wait(sink, 1, 10000), 1);
	int over_tls = 0;
	char *user = smtp_sink_auth_user(sink, &over_tls);
	assert_string_equal(user, "csa-relay");
	assert_true(over_tls);
	free(user);
	char *msg = smtp_sink_data(sink, 0);
	assert_non_null(strstr(msg, "Sent after STARTTLS."));
	free(msg);
}

/* A CA file that cannot be read stops the server at start, naming it. */
static void unreadable_ca_file_is_said_at_start(void **state)
{
	(void)state;
	struct csa_err err = {0};
	char *d = t_tmpdir("reply-ca");
	assert_int_equal(csa_ws_init(d, &err), 0);
	struct csa_ws *w;
	assert_int_equal(csa_ws_open(d, &w, &err), 0);
	setenv("CSA_CA_FILE", "/nonexistent/ca.pem", 1);
	struct csa_server_opts o = {"127.0.0.1", 0, 1, CSA_SOURCE_DIR "/web", 50};
	struct csa_server *sv = NULL;
	int rc = csa_server_start(w, &o, &sv, &err);
	unsetenv("CSA_CA_FILE");
	if (rc == 0)
		csa_server_stop(sv);
	assert_int_not_equal(rc, 0);
	assert_non_null(strstr(err.msg, "CSA_CA_FILE"));
	assert_non_null(strstr(err.msg, "/nonexistent/ca.pem"));
	csa_ws_close(w);
	t_rmrf(d);
	free(d);
}

/* An autonomous reply (the selector's draft, the strategy applied by
 * itself) goes out as a person's does: on the ticket's channel, stored on
 * E as the ai_agent's message, once however often the run is reported. */
static void autonomous_reply_goes_out_once(void **state)
{
	(void)state;
	start(NULL);
	char t[80], path[160], did[120];
	mail_in("ada@example.com", "Invoice", "<m1@example.com>", t);
	snprintf(did, sizeof(did), "%s:selector:0", t);
	/* what a pipeline run reports to its observer (notices.c) */
	json_t *held = json_pack("{s:{s:{s:s, s:{s:{s:b}, s:{s:{s:s, s:s}}}}}}", "agent_decisions",
	                         "selector", "decision_id", did, "decision", "applied_autonomously",
	                         "strategy", 0, "execution_parameters", "draft_reply", "text",
	                         "Held for review", "source", "kb");
	csa_notices_route(srv, t, held);
	json_decref(held);
	json_t *run = json_pack("{s:{s:{s:s, s:{s:{s:b}, s:{s:{s:s, s:s}}}}}}", "agent_decisions",
	                        "selector", "decision_id", did, "decision", "applied_autonomously",
	                        "strategy", 1, "execution_parameters", "draft_reply", "text",
	                        "Your refund is on its way.", "source", "kb");
	csa_notices_route(srv, t, run);
	csa_notices_route(srv, t, run); /* reported again: nothing twice */
	json_decref(run);
	assert_int_equal(smtp_sink_wait(sink, 2, 2500), 1);
	char *msg = smtp_sink_data(sink, 0), h[512];
	header_of(msg, "In-Reply-To", h, sizeof(h));
	assert_string_equal(h, "<m1@example.com>");
	assert_non_null(strstr(msg, "\r\n\r\nYour refund is on its way.\r\n"));
	assert_null(strstr(msg, "Held for review"));
	free(msg);
	snprintf(path, sizeof(path), "/api/tickets/%s", t);
	json_t *tk = get(path);
	json_t *msgs = json_object_get(json_object_get(tk, "external_conversation"), "messages");
	assert_int_equal(json_array_size(msgs), 2);
	assert_string_equal(csa_json_str(json_array_get(msgs, 1), "sender"), "ai_agent");
	assert_true(json_is_number(
	    json_object_get(json_object_get(json_object_get(tk, "workflow"), "sla_metrics"),
	                    "first_response_time")));
	json_decref(tk);
}

/* ---- platforms ---------------------------------------------------------------------- */

/* The request number 'nth' to 'prefix' on the fake Trello, as JSON (its
 * method in *method); fails the test when there is none. */
static json_t *trello_req(const char *prefix, int nth, char method[8])
{
	struct fake_req q;
	if (fake_http_find_nth(api, prefix, nth, &q))
		fail_msg("no request %d to %s", nth, prefix);
	snprintf(method, 8, "%s", q.method);
	assert_string_equal(q.auth, "OAuth oauth_consumer_key=\"tkey\", oauth_token=\"ttok\"");
	json_t *j = json_loads(q.body, 0, NULL);
	free(q.body);
	assert_non_null(j);
	return j;
}

/* With a board configured, a new ticket gets a card made from its
 * template in the list of its stage; an assignment puts the member's
 * Trello id on it and resolving moves it to the "end" list, each through
 * the outbox; the card is bound to the ticket both ways. */
static void trello_card_follows_the_ticket(void **state)
{
	(void)state;
	json_t *board = json_loads(
	    "{\"trello_board\": {\"lists\": {\"trigger\": \"LTRIG\", \"classifier\": \"LCLS\", "
	    "\"selection\": \"LSEL\", \"action\": \"LACT\", \"end\": \"LEND\"}, \"templates\": "
	    "{\"standard\": \"TPLSTD\"}}}",
	    0, NULL);
	start(board);
	struct csa_err err = {0};
	json_t *team = json_loads(
	    "{\"team\": {\"members\": [{\"id\": \"ann\", \"team\": \"cs\", \"platform_ids\": "
	    "{\"trello\": \"mem-ann\"}, \"skills\": [\"billing\"]}]}}",
	    0, NULL);
	if (csa_ws_config_override(ws, team, &err))
		fail_msg("%s", err.msg);
	json_decref(team);
	fake_http_answer(api, "/trello/1/cards", 200,
	                 "{\"id\": \"card0000000000000000001\", \"name\": \"made\"}");
	json_t *j = post("/api/tickets",
	                 "{\"platform\": \"web_chat\", \"client_name\": \"Bo\", \"messages\": "
	                 "[{\"content\": \"Export broken\\nsince the update\"}]}",
	                 NULL, 201);
	char t[80], path[160], method[8], card_of[120], bound[80];
	snprintf(t, sizeof(t), "%s", csa_json_str(j, "ticket_id"));
	json_decref(j);
	json_decref(delivery(t, "trello_card", "delivered", 1));
	j = trello_req("/trello/1/cards", 0, method);
	assert_string_equal(method, "POST");
	char name[160];
	snprintf(name, sizeof(name), "[%s] Export broken since the update", t);
	assert_string_equal(csa_json_str(j, "name"), name);
	assert_string_equal(csa_json_str(j, "idCardSource"), "TPLSTD");
	assert_string_equal(csa_json_str(j, "keepFromSource"), "all");
	json_t *tk = get(strcat(strcpy(path, "/api/tickets/"), t));
	const char *stage = csa_json_str(json_object_get(tk, "workflow"), "workflow_stage");
	static const char *const lists[][2] = {{"trigger", "LTRIG"}, {"classifier", "LCLS"},
	                                       {"selection", "LSEL"},  {"action", "LACT"},
	                                       {"end", "LEND"}};
	const char *want = NULL;
	for (size_t k = 0; k < 5; k++)
		if (stage && strcmp(lists[k][0], stage) == 0)
			want = lists[k][1];
	assert_non_null(want);
	assert_string_equal(csa_json_str(j, "idList"), want);
	assert_null(json_object_get(j, "idMembers"));
	json_decref(j);
	json_decref(tk);
	snprintf(card_of, sizeof(card_of), "trello-card-of:%s", t);
	assert_int_equal(csa_chanmap_get(srv->chanmap, card_of, bound, sizeof(bound), &err), 0);
	assert_string_equal(bound, "card0000000000000000001");
	assert_int_equal(
	    csa_chanmap_get(srv->chanmap, "trello:card0000000000000000001", bound, sizeof(bound), &err),
	    0);
	assert_string_equal(bound, t);

	/* assigned: the member's Trello id on the card */
	static const char card[] = "/trello/1/cards/card0000000000000000001";
	int puts = fake_http_count(api, card);
	snprintf(path, sizeof(path), "/api/tickets/%s/assign", t);
	json_decref(post(path, "{\"member\": \"ann\"}", NULL, 200));
	for (int k = 0; k < 200 && fake_http_count(api, card) <= puts; k++)
		usleep(50000);
	if (fake_http_count(api, card) <= puts)
		fail_msg("the assignment sent nothing for the card");
	j = trello_req(card, (puts = fake_http_count(api, card)) - 1, method);
	assert_string_equal(method, "PUT");
	assert_string_equal(csa_json_str(j, "idMembers"), "mem-ann");
	json_decref(j);

	/* resolved: to the end list */
	snprintf(path, sizeof(path), "/api/tickets/%s/resolve", t);
	json_decref(post(path, "{\"csat\": 5}", NULL, 200));
	for (int k = 0; k < 200 && fake_http_count(api, card) <= puts; k++)
		usleep(50000);
	if (fake_http_count(api, card) <= puts)
		fail_msg("the resolution sent nothing for the card");
	j = trello_req(card, fake_http_count(api, card) - 1, method);
	assert_string_equal(method, "PUT");
	assert_string_equal(csa_json_str(j, "idList"), "LEND");
	assert_string_equal(csa_json_str(j, "idMembers"), "mem-ann");
	json_decref(j);
	/* a server started again still brings the card up to date: its items
	 * are new to the outbox the first one left */
	csa_server_stop(srv);
	struct csa_server_opts o = {"127.0.0.1", 0, 2, CSA_SOURCE_DIR "/web", 50};
	if (csa_server_start(ws, &o, &srv, &err))
		fail_msg("%s", err.msg);
	port = csa_server_port(srv);
	puts = fake_http_count(api, card);
	snprintf(path, sizeof(path), "/api/tickets/%s/messages", t);
	json_decref(post(path, "{\"side\": \"internal\", \"message\": {\"content\": \"closed\"}}",
	                 NULL, 201));
	for (int k = 0; k < 200 && fake_http_count(api, card) <= puts; k++)
		usleep(50000);
	if (fake_http_count(api, card) <= puts)
		fail_msg("the server started again sent nothing for the card");
	j = trello_req(card, fake_http_count(api, card) - 1, method);
	assert_string_equal(method, "PUT");
	assert_string_equal(csa_json_str(j, "idList"), "LEND");
	json_decref(j);
	/* one card, however many commits */
	assert_int_equal(fake_http_count(api, "/trello/1/cards") -
	                     fake_http_count(api, "/trello/1/cards/"),
	                 1);
}

/* A board the configuration cannot use is refused when it is loaded,
 * naming what is wrong. */
static void trello_board_settings_are_checked(void **state)
{
	(void)state;
	static const struct {
		const char *board, *says;
	} bad[] = {
	    {"{\"lists\": {\"end\": \"L1\"}}", "trigger"},
	    {"{\"lists\": {\"trigger\": \"L1\", \"done\": \"L2\"}}", "'done' is not a workflow_stage"},
	    {"{\"lists\": {\"trigger\": \"L/../x\"}}", "Trello id"},
	    {"{\"lists\": {\"trigger\": \"L1\"}, \"templates\": {\"standard\": 7}}", "Trello id"},
	    {"{\"lists\": {\"trigger\": \"L1\"}, \"colour\": {}}", "unknown key 'colour'"},
	    {"[]", "must be null or"},
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		struct csa_config cfg;
		struct csa_err err = {0};
		assert_int_equal(csa_config_init_default(&cfg), 0);
		char text[512];
		snprintf(text, sizeof(text), "{\"channels\": {\"trello_board\": %s}}", bad[k].board);
		json_t *over = json_loads(text, 0, NULL);
		assert_non_null(over);
		int rc = csa_config_merge(&cfg, over, "test", &err);
		json_decref(over);
		if (rc == 0 || !strstr(err.msg, bad[k].says))
			fail_msg("%s: %d '%s', expected a refusal saying %s", bad[k].board, rc, err.msg,
			         bad[k].says);
		csa_config_release(&cfg);
	}
}

/* A Trello ticket with Slack and Mattermost threads: the reply is a card
 * comment and a reply in each thread, with the configured credentials. */
static void trello_comment_and_thread_replies(void **state)
{
	(void)state;
	start(NULL);
	json_t *j = post("/api/tickets",
	                 "{\"platform\": \"trello\", \"client_name\": \"Bo\", \"messages\": "
	                 "[{\"content\": \"card says hi\", \"metadata\": {\"platform_specific\": "
	                 "{\"id\": \"5f0c1a2b3c4d5e6f7a8b9c0d\", \"name\": \"Export broken\"}}}]}",
	                 NULL, 201);
	char t[80], path[160];
	snprintf(t, sizeof(t), "%s", csa_json_str(j, "ticket_id"));
	json_decref(j);
	snprintf(path, sizeof(path), "/api/tickets/%s/messages", t);
	json_decref(
	    post(path,
	         "{\"side\": \"internal\", \"message\": {\"content\": \"on it\", \"platform\": "
	         "\"slack\", \"metadata\": {\"platform_specific\": {\"channel\": \"C42\", "
	         "\"ts\": \"1700000000.0002\", \"thread_ts\": \"1700000000.0001\"}}}}",
	         NULL, 201));
	/* the team discusses it in Mattermost (the outgoing webhook binds
	 * the thread to the ticket) */
	char mm[512];
	snprintf(mm, sizeof(mm),
	         "{\"token\": \"mmtok\", \"text\": \"[%s] same here\", \"channel_id\": "
	         "\"mmchan\", \"post_id\": \"mmpost1\", \"root_id\": \"\", \"user_name\": "
	         "\"dana\"}",
	         t);
	json_decref(post("/hooks/mattermost", mm, "X-None: 1", 202));
	json_decref(reply(t, "r1", "Fixed in 2.4.1", 201));
	assert_true(fake_http_wait(api, 3, 10000) >= 3);
	struct fake_req q;
	assert_int_equal(fake_http_find(api,
	                                "/trello/1/cards/5f0c1a2b3c4d5e6f7a8b9c0d/actions/"
	                                "comments",
	                                &q),
	                 0);
	assert_string_equal(q.method, "POST");
	assert_string_equal(q.auth, "OAuth oauth_consumer_key=\"tkey\", oauth_token=\"ttok\"");
	j = json_loads(q.body, 0, NULL);
	assert_string_equal(csa_json_str(j, "text"), "Fixed in 2.4.1");
	json_decref(j);
	free(q.body);
	assert_int_equal(fake_http_find(api, "/slack/chat.postMessage", &q), 0);
	assert_string_equal(q.auth, "Bearer xoxb-test");
	j = json_loads(q.body, 0, NULL);
	assert_string_equal(csa_json_str(j, "channel"), "C42");
	assert_string_equal(csa_json_str(j, "thread_ts"), "1700000000.0001");
	assert_string_equal(csa_json_str(j, "text"), "Fixed in 2.4.1");
	json_decref(j);
	free(q.body);
	assert_int_equal(fake_http_find(api, "/mm/api/v4/posts", &q), 0);
	assert_string_equal(q.auth, "Bearer mm-bot");
	j = json_loads(q.body, 0, NULL);
	assert_string_equal(csa_json_str(j, "channel_id"), "mmchan");
	assert_string_equal(csa_json_str(j, "root_id"), "mmpost1");
	assert_string_equal(csa_json_str(j, "message"), "Fixed in 2.4.1");
	json_decref(j);
	free(q.body);
	assert_int_equal(fake_http_count(api, "/webhook"), 0); /* not a web chat */
	json_decref(delivery(t, "trello", "delivered", 1));
	json_decref(delivery(t, "slack_thread", "delivered", 1));
	json_decref(delivery(t, "mattermost_thread", "delivered", 1));
	/* Mattermost reports csa's thread reply: not noted twice */
	json_t *echo = post("/hooks/mattermost",
	                    "{\"token\": \"mmtok\", \"text\": \"Fixed in 2.4.1\", \"channel_id\": "
	                    "\"mmchan\", \"post_id\": \"mmpost2\", \"root_id\": \"mmpost1\", "
	                    "\"user_name\": \"csa-bot\"}",
	                    "X-None: 1", 200);
	assert_string_equal(csa_json_str(echo, "ignored"), "csa's own reply");
	json_decref(echo);
}

/* Slack answers 200 {"ok": false}: that is a failed delivery with
 * Slack's reason, retried, not a success. */
static void slack_refusal_is_a_failure(void **state)
{
	(void)state;
	start(NULL);
	fake_http_answer(api, "/slack", 200, "{\"ok\": false, \"error\": \"channel_not_found\"}");
	json_t *j = post("/api/tickets",
	                 "{\"platform\": \"web_chat\", \"client_name\": \"Cy\", \"messages\": "
	                 "[{\"content\": \"chat hello\"}]}",
	                 NULL, 201);
	char t[80], path[160];
	snprintf(t, sizeof(t), "%s", csa_json_str(j, "ticket_id"));
	json_decref(j);
	snprintf(path, sizeof(path), "/api/tickets/%s/messages", t);
	json_decref(post(path,
	                 "{\"side\": \"internal\", \"message\": {\"content\": \"x\", \"platform\": "
	                 "\"slack\", \"metadata\": {\"platform_specific\": {\"channel\": \"C9\", "
	                 "\"ts\": \"1.5\"}}}}",
	                 NULL, 201));
	json_decref(reply(t, "r1", "hello from chat", 201));
	json_t *d = delivery(t, "slack_thread", "pending", 1);
	assert_non_null(csa_json_str(d, "last_error"));
	assert_string_equal(csa_json_str(d, "last_error"), "refused: channel_not_found");
	json_decref(d);
	/* the web chat reply itself went to the generic webhook */
	d = delivery(t, "webhook", "delivered", 1);
	json_decref(d);
	struct fake_req q;
	assert_int_equal(fake_http_find(api, "/webhook", &q), 0);
	j = json_loads(q.body, 0, NULL);
	assert_string_equal(csa_json_str(j, "ticket_id"), t);
	assert_string_equal(csa_json_str(j, "to"), "customer");
	assert_string_equal(csa_json_str(j, "platform"), "web_chat");
	assert_string_equal(csa_json_str(j, "message"), "hello from chat");
	assert_string_equal(csa_json_str(j, "message_id"), "r1");
	json_decref(j);
	free(q.body);
}

/* A Trello webhook body for a comment on a card, with its signature
 * header (base64 HMAC-SHA1 of body + callback URL). */
static void trello_comment(const char *action, const char *card, const char *text, char *body,
                           size_t n, char *sig, size_t sn)
{
	json_t *j = json_pack("{s:{s:s, s:s, s:{s:s, s:{s:s, s:s}}, s:{s:s, s:s}}}", "action", "id",
	                      action, "type", "commentCard", "data", "text", text, "card", "id",
	                      card, "name", "Export broken", "memberCreator", "username", "bo",
	                      "fullName", "Bo Customer");
	char *d = json_dumps(j, JSON_COMPACT);
	snprintf(body, n, "%s", d);
	free(d);
	json_decref(j);
	char signed_[4096];
	int l = snprintf(signed_, sizeof(signed_), "%s%s", body, "https://csa.test/hooks/trello");
	unsigned char mac[20], b64[64];
	unsigned int ml;
	HMAC(EVP_sha1(), "trellosecret", 12, (unsigned char *)signed_, (size_t)l, mac, &ml);
	EVP_EncodeBlock(b64, mac, 20);
	snprintf(sig, sn, "X-Trello-Webhook: %s", b64);
}

/* csa's own replies coming back (Trello reports the comment csa posted;
 * a mailbox gets a copy of csa's e-mail) are not customer messages: they
 * would run the pipeline, and an autonomous reply would loop. */
static void own_replies_coming_back_are_ignored(void **state)
{
	(void)state;
	start(json_pack("{s:s}", "trello_callback_url", "https://csa.test/hooks/trello"));
	char body[2048], sig[128], t[80], path[160];
	trello_comment("a1", "5f0c1a2b3c4d5e6f7a8b9c0d", "export is broken", body, sizeof(body),
	               sig, sizeof(sig));
	json_t *j = post("/hooks/trello", body, sig, 202);
	snprintf(t, sizeof(t), "%s", csa_json_str(j, "ticket_id"));
	json_decref(j);
	json_decref(reply(t, "r1", "Fixed in 2.4.1", 201));
	assert_true(fake_http_wait(api, 1, 10000) >= 1);
	/* Trello reports csa's comment as a new one */
	trello_comment("a2", "5f0c1a2b3c4d5e6f7a8b9c0d", "Fixed in 2.4.1", body, sizeof(body), sig,
	               sizeof(sig));
	j = post("/hooks/trello", body, sig, 200);
	assert_string_equal(csa_json_str(j, "ignored"), "csa's own reply");
	json_decref(j);
	/* the customer's next comment is theirs */
	trello_comment("a3", "5f0c1a2b3c4d5e6f7a8b9c0d", "thanks, works", body, sizeof(body), sig,
	               sizeof(sig));
	json_decref(post("/hooks/trello", body, sig, 202));
	/* a copy of csa's own e-mail reaching the inbound relay */
	snprintf(body, sizeof(body),
	         "{\"from\": \"Acme Support <SUPPORT@csa.test>\", \"subject\": \"[%s] Export\", "
	         "\"text\": \"Fixed in 2.4.1\", \"message_id\": \"<r1.%s@csa.test>\"}",
	         t, t);
	j = post("/hooks/email", body, "X-CSA-Hook-Token: hooktok", 200);
	assert_non_null(csa_json_str(j, "ignored"));
	json_decref(j);
	snprintf(path, sizeof(path), "/api/tickets/%s", t);
	j = get(path);
	json_t *msgs = json_object_get(json_object_get(j, "external_conversation"), "messages");
	assert_int_equal(json_array_size(msgs), 3); /* comment, reply, comment */
	assert_string_equal(csa_json_str(json_array_get(msgs, 2), "content"), "thanks, works");
	json_decref(j);
}

/* ---- Flock -------------------------------------------------------------------------- */

static void b64url(const unsigned char *d, size_t n, char *out)
{
	int l = EVP_EncodeBlock((unsigned char *)out, d, (int)n);
	while (l > 0 && out[l - 1] == '=')
		l--;
	out[l] = '\0';
	for (char *p = out; *p; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
}

/* "X-Flock-Event-Token: <JWT>" signed with 'secret', alg 'alg'. */
static void flock_token(const char *secret, const char *alg, long exp, char *out, size_t n)
{
	char head[128], claims[160], h64[256], c64[256], sig[64], signing[600];
	snprintf(head, sizeof(head), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
	snprintf(claims, sizeof(claims), "{\"appId\":\"a1\",\"userId\":\"u:1\",\"exp\":%ld}", exp);
	b64url((unsigned char *)head, strlen(head), h64);
	b64url((unsigned char *)claims, strlen(claims), c64);
	snprintf(signing, sizeof(signing), "%s.%s", h64, c64);
	unsigned char mac[32];
	unsigned int l;
	HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)signing, strlen(signing),
	     mac, &l);
	b64url(mac, 32, sig);
	snprintf(out, n, "X-Flock-Event-Token: %s.%s", signing, sig);
}

static void flock_hook_signed_and_stored_once(void **state)
{
	(void)state;
	start(NULL);
	char t[80], body[512], tok[1024], path[160];
	mail_in("ada@example.com", "Invoice", "<m1@example.com>", t);
	snprintf(body, sizeof(body),
	         "{\"uid\": \"1700000000-abc\", \"from\": \"u:7\", \"to\": \"g:support\", "
	         "\"text\": \"[%s] refund approved by finance\", \"timestamp\": 1700000000}",
	         t);
	long now = (long)time(NULL);
	flock_token("flocksecret", "HS256", now + 300, tok, sizeof(tok));
	json_t *j = post("/hooks/flock", body, tok, 202);
	assert_string_equal(csa_json_str(j, "ticket_id"), t);
	json_decref(j);
	j = post("/hooks/flock", body, tok, 200); /* Flock retries */
	assert_true(json_is_true(json_object_get(j, "duplicate")));
	json_decref(j);
	/* wrong secret, expired, "none", missing */
	flock_token("other", "HS256", now + 300, tok, sizeof(tok));
	json_decref(post("/hooks/flock", body, tok, 401));
	flock_token("flocksecret", "HS256", now - 10, tok, sizeof(tok));
	json_decref(post("/hooks/flock", body, tok, 401));
	flock_token("flocksecret", "none", now + 300, tok, sizeof(tok));
	json_decref(post("/hooks/flock", body, tok, 401));
	json_decref(post("/hooks/flock", body, "X-Other: 1", 401));
	/* no tag: Flock has no threads, so nothing names a ticket */
	json_decref(post("/hooks/flock",
	                 "{\"uid\": \"u2\", \"from\": \"u:7\", \"to\": \"g:support\", \"text\": "
	                 "\"which ticket?\"}",
	                 (flock_token("flocksecret", "HS256", now + 300, tok, sizeof(tok)), tok),
	                 422));
	snprintf(path, sizeof(path), "/api/tickets/%s", t);
	j = get(path);
	json_t *msgs = json_object_get(json_object_get(j, "internal_conversation"), "messages");
	int notes = 0;
	size_t i;
	json_t *m;
	json_array_foreach(msgs, i, m)
	{
		if (strstr(csa_json_str(m, "content"), "refund approved by finance")) {
			notes++;
			assert_string_equal(csa_json_str(m, "platform"), "flock");
		}
	}
	assert_int_equal(notes, 1);
	json_decref(j);
}

#define T(name) cmocka_unit_test_teardown(name, teardown)

int main(int argc, char **argv)
{
	setenv("CSA_EMAIL_HOOK_TOKEN", "hooktok", 1);
	setenv("SLACK_BOT_TOKEN", "xoxb-test", 1);
	setenv("MATTERMOST_BOT_TOKEN", "mm-bot", 1);
	setenv("TRELLO_KEY", "tkey", 1);
	setenv("TRELLO_TOKEN", "ttok", 1);
	setenv("FLOCK_APP_SECRET", "flocksecret", 1);
	setenv("TRELLO_SECRET", "trellosecret", 1);
	setenv("MATTERMOST_TOKEN", "mmtok", 1);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(compose_refuses_injection),
	    T(email_reply_threads_and_runs_no_pipeline),
	    T(hostile_customer_adds_no_header),
	    T(undeliverable_reply_is_refused_and_not_stored),
	    T(smtp_refusal_is_shown_as_delivery_state),
	    T(smtp_login_needs_tls),
	    T(trello_card_follows_the_ticket),
	    cmocka_unit_test(trello_board_settings_are_checked),
	    T(smtps_reply_verified_with_a_private_ca),
	    T(smtps_untrusted_certificate_is_refused),
	    T(starttls_login_reaches_the_relay),
	    cmocka_unit_test(unreadable_ca_file_is_said_at_start),
	    T(autonomous_reply_goes_out_once),
	    T(trello_comment_and_thread_replies),
	    T(slack_refusal_is_a_failure),
	    T(own_replies_coming_back_are_ignored),
	    T(flock_hook_signed_and_stored_once),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
