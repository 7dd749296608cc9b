/* The synthetic ticket generator. */
#include "gen/gen.h"
#include "base/ts.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct csa_gen {
	uint64_t s;
	int64_t now_ms;
	unsigned seq;
};

static uint64_t rnd(struct csa_gen *g)
{
	uint64_t x = g->s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	g->s = x;
	return x * 2685821657736338717ULL;
}

static double unif(struct csa_gen *g)
{
	return (double)(rnd(g) >> 11) / 9007199254740992.0;
}

static size_t pick_n(struct csa_gen *g, size_t n)
{
	return (size_t)(rnd(g) % n);
}

#define PICK(g, arr) (arr[pick_n(g, sizeof(arr) / sizeof(arr[0]))])

struct csa_gen *csa_gen_new(uint64_t seed, int64_t start_ms)
{
	struct csa_gen *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->s = seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
	if (!g->s)
		g->s = 1;
	g->now_ms = start_ms;
	for (int i = 0; i < 8; i++)
		rnd(g);
	return g;
}

void csa_gen_free(struct csa_gen *g)
{
	free(g);
}

/* ---- vocabulary -------------------------------------------------------- */

static const char *const first_names[] = {
    "Ada",   "Ravi",  "Lena", "Tom",    "Mia",  "Omar",  "Yuki", "Sara", "Jonas", "Chloe",
    "Diego", "Priya", "Ivan", "Fatima", "Noah", "Elena", "Kofi", "Hana", "Luca",  "Zoe"};
static const char *const last_names[] = {"Park",   "Menon", "Vogel", "Brown",  "Rossi",  "Haddad",
                                         "Tanaka", "Silva", "Berg",  "Martin", "Lopez",  "Shah",
                                         "Petrov", "Ali",   "Kim",   "Novak",  "Mensah", "Sato"};
static const char *const companies[] = {
    "Northwind",       "Acme Retail",        "Blue Fjord",       "Globex",
    "Initech",         "Umbrella Health",    "Stark Logistics",  "Wayne Foods",
    "Hooli",           "Vandelay Imports",   "Soylent Labs",     "Cyberdyne",
    "Tyrell Media",    "Wonka Sweets",       "Oscorp",           "Pied Piper",
    "Massive Dynamic", "Gringotts Finance",  "Monarch Travel",   "Aperture Science",
    "Duff Brewing",    "Prestige Worldwide", "Nakatomi Trading", "Bluth Company",
    "Dunder Paper"};
static const char *const products[] = {"dashboard",        "mobile app",     "API",
                                       "reports page",     "CSV export",     "Slack integration",
                                       "admin console",    "billing portal", "search",
                                       "calendar sync",    "webhooks",       "user directory",
                                       "analytics module", "invoice page"};
static const char *const since[] = {
    "since this morning", "for two days", "since the last update", "since yesterday",
    "for about an hour",  "all week",     "since Monday",          "intermittently for a few days"};

enum cat { TECH, BILL, FEAT, BUG, ACCT, GEN, NCAT };
static const char *const cat_names[NCAT] = {"TECHNICAL_ISSUE",    "BILLING_INQUIRY",
                                            "FEATURE_REQUEST",    "BUG_REPORT",
                                            "ACCOUNT_MANAGEMENT", "GENERAL_SUPPORT"};

/* Templates: {p} product, {s} since, {a} amount, {i} invoice, {n} number.
 * Subtype tags after '|' steer strategy: r = routine (template answer),
 * x = self-service (automated), c = complex (technical), h = human. */
struct tmpl {
	const char *text;
	char kind;
};

