/* csa.json: defaults and loading. */
#include "base/config.h"
#include "base/ids.h"
#include "base/json.h"

#include <string.h>

/* Spec defaults. Kept as JSON text so docs and code show the same thing. */
static const char default_config[] =
    "{"
    "\"version\": 1,"
    "\"phase\": \"PHASE_1\","
    "\"taxonomy\": {"
    "  \"categories\": [\"TECHNICAL_ISSUE\", \"BILLING_INQUIRY\", \"FEATURE_REQUEST\","
    "                   \"BUG_REPORT\", \"ACCOUNT_MANAGEMENT\", \"GENERAL_SUPPORT\"],"
    "  \"priorities\": [\"CRITICAL\", \"HIGH\", \"MEDIUM\", \"LOW\"],"
    "  \"strategies\": [\"AUTOMATED_RESOLUTION\", \"TEMPLATE_RESPONSE\", \"ESCALATE_TO_HUMAN\","
    "                   \"ESCALATE_TO_TECHNICAL\", \"REQUEST_MORE_INFO\"],"
    "  \"subscription_tiers\": [\"PREMIUM\", \"STANDARD\", \"BASIC\"]"
    "},"
    "\"escalation_paths\": {"
    "  \"TECHNICAL\": [\"senior_engineer\", \"team_lead\", \"engineering_manager\"],"
    "  \"BILLING\": [\"billing_specialist\", \"account_manager\", \"finance_director\"],"
    "  \"URGENT\": [\"cs_supervisor\", \"cs_manager\", \"operations_director\"]"
    "},"
    "\"limits\": {"
    "  \"max_message_bytes\": 65536,"
    "  \"max_attachments\": 32,"
    "  \"max_messages_per_ticket\": 10000,"
    "  \"max_document_bytes\": 16777216"
    "},"
    "\"sync\": {\"max_drift_seconds\": 5, \"check_interval_seconds\": 60},"
    /* scheduled backups by `csa serve` (store/backup.h): off until a
     * directory is named */
    "\"backup\": {\"dir\": null, \"keep\": 7, \"interval_hours\": 24},"
    "\"sla\": {"
    "  \"at_risk_fraction\": 0.75,"
    "  \"first_response_minutes\": {"
    "    \"CRITICAL\": {\"PREMIUM\": 15, \"STANDARD\": 30, \"BASIC\": 60},"
    "    \"HIGH\": {\"PREMIUM\": 60, \"STANDARD\": 120, \"BASIC\": 240},"
    "    \"MEDIUM\": {\"PREMIUM\": 240, \"STANDARD\": 480, \"BASIC\": 720},"
    "    \"LOW\": {\"PREMIUM\": 480, \"STANDARD\": 1440, \"BASIC\": 2880}},"
    "  \"resolution_minutes\": {"
    "    \"CRITICAL\": {\"PREMIUM\": 240, \"STANDARD\": 480, \"BASIC\": 960},"
    "    \"HIGH\": {\"PREMIUM\": 960, \"STANDARD\": 1440, \"BASIC\": 2880},"
    "    \"MEDIUM\": {\"PREMIUM\": 2880, \"STANDARD\": 4320, \"BASIC\": 7200},"
    "    \"LOW\": {\"PREMIUM\": 7200, \"STANDARD\": 10080, \"BASIC\": 14400}}"
    "},"
    "\"routing\": {\"TECHNICAL_ISSUE\": \"technical_support\", \"BUG_REPORT\": "
    "\"technical_support\","
    "  \"BILLING_INQUIRY\": \"billing\", \"ACCOUNT_MANAGEMENT\": \"account_management\","
    "  \"FEATURE_REQUEST\": \"product\", \"GENERAL_SUPPORT\": \"cs_general\"},"
    "\"agents\": {\"confidence_threshold\": 0.8},"
    /* the people who work tickets (agents/team.h); empty: nobody is
     * assigned until the team is listed */
    "\"team\": {\"default_capacity\": 10, \"members\": []},"
    "\"updates\": {\"interval_minutes\": {\"CRITICAL\": 60, \"HIGH\": 240, \"MEDIUM\": 480,"
    "  \"LOW\": 1440}},"
    "\"selector\": {\"questions\": {"
    "  \"TECHNICAL_ISSUE\": [\"Which browser or app version are you using?\","
    "    \"What exactly happens, and what did you expect?\", \"Since when does it happen?\"],"
    "  \"BUG_REPORT\": [\"What are the steps to reproduce it?\","
    "    \"Can you share a screenshot or the error message?\"],"
    "  \"BILLING_INQUIRY\": [\"Which invoice number is concerned?\","
    "    \"What is the amount you expected?\"],"
    "  \"ACCOUNT_MANAGEMENT\": [\"Which e-mail address is the account registered with?\"],"
    "  \"FEATURE_REQUEST\": [\"What would you like to achieve with this feature?\"],"
    "  \"default\": [\"Could you tell us more about what you need?\"]}},"
    "\"automation\": {"
    "  \"decision_types\": [\"category\", \"priority\", \"strategy\", \"escalation\"],"
    "  \"z\": 1.96, \"target_accuracy\": 0.97, \"critical_target_accuracy\": 0.995,"
    "  \"min_decisions\": 50, \"segment_min_decisions\": 30, \"readiness_required\": 0.8, "
    "\"readiness_required_critical\": 0.9,"
    "  \"review_floor\": 0.05, \"review_half_life\": 200, \"review_uncertain_share\": 0.7,"
    "  \"review_delay_minutes\": 60, \"window\": 500, \"baseline_decision_ms\": 60000,"
    "  \"capture_grace_minutes\": 60,"
    "  \"tick_seconds\": 60, \"advance_workspace\": false,"
    "  \"monitor\": {\"window\": 200, \"min_sample\": 30, \"accuracy_min\": 0.85,"
    "    \"overautomation_rate\": 0.9, \"overautomation_accuracy\": 0.9, \"psi_alert\": 0.25,"
    "    \"accuracy_drop\": 0.1},"
    "  \"critical_signals\": {\"min_probability\": 0.05,"
    "    \"customer_priority_levels\": [\"HIGH\"],"
    "    \"urgency_words\": [\"urgent\", \"emergency\", \"asap\", \"production is down\","
    "      \"outage\", \"data loss\"]},"
    "  \"customer_facing_strategies\": [\"AUTOMATED_RESOLUTION\"],"
    "  \"critical_errors\": {\"reversed_on_critical_ticket\": true,"
    "    \"wrong_automated_resolution\": true},"
    "  \"alert_webhook\": null,"
    "  \"gates\": {"
    "    \"PHASE_1\": {\"min_decisions\": 100, \"capture_rate\": 1.0, \"accuracy\": 0.80},"
    "    \"PHASE_2\": {\"min_decisions\": 100, \"agreement\": 0.75, \"decision_time_ratio\": 0.80,"
    "      \"accuracy\": 0.85},"
    "    \"PHASE_3\": {\"min_decisions\": 100, \"autonomous_rate\": 0.60, \"autonomous_accuracy\": "
    "0.90,"
    "      \"intervention_time_ratio\": 0.50, \"critical_errors\": 0, \"min_reviewed\": 30},"
    "    \"PHASE_4\": {\"min_decisions\": 100, \"autonomous_rate\": 0.80,"
    "      \"autonomous_accuracy\": 0.90, \"min_reviewed\": 30},"
    "    \"PHASE_5\": {\"autonomous_rate\": 0.95, \"autonomous_accuracy\": 0.90}}},"
    "\"channels\": {\"email_token_env\": \"CSA_EMAIL_HOOK_TOKEN\","
    "  \"slack_signing_secret_env\": \"SLACK_SIGNING_SECRET\","
    "  \"mattermost_token_env\": \"MATTERMOST_TOKEN\", \"trello_secret_env\": \"TRELLO_SECRET\","
    "  \"trello_callback_url\": null, \"max_attempts\": 8,"
    "  \"mattermost_webhook_env\": \"MATTERMOST_WEBHOOK_URL\","
    "  \"slack_webhook_env\": \"SLACK_WEBHOOK_URL\", \"webhook_url_env\": \"CSA_WEBHOOK_URL\","
    /* replies to customers on their channel (docs/API.md): e-mail by SMTP
     * (the server's URL may come from CSA_SMTP_URL, its login only from
     * CSA_SMTP_USER / CSA_SMTP_PASSWORD), Slack and Mattermost thread
     * replies, Trello card comments; tokens from the variables named */
    "  \"email\": {\"smtp_url\": null, \"from\": null, \"from_name\": null},"
    "  \"slack_api_url\": \"https://slack.com/api\", \"slack_bot_token_env\": \"SLACK_BOT_TOKEN\","
    "  \"mattermost_url\": null, \"mattermost_bot_token_env\": \"MATTERMOST_BOT_TOKEN\","
    "  \"trello_api_url\": \"https://api.trello.com\", \"trello_key_env\": \"TRELLO_KEY\","
    "  \"trello_token_env\": \"TRELLO_TOKEN\", \"flock_app_secret_env\": \"FLOCK_APP_SECRET\","
    /* the team's Trello board: null, or {"lists": {workflow_stage: list
     * id}, "templates": {trello_template: template card id}} */
    "  \"trello_board\": null},"
    "\"server\": {\"port\": 8000, \"bind\": \"127.0.0.1\"},"
    /* the ticket store: null keeps it in the workspace's files; a
     * PostgreSQL URL puts it in that database (DATABASE_URL in the
     * environment wins; docs/DEPLOY.md) */
    "\"store\": {\"url\": null},"
    /* Redis, for several nodes over one workspace: live events and rate
     * limits shared between them (REDIS_URL in the environment wins;
     * docs/DEPLOY.md). null: one node, events and limits its own */
    "\"redis\": {\"url\": null},"
    /* LLM backends (docs/LLM.md): none by default, the embedded model decides */
    "\"llm\": {\"backends\": {}, \"agents\": {},"
    "  \"cascade\": {\"threshold\": 0.8, \"calls_per_hour\": 600, \"money_per_day\": 5.0,"
    "    \"uncalibrated_max_confidence\": 0.6}}"
    "}";

