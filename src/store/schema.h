/*
 * The documents of spec §3.2, checked field by field: every key present
 * (null where the spec allows "unknown"), no unknown keys, enumerations and
 * ISO 8601 timestamps as specified, numbers in their ranges. The store
 * checks each document when reading and before writing.
 */
#ifndef CSA_STORE_SCHEMA_H
#define CSA_STORE_SCHEMA_H

#include <jansson.h>
#include "base/config.h"
#include "base/err.h"

enum csa_doc_kind { CSA_KIND_E, CSA_KIND_I, CSA_KIND_T };

/* Check one document of 'kind' for ticket 'id'. On failure returns
 * CSA_ESCHEMA with the file name and field path in 'err', e.g.
 * "E_42.json: messages[3].sender: expected one of customer|cs_agent|ai_agent". */
int csa_schema_check(enum csa_doc_kind kind, const char *id, const json_t *doc,
                     struct csa_err *err);

/* Put the keys of 'doc', and of every object inside it that the schema
 * describes, in the spec's order (the order the store writes them in), for
 * a backend whose storage does not keep the order (PostgreSQL's jsonb).
 * Free-form objects (metadata.platform_specific, ...) keep theirs. */
void csa_schema_order(enum csa_doc_kind kind, json_t *doc);

/* Configured limits (messages per side, message size, attachments) of one
 * document; CSA_ELIMIT with the place on failure. */
int csa_schema_check_limits(enum csa_doc_kind kind, const char *id, const json_t *doc,
                            const struct csa_limits *lim, struct csa_err *err);

/* The spec's enumerations, for callers that validate input early. */
extern const char *const csa_enum_platform;     /* "trello|email|web_chat|phone" */
extern const char *const csa_enum_channel;      /* "MATTERMOST|FLOCK|EMAIL|CHAT" */
extern const char *const csa_enum_priority;     /* "CRITICAL|HIGH|MEDIUM|LOW" */
extern const char *const csa_enum_conv_status;  /* "active|resolved|escalated|pending" */
extern const char *const csa_enum_stage;        /* "trigger|classifier|selection|action|end" */
extern const char *const csa_enum_ext_sender;   /* "customer|cs_agent|ai_agent" */
extern const char *const csa_enum_int_sender;   /* "cs_agent|technical_member|ai_agent" */
extern const char *const csa_enum_int_platform; /* "flock|mattermost|slack" */
extern const char *const csa_enum_int_msg_type; /* "assignment|update|escalation|..." */
extern const char *const csa_enum_tier;         /* "PREMIUM|STANDARD|BASIC" */

/* 1 if 's' is one of the '|'-separated words of 'alternatives'. */
int csa_enum_has(const char *alternatives, const char *s);

#endif
