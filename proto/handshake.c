/*
 * handshake.c - Scuttlebutt's Secret Handshake, version 1 (SHS), the
 * mutually authenticated key exchange that opens kheo's secure channel
 * (docs/protocol.md, "Secure channel").
 *
 * This follows the published design as it is: Dominic Tarr, "Designing a
 * Secret Handshake: Authenticated Key Exchange as a Capability System"
 * (2015), and the "Handshake" section of the Scuttlebutt protocol guide,
 * and is checked against the reference implementation's test vectors
 * (tests/vectors/shs1/).  Nothing in it is kheo's own; the names follow the
 * paper (K the network key, a/b the ephemeral keys, A/B the long-term
 * ones):
 *
 *   msg1  hmac[K](a_p) | a_p
 *   msg2  hmac[K](b_p) | b_p
 *   msg3  box[sha256(K | ab | aB)](H),  H = sign[A](K | B_p | sha256(ab)) | A_p
 *   msg4  box[sha256(K | ab | aB | Ab)](sign[B](K | H | sha256(ab)))
 *
 * with HMAC-SHA-512-256 (crypto_auth), Curve25519 products (crypto_scalarmult,
 * long-term Ed25519 keys converted where a product needs them), and
 * crypto_secretbox under an all-zero nonce (each box key is used once).
 *
 * What it is not: a transport.  It reads no socket and keeps no clock; the
 * caller moves the messages.  It also does not decide whether a peer may
 * sync: that is the certificates' business, after the handshake (or, on a
 * server, between kheo_shs_read_msg3 and kheo_shs_write_msg4).
 *
 * One addition to the reference: a peer ephemeral key of low order (whose
 * product with ours is zero) is refused as bad-key.  An honest peer never
 * sends one, and accepting it would make `ab` a constant.
 */
#include "proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t zero_nonce[crypto_secretbox_NONCEBYTES];

/*
 * A step out of order, or the other role's, is a bug in the caller: abort,
 * as libsodium does on misuse.  Not an error code a caller could ignore.
 */
static void expect(const kheo_shs *st, int client, int step)
{
	if (st->client != client || st->step != step)
		abort();
}

/* Refuse: wipe every secret, mark the handshake over, fill `why`. */
static int fail(kheo_shs *st, kheo_refusal *why, int reason, size_t offset,
	const char *what)
{
	kheo_shs_wipe(st);
	return kheo__refuse(why, reason, offset, "%s", what);
}

static int check_len(kheo_shs *st, size_t len, size_t want, const char *what,
	kheo_refusal *why)
{
	char msg[120];

	if (len == want)
		return KHEO_OK;
	snprintf(msg, sizeof(msg), "%s: %zu bytes, expected %zu", what, len,
		want);
	return fail(st, why, len < want ? KHEO_R_TRUNCATED :
		KHEO_R_TRAILING_BYTES, len < want ? len : want, msg);
}

/* sha256 of p1, then of p2, p3 and p4 where they are not NULL. */
static void sha256_cat(uint8_t out[32], const uint8_t *p1, size_t n1,
	const uint8_t *p2, size_t n2, const uint8_t *p3, size_t n3,
	const uint8_t *p4, size_t n4)
{
	crypto_hash_sha256_state h;

	crypto_hash_sha256_init(&h);
	crypto_hash_sha256_update(&h, p1, n1);
	if (p2)
		crypto_hash_sha256_update(&h, p2, n2);
	if (p3)
		crypto_hash_sha256_update(&h, p3, n3);
	if (p4)
		crypto_hash_sha256_update(&h, p4, n4);
	crypto_hash_sha256_final(&h, out);
	sodium_memzero(&h, sizeof(h));
}

/* The box key of msg3: sha256(K | ab | aB). */
static void key_msg3(const kheo_shs *st, uint8_t out[32])
{
	sha256_cat(out, st->netkey, 32, st->ab, 32, st->aB, 32, NULL, 0);
}

/* The box key of msg4: sha256(K | ab | aB | Ab). */
static void key_msg4(const kheo_shs *st, uint8_t out[32])
{
	sha256_cat(out, st->netkey, 32, st->ab, 32, st->aB, 32, st->Ab, 32);
}

/*
 * The ephemeral pair: an Ed25519 pair from the seed, converted to
 * Curve25519, which is how the reference implementation makes it (and so
 * how its vectors name it: the "random" field is this seed).  Any
 * Curve25519 pair would interoperate; this one lets vectors inject it.
 */