json_t *csa_config_defaults(void)
{
	json_t *j = json_loads(default_config, 0, NULL);
	if (!j)
		CSA_BUG("built-in default configuration does not parse");
	return j;
}

void csa_json_merge(json_t *base, const json_t *over)
{
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)over, key, v)
	{
		json_t *b = json_object_get(base, key);
		if (json_is_object(b) && json_is_object(v))
			csa_json_merge(b, v);
		else
			json_object_set(base, key, v);
	}
}

json_t *csa_config_get(const struct csa_config *cfg, const char *dotted)
{
	json_t *cur = cfg->root;
	char part[128];
	const char *p = dotted;
	while (cur && *p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		if (n >= sizeof(part))
			return NULL;
		memcpy(part, p, n);
		part[n] = '\0';
		cur = json_object_get(cur, part);
		p += n + (dot ? 1 : 0);
	}
	return cur;
}

int csa_config_in_list(const struct csa_config *cfg, const char *dotted, const char *s)
{
	json_t *arr = csa_config_get(cfg, dotted);
	size_t i;
	json_t *v;
	if (!s)
		return 0;
	json_array_foreach(arr, i, v) if (json_is_string(v) &&
	                                  strcmp(json_string_value(v), s) == 0) return 1;
	return 0;
}

static int size_key(struct csa_config *cfg, const char *key, size_t *out, struct csa_err *err)
{
	json_t *v = json_object_get(json_object_get(cfg->root, "limits"), key);
	if (!json_is_integer(v) || json_integer_value(v) <= 0)
		return csa_error(err, CSA_ESCHEMA, "csa.json: limits.%s must be a positive integer",
		                 key);
	*out = (size_t)json_integer_value(v);
	return CSA_OK;
}

