/*
 * fuzz_cert.c - libFuzzer target for what enrolment reads from people and
 * peers: the one-line text ("kheo-cert1:" / "kheo-req1:"), certificates and
 * enrolment requests.  The first input byte picks the path; the rest is
 * the input.  A refusal must always carry a reason and a message, and
 * what decodes must hold to the format's limits.
 */
#include "proto.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int err, const kheo_refusal *why)
{
	if (err != KHEO_OK && err != KHEO_ENOMEM &&
	    (why->reason == KHEO_R_NONE || why->msg[0] == '\0'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kheo_refusal why = { 0 };
	kheo_buf bytes = { 0 };
	size_t off[8], lens[8], n, i;
	int err;

	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0: { /* text, then each item as a certificate */
		char *text = malloc(size);

		if (!text)
			return 0;
		memcpy(text, data + 1, size - 1);
		text[size - 1] = '\0';
		err = kheo_text_decode(&bytes, off, lens, 8, &n, "kheo-cert1:",
			text, strlen(text), &why);
		check(err, &why);
		for (i = 0; err == KHEO_OK && i < n; i++) {
			kheo_cert c;
			kheo_refusal w2 = { 0 };

			if (off[i] + lens[i] > bytes.len)
				abort();
			check(kheo_cert_decode(&c, bytes.p + off[i], lens[i],
				      &w2), &w2);
		}
		free(text);
		break;
	}
	case 1: {
		kheo_cert c;

		err = kheo_cert_decode(&c, data + 1, size - 1, &why);
		check(err, &why);
		if (err == KHEO_OK &&
		    (c.role < KHEO_ROLE_COLLECTOR || c.role > KHEO_ROLE_PROVINCE ||
			    c.not_after <= c.not_before ||
			    c.nheads > KHEO_CERT_HEADS_MAX))
			abort();
		break;
	}
	default: {
		kheo_enroll_req q;

		err = kheo_enroll_req_decode(&q, data + 1, size - 1, &why);
		check(err, &why);
		if (err == KHEO_OK && q.nheads > KHEO_CERT_HEADS_MAX)
			abort();
	}
	}
	kheo_buf_free(&bytes);
	return 0;
}
