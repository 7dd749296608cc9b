/*
 * Knowledge extracted from a resolved ticket (spec §3.2.2
 * knowledge_extraction): what solved it (solution_patterns), the steps
 * that were tried or asked for (troubleshooting_steps) and how to keep it
 * from happening again (prevention_measures).
 *
 * Extractive: every entry is a sentence of the team's own writing on the
 * ticket, never text made up. The sources are the replies people sent the
 * customer (E messages from cs_agent) and the team's internal messages (I
 * messages from cs_agent or technical_member, resolution notes included);
 * the customer's words and the AI's analyses are not sources. Each source
 * is cut into sentences (at '.', '!' or '?' before white space, and at line
 * breaks); a sentence of 12 to 400 bytes goes to the first list whose cue
 * words it holds, in the order prevention, solution, troubleshooting (the
 * cue tables in knowledge.c), and greetings and sign-offs go nowhere. Each
 * list keeps its first CSA_KNOWLEDGE_MAX distinct sentences, oldest
 * message first. E-mail addresses, phone, card and IBAN numbers are
 * redacted (llm/redact.h) before a sentence is kept, since the entries
 * feed knowledge-base drafts.
 *
 * An entry is {"text", "method": "extractive", "side":
 * "external"|"internal", "message_id"}: the message it was taken from, so
 * a reader can check it against the ticket.
 *
 * Drafted: when csa.json names a `replies` LLM backend (llm.agents.replies),
 * csa_knowledge_of asks it first, showing it the customer's and the team's
 * messages (redacted as every prompt is, llm/backend.h), within the LLM
 * budget and circuit (llm/cascade.h). Its answer must be exactly the three
 * lists of at most CSA_KNOWLEDGE_MAX strings of 12 to 400 bytes without
 * control characters, not all empty; then each string, personal data
 * redacted, is an entry {"text", "method": "drafted", "model":
 * "llm:<backend>:<model>"}. Any other answer, a failure, a timeout, an
 * open circuit or a spent budget leaves the extractive knowledge.
 */
#ifndef CSA_AGENTS_KNOWLEDGE_H
#define CSA_AGENTS_KNOWLEDGE_H

#include <jansson.h>

#define CSA_KNOWLEDGE_MAX 10

/* {"solution_patterns": [..], "troubleshooting_steps": [..],
 * "prevention_measures": [..]} from a ticket's E and I documents
 * (borrowed). A new reference; NULL only when out of memory. */
json_t *csa_knowledge_extract(const json_t *e, const json_t *i);

struct csa_cascade;

/* The knowledge of a resolved ticket: drafted by the replies backend of
 * 'c' (may be NULL: none) when its answer holds, else extractive. *how
 * (new) records which: {"method": "drafted"|"extractive"} with, when a
 * backend is configured, its "backend", "usage", and "model_version" or
 * the "reason" ("circuit_open", "budget_...", "llm_failed") and "error"
 * of the fallback. Returns a new reference; NULL only when out of memory
 * (*how is set either way). */
json_t *csa_knowledge_of(struct csa_cascade *c, const json_t *e, const json_t *i, json_t **how);

#endif