static void make_ephemeral(kheo_shs *st, const uint8_t *seed)
{
	uint8_t s[32], edpk[32], edsk[64];

	if (seed)
		memcpy(s, seed, sizeof(s));
	else
		randombytes_buf(s, sizeof(s));
	crypto_sign_seed_keypair(edpk, edsk, s);
	if (crypto_sign_ed25519_pk_to_curve25519(st->eph_pk, edpk) != 0)
		abort(); /* a key libsodium just made always converts */
	crypto_sign_ed25519_sk_to_curve25519(st->eph_sk, edsk);
	sodium_memzero(s, sizeof(s));
	sodium_memzero(edsk, sizeof(edsk));
}

static void init_common(kheo_shs *st, int client, const uint8_t *netkey,
	const uint8_t *sk, const uint8_t *seed)
{
	memset(st, 0, sizeof(*st));
	st->client = client;
	memcpy(st->netkey, netkey, KHEO_SHS_NETKEY_SIZE);
	st->sk = sk;
	memcpy(st->pk, sk + 32, KHEO_KEY_SIZE); /* libsodium: seed | pk */
	make_ephemeral(st, seed);
}

int kheo_shs_client_init(kheo_shs *st,
	const uint8_t netkey[KHEO_SHS_NETKEY_SIZE],
	const uint8_t sk[KHEO_SECRET_SIZE],
	const uint8_t server_pk[KHEO_KEY_SIZE], const uint8_t *seed)
{
	uint8_t curve[32];

	/* A server key that does not convert can never be reached: say so
	 * now rather than as a bad-auth from the server later. */
	if (crypto_sign_ed25519_pk_to_curve25519(curve, server_pk) != 0) {
		memset(st, 0, sizeof(*st));
		st->client = 1;
		st->step = -1;
		return KHEO_EINVAL;
	}
	init_common(st, 1, netkey, sk, seed);
	memcpy(st->peer, server_pk, KHEO_KEY_SIZE);
	return KHEO_OK;
}

void kheo_shs_server_init(kheo_shs *st,
	const uint8_t netkey[KHEO_SHS_NETKEY_SIZE],
	const uint8_t sk[KHEO_SECRET_SIZE], const uint8_t *seed)
{
	init_common(st, 0, netkey, sk, seed);
}

/* ---------------------------------------------------------------- hellos */

static void write_hello(const kheo_shs *st, uint8_t out[64])
{
	crypto_auth(out, st->eph_pk, 32, st->netkey);
	memcpy(out + 32, st->eph_pk, 32);
}

/* Check a hello's HMAC, learn the peer's ephemeral key, compute ab. */
static int read_hello(kheo_shs *st, const uint8_t *msg, size_t len,
	const char *what, kheo_refusal *why)
{
	int err;

	if ((err = check_len(st, len, 64, what, why)) < 0)
		return err;
	if (crypto_auth_verify(msg, msg + 32, 32, st->netkey) != 0)
		return fail(st, why, KHEO_R_BAD_HELLO, 0, st->client ?
			"msg2 (server hello): HMAC does not verify under our "
			"network key: another deployment, or altered" :
			"msg1 (client hello): HMAC does not verify under our "
			"network key: another deployment, or altered");
	memcpy(st->peer_eph, msg + 32, 32);
	if (crypto_scalarmult(st->ab, st->eph_sk, st->peer_eph) != 0)
		return fail(st, why, KHEO_R_BAD_KEY, 32, st->client ?
			"msg2 (server hello): ephemeral key of low order" :
			"msg1 (client hello): ephemeral key of low order");
	return KHEO_OK;
}

void kheo_shs_write_msg1(kheo_shs *st, uint8_t out[KHEO_SHS_MSG1_SIZE])
{
	expect(st, 1, 0);
	write_hello(st, out);
	st->step = 1;
}

int kheo_shs_read_msg1(kheo_shs *st, const uint8_t *msg, size_t len,
	kheo_refusal *why)
{
	int err;

	expect(st, 0, 0);
	if ((err = read_hello(st, msg, len, "msg1 (client hello)", why)) < 0)
		return err;
	st->step = 1;
	return KHEO_OK;
}

void kheo_shs_write_msg2(kheo_shs *st, uint8_t out[KHEO_SHS_MSG2_SIZE])
{
	expect(st, 0, 1);
	write_hello(st, out);
	st->step = 2;
}

