/*
 * Inbound channels: signature checks of platform webhooks and parsing of
 * e-mail, turning each platform's message into one normalised form.
 *
 *   Slack    HMAC-SHA256 of "v0:" + timestamp + ":" + body with the
 *            signing secret, header "v0=<hex>", at most 5 minutes old
 *   Trello   base64 HMAC-SHA1 of body + callback URL (X-Trello-Webhook)
 *   Mattermost  the outgoing-webhook token, compared in constant time
 *   Flock    X-Flock-Event-Token: a JWT signed HS256 with the app secret,
 *            its "exp" not passed
 *   e-mail   JSON from an inbound relay, or a raw RFC 5322 message (plain
 *            text, or the text/plain part of any multipart, nested; quoted-
 *            printable and base64; RFC 2047 subjects; Latin-1 converted)
 *
 * All of it treats its input as hostile: sizes are bounded, nothing is
 * read past a buffer, and bad input is an error, not a guess.
 */
#ifndef CSA_SERVER_CHANNELS_H
#define CSA_SERVER_CHANNELS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "base/err.h"

/* 0 when the Slack request is authentic and fresh (|now - ts| <= 300 s). */
int csa_slack_verify(const char *secret, const char *timestamp, const char *signature,
                     const char *body, size_t len, int64_t now_s, struct csa_err *err);

/* 0 when the Trello request is authentic. */
int csa_trello_verify(const char *secret, const char *callback_url, const char *signature,
                      const char *body, size_t len, struct csa_err *err);

/* 0 when 'token' is a JWT whose header says HS256, signed with 'secret'
 * (HMAC-SHA256 over "header.payload", base64url) and whose payload's
 * "exp" (required) is not before now_s. */
int csa_flock_verify(const char *secret, const char *token, int64_t now_s, struct csa_err *err);

/* 0 when the presented token equals the expected one (constant time). */
int csa_token_equal(const char *expected, const char *presented, struct csa_err *err);

/*
 * Parse a raw RFC 5322 message into {"from", "subject", "message_id",
 * "in_reply_to", "references", "text"} (new reference). CSA_EPARSE when it
 * has no text part or its structure is broken.
 */
int csa_email_parse(const char *raw, size_t len, json_t **out, struct csa_err *err);

/* The ticket an e-mail subject names: "[#T_NO]" or "[T_NO]" tags with a
 * valid id. Writes it to out and returns 1, else 0. */
int csa_subject_ticket(const char *subject, char *out, size_t outsz);

/* An id-safe message id for an external one: prefix (at most 12 characters
 * used) + "-" + the first 32 hex digits of its SHA-256. CSA_OK, or CSA_EIO
 * when OpenSSL fails (out is then ""). */
int csa_external_message_id(const char *prefix, const char *external, char out[48],
                            struct csa_err *err);

/*
 * The customer reply a pipeline run may send by itself: the selector's
 * drafted reply when the strategy decision was applied autonomously (the
 * phase allowed it). A new {"ticket_id", "to": "customer", "decision_id",
 * "message", "source"} or NULL: drafts that need review are not sent.
 */
json_t *csa_autonomous_reply(const char *ticket_id, const json_t *result);

#endif
