/*
 * test_vectors.c - golden vectors: fixed keys and inputs give exact bytes,
 * ids and signatures, checked byte for byte against tests/vectors/.
 *
 * A change of format must show up here as a failing vector, on purpose.
 * When a change is intended, regenerate with
 *     KHEO_WRITE_VECTORS=1 build/tests/test_vectors
 * and say why in the commit.  The "minimal" vector is not generated: it is
 * assembled below from docs/protocol.md's tables, byte by byte, so the spec
 * and the code are checked against each other, not only against the past.
 */
#include "helpers.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Compare bytes with a hex file (whitespace ignored), or write it. */
static void check_vector(const char *name, const uint8_t *p, size_t n)
{
	const char *path = test_vector_path(name);
	char *hex, *clean;
	size_t len = 0, i, j;

	if (getenv("KHEO_WRITE_VECTORS")) {
		FILE *f = fopen(path, "w");

		assert_non_null(f);
		for (i = 0; i < n; i++)
			fprintf(f, "%02x%s", p[i],
				(i + 1) % 32 == 0 || i + 1 == n ? "\n" : "");
		fclose(f);
		return;
	}
	hex = (char *)test_read_file(path, &len);
	if (!hex)
		fail_msg("vector %s missing", path);
	clean = malloc(len + 1);
	for (i = j = 0; i < len; i++)
		if (!isspace((unsigned char)hex[i]))
			clean[j++] = hex[i];
	clean[j] = '\0';
	{
		uint8_t *want = malloc(j / 2 + 1);

		if (j != 2 * n || kheo_unhex(want, n, clean, j) != KHEO_OK)
			fail_msg("vector %s: %zu hex digits, expected %zu", name,
				j, 2 * n);
		for (i = 0; i < n; i++)
			if (want[i] != p[i])
				fail_msg("vector %s differs at byte %zu: "
					 "%02x, expected %02x", name, i, p[i],
					want[i]);
		free(want);
	}
	free(clean);
	free(hex);
}

static void keys_from_fixed_seeds(void **state)
{
	test_key a, b;

	(void)state;
	test_key_make(&a, 1);
	test_key_make(&b, 2);
	check_vector("key-seed01.pk.hex", a.pk, KHEO_KEY_SIZE);
	check_vector("key-seed02.pk.hex", b.pk, KHEO_KEY_SIZE);
}

static void sample_changeset_bytes_id_and_signature(void **state)
{
	uint8_t id[KHEO_ID_SIZE], sig[KHEO_SIG_SIZE];
	kheo_buf raw = { 0 };
	test_key a;

	(void)state;
	test_key_make(&a, 1);
	test_encode(&raw, test_sample());
	kheo_changeset_id(id, raw.p, raw.len);
	kheo_changeset_sign(sig, id, a.sk); /* Ed25519 is deterministic */
	check_vector("sample.changeset.hex", raw.p, raw.len);
	check_vector("sample.id.hex", id, sizeof(id));
	check_vector("sample.sig.hex", sig, sizeof(sig));
	kheo_buf_free(&raw);
}

static void sample_frame_stored(void **state)
{
	kheo_buf raw = { 0 }, frame = { 0 };
	kheo_codec *c;

	(void)state;
	test_encode(&raw, test_sample());
	/* level 0: stored, never compressed, so the bytes are zstd-free */
	assert_int_equal(kheo_codec_new(&c, 0), KHEO_OK);
	test_frame(c, &frame, raw.p, raw.len);
	assert_int_equal(frame.p[4], 0);
	check_vector("sample.frame.hex", frame.p, frame.len);
	kheo_codec_free(c);
	kheo_buf_free(&raw);
	kheo_buf_free(&frame);
}

/*
 * A compressed frame is checked as a reader vector only: zstd's output may
 * change between zstd versions without changing what it decodes to, and a
 * recompressed frame keeps its id and signature by design.
 */
static void compressed_frame_decodes_to_the_sample(void **state)
{
	uint8_t id[KHEO_ID_SIZE];
	kheo_buf raw = { 0 }, back = { 0 };
	kheo_changeset *cs;
	kheo_codec *c;
	uint8_t *hex, *frame;
	size_t len = 0, i, j;

	(void)state;
	test_encode(&raw, test_sample());
	assert_int_equal(kheo_codec_new(&c, 19), KHEO_OK);
	if (getenv("KHEO_WRITE_VECTORS")) {
		kheo_buf out = { 0 };
		FILE *f = fopen(test_vector_path("sample.frame-zstd.hex"), "w");

		test_frame(c, &out, raw.p, raw.len);
		for (i = 0; i < out.len; i++)
			fprintf(f, "%02x%s", out.p[i],
				(i + 1) % 32 == 0 ? "\n" : "");
		fprintf(f, "\n");
		fclose(f);
		kheo_buf_free(&out);
	}
	hex = test_read_file(test_vector_path("sample.frame-zstd.hex"), &len);
	assert_non_null(hex);
	frame = malloc(len / 2 + 1);
	for (i = j = 0; i + 1 < len;) {
		if (isspace(hex[i])) {
			i++;
			continue;
		}
		assert_int_equal(kheo_unhex(frame + j++, 1, (char *)hex + i, 2),
			KHEO_OK);
		i += 2;
	}
	assert_int_equal(frame[4], KHEO_FRAME_F_ZSTD);
	assert_int_equal(kheo_frame_open(c, &cs, id, &back, frame, j, NULL),
		KHEO_OK);
	assert_int_equal(back.len, raw.len);
	assert_memory_equal(back.p, raw.p, raw.len);
	check_vector("sample.id.hex", id, sizeof(id));
	kheo_changeset_free(cs);
	kheo_codec_free(c);
	free(hex);
	free(frame);
	kheo_buf_free(&raw);
	kheo_buf_free(&back);
}

