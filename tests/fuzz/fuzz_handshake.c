/*
 * fuzz_handshake.c - libFuzzer target for what the secure channel reads
 * from a peer before it trusts anything: the handshake messages a server
 * and a client receive (proto/handshake.c) and the secretstream records
 * (proto/stream.c).  The first input byte picks the path; the rest is the
 * input:
 *
 *   0  a server (fixed keys and ephemeral seed) reads msg1 from the first
 *      64 bytes (or fewer), then msg3 from all the rest;
 *   1  a client (fixed keys and seed) reads msg2, then msg4, likewise;
 *   2  a stream decoder under a fixed key reads the rest as a stream, fed
 *      in pieces whose sizes the input's first bytes choose;
 *   3  a genuine stream (records sized by the input) with one byte
 *      altered where the input says, fed in pieces: every record the
 *      decoder delivers must be one that was sent, unaltered, in order.
 *
 * The fixed keys make the genuine transcripts of the seed corpus reach
 * the deep paths (a handshake that completes).  A refusal must always
 * carry a reason and a message; the decoder never consumes more than it
 * is given nor delivers a record above the cap.
 */
#include "proto.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t netkey[32] = "kheo fuzz network key, 32 bytes";
static const uint8_t eph_client[32] = { 0xec };
static const uint8_t eph_server[32] = { 0xe5 };
static const uint8_t stream_key[32] = { 0x5c };
static uint8_t client_pk[32], client_sk[64], server_pk[32], server_sk[64];

static void keys(void)
{
	static int done;
	uint8_t seed[32];

	if (done)
		return;
	if (sodium_init() < 0)
		abort();
	memset(seed, 0xc1, sizeof(seed));
	crypto_sign_seed_keypair(client_pk, client_sk, seed);
	memset(seed, 0x5e, sizeof(seed));
	crypto_sign_seed_keypair(server_pk, server_sk, seed);
	done = 1;
}

static void check(int err, const kheo_refusal *why)
{
	if (err != KHEO_OK && err != KHEO_ENOMEM &&
	    (why->reason == KHEO_R_NONE || why->msg[0] == '\0'))
		abort();
}

static void server_reads(const uint8_t *p, size_t n)
{
	kheo_refusal why = { 0 };
	uint8_t m2[64], m4[80];
	kheo_shs_keys k;
	kheo_shs st;
	size_t n1 = n < 64 ? n : 64;
	int err;

	kheo_shs_server_init(&st, netkey, server_sk, eph_server);
	err = kheo_shs_read_msg1(&st, p, n1, &why);
	check(err, &why);
	if (err == KHEO_OK) {
		kheo_shs_write_msg2(&st, m2);
		err = kheo_shs_read_msg3(&st, p + n1, n - n1, &why);
		check(err, &why);
		if (err == KHEO_OK) {
			/* only the holder of a key signs for it */
			if (memcmp(st.peer, client_pk, 32) != 0)
				abort();
			kheo_shs_write_msg4(&st, m4, &k);
		}
	}
	if (err != KHEO_OK && st.step != -1)
		abort();
	kheo_shs_wipe(&st);
}

static void client_reads(const uint8_t *p, size_t n)
{
	kheo_refusal why = { 0 };
	uint8_t m1[64], m3[112];
	kheo_shs_keys k;
	kheo_shs st;
	size_t n2 = n < 64 ? n : 64;
	int err;

	if (kheo_shs_client_init(&st, netkey, client_sk, server_pk,
		    eph_client) != KHEO_OK)
		abort();
	kheo_shs_write_msg1(&st, m1);
	err = kheo_shs_read_msg2(&st, p, n2, &why);
	check(err, &why);
	if (err == KHEO_OK) {
		kheo_shs_write_msg3(&st, m3);
		err = kheo_shs_read_msg4(&st, p + n2, n - n2, &k, &why);
		check(err, &why);
		if (err == KHEO_OK && memcmp(k.peer, server_pk, 32) != 0)
			abort();
	}
	if (err != KHEO_OK && st.step != -1)
		abort();
	kheo_shs_wipe(&st);
}

