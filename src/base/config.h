/*
 * Workspace configuration (csa.json): taxonomy, limits, SLA table,
 * escalation paths, automation thresholds, server settings.
 *
 * The file holds only what the team changed or chose; every key missing
 * from it takes the default of csa_config_defaults(), so older workspaces
 * keep working when new keys appear.
 */
#ifndef CSA_BASE_CONFIG_H
#define CSA_BASE_CONFIG_H

#include <jansson.h>
#include <stddef.h>
#include "base/err.h"

struct csa_limits {
	size_t max_message_bytes;       /* content of one message */
	size_t max_attachments;         /* entries in one message's attachments */
	size_t max_messages_per_ticket; /* per side (E or I) */
	size_t max_document_bytes;      /* one E/I/T file, and one request body */
};

struct csa_config {
	json_t *root; /* merged defaults + file; owned */
	struct csa_limits limits;
	double max_drift_seconds;
};

/* The defaults (spec §3, §4, §5): a new reference. */
json_t *csa_config_defaults(void);

/* Load 'path' merged over the defaults; validates types of known keys.
 * On failure 'cfg' is left released. */
int csa_config_load(const char *path, struct csa_config *cfg, struct csa_err *err);

/* Defaults only, for tools that run without a workspace. */
int csa_config_init_default(struct csa_config *cfg);

/* Merge the JSON object in 'path' over a loaded configuration (the
 * server's MODEL_CONFIG_PATH); on failure 'cfg' is unchanged. */
int csa_config_overlay(struct csa_config *cfg, const char *path, struct csa_err *err);

/* Merge the JSON object 'over' into a loaded configuration and validate
 * the result; 'what' names the source in errors. On failure 'cfg' is
 * unchanged. */
int csa_config_merge(struct csa_config *cfg, const json_t *over, const char *what,
                     struct csa_err *err);

void csa_config_release(struct csa_config *cfg);

/* Recursively copy keys of 'over' into 'base' (objects merge, others replace). */
void csa_json_merge(json_t *base, const json_t *over);

/* Lookup by dotted path ("taxonomy.categories"); borrowed or NULL. */
json_t *csa_config_get(const struct csa_config *cfg, const char *dotted);

/* 1 if 's' is a member of the string array at 'dotted', else 0. */
int csa_config_in_list(const struct csa_config *cfg, const char *dotted, const char *s);

#endif
