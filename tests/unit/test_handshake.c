/*
 * test_handshake.c - the secure channel: Secret Handshake v1
 * (proto/handshake.c) against the reference implementation's published
 * vectors, round trips, and every refusal; then the secretstream records
 * (proto/stream.c): key derivation as documented, round trips fed whole and
 * byte by byte, and refusals (too big before any allocation, altered,
 * reordered, dropped, reflected, trailing bytes).
 *
 * The vectors are tests/vectors/shs1/test-secret-handshake-1.0.2.data.json,
 * byte for byte as published (see the README beside it).  Each entry is a
 * call the reference made during its own test runs: its name, the state it
 * was called with (recorded after the call) and what it returned, `null`
 * for a refusal.  We replay each from the start with our state machine:
 * the same network key, long-term key and ephemeral seed ("random"), the
 * peer's earlier messages taken from the recorded state, and compare what
 * we produce, compute or refuse.
 */
#include "helpers.h"
#include "alloc.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VECTORS "shs1/test-secret-handshake-1.0.2.data.json"

/* ------------------------------------------------------------ fixtures */

static const uint8_t netkey1[32] = { 'k', 'h', 'e', 'o', '-', 't', 'e', 's',
	't', '-', 'n', 'e', 't', 'w', 'o', 'r', 'k', 1 };
static const uint8_t netkey2[32] = { 'k', 'h', 'e', 'o', '-', 't', 'e', 's',
	't', '-', 'n', 'e', 't', 'w', 'o', 'r', 'k', 2 };
static const uint8_t seed_c[32] = { 0xc1, 0xc1 };
static const uint8_t seed_s[32] = { 0x5e, 0x5e };

typedef struct pair {
	test_key ckey, skey;
	kheo_shs c, s;
	uint8_t m1[KHEO_SHS_MSG1_SIZE], m2[KHEO_SHS_MSG2_SIZE];
	uint8_t m3[KHEO_SHS_MSG3_SIZE], m4[KHEO_SHS_MSG4_SIZE];
	kheo_shs_keys ck, sk;
} pair;

/* Client seed-1 key, server seed-2 key; seeded ephemerals unless random. */
static void pair_init(pair *p, int random_eph)
{
	memset(p, 0, sizeof(*p));
	test_key_make(&p->ckey, 1);
	test_key_make(&p->skey, 2);
	assert_int_equal(kheo_shs_client_init(&p->c, netkey1, p->ckey.sk,
				 p->skey.pk, random_eph ? NULL : seed_c),
		KHEO_OK);
	kheo_shs_server_init(&p->s, netkey1, p->skey.sk,
		random_eph ? NULL : seed_s);
}

static void step(int err, const kheo_refusal *why)
{
	if (err != KHEO_OK)
		fail_msg("refused: %s: %s", kheo_reason_name(why->reason),
			why->msg);
}

/* Up to and including message n (1..4). */
static void pair_run(pair *p, int n)
{
	kheo_refusal why = { 0 };

	kheo_shs_write_msg1(&p->c, p->m1);
	if (n < 2)
		return;
	step(kheo_shs_read_msg1(&p->s, p->m1, sizeof(p->m1), &why), &why);
	kheo_shs_write_msg2(&p->s, p->m2);
	step(kheo_shs_read_msg2(&p->c, p->m2, sizeof(p->m2), &why), &why);
	if (n < 3)
		return;
	kheo_shs_write_msg3(&p->c, p->m3);
	step(kheo_shs_read_msg3(&p->s, p->m3, sizeof(p->m3), &why), &why);
	if (n < 4)
		return;
	kheo_shs_write_msg4(&p->s, p->m4, &p->sk);
	step(kheo_shs_read_msg4(&p->c, p->m4, sizeof(p->m4), &p->ck, &why),
		&why);
}

static void expect_refusal(int err, const kheo_refusal *why, int reason,
	const kheo_shs *st)
{
	if (err == KHEO_OK)
		fail_msg("accepted; expected %s", kheo_reason_name(reason));
	if (why->reason != reason)
		fail_msg("refused as %s (%s); expected %s",
			kheo_reason_name(why->reason), why->msg,
			kheo_reason_name(reason));
	assert_int_equal(err, kheo_reason_error(reason));
	assert_true(why->msg[0] != '\0');
	/* a refused handshake is over and holds no secret */
	assert_int_equal(st->step, -1);
	assert_true(sodium_is_zero(st->eph_sk, sizeof(st->eph_sk)));
	assert_true(sodium_is_zero(st->ab, sizeof(st->ab)));
	assert_true(sodium_is_zero(st->netkey, sizeof(st->netkey)));
	assert_null(st->sk);
}

/* ------------------------------------------------- published vectors */

/* Hex string at a dotted path of `o` into out (exactly n bytes), or 0. */
static int hex_at(const json_t *o, const char *path, uint8_t *out, size_t n)
{
	char key[64];
	const char *dot;
	const json_t *v = o;

	while (v && (dot = strchr(path, '.'))) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		v = json_object_get(v, key);
		path = dot + 1;
	}
	if (v)
		v = json_object_get(v, path);
	if (!json_is_string(v))
		return 0;
	if (kheo_unhex(out, n, json_string_value(v),
		    json_string_length(v)) != KHEO_OK)
		fail_msg("vector field %s: not %zu bytes of hex", path, n);
	return 1;
}

static void need_hex(const json_t *o, const char *path, uint8_t *out,
	size_t n, size_t index)
{
	if (!hex_at(o, path, out, n))
		fail_msg("vector %zu: no %s", index, path);
}

static void check_eq(const uint8_t *got, const uint8_t *want, size_t n,
	size_t index, const char *name, const char *what)
{
	char g[2 * 128 + 1], w[2 * 128 + 1];

	if (memcmp(got, want, n) == 0)
		return;
	kheo_hex(g, got, n);
	kheo_hex(w, want, n);
	fail_msg("vector %zu (%s): %s differs\n  got  %s\n  want %s", index,
		name, what, g, w);
}

/* The last msg3 a server saw and the last msg4 a client saw, by the
 * ephemeral seed of that side (the recorded states do not keep them). */
typedef struct seen {
	uint8_t seed[32];
	uint8_t msg[KHEO_SHS_MSG3_SIZE];
	size_t len;
} seen;