/*
 * Feed [p, p+n) to a decoder in pieces of chunk[i % nchunk] + 1 bytes.
 * `sent`/`lens`/`nsent`: the records that were sent, to compare with
 * (NULL: anything goes).  Returns the number of records delivered.
 */
static size_t decode(const uint8_t *p, size_t n, const uint8_t *chunk,
	size_t nchunk, const uint8_t *const *sent, const size_t *lens,
	size_t nsent)
{
	kheo_stream_rx rx;
	kheo_buf plain = { 0 };
	kheo_refusal why = { 0 };
	kheo_stream_event ev;
	size_t have = 0, start = 0, used, records = 0, i = 0;
	int err = KHEO_OK, final = 0;

	kheo_stream_rx_init(&rx, stream_key);
	while (err == KHEO_OK) {
		size_t step = nchunk ? (size_t)chunk[i++ % nchunk] + 1 : n;

		have = step < n - have ? have + step : n;
		for (;;) {
			err = kheo_stream_rx_read(&rx, &plain, &ev, &used,
				p + start, have - start, &why);
			check(err, &why);
			if (err != KHEO_OK)
				break;
			if (used > have - start)
				abort();
			start += used;
			if (ev == KHEO_STREAM_MORE)
				break;
			if (final || plain.len > KHEO_STREAM_RECORD_MAX)
				abort();
			if (sent && (records >= nsent ||
				    plain.len != lens[records] ||
				    (plain.len && memcmp(plain.p, sent[records],
					     plain.len) != 0)))
				abort();
			records++;
			final = ev == KHEO_STREAM_FINAL;
		}
		if (have == n)
			break;
	}
	kheo_stream_rx_wipe(&rx);
	kheo_buf_free(&plain);
	return records;
}

static void genuine_stream(const uint8_t *p, size_t n)
{
	const uint8_t *sent[8];
	size_t lens[8], nsent, i, at = 0, where;
	kheo_stream_tx tx;
	kheo_buf s = { 0 };
	uint8_t flip;

	if (n < 4)
		return;
	nsent = (size_t)(p[0] % 8) + 1;
	flip = p[1];
	where = (size_t)p[2] << 8 | p[3];
	p += 4;
	n -= 4;
	if (kheo_stream_tx_init(&tx, &s, stream_key) != KHEO_OK)
		return;
	/* record i: the next p[...] bytes, as many as one input byte says */
	for (i = 0; i < nsent; i++) {
		size_t len = at < n ? p[at++] : 0;

		if (len > n - at)
			len = n - at;
		sent[i] = p + at;
		lens[i] = len;
		at += len;
		if (kheo_stream_tx_record(&tx, &s, sent[i], len, i + 1 == nsent)
			!= KHEO_OK)
			goto done;
	}
	if (flip && s.len)
		s.p[where % s.len] ^= flip;
	i = decode(s.p, s.len, p + at, n - at, sent, lens, nsent);
	/* unaltered, everything arrives */
	if (!flip && i != nsent)
		abort();
done:
	kheo_stream_tx_wipe(&tx);
	kheo_buf_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	keys();
	switch (data[0] % 4) {
	case 0:
		server_reads(data + 1, size - 1);
		break;
	case 1:
		client_reads(data + 1, size - 1);
		break;
	case 2: {
		/* the first byte: how many chunk sizes follow */
		size_t nchunk = size > 1 ? data[1] % 8 : 0;

		if (size < 2 + nchunk)
			return 0;
		decode(data + 2 + nchunk, size - 2 - nchunk, data + 2, nchunk,
			NULL, NULL, 0);
		break;
	}
	default:
		genuine_stream(data + 1, size - 1);
	}
	return 0;
}