int kheo_shs_read_msg2(kheo_shs *st, const uint8_t *msg, size_t len,
	kheo_refusal *why)
{
	uint8_t curve[32];
	int err;

	expect(st, 1, 1);
	if ((err = read_hello(st, msg, len, "msg2 (server hello)", why)) < 0)
		return err;
	/* aB: our ephemeral key times the server's long-term key.  The key
	 * converted in kheo_shs_client_init, and a clamped scalar times a
	 * point of the main subgroup is never zero, so this cannot fail;
	 * checked all the same. */
	if (crypto_sign_ed25519_pk_to_curve25519(curve, st->peer) != 0 ||
	    crypto_scalarmult(st->aB, st->eph_sk, curve) != 0)
		return fail(st, why, KHEO_R_BAD_KEY, 0,
			"the server's long-term key is of low order");
	st->step = 2;
	return KHEO_OK;
}

/* ------------------------------------------------------------ proofs */

void kheo_shs_write_msg3(kheo_shs *st, uint8_t out[KHEO_SHS_MSG3_SIZE])
{
	uint8_t shash[32], signed_[96], key[32], csk[32];

	expect(st, 1, 2);
	/* H = sign[A](K | B_p | sha256(ab)) | A_p */
	crypto_hash_sha256(shash, st->ab, 32);
	memcpy(signed_, st->netkey, 32);
	memcpy(signed_ + 32, st->peer, 32);
	memcpy(signed_ + 64, shash, 32);
	crypto_sign_detached(st->hello, NULL, signed_, sizeof(signed_),
		st->sk);
	memcpy(st->hello + 64, st->pk, 32);
	key_msg3(st, key);
	crypto_secretbox_easy(out, st->hello, sizeof(st->hello), zero_nonce,
		key);
	/* Ab: our long-term key (as Curve25519) times the server's
	 * ephemeral key, needed to open msg4.  b_p gave a non-zero ab, so it
	 * is not of low order and neither is this product. */
	crypto_sign_ed25519_sk_to_curve25519(csk, st->sk);
	if (crypto_scalarmult(st->Ab, csk, st->peer_eph) != 0)
		abort();
	sodium_memzero(csk, sizeof(csk));
	sodium_memzero(key, sizeof(key));
	sodium_memzero(shash, sizeof(shash));
	sodium_memzero(signed_, sizeof(signed_));
	st->step = 3;
}

int kheo_shs_read_msg3(kheo_shs *st, const uint8_t *msg, size_t len,
	kheo_refusal *why)
{
	uint8_t csk[32], key[32], shash[32], signed_[96], curve[32];
	int err, ok;

	expect(st, 0, 2);
	if ((err = check_len(st, len, KHEO_SHS_MSG3_SIZE,
		     "msg3 (client authenticate)", why)) < 0)
		return err;
	/* aB, from the server's side: our long-term key times a_p. */
	crypto_sign_ed25519_sk_to_curve25519(csk, st->sk);
	ok = crypto_scalarmult(st->aB, csk, st->peer_eph) == 0;
	sodium_memzero(csk, sizeof(csk));
	if (!ok)
		abort(); /* a_p gave a non-zero ab: not of low order */
	key_msg3(st, key);
	ok = crypto_secretbox_open_easy(st->hello, msg, len, zero_nonce,
		     key) == 0;
	sodium_memzero(key, sizeof(key));
	if (!ok)
		return fail(st, why, KHEO_R_BAD_AUTH, 0,
			"msg3 (client authenticate) does not open: the client "
			"expects another server key, or the bytes were altered "
			"or replayed from another handshake");
	/* The client signed K | B_p | sha256(ab) with the key it names. */
	crypto_hash_sha256(shash, st->ab, 32);
	memcpy(signed_, st->netkey, 32);
	memcpy(signed_ + 32, st->pk, 32);
	memcpy(signed_ + 64, shash, 32);
	ok = crypto_sign_verify_detached(st->hello, signed_, sizeof(signed_),
		     st->hello + 64) == 0;
	sodium_memzero(shash, sizeof(shash));
	sodium_memzero(signed_, sizeof(signed_));
	if (!ok)
		return fail(st, why, KHEO_R_BAD_SIGNATURE, 0,
			"msg3 (client authenticate): the client's signature "
			"does not verify with the key it names");
	/* Ab: our ephemeral key times the client's long-term key. */
	if (crypto_sign_ed25519_pk_to_curve25519(curve, st->hello + 64) != 0 ||
	    crypto_scalarmult(st->Ab, st->eph_sk, curve) != 0)
		return fail(st, why, KHEO_R_BAD_KEY, 0,
			"msg3 (client authenticate): the client's key does "
			"not convert to Curve25519");
	memcpy(st->peer, st->hello + 64, KHEO_KEY_SIZE);
	st->step = 3;
	return KHEO_OK;
}

/* ------------------------------------------------------------ outcome */

