/* Extractive knowledge: sentences of the team's replies and notes, chosen
 * by cue words. */
#include "agents/knowledge.h"
#include "base/json.h"
#include "llm/backend.h"
#include "llm/cascade.h"
#include "llm/redact.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTENCE_MIN 12
#define SENTENCE_MAX 400

enum list { PREVENTION, SOLUTION, TROUBLESHOOTING, NLISTS };

static const char *const list_key[NLISTS] = {"prevention_measures", "solution_patterns",
                                             "troubleshooting_steps"};

/* Cue words of each list, lower case, matched at the start of a word.
 * Prevention is looked for first: "make sure to update monthly" is a
 * measure, not a step; then what fixed it; then what to do. */
static const char *const cues[NLISTS][32] = {
    {"to prevent", "prevent", "to avoid", "avoid this", "in the future", "going forward",
     "from now on", "next time", "make sure", "ensure", "regularly", "we recommend", "recommend",
     "keep your", "monitor", "set up an alert", "so that it does not happen", NULL},
    {"fixed",         "resolved",        "solved",
     "root cause",    "caused by",       "the cause",
     "the issue was", "the problem was", "the solution",
     "workaround",    "we have",         "we've",
     "corrected",     "refunded",        "refund",
     "applied",       "deployed",        "patched",
     "restored",      "re-enabled",      "reissued",
     "credited",      "renewed",         "replaced",
     "restarted",     "reconfigured",    NULL},
    {"try",       "restart", "clear",  "check",    "go to",   "click",  "open",   "run",
     "reinstall", "log out", "log in", "sign out", "sign in", "reset",  "update", "verify",
     "confirm",   "step",    "first",  "then",     "next",    "select", "enable", NULL},
};

/* Sentences that carry no knowledge whatever else they hold. */
static const char *const skip_start[] = {"hi",        "hello", "dear",       "thanks",
                                         "thank you", "best",  "regards",    "kind regards",
                                         "cheers",    "sorry", "we apologi", NULL};

/* 'cue' occurs in the lower-cased 's' at the start of a word. */
static int has_cue(const char *s, const char *cue)
{
	size_t n = strlen(cue);
	for (const char *p = strstr(s, cue); p; p = strstr(p + 1, cue))
		if ((p == s || !isalnum((unsigned char)p[-1])) && !isalnum((unsigned char)p[n]))
			return 1;
	return 0;
}

/* Which list a sentence belongs to, or -1. */
static int classify(const char *sentence, size_t n)
{
	char low[SENTENCE_MAX + 1];
	for (size_t k = 0; k < n; k++)
		low[k] = (char)tolower((unsigned char)sentence[k]);
	low[n] = '\0';
	for (size_t k = 0; skip_start[k]; k++) {
		size_t m = strlen(skip_start[k]);
		if (strncmp(low, skip_start[k], m) == 0 && !isalpha((unsigned char)low[m]))
			return -1;
	}
	for (int l = 0; l < NLISTS; l++)
		for (size_t k = 0; cues[l][k]; k++)
			if (has_cue(low, cues[l][k]))
				return l;
	return -1;
}

static int already(const json_t *list, const char *text)
{
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v) if (strcmp(csa_json_str(v, "text"), text) == 0) return 1;
	return 0;
}

/* Keep one sentence [s, s+n) of message 'm' if it belongs to a list with
 * room. Returns -1 when out of memory. */
static int keep(json_t *out, const char *s, size_t n, const char *side, const json_t *m)
{
	while (n && isspace((unsigned char)*s))
		s++, n--;
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	/* a list marker is not part of the sentence: "- restart", "2) open" */
	size_t d = 0;
	while (d < n && d < 3 && isdigit((unsigned char)s[d]))
		d++;
	if (d && d + 1 < n && s[d] == ')')
		s += d + 1, n -= d + 1;
	else if (n && (*s == '-' || *s == '*'))
		s++, n--;
	while (n && isspace((unsigned char)*s))
		s++, n--;
	if (n < SENTENCE_MIN || n > SENTENCE_MAX)
		return 0;
	int l = classify(s, n);
	json_t *list = l >= 0 ? json_object_get(out, list_key[l]) : NULL;
	if (!list || json_array_size(list) >= CSA_KNOWLEDGE_MAX)
		return 0;
	char raw[SENTENCE_MAX + 1];
	memcpy(raw, s, n);
	raw[n] = '\0';
	char *text = csa_redact(raw, CSA_PII_ALL, NULL);
	if (!text)
		return -1;
	int rc = 0;
	if (!already(list, text))
		rc = json_array_append_new(
		    list, json_pack("{s:s, s:s, s:s, s:O?}", "text", text, "method", "extractive",
		                    "side", side, "message_id", json_object_get(m, "message_id")));
	free(text);
	return rc ? -1 : 0;
}

