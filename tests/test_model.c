/* The embedded model: features, readers, training, calibration, files,
 * online learning and concurrent prediction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/fsops.h"
#include "model/calib.h"
#include "model/dataset.h"
#include "model/linear.h"
#include "model/text.h"
#include "model/featmemo.h"
#include "base/digest.h"
#include "support/tutil.h"

static void normalization_is_utf8_safe(void **state)
{
	(void)state;
	char out[256];
	assert_int_equal(csa_text_normalize("Héllo, WORLD! Don't", 21, out),
	                 strlen("hello world dont"));
	assert_string_equal(out, "hello world dont");
	/* invalid and truncated sequences are skipped, never read past */
	const char bad[] = {'a', (char)0xC3, 'b', (char)0xFF, (char)0xE2, (char)0x82, 0};
	csa_text_normalize(bad, sizeof(bad) - 1, out);
	assert_string_equal(out, "ab");
	assert_int_equal(csa_text_normalize("", 0, out), 0);
	assert_string_equal(out, "");
	/* very long token and long input are bounded */
	char *big = malloc(100000);
	memset(big, 'x', 99999);
	big[99999] = '\0';
	struct csa_feat_opts o = {12, 2, 5, 1, 0.5f, 1.0f, 0, 0};
	struct csa_fvec v;
	csa_fvec_init(&v);
	assert_int_equal(csa_text_features(&o, big, strlen(big), NULL, 0, &v), 0);
	assert_true(v.n > 0 && v.n < 5000);
	for (size_t i = 0; i < v.n; i++)
		assert_true(v.idx[i] < (1u << 12));
	/* many words: word pairs are bounded too (first 256 words) */
	struct csa_feat_opts po = o;
	po.bits = 20;
	po.pair_window = 12;
	for (size_t i = 0; i + 6 < 99999; i += 6)
		snprintf(big + i, 7, "w%04zu ", (i / 6) % 9999);
	assert_int_equal(csa_text_features(&po, big, strlen(big), NULL, 0, &v), 0);
	assert_true(v.n > 3000 && v.n < 20000);
	free(big);
	/* features are L2-normalised over the text part */
	const char *extra[] = {"tier=PREMIUM"};
	assert_int_equal(csa_text_features(&o, "card not arrived", 16, extra, 1, &v), 0);
	double ss = 0;
	for (size_t i = 0; i + 1 < v.n; i++)
		ss += (double)v.val[i] * v.val[i];
	assert_float_equal(ss, 1.0, 1e-4);
	assert_float_equal(v.val[v.n - 1], 0.5, 1e-6);
	/* however small the weights a model file sets (its inverse norm is
	 * beyond float's range) */
	struct csa_feat_opts tiny = {12, 0, 0, 0, 0.5f, 1e-44f, 0, 0};
	assert_int_equal(csa_text_features(&tiny, "card not arrived", 16, NULL, 0, &v), 0);
	ss = 0;
	for (size_t i = 0; i < v.n; i++)
		ss += (double)v.val[i] * v.val[i];
	/* not assert_float_equal: its relative tolerance takes inf for 1 */
	assert_true(fabs(ss - 1.0) < 1e-4);
	/* word pairs ignore order: "card arrived" and "arrived card" have the
	 * same features when there are only words and pairs */
	struct csa_feat_opts wp = {16, 0, 0, 0, 0.5f, 1.0f, 12, 0};
	struct csa_fvec v2;
	csa_fvec_init(&v2);
	assert_int_equal(csa_text_features(&wp, "card arrived", 12, NULL, 0, &v), 0);
	assert_int_equal(csa_text_features(&wp, "arrived card", 12, NULL, 0, &v2), 0);
	assert_int_equal(v.n, 3);
	assert_int_equal(v2.n, 3);
	for (size_t i = 0; i < v.n; i++) {
		size_t j = 0;
		while (j < v2.n && v2.idx[j] != v.idx[i])
			j++;
		assert_true(j < v2.n);
	}
	/* with a prefix, inflections make the same pair */
	wp.pair_prefix = 4;
	assert_int_equal(csa_text_features(&wp, "card arrived", 12, NULL, 0, &v), 0);
	assert_int_equal(csa_text_features(&wp, "cards arrival", 13, NULL, 0, &v2), 0);
	assert_int_equal(v.idx[2], v2.idx[2]);
	wp.pair_prefix = 0;
	/* a repeated word counts sublinearly: 1 + log 2 against 1 */
	assert_int_equal(csa_text_features(&wp, "card card arrived", 17, NULL, 0, &v), 0);
	assert_float_equal(v.val[0] / v.val[1], 1.0 + log(2.0), 1e-5);
	csa_fvec_release(&v2);
	csa_fvec_release(&v);
}