static const struct tmpl tech[] = {
    {"The {p} is not loading {s}, we just get a blank page.", 'c'},
    {"We cannot connect to the {p}, it times out every time.", 'c'},
    {"Our {p} is extremely slow {s}, pages take a minute to open.", 'c'},
    {"I get a 502 error when I open the {p}.", 'c'},
    {"Sync between the {p} and our account stopped working {s}.", 'c'},
    {"How do I configure the {p} for our team? The setup guide did not help.", 'r'},
    {"The {p} keeps logging me out every few minutes.", 'c'},
    {"Is there a known outage? Nothing works on the {p} {s}.", 'c'},
    {"Our SSO login to the {p} fails with an invalid certificate message.", 'c'},
    {"After the update the {p} does not show any data.", 'c'},
    {"Which browsers are supported for the {p}? It looks broken in ours.", 'r'},
    {"The connection to the {p} drops {s}, can you check the servers?", 'c'},
};
static const struct tmpl bill[] = {
    {"I was charged twice for invoice {i}, please refund one payment.", 'h'},
    {"Can you send me a copy of invoice {i}?", 'x'},
    {"Why is this month's invoice {a} higher than usual?", 'r'},
    {"Please update the billing address on our account.", 'x'},
    {"Our card payment failed, how can we pay invoice {i}?", 'r'},
    {"We were billed for {n} seats but only use {n2}.", 'h'},
    {"Do you offer a discount for annual plans?", 'r'},
    {"I need a refund for the subscription we cancelled {s}.", 'h'},
    {"The VAT number on invoice {i} is wrong.", 'r'},
    {"Which payment methods do you accept for the invoice?", 'r'},
    {"There is a charge of {a} on our statement that we do not recognise.", 'h'},
};
static const struct tmpl feat[] = {
    {"It would be great if the {p} could export to PDF.", 'r'},
    {"Could you add dark mode to the {p}?", 'r'},
    {"We would love an integration between the {p} and Jira.", 'r'},
    {"Please consider adding bulk edit to the {p}.", 'r'},
    {"Is it possible to get custom fields in the {p}? That would help our team a lot.", 'r'},
    {"Feature request: scheduled reports by e-mail from the {p}.", 'r'},
    {"Can you support two-factor authentication with hardware keys?", 'r'},
    {"Our team needs role-based permissions in the {p}, any plans for that?", 'r'},
    {"Would you add an API endpoint to fetch the {p} data?", 'r'},
    {"Suggestion: let us filter the {p} by date range.", 'r'},
};
static const struct tmpl bug[] = {
    {"When I click save in the {p} the changes are lost, steps: open, edit, save.", 'c'},
    {"The totals in the {p} do not match the CSV export, looks like a rounding bug.", 'c'},
    {"The {p} crashes when the name contains an accent like é.", 'c'},
    {"Dates in the {p} are shown one day off for our timezone.", 'c'},
    {"The search in the {p} returns duplicate results.", 'c'},
    {"Uploading a file larger than 10 MB to the {p} fails with an error.", 'c'},
    {"The sort order in the {p} is wrong after refreshing the page.", 'c'},
    {"The {p} shows the wrong currency symbol on invoice {i}.", 'c'},
    {"Notifications from the {p} arrive twice {s}.", 'c'},
    {"The {p} freezes when I open a report with more than {n} rows.", 'c'},
};
static const struct tmpl acct[] = {
    {"I forgot my password and the reset e-mail never arrives.", 'x'},
    {"Please add {n} new users to our account.", 'x'},
    {"How do I change the owner of our account?", 'r'},
    {"Please delete the account of an employee who left.", 'x'},
    {"I cannot log in, it says my account is locked.", 'x'},
    {"Can you change the e-mail address of my login?", 'x'},
    {"We want to close our account, what are the steps?", 'h'},
    {"How can I enable two-factor authentication on my account?", 'r'},
    {"Please merge our two accounts into one.", 'h'},
    {"I need admin rights on our company account.", 'x'},
};
static const struct tmpl gen[] = {
    {"What are your support hours?", 'r'},
    {"Do you have a guide for new users of the {p}?", 'r'},
    {"Where can I find your terms of service?", 'r'},
    {"Is there a webinar about the {p}?", 'r'},
    {"Who is our account manager?", 'r'},
    {"Can I get a call with someone from your team?", 'h'},
    {"Hi, I have a question about the {p}.", 'v'},
    {"Hello, something is not right, can you help?", 'v'},
    {"It doesn't work.", 'v'},
    {"Please call me back about our account.", 'v'},
};

static const struct tmpl *const banks[NCAT] = {tech, bill, feat, bug, acct, gen};
static const size_t bank_n[NCAT] = {sizeof(tech) / sizeof(tech[0]), sizeof(bill) / sizeof(bill[0]),
                                    sizeof(feat) / sizeof(feat[0]), sizeof(bug) / sizeof(bug[0]),
                                    sizeof(acct) / sizeof(acct[0]), sizeof(gen) / sizeof(gen[0])};