/* Cut a message into sentences and keep those that carry knowledge. */
static int scan(json_t *out, const json_t *m, const char *side)
{
	const char *c = csa_json_str(m, "content");
	if (!c)
		return 0;
	const char *start = c;
	for (const char *p = c;; p++) {
		int end = *p == '\0' || *p == '\n' || *p == '\r' ||
		          ((*p == '.' || *p == '!' || *p == '?') &&
		           (p[1] == '\0' || isspace((unsigned char)p[1])));
		if (!end)
			continue;
		size_t n = (size_t)(p - start) + (*p == '.' || *p == '!' || *p == '?');
		if (keep(out, start, n, side, m))
			return -1;
		if (*p == '\0')
			return 0;
		start = p + 1;
	}
}

json_t *csa_knowledge_extract(const json_t *e, const json_t *i)
{
	json_t *out = json_pack("{s:[], s:[], s:[]}", list_key[SOLUTION], list_key[TROUBLESHOOTING],
	                        list_key[PREVENTION]);
	if (!out)
		return NULL;
	const struct {
		const json_t *doc;
		const char *side;
	} sides[] = {{e, "external"}, {i, "internal"}};
	for (size_t s = 0; s < 2; s++) {
		size_t k;
		json_t *m;
		json_array_foreach(json_object_get(sides[s].doc, "messages"), k, m)
		{
			const char *sender = csa_json_str(m, "sender");
			if (!sender ||
			    (strcmp(sender, "cs_agent") && strcmp(sender, "technical_member")))
				continue; /* the customer's words and the AI's analyses */
			if (scan(out, m, sides[s].side)) {
				json_decref(out);
				return NULL;
			}
		}
	}
	return out;
}

/* ---- drafted by the replies backend ------------------------------------ */

/* Bytes of one message and of the whole ticket the backend is shown: the
 * backend clips further to its context window. */
#define DRAFT_MESSAGE_MAX 2000
#define DRAFT_TICKET_MAX  48000

/* The ticket as the backend reads it: each message of the customer and
 * of the team, oldest first, E then I, a line "Customer:", "Team reply:"
 * or "Team note:" before it; the AI's analyses left out. NULL when out of
 * memory. */
static char *ticket_text(const json_t *e, const json_t *i)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	const struct {
		const json_t *doc;
		int internal;
	} sides[] = {{e, 0}, {i, 1}};
	for (size_t s = 0; s < 2; s++) {
		size_t k;
		json_t *m;
		json_array_foreach(json_object_get(sides[s].doc, "messages"), k, m)
		{
			const char *sender = csa_json_str(m, "sender"),
			           *c = csa_json_str(m, "content");
			if (!sender || !c || strcmp(sender, "ai_agent") == 0)
				continue;
			const char *who = strcmp(sender, "customer") == 0 ? "Customer"
			                  : sides[s].internal             ? "Team note"
			                                                  : "Team reply";
			int n = (int)strnlen(c, DRAFT_MESSAGE_MAX);
			if (ftell(f) + n > DRAFT_TICKET_MAX)
				break;
			fprintf(f, "%s: %.*s\n", who, n, c);
		}
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* The backend's lists as entries {"text", "method": "drafted", "model"},
 * personal data redacted as in extractive entries, each text once a list.
 * NULL when out of memory. */
static json_t *drafted_entries(const json_t *answer, const char *model)
{
	json_t *out = json_pack("{s:[], s:[], s:[]}", list_key[SOLUTION], list_key[TROUBLESHOOTING],
	                        list_key[PREVENTION]);
	for (int l = 0; out && l < NLISTS; l++) {
		json_t *list = json_object_get(out, list_key[l]);
		size_t k;
		json_t *v;
		json_array_foreach(json_object_get(answer, list_key[l]), k, v)
		{
			char *text = csa_redact(json_string_value(v), CSA_PII_ALL, NULL);
			if (!text) {
				json_decref(out);
				return NULL;
			}
			if (!already(list, text))
				json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "text",
				                                      text, "method", "drafted",
				                                      "model", model));
			free(text);
		}
	}
	return out;
}

json_t *csa_knowledge_of(struct csa_cascade *c, const json_t *e, const json_t *i, json_t **how)
{
	static const struct csa_llm_knowledge_limits lim = {CSA_KNOWLEDGE_MAX, SENTENCE_MIN,
	                                                    SENTENCE_MAX};
	json_t *trace = NULL, *answer = NULL, *out = NULL;
	char *ticket = ticket_text(e, i);
	if (ticket)
		answer = csa_cascade_knowledge(c, ticket, &lim, &trace);
	free(ticket);
	if (answer)
		out = drafted_entries(answer, csa_json_str(trace, "model_version"));
	int drafted = out != NULL;
	if (answer && !drafted)
		json_object_set_new(trace, "reason", json_string("out of memory"));
	json_decref(answer);
	if (!drafted)
		out = csa_knowledge_extract(e, i);
	if (!trace)
		trace = json_object();
	json_object_set_new(trace, "method", json_string(drafted ? "drafted" : "extractive"));
	*how = trace;
	return out;
}
