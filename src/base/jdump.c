/* The store's serialiser (base/jdump.h): jansson's compact output, fast. */
#include "base/jdump.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a dump came to: done, out of memory, or a value to hand to
 * json_dumps() because it might not give the same bytes. */
enum { DUMP_OK, DUMP_NOMEM, DUMP_JANSSON };

struct dump {
	char *b;
	size_t len, cap;
	int state;
	int precision;
	char point; /* the locale's decimal point, which snprintf() writes */
	/* the containers being written, to find one inside itself */
	const json_t **open;
	size_t depth, cap_open;
};

static int room(struct dump *d, size_t more)
{
	if (d->len + more < d->cap)
		return 1;
	size_t cap = d->cap;
	while (d->len + more >= cap)
		cap *= 2;
	char *nb = realloc(d->b, cap);
	if (!nb) {
		d->state = DUMP_NOMEM;
		return 0;
	}
	d->b = nb;
	d->cap = cap;
	return 1;
}

static void put(struct dump *d, const char *s, size_t n)
{
	if (d->state == DUMP_OK && room(d, n)) {
		memcpy(d->b + d->len, s, n);
		d->len += n;
	}
}

static void put1(struct dump *d, char c)
{
	if (d->state == DUMP_OK && room(d, 1))
		d->b[d->len++] = c;
}

/* The length of the UTF-8 sequence at s (n bytes left) by jansson's rules
 * (utf8_check_first, utf8_check_full: no overlong form, no surrogate, at
 * most U+10FFFF), 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char u = s[0];
	size_t k;
	uint32_t v;
	if (u < 0x80)
		return 1;
	if (u >= 0xC2 && u <= 0xDF)
		k = 2, v = u & 0x1F;
	else if (u >= 0xE0 && u <= 0xEF)
		k = 3, v = u & 0x0F;
	else if (u >= 0xF0 && u <= 0xF4)
		k = 4, v = u & 0x07;
	else
		return 0;
	if (k > n)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
		v = (v << 6) + (s[i] & 0x3F);
	}
	if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) || (k == 2 && v < 0x80) ||
	    (k == 3 && v < 0x800) || (k == 4 && v < 0x10000))
		return 0;
	return k;
}

/* A string or key, quoted and escaped as jansson's dump_string() does
 * without JSON_ENSURE_ASCII and JSON_ESCAPE_SLASH: runs of other bytes
 * copied whole. */
static void put_string(struct dump *d, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run = 0;
	put1(d, '"');
	while (i < n) {
		unsigned char c = s[i];
		if (c >= 0x20 && c != '"' && c != '\\') {
			size_t k = c < 0x80 ? 1 : utf8_seq(s + i, n - i);
			if (!k) {
				d->state = DUMP_JANSSON;
				return;
			}
			i += k;
			continue;
		}
		put(d, str + run, i - run);
		char esc[8];
		const char *e = esc;
		size_t elen = 2;
		switch (c) {
		case '"':
			e = "\\\"";
			break;
		case '\\':
			e = "\\\\";
			break;
		case '\b':
			e = "\\b";
			break;
		case '\f':
			e = "\\f";
			break;
		case '\n':
			e = "\\n";
			break;
		case '\r':
			e = "\\r";
			break;
		case '\t':
			e = "\\t";
			break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04X", (unsigned)c);
			elen = 6;
		}
		put(d, e, elen);
		run = ++i;
	}
	put(d, str + run, n - run);
	put1(d, '"');
}

static void put_integer(struct dump *d, json_int_t v)
{
	char buf[24], *p = buf + sizeof(buf);
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do
		*--p = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	if (v < 0)
		*--p = '-';
	put(d, p, (size_t)(buf + sizeof(buf) - p));
}

/* The per-thread cache of csa_real_text(): a slot per value's hash (its
 * top REAL_BITS bits). */
