/*
 * test_changeset.c - the canonical changeset encoding: round trips for every
 * op and value type, and one test per rule the decoder enforces, each
 * proving the specific refusal reason.
 *
 * Refused inputs are assembled byte by byte (the encoder would never write
 * them), from a minimal valid changeset: one delete op, no parents, no keys.
 */
#include "helpers.h"
#include "alloc.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static const uint64_t T0 = (uint64_t)1760000000000ull << 16;

/* ------------------------------------------------------------ round trips */

static void assert_value_equal(const kheo_value *a, const kheo_value *b)
{
	assert_int_equal(a->type, b->type);
	switch (a->type) {
	case KHEO_VAL_INT:
		assert_true(a->i == b->i);
		break;
	case KHEO_VAL_REAL:
		assert_memory_equal(&a->r, &b->r, sizeof(double));
		break;
	case KHEO_VAL_BOOL:
		assert_int_equal(a->b, b->b);
		break;
	case KHEO_VAL_TEXT:
	case KHEO_VAL_BYTES:
	case KHEO_VAL_HASH:
		assert_int_equal(a->len, b->len);
		assert_memory_equal(a->p, b->p, a->len);
		break;
	case KHEO_VAL_NULL:
		break;
	}
}

static void assert_changeset_equal(const kheo_changeset *a,
	const kheo_changeset *b)
{
	size_t i, j;

	assert_int_equal(a->version, b->version);
	assert_memory_equal(a->author, b->author, KHEO_KEY_SIZE);
	assert_string_equal(a->unit, b->unit);
	assert_int_equal(a->schema_version, b->schema_version);
	assert_true(a->useq == b->useq);
	if (a->useq > 1)
		assert_memory_equal(a->prev, b->prev, KHEO_ID_SIZE);
	assert_int_equal(a->nparents, b->nparents);
	assert_memory_equal(a->parents, b->parents,
		a->nparents * KHEO_ID_SIZE);
	assert_int_equal(a->nops, b->nops);
	for (i = 0; i < a->nops; i++) {
		const kheo_op *x = &a->ops[i], *y = &b->ops[i];

		assert_int_equal(x->kind, y->kind);
		assert_true(x->clock == y->clock);
		assert_memory_equal(x->record, y->record, KHEO_RECORD_SIZE);
		assert_int_equal(x->nfields, y->nfields);
		for (j = 0; j < x->nfields; j++) {
			assert_string_equal(x->fields[j].name,
				y->fields[j].name);
			assert_value_equal(&x->fields[j].value,
				&y->fields[j].value);
		}
		assert_int_equal(x->npred, y->npred);
		for (j = 0; j < x->npred; j++)
			assert_int_equal(kheo_opid_cmp(&x->pred[j],
						 &y->pred[j]), 0);
	}
}

static void roundtrip_every_op_kind_and_value_type(void **state)
{
	const kheo_changeset *cs = test_sample();
	kheo_buf raw = { 0 }, again = { 0 };
	kheo_changeset *back;
	kheo_refusal why;
	int kinds = 0, types = 0;
	size_t i, j;

	(void)state;
	/* the sample really does cover everything */
	for (i = 0; i < cs->nops; i++) {
		kinds |= 1 << cs->ops[i].kind;
		for (j = 0; j < cs->ops[i].nfields; j++)
			types |= 1 << cs->ops[i].fields[j].value.type;
	}
	assert_int_equal(kinds, 0x3e);
	assert_int_equal(types, 0x7f);

	test_encode(&raw, cs);
	assert_int_equal(kheo_changeset_decode(&back, raw.p, raw.len, &why),
		KHEO_OK);
	assert_changeset_equal(cs, back);
	assert_true(back->clock_min == cs->ops[0].clock);
	assert_true(back->clock_max == cs->ops[cs->nops - 1].clock);
	/* decoded text is NUL-terminated and owned by the changeset */
	assert_string_equal((const char *)back->ops[0].fields[4].value.p,
		"Mô hình nuôi bò sinh sản");

	/* canonical: re-encoding the decoded changeset gives the same bytes */
	test_encode(&again, back);
	assert_int_equal(raw.len, again.len);
	assert_memory_equal(raw.p, again.p, raw.len);

	kheo_changeset_free(back);
	kheo_buf_free(&raw);
	kheo_buf_free(&again);
}