static seen seen_msgs[64];
static size_t nseen;

static void remember(const uint8_t seed[32], const uint8_t *msg, size_t len)
{
	size_t i;

	for (i = 0; i < nseen; i++)
		if (memcmp(seen_msgs[i].seed, seed, 32) == 0)
			break;
	if (i == nseen) {
		assert_true(nseen < sizeof(seen_msgs) / sizeof(seen_msgs[0]));
		nseen++;
	}
	memcpy(seen_msgs[i].seed, seed, 32);
	memcpy(seen_msgs[i].msg, msg, len);
	seen_msgs[i].len = len;
}

static const seen *recall(const uint8_t seed[32], size_t index)
{
	size_t i;

	for (i = 0; i < nseen; i++)
		if (memcmp(seen_msgs[i].seed, seed, 32) == 0)
			return &seen_msgs[i];
	fail_msg("vector %zu: no earlier message for this seed", index);
	return NULL;
}

enum { V_INIT, V_CHALLENGE, V_VERIFY, V_CLIENT_VERIFY, V_CLIENT_AUTH,
	V_SERVER_VERIFY, V_SERVER_ACCEPT, V_CLIENT_ACCEPT, V_CLEAN, V_KINDS };
static const char *const vnames[V_KINDS] = { "initialize",
	"createChallenge", "verifyChallenge", "clientVerifyChallenge",
	"clientCreateAuth", "serverVerifyAuth", "serverCreateAccept",
	"clientVerifyAccept", "clean" };

/* One recorded call, replayed.  Returns 1 if it expected a refusal. */
static int replay(const json_t *v, size_t index, int kind)
{
	const json_t *a = json_array_get(json_object_get(v, "args"), 0);
	const json_t *res = json_object_get(v, "result");
	const json_t *remote = json_object_get(a, "remote");
	const int refused = json_is_null(res);
	uint8_t netkey[32], sk[64], seed[32], peer_pk[32], want[112];
	uint8_t peer_hello[64], out[112], arg[112];
	kheo_refusal why = { 0 };
	kheo_shs_keys keys;
	kheo_shs st;
	int client, err = KHEO_OK;

	/* The server's recorded state names the client's hello from msg3
	 * on; a client's never has one.  Before msg3 a server knows no
	 * remote long-term key at all. */
	client = !json_object_get(remote, "hello") &&
		json_object_get(remote, "publicKey");
	need_hex(a, "app_key", netkey, 32, index);
	need_hex(a, "local.secretKey", sk, 64, index);
	need_hex(a, "random", seed, 32, index);
	if (client) {
		need_hex(a, "remote.publicKey", peer_pk, 32, index);
		assert_int_equal(kheo_shs_client_init(&st, netkey, sk, peer_pk,
					 seed), KHEO_OK);
	} else {
		kheo_shs_server_init(&st, netkey, sk, seed);
	}

	if (kind == V_INIT) {
		need_hex(res, "local.kx_pk", want, 32, index);
		check_eq(st.eph_pk, want, 32, index, vnames[kind], "kx_pk");
		need_hex(res, "local.kx_sk", want, 32, index);
		check_eq(st.eph_sk, want, 32, index, vnames[kind], "kx_sk");
		need_hex(res, "local.app_mac", want, 32, index);
		if (client) {
			kheo_shs_write_msg1(&st, out);
			check_eq(out, want, 32, index, vnames[kind], "app_mac");
		}
		kheo_shs_wipe(&st);
		return 0;
	}

	/* The peer's hello as this side received it, when it did. */
	{
		int have = hex_at(a, "remote.app_mac", peer_hello, 32) &&
			hex_at(a, "remote.kx_pk", peer_hello + 32, 32);

		if (client)
			kheo_shs_write_msg1(&st, out);
		if (kind == V_VERIFY || kind == V_CLIENT_VERIFY) {
			if (kheo_unhex(arg, 64, json_string_value(json_array_get(
				    json_object_get(v, "args"), 1)), 128) != 0)
				fail_msg("vector %zu: challenge", index);
			err = client ? kheo_shs_read_msg2(&st, arg, 64, &why) :
				kheo_shs_read_msg1(&st, arg, 64, &why);
		} else if (kind != V_CHALLENGE || !client) {
			if (!have)
				fail_msg("vector %zu: no remote hello", index);
			err = client ? kheo_shs_read_msg2(&st, peer_hello, 64,
					       &why) :
				kheo_shs_read_msg1(&st, peer_hello, 64, &why);
			step(err, &why);
			if (!client)
				kheo_shs_write_msg2(&st, out);
		}
	}

	switch (kind) {
	case V_CHALLENGE:
		if (kheo_unhex(want, 64, json_string_value(res), 128) != 0)
			fail_msg("vector %zu: result", index);
		check_eq(out, want, 64, index, vnames[kind],
			client ? "msg1" : "msg2");
		break;
	case V_VERIFY:
	case V_CLIENT_VERIFY:
		if (refused) {
			expect_refusal(err, &why, KHEO_R_BAD_HELLO, &st);
			return 1;
		}
		step(err, &why);
		need_hex(res, "secret", want, 32, index);
		check_eq(st.ab, want, 32, index, vnames[kind], "ab (secret)");
		if (kind == V_CLIENT_VERIFY) {
			need_hex(res, "a_bob", want, 32, index);
			check_eq(st.aB, want, 32, index, vnames[kind],
				"aB (a_bob)");
		}
		break;
	case V_CLIENT_AUTH:
		kheo_shs_write_msg3(&st, out);
		if (kheo_unhex(want, 112, json_string_value(res), 224) != 0)
			fail_msg("vector %zu: result", index);
		check_eq(out, want, 112, index, vnames[kind], "msg3");
		need_hex(a, "local.hello", want, 96, index);
		check_eq(st.hello, want, 96, index, vnames[kind],
			"msg3 plaintext (hello)");
		break;
	case V_SERVER_VERIFY:
		if (kheo_unhex(arg, 112, json_string_value(json_array_get(
			    json_object_get(v, "args"), 1)), 224) != 0)
			fail_msg("vector %zu: msg3", index);
		remember(seed, arg, 112);
		err = kheo_shs_read_msg3(&st, arg, 112, &why);
		if (refused) {
			/* the file's one: a client expecting another
			 * server key, whose box cannot open here */
			expect_refusal(err, &why, KHEO_R_BAD_AUTH, &st);
			return 1;
		}
		step(err, &why);
		need_hex(res, "remote.publicKey", want, 32, index);
		check_eq(st.peer, want, 32, index, vnames[kind],
			"client key");
		need_hex(res, "b_alice", want, 32, index);
		check_eq(st.Ab, want, 32, index, vnames[kind], "Ab (b_alice)");
		break;
	case V_SERVER_ACCEPT:
	case V_CLEAN:
		if (!client) {
			const seen *m3 = recall(seed, index);

			step(kheo_shs_read_msg3(&st, m3->msg, m3->len, &why),
				&why);
			kheo_shs_write_msg4(&st, out, &keys);
			if (kind == V_SERVER_ACCEPT) {
				if (kheo_unhex(want, 80, json_string_value(res),
					    160) != 0)
					fail_msg("vector %zu: result", index);
				check_eq(out, want, 80, index, vnames[kind],
					"msg4");
				break;
			}
		} else {
			const seen *m4 = recall(seed, index);

			kheo_shs_write_msg3(&st, out);
			step(kheo_shs_read_msg4(&st, m4->msg, m4->len, &keys,
				     &why), &why);
		}
		/* clean: the box-stream keys */
		need_hex(res, "encryptKey", want, 32, index);
		check_eq(keys.enc_key, want, 32, index, vnames[kind],
			"encryptKey");
		need_hex(res, "decryptKey", want, 32, index);
		check_eq(keys.dec_key, want, 32, index, vnames[kind],
			"decryptKey");
		need_hex(res, "remote.publicKey", want, 32, index);
		check_eq(keys.peer, want, 32, index, vnames[kind], "peer");
		break;
	case V_CLIENT_ACCEPT:
		if (kheo_unhex(arg, 80, json_string_value(json_array_get(
			    json_object_get(v, "args"), 1)), 160) != 0)
			fail_msg("vector %zu: msg4", index);
		remember(seed, arg, 80);
		kheo_shs_write_msg3(&st, out);
		err = kheo_shs_read_msg4(&st, arg, 80, &keys, &why);
		if (refused) {
			/* none in the file; a box that does not open is
			 * what the reference refuses at msg4 */
			expect_refusal(err, &why, KHEO_R_BAD_AUTH, &st);
			return 1;
		}
		step(err, &why);
		assert_int_equal(st.step, 4);
		break;
	default:
		break;
	}
	kheo_shs_wipe(&st);
	return 0;
}

