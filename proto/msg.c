/*
 * msg.c - the messages of a sync session, each one record of the secure
 * channel (docs/protocol.md, "Sync session").  Pure encode and strict
 * decode; what a session does with them is client-core/src/sync.c's.
 *
 *   HELLO   1 | version | node role | cert role | scope | epoch (8)
 *             | wall ms | summary (32) | certificates: count, (str)...
 *   HEADS   2 | last (u8) | count | (author, unit, useq, id)...
 *   FRAMES  3 | chunk | count | (str frame)...
 *   ACK     4 | chunk | applied | held | rejected
 *   DONE    5
 *   REFUSE  6 | reason (str)
 *   PACKED  7 | size | one zstd frame of another message (not PACKED)
 *   WANT    8 | count | hash (32)...
 *   HAVE    9 | count | (hash (32), size)...
 *   GET    10 | hash (32) | index
 *   CHUNK  11 | hash (32) | index | size | flags (u8) | chunk hash (32)
 *             | data (str)
 *   LACK   12 | hash (32)
 *   END    13
 *
 * Heads are sent in several HEADS messages when there are many; `last` is
 * 1 on the final one.  A decoded message points into the input, which must
 * outlive it.
 */
#include "proto.h"
#include "alloc.h"

#include <string.h>

static void put_head(kheo_buf *b, const kheo_head *h)
{
	kheo_buf_put(b, h->author, KHEO_KEY_SIZE);
	kheo_buf_put_str(b, h->unit, strlen(h->unit));
	kheo_buf_put_varint(b, h->useq);
	kheo_buf_put(b, h->id, KHEO_ID_SIZE);
}

int kheo_msg_encode(kheo_buf *b, const kheo_msg *m)
{
	size_t i;

	kheo_buf_put_u8(b, (uint8_t)m->type);
	switch (m->type) {
	case KHEO_MSG_HELLO:
		kheo_buf_put_varint(b, m->hello.version ? m->hello.version
						      : KHEO_SYNC_VERSION);
		kheo_buf_put_u8(b, (uint8_t)m->hello.node_role);
		kheo_buf_put_u8(b, (uint8_t)m->hello.cert_role);
		kheo_buf_put_str(b, m->hello.scope, strlen(m->hello.scope));
		kheo_buf_put(b, m->hello.epoch, 8);
		kheo_buf_put_varint(b, m->hello.wall_ms);
		kheo_buf_put(b, m->hello.summary, KHEO_ID_SIZE);
		kheo_buf_put_varint(b, m->hello.ncerts);
		for (i = 0; i < m->hello.ncerts; i++)
			kheo_buf_put_str(b, m->hello.certs[i],
				m->hello.cert_lens[i]);
		break;
	case KHEO_MSG_HEADS:
		kheo_buf_put_u8(b, (uint8_t)(m->heads.last != 0));
		kheo_buf_put_varint(b, m->heads.n);
		for (i = 0; i < m->heads.n; i++)
			put_head(b, &m->heads.v[i]);
		break;
	case KHEO_MSG_FRAMES:
		kheo_buf_put_varint(b, m->frames.chunk);
		kheo_buf_put_varint(b, m->frames.n);
		for (i = 0; i < m->frames.n; i++)
			kheo_buf_put_str(b, m->frames.p[i], m->frames.lens[i]);
		break;
	case KHEO_MSG_ACK:
		kheo_buf_put_varint(b, m->ack.chunk);
		kheo_buf_put_varint(b, m->ack.applied);
		kheo_buf_put_varint(b, m->ack.held);
		kheo_buf_put_varint(b, m->ack.rejected);
		break;
	case KHEO_MSG_DONE:
		break;
	case KHEO_MSG_REFUSE:
		kheo_buf_put_str(b, m->refuse, strlen(m->refuse));
		break;
	case KHEO_MSG_PACKED:
		kheo_buf_put_varint(b, m->packed.raw_len);
		kheo_buf_put(b, m->packed.p, m->packed.n);
		break;
	case KHEO_MSG_WANT:
	case KHEO_MSG_HAVE:
		kheo_buf_put_varint(b, m->want.n);
		for (i = 0; i < m->want.n; i++) {
			kheo_buf_put(b, m->want.hashes + i * KHEO_ID_SIZE,
				KHEO_ID_SIZE);
			if (m->type == KHEO_MSG_HAVE)
				kheo_buf_put_varint(b, m->want.sizes[i]);
		}
		break;
	case KHEO_MSG_GET:
		kheo_buf_put(b, m->blob.hash, KHEO_ID_SIZE);
		kheo_buf_put_varint(b, m->blob.index);
		break;
	case KHEO_MSG_CHUNK:
		kheo_chunk_put(b, &m->blob);
		break;
	case KHEO_MSG_LACK:
		kheo_buf_put(b, m->blob.hash, KHEO_ID_SIZE);
		break;
	case KHEO_MSG_END:
		break;
	default:
		return KHEO_EINVAL;
	}
	return b->oom ? KHEO_ENOMEM : KHEO_OK;
}