enum { REAL_BITS = 9, REAL_SLOTS = 1 << REAL_BITS, REAL_TEXT = 29 };
struct real_slot {
	uint64_t bits;
	double read_back;
	unsigned char precision; /* 0: empty */
	unsigned char len;
	unsigned char has_read_back;
	char text[REAL_TEXT]; /* snprintf's bytes, NUL-terminated */
};
static _Thread_local struct real_slot real_cache[REAL_SLOTS];

int csa_real_text(double v, int precision, char *out, size_t size, double *read_back)
{
	uint64_t bits;
	memcpy(&bits, &v, sizeof(bits));
	if (precision < 1 || precision > 17) {
		int r = snprintf(out, size, "%.*g", precision, v);
		if (read_back && r >= 0 && (size_t)r < size)
			*read_back = strtod(out, NULL);
		return r < 0 || (size_t)r >= size ? -1 : r;
	}
	struct real_slot *c =
	    &real_cache[((bits ^ (uint64_t)precision) * 0x9E3779B97F4A7C15ULL) >> (64 - REAL_BITS)];
	if (c->precision != precision || c->bits != bits) {
		int r = snprintf(c->text, sizeof(c->text), "%.*g", precision, v);
		if (r < 0 || (size_t)r >= sizeof(c->text)) { /* cannot be: 17 digits fit */
			c->precision = 0;
			return -1;
		}
		c->bits = bits;
		c->precision = (unsigned char)precision;
		c->len = (unsigned char)r;
		c->has_read_back = 0;
	}
	if ((size_t)c->len >= size)
		return -1;
	memcpy(out, c->text, (size_t)c->len + 1);
	if (read_back) {
		if (!c->has_read_back) {
			c->read_back = strtod(c->text, NULL);
			c->has_read_back = 1;
		}
		*read_back = c->read_back;
	}
	return c->len;
}

/* A real as jansson's jsonp_dtostr() (its snprintf() version) writes it. */
static void put_real(struct dump *d, double v)
{
	char buf[100];
	int r = csa_real_text(v, d->precision ? d->precision : 17, buf, sizeof(buf), NULL);
	if (r < 0) {
		d->state = DUMP_JANSSON;
		return;
	}
	size_t len = (size_t)r;
	char *dot;
	if (d->point != '.' && (dot = strchr(buf, d->point)))
		*dot = '.';
	if (!strchr(buf, '.') && !strchr(buf, 'e')) {
		if (len + 3 >= sizeof(buf)) {
			d->state = DUMP_JANSSON;
			return;
		}
		memcpy(buf + len, ".0", 3);
		len += 2;
	}
	char *start = strchr(buf, 'e');
	if (start) {
		start++;
		char *end = start + 1;
		if (*start == '-')
			start++;
		while (*end == '0')
			end++;
		if (end != start) {
			memmove(start, end, len - (size_t)(end - buf));
			len -= (size_t)(end - start);
		}
	}
	put(d, buf, len);
}

static void put_value(struct dump *d, const json_t *v);

/* Note container v as open; 0 when it is open already (inside itself). */
static int enter(struct dump *d, const json_t *v)
{
	for (size_t i = 0; i < d->depth; i++)
		if (d->open[i] == v) {
			d->state = DUMP_JANSSON;
			return 0;
		}
	if (d->depth == d->cap_open) {
		size_t cap = d->cap_open ? d->cap_open * 2 : 16;
		const json_t **nv = realloc(d->open, cap * sizeof(*nv));
		if (!nv) {
			d->state = DUMP_NOMEM;
			return 0;
		}
		d->open = nv;
		d->cap_open = cap;
	}
	d->open[d->depth++] = v;
	return 1;
}

static void put_object(struct dump *d, const json_t *v)
{
	if (!enter(d, v))
		return;
	put1(d, '{');
	for (void *it = json_object_iter((json_t *)v); it && d->state == DUMP_OK;) {
		put_string(d, json_object_iter_key(it), json_object_iter_key_len(it));
		put1(d, ':');
		put_value(d, json_object_iter_value(it));
		if ((it = json_object_iter_next((json_t *)v, it)))
			put1(d, ',');
	}
	put1(d, '}');
	d->depth--;
}

