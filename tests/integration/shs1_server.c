/*
 * shs1_server.c - the server role of proto/handshake.c over stdin and
 * stdout, as the cross-language SHS v1 test suite expects it (the npm
 * package shs1-test, README "Testing the Server Role"):
 *
 *   shs1_server NETWORK_KEY_HEX SERVER_SK_HEX SERVER_PK_HEX
 *
 * reads msg1 (64 bytes), writes msg2 (64), reads msg3 (112), then writes
 * msg4 (80) and the outcome: encryption key (32), encryption nonce (24),
 * decryption key (32), decryption nonce (24).  On any refusal it writes
 * nothing more, says why on stderr and exits with status 1.
 *
 * Not part of `make test` (the suite needs node).  To run it by hand:
 *
 *   make build/libkheo.a
 *   cc -std=c11 -Iproto -Iclient-core/include -o build/shs1_server \
 *       tests/integration/shs1_server.c build/libkheo.a \
 *       $(pkg-config --libs libsodium libzstd libutf8proc sqlite3 jansson) -lm
 *   npm install shs1-test@1.1.1
 *   node_modules/.bin/shs1testserver build/shs1_server [SEED]
 */
#include "proto.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void arg_hex(uint8_t *out, size_t n, const char *hex, const char *what)
{
	if (kheo_unhex(out, n, hex, strlen(hex)) != KHEO_OK) {
		fprintf(stderr, "shs1_server: %s: expected %zu bytes of hex\n",
			what, n);
		exit(2);
	}
}

static void read_exact(uint8_t *p, size_t n)
{
	if (fread(p, 1, n, stdin) != n) {
		fprintf(stderr, "shs1_server: input ended early\n");
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
	fprintf(stderr, "shs1_server: refused: %s: %s\n",
		kheo_reason_name(why->reason), why->msg);
	exit(1);
}

int main(int argc, char **argv)
{
	uint8_t netkey[32], sk[64], pk[32], m1[64], m2[64], m3[112], m4[80];
	kheo_refusal why = { 0 };
	kheo_shs_keys keys;
	kheo_shs st;

	if (argc != 4) {
		fprintf(stderr, "usage: shs1_server NETKEY SK PK (hex)\n");
		return 2;
	}
	if (sodium_init() < 0)
		return 2;
	arg_hex(netkey, 32, argv[1], "network key");
	arg_hex(sk, 64, argv[2], "server secret key");
	arg_hex(pk, 32, argv[3], "server public key");
	if (memcmp(sk + 32, pk, 32) != 0) {
		fprintf(stderr, "shs1_server: the public key is not the "
				"secret key's\n");
		return 2;
	}
	kheo_shs_server_init(&st, netkey, sk, NULL);
	read_exact(m1, sizeof(m1));
	refused(kheo_shs_read_msg1(&st, m1, sizeof(m1), &why), &why);
	kheo_shs_write_msg2(&st, m2);
	write_all(m2, sizeof(m2));
	read_exact(m3, sizeof(m3));
	refused(kheo_shs_read_msg3(&st, m3, sizeof(m3), &why), &why);
	kheo_shs_write_msg4(&st, m4, &keys);
	write_all(m4, sizeof(m4));
	write_all(keys.enc_key, sizeof(keys.enc_key));
	write_all(keys.enc_nonce, sizeof(keys.enc_nonce));
	write_all(keys.dec_key, sizeof(keys.dec_key));
	write_all(keys.dec_nonce, sizeof(keys.dec_nonce));
	kheo_shs_keys_wipe(&keys);
	sodium_memzero(sk, sizeof(sk));
	return 0;
}