static void published_vectors_of_the_reference_implementation(void **state)
{
	size_t len = 0, i, counts[V_KINDS] = { 0 }, refusals = 0, skipped = 0;
	char *text;
	json_error_t jerr;
	json_t *root;

	(void)state;
	text = (char *)test_read_file(test_vector_path(VECTORS), &len);
	if (!text)
		fail_msg("vectors %s missing", test_vector_path(VECTORS));
	root = json_loadb(text, len, 0, &jerr);
	if (!root)
		fail_msg("vectors: %s at line %d", jerr.text, jerr.line);
	assert_int_equal(json_array_size(root), 159);
	nseen = 0;
	for (i = 0; i < json_array_size(root); i++) {
		const json_t *v = json_array_get(root, i);
		const char *name = json_string_value(json_object_get(v,
			"name"));
		int kind;

		for (kind = 0; kind < V_KINDS; kind++)
			if (strcmp(name, vnames[kind]) == 0)
				break;
		if (kind == V_KINDS) {
			/* toKeys: the reference's key-from-seed helper,
			 * libsodium's crypto_sign_seed_keypair; not SHS */
			assert_string_equal(name, "toKeys");
			skipped++;
			continue;
		}
		refusals += (size_t)replay(v, i, kind);
		counts[kind]++;
	}
	print_message("shs1 vectors: %zu replayed (%zu refusals expected and "
		      "met), %zu skipped (toKeys)\n", i - skipped, refusals,
		skipped);
	/* what the published file holds, so that a parse that silently
	 * skipped entries fails here */
	assert_int_equal(counts[V_INIT], 34);
	assert_int_equal(counts[V_CHALLENGE], 31);
	assert_int_equal(counts[V_VERIFY], 30);
	assert_int_equal(counts[V_CLIENT_VERIFY], 14);
	assert_int_equal(counts[V_CLIENT_AUTH], 12);
	assert_int_equal(counts[V_SERVER_VERIFY], 12);
	assert_int_equal(counts[V_SERVER_ACCEPT], 6);
	assert_int_equal(counts[V_CLIENT_ACCEPT], 6);
	assert_int_equal(counts[V_CLEAN], 12);
	assert_int_equal(skipped, 2);
	assert_int_equal(refusals, 7);
	json_decref(root);
	free(text);
}

/* ---------------------------------------------------------- round trips */

static void round_trip_agrees_on_keys_and_peers(void **state)
{
	pair p;
	int random_eph;

	(void)state;
	for (random_eph = 0; random_eph <= 1; random_eph++) {
		pair_init(&p, random_eph);
		pair_run(&p, 4);
		assert_int_equal(p.c.step, 4);
		assert_int_equal(p.s.step, 4);
		/* each learnt the other's long-term key */
		assert_memory_equal(p.ck.peer, p.skey.pk, 32);
		assert_memory_equal(p.sk.peer, p.ckey.pk, 32);
		assert_int_equal(p.ck.client, 1);
		assert_int_equal(p.sk.client, 0);
		/* what one encrypts the other decrypts */
		assert_memory_equal(p.ck.enc_key, p.sk.dec_key, 32);
		assert_memory_equal(p.ck.dec_key, p.sk.enc_key, 32);
		assert_memory_equal(p.ck.enc_nonce, p.sk.dec_nonce, 24);
		assert_memory_equal(p.ck.dec_nonce, p.sk.enc_nonce, 24);
		assert_memory_not_equal(p.ck.enc_key, p.ck.dec_key, 32);
		/* a finished handshake keeps no secret */
		assert_true(sodium_is_zero(p.c.eph_sk, 32));
		assert_true(sodium_is_zero(p.s.ab, 32));
		assert_true(sodium_is_zero(p.s.hello, 96));
		assert_null(p.c.sk);
		kheo_shs_keys_wipe(&p.ck);
		assert_true(sodium_is_zero((const uint8_t *)&p.ck,
			sizeof(p.ck)));
	}
}