void kheo_msg_free(kheo_msg *m)
{
	if (!m)
		return;
	kheo__free(m->heads.v);
	kheo__free((void *)m->frames.p);
	kheo__free(m->frames.lens);
	kheo__free((void *)m->hello.certs);
	kheo__free(m->hello.cert_lens);
	kheo__free(m->want.sizes);
	kheo__free(m->want.owned);
	memset(m, 0, sizeof(*m));
}

/* A str: varint length then bytes, at most max. */
static int read_str(kheo_reader *r, const uint8_t **p, size_t *n, size_t max,
	const char *what)
{
	uint64_t len;
	int err;

	if ((err = kheo_read_varint(r, &len, max, what)) < 0 ||
	    (err = kheo_read_bytes(r, p, (size_t)len, what)) < 0)
		return err;
	*n = (size_t)len;
	return KHEO_OK;
}

static int read_unit_str(kheo_reader *r, char out[KHEO_UNIT_MAX + 1],
	int empty_ok, const char *what)
{
	const uint8_t *p;
	size_t n, at = r->off;
	int err;

	if ((err = read_str(r, &p, &n, KHEO_UNIT_MAX, what)) < 0)
		return err;
	if (!(n == 0 && empty_ok) && !kheo_unit_valid((const char *)p, n))
		return kheo__refuse(r->why, KHEO_R_BAD_UNIT, at,
			"%s: \"%.*s\" is not a unit path", what, (int)n,
			(const char *)p);
	memcpy(out, p, n);
	out[n] = '\0';
	return KHEO_OK;
}

/* How many items of at least `least` bytes the rest can hold: a count
 * above that is refused before anything is allocated for it. */
static int read_count(kheo_reader *r, size_t *out, uint64_t cap,
	size_t least, const char *what)
{
	uint64_t n;
	int err;

	if ((err = kheo_read_varint(r, &n, cap, what)) < 0)
		return err;
	if (least && n > (r->len - r->off) / least)
		return kheo__refuse(r->why, KHEO_R_TRUNCATED, r->off,
			"%s: %llu items cannot fit in %zu bytes", what,
			(unsigned long long)n, r->len - r->off);
	*out = (size_t)n;
	return KHEO_OK;
}

