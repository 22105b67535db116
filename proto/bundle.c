/*
 * bundle.c - the bundle file: changeset frames carried on an SD card or a
 * USB stick between two nodes that never meet on a network.
 *
 *   magic "KHB" 0x01 | sender key | created (varint, ms)
 *   | heads: count, then (author, unit, useq, id) ascending by (author, unit)
 *   | frames: count, then (varint length, frame) in chain order
 *   | version 2 only: blob chunks: count, then chunks (msg.c's
 *     kheo_chunk_put) ascending by (hash, index)
 *   | digest: BLAKE2b-256 of every byte before it
 *   | signature: Ed25519 by the sender over "kheo/bundle/v1" || digest
 *
 * The digest makes a bundle all-or-nothing: a truncated or damaged file is
 * refused whole, before anything is applied.  The signature says who made
 * it; the heads say what the sender held, so the receiver can later send
 * back only what the sender lacks.  Each frame is still checked on its own
 * (a forged changeset inside a well-made bundle is quarantined alone).
 */
#include "proto.h"
#include "alloc.h"

#include <sodium.h>
#include <string.h>

#define BUNDLE_CTX "kheo/bundle/v1"

static void bundle_message(uint8_t *msg, const uint8_t digest[32])
{
	memcpy(msg, BUNDLE_CTX, sizeof(BUNDLE_CTX) - 1);
	memcpy(msg + sizeof(BUNDLE_CTX) - 1, digest, 32);
}

int kheo_bundle_encode(kheo_buf *out, const kheo_bundle *b,
	const uint8_t sk[KHEO_SECRET_SIZE])
{
	uint8_t digest[32], sig[KHEO_SIG_SIZE];
	uint8_t msg[sizeof(BUNDLE_CTX) - 1 + 32];
	size_t start = out->len, i;

	/* version 1 when there are no blobs: what older readers read */
	kheo_buf_put(out, KHEO_BUNDLE_MAGIC, 3);
	kheo_buf_put_u8(out, b->nchunks ? 2 : 1);
	kheo_buf_put(out, b->sender, KHEO_KEY_SIZE);
	kheo_buf_put_varint(out, b->created_ms);
	kheo_buf_put_varint(out, b->nheads);
	for (i = 0; i < b->nheads; i++) {
		const kheo_head *h = &b->heads[i];

		kheo_buf_put(out, h->author, KHEO_KEY_SIZE);
		kheo_buf_put_str(out, h->unit, strlen(h->unit));
		kheo_buf_put_varint(out, h->useq);
		kheo_buf_put(out, h->id, KHEO_ID_SIZE);
	}
	kheo_buf_put_varint(out, b->nframes);
	for (i = 0; i < b->nframes; i++) {
		kheo_buf_put_varint(out, b->lens[i]);
		kheo_buf_put(out, b->frames[i], b->lens[i]);
	}
	if (b->nchunks) {
		kheo_buf_put_varint(out, b->nchunks);
		for (i = 0; i < b->nchunks; i++)
			kheo_chunk_put(out, &b->chunks[i]);
	}
	if (out->oom)
		return KHEO_ENOMEM;
	crypto_generichash(digest, 32, out->p + start, out->len - start, NULL,
		0);
	bundle_message(msg, digest);
	crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);
	kheo_buf_put(out, digest, 32);
	kheo_buf_put(out, sig, KHEO_SIG_SIZE);
	return out->oom ? KHEO_ENOMEM : KHEO_OK;
}

static int head_cmp(const kheo_head *a, const kheo_head *b)
{
	int c = memcmp(a->author, b->author, KHEO_KEY_SIZE);

	return c ? c : strcmp(a->unit, b->unit);
}

void kheo_bundle_free(kheo_bundle *b)
{
	if (!b)
		return;
	kheo__free(b->heads);
	kheo__free((void *)b->frames);
	kheo__free(b->lens);
	kheo__free(b->chunks);
	kheo__free(b);
}

