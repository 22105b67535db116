/*
 * test_frame.c - the zstd frame a signed changeset travels in: round trips
 * with and without a dictionary, and every refusal of the reader, including
 * decompression bombs and oversized windows.
 */
#include "helpers.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* Assemble a frame from its parts, valid or not. */
static void frame_bytes(kheo_buf *b, const char *magic, uint8_t flags,
	const uint8_t *dict_id, uint64_t declared, const void *payload,
	size_t plen)
{
	uint8_t sig[KHEO_SIG_SIZE] = { 0 };

	kheo_buf_put(b, magic, 4);
	kheo_buf_put_u8(b, flags);
	if (dict_id)
		kheo_buf_put(b, dict_id, KHEO_ID_SIZE);
	kheo_buf_put_varint(b, declared);
	kheo_buf_put(b, sig, sizeof(sig));
	kheo_buf_put(b, payload, plen);
}

static void expect_read(kheo_codec *c, const kheo_buf *frame, int code,
	int reason)
{
	uint8_t sig[KHEO_SIG_SIZE];
	kheo_buf raw = { 0 };
	kheo_refusal why = { 0 };
	int err = kheo_frame_read(c, &raw, sig, frame->p, frame->len, &why);

	if (err != code || why.reason != reason)
		fail_msg("expected %s/%s, got %s/%s: %s",
			kheo_error_name(code), kheo_reason_name(reason),
			kheo_error_name(err), kheo_reason_name(why.reason),
			why.msg);
	kheo_buf_free(&raw);
}

/* A zstd frame of `src`, with zstd's own content size recorded or not. */
static size_t zstd_frame(uint8_t *dst, size_t cap, const void *src,
	size_t n, int content_size, int window_log)
{
	ZSTD_CCtx *z = ZSTD_createCCtx();
	size_t out;

	ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, content_size);
	if (window_log)
		ZSTD_CCtx_setParameter(z, ZSTD_c_windowLog, window_log);
	out = ZSTD_compress2(z, dst, cap, src, n);
	ZSTD_freeCCtx(z);
	assert_false(ZSTD_isError(out));
	return out;
}

static void small_changeset_is_stored_uncompressed(void **state)
{
	kheo_changeset cs = *test_sample();
	kheo_buf raw = { 0 }, frame = { 0 }, back = { 0 };
	kheo_changeset *out;
	uint8_t id[KHEO_ID_SIZE], id2[KHEO_ID_SIZE];
	kheo_codec *c;

	(void)state;
	cs.ops = &cs.ops[4]; /* one delete: too small to gain from zstd */
	cs.nops = 1;
	cs.nparents = 0;
	cs.useq = 1;
	test_encode(&raw, &cs);
	assert_int_equal(kheo_codec_new(&c, 3), KHEO_OK);
	test_frame(c, &frame, raw.p, raw.len);
	assert_memory_equal(frame.p, "KCS\x01", 4);
	assert_int_equal(frame.p[4], 0); /* flags: stored */
	{
		uint8_t tmp[10];

		assert_int_equal(frame.len, 4 + 1 +
			kheo_varint_encode(tmp, raw.len) + 64 + raw.len);
	}

	assert_int_equal(kheo_frame_open(c, &out, id, &back, frame.p,
				 frame.len, NULL), KHEO_OK);
	kheo_changeset_id(id2, raw.p, raw.len);
	assert_memory_equal(id, id2, KHEO_ID_SIZE);
	assert_int_equal(back.len, raw.len);
	assert_memory_equal(back.p, raw.p, raw.len);
	kheo_changeset_free(out);
	kheo_codec_free(c);
	kheo_buf_free(&raw);
	kheo_buf_free(&frame);
	kheo_buf_free(&back);
}