static void csv_and_jsonl_readers(void **state)
{
	(void)state;
	char *dir = t_tmpdir("ds");
	char p[512];
	struct csa_dataset ds = {0};
	struct csa_err err = {0};
	snprintf(p, sizeof(p), "%s/a.csv", dir);
	t_write(
	    p,
	    "id,text,category\r\n1,\"hello, \"\"world\"\"\nline two\",greet\r\n2,plain,other\n\n");
	assert_int_equal(csa_dataset_load(p, "text", "category", &ds, &err), 0);
	assert_int_equal(ds.n, 2);
	assert_string_equal(ds.text[0], "hello, \"world\"\nline two");
	assert_string_equal(ds.label[1], "other");
	csa_dataset_release(&ds);
	assert_int_equal(csa_dataset_load(p, "body", "category", &ds, &err), CSA_EINVAL);
	assert_non_null(strstr(err.msg, "no column 'body'"));
	t_write(p, "text,category\nok,a\n\"unterminated,b\n");
	assert_int_equal(csa_dataset_load(p, "text", "category", &ds, &err), CSA_EPARSE);
	assert_non_null(strstr(err.msg, "line 3"));
	t_write(p, "text,category\nok,a\nonly-one-field\n");
	assert_int_equal(csa_dataset_load(p, "text", "category", &ds, &err), CSA_EPARSE);
	assert_non_null(strstr(err.msg, "line 3"));
	/* a Latin-1 label would vanish from JSON output; Latin-1 text is
	 * read with its invalid bytes skipped */
	t_write(p, "text,category\ncaf\xe9 please,drinks\ntea,caf\xe9\n");
	assert_int_equal(csa_dataset_load(p, "text", "category", &ds, &err), CSA_EPARSE);
	assert_non_null(strstr(err.msg, "line 3: label is not valid UTF-8"));
	snprintf(p, sizeof(p), "%s/b.jsonl", dir);
	t_write(p, "{\"q\": \"hi\", \"y\": \"a\"}\n\n{\"q\": \"yo\", \"y\": \"b\"}\n");
	assert_int_equal(csa_dataset_load(p, "q", "y", &ds, &err), 0);
	assert_int_equal(ds.n, 2);
	csa_dataset_release(&ds);
	t_write(p, "{\"q\": \"hi\", \"y\": \"a\"}\n{\"q\": 1, \"y\": \"b\"}\n");
	assert_int_equal(csa_dataset_load(p, "q", "y", &ds, &err), CSA_EPARSE);
	assert_non_null(strstr(err.msg, "line 2"));
	t_rmrf(dir);
	free(dir);
}

/* A noisy 5-class keyword task: each class has its own words, mixed with
 * shared filler, 10% of labels flipped. */
static const char *const cls[] = {"alpha", "beta", "gamma", "delta", "omega"};
static const char *const words[5][4] = {{"invoice", "refund", "charge", "billing"},
                                        {"crash", "error", "bug", "freeze"},
                                        {"password", "login", "locked", "reset"},
                                        {"feature", "wish", "idea", "suggest"},
                                        {"hours", "contact", "phone", "office"}};
static const char *const filler[] = {"please", "help", "today", "account", "our",
                                     "team",   "the",  "app",   "thanks",  "issue"};

static uint64_t rs = 88172645463325252ULL;
static unsigned rnd(unsigned n)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return (unsigned)(rs % n);
}

static void make_set(char (*texts)[128], struct csa_example *ex, size_t n, int noisy)
{
	for (size_t i = 0; i < n; i++) {
		int c = (int)rnd(5);
		snprintf(texts[i], 128, "%s %s %s %s %s", filler[rnd(10)], words[c][rnd(4)],
		         filler[rnd(10)], words[c][rnd(4)], filler[rnd(10)]);
		ex[i] = (struct csa_example){texts[i], NULL, 0,
		                             noisy && rnd(10) == 0 ? (int)rnd(5) : c};
	}
}

static double accuracy(const struct csa_linear *m, const struct csa_example *ex, size_t n)
{
	double p[5];
	size_t ok = 0;
	for (size_t i = 0; i < n; i++) {
		csa_linear_predict(m, ex[i].text, strlen(ex[i].text), NULL, 0, p);
		int best = 0;
		for (int c = 1; c < 5; c++)
			if (p[c] > p[best])
				best = c;
		ok += best == ex[i].label;
	}
	return (double)ok / (double)n;
}

/* Rewrite the CRC-32 trailer of a model file image of len bytes. */
static void put_crc(char *buf, size_t len)
{
	uint32_t c =
	    (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const unsigned char *)buf, (uInt)(len - 4));
	for (int i = 0; i < 4; i++)
		buf[len - 4 + i] = (char)(c >> (8 * i));
}

static char tr_text[2000][128], te_text[500][128];
static struct csa_example tr[2000], te[500];

