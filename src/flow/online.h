/*
 * Online learning shared by every process of a workspace and every node of
 * its database: a person's correction teaches the models of all of them,
 * not only the one that took it.
 *
 * The pipeline that takes a correction appends the example the model
 * learns from (decision type, text, features, label; who, ticket and the
 * model's version for the record) to the workspace's log
 * (store/learnlog.h). Every pipeline applies the log's entries to its
 * models in log order: the one that appended at once, the others at most a
 * second later, when they next run (flow/pipeline.c). So every node's
 * model of a type goes through the same updates in the same order from the
 * same saved model, and ends the same, bit for bit.
 *
 * A saved model covers part of the log: a retraining reads the log's
 * newest position before it reads its training data (every correction up
 * to there is in the tickets it trains on), and saves that position
 * beside the model, "models/<type>.online.json" {"decision_type", "log",
 * "position", "saved_at"}; a rollback saves the position of its time (the
 * restored model as it was, nothing learned since on top). A pipeline that
 * loads a model applies the entries of its type above that position only,
 * so an example is never taught twice on top of a model that learned it
 * in training. A model without that document, or with one of another log
 * (a workspace restored without its log, moved into a database), gets
 * every entry of the log.
 *
 * An entry appended while a retraining runs (after it read the position)
 * is applied on top of the new model even when the training read its
 * ticket: taught twice, once in training and once online, which moves the
 * model a little further towards that label; never lost.
 */
#ifndef CSA_FLOW_ONLINE_H
#define CSA_FLOW_ONLINE_H

#include <stddef.h>
#include <stdint.h>
#include "agents/dmodel.h"
#include "base/err.h"
#include "store/blobs.h"
#include "store/learnlog.h"

/* What a person's correction teaches a model (all borrowed). */
struct csa_online_example {
	enum csa_dtype type;
	const char *text;
	const char *const *feats;
	size_t n_feats;
	const char *label; /* the person's value, a label of the type */
	/* for the record: the model it was taught on, who, where */
	const char *model_version;
	const char *who;
	const char *ticket_id, *decision_id;
};

/* Append the example to the log; *seq (may be NULL) gets its position.
 * Text longer than the agents read, more than 16 features or fields of
 * unexpected size are refused (CSA_ELIMIT) rather than cut. */
int csa_online_append(struct csa_learnlog *log, const struct csa_online_example *ex, int64_t *seq,
                      struct csa_err *err);

/* The position of 'log' the saved model of type t covers: what its
 * position document says when it is of this log, else 0 (apply every
 * entry). CSA_OK, or the error of reading the document or the log's
 * identity. */
int csa_online_base(struct csa_blobs *b, struct csa_learnlog *log, enum csa_dtype t, int64_t *pos,
                    struct csa_err *err);

/* The model of type t was just saved and covers 'log' up to 'pos': write
 * its position document, then drop the entries of its type the model
 * saved before it covered (a pipeline that has not reloaded yet still
 * needs those above that one's position). */
int csa_online_mark_saved(struct csa_blobs *b, struct csa_learnlog *log, enum csa_dtype t,
                          int64_t pos, struct csa_err *err);

/*
 * Apply the log's entries to models[] in log order: an entry of type t
 * whose position is above at[t] teaches models[t] (nothing when it is NULL
 * or lacks the label) and moves at[t] to it; when the log is read to its
 * end every at[] moves to its last position. *applied (may be NULL)
 * counts the updates. On failure the entries applied so far stay applied,
 * at[] says how far, and the next call goes on from there. The caller
 * holds what keeps models[] and at[] from changing meanwhile. An entry
 * that does not parse is passed over (by every node alike).
 */
int csa_online_apply(struct csa_learnlog *log, struct csa_dmodel *const models[CSA_DT_COUNT],
                     int64_t at[CSA_DT_COUNT], size_t *applied, struct csa_err *err);

#endif