static int decode_hello(kheo_reader *r, kheo_msg *m)
{
	uint64_t version;
	const uint8_t *p;
	uint8_t b;
	size_t i;
	int err;

	if ((err = kheo_read_varint(r, &version, UINT32_MAX, "version")) < 0)
		return err;
	if (version < KHEO_SYNC_VERSION_MIN || version > KHEO_SYNC_VERSION)
		return kheo__refuse(r->why, KHEO_R_BAD_VERSION, r->off,
			"sync version %llu unknown (this node speaks %d to "
			"%d)", (unsigned long long)version,
			KHEO_SYNC_VERSION_MIN, KHEO_SYNC_VERSION);
	m->hello.version = (unsigned)version;
	if ((err = kheo_read_u8(r, &b, "node role")) < 0)
		return err;
	if (b < KHEO_NODE_DEVICE || b > KHEO_NODE_PROVINCE)
		return kheo__refuse(r->why, KHEO_R_BAD_ENUM, r->off - 1,
			"node role %u unknown", b);
	m->hello.node_role = b;
	if ((err = kheo_read_u8(r, &b, "cert role")) < 0)
		return err;
	if (b > KHEO_ROLE_PROVINCE)
		return kheo__refuse(r->why, KHEO_R_BAD_ENUM, r->off - 1,
			"certificate role %u unknown", b);
	m->hello.cert_role = b;
	/* "" is the whole province: a root's scope */
	if ((err = read_unit_str(r, m->hello.scope, 1, "scope")) < 0 ||
	    (err = kheo_read_bytes(r, &p, 8, "epoch")) < 0)
		return err;
	memcpy(m->hello.epoch, p, 8);
	if ((err = kheo_read_varint(r, &m->hello.wall_ms, UINT64_MAX,
		     "wall clock")) < 0 ||
	    (err = kheo_read_bytes(r, &p, KHEO_ID_SIZE, "summary")) < 0)
		return err;
	memcpy(m->hello.summary, p, KHEO_ID_SIZE);
	if ((err = read_count(r, &m->hello.ncerts, KHEO_SYNC_CERTS_MAX, 1,
		     "certificates")) < 0)
		return err;
	if (m->hello.ncerts) {
		m->hello.certs = kheo__calloc(m->hello.ncerts,
			sizeof(*m->hello.certs));
		m->hello.cert_lens = kheo__calloc(m->hello.ncerts,
			sizeof(*m->hello.cert_lens));
		if (!m->hello.certs || !m->hello.cert_lens)
			return KHEO_ENOMEM;
	}
	for (i = 0; i < m->hello.ncerts; i++)
		if ((err = read_str(r, &m->hello.certs[i],
			     &m->hello.cert_lens[i], KHEO_CERT_TEXT_MAX,
			     "certificate")) < 0)
			return err;
	return KHEO_OK;
}

static int decode_heads(kheo_reader *r, kheo_msg *m)
{
	uint8_t last;
	size_t i;
	int err;

	if ((err = kheo_read_u8(r, &last, "last")) < 0)
		return err;
	if (last > 1)
		return kheo__refuse(r->why, KHEO_R_BAD_ENUM, r->off - 1,
			"heads: last flag %u", last);
	m->heads.last = last;
	if ((err = read_count(r, &m->heads.n, KHEO_SYNC_HEADS_MAX,
		     KHEO_KEY_SIZE + 1 + 1 + KHEO_ID_SIZE, "heads")) < 0)
		return err;
	if (m->heads.n &&
	    !(m->heads.v = kheo__calloc(m->heads.n, sizeof(*m->heads.v))))
		return KHEO_ENOMEM;
	for (i = 0; i < m->heads.n; i++) {
		kheo_head *h = &m->heads.v[i];
		const uint8_t *p;

		if ((err = kheo_read_bytes(r, &p, KHEO_KEY_SIZE, "author")) < 0)
			return err;
		memcpy(h->author, p, KHEO_KEY_SIZE);
		if ((err = read_unit_str(r, h->unit, 0, "head unit")) < 0 ||
		    (err = kheo_read_varint(r, &h->useq, UINT64_MAX,
			     "head useq")) < 0 ||
		    (err = kheo_read_bytes(r, &p, KHEO_ID_SIZE, "head id")) < 0)
			return err;
		memcpy(h->id, p, KHEO_ID_SIZE);
		if (h->useq == 0)
			return kheo__refuse(r->why, KHEO_R_BAD_CHAIN, r->off,
				"head at useq 0");
	}
	return KHEO_OK;
}

static int decode_frames(kheo_reader *r, kheo_msg *m)
{
	size_t i;
	int err;

	if ((err = kheo_read_varint(r, &m->frames.chunk, UINT64_MAX,
		     "chunk")) < 0 ||
	    (err = read_count(r, &m->frames.n, KHEO_SYNC_CHUNK_FRAMES_MAX, 1,
		     "frames")) < 0)
		return err;
	if (m->frames.n) {
		m->frames.p = kheo__calloc(m->frames.n, sizeof(*m->frames.p));
		m->frames.lens = kheo__calloc(m->frames.n,
			sizeof(*m->frames.lens));
		if (!m->frames.p || !m->frames.lens)
			return KHEO_ENOMEM;
	}
	for (i = 0; i < m->frames.n; i++)
		if ((err = read_str(r, &m->frames.p[i], &m->frames.lens[i],
			     KHEO_CS_RAW_MAX + 256, "frame")) < 0)
			return err;
	return KHEO_OK;
}