static const char *const urgent_cues[] = {"This is urgent, production is down for all our users.",
                                          "URGENT: our whole team is blocked!",
                                          "We are losing sales every minute, please fix asap.",
                                          "This is critical, we have a demo in an hour!",
                                          "Customers are complaining, we need this fixed today.",
                                          "Possible data loss, please look now."};
static const char *const high_cues[] = {
    "This is blocking our work.", "Please treat this as high priority.",
    "We need this resolved soon.", "Several colleagues are affected."};
static const char *const calm_cues[] = {"No rush, whenever you have time.",
                                        "Just curious, not urgent.", "Thanks in advance!",
                                        "Have a nice day."};
static const char *const angry_cues[] = {"This is unacceptable and really frustrating.",
                                         "I am very disappointed with the service.",
                                         "This is the third time I write about this!"};
static const char *const openers[] = {"Hi,",  "Hello,",        "Hi team,", "Good morning,",
                                      "Hey,", "Dear support,", ""};
static const char *const agent_replies[] = {"Thanks for reaching out, we are looking into it.",
                                            "Could you send us a screenshot of the problem?",
                                            "We have forwarded this to the right team.",
                                            "Thanks, this should be fixed now. Can you confirm?",
                                            "We have updated your account as requested."};
static const char *const customer_followups[] = {
    "Any update on this?", "Here is the screenshot you asked for.", "Thanks, it works now!",
    "Still not working on our side.", "Great, thank you for the quick help."};
static const char *const internal_notes[] = {"Checked the logs, looks related to the last deploy.",
                                             "Assigning to the on-call engineer.",
                                             "Customer is on the premium plan, please prioritise.",
                                             "Refund approved by billing.",
                                             "Reproduced locally, filing a bug.",
                                             "Resolved, closing the ticket."};

/* ---- text ---------------------------------------------------------------- */

struct sbuf {
	char b[1600];
	size_t n;
};

static void sadd(struct sbuf *s, const char *t)
{
	size_t l = strlen(t);
	if (s->n + l + 1 >= sizeof(s->b))
		l = sizeof(s->b) - s->n - 1;
	memcpy(s->b + s->n, t, l);
	s->n += l;
	s->b[s->n] = '\0';
}

static void fill(struct csa_gen *g, struct sbuf *s, const char *t)
{
	char num[48];
	for (const char *p = t; *p; p++) {
		if (*p != '{') {
			char c[2] = {*p, 0};
			sadd(s, c);
			continue;
		}
		const char *e = strchr(p, '}');
		if (!e)
			break;
		size_t k = (size_t)(e - p - 1);
		if (k == 1 && p[1] == 'p')
			sadd(s, PICK(g, products));
		else if (k == 1 && p[1] == 's')
			sadd(s, PICK(g, since));
		else if (k == 1 && p[1] == 'a') {
			snprintf(num, sizeof(num), "$%u", 50 + (unsigned)pick_n(g, 5000));
			sadd(s, num);
		} else if (k == 1 && p[1] == 'i') {
			snprintf(num, sizeof(num), "INV-%05u", (unsigned)pick_n(g, 99999));
			sadd(s, num);
		} else {
			snprintf(num, sizeof(num), "%u", 2 + (unsigned)pick_n(g, 60));
			sadd(s, num);
		}
		p = e;
	}
}

/* Typos: a few words get a dropped or swapped letter. */
static void typos(struct csa_gen *g, char *t, double rate)
{
	size_t n = strlen(t);
	for (size_t i = 1; i + 2 < n; i++) {
		if (t[i - 1] != ' ' || unif(g) >= rate)
			continue;
		size_t j = i + 1 + pick_n(g, 2);
		/* ASCII letters only: never split a UTF-8 sequence */
		if (j + 1 >= n || !isalpha((unsigned char)t[j]) ||
		    !isalpha((unsigned char)t[j + 1]) || (unsigned char)t[j] >= 0x80 ||
		    (unsigned char)t[j + 1] >= 0x80)
			continue;
		if (unif(g) < 0.5) {
			char c = t[j];
			t[j] = t[j + 1];
			t[j + 1] = c;
		} else {
			memmove(t + j, t + j + 1, n - j);
			n--;
		}
	}
}

