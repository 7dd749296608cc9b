/* Online learning shared through the workspace's log: see flow/online.h. */
#include "flow/online.h"
#include "base/json.h"
#include "base/ts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What an entry may hold. The text is the customer's, as the agents read
 * it (4,000 bytes in the pipeline): limits are checked on append and
 * again on apply, since a log is read by every node whatever wrote it. */
#define TEXT_MAX  8192
#define FEATS_MAX 16
#define FEAT_MAX  256
#define FIELD_MAX 256
/* Entries read from the log at a time. */
#define READ_BATCH 128

static int too_long(const char *s, size_t max)
{
	return s && strlen(s) > max;
}

int csa_online_append(struct csa_learnlog *log, const struct csa_online_example *ex, int64_t *seq,
                      struct csa_err *err)
{
	if ((unsigned)ex->type >= CSA_DT_COUNT || !ex->label || !*ex->label)
		return csa_error(err, CSA_EINVAL,
		                 "an online-learning example needs a type and a label");
	if (too_long(ex->text, TEXT_MAX) || ex->n_feats > FEATS_MAX ||
	    too_long(ex->label, FIELD_MAX) || too_long(ex->model_version, FIELD_MAX) ||
	    too_long(ex->who, FIELD_MAX) || too_long(ex->ticket_id, FIELD_MAX) ||
	    too_long(ex->decision_id, FIELD_MAX))
		return csa_error(
		    err, CSA_ELIMIT,
		    "online-learning example of ticket '%.64s': a field is longer than "
		    "the log takes",
		    ex->ticket_id ? ex->ticket_id : "");
	json_t *feats = json_array();
	for (size_t i = 0; feats && i < ex->n_feats; i++)
		if (too_long(ex->feats[i], FEAT_MAX) ||
		    json_array_append_new(feats, json_string(ex->feats[i] ? ex->feats[i] : ""))) {
			json_decref(feats);
			return csa_error(
			    err, CSA_ELIMIT,
			    "online-learning example of ticket '%.64s': feature %zu is "
			    "longer than %d bytes or not text",
			    ex->ticket_id ? ex->ticket_id : "", i, FEAT_MAX);
		}
	json_t *j = feats ? json_pack("{s:s, s:s, s:o, s:s?, s:s?, s:s?, s:s?}", "label", ex->label,
	                              "text", ex->text ? ex->text : "", "features", feats,
	                              "model_version", ex->model_version, "by", ex->who,
	                              "ticket_id", ex->ticket_id, "decision_id", ex->decision_id)
	                  : NULL;
	char *body = NULL;
	size_t len = 0;
	/* json_pack fails on text that is not UTF-8: say so, not "out of memory" */
	int rc = j ? csa_json_dump(j, 0, &body, &len, err)
	           : csa_error(err, CSA_EINVAL,
	                       "online-learning example of ticket '%.64s' is not valid UTF-8 text",
	                       ex->ticket_id ? ex->ticket_id : "");
	json_decref(j);
	if (rc == CSA_OK)
		rc = csa_learnlog_append(log, csa_dtype_name(ex->type), body, len, seq, err);
	free(body);
	return rc;
}

static void position_name(enum csa_dtype t, char *out, size_t n)
{
	snprintf(out, n, "models/%s.online.json", csa_dtype_name(t));
}

/* The log and position a position document names; CSA_ENOENT when the
 * model has none, CSA_ESCHEMA when it is not one. */
static int read_position(struct csa_blobs *b, enum csa_dtype t, char log[CSA_LEARNLOG_ID_LEN + 1],
                         int64_t *pos, struct csa_err *err)
{
	char name[96], *buf;
	size_t len;
	position_name(t, name, sizeof(name));
	int rc = csa_blobs_get(b, name, 1 << 16, &buf, &len, err);
	if (rc)
		return rc;
	json_t *j;
	rc = csa_json_parse(buf, len, name, &j, err);
	free(buf);
	if (rc)
		return rc;
	const char *id = csa_json_str(j, "log");
	json_t *p = json_object_get(j, "position");
	if (!id || strlen(id) != CSA_LEARNLOG_ID_LEN || !json_is_integer(p) ||
	    json_integer_value(p) < 0)
		rc = csa_error(err, CSA_ESCHEMA,
		               "'%s': \"log\" must be a log's identity and \"position\" a "
		               "non-negative integer",
		               name);
	else {
		memcpy(log, id, CSA_LEARNLOG_ID_LEN + 1);
		*pos = (int64_t)json_integer_value(p);
	}
	json_decref(j);
	return rc;
}

