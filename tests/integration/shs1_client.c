/*
 * shs1_client.c - the client role of proto/handshake.c over stdin and
 * stdout, as the cross-language SHS v1 test suite expects it (the npm
 * package shs1-test, README "Testing the Client Role"):
 *
 *   shs1_client NETWORK_KEY_HEX SERVER_PK_HEX
 *
 * with a fresh long-term key of its own: writes msg1 (64 bytes), reads
 * msg2 (64), writes msg3 (112), reads msg4 (80), then writes the outcome:
 * encryption key (32), encryption nonce (24), decryption key (32),
 * decryption nonce (24).  On any refusal it writes nothing more, says why
 * on stderr and exits with status 1.
 *
 * Not part of `make test` (the suite needs node); built and run by hand
 * as shs1_server.c says, with shs1testclient.
 */
#include "proto.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void arg_hex(uint8_t *out, size_t n, const char *hex, const char *what)
{
	if (kheo_unhex(out, n, hex, strlen(hex)) != KHEO_OK) {
		fprintf(stderr, "shs1_client: %s: expected %zu bytes of hex\n",
			what, n);
		exit(2);
	}
}

static void read_exact(uint8_t *p, size_t n)
{
	if (fread(p, 1, n, stdin) != n) {
		fprintf(stderr, "shs1_client: input ended early\n");
		exit(1);
	}
}

static void write_all(const uint8_t *p, size_t n)
{
	if (fwrite(p, 1, n, stdout) != n || fflush(stdout) != 0)
		exit(1);
}

static void refused(int err, const kheo_refusal *why)
{
	if (err == KHEO_OK)
		return;
	fprintf(stderr, "shs1_client: refused: %s: %s\n",
		kheo_reason_name(why->reason), why->msg);
	exit(1);
}

int main(int argc, char **argv)
{
	uint8_t netkey[32], server[32], pk[32], sk[64];
	uint8_t m1[64], m2[64], m3[112], m4[80];
	kheo_refusal why = { 0 };
	kheo_shs_keys keys;
	kheo_shs st;

	if (argc != 3) {
		fprintf(stderr, "usage: shs1_client NETKEY SERVER_PK (hex)\n");
		return 2;
	}
	if (sodium_init() < 0)
		return 2;
	arg_hex(netkey, 32, argv[1], "network key");
	arg_hex(server, 32, argv[2], "server public key");
	crypto_sign_keypair(pk, sk);
	if (kheo_shs_client_init(&st, netkey, sk, server, NULL) != KHEO_OK) {
		fprintf(stderr, "shs1_client: the server key is not usable\n");
		return 1;
	}
	kheo_shs_write_msg1(&st, m1);
	write_all(m1, sizeof(m1));
	read_exact(m2, sizeof(m2));
	refused(kheo_shs_read_msg2(&st, m2, sizeof(m2), &why), &why);
	kheo_shs_write_msg3(&st, m3);
	write_all(m3, sizeof(m3));
	read_exact(m4, sizeof(m4));
	refused(kheo_shs_read_msg4(&st, m4, sizeof(m4), &keys, &why), &why);
	write_all(keys.enc_key, sizeof(keys.enc_key));
	write_all(keys.enc_nonce, sizeof(keys.enc_nonce));
	write_all(keys.dec_key, sizeof(keys.dec_key));
	write_all(keys.dec_nonce, sizeof(keys.dec_nonce));
	kheo_shs_keys_wipe(&keys);
	sodium_memzero(sk, sizeof(sk));
	return 0;
}