/* ---- gold decisions ------------------------------------------------------ */

static const char *const prio_names[4] = {"CRITICAL", "HIGH", "MEDIUM", "LOW"};
static const char *const tiers[3] = {"PREMIUM", "STANDARD", "BASIC"};

struct customer {
	char client[64], email[96];
	const char *company, *tier;
};

/* Who writes: a person of a company, the company's usual tier or, for some,
 * another. */
static void pick_customer(struct csa_gen *g, struct customer *c)
{
	const char *fn = PICK(g, first_names), *ln = PICK(g, last_names);
	size_t ci = pick_n(g, sizeof(companies) / sizeof(companies[0]));
	c->company = companies[ci];
	c->tier = tiers[ci % 5 == 0 ? 0 : ci % 5 < 3 ? 1 : 2];
	if (unif(g) < 0.15)
		c->tier = tiers[pick_n(g, 3)];
	snprintf(c->client, sizeof(c->client), "%s %s", fn, ln);
	snprintf(c->email, sizeof(c->email), "%c.%s@%.*s.example", fn[0] + 32 * (fn[0] < 'a'), ln,
	         (int)strcspn(c->company, " "), c->company);
	for (char *p = c->email; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p + 32);
}

/* The category mix: technical and billing most common. */
static int pick_category(struct csa_gen *g)
{
	static const double mix[NCAT] = {0.26, 0.2, 0.1, 0.14, 0.16, 0.14};
	double r = unif(g), acc = 0;
	for (int c = 0; c < NCAT; c++) {
		acc += mix[c];
		if (r < acc)
			return c;
	}
	return GEN;
}

/* The hidden urgency, 0 critical .. 3 low, by category. */
static int pick_urgency(struct csa_gen *g, int cat)
{
	int urg = cat == FEAT ? 3 : cat == GEN ? 2 + (unif(g) < 0.5) : 2;
	double u = unif(g);
	if (cat == TECH || cat == BUG) {
		if (u < 0.12)
			urg = 0;
		else if (u < 0.35)
			urg = 1;
		else if (u > 0.85)
			urg = 3;
	} else if (cat == BILL || cat == ACCT) {
		if (u < 0.04)
			urg = 0;
		else if (u < 0.2)
			urg = 1;
		else if (u > 0.75)
			urg = 3;
	}
	return urg;
}

/* The customer's first message: an opener, the template, urgency cues
 * that are mostly there but not always (priority is not a keyword), anger,
 * sometimes a second topic, typos. */
static void compose_message(struct csa_gen *g, const struct tmpl *tp, int urg, int angry,
                            struct sbuf *s)
{
	s->n = 0;
	s->b[0] = '\0';
	const char *op = PICK(g, openers);
	if (*op) {
		sadd(s, op);
		sadd(s, " ");
	}
	fill(g, s, tp->text);
	if (urg == 0 && unif(g) < 0.92) {
		sadd(s, " ");
		sadd(s, PICK(g, urgent_cues));
	} else if (urg == 1 && unif(g) < 0.85) {
		sadd(s, " ");
		sadd(s, PICK(g, high_cues));
	} else if (urg == 3 && unif(g) < 0.75) {
		sadd(s, " ");
		sadd(s, PICK(g, calm_cues));
	}
	if (angry) {
		sadd(s, " ");
		sadd(s, PICK(g, angry_cues));
	}
	if (unif(g) < 0.12) {
		int other = (int)pick_n(g, NCAT);
		sadd(s, " Also, ");
		fill(g, s, banks[other][pick_n(g, bank_n[other])].text);
	}
	typos(g, s->b, 0.04);
}

/* The team's priority: the urgency, raised for premium and angry
 * customers, with a little noise. */
static int gold_priority(struct csa_gen *g, int urg, const char *tier, int angry)
{
	int prio = urg;
	if (strcmp(tier, "PREMIUM") == 0 && prio == 2 && unif(g) < 0.75)
		prio = 1;
	if (angry && prio > 1 && unif(g) < 0.75)
		prio--;
	if (unif(g) < 0.02)
		prio = (int)pick_n(g, 4);
	return prio;
}

/* The team's strategy from the template's kind, the category and the
 * priority, with a little noise. */