static void seeded_handshakes_repeat_random_ones_differ(void **state)
{
	pair a, b, r1, r2;

	(void)state;
	pair_init(&a, 0);
	pair_run(&a, 4);
	pair_init(&b, 0);
	pair_run(&b, 4);
	assert_memory_equal(a.m1, b.m1, sizeof(a.m1));
	assert_memory_equal(a.m3, b.m3, sizeof(a.m3));
	assert_memory_equal(a.m4, b.m4, sizeof(a.m4));
	assert_memory_equal(a.ck.enc_key, b.ck.enc_key, 32);
	pair_init(&r1, 1);
	pair_run(&r1, 4);
	pair_init(&r2, 1);
	pair_run(&r2, 4);
	assert_memory_not_equal(r1.m1, r2.m1, sizeof(r1.m1));
	assert_memory_not_equal(r1.ck.enc_key, r2.ck.enc_key, 32);
}

/* ------------------------------------------------------------- refusals */

static void wrong_network_key_is_refused_at_the_hello(void **state)
{
	test_key ck, sk;
	kheo_shs c, s, c2, s2;
	uint8_t m1[64], m2[64];
	kheo_refusal why = { 0 };

	(void)state;
	test_key_make(&ck, 1);
	test_key_make(&sk, 2);
	/* the server cannot verify msg1's HMAC */
	assert_int_equal(kheo_shs_client_init(&c, netkey1, ck.sk, sk.pk,
				 seed_c), KHEO_OK);
	kheo_shs_server_init(&s, netkey2, sk.sk, seed_s);
	kheo_shs_write_msg1(&c, m1);
	expect_refusal(kheo_shs_read_msg1(&s, m1, 64, &why), &why,
		KHEO_R_BAD_HELLO, &s);
	assert_int_equal(kheo_reason_error(why.reason), KHEO_EAUTH);
	assert_string_equal(kheo_reason_name(why.reason), "bad-hello");
	/* nor a client the server's msg2 */
	assert_int_equal(kheo_shs_client_init(&c2, netkey2, ck.sk, sk.pk,
				 seed_c), KHEO_OK);
	kheo_shs_server_init(&s2, netkey2, sk.sk, seed_s);
	kheo_shs_write_msg1(&c2, m1);
	step(kheo_shs_read_msg1(&s2, m1, 64, &why), &why);
	kheo_shs_write_msg2(&s2, m2);
	expect_refusal(kheo_shs_read_msg2(&c, m2, 64, &why), &why,
		KHEO_R_BAD_HELLO, &c);
}

static void client_expecting_another_server_key_is_refused(void **state)
{
	test_key ck, sk, other;
	kheo_shs c, s;
	uint8_t m1[64], m2[64], m3[112];
	kheo_refusal why = { 0 };

	(void)state;
	test_key_make(&ck, 1);
	test_key_make(&sk, 2);
	test_key_make(&other, 3);
	assert_int_equal(kheo_shs_client_init(&c, netkey1, ck.sk, other.pk,
				 NULL), KHEO_OK);
	kheo_shs_server_init(&s, netkey1, sk.sk, NULL);
	kheo_shs_write_msg1(&c, m1);
	step(kheo_shs_read_msg1(&s, m1, 64, &why), &why);
	kheo_shs_write_msg2(&s, m2);
	step(kheo_shs_read_msg2(&c, m2, 64, &why), &why);
	kheo_shs_write_msg3(&c, m3);
	/* the box key holds aB with the key the client expects */
	expect_refusal(kheo_shs_read_msg3(&s, m3, 112, &why), &why,
		KHEO_R_BAD_AUTH, &s);
	/* the server learnt nothing of the client */
	assert_true(sodium_is_zero(s.peer, 32));
	kheo_shs_wipe(&c);
}

static void client_init_refuses_a_key_that_is_not_one(void **state)
{
	test_key ck;
	kheo_shs c;
	const uint8_t zero[32] = { 0 };

	(void)state;
	test_key_make(&ck, 1);
	assert_int_equal(kheo_shs_client_init(&c, netkey1, ck.sk, zero, NULL),
		KHEO_EINVAL);
	assert_int_equal(c.step, -1);
}

static void every_altered_byte_of_msg2_msg3_msg4_is_refused(void **state)
{
	kheo_refusal why = { 0 };
	pair ref, p;
	size_t i;
	int bit;

	(void)state;
	pair_init(&ref, 0);
	pair_run(&ref, 4);
	for (bit = 0; bit < 8; bit += 7)
		for (i = 0; i < KHEO_SHS_MSG2_SIZE; i++) {
			pair_init(&p, 0);
			pair_run(&p, 1);
			step(kheo_shs_read_msg1(&p.s, p.m1, 64, &why), &why);
			kheo_shs_write_msg2(&p.s, p.m2);
			assert_memory_equal(p.m2, ref.m2, 64);
			p.m2[i] ^= (uint8_t)(1u << bit);
			expect_refusal(kheo_shs_read_msg2(&p.c, p.m2, 64, &why),
				&why, KHEO_R_BAD_HELLO, &p.c);
		}
	for (bit = 0; bit < 8; bit += 7)
		for (i = 0; i < KHEO_SHS_MSG3_SIZE; i++) {
			pair_init(&p, 0);
			pair_run(&p, 2);
			kheo_shs_write_msg3(&p.c, p.m3);
			assert_memory_equal(p.m3, ref.m3, 112);
			p.m3[i] ^= (uint8_t)(1u << bit);
			expect_refusal(kheo_shs_read_msg3(&p.s, p.m3, 112,
					       &why), &why, KHEO_R_BAD_AUTH,
				&p.s);
		}
	for (bit = 0; bit < 8; bit += 7)
		for (i = 0; i < KHEO_SHS_MSG4_SIZE; i++) {
			pair_init(&p, 0);
			pair_run(&p, 3);
			kheo_shs_write_msg4(&p.s, p.m4, &p.sk);
			assert_memory_equal(p.m4, ref.m4, 80);
			p.m4[i] ^= (uint8_t)(1u << bit);
			expect_refusal(kheo_shs_read_msg4(&p.c, p.m4, 80, &p.ck,
					       &why), &why, KHEO_R_BAD_AUTH,
				&p.c);
		}
	/* msg1 too: the server checks its HMAC */
	for (i = 0; i < KHEO_SHS_MSG1_SIZE; i++) {
		pair_init(&p, 0);
		pair_run(&p, 1);
		p.m1[i] ^= 0x80;
		expect_refusal(kheo_shs_read_msg1(&p.s, p.m1, 64, &why), &why,
			KHEO_R_BAD_HELLO, &p.s);
	}
}

