/*
 * A scripted LLM server for tests: an OpenAI-compatible and Messages-API
 * stand-in on 127.0.0.1 (ephemeral port) that answers from a script of
 * steps (status, body, Retry-After, delay) or from a responder function,
 * and records what it was sent.
 */
#ifndef CSA_TESTS_FAKELLM_H
#define CSA_TESTS_FAKELLM_H

#include <stddef.h>

struct fakellm;

struct fakellm_step {
	unsigned status;
	const char *body;        /* copied */
	const char *retry_after; /* header value or NULL */
	int delay_ms;            /* wait before answering */
};

struct fakellm *fakellm_start(void);
void fakellm_stop(struct fakellm *f);
unsigned fakellm_port(const struct fakellm *f);

/* Answer with these steps in order; the last one repeats. */
void fakellm_script(struct fakellm *f, const struct fakellm_step *steps, size_t n);
/* Or compute each answer (200) from the request body: fn returns a malloc'd body. */
void fakellm_responder(struct fakellm *f,
                       char *(*fn)(void *ctx, const char *path, const char *body), void *ctx);

/* Requests received so far. */
int fakellm_count(struct fakellm *f);
/* Last request: path, body and headers (malloc'd copies into the caller's
 * pointers; free them). Header names are lower case. */
void fakellm_last(struct fakellm *f, char **path, char **body, char **auth, char **api_key,
                  char **version);

/* Answer bodies. 'content' is the JSON text the model "wrote". */
char *fakellm_openai_answer(const char *content, double label_prob);
/* label_prob < 0: no log-probabilities. */
char *fakellm_anthropic_answer(const char *tool, const char *input_json);

#endif
