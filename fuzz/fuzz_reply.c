/* E-mail replies built from customer values (outbound/email.h): whatever
 * the customer's name, subject, message ids, address and the reply's text
 * hold, the message has only the headers csa writes, every line ends with
 * CRLF within the 998-byte limit, and no body line is a lone "." that
 * would end the SMTP DATA early. The input is the fields separated by
 * 0x01 bytes: name, subject, In-Reply-To, References, text, address. */
#include <string.h>

#include "fuzz.h"
#include "outbound/email.h"

#define FIELDS 6

static int known_header(const char *line)
{
	static const char *const names[] = {"Date:",       "From:",        "To:",
	                                    "Subject:",    "Message-ID:",  "In-Reply-To:",
	                                    "References:", "MIME-Version:", "Content-Type:",
	                                    "Content-Transfer-Encoding:"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strncmp(line, names[i], strlen(names[i])) == 0)
			return 1;
	return line[0] == ' ' || line[0] == '\t'; /* a folded continuation */
}

static void check_message(const char *msg, size_t len)
{
	FUZZ_CHECK(strlen(msg) == len);
	int in_headers = 1;
	for (size_t at = 0; at < len;) {
		const char *line = msg + at;
		const char *lf = memchr(line, '\n', len - at);
		FUZZ_CHECK(lf && lf > line && lf[-1] == '\r');
		size_t n = (size_t)(lf - line) - 1; /* without CRLF */
		FUZZ_CHECK(n <= 998);
		FUZZ_CHECK(!memchr(line, '\r', n)); /* no bare CR inside a line */
		if (in_headers && n == 0)
			in_headers = 0;
		else if (in_headers)
			FUZZ_CHECK(known_header(line));
		else
			FUZZ_CHECK(!(n == 1 && line[0] == '.'));
		at += n + 2;
	}
	FUZZ_CHECK(!in_headers);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1 << 16)
		return 0;
	char *buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	if (strlen(buf) != size) { /* NUL bytes: customer values are C strings */
		free(buf);
		return 0;
	}
	const char *f[FIELDS] = {"", "", "", "", "", ""};
	char *p = buf;
	for (int i = 0; i < FIELDS && p; i++) {
		f[i] = p;
		p = strchr(p, '\x01');
		if (p)
			*p++ = '\0';
	}
	struct csa_mail m = {.from_name = "Support",
	                     .from = "support@csa.test",
	                     .to_name = f[0],
	                     .to = "customer@example.com",
	                     .subject = f[1],
	                     .message_id = "<r1.T1@csa.test>",
	                     .in_reply_to = f[2],
	                     .references = f[3],
	                     .text = f[4],
	                     .date_ms = 1796600000000};
	char *msg = NULL;
	size_t len = 0;
	struct csa_err err = {0};
	FUZZ_CHECK(csa_mail_compose(&m, &msg, &len, &err) == CSA_OK);
	check_message(msg, len);
	free(msg);
	char addr[300];
	if (csa_mail_addr_of(f[5], addr, sizeof(addr), "address", &err) == CSA_OK)
		FUZZ_CHECK(csa_mail_addr_valid(addr) && !strpbrk(addr, "\r\n <>\""));
	else
		FUZZ_CHECK(err.msg[0] != 0);
	free(buf);
	return 0;
}