static int check_string_list(struct csa_config *cfg, const char *dotted, struct csa_err *err)
{
	json_t *arr = csa_config_get(cfg, dotted);
	size_t i;
	json_t *v;
	if (!json_is_array(arr) || json_array_size(arr) == 0)
		return csa_error(err, CSA_ESCHEMA, "csa.json: %s must be a non-empty array",
		                 dotted);
	json_array_foreach(arr, i, v) if (!json_is_string(v)) return csa_error(
	    err, CSA_ESCHEMA, "csa.json: %s[%zu] must be a string", dotted, i);
	return CSA_OK;
}

/* team.members: each {id, name, team, platform_ids, skills, capacity} as
 * agents/team.h reads them, ids and platform ids unique, so a message's
 * sender names at most one member. */
static int check_team(struct csa_config *cfg, struct csa_err *err)
{
	json_t *dc = csa_config_get(cfg, "team.default_capacity");
	if (!json_is_integer(dc) || json_integer_value(dc) < 1 || json_integer_value(dc) > 100000)
		return csa_error(
		    err, CSA_ESCHEMA,
		    "csa.json: team.default_capacity must be a whole number in 1..100000");
	json_t *members = csa_config_get(cfg, "team.members");
	if (!json_is_array(members))
		return csa_error(err, CSA_ESCHEMA, "csa.json: team.members must be an array");
	static const char *const keys[] = {"id",     "name",     "team", "platform_ids",
	                                   "skills", "capacity", NULL};
	json_t *seen = json_object(); /* id or platform id -> the member's index */
	size_t i;
	json_t *m;
	int rc = CSA_OK;
	json_array_foreach(members, i, m)
	{
		const char *key;
		json_t *v;
		if (!json_is_object(m)) {
			rc = csa_error(err, CSA_ESCHEMA,
			               "csa.json: team.members[%zu] must be an object", i);
			break;
		}
		json_object_foreach(m, key, v)
		{
			int known = 0;
			for (size_t k = 0; keys[k] && !known; k++)
				known = strcmp(keys[k], key) == 0;
			if (!known) {
				rc = csa_error(err, CSA_ESCHEMA,
				               "csa.json: team.members[%zu]: unknown field '%.60s'",
				               i, key);
				break;
			}
		}
		if (rc)
			break;
		const char *id = json_string_value(json_object_get(m, "id"));
		const char *team = json_string_value(json_object_get(m, "team"));
		json_t *name = json_object_get(m, "name"),
		       *pids = json_object_get(m, "platform_ids"),
		       *skills = json_object_get(m, "skills"),
		       *cap = json_object_get(m, "capacity");
		if (!id || !csa_id_valid(id))
			rc = csa_error(
			    err, CSA_ESCHEMA,
			    "csa.json: team.members[%zu].id must be 1-64 of [A-Za-z0-9_-]", i);
		else if (name && !json_is_string(name))
			rc = csa_error(err, CSA_ESCHEMA,
			               "csa.json: team.members[%zu].name must be a string", i);
		else if (!team || (strcmp(team, "cs") && strcmp(team, "technical")))
			rc = csa_error(err, CSA_ESCHEMA,
			               "csa.json: team.members[%zu].team must be cs or technical",
			               i);
		else if (pids && !json_is_object(pids))
			rc = csa_error(err, CSA_ESCHEMA,
			               "csa.json: team.members[%zu].platform_ids must be an object "
			               "(platform -> id)",
			               i);
		else if (skills && !json_is_array(skills))
			rc = csa_error(
			    err, CSA_ESCHEMA,
			    "csa.json: team.members[%zu].skills must be an array of strings", i);
		else if (cap && (!json_is_integer(cap) || json_integer_value(cap) < 1 ||
		                 json_integer_value(cap) > 100000))
			rc = csa_error(
			    err, CSA_ESCHEMA,
			    "csa.json: team.members[%zu].capacity must be a whole number in "
			    "1..100000",
			    i);
		else if (json_object_get(seen, id))
			rc = csa_error(
			    err, CSA_ESCHEMA,
			    "csa.json: team.members[%zu]: id '%s' is already a member's id "
			    "or platform id",
			    i, id);
		if (rc)
			break;
		json_object_set_new(seen, id, json_integer((json_int_t)i));
		size_t k;
		json_array_foreach(skills, k, v)
		{
			if (!json_is_string(v) || !json_string_length(v)) {
				rc = csa_error(
				    err, CSA_ESCHEMA,
				    "csa.json: team.members[%zu].skills[%zu] must be a non-empty "
				    "string",
				    i, k);
				break;
			}
		}
		json_object_foreach(pids, key, v)
		{
			const char *pid = json_string_value(v);
			json_t *owner = pid ? json_object_get(seen, pid) : NULL;
			if (!pid || !*pid) {
				rc = csa_error(
				    err, CSA_ESCHEMA,
				    "csa.json: team.members[%zu].platform_ids.%.40s must be a "
				    "non-empty string",
				    i, key);
				break;
			}
			if (owner && (size_t)json_integer_value(owner) != i) {
				rc = csa_error(
				    err, CSA_ESCHEMA,
				    "csa.json: team.members[%zu].platform_ids.%.40s: '%.80s' "
				    "already names team.members[%lld]",
				    i, key, pid, (long long)json_integer_value(owner));
				break;
			}
			json_object_set_new(seen, pid, json_integer((json_int_t)i));
		}
		if (rc)
			break;
	}
	json_decref(seen);
	return rc;
}