static void put_array(struct dump *d, const json_t *v)
{
	if (!enter(d, v))
		return;
	put1(d, '[');
	size_t n = json_array_size(v);
	for (size_t i = 0; i < n && d->state == DUMP_OK; i++) {
		if (i)
			put1(d, ',');
		put_value(d, json_array_get(v, i));
	}
	put1(d, ']');
	d->depth--;
}

static void put_value(struct dump *d, const json_t *v)
{
	if (d->state != DUMP_OK)
		return;
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		put_object(d, v);
		break;
	case JSON_ARRAY:
		put_array(d, v);
		break;
	case JSON_STRING:
		put_string(d, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		put_integer(d, json_integer_value(v));
		break;
	case JSON_REAL:
		put_real(d, json_real_value(v));
		break;
	case JSON_TRUE:
		put(d, "true", 4);
		break;
	case JSON_FALSE:
		put(d, "false", 5);
		break;
	case JSON_NULL:
		put(d, "null", 4);
		break;
	default:
		d->state = DUMP_JANSSON;
	}
}

static char *jansson_dump(const json_t *v, int precision, size_t *len)
{
	char *s =
	    json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(precision));
	*len = s ? strlen(s) : 0;
	return s;
}

static char *fast_dump(const json_t *v, int precision, size_t *len)
{
	char point[8];
	snprintf(point, sizeof(point), "%#.0f", 1.0); /* "1." in the current locale */
	struct dump d = {
	    .b = malloc(4096), .cap = 4096, .precision = precision & 0x1F, .point = point[1]};
	if (!d.b)
		return NULL;
	put_value(&d, v);
	put1(&d, '\0');
	free(d.open);
	if (d.state != DUMP_OK) {
		free(d.b);
		return d.state == DUMP_JANSSON ? jansson_dump(v, precision, len) : NULL;
	}
	*len = d.len - 1;
	return d.b;
}

/* Does this dumper write what the jansson linked in writes? Reals are
 * what could differ (a jansson built with its own dtoa writes
 * 1234567890123 as "1234567890000.0" at 10 digits, not "1.23456789e12"),
 * so a document of awkward ones is compared once. */
static int g_same_as_jansson;
static pthread_once_t g_checked = PTHREAD_ONCE_INIT;

static void check_against_jansson(void)
{
	static const double reals[] = {
	    1234567890123.0, 0.1,      1.0 / 3, 1e16, 1e17,  123456.0, 1e-5,
	    1.2345e-4,       5e-324,   1e300,   -0.0, 100.0, 1e15,     0.99999999999,
	    9.9999999999e-5, -2.5e-310};
	json_t *doc = json_pack("{s:[], s:{}, s:I, s:s#}", "a", "o", "i", (json_int_t)INT64_MIN,
	                        "s", "\"\\\b\f\n\r\t\x01\x1f\x7f/\xc3\xa9\xf0\x9f\x98\x80", 17);
	json_t *a = json_object_get(doc, "a");
	for (size_t i = 0; a && i < sizeof(reals) / sizeof(reals[0]); i++)
		json_array_append_new(a, json_real(reals[i]));
	int same = doc != NULL;
	for (int p = 0; same && p <= 17; p += 1) {
		size_t la = 0, lb = 0;
		char *x = fast_dump(doc, p, &la), *y = jansson_dump(doc, p, &lb);
		same = x && y && la == lb && memcmp(x, y, la) == 0;
		free(x);
		free(y);
	}
	json_decref(doc);
	g_same_as_jansson = same;
}

char *csa_jdump_compact(const json_t *v, int precision, size_t *len)
{
	*len = 0;
	pthread_once(&g_checked, check_against_jansson);
	if (!g_same_as_jansson || (!json_is_object(v) && !json_is_array(v)))
		return jansson_dump(v, precision, len);
	return fast_dump(v, precision, len);
}

int csa_jdump_is_fast(void)
{
	pthread_once(&g_checked, check_against_jansson);
	return g_same_as_jansson;
}
