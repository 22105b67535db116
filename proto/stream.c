/*
 * stream.c - the records of kheo's secure channel once the handshake is
 * done (docs/protocol.md, "Secure channel"): one libsodium
 * crypto_secretstream (XChaCha20-Poly1305) per direction.
 *
 *   stream  header (24 bytes) | record | record | ... | FINAL record
 *   record  length (u32, big-endian: the ciphertext's bytes) | ciphertext
 *
 * Each ciphertext is one secretstream push of at most 1 MiB of plaintext,
 * with the 4 length bytes as its additional data; the last one of a clean
 * close carries TAG_FINAL, so a stream cut short is told from a finished
 * one.  secretstream numbers the records itself: a dropped, repeated or
 * reordered record fails to authenticate.
 *
 * What it is not: a transport or a buffer manager.  The encoder appends to
 * a kheo_buf; the decoder is handed the bytes received so far and says how
 * many it consumed, so nothing here keeps input.  A declared length above
 * the cap is refused as soon as its 4 bytes are in, before anything is
 * allocated, so a peer can never make us hold more than one record.
 */
#include "proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES

_Static_assert(ABYTES == KHEO_STREAM_TAG_SIZE, "secretstream's ABYTES");
_Static_assert(crypto_secretstream_xchacha20poly1305_HEADERBYTES ==
	KHEO_STREAM_HEADER_SIZE, "secretstream's HEADERBYTES");
_Static_assert(crypto_secretstream_xchacha20poly1305_KEYBYTES ==
	KHEO_STREAM_KEY_SIZE, "secretstream's KEYBYTES");

static void derive(uint8_t out[KHEO_STREAM_KEY_SIZE], const uint8_t key[32],
	const char *ctx)
{
	crypto_generichash(out, KHEO_STREAM_KEY_SIZE, (const uint8_t *)ctx,
		strlen(ctx), key, KHEO_SHS_KEY_SIZE);
}

void kheo_stream_keys(uint8_t tx[KHEO_STREAM_KEY_SIZE],
	uint8_t rx[KHEO_STREAM_KEY_SIZE], const kheo_shs_keys *keys)
{
	/* The context names the direction, so the two keys differ even if
	 * client and server were one key pair (then SHS's enc_key and
	 * dec_key would be equal, and a record could be reflected). */
	derive(tx, keys->enc_key, keys->client ? KHEO_STREAM_CTX_C2S :
		KHEO_STREAM_CTX_S2C);
	derive(rx, keys->dec_key, keys->client ? KHEO_STREAM_CTX_S2C :
		KHEO_STREAM_CTX_C2S);
}

/* ----------------------------------------------------------------- send */

int kheo_stream_tx_init(kheo_stream_tx *tx, kheo_buf *out,
	const uint8_t key[KHEO_STREAM_KEY_SIZE])
{
	uint8_t header[KHEO_STREAM_HEADER_SIZE];
	int err;

	memset(tx, 0, sizeof(*tx));
	if ((err = kheo_buf_reserve(out, sizeof(header))) < 0)
		return err;
	crypto_secretstream_xchacha20poly1305_init_push(&tx->ss, header, key);
	kheo_buf_put(out, header, sizeof(header));
	return KHEO_OK;
}