/*
 * The session secrets, as SHS version 1 hands them to box-stream:
 * S = sha256(sha256(K | ab | aB | Ab)); the key for what a side sends is
 * sha256(S | receiver's long-term key), its starting nonce the first 24
 * bytes of the HMAC in the receiver's hello.  Then every secret goes.
 */
static void finish(kheo_shs *st, kheo_shs_keys *keys)
{
	uint8_t k4[32], s[32], mac[32];

	key_msg4(st, k4);
	crypto_hash_sha256(s, k4, 32);
	memset(keys, 0, sizeof(*keys));
	keys->client = st->client;
	memcpy(keys->peer, st->peer, KHEO_KEY_SIZE);
	sha256_cat(keys->enc_key, s, 32, st->peer, 32, NULL, 0, NULL, 0);
	sha256_cat(keys->dec_key, s, 32, st->pk, 32, NULL, 0, NULL, 0);
	crypto_auth(mac, st->peer_eph, 32, st->netkey);
	memcpy(keys->enc_nonce, mac, KHEO_SHS_NONCE_SIZE);
	crypto_auth(mac, st->eph_pk, 32, st->netkey);
	memcpy(keys->dec_nonce, mac, KHEO_SHS_NONCE_SIZE);
	sodium_memzero(k4, sizeof(k4));
	sodium_memzero(s, sizeof(s));
	/* Keep the public outcome (role, keys' owners); forget the rest. */
	sodium_memzero(st->eph_sk, sizeof(st->eph_sk));
	sodium_memzero(st->ab, sizeof(st->ab));
	sodium_memzero(st->aB, sizeof(st->aB));
	sodium_memzero(st->Ab, sizeof(st->Ab));
	sodium_memzero(st->hello, sizeof(st->hello));
	sodium_memzero(st->netkey, sizeof(st->netkey));
	st->sk = NULL;
	st->step = 4;
}

void kheo_shs_write_msg4(kheo_shs *st, uint8_t out[KHEO_SHS_MSG4_SIZE],
	kheo_shs_keys *keys)
{
	uint8_t shash[32], signed_[160], sig[64], key[32];

	expect(st, 0, 3);
	/* sign[B](K | H | sha256(ab)) */
	crypto_hash_sha256(shash, st->ab, 32);
	memcpy(signed_, st->netkey, 32);
	memcpy(signed_ + 32, st->hello, 96);
	memcpy(signed_ + 128, shash, 32);
	crypto_sign_detached(sig, NULL, signed_, sizeof(signed_), st->sk);
	key_msg4(st, key);
	crypto_secretbox_easy(out, sig, sizeof(sig), zero_nonce, key);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(shash, sizeof(shash));
	sodium_memzero(signed_, sizeof(signed_));
	finish(st, keys);
}

int kheo_shs_read_msg4(kheo_shs *st, const uint8_t *msg, size_t len,
	kheo_shs_keys *keys, kheo_refusal *why)
{
	uint8_t key[32], sig[64], shash[32], signed_[160];
	int err, ok;

	expect(st, 1, 3);
	if ((err = check_len(st, len, KHEO_SHS_MSG4_SIZE,
		     "msg4 (server accept)", why)) < 0)
		return err;
	key_msg4(st, key);
	ok = crypto_secretbox_open_easy(sig, msg, len, zero_nonce, key) == 0;
	sodium_memzero(key, sizeof(key));
	if (!ok)
		return fail(st, why, KHEO_R_BAD_AUTH, 0,
			"msg4 (server accept) does not open: the server does "
			"not hold the key we expect, or the bytes were altered");
	crypto_hash_sha256(shash, st->ab, 32);
	memcpy(signed_, st->netkey, 32);
	memcpy(signed_ + 32, st->hello, 96);
	memcpy(signed_ + 128, shash, 32);
	ok = crypto_sign_verify_detached(sig, signed_, sizeof(signed_),
		     st->peer) == 0;
	sodium_memzero(shash, sizeof(shash));
	sodium_memzero(signed_, sizeof(signed_));
	if (!ok)
		return fail(st, why, KHEO_R_BAD_SIGNATURE, 0,
			"msg4 (server accept): the server's signature does "
			"not verify with the key we expect");
	finish(st, keys);
	return KHEO_OK;
}

void kheo_shs_wipe(kheo_shs *st)
{
	int client = st->client;

	sodium_memzero(st, sizeof(*st));
	st->client = client;
	st->step = -1;
}

void kheo_shs_keys_wipe(kheo_shs_keys *keys)
{
	sodium_memzero(keys, sizeof(*keys));
}
