/* The scripted LLM server used by the LLM tests. */
#include "support/fakellm.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_STEPS 16
#define BODY_MAX  (1u << 20)

struct fakellm {
	struct MHD_Daemon *d;
	unsigned port;
	pthread_mutex_t mu;
	struct fakellm_step steps[MAX_STEPS];
	size_t n_steps, next;
	char *(*fn)(void *, const char *, const char *);
	void *ctx;
	int count;
	char *path, *body, *auth, *api_key, *version;
};

struct upload {
	char *b;
	size_t n;
};

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static enum MHD_Result on_req(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **con_cls)
{
	(void)method, (void)version;
	struct fakellm *f = cls;
	struct upload *u = *con_cls;
	if (!u) {
		*con_cls = calloc(1, sizeof(*u));
		return MHD_YES;
	}
	if (*size) {
		if (u->n + *size <= BODY_MAX) {
			u->b = realloc(u->b, u->n + *size + 1);
			memcpy(u->b + u->n, data, *size);
			u->n += *size;
			u->b[u->n] = '\0';
		}
		*size = 0;
		return MHD_YES;
	}
	struct fakellm_step st = {200, "{}", NULL, 0};
	char *computed = NULL;
	pthread_mutex_lock(&f->mu);
	f->count++;
	free(f->path), free(f->body), free(f->auth), free(f->api_key), free(f->version);
	f->path = strdup(url);
	f->body = strdup(u->b ? u->b : "");
	f->auth = dup_or_null(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"));
	f->api_key = dup_or_null(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key"));
	f->version =
	    dup_or_null(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "anthropic-version"));
	if (f->fn) {
		computed = f->fn(f->ctx, url, u->b ? u->b : "");
	} else if (f->n_steps) {
		st = f->steps[f->next];
		if (f->next + 1 < f->n_steps)
			f->next++;
		computed = strdup(st.body ? st.body : "");
	}
	pthread_mutex_unlock(&f->mu);
	if (st.delay_ms)
		usleep((useconds_t)st.delay_ms * 1000);
	if (!computed)
		computed = strdup("{}");
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(computed), computed, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", "application/json");
	if (st.retry_after)
		MHD_add_response_header(r, "Retry-After", st.retry_after);
	enum MHD_Result ret = MHD_queue_response(c, st.status, r);
	MHD_destroy_response(r);
	return ret;
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode t)
{
	(void)cls, (void)c, (void)t;
	struct upload *u = *con_cls;
	if (u)
		free(u->b);
	free(u);
	*con_cls = NULL;
}

struct fakellm *fakellm_start(void)
{
	struct fakellm *f = calloc(1, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
	                        NULL, NULL, on_req, f, MHD_OPTION_SOCK_ADDR, &sa,
	                        MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_END);
	if (!f->d) {
		free(f);
		return NULL;
	}
	f->port = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT)->port;
	return f;
}

void fakellm_stop(struct fakellm *f)
{
	if (!f)
		return;
	MHD_stop_daemon(f->d);
	for (size_t i = 0; i < f->n_steps; i++)
		free((char *)f->steps[i].body);
	free(f->path), free(f->body), free(f->auth), free(f->api_key), free(f->version);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

unsigned fakellm_port(const struct fakellm *f)
{
	return f->port;
}

void fakellm_script(struct fakellm *f, const struct fakellm_step *steps, size_t n)
{
	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < f->n_steps; i++)
		free((char *)f->steps[i].body);
	f->n_steps = n < MAX_STEPS ? n : MAX_STEPS;
	for (size_t i = 0; i < f->n_steps; i++) {
		f->steps[i] = steps[i];
		f->steps[i].body = strdup(steps[i].body ? steps[i].body : "");
	}
	f->next = 0;
	f->fn = NULL;
	pthread_mutex_unlock(&f->mu);
}

void fakellm_responder(struct fakellm *f, char *(*fn)(void *, const char *, const char *),
                       void *ctx)
{
	pthread_mutex_lock(&f->mu);
	f->fn = fn;
	f->ctx = ctx;
	pthread_mutex_unlock(&f->mu);
}

int fakellm_count(struct fakellm *f)
{
	pthread_mutex_lock(&f->mu);
	int n = f->count;
	pthread_mutex_unlock(&f->mu);
	return n;
}

void fakellm_last(struct fakellm *f, char **path, char **body, char **auth, char **api_key,
                  char **version)
{
	pthread_mutex_lock(&f->mu);
	if (path)
		*path = dup_or_null(f->path);
	if (body)
		*body = dup_or_null(f->body);
	if (auth)
		*auth = dup_or_null(f->auth);
	if (api_key)
		*api_key = dup_or_null(f->api_key);
	if (version)
		*version = dup_or_null(f->version);
	pthread_mutex_unlock(&f->mu);
}

/* The content split into tokens of up to 4 bytes, as a tokenizer would;
 * the tokens of the "label" value share log(label_prob), the others 0. */
char *fakellm_openai_answer(const char *content, double label_prob)
{
	json_t *tokens = json_array();
	const char *v = strstr(content, "\"label\"");
	size_t vs = 0, ve = 0, n = strlen(content);
	if (v && (v = strchr(v + 7, '"'))) {
		vs = (size_t)(v - content);
		const char *e = strchr(v + 1, '"');
		ve = e ? (size_t)(e - content) + 1 : vs;
	}
	size_t in_label = 0;
	for (size_t off = 0; off < n; off += 4)
		if (off < ve && off + 4 > vs)
			in_label++;
	for (size_t off = 0; off < n; off += 4) {
		char tok[5] = {0};
		memcpy(tok, content + off, n - off < 4 ? n - off : 4);
		double lp = off < ve && off + 4 > vs ? log(label_prob) / (double)in_label : 0.0;
		json_array_append_new(tokens, json_pack("{s:s, s:f}", "token", tok, "logprob", lp));
	}
	json_t *choice = json_pack("{s:i, s:{s:s, s:s}, s:s}", "index", 0, "message", "role",
	                           "assistant", "content", content, "finish_reason", "stop");
	if (label_prob >= 0)
		json_object_set_new(choice, "logprobs", json_pack("{s:o}", "content", tokens));
	else
		json_decref(tokens);
	json_t *r = json_pack("{s:s, s:s, s:[o], s:{s:i, s:i}}", "id", "chatcmpl-1", "object",
	                      "chat.completion", "choices", choice, "usage", "prompt_tokens", 120,
	                      "completion_tokens", 20);
	char *s = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	return s;
}

char *fakellm_anthropic_answer(const char *tool, const char *input_json)
{
	json_t *input = json_loads(input_json, 0, NULL);
	json_t *r =
	    json_pack("{s:s, s:s, s:[{s:s, s:s, s:s, s:o}], s:s, s:{s:i, s:i}}", "id", "msg_1",
	              "type", "message", "content", "type", "tool_use", "id", "toolu_1", "name",
	              tool, "input", input ? input : json_object(), "stop_reason", "tool_use",
	              "usage", "input_tokens", 150, "output_tokens", 30);
	char *s = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	return s;
}
