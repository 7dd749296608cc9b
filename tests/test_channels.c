/* Channel hooks: Slack, Trello and Mattermost authentication with good,
 * wrong, stale and missing signatures; e-mail parsing of plain, multipart,
 * nested, quoted-printable, base64, encoded-word and hostile messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "server/channels.h"

static void slack_sig(const char *secret, const char *ts, const char *body, char out[80])
{
	char base[4096];
	int n = snprintf(base, sizeof(base), "v0:%s:%s", ts, body);
	unsigned char mac[32];
	unsigned int l;
	HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)base, (size_t)n, mac, &l);
	strcpy(out, "v0=");
	for (int i = 0; i < 32; i++)
		snprintf(out + 3 + 2 * i, 3, "%02x", mac[i]);
}

static void slack_signatures(void **state)
{
	(void)state;
	struct csa_err err = {0};
	const char *body = "{\"type\":\"event_callback\"}";
	char sig[80];
	slack_sig("s3cret", "1700000000", body, sig);
	assert_int_equal(
	    csa_slack_verify("s3cret", "1700000000", sig, body, strlen(body), 1700000100, &err), 0);
	/* wrong secret, altered body, stale, future, missing */
	assert_int_equal(
	    csa_slack_verify("other", "1700000000", sig, body, strlen(body), 1700000100, &err),
	    CSA_EAUTH);
	assert_int_equal(csa_slack_verify("s3cret", "1700000000", sig, "{}", 2, 1700000100, &err),
	                 CSA_EAUTH);
	assert_int_equal(
	    csa_slack_verify("s3cret", "1700000000", sig, body, strlen(body), 1700000301, &err),
	    CSA_EAUTH);
	assert_non_null(strstr(err.msg, "old"));
	assert_int_equal(
	    csa_slack_verify("s3cret", "1700000000", sig, body, strlen(body), 1699999000, &err),
	    CSA_EAUTH);
	assert_int_equal(
	    csa_slack_verify("s3cret", NULL, sig, body, strlen(body), 1700000100, &err), CSA_EAUTH);
	assert_int_equal(
	    csa_slack_verify("s3cret", "1700000000", NULL, body, strlen(body), 1700000100, &err),
	    CSA_EAUTH);
	assert_int_equal(
	    csa_slack_verify(NULL, "1700000000", sig, body, strlen(body), 1700000100, &err),
	    CSA_EAUTH);
	assert_int_equal(csa_slack_verify("s3cret", "1700000000", "v0=abc", body, strlen(body),
	                                  1700000100, &err),
	                 CSA_EAUTH);
}

static void trello_and_mattermost(void **state)
{
	(void)state;
	struct csa_err err = {0};
	const char *body = "{\"action\":{}}", *url = "https://support.example/hooks/trello";
	char msg[512];
	int n = snprintf(msg, sizeof(msg), "%s%s", body, url);
	unsigned char mac[20], b64[64];
	unsigned int l;
	HMAC(EVP_sha1(), "tsecret", 7, (unsigned char *)msg, (size_t)n, mac, &l);
	EVP_EncodeBlock(b64, mac, 20);
	assert_int_equal(csa_trello_verify("tsecret", url, (char *)b64, body, strlen(body), &err),
	                 0);
	assert_int_equal(csa_trello_verify("tsecret", "https://evil.example/", (char *)b64, body,
	                                   strlen(body), &err),
	                 CSA_EAUTH);
	assert_int_equal(csa_trello_verify("wrong", url, (char *)b64, body, strlen(body), &err),
	                 CSA_EAUTH);
	assert_int_equal(csa_trello_verify("tsecret", url, NULL, body, strlen(body), &err),
	                 CSA_EAUTH);
	assert_int_equal(csa_token_equal("mmtoken", "mmtoken", &err), 0);
	assert_int_equal(csa_token_equal("mmtoken", "mmtokem", &err), CSA_EAUTH);
	assert_int_equal(csa_token_equal("mmtoken", NULL, &err), CSA_EAUTH);
	assert_int_equal(csa_token_equal(NULL, "x", &err), CSA_EAUTH);
}

static json_t *parse(const char *raw)
{
	json_t *j = NULL;
	struct csa_err err = {0};
	if (csa_email_parse(raw, strlen(raw), &j, &err))
		fail_msg("parse failed: %s", err.msg);
	return j;
}

