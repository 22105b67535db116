/*
 * helpers.c - see helpers.h.
 */
#include "helpers.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void test_key_make(test_key *k, uint8_t seed_byte)
{
	uint8_t seed[crypto_sign_SEEDBYTES];

	memset(seed, seed_byte, sizeof(seed));
	assert_int_equal(crypto_sign_seed_keypair(k->pk, k->sk, seed), 0);
}

static test_key key_a, key_b;
static kheo_field put_fields[8];
static kheo_field set_field, add_field, remove_field;
static kheo_opid set_pred[2], remove_pred[1], delete_pred[1];
static kheo_op ops[5];
static kheo_changeset sample;
static const uint8_t photo_hash[32] = {
	0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
	13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
};
static const char name_vi[] = "Mô hình nuôi bò sinh sản";
static const uint8_t blob[3] = { 0x00, 0xff, 0x10 };

const kheo_changeset *test_sample(void)
{
	const uint64_t t0 = (uint64_t)1760000000000ull << 16;
	size_t i;

	if (sodium_init() < 0)
		fail_msg("sodium_init");
	test_key_make(&key_a, 1);
	test_key_make(&key_b, 2);
	memset(&sample, 0, sizeof(sample));
	sample.version = KHEO_CS_VERSION;
	memcpy(sample.author, key_a.pk, KHEO_KEY_SIZE);
	sample.unit = "dak-nong/cu-jut/ea-po";
	sample.schema_version = 1;
	sample.useq = 3;
	memset(sample.prev, 0x11, KHEO_ID_SIZE);
	memset(sample.parents[0], 0x22, KHEO_ID_SIZE);
	memset(sample.parents[1], 0x33, KHEO_ID_SIZE);
	sample.nparents = 2;

	/* put: every value type, names ascending */
	i = 0;
	put_fields[i].name = "beneficiaries";
	put_fields[i++].value = (kheo_value){ .type = KHEO_VAL_INT, .i = 42 };
	put_fields[i].name = "blob";
	put_fields[i++].value = (kheo_value){ .type = KHEO_VAL_BYTES,
		.p = blob, .len = sizeof(blob) };
	put_fields[i].name = "decision_scan";
	put_fields[i++].value = (kheo_value){ .type = KHEO_VAL_HASH,
		.p = photo_hash, .len = 32 };
	put_fields[i].name = "lat";
	put_fields[i++].value = (kheo_value){ .type = KHEO_VAL_REAL,
		.r = 12.345678 };
	put_fields[i].name = "name";
	put_fields[i++].value = (kheo_value){ .type = KHEO_VAL_TEXT,
		.p = (const uint8_t *)name_vi, .len = strlen(name_vi) };
	put_fields[i].name = "owner";
	put_fields[i++].value = (kheo_value){ .type = KHEO_VAL_NULL };
	put_fields[i].name = "verified";
	put_fields[i++].value = (kheo_value){ .type = KHEO_VAL_BOOL, .b = 1 };
	put_fields[i].name = "year";
	put_fields[i++].value = (kheo_value){ .type = KHEO_VAL_INT, .i = -7 };

	memset(ops, 0, sizeof(ops));
	ops[0].kind = KHEO_OP_PUT;
	ops[0].clock = t0;
	ops[0].table = "model";
	memset(ops[0].record, 0xa1, KHEO_RECORD_SIZE);
	ops[0].fields = put_fields;
	ops[0].nfields = i;

	set_field.name = "status";
	set_field.value = (kheo_value){ .type = KHEO_VAL_TEXT,
		.p = (const uint8_t *)"review", .len = 6 };
	set_pred[0] = (kheo_opid){ t0 - 5, key_b.pk };
	set_pred[1] = (kheo_opid){ t0, key_a.pk };
	ops[1].kind = KHEO_OP_SET;
	ops[1].clock = t0 + 1;
	ops[1].table = "model";
	memset(ops[1].record, 0xa1, KHEO_RECORD_SIZE);
	ops[1].fields = &set_field;
	ops[1].nfields = 1;
	ops[1].pred = set_pred;
	ops[1].npred = 2;

	add_field.name = "tags";
	add_field.value = (kheo_value){ .type = KHEO_VAL_TEXT,
		.p = (const uint8_t *)"cà phê", .len = strlen("cà phê") };
	ops[2].kind = KHEO_OP_ADD;
	ops[2].clock = t0 + 2;
	ops[2].table = "model";
	memset(ops[2].record, 0xa1, KHEO_RECORD_SIZE);
	ops[2].fields = &add_field;
	ops[2].nfields = 1;

	remove_field.name = "tags";
	remove_field.value = (kheo_value){ .type = KHEO_VAL_TEXT,
		.p = (const uint8_t *)"cũ", .len = strlen("cũ") };
	remove_pred[0] = (kheo_opid){ t0 - 100, key_b.pk };
	ops[3].kind = KHEO_OP_REMOVE;
	ops[3].clock = t0 + 3;
	ops[3].table = "model";
	memset(ops[3].record, 0xa1, KHEO_RECORD_SIZE);
	ops[3].fields = &remove_field;
	ops[3].nfields = 1;
	ops[3].pred = remove_pred;
	ops[3].npred = 1;

	delete_pred[0] = (kheo_opid){ t0 - 9, key_b.pk };
	ops[4].kind = KHEO_OP_DELETE;
	ops[4].clock = t0 + 70000;
	ops[4].table = "model";
	memset(ops[4].record, 0xb2, KHEO_RECORD_SIZE);
	ops[4].pred = delete_pred;
	ops[4].npred = 1;

	sample.ops = ops;
	sample.nops = 5;
	return &sample;
}

void test_encode(kheo_buf *out, const kheo_changeset *cs)
{
	kheo_refusal why = { 0 };
	int err = kheo_changeset_encode(out, cs, &why);

	if (err != KHEO_OK)
		fail_msg("encode: %d %s: %s", err, kheo_reason_name(why.reason),
			why.msg);
}

void test_frame(kheo_codec *c, kheo_buf *out, const uint8_t *raw, size_t len)
{
	uint8_t id[KHEO_ID_SIZE], sig[KHEO_SIG_SIZE];
	test_key k;

	test_key_make(&k, 1);
	kheo_changeset_id(id, raw, len);
	kheo_changeset_sign(sig, id, k.sk);
	assert_int_equal(kheo_frame_write(c, out, raw, len, sig), KHEO_OK);
}

uint8_t *test_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0 && (p = malloc((size_t)n + 1)) &&
	    fread(p, 1, (size_t)n, f) == (size_t)n) {
		*len = (size_t)n;
		p[n] = 0;
	} else {
		free(p);
		p = NULL;
	}
	fclose(f);
	return p;
}

const char *test_vector_path(const char *name)
{
	static char path[1024];
	const char *dir = getenv("KHEO_VECTORS");

	snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/vectors",
		name);
	return path;
}