/* Train a model of 'hidden' units (0: linear), check it learns, and that
 * its file round-trips and bad files are refused. */
static void learns_and_round_trips(unsigned hidden)
{
	make_set(tr_text, tr, 2000, 1);
	make_set(te_text, te, 500, 0);
	struct csa_train_opts o;
	csa_train_opts_default(&o);
	o.feat.bits = 14;
	o.epochs = 5;
	o.hidden = hidden;
	struct csa_linear *m, *m2;
	struct csa_err err = {0};
	assert_int_equal(csa_linear_train(cls, 5, tr, 1800, tr + 1800, 200, &o, &m, &err), 0);
	double acc = accuracy(m, te, 500);
	print_message("accuracy on clean test set: %.3f, temperature %.3f\n", acc,
	              csa_linear_temperature(m));
	assert_true(acc > 0.95); /* it learns despite 10% noise */
	assert_int_equal(csa_linear_hidden(m), hidden);
	/* deterministic for a seed */
	assert_int_equal(csa_linear_train(cls, 5, tr, 1800, tr + 1800, 200, &o, &m2, &err), 0);
	double p1[5], p2[5];
	csa_linear_predict(m, "refund my invoice", 17, NULL, 0, p1);
	csa_linear_predict(m2, "refund my invoice", 17, NULL, 0, p2);
	assert_memory_equal(p1, p2, sizeof(p1));
	csa_linear_free(m2);

	char *dir = t_tmpdir("model");
	char path[512];
	snprintf(path, sizeof(path), "%s/m.model", dir);
	assert_int_equal(csa_linear_save(m, path, &err), 0);
	assert_int_equal(csa_linear_load(path, &m2, &err), 0);
	for (size_t i = 0; i < 500; i++) {
		csa_linear_predict(m, te[i].text, strlen(te[i].text), NULL, 0, p1);
		csa_linear_predict(m2, te[i].text, strlen(te[i].text), NULL, 0, p2);
		assert_memory_equal(p1, p2, sizeof(p1));
	}
	assert_string_equal(csa_linear_label(m2, 2), "gamma");
	assert_int_equal(csa_linear_hidden(m2), hidden);
	assert_int_equal(csa_linear_file_size(m2), csa_linear_file_size(m));
	csa_linear_free(m2);

	/* truncated, corrupted and foreign files are refused */
	char *buf;
	size_t len;
	assert_int_equal(csa_fs_read_all(path, 1 << 30, &buf, &len, &err), 0);
	char bad[512];
	snprintf(bad, sizeof(bad), "%s/bad.model", dir);
	assert_int_equal(csa_fs_write_atomic(bad, buf, len / 2, &err), 0);
	assert_int_equal(csa_linear_load(bad, &m2, &err), CSA_ECORRUPT);
	assert_non_null(strstr(err.msg, "bad.model"));
	buf[len / 3] ^= 0x40;
	assert_int_equal(csa_fs_write_atomic(bad, buf, len, &err), 0);
	assert_int_equal(csa_linear_load(bad, &m2, &err), CSA_ECORRUPT);
	assert_non_null(strstr(err.msg, "checksum"));
	assert_int_equal(csa_fs_write_atomic(bad,
	                                     "PK\x03\x04 not a model at all, but long enough to "
	                                     "pass the size check",
	                                     60, &err),
	                 0);
	assert_int_equal(csa_linear_load(bad, &m2, &err), CSA_ECORRUPT);
	assert_non_null(strstr(err.msg, "not a csa model"));
	buf[len / 3] ^= 0x40;
	/* a file of a newer format is refused by name and version */
	buf[4] = 4;
	put_crc(buf, len);
	assert_int_equal(csa_fs_write_atomic(bad, buf, len, &err), 0);
	assert_int_equal(csa_linear_load(bad, &m2, &err), CSA_ECORRUPT);
	assert_non_null(strstr(err.msg, "format version 4"));
	/* a hidden layer the file's size does not hold is refused */
	buf[4] = 3;
	buf[56] ^= 1;
	put_crc(buf, len);
	assert_int_equal(csa_fs_write_atomic(bad, buf, len, &err), 0);
	assert_int_equal(csa_linear_load(bad, &m2, &err), CSA_ECORRUPT);
	assert_non_null(strstr(err.msg, "does not match its header"));
	buf[56] ^= 1;
	/* a weight that is not a number would make every prediction NaN, a
	 * temperature far from any that training fits a one-hot guess:
	 * refused, with a valid checksum too */
	float weight;
	memcpy(&weight, buf + len - 8, 4);
	const float nan_weight = NAN;
	memcpy(buf + len - 8, &nan_weight, 4);
	put_crc(buf, len);
	assert_int_equal(csa_fs_write_atomic(bad, buf, len, &err), 0);
	assert_int_equal(csa_linear_load(bad, &m2, &err), CSA_ECORRUPT);
	assert_non_null(strstr(err.msg, "implausible weight"));
	memcpy(buf + len - 8, &weight, 4);
	double temperature;
	memcpy(&temperature, buf + 40, 8);
	const double tiny = 1e-99;
	memcpy(buf + 40, &tiny, 8);
	put_crc(buf, len);
	assert_int_equal(csa_fs_write_atomic(bad, buf, len, &err), 0);
	assert_int_equal(csa_linear_load(bad, &m2, &err), CSA_ECORRUPT);
	assert_non_null(strstr(err.msg, "implausible temperature"));
	memcpy(buf + 40, &temperature, 8);
	/* labels go into JSON: one that is not UTF-8 is refused */
	const size_t label_at = 60; /* format 3: the label table follows the header */
	char first = buf[label_at + 1];
	buf[label_at + 1] = (char)0xe9;
	put_crc(buf, len);
	assert_int_equal(csa_fs_write_atomic(bad, buf, len, &err), 0);
	assert_int_equal(csa_linear_load(bad, &m2, &err), CSA_ECORRUPT);
	assert_non_null(strstr(err.msg, "label 0 is not valid UTF-8"));
	buf[label_at + 1] = first;
	put_crc(buf, len);
	if (hidden == 0) {
		/* older formats had no hidden layer. Format 2 (no hidden units
		 * field) predicts as before */
		memmove(buf + 56, buf + 60, len - 60);
		len -= 4;
		buf[4] = 2;
		put_crc(buf, len);
		assert_int_equal(csa_fs_write_atomic(bad, buf, len, &err), 0);
		assert_int_equal(csa_linear_load(bad, &m2, &err), 0);
		csa_linear_predict(m, "refund my invoice", 17, NULL, 0, p1);
		csa_linear_predict(m2, "refund my invoice", 17, NULL, 0, p2);
		assert_memory_equal(p1, p2, sizeof(p1));
		csa_linear_free(m2);
		/* format 1 (no word weight, no pair window) still loads */
		buf[4] = 1;
		memset(buf + 36, 0, 4);
		memmove(buf + 48, buf + 56, len - 56);
		put_crc(buf, len - 8);
		assert_int_equal(csa_fs_write_atomic(bad, buf, len - 8, &err), 0);
		assert_int_equal(csa_linear_load(bad, &m2, &err), 0);
		csa_linear_predict(m2, "refund my invoice", 17, NULL, 0, p2);
		assert_float_equal(p2[0] + p2[1] + p2[2] + p2[3] + p2[4], 1.0, 1e-9);
		csa_linear_free(m2);
	}
	free(buf);

	/* online learning moves the prediction towards the taught label */
	const char *odd = "zebra quokka";
	csa_linear_predict(m, odd, strlen(odd), NULL, 0, p1);
	assert_int_equal(csa_linear_learn(m, odd, strlen(odd), NULL, 0, 3, &err), 0);
	csa_linear_predict(m, odd, strlen(odd), NULL, 0, p2);
	assert_true(p2[3] > p1[3]);
	assert_true(p2[3] > 0.5);
	assert_int_equal(csa_linear_revision(m), 1);
	/* and does not break what it knew */
	double before = accuracy(m, te, 500);
	assert_true(before > 0.93);
	/* Texts like the training data taught labels they do not carry (a
	 * reviewer's slip, or labels customers word alike) only nudge the
	 * rows their words share with every other text. */
	for (int i = 0; i < 20; i++)
		assert_int_equal(csa_linear_learn(m, te[i].text, strlen(te[i].text), NULL, 0,
		                                  (te[i].label + 1) % 5, &err),
		                 0);
	double after = accuracy(m, te, 500);
	print_message("accuracy %.3f after 20 wrong lessons (%.3f before)\n", after, before);
	assert_true(after >= before - 0.02);
	csa_linear_free(m);
	t_rmrf(dir);
	free(dir);
}

