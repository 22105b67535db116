/*
 * fuzz_msg.c - libFuzzer target for the sync messages a peer sends
 * (proto/msg.c): whatever decodes must re-encode to the very same bytes
 * (one encoding per message), and a refusal always carries a reason.
 */
#include "proto.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kheo_refusal why = { 0 };
	kheo_buf again = { 0 };
	kheo_msg m;
	int err;

	err = kheo_msg_decode(&m, data, size, &why);
	if (err != KHEO_OK) {
		if (err != KHEO_ENOMEM &&
		    (why.reason == KHEO_R_NONE || why.msg[0] == '\0'))
			abort();
		return 0;
	}
	/* HELLO's version is written as this implementation's: the decoder
	 * refuses any other, so the round trip holds for every type */
	if (kheo_msg_encode(&again, &m) == KHEO_OK &&
	    (again.len != size || memcmp(again.p, data, size) != 0))
		abort();
	kheo_buf_free(&again);
	kheo_msg_free(&m);
	return 0;
}