static int decode_want(kheo_reader *r, kheo_msg *m, int have)
{
	size_t i;
	int err;

	if ((err = read_count(r, &m->want.n, KHEO_SYNC_WANT_MAX,
		     KHEO_ID_SIZE + (have ? 1 : 0), "blobs")) < 0)
		return err;
	/* a WANT asks for something; a HAVE may say "none of them" */
	if (!have && m->want.n == 0)
		return kheo__refuse(r->why, KHEO_R_EMPTY, r->off,
			"a WANT of no blobs");
	if (m->want.n &&
	    (!(m->want.owned = kheo__calloc(m->want.n, KHEO_ID_SIZE)) ||
		    (have && !(m->want.sizes = kheo__calloc(m->want.n,
				       sizeof(uint64_t))))))
		return KHEO_ENOMEM;
	m->want.hashes = m->want.owned;
	for (i = 0; i < m->want.n; i++) {
		const uint8_t *h;

		if ((err = kheo_read_bytes(r, &h, KHEO_ID_SIZE, "blob")) < 0)
			return err;
		memcpy(m->want.owned + i * KHEO_ID_SIZE, h, KHEO_ID_SIZE);
		if (!have)
			continue;
		if ((err = kheo_read_varint(r, &m->want.sizes[i],
			     KHEO_SYNC_BLOB_SIZE_MAX, "blob size")) < 0)
			return err;
		if (m->want.sizes[i] == 0)
			return kheo__refuse(r->why, KHEO_R_EMPTY, r->off - 1,
				"a blob of 0 bytes");
	}
	return KHEO_OK;
}

void kheo_chunk_put(kheo_buf *b, const kheo_blob_chunk *c)
{
	kheo_buf_put(b, c->hash, KHEO_ID_SIZE);
	kheo_buf_put_varint(b, c->index);
	kheo_buf_put_varint(b, c->size);
	kheo_buf_put_u8(b, (uint8_t)(c->z != 0));
	kheo_buf_put(b, c->chash, KHEO_ID_SIZE);
	kheo_buf_put_str(b, c->p, c->n);
}

int kheo_chunk_read(kheo_reader *r, kheo_blob_chunk *c)
{
	const uint8_t *p;
	uint64_t chunks, expect, len, max;
	uint8_t z;
	size_t at;
	int err;

	if ((err = kheo_read_bytes(r, &p, KHEO_ID_SIZE, "blob")) < 0)
		return err;
	memcpy(c->hash, p, KHEO_ID_SIZE);
	if ((err = kheo_read_varint(r, &c->index,
		     KHEO_SYNC_BLOB_SIZE_MAX / KHEO_SYNC_BLOB_CHUNK - 1,
		     "chunk index")) < 0 ||
	    (err = kheo_read_varint(r, &c->size, KHEO_SYNC_BLOB_SIZE_MAX,
		     "blob size")) < 0)
		return err;
	chunks = (c->size + KHEO_SYNC_BLOB_CHUNK - 1) / KHEO_SYNC_BLOB_CHUNK;
	if (c->index >= chunks)
		return kheo__refuse(r->why, KHEO_R_VARINT_OVERFLOW, r->off,
			"chunk %llu of a blob of %llu chunks",
			(unsigned long long)c->index,
			(unsigned long long)chunks);
	if ((err = kheo_read_u8(r, &z, "chunk flags")) < 0)
		return err;
	if (z > 1)
		return kheo__refuse(r->why, KHEO_R_BAD_FLAGS, r->off - 1,
			"chunk flags %u", z);
	c->z = z;
	if ((err = kheo_read_bytes(r, &p, KHEO_ID_SIZE, "chunk hash")) < 0)
		return err;
	memcpy(c->chash, p, KHEO_ID_SIZE);
	expect = c->size - c->index * KHEO_SYNC_BLOB_CHUNK;
	if (expect > KHEO_SYNC_BLOB_CHUNK)
		expect = KHEO_SYNC_BLOB_CHUNK;
	max = z ? KHEO_SYNC_BLOB_CHUNK + KHEO_SYNC_CHUNK_SLACK : expect;
	at = r->off;
	if ((err = kheo_read_varint(r, &len, UINT32_MAX, "chunk data")) < 0)
		return err;
	if (len > max)
		return kheo__refuse(r->why, KHEO_R_TOO_BIG, at,
			"chunk %llu: %llu bytes of data, above the limit of "
			"%llu", (unsigned long long)c->index,
			(unsigned long long)len, (unsigned long long)max);
	if ((err = kheo_read_bytes(r, &c->p, (size_t)len, "chunk data")) < 0)
		return err;
	c->n = (size_t)len;
	/* stored as it is: exactly the chunk's length */
	if (!z && c->n != expect)
		return kheo__refuse(r->why, KHEO_R_TRUNCATED, r->off,
			"chunk %llu is %zu bytes, %llu expected",
			(unsigned long long)c->index, c->n,
			(unsigned long long)expect);
	if (z && c->n == 0)
		return kheo__refuse(r->why, KHEO_R_TRUNCATED, r->off,
			"an empty compressed chunk");
	return KHEO_OK;
}