static void replayed_messages_fail_against_fresh_states(void **state)
{
	kheo_refusal why = { 0 };
	kheo_shs_keys keys;
	pair old, p;

	(void)state;
	/* a whole client transcript, recorded */
	pair_init(&old, 1);
	pair_run(&old, 4);
	/* replayed to a fresh server: msg1 cannot be told from a new one
	 * (it is a public key and its HMAC), but msg3 was boxed for the
	 * old server's ephemeral key */
	pair_init(&p, 1);
	step(kheo_shs_read_msg1(&p.s, old.m1, 64, &why), &why);
	kheo_shs_write_msg2(&p.s, p.m2);
	assert_memory_not_equal(p.m2, old.m2, 64);
	expect_refusal(kheo_shs_read_msg3(&p.s, old.m3, 112, &why), &why,
		KHEO_R_BAD_AUTH, &p.s);
	/* the server side replayed to a fresh client: msg4 was boxed for
	 * the old client's ephemeral key */
	pair_init(&p, 1);
	kheo_shs_write_msg1(&p.c, p.m1);
	step(kheo_shs_read_msg2(&p.c, old.m2, 64, &why), &why);
	kheo_shs_write_msg3(&p.c, p.m3);
	expect_refusal(kheo_shs_read_msg4(&p.c, old.m4, 80, &keys, &why),
		&why, KHEO_R_BAD_AUTH, &p.c);
}

/* Box `plain` as the handshake would, under sha256 of the pieces. */
static void box_under(uint8_t *out, const uint8_t *plain, size_t n,
	const uint8_t *k, const uint8_t *s1, const uint8_t *s2,
	const uint8_t *s3)
{
	uint8_t key[32], nonce[24] = { 0 };
	crypto_hash_sha256_state h;

	crypto_hash_sha256_init(&h);
	crypto_hash_sha256_update(&h, k, 32);
	crypto_hash_sha256_update(&h, s1, 32);
	crypto_hash_sha256_update(&h, s2, 32);
	if (s3)
		crypto_hash_sha256_update(&h, s3, 32);
	crypto_hash_sha256_final(&h, key);
	crypto_secretbox_easy(out, plain, n, nonce, key);
}

static void bad_signatures_inside_good_boxes_are_refused(void **state)
{
	kheo_refusal why = { 0 };
	uint8_t hello[96], msg[160], sig[64], shash[32];
	test_key other;
	pair p;

	(void)state;
	test_key_make(&other, 3);

	/* msg3 whose signature is flipped, boxed with the right key (what
	 * a client that knows ab and aB but not A's secret could send) */
	pair_init(&p, 0);
	pair_run(&p, 2);
	kheo_shs_write_msg3(&p.c, p.m3);
	memcpy(hello, p.c.hello, 96);
	hello[5] ^= 1;
	box_under(p.m3, hello, 96, netkey1, p.c.ab, p.c.aB, NULL);
	expect_refusal(kheo_shs_read_msg3(&p.s, p.m3, 112, &why), &why,
		KHEO_R_BAD_SIGNATURE, &p.s);

	/* msg3 naming another client key than the one that signed */
	pair_init(&p, 0);
	pair_run(&p, 2);
	kheo_shs_write_msg3(&p.c, p.m3);
	memcpy(hello, p.c.hello, 96);
	memcpy(hello + 64, other.pk, 32);
	box_under(p.m3, hello, 96, netkey1, p.c.ab, p.c.aB, NULL);
	expect_refusal(kheo_shs_read_msg3(&p.s, p.m3, 112, &why), &why,
		KHEO_R_BAD_SIGNATURE, &p.s);

	/* msg4 signed by another key than the server the client expects,
	 * boxed with the right key */
	pair_init(&p, 0);
	pair_run(&p, 3);
	crypto_hash_sha256(shash, p.s.ab, 32);
	memcpy(msg, netkey1, 32);
	memcpy(msg + 32, p.s.hello, 96);
	memcpy(msg + 128, shash, 32);
	crypto_sign_detached(sig, NULL, msg, sizeof(msg), other.sk);
	box_under(p.m4, sig, 64, netkey1, p.s.ab, p.s.aB, p.s.Ab);
	expect_refusal(kheo_shs_read_msg4(&p.c, p.m4, 80, &p.ck, &why), &why,
		KHEO_R_BAD_SIGNATURE, &p.c);
	kheo_shs_wipe(&p.s);
}