int kheo_stream_tx_record(kheo_stream_tx *tx, kheo_buf *out,
	const uint8_t *p, size_t n, int final)
{
	static const uint8_t nothing[1];
	size_t clen = n + ABYTES;
	uint8_t *at;
	int err;

	if (tx->closed)
		abort(); /* nothing goes after FINAL: a caller bug */
	if (n > KHEO_STREAM_RECORD_MAX)
		return KHEO_ELIMIT;
	if ((err = kheo_buf_reserve(out, KHEO_STREAM_LEN_SIZE + clen)) < 0)
		return err;
	at = out->p + out->len;
	at[0] = (uint8_t)(clen >> 24);
	at[1] = (uint8_t)(clen >> 16);
	at[2] = (uint8_t)(clen >> 8);
	at[3] = (uint8_t)clen;
	crypto_secretstream_xchacha20poly1305_push(&tx->ss,
		at + KHEO_STREAM_LEN_SIZE, NULL, n ? p : nothing, n, at,
		KHEO_STREAM_LEN_SIZE, final ?
		crypto_secretstream_xchacha20poly1305_TAG_FINAL :
		crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
	out->len += KHEO_STREAM_LEN_SIZE + clen;
	tx->records++;
	if (final) {
		tx->closed = 1;
		sodium_memzero(&tx->ss, sizeof(tx->ss));
	}
	return KHEO_OK;
}

void kheo_stream_tx_wipe(kheo_stream_tx *tx)
{
	sodium_memzero(tx, sizeof(*tx));
}

/* -------------------------------------------------------------- receive */

void kheo_stream_rx_init(kheo_stream_rx *rx,
	const uint8_t key[KHEO_STREAM_KEY_SIZE])
{
	memset(rx, 0, sizeof(*rx));
	memcpy(rx->key, key, KHEO_STREAM_KEY_SIZE);
}

/* Refuse for good: forget the keys, keep the refusal to repeat it. */
static int refuse(kheo_stream_rx *rx, kheo_refusal *why, int reason,
	const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int refuse(kheo_stream_rx *rx, kheo_refusal *why, int reason,
	const char *fmt, ...)
{
	va_list ap;

	sodium_memzero(&rx->ss, sizeof(rx->ss));
	sodium_memzero(rx->key, sizeof(rx->key));
	rx->phase = -1;
	rx->refused.reason = reason;
	rx->refused.offset = (size_t)rx->offset;
	va_start(ap, fmt);
	vsnprintf(rx->refused.msg, sizeof(rx->refused.msg), fmt, ap);
	va_end(ap);
	if (why)
		*why = rx->refused;
	return kheo_reason_error(reason);
}

int kheo_stream_rx_read(kheo_stream_rx *rx, kheo_buf *plain,
	kheo_stream_event *event, size_t *used, const uint8_t *p, size_t len,
	kheo_refusal *why)
{
	uint8_t dummy[1];
	unsigned long long mlen = 0;
	unsigned char tag = 0;
	size_t off = 0, clen;
	uint8_t *m;
	int err;

	*event = KHEO_STREAM_MORE;
	*used = 0;
	if (rx->phase < 0) {
		if (why)
			*why = rx->refused;
		return kheo_reason_error(rx->refused.reason);
	}
	if (rx->phase == 0) {
		if (len < KHEO_STREAM_HEADER_SIZE)
			return KHEO_OK;
		/* Any 24 bytes make a header; a wrong one shows as the first
		 * record failing to authenticate. */
		if (crypto_secretstream_xchacha20poly1305_init_pull(&rx->ss, p,
			    rx->key) != 0)
			return refuse(rx, why, KHEO_R_BAD_RECORD,
				"stream header refused");
		sodium_memzero(rx->key, sizeof(rx->key));
		rx->phase = 1;
		off = KHEO_STREAM_HEADER_SIZE;
		rx->offset += off;
		*used = off;
	}
	if (rx->phase == 2) {
		if (len > off)
			return refuse(rx, why, KHEO_R_TRAILING_BYTES,
				"%llu bytes after the FINAL record",
				(unsigned long long)(len - off));
		return KHEO_OK;
	}
	if (len - off < KHEO_STREAM_LEN_SIZE)
		return KHEO_OK;
	clen = (size_t)p[off] << 24 | (size_t)p[off + 1] << 16 |
		(size_t)p[off + 2] << 8 | (size_t)p[off + 3];
	if (clen > KHEO_STREAM_RECORD_MAX + ABYTES)
		return refuse(rx, why, KHEO_R_TOO_BIG,
			"record of %llu ciphertext bytes: the cap is 1 MiB "
			"of plaintext", (unsigned long long)clen);
	if (clen < ABYTES)
		return refuse(rx, why, KHEO_R_BAD_RECORD,
			"record of %llu bytes: shorter than its tag",
			(unsigned long long)clen);
	if (len - off - KHEO_STREAM_LEN_SIZE < clen)
		return KHEO_OK;
	kheo_buf_reset(plain);
	if ((err = kheo_buf_reserve(plain, clen - ABYTES)) < 0)
		return err; /* nothing of the record consumed: call again */
	m = clen > ABYTES ? plain->p : dummy;
	if (crypto_secretstream_xchacha20poly1305_pull(&rx->ss, m, &mlen, &tag,
		    p + off + KHEO_STREAM_LEN_SIZE, clen, p + off,
		    KHEO_STREAM_LEN_SIZE) != 0)
		return refuse(rx, why, KHEO_R_BAD_RECORD,
			"record %llu does not authenticate: another key, or "
			"altered, reordered or dropped records",
			(unsigned long long)rx->records);
	if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE &&
	    tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL)
		return refuse(rx, why, KHEO_R_BAD_RECORD,
			"record with tag %llu: only MESSAGE and FINAL are sent",
			(unsigned long long)tag);
	plain->len = (size_t)mlen;
	off += KHEO_STREAM_LEN_SIZE + clen;
	rx->offset += KHEO_STREAM_LEN_SIZE + clen;
	rx->records++;
	*used = off;
	if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
		rx->phase = 2;
		sodium_memzero(&rx->ss, sizeof(rx->ss));
		*event = KHEO_STREAM_FINAL;
	} else {
		*event = KHEO_STREAM_RECORD;
	}
	return KHEO_OK;
}

void kheo_stream_rx_wipe(kheo_stream_rx *rx)
{
	sodium_memzero(rx, sizeof(*rx));
}