/*
 * docs/protocol.md, "A worked example": one author (seed 01), unit
 * "dak-nong", schema 1, first of its chain, one op: set field "status" of
 * record 00..0f of table "model" to text "review", clock 0x0001_0000 (1 ms, counter 0),
 * superseding op (clock 0x8000, key seed 02).
 */
static void minimal_changeset_matches_the_spec(void **state)
{
	static const uint8_t head[] = {
		0x01, /* version 1 */
	};
	static const uint8_t middle[] = {
		0x08, 'd', 'a', 'k', '-', 'n', 'o', 'n', 'g', /* unit */
		0x01,                   /* schema version 1 */
		0x01,                   /* useq 1: no previous follows */
		0x00,                   /* no other parents */
		0x80, 0x80, 0x04,       /* clock_min 0x10000 */
		0x00,                   /* clock_span 0 */
		0x01,                   /* one interned key: */
	};
	static const uint8_t tail[] = {
		0x01,                   /* one op */
		0x02,                   /* kind: set */
		0x00,                   /* clock delta 0: at clock_min */
		0x05, 'm', 'o', 'd', 'e', 'l', /* table "model" */
		0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
		0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, /* record */
		0x06, 's', 't', 'a', 't', 'u', 's', /* field name */
		0x03, 0x06, 'r', 'e', 'v', 'i', 'e', 'w', /* text "review" */
		0x01,                   /* one pred */
		0x80, 0x80, 0x02,       /* back 0x8000: clock 0x8000 */
		0x01,                   /* key 1: the first interned key */
	};
	kheo_buf spec = { 0 }, enc = { 0 };
	test_key a, b;
	kheo_changeset *cs;
	kheo_op op = { .kind = KHEO_OP_SET, .clock = 0x10000,
		.table = "model" };
	kheo_field f = { "status", { .type = KHEO_VAL_TEXT,
		.p = (const uint8_t *)"review", .len = 6 } };
	kheo_opid pred;
	kheo_changeset mine = { .version = 1, .unit = "dak-nong",
		.schema_version = 1, .useq = 1, .nops = 1 };
	size_t i;

	(void)state;
	test_key_make(&a, 1);
	test_key_make(&b, 2);
	kheo_buf_put(&spec, head, sizeof(head));
	kheo_buf_put(&spec, a.pk, 32);
	kheo_buf_put(&spec, middle, sizeof(middle));
	kheo_buf_put(&spec, b.pk, 32);
	kheo_buf_put(&spec, tail, sizeof(tail));

	for (i = 0; i < 16; i++)
		op.record[i] = (uint8_t)i;
	op.fields = &f;
	op.nfields = 1;
	pred = (kheo_opid){ 0x8000, b.pk };
	op.pred = &pred;
	op.npred = 1;
	memcpy(mine.author, a.pk, 32);
	mine.ops = &op;
	test_encode(&enc, &mine);
	assert_int_equal(enc.len, spec.len);
	assert_memory_equal(enc.p, spec.p, spec.len);
	assert_int_equal(kheo_changeset_decode(&cs, spec.p, spec.len, NULL),
		KHEO_OK);
	kheo_changeset_free(cs);
	check_vector("minimal.changeset.hex", spec.p, spec.len);
	kheo_buf_free(&spec);
	kheo_buf_free(&enc);
}

static void version_macros_match_the_library(void **state)
{
	char want[32];

	(void)state;
	snprintf(want, sizeof(want), "%d.%d.%d", KHEO_VERSION_MAJOR,
		KHEO_VERSION_MINOR, KHEO_VERSION_PATCH);
	assert_string_equal(kheo_version(), want);
	assert_string_equal(kheo_version(), KHEO_VERSION_STRING);
	assert_int_equal(kheo_version_number(), KHEO_VERSION_NUMBER);
	assert_string_equal(kheo_error_name(KHEO_EPROTO), "KHEO_EPROTO");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(version_macros_match_the_library),
		cmocka_unit_test(keys_from_fixed_seeds),
		cmocka_unit_test(sample_changeset_bytes_id_and_signature),
		cmocka_unit_test(sample_frame_stored),
		cmocka_unit_test(compressed_frame_decodes_to_the_sample),
		cmocka_unit_test(minimal_changeset_matches_the_spec),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("vectors", tests, NULL, NULL);
}