int kheo_bundle_decode(kheo_bundle **out, const uint8_t *p, size_t n,
	kheo_refusal *why)
{
	uint8_t digest[32], msg[sizeof(BUNDLE_CTX) - 1 + 32];
	const uint8_t *q;
	kheo_bundle *b;
	kheo_reader r;
	uint64_t v;
	size_t i, body;
	int err;

	*out = NULL;
	if (n < 4 || memcmp(p, KHEO_BUNDLE_MAGIC, 3) != 0)
		return kheo__refuse(why, KHEO_R_BAD_MAGIC, 0,
			"not a kheo bundle (magic \"KHB\" missing)");
	if (p[3] != 1 && p[3] != 2)
		return kheo__refuse(why, KHEO_R_BAD_VERSION, 3,
			"bundle format version %u unknown (this reads 1 and "
			"2)", p[3]);
	if (n < 4 + KHEO_KEY_SIZE + 32 + KHEO_SIG_SIZE)
		return kheo__refuse(why, KHEO_R_TRUNCATED, n,
			"bundle of %zu bytes is cut short", n);
	body = n - 32 - KHEO_SIG_SIZE;
	crypto_generichash(digest, 32, p, body, NULL, 0);
	if (sodium_memcmp(digest, p + body, 32) != 0)
		return kheo__refuse(why, KHEO_R_TRUNCATED, body,
			"bundle digest does not match: the file is truncated "
			"or damaged");
	if (!(b = kheo__calloc(1, sizeof(*b))))
		return KHEO_ENOMEM;
	kheo_reader_init(&r, p, body, why);
	r.off = 4;
	if ((err = kheo_read_bytes(&r, &q, KHEO_KEY_SIZE, "sender")) < 0)
		goto fail;
	memcpy(b->sender, q, KHEO_KEY_SIZE);
	bundle_message(msg, digest);
	if (crypto_sign_verify_detached(p + body + 32, msg, sizeof(msg),
		    b->sender) != 0) {
		err = kheo__refuse(why, KHEO_R_BAD_SIGNATURE, body + 32,
			"bundle signature does not verify for its sender");
		goto fail;
	}
	if ((err = kheo_read_varint(&r, &b->created_ms, UINT64_MAX,
		     "created")) < 0 ||
	    (err = kheo_read_varint(&r, &v, (body - r.off) / 67,
		     "head count")) < 0)
		goto fail;
	b->nheads = (size_t)v;
	if (b->nheads &&
	    !(b->heads = kheo__calloc(b->nheads, sizeof(*b->heads)))) {
		err = KHEO_ENOMEM;
		goto fail;
	}
	for (i = 0; i < b->nheads; i++) {
		kheo_head *h = &b->heads[i];
		size_t start = r.off;

		if ((err = kheo_read_bytes(&r, &q, KHEO_KEY_SIZE, "head")) < 0)
			goto fail;
		memcpy(h->author, q, KHEO_KEY_SIZE);
		if ((err = kheo_read_varint(&r, &v, KHEO_UNIT_MAX,
			     "head unit")) < 0 ||
		    (err = kheo_read_bytes(&r, &q, (size_t)v, "head unit")) < 0)
			goto fail;
		if (!kheo_unit_valid((const char *)q, (size_t)v)) {
			err = kheo__refuse(why, KHEO_R_BAD_UNIT, start,
				"head %zu: unit is not a slug path", i);
			goto fail;
		}
		memcpy(h->unit, q, (size_t)v);
		h->unit[v] = '\0';
		if ((err = kheo_read_varint(&r, &h->useq, UINT64_MAX,
			     "head useq")) < 0 ||
		    (err = kheo_read_bytes(&r, &q, KHEO_ID_SIZE, "head id")) < 0)
			goto fail;
		memcpy(h->id, q, KHEO_ID_SIZE);
		if (i > 0 && head_cmp(&b->heads[i - 1], h) >= 0) {
			err = kheo__refuse(why, KHEO_R_UNSORTED, start,
				"head %zu is not after the one before", i);
			goto fail;
		}
	}
	if ((err = kheo_read_varint(&r, &v, (body - r.off) / 2,
		     "frame count")) < 0)
		goto fail;
	b->nframes = (size_t)v;
	if (b->nframes &&
	    (!(b->frames = kheo__calloc(b->nframes, sizeof(*b->frames))) ||
		    !(b->lens = kheo__calloc(b->nframes, sizeof(*b->lens))))) {
		err = KHEO_ENOMEM;
		goto fail;
	}
	for (i = 0; i < b->nframes; i++) {
		if ((err = kheo_read_varint(&r, &v, KHEO_CS_RAW_MAX + 256,
			     "frame length")) < 0 ||
		    (err = kheo_read_bytes(&r, &b->frames[i], (size_t)v,
			     "frame")) < 0)
			goto fail;
		b->lens[i] = (size_t)v;
	}
	if (p[3] == 2) {
		/* each chunk takes at least 32 + 1 + 1 + 1 + 32 + 1 bytes */
		if ((err = kheo_read_varint(&r, &v, (body - r.off) / 68,
			     "chunk count")) < 0)
			goto fail;
		if (v == 0) {
			err = kheo__refuse(why, KHEO_R_EMPTY, r.off,
				"a version 2 bundle without blob chunks");
			goto fail;
		}
		b->nchunks = (size_t)v;
		if (!(b->chunks = kheo__calloc(b->nchunks,
			      sizeof(*b->chunks)))) {
			err = KHEO_ENOMEM;
			goto fail;
		}
		for (i = 0; i < b->nchunks; i++) {
			kheo_blob_chunk *c = &b->chunks[i], *d = c - 1;
			size_t start = r.off;
			int cmp;

			if ((err = kheo_chunk_read(&r, c)) < 0)
				goto fail;
			if (i == 0)
				continue;
			cmp = memcmp(d->hash, c->hash, KHEO_ID_SIZE);
			if (cmp > 0 || (cmp == 0 && d->index >= c->index)) {
				err = kheo__refuse(why, KHEO_R_UNSORTED, start,
					"chunk %zu is not after the one "
					"before", i);
				goto fail;
			}
		}
	}
	if ((err = kheo_read_end(&r, "bundle")) < 0)
		goto fail;
	*out = b;
	return KHEO_OK;
fail:
	kheo_bundle_free(b);
	return err;
}