static const char *gold_strategy(struct csa_gen *g, char kind, int cat, int prio)
{
	const char *strategy;
	if (kind == 'v')
		strategy = "REQUEST_MORE_INFO";
	else if (prio == 0)
		strategy =
		    cat == TECH || cat == BUG ? "ESCALATE_TO_TECHNICAL" : "ESCALATE_TO_HUMAN";
	else if (kind == 'c')
		strategy = prio == 1 || cat == BUG ? "ESCALATE_TO_TECHNICAL"
		           : unif(g) < 0.5         ? "REQUEST_MORE_INFO"
		                                   : "TEMPLATE_RESPONSE";
	else if (kind == 'x')
		strategy = "AUTOMATED_RESOLUTION";
	else if (kind == 'h')
		strategy = "ESCALATE_TO_HUMAN";
	else
		strategy = "TEMPLATE_RESPONSE";
	if (unif(g) < 0.02)
		strategy = (const char *[]){"AUTOMATED_RESOLUTION", "TEMPLATE_RESPONSE",
		                            "ESCALATE_TO_HUMAN", "ESCALATE_TO_TECHNICAL",
		                            "REQUEST_MORE_INFO"}[pick_n(g, 5)];
	return strategy;
}

/* The escalation path of the team's decision, or NULL for none. */
static const char *gold_path(const char *tier, const char *strategy, int cat, int prio)
{
	if (prio == 0 && strcmp(tier, "PREMIUM") == 0)
		return "URGENT";
	if (strcmp(strategy, "ESCALATE_TO_TECHNICAL") == 0)
		return "TECHNICAL";
	if (strcmp(strategy, "ESCALATE_TO_HUMAN") == 0)
		return cat == BILL ? "BILLING" : prio == 0 ? "URGENT" : NULL;
	return NULL;
}

struct outcome {
	double res_h, frm, csat;
};

/* Resolution time, first response and CSAT as the team achieved them. */
static struct outcome gold_outcome(struct csa_gen *g, int prio, int escalate, int cat,
                                   const char *tier, int angry)
{
	static const double base_h[4] = {3, 10, 30, 72};
	double res_h = base_h[prio] * (escalate ? 1.6 : 1.0) * (cat == BUG ? 1.5 : 1.0) *
	               exp(0.5 * (unif(g) + unif(g) + unif(g) - 1.5));
	static const double fr_min[4] = {10, 45, 180, 600};
	double frm = fr_min[prio] * (strcmp(tier, "PREMIUM") == 0 ? 0.6 : 1.0) * (0.5 + unif(g));
	double csat = 4.6 - 0.6 * angry - (res_h > base_h[prio] * 1.5 ? 0.9 : 0) + (unif(g) - 0.5);
	return (struct outcome){res_h, frm, fmax(1, fmin(5, round(csat * 10) / 10))};
}

/* The external thread (the first message, then agent and customer turns)
 * and a few internal notes. */
static void converse(struct csa_gen *g, int64_t t0, const char *email, const char *first,
                     double frm, json_t *msgs, json_t *imsgs)
{
	char ts[CSA_TS_LEN];
	json_array_append_new(msgs, json_pack("{s:s, s:s, s:s, s:s}", "sender", "customer",
	                                      "sender_id", email, "content", first, "timestamp",
	                                      csa_ts_format(t0, ts)));
	int turns = 1 + (int)pick_n(g, 4);
	int64_t t = t0;
	for (int k = 1; k < turns; k++) {
		int agent = k % 2 == 1;
		t += (int64_t)(60000.0 * (agent ? frm : 30 + 300 * unif(g)));
		const char *txt = agent ? PICK(g, agent_replies) : PICK(g, customer_followups);
		json_array_append_new(msgs, json_pack("{s:s, s:s, s:s, s:s}", "sender",
		                                      agent ? "cs_agent" : "customer", "sender_id",
		                                      agent ? "agent-7" : email, "content", txt,
		                                      "timestamp", csa_ts_format(t, ts)));
	}
	int n_int = (int)pick_n(g, 3);
	static const char *const tplat[] = {"mattermost", "slack", "flock"};
	static const char *const mtypes[] = {"assignment", "update", "analysis", "escalation",
	                                     "resolution"};
	for (int k = 0; k < n_int; k++)
		json_array_append_new(
		    imsgs,
		    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "sender",
		              k % 2 ? "technical_member" : "cs_agent", "sender_id",
		              k % 2 ? "eng-3" : "agent-7", "content", PICK(g, internal_notes),
		              "timestamp", csa_ts_format(t0 + (k + 1) * 420000, ts), "platform",
		              PICK(g, tplat), "message_type", mtypes[pick_n(g, 5)]));
}

