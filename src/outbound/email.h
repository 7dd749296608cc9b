/*
 * Replies by e-mail: an RFC 5322 message built from values that are partly
 * the customer's (their name, their subject, their message ids), and its
 * submission over SMTP with libcurl.
 *
 * Customer text is hostile: a CR or LF in a header value would start a new
 * header ("Bcc: everyone@..."), so no value reaches a header as given.
 * Display names and the subject lose their control characters and are
 * sent as RFC 2047 encoded words when they are not plain ASCII;
 * addresses must be plain addr-specs (refused otherwise); message ids must
 * be "<left@right>" of visible characters (an id that is not is left out,
 * so threading is lost but nothing is injected). The body is
 * quoted-printable, so no line of it is too long or ends the DATA early.
 */
#ifndef CSA_OUTBOUND_EMAIL_H
#define CSA_OUTBOUND_EMAIL_H

#include <stddef.h>
#include <stdint.h>
#include "base/err.h"

/* One reply (every pointer borrowed). */
struct csa_mail {
	const char *from_name;   /* display name of the sender, may be NULL */
	const char *from;        /* addr-spec: support@example.com */
	const char *to_name;     /* the customer's name, may be NULL */
	const char *to;          /* addr-spec */
	const char *subject;     /* UTF-8, any text */
	const char *message_id;  /* "<...@...>" of this message */
	const char *in_reply_to; /* "<...>" or NULL */
	const char *references;  /* "<a> <b> ..." or NULL; bad ids are dropped */
	const char *text;        /* UTF-8 body */
	int64_t date_ms;
};

/* 1 when 's' is a plain addr-spec (local@domain, at most 254 bytes, no
 * white space, quotes, brackets or control characters), else 0. */
int csa_mail_addr_valid(const char *s);

/* The addr-spec of "Name <addr>" or "addr" into out[n]: CSA_OK, or
 * CSA_EINVAL when there is none or it is not valid ('what' names the
 * value in the message). */
int csa_mail_addr_of(const char *s, char *out, size_t n, const char *what, struct csa_err *err);

/* 1 when 's' is one "<left@right>" message id of visible ASCII. */
int csa_mail_msgid_valid(const char *s);

/* The message with CRLF line ends into *out (malloc'd, handed over;
 * *len its length). CSA_EINVAL naming the field when an address or this
 * message's own id is not valid; CSA_ENOMEM. */
int csa_mail_compose(const struct csa_mail *m, char **out, size_t *len, struct csa_err *err);

/* Login for the SMTP server (borrowed; both NULL: none). */
struct csa_smtp_login {
	const char *user, *password;
	const char *ca_file; /* PEM bundle to verify the server with; NULL: the system's */
};

/* Submit 'msg' (as composed) to the SMTP server at 'url' (smtp:// or
 * smtps://) from 'from' to 'to' (addr-specs). With a login over smtp://
 * the connection must be upgraded with STARTTLS (no password in clear).
 * 0, or -1 with 'why' (what failed: the server's refusal, a timeout). */
int csa_smtp_send(const char *url, const struct csa_smtp_login *login, const char *from,
                  const char *to, const char *msg, size_t len, long timeout_ms, char *why,
                  size_t whysz);

#endif
