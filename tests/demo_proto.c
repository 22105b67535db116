/*
 * demo_proto.c - what `make demo` runs until the multi-node demo exists:
 * one changeset's round trip through proto/, printed step by step.
 *
 * A village officer's device registers a model; the changeset is encoded,
 * hashed, signed and framed as it would be stored and sent; a hub opens
 * it; then a forged copy is refused with its reason.
 */
#include "proto.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

static void show(const char *label, const uint8_t *p, size_t n)
{
	char hex[2 * KHEO_ID_SIZE + 1];

	kheo_hex(hex, p, n < KHEO_ID_SIZE ? n : KHEO_ID_SIZE);
	printf("  %-22s %s\n", label, hex);
}

int main(void)
{
	static const char name[] = "Mô hình nuôi bò sinh sản tại buôn Ea Pô";
	static const char desc[] =
		"Mô hình được triển khai từ năm 2023 với sự tham gia của 42 hộ "
		"gia đình. Đồng bào dân tộc thiểu số tích cực hưởng ứng, đoàn "
		"kết giúp nhau. Thu nhập bình quân của các hộ tham gia tăng.";
	uint8_t pk[KHEO_KEY_SIZE], sk[KHEO_SECRET_SIZE];
	uint8_t id[KHEO_ID_SIZE], sig[KHEO_SIG_SIZE], got[KHEO_ID_SIZE];
	kheo_field fields[5];
	kheo_op op = { .kind = KHEO_OP_PUT, .table = "model" };
	kheo_changeset cs = { .version = KHEO_CS_VERSION,
		.unit = "dak-nong/cu-jut/ea-po", .schema_version = 1,
		.useq = 1, .ops = &op, .nops = 1 };
	kheo_buf raw = { 0 }, frame = { 0 }, back = { 0 };
	kheo_changeset *opened;
	kheo_refusal why;
	kheo_codec *codec;
	size_t i;

	if (sodium_init() < 0 || kheo_codec_new(&codec, 3) < 0)
		return 1;
	printf("kheo %s - proto round trip (the multi-node demo comes with "
	       "the sync issue)\n\n", kheo_version());

	crypto_sign_keypair(pk, sk);
	memcpy(cs.author, pk, sizeof(pk));
	randombytes_buf(op.record, sizeof(op.record));
	op.clock = (uint64_t)1764000000000ull << 16;
	fields[0] = (kheo_field){ "beneficiaries",
		{ .type = KHEO_VAL_INT, .i = 42 } };
	fields[1] = (kheo_field){ "description", { .type = KHEO_VAL_TEXT,
		.p = (const uint8_t *)desc, .len = strlen(desc) } };
	fields[2] = (kheo_field){ "kind", { .type = KHEO_VAL_TEXT,
		.p = (const uint8_t *)"collective", .len = 10 } };
	fields[3] = (kheo_field){ "name", { .type = KHEO_VAL_TEXT,
		.p = (const uint8_t *)name, .len = strlen(name) } };
	fields[4] = (kheo_field){ "status", { .type = KHEO_VAL_TEXT,
		.p = (const uint8_t *)"registered", .len = 10 } };
	op.fields = fields;
	op.nfields = 5;

	printf("1. a device in %s registers \"%s\"\n", cs.unit, name);
	if (kheo_changeset_encode(&raw, &cs, &why) < 0) {
		fprintf(stderr, "encode: %s\n", why.msg);
		return 1;
	}
	kheo_changeset_id(id, raw.p, raw.len);
	kheo_changeset_sign(sig, id, sk);
	kheo_frame_write(codec, &frame, raw.p, raw.len, sig);
	show("author key", pk, sizeof(pk));
	show("changeset id", id, sizeof(id));
	printf("  %-22s %zu bytes canonical, %zu framed (zstd %s, "
	       "64-byte signature included)\n", "size", raw.len, frame.len,
		frame.p[4] & KHEO_FRAME_F_ZSTD ? "on" : "off");

	printf("\n2. the hub opens the frame: decode, hash, verify\n");
	if (kheo_frame_open(codec, &opened, got, &back, frame.p, frame.len,
		    &why) < 0) {
		fprintf(stderr, "open: %s\n", why.msg);
		return 1;
	}
	show("id recomputed", got, sizeof(got));
	printf("  %-22s %zu op(s) in %s, useq %llu, fields:", "accepted",
		opened->nops, opened->unit,
		(unsigned long long)opened->useq);
	for (i = 0; i < opened->ops[0].nfields; i++)
		printf(" %s", opened->ops[0].fields[i].name);
	printf("\n");
	kheo_changeset_free(opened);

	printf("\n3. someone edits the stored bytes (beneficiaries 42 -> 43)\n");
	for (i = 0; i + 1 < raw.len; i++)
		if (raw.p[i] == 0x01 && raw.p[i + 1] == 84) /* zigzag(42) */
			raw.p[i + 1] = 86;
	kheo_buf_reset(&frame);
	kheo_frame_write(codec, &frame, raw.p, raw.len, sig);
	if (kheo_frame_open(codec, &opened, got, &back, frame.p, frame.len,
		    &why) == KHEO_OK) {
		fprintf(stderr, "a forged changeset was accepted\n");
		return 1;
	}
	printf("  %-22s %s: %s\n", "refused", kheo_reason_name(why.reason),
		why.msg);

	printf("\nThe format is specified in docs/protocol.md.\n");
	kheo_codec_free(codec);
	kheo_buf_free(&raw);
	kheo_buf_free(&frame);
	kheo_buf_free(&back);
	return 0;
}