static void training_learns_and_files_round_trip(void **state)
{
	(void)state;
	learns_and_round_trips(0);
}

static void hidden_layer_learns_and_files_round_trip(void **state)
{
	(void)state;
	/* the units a fine-grained taxonomy gets; a handful of labels none */
	unsigned hidden = csa_train_default_hidden(77);
	assert_true(hidden > 0);
	assert_int_equal(csa_train_default_hidden(5), 0);
	learns_and_round_trips(hidden);
}

static void calibration_maths(void **state)
{
	(void)state;
	/* 10 predictions at 0.9 confidence, 6 right: ECE = |0.6 - 0.9| */
	struct csa_pred p[10];
	for (int i = 0; i < 10; i++)
		p[i] = (struct csa_pred){0, i < 6 ? 0 : 1, 0.9};
	assert_float_equal(csa_calib_ece(p, 10, 15), 0.3, 1e-9);
	assert_float_equal(csa_calib_accuracy(p, 10), 0.6, 1e-9);
	/* perfectly ordered confidences: the top 50% are all right */
	for (int i = 0; i < 10; i++)
		p[i] = (struct csa_pred){0, i < 5 ? 0 : 1, 1.0 - i * 0.05};
	assert_float_equal(csa_calib_acc_at_coverage(p, 10, 0.5), 1.0, 1e-9);
	assert_float_equal(csa_calib_coverage_at_acc(p, 10, 0.99), 0.5, 1e-9);
	assert_float_equal(csa_calib_coverage_at_acc(p, 10, 0.5), 1.0, 1e-9);
	/* macro F1 of a perfect and of an all-wrong classifier */
	for (int i = 0; i < 10; i++)
		p[i] = (struct csa_pred){i % 2, i % 2, 0.5};
	assert_float_equal(csa_calib_macro_f1(p, 10, 2), 1.0, 1e-9);
	for (int i = 0; i < 10; i++)
		p[i] = (struct csa_pred){1 - i % 2, i % 2, 0.5};
	assert_float_equal(csa_calib_macro_f1(p, 10, 2), 0.0, 1e-9);
	json_t *r = csa_calib_reliability(p, 10, 15);
	assert_int_equal(json_array_size(r), 1);
	json_decref(r);
	/* per label, weakest first; a label that never occurs is left out.
	 * "a": 3 of 4 found, none wrongly; "b": all 4 found, once wrongly */
	struct csa_pred q[8];
	for (int i = 0; i < 8; i++)
		q[i] = (struct csa_pred){i < 3 ? 0 : 1, i < 4 ? 0 : 1, 0.9};
	static const char *const names[] = {"a", "b", "never"};
	json_t *pl = csa_calib_per_label(q, 8, 3, names);
	assert_int_equal(json_array_size(pl), 2);
	json_t *w = json_array_get(pl, 0), *s = json_array_get(pl, 1);
	assert_string_equal(json_string_value(json_object_get(w, "label")), "a");
	assert_float_equal(json_real_value(json_object_get(w, "precision")), 1.0, 1e-9);
	assert_float_equal(json_real_value(json_object_get(w, "recall")), 0.75, 1e-9);
	assert_float_equal(json_real_value(json_object_get(w, "f1")), 6.0 / 7.0, 1e-9);
	assert_int_equal(json_integer_value(json_object_get(w, "support")), 4);
	assert_string_equal(json_string_value(json_object_get(s, "label")), "b");
	assert_float_equal(json_real_value(json_object_get(s, "precision")), 0.8, 1e-9);
	assert_int_equal(json_integer_value(json_object_get(s, "predicted")), 5);
	json_decref(pl);
}