static void wrong_lengths_and_low_order_keys_are_refused(void **state)
{
	kheo_refusal why = { 0 };
	uint8_t big[113] = { 0 }, hello[64], point[32] = { 0 };
	pair p;

	(void)state;
	pair_init(&p, 0);
	pair_run(&p, 1);
	expect_refusal(kheo_shs_read_msg1(&p.s, p.m1, 63, &why), &why,
		KHEO_R_TRUNCATED, &p.s);
	pair_init(&p, 0);
	pair_run(&p, 1);
	memcpy(big, p.m1, 64);
	expect_refusal(kheo_shs_read_msg1(&p.s, big, 65, &why), &why,
		KHEO_R_TRAILING_BYTES, &p.s);
	pair_init(&p, 0);
	pair_run(&p, 2);
	kheo_shs_write_msg3(&p.c, p.m3);
	memcpy(big, p.m3, 112);
	expect_refusal(kheo_shs_read_msg3(&p.s, big, 113, &why), &why,
		KHEO_R_TRAILING_BYTES, &p.s);
	pair_init(&p, 0);
	pair_run(&p, 3);
	kheo_shs_write_msg4(&p.s, p.m4, &p.sk);
	expect_refusal(kheo_shs_read_msg4(&p.c, p.m4, 0, &p.ck, &why), &why,
		KHEO_R_TRUNCATED, &p.c);

	/* someone who knows the network key sends a low-order point (here
	 * u = 0 and u = 1) as its ephemeral key: ab would be zero */
	for (point[0] = 0; point[0] <= 1; point[0]++) {
		pair_init(&p, 0);
		crypto_auth(hello, point, 32, netkey1);
		memcpy(hello + 32, point, 32);
		expect_refusal(kheo_shs_read_msg1(&p.s, hello, 64, &why),
			&why, KHEO_R_BAD_KEY, &p.s);
		pair_init(&p, 0);
		pair_run(&p, 1);
		expect_refusal(kheo_shs_read_msg2(&p.c, hello, 64, &why),
			&why, KHEO_R_BAD_KEY, &p.c);
	}
}

/* --------------------------------------------------------------- streams */

typedef struct chan {
	pair p;
	uint8_t ctx[32], crx[32], stx[32], srx[32];
} chan;

static void chan_open(chan *ch)
{
	pair_init(&ch->p, 1);
	pair_run(&ch->p, 4);
	kheo_stream_keys(ch->ctx, ch->crx, &ch->p.ck);
	kheo_stream_keys(ch->stx, ch->srx, &ch->p.sk);
}

static void stream_keys_are_derived_as_documented(void **state)
{
	uint8_t want[32];
	chan ch;

	(void)state;
	chan_open(&ch);
	assert_memory_equal(ch.ctx, ch.srx, 32);
	assert_memory_equal(ch.stx, ch.crx, 32);
	assert_memory_not_equal(ch.ctx, ch.crx, 32);
	/* docs/protocol.md: BLAKE2b-256, keyed with the SHS box-stream key
	 * of the direction, over the direction's context string */
	crypto_generichash(want, 32,
		(const uint8_t *)"kheo/stream/v1 client->server", 29,
		ch.p.ck.enc_key, 32);
	assert_memory_equal(ch.ctx, want, 32);
	crypto_generichash(want, 32,
		(const uint8_t *)"kheo/stream/v1 server->client", 29,
		ch.p.sk.enc_key, 32);
	assert_memory_equal(ch.stx, want, 32);
	/* never the box-stream key itself */
	assert_memory_not_equal(ch.ctx, ch.p.ck.enc_key, 32);
}