/* A changeset with many similar puts: compresses well. */
static void big_changeset(kheo_buf *raw, size_t nops)
{
	static kheo_op ops[4000];
	static kheo_field fields[4000][2];
	static char names[4000][80];
	kheo_changeset cs = *test_sample();
	size_t i;

	assert_true(nops <= 4000);
	for (i = 0; i < nops; i++) {
		snprintf(names[i], sizeof(names[i]),
			"Mô hình dân vận khéo số %zu tại buôn Ea Pô", i);
		fields[i][0] = (kheo_field){ "kind", { .type = KHEO_VAL_TEXT,
			.p = (const uint8_t *)"collective", .len = 10 } };
		fields[i][1] = (kheo_field){ "name", { .type = KHEO_VAL_TEXT,
			.p = (const uint8_t *)names[i],
			.len = strlen(names[i]) } };
		ops[i] = (kheo_op){ .kind = KHEO_OP_PUT, .table = "model",
			.clock = ((uint64_t)1760000000000ull << 16) + i,
			.fields = fields[i], .nfields = 2 };
		memcpy(ops[i].record, &i, sizeof(i));
	}
	cs.ops = ops;
	cs.nops = nops;
	test_encode(raw, &cs);
}

static void large_changeset_is_compressed_and_round_trips(void **state)
{
	kheo_buf raw = { 0 }, frame = { 0 }, back = { 0 };
	uint8_t sig[KHEO_SIG_SIZE];
	kheo_codec *c;

	(void)state;
	big_changeset(&raw, 4000); /* ~250 KB: more than the 128 KiB window */
	assert_true(raw.len > (1u << KHEO_ZSTD_WINDOW_LOG));
	assert_int_equal(kheo_codec_new(&c, 3), KHEO_OK);
	test_frame(c, &frame, raw.p, raw.len);
	assert_int_equal(frame.p[4], KHEO_FRAME_F_ZSTD);
	assert_true(frame.len < raw.len / 3);
	assert_int_equal(kheo_frame_read(c, &back, sig, frame.p, frame.len,
				 NULL), KHEO_OK);
	assert_int_equal(back.len, raw.len);
	assert_memory_equal(back.p, raw.p, raw.len);
	kheo_codec_free(c);
	kheo_buf_free(&raw);
	kheo_buf_free(&frame);
	kheo_buf_free(&back);
}

static void dictionary_is_named_by_hash_and_required(void **state)
{
	kheo_buf raw = { 0 }, plain = { 0 }, withdict = { 0 }, back = { 0 };
	uint8_t id1[KHEO_ID_SIZE], id2[KHEO_ID_SIZE], expect[KHEO_ID_SIZE];
	kheo_codec *writer, *reader;
	kheo_changeset *cs;
	kheo_refusal why;
	kheo_dict *d;
	kheo_buf dictbytes = { 0 };

	(void)state;
	big_changeset(&raw, 40);
	/* a raw-content dictionary: another changeset of the same shape */
	big_changeset(&dictbytes, 60);
	assert_int_equal(kheo_dict_new(&d, dictbytes.p, dictbytes.len, 3),
		KHEO_OK);
	crypto_generichash(expect, 32, dictbytes.p, dictbytes.len, NULL, 0);
	assert_memory_equal(kheo_dict_id(d), expect, KHEO_ID_SIZE);

	assert_int_equal(kheo_codec_new(&writer, 3), KHEO_OK);
	assert_int_equal(kheo_codec_new(&reader, 3), KHEO_OK);
	test_frame(writer, &plain, raw.p, raw.len);
	kheo_codec_use_dict(writer, d);
	test_frame(writer, &withdict, raw.p, raw.len);
	assert_int_equal(withdict.p[4], KHEO_FRAME_F_ZSTD | KHEO_FRAME_F_DICT);
	assert_memory_equal(withdict.p + 5, expect, KHEO_ID_SIZE);
	assert_true(withdict.len < plain.len);

	/* a reader without the dictionary holds off, naming it */
	assert_int_equal(kheo_frame_open(reader, &cs, id1, &back, withdict.p,
				 withdict.len, &why), KHEO_EUNSUPPORTED);
	assert_int_equal(why.reason, KHEO_R_UNKNOWN_DICT);
	assert_non_null(strstr(why.msg, "dictionary"));

	/* with it, the same id: compression never changes what is signed */
	assert_int_equal(kheo_codec_add_dict(reader, d), KHEO_OK);
	assert_int_equal(kheo_frame_open(reader, &cs, id1, &back, withdict.p,
				 withdict.len, NULL), KHEO_OK);
	kheo_changeset_free(cs);
	assert_int_equal(kheo_frame_open(reader, &cs, id2, &back, plain.p,
				 plain.len, NULL), KHEO_OK);
	kheo_changeset_free(cs);
	assert_memory_equal(id1, id2, KHEO_ID_SIZE);

	kheo_codec_free(writer);
	kheo_codec_free(reader);
	kheo_dict_free(d);
	kheo_buf_free(&raw);
	kheo_buf_free(&plain);
	kheo_buf_free(&withdict);
	kheo_buf_free(&back);
	kheo_buf_free(&dictbytes);
}

