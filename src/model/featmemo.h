/*
 * Text features remembered between trainings. A replay retrains its models
 * every 1,000 tickets on every ticket decided so far, and each training
 * extracted every text's features again, once per decision type: the same
 * texts, the same options, the same vectors. A memo keeps each text's
 * features (csa_text_features() without the structured ones, which differ
 * per decision type and are appended on each call), keyed by the options
 * and the text itself, so a text is read once while it stays in use.
 *
 * What it gives is what csa_text_features() gives, index for index and bit
 * for bit: the remembered part is that function's own output for the same
 * text and options, and the structured features are appended by it too
 * (csa_text_features_extra).
 *
 * Thread-safe: the decision types' models are trained on two threads.
 */
#ifndef CSA_MODEL_FEATMEMO_H
#define CSA_MODEL_FEATMEMO_H

#include <stddef.h>
#include "model/text.h"

struct csa_feat_memo;

/* A new, empty memo (NULL when out of memory); csa_feat_memo_free(). */
struct csa_feat_memo *csa_feat_memo_new(void);
void csa_feat_memo_free(struct csa_feat_memo *m);

/* csa_text_features(o, text, len, extra, n_extra, v), its text part taken
 * from the memo when this text was seen with these options, else computed
 * and kept. 0 or CSA_ENOMEM (then v may hold part of the vector). */
int csa_feat_memo_features(struct csa_feat_memo *m, const struct csa_feat_opts *o, const char *text,
                           size_t len, const char *const *extra, size_t n_extra,
                           struct csa_fvec *v);

/* Start a new round: what no call asked for since the previous round
 * began is let go (a ticket's text that changed, a ticket no longer
 * trained on), so the memo holds about one training's texts. */
void csa_feat_memo_round(struct csa_feat_memo *m);

/* Texts held, and calls answered from the memo since it was made. */
size_t csa_feat_memo_size(struct csa_feat_memo *m);
size_t csa_feat_memo_hits(struct csa_feat_memo *m);

#endif
