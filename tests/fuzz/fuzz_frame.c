/*
 * fuzz_frame.c - libFuzzer target for the frame reader (zstd payloads,
 * declared sizes, dictionaries) and, behind it, the whole receive path:
 * frame -> changeset -> id -> signature.
 *
 * The reader knows one dictionary (64 fixed bytes) so that the dictionary
 * path is reachable; whatever frame_read accepts must hold exactly the
 * declared number of bytes.
 */
#include "proto.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char dict_bytes[] =
		"dak-nong/cu-jut/ea-po status review recognized collective "
		"economy culture_society beneficiaries name description";
	uint8_t sig[KHEO_SIG_SIZE], id[KHEO_ID_SIZE];
	kheo_buf raw = { 0 };
	kheo_refusal why = { 0 };
	kheo_changeset *cs;
	kheo_codec *c;
	kheo_dict *d;
	int err;

	if (kheo_codec_new(&c, 3) != KHEO_OK)
		return 0;
	if (kheo_dict_new(&d, dict_bytes, sizeof(dict_bytes) - 1, 3) ==
	    KHEO_OK)
		kheo_codec_add_dict(c, d);
	else
		d = NULL;

	err = kheo_frame_read(c, &raw, sig, data, size, &why);
	if (err == KHEO_OK) {
		if (raw.len == 0 || raw.len > KHEO_CS_RAW_MAX)
			abort();
		err = kheo_frame_open(c, &cs, id, &raw, data, size, &why);
		if (err == KHEO_OK)
			kheo_changeset_free(cs);
	}
	if (err != KHEO_OK && err != KHEO_ENOMEM &&
	    (why.reason == KHEO_R_NONE || why.msg[0] == '\0'))
		abort();
	kheo_buf_free(&raw);
	kheo_codec_free(c);
	kheo_dict_free(d);
	return 0;
}