static void refuses_bad_magic_version_and_flags(void **state)
{
	kheo_buf f = { 0 };
	uint8_t id[KHEO_ID_SIZE] = { 0 };
	kheo_codec *c;

	(void)state;
	assert_int_equal(kheo_codec_new(&c, 3), KHEO_OK);
	frame_bytes(&f, "PK\x03\x04", 0, NULL, 1, "x", 1);
	expect_read(c, &f, KHEO_EPROTO, KHEO_R_BAD_MAGIC);
	kheo_buf_reset(&f);
	frame_bytes(&f, "KCS\x02", 0, NULL, 1, "x", 1);
	expect_read(c, &f, KHEO_EUNSUPPORTED, KHEO_R_BAD_VERSION);
	kheo_buf_reset(&f);
	frame_bytes(&f, "KCS\x01", 0x04, NULL, 1, "x", 1);
	expect_read(c, &f, KHEO_EPROTO, KHEO_R_BAD_FLAGS);
	kheo_buf_reset(&f);
	frame_bytes(&f, "KCS\x01", KHEO_FRAME_F_DICT, id, 1, "x", 1);
	expect_read(c, &f, KHEO_EPROTO, KHEO_R_BAD_FLAGS);
	kheo_buf_reset(&f);
	kheo_buf_put(&f, "KC", 2);
	expect_read(c, &f, KHEO_EPROTO, KHEO_R_BAD_MAGIC);
	kheo_codec_free(c);
	kheo_buf_free(&f);
}

static void refuses_declared_sizes_out_of_range(void **state)
{
	kheo_buf f = { 0 };
	kheo_codec *c;

	(void)state;
	assert_int_equal(kheo_codec_new(&c, 3), KHEO_OK);
	frame_bytes(&f, "KCS\x01", 0, NULL, KHEO_CS_RAW_MAX + 1, "x", 1);
	expect_read(c, &f, KHEO_ELIMIT, KHEO_R_TOO_BIG);
	kheo_buf_reset(&f);
	frame_bytes(&f, "KCS\x01", 0, NULL, 0, "", 0);
	expect_read(c, &f, KHEO_EPROTO, KHEO_R_SIZE_MISMATCH);
	/* stored payloads: exactly the declared size */
	kheo_buf_reset(&f);
	frame_bytes(&f, "KCS\x01", 0, NULL, 5, "abcd", 4);
	expect_read(c, &f, KHEO_EPROTO, KHEO_R_TRUNCATED);
	kheo_buf_reset(&f);
	frame_bytes(&f, "KCS\x01", 0, NULL, 3, "abcd", 4);
	expect_read(c, &f, KHEO_EPROTO, KHEO_R_TRAILING_BYTES);
	kheo_codec_free(c);
	kheo_buf_free(&f);
}