static void roundtrip_extreme_values(void **state)
{
	static const int64_t ints[] = { 0, 1, -1, 63, -64, 64, INT64_MAX,
		INT64_MIN };
	static const double reals[] = { 0.0, -0.0, 1e-310, -1.5e300,
		108.123456 };
	kheo_changeset cs = *test_sample();
	kheo_field f = { .name = "x" };
	kheo_op op = { .kind = KHEO_OP_SET, .clock = UINT64_MAX,
		.table = "model", .fields = &f, .nfields = 1 };
	size_t i;

	(void)state;
	cs.ops = &op;
	cs.nops = 1;
	cs.useq = UINT64_MAX;
	cs.schema_version = UINT32_MAX;
	for (i = 0; i < 13; i++) {
		kheo_buf raw = { 0 };
		kheo_changeset *back;

		if (i < 8)
			f.value = (kheo_value){ .type = KHEO_VAL_INT,
				.i = ints[i] };
		else
			f.value = (kheo_value){ .type = KHEO_VAL_REAL,
				.r = reals[i - 8] };
		test_encode(&raw, &cs);
		assert_int_equal(kheo_changeset_decode(&back, raw.p, raw.len,
					 NULL), KHEO_OK);
		assert_changeset_equal(&cs, back);
		kheo_changeset_free(back);
		kheo_buf_free(&raw);
	}
}

static void author_keys_are_interned_once(void **state)
{
	kheo_changeset cs = *test_sample();
	kheo_opid pred[3];
	kheo_op ops[3];
	kheo_buf one = { 0 }, three = { 0 };
	size_t i;

	(void)state;
	/* three ops naming the same foreign key cost 32 key bytes once */
	for (i = 0; i < 3; i++) {
		ops[i] = cs.ops[4];
		ops[i].clock = T0 + 10 + i;
		pred[i] = (kheo_opid){ T0 + i, cs.ops[1].pred[0].key };
		ops[i].pred = &pred[i];
		ops[i].npred = 1;
	}
	cs.ops = ops;
	cs.nops = 1;
	test_encode(&one, &cs);
	cs.nops = 3;
	test_encode(&three, &cs);
	/* each extra delete: kind, clock delta, table, record, npred, pred */
	assert_int_equal(three.len - one.len, 2 * (1 + 1 + 6 + 16 + 1 + 2));
	kheo_buf_free(&one);
	kheo_buf_free(&three);
}

static void id_is_blake2b_of_canonical_bytes(void **state)
{
	uint8_t id[KHEO_ID_SIZE], expect[KHEO_ID_SIZE];
	kheo_buf raw = { 0 };

	(void)state;
	test_encode(&raw, test_sample());
	kheo_changeset_id(id, raw.p, raw.len);
	crypto_generichash(expect, sizeof(expect), raw.p, raw.len, NULL, 0);
	assert_memory_equal(id, expect, KHEO_ID_SIZE);
	kheo_buf_free(&raw);
}

static void signature_covers_context_and_id(void **state)
{
	uint8_t id[KHEO_ID_SIZE], sig[KHEO_SIG_SIZE];
	uint8_t msg[17 + KHEO_ID_SIZE];
	kheo_refusal why;
	test_key a, b;

	(void)state;
	test_key_make(&a, 1);
	test_key_make(&b, 2);
	memset(id, 7, sizeof(id));
	kheo_changeset_sign(sig, id, a.sk);
	assert_int_equal(kheo_changeset_verify(sig, id, a.pk, &why), KHEO_OK);

	/* the signed message is exactly "kheo/changeset/v1" || id */
	memcpy(msg, "kheo/changeset/v1", 17);
	memcpy(msg + 17, id, KHEO_ID_SIZE);
	assert_int_equal(crypto_sign_verify_detached(sig, msg, sizeof(msg),
				 a.pk), 0);

	/* another key, another id, a signature over the bare id: refused */
	assert_int_equal(kheo_changeset_verify(sig, id, b.pk, &why),
		KHEO_EAUTH);
	assert_int_equal(why.reason, KHEO_R_BAD_SIGNATURE);
	id[0] ^= 1;
	assert_int_equal(kheo_changeset_verify(sig, id, a.pk, &why),
		KHEO_EAUTH);
	id[0] ^= 1;
	crypto_sign_detached(sig, NULL, id, KHEO_ID_SIZE, a.sk);
	assert_int_equal(kheo_changeset_verify(sig, id, a.pk, &why),
		KHEO_EAUTH);
}

