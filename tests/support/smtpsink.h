/* A tiny SMTP server for tests: on 127.0.0.1 and a free port, one
 * connection at a time, it answers 220/250/354/221 and keeps what it was
 * sent (envelope and DATA, dot-stuffing undone), so a test can check the
 * message a client submitted; with TLS (OpenSSL), as SMTPS or with
 * STARTTLS and a login. */
#ifndef CSA_TESTS_SMTPSINK_H
#define CSA_TESTS_SMTPSINK_H

struct smtp_sink;

/* Listening when it returns 0; *port receives the port. */
int smtp_sink_start(struct smtp_sink **out, unsigned *port);

/* The same speaking TLS with the certificate and key (PEM files):
 * 'implicit' for SMTPS (TLS from the first byte), else plain SMTP that
 * offers STARTTLS and, once upgraded, AUTH PLAIN and LOGIN. */
int smtp_sink_start_tls(struct smtp_sink **out, unsigned *port, const char *cert_file,
                        const char *key_file, int implicit);

/* A self-signed certificate for 127.0.0.1 (CN and subjectAltName IP) and
 * its key, written as PEM to 'cert_file' and 'key_file': 0 or -1. */
int smtp_sink_make_cert(const char *cert_file, const char *key_file);

/* The user of the last AUTH the sink accepted (malloc'd, "" for none),
 * and whether the session was encrypted when it came. */
char *smtp_sink_auth_user(struct smtp_sink *s, int *over_tls);
void smtp_sink_stop(struct smtp_sink *s);

/* Answer RCPT TO with 'code' (e.g. 550) from now on; 0: accept again. */
void smtp_sink_refuse_rcpt(struct smtp_sink *s, int code);

/* Wait until at least n messages arrived or timeout_ms passed; returns how
 * many arrived. */
int smtp_sink_wait(struct smtp_sink *s, int n, int timeout_ms);

/* Message i (0 first): a malloc'd copy of its DATA, of its MAIL FROM and
 * of its RCPT TO addresses (one per line); NULL when there is no such
 * message. */
char *smtp_sink_data(struct smtp_sink *s, int i);
char *smtp_sink_from(struct smtp_sink *s, int i);
char *smtp_sink_rcpts(struct smtp_sink *s, int i);

#endif