/* An optional URL setting: null, or a string of one of 'schemes'
 * ("http://|https://"), without white space or control characters. */
static int check_url(struct csa_config *cfg, const char *dotted, const char *schemes,
                     struct csa_err *err)
{
	json_t *v = csa_config_get(cfg, dotted);
	if (!v || json_is_null(v))
		return CSA_OK;
	const char *s = json_string_value(v);
	int ok = 0;
	for (const char *p = schemes; s && *p;) {
		size_t n = strcspn(p, "|");
		ok |= strncmp(s, p, n) == 0 && s[n];
		p += n + (p[n] == '|');
	}
	for (const char *c = s; ok && *c; c++)
		ok = (unsigned char)*c > ' ' && *c != 0x7f;
	if (!ok)
		return csa_error(err, CSA_ESCHEMA, "csa.json: %s must be null or a URL starting %s",
		                 dotted, schemes);
	return CSA_OK;
}

/* channels.trello_board: null, or {"lists": {stage: id}, "templates":
 * {template: id}} with a "trigger" list (where a card starts) and ids fit
 * for a URL path. */
static int check_board(const json_t *b, struct csa_err *err)
{
	static const char what[] = "csa.json: channels.trello_board";
	if (!b || json_is_null(b))
		return CSA_OK;
	if (!json_is_object(b) || !json_is_object(json_object_get(b, "lists")) ||
	    !json_is_string(json_object_get(json_object_get(b, "lists"), "trigger")))
		return csa_error(err, CSA_ESCHEMA,
		                 "%s must be null or {\"lists\": {\"trigger\": \"<list id>\", ...}, "
		                 "\"templates\": {...}}",
		                 what);
	static const char *const stages[] = {"trigger", "classifier", "selection", "action", "end",
	                                     NULL};
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)b, key, v)
	{
		if (strcmp(key, "lists") && strcmp(key, "templates"))
			return csa_error(err, CSA_ESCHEMA, "%s: unknown key '%.60s'", what, key);
		if (!json_is_object(v))
			return csa_error(err, CSA_ESCHEMA, "%s.%s must be an object", what, key);
		const char *k;
		json_t *id;
		json_object_foreach(v, k, id)
		{
			size_t s = 0;
			while (strcmp(key, "lists") == 0 && stages[s] && strcmp(stages[s], k))
				s++;
			if (strcmp(key, "lists") == 0 && !stages[s])
				return csa_error(err, CSA_ESCHEMA,
				                 "%s.lists: '%.60s' is not a workflow_stage "
				                 "(trigger, classifier, selection, action, end)",
				                 what, k);
			if (!json_is_string(id) || !csa_id_valid(json_string_value(id)))
				return csa_error(err, CSA_ESCHEMA,
				                 "%s.%s.%.60s must be a Trello id (letters, digits, - and _)",
				                 what, key, k);
		}
	}
	return CSA_OK;
}