static void temperature_reduces_overconfidence(void **state)
{
	(void)state;
	/* with many epochs on noisy data the raw model is overconfident; the
	 * fitted temperature must lower the calibration error */
	make_set(tr_text, tr, 2000, 1);
	for (size_t i = 0; i < 2000; i++)
		if (rnd(4) == 0)
			tr[i].label = (int)rnd(5); /* 25% noise */
	struct csa_train_opts o;
	csa_train_opts_default(&o);
	o.feat.bits = 14;
	o.epochs = 30;
	struct csa_linear *m;
	struct csa_err err = {0};
	/* calibrated on 300 rows, which the final model then also learns from
	 * (refit); judged on 500 rows it never saw */
	assert_int_equal(csa_linear_train(cls, 5, tr, 1200, tr + 1200, 300, &o, &m, &err), 0);
	double p[5], sc[5], nll_cal = 0, nll_raw = 0;
	for (size_t i = 0; i < 500; i++) {
		const struct csa_example *e = &tr[1500 + i];
		csa_linear_predict(m, e->text, strlen(e->text), NULL, 0, p);
		csa_linear_scores(m, e->text, strlen(e->text), NULL, 0, sc);
		double mx = sc[0], z = 0;
		for (int c = 1; c < 5; c++)
			mx = fmax(mx, sc[c]);
		for (int c = 0; c < 5; c++)
			z += exp(sc[c] - mx);
		nll_cal -= log(p[e->label]);
		nll_raw -= sc[e->label] - mx - log(z);
	}
	print_message("held-out NLL raw %.1f, calibrated %.1f (T=%.2f), accuracy before "
	              "refit %.3f\n",
	              nll_raw, nll_cal, csa_linear_temperature(m), csa_linear_heldout_accuracy(m));
	/* measured on the calibration rows before the refit learnt them: noisy */
	assert_true(csa_linear_heldout_accuracy(m) > 0.5 && csa_linear_heldout_accuracy(m) < 0.95);
	assert_true(csa_linear_temperature(m) > 1.0); /* noisy labels: it was overconfident */
	assert_true(nll_cal < nll_raw);
	csa_linear_free(m);
}