static void encoder_refuses_what_decoder_would(void **state)
{
	kheo_changeset cs = *test_sample();
	kheo_op ops[5];
	kheo_field fields[8];
	kheo_buf out = { 0 };
	kheo_refusal why;

	(void)state;
	memcpy(ops, cs.ops, sizeof(ops));
	memcpy(fields, cs.ops[0].fields, sizeof(fields));
	cs.ops = ops;
	ops[0].fields = fields;

	ops[1].clock = ops[0].clock; /* clocks must rise */
	assert_int_equal(kheo_changeset_encode(&out, &cs, &why), KHEO_EPROTO);
	assert_int_equal(why.reason, KHEO_R_BAD_CLOCK);
	ops[1].clock = ops[0].clock + 1;

	fields[4].value.p = (const uint8_t *)"\xc3\x28";
	fields[4].value.len = 2;
	assert_int_equal(kheo_changeset_encode(&out, &cs, &why), KHEO_EPROTO);
	assert_int_equal(why.reason, KHEO_R_BAD_UTF8);
	assert_int_equal(out.len, 0); /* nothing half-written */
	fields[4] = cs.ops[0].fields[4];
	memcpy(fields, test_sample()->ops[0].fields, sizeof(fields));

	cs.unit = "Dak Nong";
	assert_int_equal(kheo_changeset_encode(&out, &cs, &why), KHEO_EPROTO);
	assert_int_equal(why.reason, KHEO_R_BAD_UNIT);
	kheo_buf_free(&out);
}

/* ------------------------------------------------- refusals, byte by byte */

static test_key author;

/* Header of a minimal changeset: useq 1, no parents, no keys. */
static void header(kheo_buf *b, uint64_t nops)
{
	test_key_make(&author, 1);
	kheo_buf_put_varint(b, 1);                 /* version */
	kheo_buf_put(b, author.pk, 32);            /* author */
	kheo_buf_put_str(b, "dak-nong", 8);        /* unit */
	kheo_buf_put_varint(b, 1);                 /* schema version */
	kheo_buf_put_varint(b, 1);                 /* useq */
	kheo_buf_put_varint(b, 0);                 /* parents */
	kheo_buf_put_varint(b, T0);                /* clock_min */
	kheo_buf_put_varint(b, nops - 1);          /* clock_span */
	kheo_buf_put_varint(b, 0);                 /* keys */
	kheo_buf_put_varint(b, nops);              /* ops */
}

/* A delete op one clock tick after the one before (delta 0 for the first). */
static void delete_op(kheo_buf *b, int first)
{
	static const uint8_t rec[16] = { 1 };

	kheo_buf_put_u8(b, KHEO_OP_DELETE);
	kheo_buf_put_varint(b, first ? 0 : 1);
	kheo_buf_put_str(b, "model", 5);
	kheo_buf_put(b, rec, 16);
	kheo_buf_put_varint(b, 0); /* pred */
}

/* A set op of field `name` whose value bytes are given raw. */
static void set_op_raw(kheo_buf *b, const char *name, const void *val,
	size_t vlen)
{
	static const uint8_t rec[16] = { 2 };

	kheo_buf_put_u8(b, KHEO_OP_SET);
	kheo_buf_put_varint(b, 0);
	kheo_buf_put_str(b, "model", 5);
	kheo_buf_put(b, rec, 16);
	kheo_buf_put_str(b, name, strlen(name));
	kheo_buf_put(b, val, vlen);
	kheo_buf_put_varint(b, 0);
}

static void expect(const kheo_buf *b, int code, int reason)
{
	kheo_changeset *cs = (kheo_changeset *)1;
	kheo_refusal why = { 0 };
	int err = kheo_changeset_decode(&cs, b->p, b->len, &why);

	if (err != code || why.reason != reason)
		fail_msg("expected %s/%s, got %s/%s: %s",
			kheo_error_name(code), kheo_reason_name(reason),
			kheo_error_name(err), kheo_reason_name(why.reason),
			why.msg);
	assert_null(cs);
	assert_true(why.msg[0] != '\0');
}

static void minimal_changeset_is_accepted(void **state)
{
	kheo_buf b = { 0 };
	kheo_changeset *cs;

	(void)state;
	header(&b, 2);
	delete_op(&b, 1);
	delete_op(&b, 0);
	assert_int_equal(kheo_changeset_decode(&cs, b.p, b.len, NULL),
		KHEO_OK);
	assert_int_equal(cs->nops, 2);
	kheo_changeset_free(cs);
	kheo_buf_free(&b);
}