int csa_online_base(struct csa_blobs *b, struct csa_learnlog *log, enum csa_dtype t, int64_t *pos,
                    struct csa_err *err)
{
	char mine[CSA_LEARNLOG_ID_LEN + 1], theirs[CSA_LEARNLOG_ID_LEN + 1];
	int64_t p = 0;
	*pos = 0;
	int rc = read_position(b, t, theirs, &p, err);
	if (rc == CSA_ENOENT)
		return CSA_OK; /* saved before positions were kept, or never trained */
	if (rc == CSA_OK && (rc = csa_learnlog_id(log, mine, err)) == CSA_OK &&
	    strcmp(mine, theirs) == 0)
		*pos = p;
	return rc;
}

int csa_online_mark_saved(struct csa_blobs *b, struct csa_learnlog *log, enum csa_dtype t,
                          int64_t pos, struct csa_err *err)
{
	char id[CSA_LEARNLOG_ID_LEN + 1], before_log[CSA_LEARNLOG_ID_LEN + 1], name[96],
	    ts[CSA_TS_LEN];
	int64_t before = 0;
	int rc = csa_learnlog_id(log, id, err);
	if (rc)
		return rc;
	int had =
	    read_position(b, t, before_log, &before, NULL) == CSA_OK && strcmp(before_log, id) == 0;
	position_name(t, name, sizeof(name));
	csa_ts_format(csa_now_ms(), ts);
	json_t *j = json_pack("{s:s, s:s, s:I, s:s}", "decision_type", csa_dtype_name(t), "log", id,
	                      "position", (json_int_t)pos, "saved_at", ts);
	char *buf = NULL;
	size_t len;
	rc = j ? csa_json_dump(j, 1, &buf, &len, err)
	       : csa_error(err, CSA_ENOMEM, "out of memory writing '%s'", name);
	json_decref(j);
	if (rc == CSA_OK)
		rc = csa_blobs_put(b, name, buf, len, err);
	free(buf);
	/* after the document: a prune that fails leaves entries the log's own
	 * bound drops later, never a model without what it needs */
	if (rc == CSA_OK && had && before < pos)
		rc = csa_learnlog_prune(log, csa_dtype_name(t), before, err);
	return rc;
}

/* One entry into models[]: 1 when it taught a model, 0 when it was passed
 * over. */
static int apply_one(struct csa_dmodel *const models[CSA_DT_COUNT], int64_t at[CSA_DT_COUNT],
                     const struct csa_learnlog_entry *e, struct csa_err *err, int *rc)
{
	*rc = CSA_OK;
	int t = csa_dtype_parse(e->kind);
	if (t < 0 || e->seq <= at[t])
		return 0;
	struct csa_dmodel *m = models[t];
	json_t *j = NULL;
	if (!m || csa_json_parse(e->body, e->len, "online-learning entry", &j, NULL)) {
		at[t] = e->seq;
		return 0;
	}
	const char *label = csa_json_str(j, "label"), *text = csa_json_str(j, "text");
	json_t *fa = json_object_get(j, "features");
	const char *feats[FEATS_MAX];
	size_t nf = json_array_size(fa);
	int ok = label && text && !too_long(text, TEXT_MAX) && json_is_array(fa) && nf <= FEATS_MAX;
	for (size_t i = 0; ok && i < nf; i++) {
		feats[i] = json_string_value(json_array_get(fa, i));
		ok = feats[i] && !too_long(feats[i], FEAT_MAX);
	}
	int label_i = ok ? csa_dmodel_label_index(m, label) : -1;
	int taught = 0;
	/* a label the model lacks: the taxonomy changed since; nothing to teach */
	if (label_i >= 0) {
		*rc = csa_dmodel_learn(m, text, feats, nf, (size_t)label_i, err);
		taught = *rc == CSA_OK;
	}
	json_decref(j);
	/* a failed update (out of memory) is tried again by the next call,
	 * not passed over: this node would differ from the others */
	if (*rc == CSA_OK)
		at[t] = e->seq;
	return taught;
}

int csa_online_apply(struct csa_learnlog *log, struct csa_dmodel *const models[CSA_DT_COUNT],
                     int64_t at[CSA_DT_COUNT], size_t *applied, struct csa_err *err)
{
	int64_t from = at[0];
	for (int t = 1; t < CSA_DT_COUNT; t++)
		if (at[t] < from)
			from = at[t];
	size_t count = 0;
	int rc = CSA_OK;
	for (;;) {
		struct csa_learnlog_entry *e = NULL;
		size_t n = 0;
		if ((rc = csa_learnlog_read(log, from, READ_BATCH, &e, &n, err)))
			break;
		for (size_t i = 0; rc == CSA_OK && i < n; i++) {
			count += (size_t)apply_one(models, at, &e[i], err, &rc);
			if (rc == CSA_OK)
				from = e[i].seq;
		}
		csa_learnlog_free_entries(e, n);
		if (rc || n < READ_BATCH)
			break;
	}
	/* read to the end: every model has what the log holds up to there */
	for (int t = 0; rc == CSA_OK && t < CSA_DT_COUNT; t++)
		if (at[t] < from)
			at[t] = from;
	if (applied)
		*applied = count;
	return rc;
}