static void refuses_decompression_bomb(void **state)
{
	size_t n = 64u << 20, cap = ZSTD_compressBound(n), z;
	uint8_t *zeros = calloc(1, n), *packed = malloc(cap);
	kheo_buf f = { 0 };
	kheo_codec *c;

	(void)state;
	/* 64 MiB of zeros is a few KB of zstd; declared as 100 bytes */
	z = zstd_frame(packed, cap, zeros, n, 0, KHEO_ZSTD_WINDOW_LOG);
	assert_true(z < 100000);
	assert_int_equal(kheo_codec_new(&c, 3), KHEO_OK);
	frame_bytes(&f, "KCS\x01", KHEO_FRAME_F_ZSTD, NULL, 100, packed, z);
	expect_read(c, &f, KHEO_EPROTO, KHEO_R_SIZE_MISMATCH);
	/* declared as the truth, but above the hard cap */
	kheo_buf_reset(&f);
	frame_bytes(&f, "KCS\x01", KHEO_FRAME_F_ZSTD, NULL, n, packed, z);
	expect_read(c, &f, KHEO_ELIMIT, KHEO_R_TOO_BIG);
	kheo_codec_free(c);
	kheo_buf_free(&f);
	free(zeros);
	free(packed);
}

static void refuses_size_mismatch_short_payload(void **state)
{
	uint8_t packed[256];
	kheo_buf f = { 0 };
	kheo_codec *c;
	size_t z;

	(void)state;
	assert_int_equal(kheo_codec_new(&c, 3), KHEO_OK);
	z = zstd_frame(packed, sizeof(packed), "hello hello hello", 17, 0, 0);
	frame_bytes(&f, "KCS\x01", KHEO_FRAME_F_ZSTD, NULL, 18, packed, z);
	expect_read(c, &f, KHEO_EPROTO, KHEO_R_SIZE_MISMATCH);
	/* zstd's own content size disagrees with ours */
	kheo_buf_reset(&f);
	z = zstd_frame(packed, sizeof(packed), "hello hello hello", 17, 1, 0);
	frame_bytes(&f, "KCS\x01", KHEO_FRAME_F_ZSTD, NULL, 16, packed, z);
	expect_read(c, &f, KHEO_EPROTO, KHEO_R_SIZE_MISMATCH);
	kheo_codec_free(c);
	kheo_buf_free(&f);
}

static void refuses_bytes_after_the_zstd_frame(void **state)
{
	uint8_t packed[256];
	kheo_buf f = { 0 };
	kheo_codec *c;
	size_t z;

	(void)state;
	assert_int_equal(kheo_codec_new(&c, 3), KHEO_OK);
	z = zstd_frame(packed, sizeof(packed), "hello hello hello", 17, 0, 0);
	/* a second frame concatenated: zstd alone would decode both */
	memcpy(packed + z, packed, z);
	frame_bytes(&f, "KCS\x01", KHEO_FRAME_F_ZSTD, NULL, 17, packed, 2 * z);
	expect_read(c, &f, KHEO_EPROTO, KHEO_R_TRAILING_BYTES);
	kheo_codec_free(c);
	kheo_buf_free(&f);
}

static void refuses_corrupt_zstd(void **state)
{
	kheo_buf raw = { 0 }, frame = { 0 }, f = { 0 };
	uint8_t sig[KHEO_SIG_SIZE];
	kheo_codec *c;
	size_t i;
	int refused = 0;

	(void)state;
	assert_int_equal(kheo_codec_new(&c, 3), KHEO_OK);
	frame_bytes(&f, "KCS\x01", KHEO_FRAME_F_ZSTD, NULL, 10,
		"not zstd at all", 15);
	expect_read(c, &f, KHEO_EPROTO, KHEO_R_BAD_FRAME);

	/* flip each byte of a compressed payload: never a crash; a flip the
	 * decompressor survives changes the bytes, which the id catches */
	big_changeset(&raw, 50);
	test_frame(c, &frame, raw.p, raw.len);
	for (i = 70; i < frame.len; i++) {
		kheo_buf back = { 0 };
		kheo_refusal why;
		int err;

		frame.p[i] ^= 0x5a;
		err = kheo_frame_read(c, &back, sig, frame.p, frame.len, &why);
		frame.p[i] ^= 0x5a;
		if (err < 0)
			refused++;
		else
			assert_true(back.len == raw.len);
		kheo_buf_free(&back);
	}
	assert_true(refused > 0);
	kheo_codec_free(c);
	kheo_buf_free(&raw);
	kheo_buf_free(&frame);
	kheo_buf_free(&f);
}