static void refuses_overlong_varint(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	kheo_buf_put(&b, "\x81\x00", 2); /* version 1, in two bytes */
	expect(&b, KHEO_EPROTO, KHEO_R_OVERLONG_VARINT);
	kheo_buf_free(&b);
}

static void refuses_varint_overflow(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	kheo_buf_put(&b, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 10);
	expect(&b, KHEO_EPROTO, KHEO_R_VARINT_OVERFLOW);
	kheo_buf_reset(&b);
	kheo_buf_put(&b, "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 11);
	expect(&b, KHEO_EPROTO, KHEO_R_VARINT_OVERFLOW);
	kheo_buf_free(&b);
}

static void refuses_trailing_bytes(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	header(&b, 1);
	delete_op(&b, 1);
	kheo_buf_put_u8(&b, 0);
	expect(&b, KHEO_EPROTO, KHEO_R_TRAILING_BYTES);
	kheo_buf_free(&b);
}

static void refuses_every_truncation(void **state)
{
	kheo_buf raw = { 0 };
	size_t n;

	(void)state;
	test_encode(&raw, test_sample());
	for (n = 0; n < raw.len; n++) {
		kheo_changeset *cs;
		kheo_refusal why = { 0 };

		assert_int_equal(kheo_changeset_decode(&cs, raw.p, n, &why),
			KHEO_EPROTO);
		assert_null(cs);
		/* a cut can land where a count or a clock reads short */
		assert_true(why.reason == KHEO_R_TRUNCATED ||
			why.reason == KHEO_R_BAD_CLOCK);
	}
	kheo_buf_free(&raw);
}

static void refuses_unknown_version(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	kheo_buf_put_varint(&b, 2);
	kheo_buf_put(&b, author.pk, 32);
	expect(&b, KHEO_EUNSUPPORTED, KHEO_R_BAD_VERSION);
	kheo_buf_free(&b);
}

static void refuses_unknown_op_kind(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	header(&b, 1);
	delete_op(&b, 1);
	b.p[b.len - 25] = 6; /* kind byte of the op */
	expect(&b, KHEO_EPROTO, KHEO_R_BAD_ENUM);
	kheo_buf_free(&b);
}

static void refuses_unknown_value_tag(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	header(&b, 1);
	set_op_raw(&b, "x", "\x08", 1);
	expect(&b, KHEO_EPROTO, KHEO_R_BAD_ENUM);
	kheo_buf_free(&b);
}

static void put_op(kheo_buf *b, const char *n1, const char *n2)
{
	static const uint8_t rec[16] = { 3 };

	kheo_buf_put_u8(b, KHEO_OP_PUT);
	kheo_buf_put_varint(b, 0);
	kheo_buf_put_str(b, "model", 5);
	kheo_buf_put(b, rec, 16);
	kheo_buf_put_varint(b, 2);
	kheo_buf_put_str(b, n1, strlen(n1));
	kheo_buf_put_u8(b, 0);
	kheo_buf_put_str(b, n2, strlen(n2));
	kheo_buf_put_u8(b, 0);
	kheo_buf_put_varint(b, 0);
}

static void refuses_unsorted_fields(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	header(&b, 1);
	put_op(&b, "name", "kind");
	expect(&b, KHEO_EPROTO, KHEO_R_UNSORTED);
	kheo_buf_free(&b);
}

static void refuses_duplicate_fields(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	header(&b, 1);
	put_op(&b, "name", "name");
	expect(&b, KHEO_EPROTO, KHEO_R_DUPLICATE);
	kheo_buf_free(&b);
}

/* A changeset with `nparents` parents of the given fill bytes. */
static void parents_changeset(kheo_buf *b, uint64_t useq, uint8_t prev,
	const uint8_t *fills, size_t n)
{
	uint8_t id[32];
	size_t i;

	test_key_make(&author, 1);
	kheo_buf_put_varint(b, 1);
	kheo_buf_put(b, author.pk, 32);
	kheo_buf_put_str(b, "dak-nong", 8);
	kheo_buf_put_varint(b, 1);
	kheo_buf_put_varint(b, useq);
	if (useq > 1) {
		memset(id, prev, 32);
		kheo_buf_put(b, id, 32);
	}
	kheo_buf_put_varint(b, n);
	for (i = 0; i < n; i++) {
		memset(id, fills[i], 32);
		kheo_buf_put(b, id, 32);
	}
	kheo_buf_put_varint(b, T0);
	kheo_buf_put_varint(b, 0);
	kheo_buf_put_varint(b, 0);
	kheo_buf_put_varint(b, 1);
	delete_op(b, 1);
}

static void refuses_bad_parents(void **state)
{
	static const uint8_t nine[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	kheo_buf b = { 0 };
	kheo_changeset *cs;

	(void)state;
	parents_changeset(&b, 2, 0x10, (const uint8_t *)"\x01\x02", 2);
	assert_int_equal(kheo_changeset_decode(&cs, b.p, b.len, NULL),
		KHEO_OK);
	kheo_changeset_free(cs);
	kheo_buf_reset(&b);
	parents_changeset(&b, 2, 0x10, (const uint8_t *)"\x02\x01", 2);
	expect(&b, KHEO_EPROTO, KHEO_R_UNSORTED);
	kheo_buf_reset(&b);
	parents_changeset(&b, 2, 0x10, (const uint8_t *)"\x02\x02", 2);
	expect(&b, KHEO_EPROTO, KHEO_R_DUPLICATE);
	kheo_buf_reset(&b);
	parents_changeset(&b, 2, 0x10, (const uint8_t *)"\x10", 1);
	expect(&b, KHEO_EPROTO, KHEO_R_DUPLICATE); /* parent == previous */
	kheo_buf_reset(&b);
	parents_changeset(&b, 2, 0x10, nine, 9);
	expect(&b, KHEO_ELIMIT, KHEO_R_TOO_MANY);
	kheo_buf_free(&b);
}

static void refuses_useq_zero(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	parents_changeset(&b, 0, 0, NULL, 0);
	expect(&b, KHEO_EPROTO, KHEO_R_BAD_CHAIN);
	kheo_buf_free(&b);
}

static void refuses_invalid_utf8(void **state)
{
	static const char *const bad[] = {
		"\x03\x02\xc3\x28",         /* bad continuation */
		"\x03\x02\xc0\x80",         /* overlong NUL */
		"\x03\x03\xed\xa0\x80",     /* surrogate U+D800 */
		"\x03\x04\xf4\x90\x80\x80", /* above U+10FFFF */
		"\x03\x01\x00",             /* NUL inside text */
		"\x03\x01\xc3",             /* cut sequence */
	};
	static const size_t len[] = { 4, 4, 5, 6, 3, 3 };
	size_t i;

	(void)state;
	for (i = 0; i < 6; i++) {
		kheo_buf b = { 0 };

		header(&b, 1);
		set_op_raw(&b, "name", bad[i], len[i]);
		expect(&b, KHEO_EPROTO, KHEO_R_BAD_UTF8);
		kheo_buf_free(&b);
	}
}

static void accepts_nfd_and_nfc_text_as_bytes(void **state)
{
	/* proto keeps text as sent; NFC is client-core's job */
	kheo_buf b = { 0 };
	kheo_changeset *cs;

	(void)state;
	header(&b, 1);
	set_op_raw(&b, "name", "\x03\x03\x61\xcc\x81", 5); /* a + U+0301 */
	assert_int_equal(kheo_changeset_decode(&cs, b.p, b.len, NULL),
		KHEO_OK);
	kheo_changeset_free(cs);
	kheo_buf_free(&b);
}

static void refuses_bad_field_name(void **state)
{
	static const char *const bad[] = { "Name", "1x", "a-b", "tên" };
	size_t i;

	(void)state;
	for (i = 0; i < 4; i++) {
		kheo_buf b = { 0 };

		header(&b, 1);
		set_op_raw(&b, bad[i], "\x00", 1);
		expect(&b, KHEO_EPROTO, KHEO_R_BAD_NAME);
		kheo_buf_free(&b);
	}
}

static void refuses_bad_table_name(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	header(&b, 1);
	delete_op(&b, 1);
	b.p[b.len - 22] = 'M'; /* "model" -> "Model" */
	expect(&b, KHEO_EPROTO, KHEO_R_BAD_NAME);
	kheo_buf_free(&b);
}

static void refuses_bad_unit(void **state)
{
	static const char *const bad[] = { "Dak-Nong", "dak nong", "a//b",
		"-a", "a-", "a/", "", "_sys/x", "a--b" };
	size_t i;

	(void)state;
	assert_true(kheo_unit_valid("_sys", 4));
	assert_true(kheo_unit_valid("dak-nong/cu-jut/ea-po/bon-u1", 28));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		kheo_buf b = { 0 };

		kheo_buf_put_varint(&b, 1);
		kheo_buf_put(&b, author.pk, 32);
		kheo_buf_put_str(&b, bad[i], strlen(bad[i]));
		expect(&b, KHEO_EPROTO, KHEO_R_BAD_UNIT);
		kheo_buf_free(&b);
	}
}

static void refuses_non_finite_real(void **state)
{
	uint8_t nan[9] = { 2, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f };
	uint8_t inf[9] = { 2, 0, 0, 0, 0, 0, 0, 0xf0, 0x7f };
	kheo_buf b = { 0 };

	(void)state;
	header(&b, 1);
	set_op_raw(&b, "lat", nan, 9);
	expect(&b, KHEO_EPROTO, KHEO_R_BAD_REAL);
	kheo_buf_reset(&b);
	header(&b, 1);
	set_op_raw(&b, "lat", inf, 9);
	expect(&b, KHEO_EPROTO, KHEO_R_BAD_REAL);
	kheo_buf_free(&b);
}

static void refuses_counts_above_caps(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	header(&b, KHEO_CS_OPS_MAX + 1);
	expect(&b, KHEO_ELIMIT, KHEO_R_TOO_MANY);

	/* a count the remaining bytes cannot hold: refused before allocating */
	kheo_buf_reset(&b);
	header(&b, 1000);
	delete_op(&b, 1);
	expect(&b, KHEO_EPROTO, KHEO_R_TRUNCATED);

	kheo_buf_reset(&b);
	header(&b, 1);
	kheo_buf_put_u8(&b, KHEO_OP_PUT);
	kheo_buf_put_varint(&b, 0);
	kheo_buf_put_str(&b, "model", 5);
	kheo_buf_put(&b, "0123456789abcdef", 16);
	kheo_buf_put_varint(&b, KHEO_OP_FIELDS_MAX + 1);
	expect(&b, KHEO_ELIMIT, KHEO_R_TOO_MANY);

	kheo_buf_reset(&b);
	header(&b, 1);
	kheo_buf_put_u8(&b, KHEO_OP_DELETE);
	kheo_buf_put_varint(&b, 0);
	kheo_buf_put_str(&b, "model", 5);
	kheo_buf_put(&b, "0123456789abcdef", 16);
	kheo_buf_put_varint(&b, KHEO_OP_PRED_MAX + 1);
	expect(&b, KHEO_ELIMIT, KHEO_R_TOO_MANY);
	kheo_buf_free(&b);
}

static void refuses_sizes_above_caps(void **state)
{
	kheo_buf b = { 0 };
	uint8_t big[11];
	kheo_changeset *cs;
	kheo_refusal why;

	(void)state;
	header(&b, 1);
	big[0] = 3; /* text */
	set_op_raw(&b, "name", big,
		1 + kheo_varint_encode(big + 1, KHEO_VALUE_MAX + 1));
	expect(&b, KHEO_ELIMIT, KHEO_R_TOO_BIG);

	/* the whole changeset: refused on its length alone */
	assert_int_equal(kheo_changeset_decode(&cs, b.p, KHEO_CS_RAW_MAX + 1,
				 &why), KHEO_ELIMIT);
	assert_int_equal(why.reason, KHEO_R_TOO_BIG);
	kheo_buf_free(&b);
}

static void refuses_bad_clocks(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	/* first op not at clock_min */
	header(&b, 1);
	delete_op(&b, 0);
	expect(&b, KHEO_EPROTO, KHEO_R_BAD_CLOCK);

	/* second op at the same clock */
	kheo_buf_reset(&b);
	header(&b, 2);
	delete_op(&b, 1);
	delete_op(&b, 1);
	expect(&b, KHEO_EPROTO, KHEO_R_BAD_CLOCK);

	/* last op short of clock_max (span 1, one op) */
	kheo_buf_reset(&b);
	header(&b, 2);
	b.p[b.len - 1] = 1; /* nops 1 but span stays 1 */
	delete_op(&b, 1);
	expect(&b, KHEO_EPROTO, KHEO_R_BAD_CLOCK);

	/* a pred not older than its op (back = 0) */
	kheo_buf_reset(&b);
	header(&b, 1);
	kheo_buf_put_u8(&b, KHEO_OP_DELETE);
	kheo_buf_put_varint(&b, 0);
	kheo_buf_put_str(&b, "model", 5);
	kheo_buf_put(&b, "0123456789abcdef", 16);
	kheo_buf_put_varint(&b, 1);
	kheo_buf_put_varint(&b, 0);
	kheo_buf_put_varint(&b, 0);
	expect(&b, KHEO_EPROTO, KHEO_R_BAD_CLOCK);
	kheo_buf_free(&b);
}

/* One delete whose preds are (back, key index) pairs, with nkeys keys. */
static void pred_changeset(kheo_buf *b, const uint8_t *keyfills,
	size_t nkeys, const uint64_t *pairs, size_t npred)
{
	uint8_t key[32];
	size_t i;

	test_key_make(&author, 1);
	kheo_buf_put_varint(b, 1);
	kheo_buf_put(b, author.pk, 32);
	kheo_buf_put_str(b, "dak-nong", 8);
	kheo_buf_put_varint(b, 1);
	kheo_buf_put_varint(b, 1);
	kheo_buf_put_varint(b, 0);
	kheo_buf_put_varint(b, T0);
	kheo_buf_put_varint(b, 0);
	kheo_buf_put_varint(b, nkeys);
	for (i = 0; i < nkeys; i++) {
		memset(key, keyfills[i], 32);
		kheo_buf_put(b, key, 32);
	}
	kheo_buf_put_varint(b, 1);
	kheo_buf_put_u8(b, KHEO_OP_DELETE);
	kheo_buf_put_varint(b, 0);
	kheo_buf_put_str(b, "model", 5);
	kheo_buf_put(b, "0123456789abcdef", 16);
	kheo_buf_put_varint(b, npred);
	for (i = 0; i < npred; i++) {
		kheo_buf_put_varint(b, pairs[2 * i]);
		kheo_buf_put_varint(b, pairs[2 * i + 1]);
	}
}

static void refuses_bad_pred_lists(void **state)
{
	kheo_buf b = { 0 };
	kheo_changeset *cs;

	(void)state;
	{ /* valid: older clock first (larger back), then by key */
		const uint64_t p[] = { 9, 1, 5, 1, 5, 2 };

		pred_changeset(&b, (const uint8_t *)"\x05\x06", 2, p, 3);
		assert_int_equal(kheo_changeset_decode(&cs, b.p, b.len, NULL),
			KHEO_OK);
		kheo_changeset_free(cs);
	}
	{ /* unsorted by clock */
		const uint64_t p[] = { 5, 1, 9, 1 };

		kheo_buf_reset(&b);
		pred_changeset(&b, (const uint8_t *)"\x05", 1, p, 2);
		expect(&b, KHEO_EPROTO, KHEO_R_UNSORTED);
	}
	{ /* same clock, keys out of order */
		const uint64_t p[] = { 5, 2, 5, 1 };

		kheo_buf_reset(&b);
		pred_changeset(&b, (const uint8_t *)"\x05\x06", 2, p, 2);
		expect(&b, KHEO_EPROTO, KHEO_R_UNSORTED);
	}
	{ /* the same op id twice */
		const uint64_t p[] = { 5, 1, 5, 1 };

		kheo_buf_reset(&b);
		pred_changeset(&b, (const uint8_t *)"\x05", 1, p, 2);
		expect(&b, KHEO_EPROTO, KHEO_R_DUPLICATE);
	}
	{ /* a key index past the table */
		const uint64_t p[] = { 5, 2 };

		kheo_buf_reset(&b);
		pred_changeset(&b, (const uint8_t *)"\x05", 1, p, 1);
		expect(&b, KHEO_EPROTO, KHEO_R_BAD_KEY_INDEX);
	}
	{ /* a key nobody names */
		const uint64_t p[] = { 5, 1 };

		kheo_buf_reset(&b);
		pred_changeset(&b, (const uint8_t *)"\x05\x06", 2, p, 1);
		expect(&b, KHEO_EPROTO, KHEO_R_UNUSED_KEY);
	}
	{ /* keys unsorted, and a key equal to the author's */
		const uint64_t p[] = { 5, 1, 5, 2 };

		kheo_buf_reset(&b);
		pred_changeset(&b, (const uint8_t *)"\x06\x05", 2, p, 2);
		expect(&b, KHEO_EPROTO, KHEO_R_UNSORTED);
	}
	kheo_buf_free(&b);
}

static void refuses_key_equal_to_author(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	test_key_make(&author, 1);
	kheo_buf_put_varint(&b, 1);
	kheo_buf_put(&b, author.pk, 32);
	kheo_buf_put_str(&b, "dak-nong", 8);
	kheo_buf_put_varint(&b, 1);
	kheo_buf_put_varint(&b, 1);
	kheo_buf_put_varint(&b, 0);
	kheo_buf_put_varint(&b, T0);
	kheo_buf_put_varint(&b, 0);
	kheo_buf_put_varint(&b, 1);
	kheo_buf_put(&b, author.pk, 32);
	expect(&b, KHEO_EPROTO, KHEO_R_DUPLICATE);
	kheo_buf_free(&b);
}

static void refuses_empty_changeset(void **state)
{
	kheo_buf b = { 0 };

	(void)state;
	header(&b, 1);
	b.p[b.len - 1] = 0; /* nops */
	expect(&b, KHEO_EPROTO, KHEO_R_EMPTY);
	kheo_buf_free(&b);
}

/* --------------------------------------------------- allocation failures */

static void every_allocation_failure_is_reported(void **state)
{
	kheo_buf raw = { 0 };
	long nth;
	int failures = 0;

	(void)state;
	test_encode(&raw, test_sample());
	for (nth = 1;; nth++) {
		kheo_changeset *cs;
		int err;

		kheo__fault_set(nth, 1);
		err = kheo_changeset_decode(&cs, raw.p, raw.len, NULL);
		kheo__fault_set(0, 0);
		if (err == KHEO_OK) {
			kheo_changeset_free(cs);
			break;
		}
		assert_int_equal(err, KHEO_ENOMEM);
		assert_null(cs);
		failures++;
	}
	assert_true(failures >= 2);

	for (nth = 1;; nth++) {
		kheo_buf out = { 0 };
		int err;

		kheo__fault_set(nth, 1);
		err = kheo_changeset_encode(&out, test_sample(), NULL);
		kheo__fault_set(0, 0);
		kheo_buf_free(&out);
		if (err == KHEO_OK)
			break;
		assert_int_equal(err, KHEO_ENOMEM);
	}
	kheo_buf_free(&raw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(roundtrip_every_op_kind_and_value_type),
		cmocka_unit_test(roundtrip_extreme_values),
		cmocka_unit_test(author_keys_are_interned_once),
		cmocka_unit_test(id_is_blake2b_of_canonical_bytes),
		cmocka_unit_test(signature_covers_context_and_id),
		cmocka_unit_test(encoder_refuses_what_decoder_would),
		cmocka_unit_test(minimal_changeset_is_accepted),
		cmocka_unit_test(refuses_overlong_varint),
		cmocka_unit_test(refuses_varint_overflow),
		cmocka_unit_test(refuses_trailing_bytes),
		cmocka_unit_test(refuses_every_truncation),
		cmocka_unit_test(refuses_unknown_version),
		cmocka_unit_test(refuses_unknown_op_kind),
		cmocka_unit_test(refuses_unknown_value_tag),
		cmocka_unit_test(refuses_unsorted_fields),
		cmocka_unit_test(refuses_duplicate_fields),
		cmocka_unit_test(refuses_bad_parents),
		cmocka_unit_test(refuses_useq_zero),
		cmocka_unit_test(refuses_invalid_utf8),
		cmocka_unit_test(accepts_nfd_and_nfc_text_as_bytes),
		cmocka_unit_test(refuses_bad_field_name),
		cmocka_unit_test(refuses_bad_table_name),
		cmocka_unit_test(refuses_bad_unit),
		cmocka_unit_test(refuses_non_finite_real),
		cmocka_unit_test(refuses_counts_above_caps),
		cmocka_unit_test(refuses_sizes_above_caps),
		cmocka_unit_test(refuses_bad_clocks),
		cmocka_unit_test(refuses_bad_pred_lists),
		cmocka_unit_test(refuses_key_equal_to_author),
		cmocka_unit_test(refuses_empty_changeset),
		cmocka_unit_test(every_allocation_failure_is_reported),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("changeset", tests, NULL, NULL);
}
