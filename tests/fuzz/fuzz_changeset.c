/*
 * fuzz_changeset.c - libFuzzer target for the changeset decoder.
 *
 * Beyond "no crash, no out-of-bounds read": whatever the decoder accepts
 * must re-encode to exactly the same bytes (the encoding is canonical), and
 * whatever it refuses must come with a reason and a message.
 */
#include "proto.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kheo_refusal why = { 0 };
	kheo_changeset *cs;
	kheo_buf again = { 0 };
	int err;

	err = kheo_changeset_decode(&cs, data, size, &why);
	if (err != KHEO_OK) {
		if (err != KHEO_ENOMEM &&
		    (why.reason == KHEO_R_NONE || why.msg[0] == '\0'))
			abort();
		return 0;
	}
	if (kheo_changeset_encode(&again, cs, &why) != KHEO_OK ||
	    again.len != size || memcmp(again.p, data, size) != 0)
		abort();
	kheo_buf_free(&again);
	kheo_changeset_free(cs);
	return 0;
}