/* The steps draw from the generator in a fixed order: a seed gives the
 * same history on every machine, which replays and tests rely on. */
json_t *csa_gen_next(struct csa_gen *g)
{
	g->seq++;
	/* arrival: ~25 minutes apart on average */
	g->now_ms += (int64_t)(60000.0 * (2 + 46 * unif(g)));
	int64_t t0 = g->now_ms;
	struct customer c;
	pick_customer(g, &c);
	char tid[32];
	snprintf(tid, sizeof(tid), "H%06u", g->seq);

	int cat = pick_category(g);
	const struct tmpl *tp = &banks[cat][pick_n(g, bank_n[cat])];
	int urg = pick_urgency(g, cat);
	int angry = unif(g) < (urg <= 1 ? 0.35 : 0.08);
	struct sbuf s;
	compose_message(g, tp, urg, angry, &s);

	/* gold: category with a little label noise (ambiguity) */
	int gold_cat = cat;
	if (unif(g) < 0.015)
		gold_cat = (int)pick_n(g, NCAT);
	int prio = gold_priority(g, urg, c.tier, angry);
	const char *strategy = gold_strategy(g, tp->kind, cat, prio);
	const char *path = gold_path(c.tier, strategy, cat, prio);
	struct outcome o = gold_outcome(g, prio, path != NULL, cat, c.tier, angry);

	static const char *const platforms[] = {"email", "web_chat", "trello", "phone"};
	const char *platform = platforms[pick_n(g, 4)];
	const char *channel = strcmp(platform, "email") == 0 ? "EMAIL" : "CHAT";
	json_t *msgs = json_array(), *imsgs = json_array();
	converse(g, t0, c.email, s.b, o.frm, msgs, imsgs);

	char ts[CSA_TS_LEN];
	const char *plevel = prio <= 1 ? "HIGH" : prio == 2 ? "MEDIUM" : "LOW";
	return json_pack(
	    "{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:{s:s}, s:s, s:s}, s:s, s:s, s:o, s:o, "
	    "s:{s:s, s:s, s:s, s:b, s:s?, s:f, s:f, s:f}}",
	    "ticket_id", tid, "created_at", csa_ts_format(t0, ts), "client_name", c.client,
	    "company_name", c.company, "customer", "client_name", c.client, "company_name",
	    c.company, "contact_info", "email", c.email, "priority_level", plevel,
	    "subscription_tier", c.tier, "platform", platform, "channel", channel, "messages", msgs,
	    "internal_messages", imsgs, "gold", "category", cat_names[gold_cat], "priority",
	    prio_names[prio], "strategy", strategy, "escalate", path != NULL, "escalation_path",
	    path, "resolution_hours", round(o.res_h * 10) / 10, "first_response_minutes",
	    round(o.frm), "csat", o.csat);
}

int csa_gen_write(struct csa_gen *g, long n, FILE *out)
{
	for (long i = 0; i < n; i++) {
		json_t *t = csa_gen_next(g);
		char *s = json_dumps(t, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(t);
		if (!s)
			return -1;
		int bad = fputs(s, out) < 0 || fputc('\n', out) == EOF;
		free(s);
		if (bad)
			return -1;
	}
	return ferror(out) ? -1 : 0;
}

json_t *csa_gen_arrival(const json_t *t, const char *id)
{
	json_t *first = json_deep_copy(json_array_get(json_object_get(t, "messages"), 0));
	json_object_del(first, "timestamp");
	return json_pack(
	    "{s:s, s:O?, s:O?, s:O?, s:O?, s:O?, s:[o]}", "ticket_id", id, "client_name",
	    json_object_get(t, "client_name"), "company_name", json_object_get(t, "company_name"),
	    "customer", json_object_get(t, "customer"), "platform", json_object_get(t, "platform"),
	    "channel", json_object_get(t, "channel"), "messages", first ? first : json_object());
}