static int decode_blob(kheo_reader *r, kheo_msg *m)
{
	const uint8_t *p;
	int err;

	if (m->type == KHEO_MSG_CHUNK)
		return kheo_chunk_read(r, &m->blob);
	if ((err = kheo_read_bytes(r, &p, KHEO_ID_SIZE, "blob")) < 0)
		return err;
	memcpy(m->blob.hash, p, KHEO_ID_SIZE);
	if (m->type == KHEO_MSG_LACK)
		return KHEO_OK;
	return kheo_read_varint(r, &m->blob.index,
		KHEO_SYNC_BLOB_SIZE_MAX / KHEO_SYNC_BLOB_CHUNK - 1,
		"chunk index");
}

int kheo_msg_decode(kheo_msg *m, const uint8_t *p, size_t n,
	kheo_refusal *why)
{
	kheo_reader r;
	uint8_t type;
	int err;

	memset(m, 0, sizeof(*m));
	kheo_reader_init(&r, p, n, why);
	if ((err = kheo_read_u8(&r, &type, "message type")) < 0)
		return err;
	m->type = type;
	switch (type) {
	case KHEO_MSG_HELLO:
		err = decode_hello(&r, m);
		break;
	case KHEO_MSG_HEADS:
		err = decode_heads(&r, m);
		break;
	case KHEO_MSG_FRAMES:
		err = decode_frames(&r, m);
		break;
	case KHEO_MSG_ACK:
		if ((err = kheo_read_varint(&r, &m->ack.chunk, UINT64_MAX,
			     "chunk")) == KHEO_OK &&
		    (err = kheo_read_varint(&r, &m->ack.applied, UINT64_MAX,
			     "applied")) == KHEO_OK &&
		    (err = kheo_read_varint(&r, &m->ack.held, UINT64_MAX,
			     "held")) == KHEO_OK)
			err = kheo_read_varint(&r, &m->ack.rejected,
				UINT64_MAX, "rejected");
		break;
	case KHEO_MSG_DONE:
		break;
	case KHEO_MSG_REFUSE: {
		const uint8_t *s;
		size_t len;

		if ((err = read_str(&r, &s, &len, sizeof(m->refuse) - 1,
			     "reason")) < 0)
			break;
		if (!kheo_utf8_valid(s, len)) {
			err = kheo__refuse(why, KHEO_R_BAD_UTF8, r.off,
				"refusal reason is not UTF-8");
			break;
		}
		memcpy(m->refuse, s, len);
		m->refuse[len] = '\0';
		break;
	}
	case KHEO_MSG_PACKED:
		if ((err = kheo_read_varint(&r, &m->packed.raw_len,
			     KHEO_SYNC_UNPACKED_MAX, "packed size")) < 0)
			break;
		if (r.off == r.len) {
			err = kheo__refuse(why, KHEO_R_TRUNCATED, r.off,
				"packed message without its zstd frame");
			break;
		}
		m->packed.p = r.p + r.off;
		m->packed.n = r.len - r.off;
		r.off = r.len;
		break;
	case KHEO_MSG_WANT:
	case KHEO_MSG_HAVE:
		err = decode_want(&r, m, type == KHEO_MSG_HAVE);
		break;
	case KHEO_MSG_GET:
	case KHEO_MSG_CHUNK:
	case KHEO_MSG_LACK:
		err = decode_blob(&r, m);
		break;
	case KHEO_MSG_END:
		break;
	default:
		err = kheo__refuse(why, KHEO_R_BAD_ENUM, 0,
			"message type %u unknown", type);
	}
	if (err == KHEO_OK)
		err = kheo_read_end(&r, "message");
	if (err < 0)
		kheo_msg_free(m);
	return err;
}