struct th {
	struct csa_linear *m;
	int learner;
	int fails;
};

static void *worker(void *arg)
{
	struct th *t = arg;
	double p[5];
	struct csa_err err;
	for (int i = 0; i < 2000; i++) {
		if (t->learner && i % 10 == 0) {
			if (csa_linear_learn(t->m, "zebra", 5, NULL, 0, i % 5, &err))
				t->fails++;
		} else {
			csa_linear_predict(t->m, te[i % 500].text, strlen(te[i % 500].text), NULL,
			                   0, p);
			double sum = 0;
			for (int c = 0; c < 5; c++)
				sum += p[c];
			if (fabs(sum - 1.0) > 1e-6)
				t->fails++;
		}
	}
	return NULL;
}

static void concurrent_predict_while_learning(void **state)
{
	(void)state;
	make_set(tr_text, tr, 2000, 0);
	make_set(te_text, te, 500, 0);
	struct csa_train_opts o;
	csa_train_opts_default(&o);
	o.feat.bits = 12;
	o.epochs = 2;
	struct csa_linear *m;
	struct csa_err err = {0};
	assert_int_equal(csa_linear_train(cls, 5, tr, 2000, NULL, 0, &o, &m, &err), 0);
	pthread_t ids[4];
	struct th t[4];
	for (int i = 0; i < 4; i++) {
		t[i] = (struct th){m, i == 0, 0};
		pthread_create(&ids[i], NULL, worker, &t[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(ids[i], NULL);
		assert_int_equal(t[i].fails, 0);
	}
	assert_int_equal(csa_linear_revision(m), 200);
	csa_linear_free(m);
}

/* Labels that only word pairs tell ("card lost" and "arrive late" one,
 * "card late" and "arrive lost" the other; an exclusive or): no single
 * word tells them apart, so a linear model over words alone cannot, and a
 * hidden layer can. */
static void hidden_layer_learns_interactions(void **state)
{
	(void)state;
	static const char *const a[] = {"card", "arrive"}, *const b[] = {"lost", "late"};
	static char text[1200][64];
	static struct csa_example ex[1200];
	for (size_t i = 0; i < 1200; i++) {
		int x = (int)(i % 2), y = (int)(i / 2 % 2); /* each pair as often */
		snprintf(text[i], sizeof(text[i]), "%s %s %s", filler[rnd(10)], a[x], b[y]);
		ex[i] = (struct csa_example){text[i], NULL, 0, x == y};
	}
	static const char *const two[] = {"one", "other"};
	double acc[2];
	for (int hidden = 0; hidden < 2; hidden++) {
		struct csa_train_opts o;
		csa_train_opts_default(&o);
		o.feat.bits = 14;
		o.feat.char_min = o.feat.char_max = 0; /* whole words only */
		o.feat.word_bigrams = 0;
		o.feat.pair_window = 0;
		o.hidden = hidden ? 16 : 0;
		struct csa_linear *m;
		struct csa_err err = {0};
		assert_int_equal(csa_linear_train(two, 2, ex, 1000, NULL, 0, &o, &m, &err), 0);
		size_t ok = 0;
		for (size_t i = 1000; i < 1200; i++) {
			double p[2];
			csa_linear_predict(m, ex[i].text, strlen(ex[i].text), NULL, 0, p);
			ok += (p[1] > p[0]) == ex[i].label;
		}
		acc[hidden] = (double)ok / 200;
		csa_linear_free(m);
	}
	print_message("exclusive-or of two words: linear %.3f, hidden layer %.3f\n", acc[0],
	              acc[1]);
	assert_true(acc[0] < 0.7);
	assert_true(acc[1] > 0.95);
}

/* The terms named as the reason of a label are the words that carry it,
 * not the filler every class shares, heaviest first; words with digits are
 * never named; linear and hidden-layer models alike. */
static void explanations_name_the_words_that_decide(void **state)
{
	(void)state;
	make_set(tr_text, tr, 2000, 0);
	for (int hidden = 0; hidden < 2; hidden++) {
		struct csa_train_opts o;
		csa_train_opts_default(&o);
		o.feat.bits = 14;
		o.epochs = 5;
		o.hidden = hidden ? 16 : 0;
		struct csa_linear *m;
		struct csa_err err = {0};
		assert_int_equal(csa_linear_train(cls, 5, tr, 2000, NULL, 0, &o, &m, &err), 0);
		static const char text[] = "please refund invoice 4111111111111111 today thanks";
		const char *extra[] = {"tier=PREMIUM"};
		struct csa_term t[3];
		size_t n = 0;
		assert_int_equal(csa_linear_explain(m, text, strlen(text), extra, 1, 0, t, 3, &n),
		                 0);
		assert_true(n >= 2);
		int billing = 0;
		for (size_t k = 0; k < n; k++) {
			print_message("%s %s %.3f\n", hidden ? "hidden" : "linear", t[k].name,
			              t[k].weight);
			assert_true(t[k].weight > 0);
			if (k)
				assert_true(t[k].weight <= t[k - 1].weight);
			assert_null(strstr(t[k].name, "4111"));
			billing +=
			    !strcmp(t[k].name, "word=refund") || !strcmp(t[k].name, "word=invoice");
		}
		/* the two billing words lead */
		assert_int_equal(billing, 2);
		assert_true(!strcmp(t[0].name, "word=refund") ||
		            !strcmp(t[0].name, "word=invoice"));
		/* for another label they are no reason */
		assert_int_equal(csa_linear_explain(m, text, strlen(text), NULL, 0, 1, t, 3, &n),
		                 0);
		for (size_t k = 0; k < n; k++)
			assert_true(strcmp(t[k].name, "word=refund") &&
			            strcmp(t[k].name, "word=invoice"));
		/* a label the model does not have: nothing */
		assert_int_equal(csa_linear_explain(m, text, strlen(text), NULL, 0, 7, t, 3, &n),
		                 0);
		assert_int_equal(n, 0);
		csa_linear_free(m);
	}
}

/* ---- trained models are pinned ------------------------------------------- */

/* Texts of five kinds of words with fillers and structured features, from
 * a generator of their own (not the shared one above, so the set does not
 * depend on which tests ran before). */
static void pin_set(char (*texts)[160], const char *(*extra)[2], struct csa_example *ex, size_t n)
{
	static const char *const tiers[] = {"tier=BASIC", "tier=PREMIUM", "tier=ENTERPRISE"};
	static const char *const chans[] = {"channel=EMAIL", "channel=CHAT"};
	uint64_t s = 0x2545F4914F6CDD1DULL;
	for (size_t i = 0; i < n; i++) {
		unsigned r[8];
		for (int k = 0; k < 8; k++) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			r[k] = (unsigned)(s >> 16);
		}
		int c = (int)(r[0] % 5);
		snprintf(texts[i], 160, "%s %s %s %s %s caf\xc3\xa9", filler[r[1] % 10],
		         words[c][r[2] % 4], filler[r[3] % 10], words[(c + r[4] % 2) % 5][r[5] % 4],
		         filler[r[6] % 10]);
		extra[i][0] = tiers[r[7] % 3];
		extra[i][1] = chans[(r[7] >> 4) % 2];
		ex[i] = (struct csa_example){texts[i], extra[i], 2,
		                             r[7] % 10 == 0 ? (int)(r[1] % 5) : c};
	}
}

/* The sha256 of model m's file bytes, into hex. */
static void model_digest(const struct csa_linear *m, char hex[CSA_SHA256_HEX_LEN])
{
	char *buf;
	size_t len;
	struct csa_err err = {0};
	assert_int_equal(csa_linear_encode(m, &buf, &len, "pin", &err), 0);
	assert_int_equal(csa_sha256_hex(buf, len, hex), 0);
	free(buf);
}

static char pin_text[1200][160];
static const char *pin_extra[1200][2];
static struct csa_example pin_ex[1200];

/*
 * A linear model and one with a hidden layer, trained (with a calibration
 * set, so with the refit) on a fixed set, are the same bytes as when this
 * test was written: training may be made faster (the rows packed, the
 * features remembered), never different. The digests were taken with the
 * training before either change.
 */
static void trained_models_are_pinned(void **state)
{
	(void)state;
	pin_set(pin_text, pin_extra, pin_ex, 1200);
	static const struct {
		unsigned hidden, bits;
		const char *digest;
	} pins[] = {
	    {0, 16, "00baf01d5c3f10f9ab96b8022026a2a0366d0ef1c6db7af70e624ca9ee13dba2"},
	    {24, 14, "4ef019585d302dd7d20aa613b53dd08d4565a341c384aa43c72c5b3f714081d3"},
	};
	for (size_t p = 0; p < sizeof(pins) / sizeof(pins[0]); p++) {
		struct csa_train_opts o;
		csa_train_opts_default(&o);
		o.feat.bits = pins[p].bits;
		o.hidden = pins[p].hidden;
		o.epochs = 3;
		o.seed = 7;
		struct csa_linear *m;
		struct csa_err err = {0};
		assert_int_equal(
		    csa_linear_train(cls, 5, pin_ex, 1000, pin_ex + 1000, 200, &o, &m, &err), 0);
		char hex[CSA_SHA256_HEX_LEN];
		model_digest(m, hex);
		print_message("model of %u hidden units: %s\n", pins[p].hidden, hex);
		if (strcmp(hex, pins[p].digest) != 0)
			fail_msg("the model of %u hidden units changed: sha256 %s", pins[p].hidden,
			         hex);
		csa_linear_free(m);
	}
}

/*
 * The feature memo gives what a fresh extraction gives: the same indexes
 * and values for every text (a long one cut where extraction cuts it,
 * structured features appended per call), answered from the memo the
 * second time, kept apart per options; a round lets go of what was not
 * asked for; and models trained through it are the pinned ones.
 */
static void feature_memo_gives_fresh_features(void **state)
{
	(void)state;
	struct csa_feat_memo *memo = csa_feat_memo_new();
	assert_non_null(memo);
	static char long_a[CSA_TEXT_MAX_BYTES + 100], long_b[CSA_TEXT_MAX_BYTES + 100];
	memset(long_a, 'x', sizeof(long_a) - 1);
	for (size_t i = 0; i + 1 < sizeof(long_a); i += 7)
		long_a[i] = ' ';
	memcpy(long_b, long_a, sizeof(long_b));
	long_b[CSA_TEXT_MAX_BYTES + 50] = 'y'; /* differs past what is read */
	const char *texts[] = {"", "refund my invoice please", "Caf\xc3\xa9 CRASH!! error 42",
	                       long_a, long_b};
	const char *ex1[] = {"tier=PREMIUM", "channel=EMAIL"}, *ex2[] = {"cat=BILLING"};
	struct csa_train_opts o;
	csa_train_opts_default(&o);
	struct csa_feat_opts opts[2] = {o.feat, o.feat};
	opts[1].bits = 14;
	size_t asked = 0;
	for (int round = 0; round < 2; round++)
		for (int f = 0; f < 2; f++)
			for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
				struct csa_fvec a, b;
				csa_fvec_init(&a);
				csa_fvec_init(&b);
				const char *const *ex = t % 2 ? ex1 : ex2;
				size_t nex = t % 2 ? 2 : 1;
				assert_int_equal(csa_text_features(&opts[f], texts[t],
				                                   strlen(texts[t]), ex, nex, &a),
				                 0);
				assert_int_equal(csa_feat_memo_features(memo, &opts[f], texts[t],
				                                        strlen(texts[t]), ex, nex,
				                                        &b),
				                 0);
				assert_int_equal(a.n, b.n);
				assert_memory_equal(a.idx, b.idx, a.n * sizeof(*a.idx));
				assert_memory_equal(a.val, b.val, a.n * sizeof(*a.val));
				csa_fvec_release(&a);
				csa_fvec_release(&b);
				asked++;
			}
	/* four texts per options (the two long ones are one), the second
	 * round all from the memo, and the second long text in the first */
	assert_int_equal(csa_feat_memo_size(memo), 8);
	assert_int_equal(csa_feat_memo_hits(memo), asked / 2 + 2);
	csa_feat_memo_round(memo); /* all were asked for: kept */
	assert_int_equal(csa_feat_memo_size(memo), 8);
	csa_feat_memo_round(memo); /* none since: let go */
	assert_int_equal(csa_feat_memo_size(memo), 0);

	/* models trained through the memo, twice (the second time every text
	 * from it), are the pinned ones */
	pin_set(pin_text, pin_extra, pin_ex, 1200);
	for (int again = 0; again < 2; again++) {
		csa_train_opts_default(&o);
		o.feat.bits = 16;
		o.hidden = 0;
		o.epochs = 3;
		o.seed = 7;
		o.memo = memo;
		size_t hits = csa_feat_memo_hits(memo);
		struct csa_linear *m;
		struct csa_err err = {0};
		assert_int_equal(
		    csa_linear_train(cls, 5, pin_ex, 1000, pin_ex + 1000, 200, &o, &m, &err), 0);
		if (again)
			assert_int_equal(csa_feat_memo_hits(memo) - hits, 1200);
		char hex[CSA_SHA256_HEX_LEN];
		model_digest(m, hex);
		assert_string_equal(
		    hex, "00baf01d5c3f10f9ab96b8022026a2a0366d0ef1c6db7af70e624ca9ee13dba2");
		csa_linear_free(m);
	}
	csa_feat_memo_free(memo);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(normalization_is_utf8_safe),
	    cmocka_unit_test(csv_and_jsonl_readers),
	    cmocka_unit_test(training_learns_and_files_round_trip),
	    cmocka_unit_test(hidden_layer_learns_and_files_round_trip),
	    cmocka_unit_test(hidden_layer_learns_interactions),
	    cmocka_unit_test(calibration_maths),
	    cmocka_unit_test(temperature_reduces_overconfidence),
	    cmocka_unit_test(concurrent_predict_while_learning),
	    cmocka_unit_test(explanations_name_the_words_that_decide),
	    cmocka_unit_test(trained_models_are_pinned),
	    cmocka_unit_test(feature_memo_gives_fresh_features),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