static const size_t sizes[] = { 0, 1, 1000, KHEO_STREAM_RECORD_MAX, 77 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* A stream of records sizes[i] (each byte i*31 + j), the last one FINAL. */
static void make_stream(kheo_buf *out, const uint8_t key[32])
{
	kheo_stream_tx tx;
	uint8_t *p = malloc(KHEO_STREAM_RECORD_MAX);
	size_t i, j;

	assert_non_null(p);
	assert_int_equal(kheo_stream_tx_init(&tx, out, key), KHEO_OK);
	for (i = 0; i < NSIZES; i++) {
		for (j = 0; j < sizes[i]; j++)
			p[j] = (uint8_t)(i * 31 + j);
		assert_int_equal(kheo_stream_tx_record(&tx, out, p, sizes[i],
					 i + 1 == NSIZES), KHEO_OK);
	}
	assert_int_equal(tx.closed, 1);
	kheo_stream_tx_wipe(&tx);
	free(p);
}

static void check_record(size_t i, const kheo_buf *plain)
{
	size_t j;

	assert_true(i < NSIZES);
	assert_int_equal(plain->len, sizes[i]);
	for (j = 0; j < sizes[i]; j++)
		if (plain->p[j] != (uint8_t)(i * 31 + j))
			fail_msg("record %zu byte %zu", i, j);
}

/* Feed `in` in pieces of `chunk` bytes (0: all at once), checking each
 * record against make_stream's when `check`; return the reason of a
 * refusal, KHEO_R_NONE when all was consumed up to the FINAL record, or
 * -1 when the decoder still waits for more. */
static int feed(const uint8_t key[32], const uint8_t *in, size_t len,
	size_t chunk, int check, size_t *records, kheo_refusal *why)
{
	kheo_stream_rx rx;
	kheo_buf plain = { 0 };
	kheo_stream_event ev;
	size_t have = 0, start = 0, used;
	int err;

	*records = 0;
	kheo_stream_rx_init(&rx, key);
	for (;;) {
		size_t avail;

		have = chunk ? (have + chunk < len ? have + chunk : len) : len;
		avail = have - start;
		for (;;) {
			err = kheo_stream_rx_read(&rx, &plain, &ev, &used,
				in + start, avail, why);
			if (err < 0) {
				kheo_stream_rx_wipe(&rx);
				kheo_buf_free(&plain);
				return why->reason;
			}
			start += used;
			avail -= used;
			if (ev == KHEO_STREAM_MORE)
				break;
			if (check)
				check_record(*records, &plain);
			++*records;
			if (ev == KHEO_STREAM_FINAL)
				assert_int_equal(rx.phase, 2);
		}
		if (have == len)
			break;
	}
	err = start == len && rx.phase == 2 ? KHEO_R_NONE : -1;
	kheo_stream_rx_wipe(&rx);
	kheo_buf_free(&plain);
	return err;
}

static void stream_round_trip_whole_and_byte_by_byte(void **state)
{
	kheo_refusal why = { 0 };
	kheo_buf s = { 0 };
	size_t n;
	chan ch;

	(void)state;
	chan_open(&ch);
	make_stream(&s, ch.ctx);
	assert_int_equal(s.len, KHEO_STREAM_HEADER_SIZE + NSIZES * 21 +
		1000 + 1 + KHEO_STREAM_RECORD_MAX + 77);
	assert_int_equal(feed(ch.srx, s.p, s.len, 0, 1, &n, &why), KHEO_R_NONE);
	assert_int_equal(n, NSIZES);
	assert_int_equal(feed(ch.srx, s.p, s.len, 4093, 1, &n, &why),
		KHEO_R_NONE);
	assert_int_equal(n, NSIZES);
	/* byte by byte: only the small records (the 1 MiB one would make
	 * this quadratic), so cut the stream before it */
	{
		kheo_buf small = { 0 };
		kheo_stream_tx tx;
		kheo_stream_rx rx;
		kheo_buf plain = { 0 };
		kheo_stream_event ev;
		const uint8_t msg[] = "xin chào";
		size_t i, used, start = 0, got = 0;

		assert_int_equal(kheo_stream_tx_init(&tx, &small, ch.stx),
			KHEO_OK);
		assert_int_equal(kheo_stream_tx_record(&tx, &small, msg,
					 sizeof(msg), 0), KHEO_OK);
		assert_int_equal(kheo_stream_tx_record(&tx, &small, NULL, 0,
					 1), KHEO_OK);
		kheo_stream_rx_init(&rx, ch.crx);
		for (i = 1; i <= small.len; i++) {
			assert_int_equal(kheo_stream_rx_read(&rx, &plain, &ev,
						 &used, small.p + start,
						 i - start, &why), KHEO_OK);
			start += used;
			if (ev == KHEO_STREAM_MORE)
				continue;
			got++;
			if (got == 1) {
				assert_int_equal(ev, KHEO_STREAM_RECORD);
				assert_int_equal(plain.len, sizeof(msg));
				assert_memory_equal(plain.p, msg, sizeof(msg));
			} else {
				assert_int_equal(ev, KHEO_STREAM_FINAL);
				assert_int_equal(plain.len, 0);
			}
		}
		assert_int_equal(got, 2);
		assert_int_equal(start, small.len);
		kheo_stream_rx_wipe(&rx);
		kheo_buf_free(&plain);
		kheo_buf_free(&small);
	}
	kheo_buf_free(&s);
}

static void stream_cut_anywhere_is_need_more(void **state)
{
	kheo_refusal why = { 0 };
	kheo_buf s = { 0 }, plain = { 0 };
	kheo_stream_tx tx;
	kheo_stream_rx rx;
	kheo_stream_event ev;
	size_t cut, used;
	chan ch;

	(void)state;
	chan_open(&ch);
	assert_int_equal(kheo_stream_tx_init(&tx, &s, ch.ctx), KHEO_OK);
	assert_int_equal(kheo_stream_tx_record(&tx, &s, (const uint8_t *)"abc",
				 3, 0), KHEO_OK);
	for (cut = 0; cut < s.len; cut++) {
		kheo_stream_rx_init(&rx, ch.srx);
		assert_int_equal(kheo_stream_rx_read(&rx, &plain, &ev, &used,
					 s.p, cut, &why), KHEO_OK);
		assert_int_equal(ev, KHEO_STREAM_MORE);
		assert_int_equal(used, cut < KHEO_STREAM_HEADER_SIZE ? 0 :
			KHEO_STREAM_HEADER_SIZE);
		kheo_stream_rx_wipe(&rx);
	}
	kheo_stream_tx_wipe(&tx);
	kheo_buf_free(&s);
	kheo_buf_free(&plain);
}

static void stream_refuses_too_big_before_allocating(void **state)
{
	kheo_refusal why = { 0 };
	kheo_buf s = { 0 }, plain = { 0 };
	kheo_stream_tx tx;
	kheo_stream_rx rx;
	kheo_stream_event ev;
	uint8_t *big;
	size_t used;
	chan ch;

	(void)state;
	chan_open(&ch);
	assert_int_equal(kheo_stream_tx_init(&tx, &s, ch.ctx), KHEO_OK);
	/* a declared length one above the cap, and nothing after it */
	kheo_buf_put(&s, "\x00\x10\x00\x12", 4);
	assert_int_equal(0x100012, KHEO_STREAM_RECORD_MAX + 18);
	kheo_stream_rx_init(&rx, ch.srx);
	kheo__fault_set(1, 1); /* any allocation from now on fails */
	assert_int_equal(kheo_stream_rx_read(&rx, &plain, &ev, &used, s.p,
				 s.len, &why), KHEO_ELIMIT);
	kheo__fault_set(0, 0);
	assert_int_equal(why.reason, KHEO_R_TOO_BIG);
	assert_int_equal(why.offset, KHEO_STREAM_HEADER_SIZE);
	assert_null(plain.p);
	/* and it stays refused */
	memset(&why, 0, sizeof(why));
	assert_int_equal(kheo_stream_rx_read(&rx, &plain, &ev, &used, s.p,
				 s.len, &why), KHEO_ELIMIT);
	assert_int_equal(why.reason, KHEO_R_TOO_BIG);
	kheo_stream_rx_wipe(&rx);

	/* exactly the cap is fine: 1 MiB + 17 declared */
	s.len = KHEO_STREAM_HEADER_SIZE;
	big = calloc(1, KHEO_STREAM_RECORD_MAX + 1);
	assert_non_null(big);
	assert_int_equal(kheo_stream_tx_record(&tx, &s, big,
				 KHEO_STREAM_RECORD_MAX + 1, 0), KHEO_ELIMIT);
	assert_int_equal(kheo_stream_tx_record(&tx, &s, big,
				 KHEO_STREAM_RECORD_MAX, 0), KHEO_OK);
	kheo_stream_rx_init(&rx, ch.srx);
	assert_int_equal(kheo_stream_rx_read(&rx, &plain, &ev, &used, s.p,
				 s.len, &why), KHEO_OK);
	assert_int_equal(ev, KHEO_STREAM_RECORD);
	assert_int_equal(plain.len, KHEO_STREAM_RECORD_MAX);
	kheo_stream_rx_wipe(&rx);

	/* a length below the tag's 17 bytes */
	s.len = KHEO_STREAM_HEADER_SIZE;
	kheo_buf_put(&s, "\x00\x00\x00\x10", 4);
	kheo_stream_rx_init(&rx, ch.srx);
	assert_int_equal(kheo_stream_rx_read(&rx, &plain, &ev, &used, s.p,
				 s.len, &why), KHEO_EAUTH);
	assert_int_equal(why.reason, KHEO_R_BAD_RECORD);
	kheo_stream_rx_wipe(&rx);
	kheo_stream_tx_wipe(&tx);
	free(big);
	kheo_buf_free(&s);
	kheo_buf_free(&plain);
}

static void stream_out_of_memory_leaves_the_record_to_retry(void **state)
{
	kheo_refusal why = { 0 };
	kheo_buf s = { 0 }, plain = { 0 };
	kheo_stream_tx tx;
	kheo_stream_rx rx;
	kheo_stream_event ev;
	size_t used;
	chan ch;

	(void)state;
	chan_open(&ch);
	assert_int_equal(kheo_stream_tx_init(&tx, &s, ch.ctx), KHEO_OK);
	assert_int_equal(kheo_stream_tx_record(&tx, &s, (const uint8_t *)"abc",
				 3, 1), KHEO_OK);
	kheo_stream_rx_init(&rx, ch.srx);
	kheo__fault_set(1, 0);
	assert_int_equal(kheo_stream_rx_read(&rx, &plain, &ev, &used, s.p,
				 s.len, &why), KHEO_ENOMEM);
	kheo__fault_set(0, 0);
	assert_int_equal(used, KHEO_STREAM_HEADER_SIZE); /* the header only */
	kheo_buf_reset(&plain);
	assert_int_equal(kheo_stream_rx_read(&rx, &plain, &ev, &used,
				 s.p + KHEO_STREAM_HEADER_SIZE,
				 s.len - KHEO_STREAM_HEADER_SIZE, &why), KHEO_OK);
	assert_int_equal(ev, KHEO_STREAM_FINAL);
	assert_int_equal(plain.len, 3);
	kheo_stream_rx_wipe(&rx);
	kheo_stream_tx_wipe(&tx);
	kheo_buf_free(&s);
	kheo_buf_free(&plain);
}

static void stream_refuses_altered_reordered_dropped_reflected(void **state)
{
	kheo_refusal why = { 0 };
	kheo_buf s = { 0 }, t = { 0 };
	kheo_stream_tx tx;
	size_t n, off[4], len[4], i;
	chan ch;

	(void)state;
	chan_open(&ch);
	assert_int_equal(kheo_stream_tx_init(&tx, &s, ch.ctx), KHEO_OK);
	for (i = 0; i < 4; i++) {
		uint8_t rec[10];

		memset(rec, (int)i, sizeof(rec));
		off[i] = s.len;
		assert_int_equal(kheo_stream_tx_record(&tx, &s, rec,
					 sizeof(rec), i == 3), KHEO_OK);
		len[i] = s.len - off[i];
	}
	kheo_stream_tx_wipe(&tx);

	/* every single altered byte: header, length or ciphertext */
	for (i = 0; i < s.len; i++) {
		size_t recs;
		int reason;

		s.p[i] ^= 0x01;
		reason = feed(ch.srx, s.p, s.len, 0, 0, &recs, &why);
		s.p[i] ^= 0x01;
		/* refused, or (the last record's length made longer)
		 * still waiting for bytes that would not help; never a
		 * record that was altered, never a clean end */
		if (reason == KHEO_R_NONE)
			fail_msg("altered byte %zu accepted", i);
		assert_true(reason == KHEO_R_BAD_RECORD ||
			reason == KHEO_R_TOO_BIG || reason == -1);
		assert_true(recs <= 4);
	}

	/* two records swapped */
	kheo_buf_put(&t, s.p, off[1]);
	kheo_buf_put(&t, s.p + off[2], len[2]);
	kheo_buf_put(&t, s.p + off[1], len[1]);
	kheo_buf_put(&t, s.p + off[3], len[3]);
	assert_int_equal(feed(ch.srx, t.p, t.len, 0, 0, &n, &why),
		KHEO_R_BAD_RECORD);
	/* one dropped */
	kheo_buf_reset(&t);
	kheo_buf_put(&t, s.p, off[1]);
	kheo_buf_put(&t, s.p + off[2], s.len - off[2]);
	assert_int_equal(feed(ch.srx, t.p, t.len, 0, 0, &n, &why),
		KHEO_R_BAD_RECORD);
	/* one repeated */
	kheo_buf_reset(&t);
	kheo_buf_put(&t, s.p, off[2]);
	kheo_buf_put(&t, s.p + off[1], s.len - off[1]);
	assert_int_equal(feed(ch.srx, t.p, t.len, 0, 0, &n, &why),
		KHEO_R_BAD_RECORD);
	/* reflected: the client's own records back at it */
	assert_int_equal(feed(ch.crx, s.p, s.len, 0, 0, &n, &why),
		KHEO_R_BAD_RECORD);
	assert_int_equal(n, 0);
	/* a byte after the FINAL record */
	kheo_buf_reset(&t);
	kheo_buf_put(&t, s.p, s.len);
	kheo_buf_put_u8(&t, 0);
	assert_int_equal(feed(ch.srx, t.p, t.len, 0, 0, &n, &why),
		KHEO_R_TRAILING_BYTES);
	assert_int_equal(why.offset, s.len);
	kheo_buf_free(&s);
	kheo_buf_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(published_vectors_of_the_reference_implementation),
		cmocka_unit_test(round_trip_agrees_on_keys_and_peers),
		cmocka_unit_test(seeded_handshakes_repeat_random_ones_differ),
		cmocka_unit_test(wrong_network_key_is_refused_at_the_hello),
		cmocka_unit_test(client_expecting_another_server_key_is_refused),
		cmocka_unit_test(client_init_refuses_a_key_that_is_not_one),
		cmocka_unit_test(every_altered_byte_of_msg2_msg3_msg4_is_refused),
		cmocka_unit_test(replayed_messages_fail_against_fresh_states),
		cmocka_unit_test(bad_signatures_inside_good_boxes_are_refused),
		cmocka_unit_test(wrong_lengths_and_low_order_keys_are_refused),
		cmocka_unit_test(stream_keys_are_derived_as_documented),
		cmocka_unit_test(stream_round_trip_whole_and_byte_by_byte),
		cmocka_unit_test(stream_cut_anywhere_is_need_more),
		cmocka_unit_test(stream_refuses_too_big_before_allocating),
		cmocka_unit_test(stream_out_of_memory_leaves_the_record_to_retry),
		cmocka_unit_test(stream_refuses_altered_reordered_dropped_reflected),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("handshake", tests, NULL, NULL);
}