static void email_parsing(void **state)
{
	(void)state;
	json_t *j =
	    parse("From: Ada <ada@example.com>\r\nSubject: Login\r\n broken since Monday\r\n"
	          "Message-ID: <m1@example.com>\r\n\r\nHello,\r\nit fails.\r\n");
	assert_string_equal(csa_json_str(j, "subject"), "Login broken since Monday");
	assert_string_equal(csa_json_str(j, "message_id"), "<m1@example.com>");
	assert_non_null(strstr(csa_json_str(j, "text"), "it fails."));
	json_decref(j);
	/* nested multipart: the text/plain part, quoted-printable, Latin-1 */
	j = parse(
	    "From: b@example.com\nSubject: =?UTF-8?B?UsOpc2VydmF0aW9u?= =?ISO-8859-1?Q?_caf=E9?=\n"
	    "In-Reply-To: <m1@example.com>\n"
	    "Content-Type: multipart/mixed; boundary=\"outer\"\n\n"
	    "preamble\n--outer\nContent-Type: multipart/alternative; boundary=inner\n\n"
	    "--inner\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: "
	    "quoted-printable\n\n"
	    "Caf=E9 cr=E8me, tr=\nes bon\n--inner\nContent-Type: "
	    "text/html\n\n<p>html</p>\n--inner--\n"
	    "--outer\nContent-Type: application/pdf\n\nxx\n--outer--\n");
	assert_string_equal(csa_json_str(j, "subject"), "Réservation café");
	assert_string_equal(csa_json_str(j, "in_reply_to"), "<m1@example.com>");
	assert_string_equal(csa_json_str(j, "text"), "Café crème, tres bon");
	json_decref(j);
	/* base64 body */
	j = parse("Subject: b64\nContent-Type: text/plain; "
	          "charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
	          "SGVsbG8gd29y\nbGQh\n");
	assert_string_equal(csa_json_str(j, "text"), "Hello world!");
	json_decref(j);
	/* refused: no text part, no header/body split, bad base64, NUL, deep nesting */
	struct csa_err err = {0};
	json_t *o;
	const char *bad[] = {
	    "Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: "
	    "image/png\n\nxx\n--b--\n",
	    "Subject: no body separator",
	    "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n@@@\n",
	    "Content-Type: multipart/mixed\n\nno boundary\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (csa_email_parse(bad[i], strlen(bad[i]), &o, &err) != CSA_EPARSE)
			fail_msg("case %zu accepted", i);
	}
	assert_int_equal(csa_email_parse("a\0b\n\nc", 7, &o, &err), CSA_EPARSE);
	/* deeply nested multiparts stop at a depth limit */
	char deep[8192] = "Content-Type: multipart/mixed; boundary=b0\n\n";
	for (int i = 1; i < 20; i++) {
		char part[128];
		snprintf(part, sizeof(part),
		         "--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n", i - 1, i);
		strcat(deep, part);
	}
	strcat(deep, "--b19\n\ntext\n");
	assert_int_equal(csa_email_parse(deep, strlen(deep), &o, &err), CSA_EPARSE);
	/* a truncated message never reads past its end */
	const char *full = "Content-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: "
	                   "text/plain\n\nhello\n--zz--\n";
	for (size_t n = 1; n < strlen(full); n++) {
		char *cut = malloc(n);
		memcpy(cut, full, n);
		if (csa_email_parse(cut, n, &o, &err) == CSA_OK)
			json_decref(o);
		free(cut);
	}
}

/* The decoded text of a base64 text/plain body, or NULL with err set. */
static char *b64_text(const char *encoded, struct csa_err *err)
{
	char raw[4096];
	snprintf(raw, sizeof(raw),
	         "Subject: b64\r\nContent-Type: text/plain; charset=utf-8\r\n"
	         "Content-Transfer-Encoding: base64\r\n\r\n%s",
	         encoded);
	json_t *j = NULL;
	if (csa_email_parse(raw, strlen(raw), &j, err))
		return NULL;
	json_t *t = json_object_get(j, "text");
	char *out = malloc(json_string_length(t) + 1);
	memcpy(out, json_string_value(t), json_string_length(t) + 1);
	/* a decoded NUL would make the length differ from strlen */
	assert_int_equal(strlen(out), json_string_length(t));
	json_decref(j);
	return out;
}

/* Base64 bodies as mail clients send them: CRLF line breaks, padding
 * followed by a line break or spaces. "QQ==\n" is one byte, not two. */
