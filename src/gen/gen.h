/*
 * Synthetic support history for demos, tests and the replay simulator:
 * customers with companies and tiers, platforms, 1-5 message turns, internal
 * team messages, timestamps over weeks, and the gold human decisions
 * (category, priority, strategy, escalation path, resolution time, first
 * response time, CSAT). Deliberately hard: vocabulary shared across
 * categories, paraphrases, typos, multi-topic and vague messages, and a
 * few percent of noisy labels. Deterministic for a seed. The line format is
 * the history import format (docs/DATA.md).
 */
#ifndef CSA_GEN_GEN_H
#define CSA_GEN_GEN_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

struct csa_gen;

/* start_ms: creation time of the first ticket. */
struct csa_gen *csa_gen_new(uint64_t seed, int64_t start_ms);
void csa_gen_free(struct csa_gen *g);

/* The next ticket as an import-format object with "gold" (new reference). */
json_t *csa_gen_next(struct csa_gen *g);

/* The ticket as it arrives (new reference): its customer fields and first
 * message without a timestamp (it takes the time it arrives), no outcome,
 * under a new id. */
json_t *csa_gen_arrival(const json_t *ticket, const char *id);

/* Write the next n tickets as JSONL lines to out; 0, or -1 on a write
 * error. */
int csa_gen_write(struct csa_gen *g, long n, FILE *out);

#endif