static void refuses_window_above_128_kib(void **state)
{
	size_t n = 1u << 20, cap = ZSTD_compressBound(n), z, i;
	uint8_t *src = malloc(n), *packed = malloc(cap);
	kheo_buf f = { 0 };
	kheo_codec *c;
	uint32_t x = 1;

	(void)state;
	for (i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		src[i] = (uint8_t)(x >> 24);
	}
	/* zstd's content size makes the window the whole 1 MiB */
	z = zstd_frame(packed, cap, src, n, 1, 20);
	assert_int_equal(kheo_codec_new(&c, 3), KHEO_OK);
	frame_bytes(&f, "KCS\x01", KHEO_FRAME_F_ZSTD, NULL, n, packed, z);
	expect_read(c, &f, KHEO_EPROTO, KHEO_R_BAD_FRAME);
	kheo_codec_free(c);
	kheo_buf_free(&f);
	free(src);
	free(packed);
}

static void open_refuses_forged_or_altered_changesets(void **state)
{
	kheo_buf raw = { 0 }, frame = { 0 }, back = { 0 };
	uint8_t id[KHEO_ID_SIZE];
	kheo_changeset *cs;
	kheo_refusal why;
	kheo_codec *c;
	size_t text_at;

	(void)state;
	assert_int_equal(kheo_codec_new(&c, 0), KHEO_OK);
	test_encode(&raw, test_sample());
	/* stored uncompressed so the payload bytes can be edited */
	kheo_buf_put(&frame, "KCS\x01\x00", 5);
	kheo_buf_put_varint(&frame, raw.len);
	{
		uint8_t sig[KHEO_SIG_SIZE];
		test_key a;

		test_key_make(&a, 1);
		kheo_changeset_id(id, raw.p, raw.len);
		kheo_changeset_sign(sig, id, a.sk);
		kheo_buf_put(&frame, sig, sizeof(sig));
	}
	kheo_buf_put(&frame, raw.p, raw.len);
	assert_int_equal(kheo_frame_open(c, &cs, id, &back, frame.p,
				 frame.len, NULL), KHEO_OK);
	kheo_changeset_free(cs);

	/* one letter of the model's name changed: the id changes, and the
	 * author's signature no longer covers it */
	for (text_at = 0; memcmp(frame.p + text_at, "nuôi", 5) != 0;)
		text_at++;
	frame.p[text_at] = 'N';
	assert_int_equal(kheo_frame_open(c, &cs, id, &back, frame.p,
				 frame.len, &why), KHEO_EAUTH);
	assert_int_equal(why.reason, KHEO_R_BAD_SIGNATURE);
	assert_null(cs);
	frame.p[text_at] = 'n';

	/* a flipped signature bit */
	frame.p[7] ^= 1;
	assert_int_equal(kheo_frame_open(c, &cs, id, &back, frame.p,
				 frame.len, &why), KHEO_EAUTH);
	assert_int_equal(why.reason, KHEO_R_BAD_SIGNATURE);
	kheo_codec_free(c);
	kheo_buf_free(&raw);
	kheo_buf_free(&frame);
	kheo_buf_free(&back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(small_changeset_is_stored_uncompressed),
		cmocka_unit_test(large_changeset_is_compressed_and_round_trips),
		cmocka_unit_test(dictionary_is_named_by_hash_and_required),
		cmocka_unit_test(refuses_bad_magic_version_and_flags),
		cmocka_unit_test(refuses_declared_sizes_out_of_range),
		cmocka_unit_test(refuses_decompression_bomb),
		cmocka_unit_test(refuses_size_mismatch_short_payload),
		cmocka_unit_test(refuses_bytes_after_the_zstd_frame),
		cmocka_unit_test(refuses_corrupt_zstd),
		cmocka_unit_test(refuses_window_above_128_kib),
		cmocka_unit_test(open_refuses_forged_or_altered_changesets),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