static void base64_padding_and_line_breaks(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} ok[] = {
	    {"QQ==\r\n", "A"},
	    {"QQ==\n", "A"},
	    {"QQ==  \r\n\r\n", "A"},
	    {"QUI=\r\n", "AB"},
	    {"QUJD\r\n", "ABC"},
	    {"SGVsbG8g\r\nd29ybGQh\r\n", "Hello world!"},
	    {"SGVsbG8gd29y\r\nbGQ=\r\n", "Hello world"},
	    {"SGVs bG8=\r\n", "Hello"},
	};
	struct csa_err err = {0};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *t = b64_text(ok[i].in, &err);
		if (!t)
			fail_msg("case %zu refused: %s", i, err.msg);
		if (strcmp(t, ok[i].out) != 0)
			fail_msg("case %zu: '%s', expected '%s'", i, t, ok[i].out);
		free(t);
	}
	/* a 1,000-byte body in 76-character CRLF lines, as e-mail wraps it */
	unsigned char plain[1000];
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (unsigned char)('a' + i % 26);
	unsigned char enc[1400];
	int el = EVP_EncodeBlock(enc, plain, (int)sizeof(plain));
	char wrapped[1500];
	size_t w = 0;
	for (int i = 0; i < el; i += 76) {
		int k = el - i < 76 ? el - i : 76;
		memcpy(wrapped + w, enc + i, (size_t)k);
		w += (size_t)k;
		wrapped[w++] = '\r';
		wrapped[w++] = '\n';
	}
	wrapped[w] = '\0';
	char *t = b64_text(wrapped, &err);
	assert_non_null(t);
	assert_int_equal(strlen(t), sizeof(plain));
	assert_memory_equal(t, plain, sizeof(plain));
	free(t);
	/* refused with a message that says so: a character outside the
	 * alphabet, data after the padding, a partial group */
	static const char *const bad[] = {"QQ==\r\nQUJD\r\n", "Q@==\r\n", "QUJ\r\n", "Q\r\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		char *b = b64_text(bad[i], &err);
		if (b)
			fail_msg("bad case %zu accepted as '%s'", i, b);
		assert_int_equal(err.code, CSA_EPARSE);
		if (!strstr(err.msg, "invalid base64 in the text part"))
			fail_msg("bad case %zu: '%s'", i, err.msg);
	}
	/* an encoded word that is not base64 names its header */
	json_t *o = NULL;
	const char *subj = "Subject: =?UTF-8?B?Q@==?=\r\n\r\nhello\r\n";
	memset(&err, 0, sizeof(err));
	assert_int_equal(csa_email_parse(subj, strlen(subj), &o, &err), CSA_EPARSE);
	assert_non_null(strstr(err.msg, "Subject"));
	/* a padded encoded word decodes to its bytes only */
	const char *word = "Subject: =?UTF-8?B?QQ==?= =?UTF-8?B?Qg==?=\r\n\r\nhello\r\n";
	assert_int_equal(csa_email_parse(word, strlen(word), &o, &err), 0);
	assert_string_equal(csa_json_str(o, "subject"), "AB");
	assert_int_equal(json_string_length(json_object_get(o, "subject")), 2);
	json_decref(o);
}

static void ticket_tags_and_ids(void **state)
{
	(void)state;
	char t[80], id[48], id2[48];
	assert_true(csa_subject_ticket("Re: [#H000123] card", t, sizeof(t)));
	assert_string_equal(t, "H000123");
	assert_true(csa_subject_ticket("[T-9] x", t, sizeof(t)));
	assert_false(csa_subject_ticket("[../x] nope [a b]", t, sizeof(t)));
	assert_false(csa_subject_ticket(NULL, t, sizeof(t)));
	assert_int_equal(csa_external_message_id("email", "<m1@example.com>", id, NULL), 0);
	assert_int_equal(csa_external_message_id("email", "<m1@example.com>", id2, NULL), 0);
	assert_string_equal(id, id2);
	assert_int_equal(strlen(id), 6 + 32);
	assert_int_equal(csa_external_message_id("email", "<m2@example.com>", id2, NULL), 0);
	assert_string_not_equal(id, id2);
}

/* A drafted reply goes out alone only when the strategy was autonomous. */
static void autonomous_replies_only(void **state)
{
	(void)state;
	const char *fmt =
	    "{\"agent_decisions\": {\"selector\": {\"decision_id\": \"T1:selector:1\","
	    " \"decision\": {\"strategy\": \"TEMPLATE_RESPONSE\", \"applied_autonomously\":"
	    " {\"strategy\": %s}, \"execution_parameters\": {\"draft_reply\": {\"text\":"
	    " \"Hello Ada\", \"source\": \"template\"}}}}}}";
	char buf[600];
	snprintf(buf, sizeof(buf), fmt, "true");
	json_t *res = json_loads(buf, 0, NULL);
	json_t *p = csa_autonomous_reply("T1", res);
	assert_non_null(p);
	assert_string_equal(json_string_value(json_object_get(p, "message")), "Hello Ada");
	assert_string_equal(json_string_value(json_object_get(p, "to")), "customer");
	assert_string_equal(json_string_value(json_object_get(p, "decision_id")), "T1:selector:1");
	json_decref(p);
	json_decref(res);
	snprintf(buf, sizeof(buf), fmt, "false");
	res = json_loads(buf, 0, NULL);
	assert_null(csa_autonomous_reply("T1", res)); /* waits for review */
	json_decref(res);
	res = json_loads("{\"agent_decisions\": {}}", 0, NULL);
	assert_null(csa_autonomous_reply("T1", res));
	json_decref(res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(slack_signatures),    cmocka_unit_test(trello_and_mattermost),
	    cmocka_unit_test(email_parsing),       cmocka_unit_test(base64_padding_and_line_breaks),
	    cmocka_unit_test(ticket_tags_and_ids), cmocka_unit_test(autonomous_replies_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