/* channels: the URLs replies go to and the sender of e-mail replies. The
 * address itself is checked where the e-mail is composed (outbound/). */
static int check_channels(struct csa_config *cfg, struct csa_err *err)
{
	int rc;
	if ((rc = check_url(cfg, "channels.email.smtp_url", "smtp://|smtps://", err)) ||
	    (rc = check_url(cfg, "channels.slack_api_url", "http://|https://", err)) ||
	    (rc = check_url(cfg, "channels.mattermost_url", "http://|https://", err)) ||
	    (rc = check_url(cfg, "channels.trello_api_url", "http://|https://", err)))
		return rc;
	if ((rc = check_board(csa_config_get(cfg, "channels.trello_board"), err)))
		return rc;
	static const char *const text[] = {"channels.email.from", "channels.email.from_name"};
	for (size_t i = 0; i < 2; i++) {
		json_t *v = csa_config_get(cfg, text[i]);
		if (v && !json_is_null(v) && !json_is_string(v))
			return csa_error(err, CSA_ESCHEMA, "csa.json: %s must be null or a string",
			                 text[i]);
	}
	return CSA_OK;
}

/* backup: an absolute directory (or null: no scheduled backup), how many
 * to keep, how often. */
static int check_backup(struct csa_config *cfg, struct csa_err *err)
{
	json_t *dir = csa_config_get(cfg, "backup.dir");
	if (dir && !json_is_null(dir)) {
		const char *d = json_string_value(dir);
		int ok = d && d[0] == '/' && strlen(d) < 3000;
		for (const char *c = d; ok && *c; c++)
			ok = (unsigned char)*c >= ' ' && *c != 0x7f;
		if (!ok)
			return csa_error(err, CSA_ESCHEMA,
			                 "csa.json: backup.dir must be null or an absolute directory "
			                 "path");
	}
	json_t *keep = csa_config_get(cfg, "backup.keep");
	if (!json_is_integer(keep) || json_integer_value(keep) < 1 ||
	    json_integer_value(keep) > 10000)
		return csa_error(err, CSA_ESCHEMA,
		                 "csa.json: backup.keep must be a whole number in 1..10000");
	json_t *every = csa_config_get(cfg, "backup.interval_hours");
	if (!json_is_number(every) || !(json_number_value(every) > 0))
		return csa_error(err, CSA_ESCHEMA,
		                 "csa.json: backup.interval_hours must be a number > 0");
	return CSA_OK;
}

static int finish(struct csa_config *cfg, struct csa_err *err)
{
	int rc;
	if ((rc = size_key(cfg, "max_message_bytes", &cfg->limits.max_message_bytes, err)) ||
	    (rc = size_key(cfg, "max_attachments", &cfg->limits.max_attachments, err)) ||
	    (rc = size_key(cfg, "max_messages_per_ticket", &cfg->limits.max_messages_per_ticket,
	                   err)) ||
	    (rc = size_key(cfg, "max_document_bytes", &cfg->limits.max_document_bytes, err)))
		return rc;
	static const char *lists[] = {"taxonomy.categories", "taxonomy.priorities",
	                              "taxonomy.strategies", "taxonomy.subscription_tiers"};
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		if ((rc = check_string_list(cfg, lists[i], err)))
			return rc;
	json_t *drift = csa_config_get(cfg, "sync.max_drift_seconds");
	if (!json_is_number(drift) || json_number_value(drift) < 0)
		return csa_error(err, CSA_ESCHEMA,
		                 "csa.json: sync.max_drift_seconds must be a number >= 0");
	cfg->max_drift_seconds = json_number_value(drift);
	json_t *every = csa_config_get(cfg, "sync.check_interval_seconds");
	if (!json_is_number(every) || json_number_value(every) < 0)
		return csa_error(err, CSA_ESCHEMA,
		                 "csa.json: sync.check_interval_seconds must be a number >= 0 "
		                 "(0: no periodic check)");
	if ((rc = check_team(cfg, err)) || (rc = check_channels(cfg, err)) ||
	    (rc = check_backup(cfg, err)) ||
	    (rc = check_url(cfg, "store.url", "postgresql://|postgres://", err)) ||
	    (rc = check_url(cfg, "redis.url", "redis://", err)))
		return rc;
	const char *phase = json_string_value(json_object_get(cfg->root, "phase"));
	if (!phase || strlen(phase) != 7 || strncmp(phase, "PHASE_", 6) != 0 || phase[6] < '1' ||
	    phase[6] > '5')
		return csa_error(err, CSA_ESCHEMA, "csa.json: phase must be PHASE_1 .. PHASE_5");
	return CSA_OK;
}

int csa_config_init_default(struct csa_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->root = csa_config_defaults();
	return finish(cfg, NULL);
}

int csa_config_load(const char *path, struct csa_config *cfg, struct csa_err *err)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->root = csa_config_defaults();
	int rc = csa_config_overlay(cfg, path, err);
	if (rc)
		csa_config_release(cfg);
	return rc;
}

int csa_config_merge(struct csa_config *cfg, const json_t *over, const char *what,
                     struct csa_err *err)
{
	if (!json_is_object(over))
		return csa_error(err, CSA_ESCHEMA, "%s: top level must be an object", what);
	struct csa_config next = {.root = json_deep_copy(cfg->root)};
	if (!next.root)
		return csa_error(err, CSA_ENOMEM, "%s: out of memory merging the configuration",
		                 what);
	csa_json_merge(next.root, over);
	int rc = finish(&next, err);
	if (rc) {
		csa_error_prefix(err, "%s: ", what);
		json_decref(next.root);
		return rc;
	}
	json_decref(cfg->root);
	*cfg = next;
	return CSA_OK;
}

int csa_config_overlay(struct csa_config *cfg, const char *path, struct csa_err *err)
{
	json_t *file;
	int rc = csa_json_load_file(path, 1 << 20, &file, err);
	if (rc)
		return rc;
	char what[4200];
	snprintf(what, sizeof(what), "'%s'", path);
	rc = csa_config_merge(cfg, file, what, err);
	json_decref(file);
	return rc;
}

void csa_config_release(struct csa_config *cfg)
{
	if (!cfg)
		return;
	json_decref(cfg->root);
	cfg->root = NULL;
}
