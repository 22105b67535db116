/*
 * sync.c - a sync session as a state machine over bytes (kheo.h, "Sync
 * sessions"; docs/protocol.md, "Sync session").
 *
 * Below it, channel.c: the secure channel (the server's key, Secret
 * Handshake, crypto_secretstream each way), giving records.  Each record
 * is one message of proto/msg.c.  The conversation:
 *
 *   client                               server
 *   HELLO (scope, summary of its heads) ->
 *                                        checks certificates, revocation,
 *                                        clock; the session's scope S is
 *                                        the narrower of the two
 *                                     <- HELLO (summary over S)
 *   equal summaries: DONE <-> DONE (one round trip in all)
 *   else: HEADS <-> HEADS; then each streams, in chain order (`_sys`
 *   first), the changesets the other lacks, one chunk at a time; the
 *   receiver applies each chunk in one transaction and ACKs it once
 *   durable; DONE when nothing is left.
 *
 * Nothing is kept between sessions: what a node stores (applied or held)
 * is what its heads say, so a session cut anywhere resumes at the next one
 * from what was made durable, re-sending at most the chunk in flight.
 */
#include "internal.h"
#include "blob.h"
#include "alloc.h"

#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CHUNK (128u * 1024) /* raw frame bytes per chunk */
#define DEFAULT_MAX_CHANGESETS 1000000u
#define CLOCK_OFF_MAX_MS (10LL * 60 * 1000)
#define HEADS_PER_MSG 4096u
/* zstd level of a session's chunks: they are compressed once per sync,
 * on a hub for many devices, so a middle level */
#define PACK_LEVEL 9

struct kheo_session {
	kheo_db *db;
	kheo_session_options o;
	uint8_t network_key[32];
	kheo_session_state state;
	char err[400];
	kheo_channel ch;

	/* what we said and what the peer said */
	int hello_sent, hello_got;
	char my_scope[KHEO_UNIT_MAX + 1];     /* "": everything */
	char scope[KHEO_UNIT_MAX + 1];        /* the session's */
	uint8_t summary[KHEO_ID_SIZE];        /* ours, over `scope` */
	uint8_t hello_summary[KHEO_ID_SIZE];  /* the one our HELLO carried */
	int node_role_peer, cert_role_peer;
	/* sync versions: what we speak (KHEO_SYNC_VERSION, lower only in
	 * tests that play an older node), and whether the blob phase runs:
	 * both sides speak KHEO_SYNC_VERSION_BLOBS or later */
	unsigned speak;
	int blobs;

	/* the peer's heads, as they come */
	kheo_head *peer_heads;
	size_t npeer, cappeer;
	int heads_sent, heads_got, in_sync;

	/* what we send: kheo_cs rows, in order */
	int64_t *queue;
	size_t nqueue, next;
	uint64_t chunk;                       /* next chunk number */
	int awaiting_ack;
	size_t in_flight;                     /* changesets in that chunk */
	uint64_t in_flight_bytes;             /* and their frame bytes */
	int done_sent, done_got;

	/* blobs we fetch (after the peer's DONE: records first), one
	 * request in flight: WANT (which of these do you hold?), then a GET
	 * per chunk; each chunk is durable before the next GET */
	int blobs_started, end_sent, end_got;
	kheo_blob_ref *want;                  /* missing, in priority order */
	size_t nwant, wpos, wbatch;           /* wbatch: start of the WANT out */
	uint8_t *have_h;                      /* the peer's HAVE: hashes, */
	uint64_t *have_sz;                    /* sizes */
	size_t nhave, hpos;
	int want_waiting, get_waiting;
	uint8_t get_hash[KHEO_ID_SIZE];
	uint64_t get_idx, get_size, blob_fetched;
	/* blobs we serve: those our records in the session's scope name,
	 * sorted; rebuilt when frames arrive */
	uint8_t *served;
	size_t nserved;
	int served_ready;
	kheo_buf bdata;

	kheo_session_stats st;
	kheo_buf msg;                         /* scratch: one message */
	int noted;                            /* kheo_peer written */
	kheo_codec *store;                    /* level 0: frames as raw */
	kheo_buf raw, frames, packed, unpacked;
#ifdef KHEO_FAULT_INJECTION
	int (*tamper)(void *arg, kheo_msg *m);
	void *tamper_arg;
#endif
};

static int fail(kheo_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void note_peer(kheo_session *s);

static int fail(kheo_session *s, const char *fmt, ...)
{
	va_list ap;

	if (s->state != KHEO_SESSION_FAILED) {
		va_start(ap, fmt);
		vsnprintf(s->err, sizeof(s->err), fmt, ap);
		va_end(ap);
		s->state = KHEO_SESSION_FAILED;
		note_peer(s);
	}
	return KHEO_EPROTO;
}

static int send_msg(kheo_session *s, const kheo_msg *m)
{
	int err;
#ifdef KHEO_FAULT_INJECTION
	kheo_msg changed;

	if (s->tamper) {
		changed = *m;
		if (s->tamper(s->tamper_arg, &changed))
			return KHEO_OK; /* dropped */
		m = &changed;
	}
#endif

	kheo_buf_reset(&s->msg);
	if ((err = kheo_msg_encode(&s->msg, m)) < 0)
		return fail(s, "out of memory");
	if ((err = kheo__channel_send(&s->ch, s->msg.p, s->msg.len)) < 0)
		return fail(s, "%s", kheo__channel_error(&s->ch));
	return KHEO_OK;
}

/* Tell the peer why we stop, then stop. */
static int refuse(kheo_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int refuse(kheo_session *s, const char *fmt, ...)
{
	kheo_msg m = { .type = KHEO_MSG_REFUSE };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m.refuse, sizeof(m.refuse), fmt, ap);
	va_end(ap);
	send_msg(s, &m);
	return fail(s, "refused the peer: %s", m.refuse);
}

/* ----------------------------------------------------------- what we hold */

/* Is `unit` part of a session over `scope` ("" is everything)?  Scopes
 * follow unit successors, as certificates do: a merged commune's records
 * go to the successor's officers. */
static int in_scope(kheo_session *s, const char *unit)
{
	return strcmp(unit, "_sys") == 0 || !s->scope[0] ||
	       kheo_unit_within(unit, s->scope) ||
	       kheo__authz_covers(s->db, s->scope, unit);
}

static int keep_in_scope(void *arg, const char *unit)
{
	return in_scope(arg, unit);
}

/*
 * Our chain heads in the session's scope: per (author, unit), every stored
 * changeset (applied or held) at the highest useq (two when a chain
 * forked), ascending by author, unit, id.  Held ones count: they are
 * stored, so the peer need not send them again.
 */
static int our_heads(kheo_session *s, kheo_head **out, size_t *n)
{
	sqlite3_stmt *st;
	size_t cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = sqlite3_prepare_v2(s->db->sql,
		"SELECT author, unit, useq, id FROM kheo_cs c WHERE useq ="
		" (SELECT max(useq) FROM kheo_cs d WHERE d.author = c.author"
		" AND d.unit = c.unit) ORDER BY author, unit, id", -1, &st,
		NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(s->db, rc, "heads");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *unit = (const char *)sqlite3_column_text(st, 1);
		kheo_head *h;

		if (!in_scope(s, unit))
			continue;
		if (*n == cap) {
			size_t ncap = cap ? 2 * cap : 64;
			kheo_head *nh = kheo__realloc(*out, ncap * sizeof(*nh));

			if (!nh) {
				rc = SQLITE_NOMEM;
				break;
			}
			*out = nh;
			cap = ncap;
		}
		h = &(*out)[(*n)++];
		memcpy(h->author, sqlite3_column_blob(st, 0), KHEO_KEY_SIZE);
		snprintf(h->unit, sizeof(h->unit), "%s", unit);
		h->useq = (uint64_t)sqlite3_column_int64(st, 2);
		memcpy(h->id, sqlite3_column_blob(st, 3), KHEO_ID_SIZE);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		kheo__free(*out);
		*out = NULL;
		return rc == SQLITE_NOMEM ? KHEO_ENOMEM
					  : kheo__sqlerr(s->db, rc, "heads");
	}
	return KHEO_OK;
}

/* BLAKE2b-256 over the heads in scope: equal summaries, equal holdings. */
static int summarise(kheo_session *s)
{
	crypto_generichash_state h;
	kheo_head *v;
	size_t n, i;
	int err;

	if ((err = our_heads(s, &v, &n)) < 0)
		return err;
	crypto_generichash_init(&h, NULL, 0, KHEO_ID_SIZE);
	crypto_generichash_update(&h, (const uint8_t *)"kheo/heads/v1", 13);
	for (i = 0; i < n; i++) {
		uint8_t b[10];
		size_t len = strlen(v[i].unit);

		crypto_generichash_update(&h, v[i].author, KHEO_KEY_SIZE);
		crypto_generichash_update(&h, b, kheo_varint_encode(b, len));
		crypto_generichash_update(&h, (const uint8_t *)v[i].unit, len);
		crypto_generichash_update(&h, b,
			kheo_varint_encode(b, v[i].useq));
		crypto_generichash_update(&h, v[i].id, KHEO_ID_SIZE);
	}
	crypto_generichash_final(&h, s->summary, KHEO_ID_SIZE);
	kheo__free(v);
	return KHEO_OK;
}

/* ------------------------------------------------------------- messages */

/* Who we are, what we cover, a summary of it, and our certificates. */
static int send_hello(kheo_session *s)
{
	kheo_msg m = { .type = KHEO_MSG_HELLO };
	const uint8_t *certs[KHEO_SYNC_CERTS_MAX];
	size_t offs[KHEO_SYNC_CERTS_MAX], lens[KHEO_SYNC_CERTS_MAX], n = 0, i;
	kheo_buf chain = { 0 };
	uint8_t epoch[8] = { 0 };
	char hex[17] = "";
	int err;

	if (kheo__own_chain(s->db, 0, s->my_scope, &chain, offs, lens,
		    &n) < 0) {
		kheo_buf_free(&chain);
		return fail(s, "%s", kheo_errmsg(s->db));
	}
	for (i = 0; i < n; i++)
		certs[i] = chain.p + offs[i];
	if (kheo__meta_get_text(s->db, "epoch", hex, sizeof(hex)) == KHEO_OK)
		kheo_unhex(epoch, 8, hex, strlen(hex));
	kheo__clear(s->db);
	m.hello.version = s->speak;
	m.hello.node_role = s->db->role;
	m.hello.cert_role = s->db->cert_role;
	snprintf(m.hello.scope, sizeof(m.hello.scope), "%s", s->my_scope);
	memcpy(m.hello.epoch, epoch, 8);
	m.hello.wall_ms = (uint64_t)kheo__now_ms(s->db);
	memcpy(m.hello.summary, s->summary, KHEO_ID_SIZE);
	memcpy(s->hello_summary, s->summary, KHEO_ID_SIZE);
	m.hello.certs = certs;
	m.hello.cert_lens = lens;
	m.hello.ncerts = n;
	err = send_msg(s, &m);
	kheo_buf_free(&chain);
	s->hello_sent = 1;
	return err;
}

static int send_heads(kheo_session *s)
{
	kheo_head *v;
	size_t n, i;
	int err = KHEO_OK;

	if ((err = our_heads(s, &v, &n)) < 0)
		return fail(s, "%s", kheo_errmsg(s->db));
	i = 0;
	do {
		kheo_msg m = { .type = KHEO_MSG_HEADS };

		m.heads.v = v + i;
		m.heads.n = n - i < HEADS_PER_MSG ? n - i : HEADS_PER_MSG;
		m.heads.last = i + m.heads.n == n;
		err = send_msg(s, &m);
		i += m.heads.n;
	} while (err == KHEO_OK && i < n);
	kheo__free(v);
	s->heads_sent = 1;
	return err;
}

/*
 * What the peer lacks, from its heads: for each of our stored changesets
 * in scope, in chain order (`_sys` first), those beyond the peer's head of
 * that chain when we hold that head; all of the chain when we do not (the
 * peer's branch differs, or it has none).
 */
static int plan_sending(kheo_session *s)
{
	sqlite3_stmt *st, *have;
	size_t cap = 0;
	int rc, err = KHEO_OK;

	rc = sqlite3_prepare_v2(s->db->sql, "SELECT n, author, unit, useq"
		" FROM kheo_cs ORDER BY unit != '_sys', author, unit, useq, id",
		-1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(s, "plan: %s", sqlite3_errmsg(s->db->sql));
	/* 1 when we hold the peer's head, or nothing at its useq */
	rc = sqlite3_prepare_v2(s->db->sql, "SELECT EXISTS (SELECT 1 FROM"
		" kheo_cs WHERE id = ?1) OR NOT EXISTS (SELECT 1 FROM kheo_cs"
		" WHERE author = ?2 AND unit = ?3 AND useq = ?4)", -1, &have,
		NULL);
	if (rc != SQLITE_OK) {
		sqlite3_finalize(st);
		return fail(s, "plan: %s", sqlite3_errmsg(s->db->sql));
	}
	while (err == KHEO_OK && sqlite3_step(st) == SQLITE_ROW) {
		const uint8_t *author = sqlite3_column_blob(st, 1);
		const char *unit = (const char *)sqlite3_column_text(st, 2);
		uint64_t useq = (uint64_t)sqlite3_column_int64(st, 3);
		uint64_t from = 0; /* the peer holds this chain up to `from` */
		size_t i;

		if (!in_scope(s, unit))
			continue;
		for (i = 0; i < s->npeer; i++) {
			const kheo_head *h = &s->peer_heads[i];

			if (memcmp(h->author, author, KHEO_KEY_SIZE) != 0 ||
			    strcmp(h->unit, unit) != 0 || h->useq <= from)
				continue;
			/* we hold its head: it holds our chain up to there;
			 * we hold nothing at that useq: it is ahead of us,
			 * and holds what we have (a chain grows from 1); we
			 * hold another changeset there: another branch, so
			 * all of ours */
			sqlite3_reset(have);
			sqlite3_bind_blob(have, 1, h->id, KHEO_ID_SIZE,
				SQLITE_STATIC);
			sqlite3_bind_blob(have, 2, author, KHEO_KEY_SIZE,
				SQLITE_STATIC);
			sqlite3_bind_text(have, 3, unit, -1, SQLITE_STATIC);
			sqlite3_bind_int64(have, 4, (int64_t)h->useq);
			if (sqlite3_step(have) == SQLITE_ROW &&
			    sqlite3_column_int(have, 0))
				from = h->useq;
		}
		if (useq <= from)
			continue;
		if (s->nqueue == cap) {
			int64_t *nq = kheo__realloc(s->queue,
				(cap = cap ? 2 * cap : 256) * sizeof(*nq));

			if (!nq) {
				err = fail(s, "out of memory");
				break;
			}
			s->queue = nq;
		}
		s->queue[s->nqueue++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(have);
	sqlite3_finalize(st);
	s->st.to_send = s->nqueue;
	return err;
}

/*
 * The next chunk of frames, or DONE when nothing is left.  Frames go raw
 * (a stored frame is decompressed, its canonical bytes and signature kept)
 * and the whole chunk is compressed as one zstd frame (PACKED): records
 * of one province resemble each other, so together they compress far
 * better than one by one.
 */
static int send_next(kheo_session *s)
{
	kheo_msg m = { .type = KHEO_MSG_FRAMES };
	size_t offs[1024], lens[1024], k = 0, bytes = 0, i;
	const uint8_t *ptrs[1024];
	sqlite3_stmt *st;
	int err;

	if (s->awaiting_ack || s->done_sent)
		return KHEO_OK;
	if (s->next == s->nqueue) {
		kheo_msg d = { .type = KHEO_MSG_DONE };

		s->done_sent = 1;
		return send_msg(s, &d);
	}
	if (sqlite3_prepare_v2(s->db->sql, "SELECT frame FROM kheo_cs WHERE"
		    " n = ?1", -1, &st, NULL) != SQLITE_OK)
		return fail(s, "send: %s", sqlite3_errmsg(s->db->sql));
	kheo_buf_reset(&s->frames);
	while (s->next < s->nqueue && k < 1024 &&
	       (k == 0 || bytes < s->o.chunk_bytes)) {
		uint8_t sig[KHEO_SIG_SIZE];
		size_t start = s->frames.len;

		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, s->queue[s->next++]);
		if (sqlite3_step(st) != SQLITE_ROW)
			continue; /* gone since (taken back by a revocation) */
		if (kheo_frame_read(s->db->codec, &s->raw, sig,
			    sqlite3_column_blob(st, 0),
			    (size_t)sqlite3_column_bytes(st, 0), NULL) < 0 ||
		    kheo_frame_write(s->store, &s->frames, s->raw.p,
			    s->raw.len, sig) < 0) {
			sqlite3_finalize(st);
			return fail(s, "a stored changeset is damaged: run kheo "
				"verify");
		}
		offs[k] = start;
		lens[k] = s->frames.len - start;
		bytes += lens[k++];
	}
	sqlite3_finalize(st);
	if (s->frames.oom)
		return fail(s, "out of memory");
	for (i = 0; i < k; i++)
		ptrs[i] = s->frames.p + offs[i];
	m.frames.chunk = s->chunk++;
	m.frames.p = ptrs;
	m.frames.lens = lens;
	m.frames.n = k;
	kheo_buf_reset(&s->msg);
	if (kheo_msg_encode(&s->msg, &m) < 0)
		return fail(s, "out of memory");
	kheo_buf_reset(&s->packed);
	if (s->msg.len <= KHEO_SYNC_UNPACKED_MAX &&
	    kheo_codec_pack(s->db->codec, &s->packed, s->msg.p, s->msg.len,
		    PACK_LEVEL) == KHEO_OK && s->packed.len < s->msg.len) {
		kheo_msg pm = { .type = KHEO_MSG_PACKED };
		kheo_buf inner = s->msg;

		pm.packed.raw_len = inner.len;
		pm.packed.p = s->packed.p;
		pm.packed.n = s->packed.len;
		s->msg = (kheo_buf){ 0 };
		err = send_msg(s, &pm);
		kheo_buf_free(&s->msg);
		s->msg = inner;
	} else if ((err = kheo__channel_send(&s->ch, s->msg.p,
			    s->msg.len)) < 0) {
		err = fail(s, "%s", kheo__channel_error(&s->ch));
	}
	s->awaiting_ack = 1;
	s->in_flight = k;
	s->in_flight_bytes = s->packed.len && s->packed.len < s->msg.len
				     ? s->packed.len : s->msg.len;
	s->st.frame_bytes += s->in_flight_bytes;
	return err;
}

/* ------------------------------------------------------------------ blobs */

static int hash_cmp(const void *a, const void *b)
{
	return memcmp(a, b, KHEO_ID_SIZE);
}

/* How many of the blobs we wanted are still not complete here. */
static size_t blobs_still_missing(kheo_session *s)
{
	size_t i, n = 0;

	for (i = 0; i < s->nwant; i++) {
		int complete = 0;

		if (kheo__blob_state(s->db, s->want[i].hash, NULL, NULL,
			    &complete) < 0 || !complete)
			n++;
	}
	return n;
}

static int send_end(kheo_session *s)
{
	kheo_msg m = { .type = KHEO_MSG_END };

	s->end_sent = 1;
	s->st.blobs_left = s->o.no_blobs ? s->st.blobs_left
					 : blobs_still_missing(s);
	return send_msg(s, &m);
}

/* The next request: a GET for the next chunk of the blob at hand, a WANT
 * for the next batch, or END. */
static int blob_next(kheo_session *s)
{
	if (s->end_sent || s->want_waiting || s->get_waiting ||
	    s->state != KHEO_SESSION_SYNCING)
		return KHEO_OK;
	/* the cap: no chunk that could take this session past it */
	if (s->o.blob_bytes_max &&
	    s->blob_fetched + KHEO_BLOB_CHUNK > s->o.blob_bytes_max)
		return send_end(s);
	while (s->hpos < s->nhave) {
		const uint8_t *h = s->have_h + s->hpos * KHEO_ID_SIZE;
		uint64_t size = s->have_sz[s->hpos], idx;
		kheo_msg m = { .type = KHEO_MSG_GET };

		if (kheo__blob_next_missing(s->db, h, size, &idx) < 0)
			return fail(s, "blobs: %s", kheo_errmsg(s->db));
		if (idx * KHEO_BLOB_CHUNK >= size) {
			s->hpos++; /* complete since */
			continue;
		}
		memcpy(m.blob.hash, h, KHEO_ID_SIZE);
		m.blob.index = idx;
		memcpy(s->get_hash, h, KHEO_ID_SIZE);
		s->get_idx = idx;
		s->get_size = size;
		s->get_waiting = 1;
		return send_msg(s, &m);
	}
	if (s->wpos < s->nwant) {
		kheo_msg m = { .type = KHEO_MSG_WANT };
		uint8_t *hs;
		size_t k = 0;

		if (!(hs = kheo__calloc(KHEO_SYNC_WANT_MAX, KHEO_ID_SIZE)))
			return fail(s, "out of memory");
		s->wbatch = s->wpos;
		while (s->wpos < s->nwant && k < KHEO_SYNC_WANT_MAX)
			memcpy(hs + k++ * KHEO_ID_SIZE,
				s->want[s->wpos++].hash, KHEO_ID_SIZE);
		m.want.hashes = hs;
		m.want.n = k;
		s->want_waiting = 1;
		k = (size_t)send_msg(s, &m);
		kheo__free(hs);
		return (int)k;
	}
	return send_end(s);
}

/* Once the peer's changesets are all in: what do our records in scope
 * name that we lack?  Those, in priority order, one hash once. */
static int start_blobs(kheo_session *s)
{
	kheo_blob_ref *v;
	size_t n, i, k = 0;

	if (s->blobs_started)
		return KHEO_OK;
	s->blobs_started = 1;
	if (kheo__blob_named(s->db, keep_in_scope, s, &v, &n) < 0)
		return fail(s, "blobs: %s", kheo_errmsg(s->db));
	for (i = 0; i < n; i++) {
		int complete = 0;
		size_t j;

		if (kheo__blob_state(s->db, v[i].hash, NULL, NULL,
			    &complete) == KHEO_OK && complete)
			continue;
		for (j = 0; j < k; j++)
			if (memcmp(v[j].hash, v[i].hash, KHEO_ID_SIZE) == 0)
				break;
		if (j < k)
			continue;
		v[k++] = v[i];
	}
	s->want = v;
	s->nwant = k;
	if (!s->blobs) {
		/* a peer of sync version 1 knows no blob messages: the phase
		 * does not run, and what is missing stays listed as missing */
		s->st.blobs_left = k;
		s->end_sent = s->end_got = 1;
		return KHEO_OK;
	}
	if (s->o.no_blobs) {
		s->st.blobs_left = k;
		return send_end(s);
	}
	return blob_next(s);
}

/* Blobs our records in scope name, sorted (what we may serve). */
static int build_served(kheo_session *s)
{
	kheo_blob_ref *v;
	size_t n, i;

	if (s->served_ready)
		return KHEO_OK;
	if (kheo__blob_named(s->db, keep_in_scope, s, &v, &n) < 0)
		return fail(s, "blobs: %s", kheo_errmsg(s->db));
	kheo__free(s->served);
	s->served = NULL;
	s->nserved = 0;
	if (n && !(s->served = kheo__calloc(n, KHEO_ID_SIZE))) {
		kheo__free(v);
		return fail(s, "out of memory");
	}
	for (i = 0; i < n; i++)
		memcpy(s->served + i * KHEO_ID_SIZE, v[i].hash, KHEO_ID_SIZE);
	kheo__free(v);
	if (n)
		qsort(s->served, n, KHEO_ID_SIZE, hash_cmp);
	s->nserved = n;
	s->served_ready = 1;
	return KHEO_OK;
}

/* 1 when we may serve blob h: named in scope here, and complete. */
static int may_serve(kheo_session *s, const uint8_t *h, uint64_t *size)
{
	int complete = 0;

	if (!s->nserved ||
	    !bsearch(h, s->served, s->nserved, KHEO_ID_SIZE, hash_cmp))
		return 0;
	return kheo__blob_state(s->db, h, size, NULL, &complete) == KHEO_OK &&
	       complete;
}

static int on_want(kheo_session *s, const kheo_msg *m)
{
	kheo_msg r = { .type = KHEO_MSG_HAVE };
	uint8_t *hs;
	uint64_t *sz;
	size_t i, k = 0;
	int err;

	if (!s->done_sent)
		return refuse(s, "WANT out of turn");
	if ((err = build_served(s)) < 0)
		return err;
	hs = kheo__calloc(m->want.n, KHEO_ID_SIZE);
	sz = kheo__calloc(m->want.n, sizeof(*sz));
	if (!hs || !sz) {
		kheo__free(hs);
		kheo__free(sz);
		return fail(s, "out of memory");
	}
	for (i = 0; i < m->want.n; i++) {
		const uint8_t *h = m->want.hashes + i * KHEO_ID_SIZE;

		if (may_serve(s, h, &sz[k]))
			memcpy(hs + k++ * KHEO_ID_SIZE, h, KHEO_ID_SIZE);
	}
	r.want.hashes = hs;
	r.want.sizes = sz;
	r.want.n = k;
	err = send_msg(s, &r);
	kheo__free(hs);
	kheo__free(sz);
	return err;
}

static int on_have(kheo_session *s, const kheo_msg *m)
{
	size_t i, j;

	if (!s->want_waiting)
		return refuse(s, "HAVE out of turn");
	/* only what we asked for in the WANT out */
	for (i = 0; i < m->want.n; i++) {
		for (j = s->wbatch; j < s->wpos; j++)
			if (memcmp(s->want[j].hash, m->want.hashes +
				    i * KHEO_ID_SIZE, KHEO_ID_SIZE) == 0)
				break;
		if (j == s->wpos)
			return refuse(s, "HAVE names a blob we did not ask for");
	}
	kheo__free(s->have_h);
	kheo__free(s->have_sz);
	s->have_h = NULL;
	s->have_sz = NULL;
	if (m->want.n &&
	    (!(s->have_h = kheo__calloc(m->want.n, KHEO_ID_SIZE)) ||
		    !(s->have_sz = kheo__calloc(m->want.n, sizeof(uint64_t)))))
		return fail(s, "out of memory");
	if (m->want.n) {
		memcpy(s->have_h, m->want.hashes, m->want.n * KHEO_ID_SIZE);
		memcpy(s->have_sz, m->want.sizes,
			m->want.n * sizeof(uint64_t));
	}
	s->nhave = m->want.n;
	s->hpos = 0;
	s->want_waiting = 0;
	return blob_next(s);
}

static int on_get(kheo_session *s, const kheo_msg *m)
{
	kheo_msg r = { .type = KHEO_MSG_CHUNK };
	uint64_t size = 0;
	int err;

	if (!s->done_sent)
		return refuse(s, "GET out of turn");
	if ((err = build_served(s)) < 0)
		return err;
	memcpy(r.blob.hash, m->blob.hash, KHEO_ID_SIZE);
	if (!may_serve(s, m->blob.hash, &size) ||
	    kheo__blob_chunk_read(s->db, m->blob.hash, m->blob.index,
		    &s->bdata, &r.blob.z, r.blob.chash, &size) < 0) {
		/* gone since, or damaged here: the peer goes on without it */
		r.type = KHEO_MSG_LACK;
		return send_msg(s, &r);
	}
	r.blob.index = m->blob.index;
	r.blob.size = size;
	r.blob.p = s->bdata.p;
	r.blob.n = s->bdata.len;
	s->st.blob_chunks_out++;
	s->st.blob_bytes_out += s->bdata.len;
	return send_msg(s, &r);
}

static int on_chunk(kheo_session *s, const kheo_msg *m)
{
	int completed = 0, err;

	if (!s->get_waiting ||
	    memcmp(m->blob.hash, s->get_hash, KHEO_ID_SIZE) != 0 ||
	    m->blob.index != s->get_idx || m->blob.size != s->get_size) {
		char hex[2 * KHEO_ID_SIZE + 1];

		kheo_hex(hex, m->blob.hash, KHEO_ID_SIZE);
		return refuse(s, "chunk %llu of blob %.16s… not asked for",
			(unsigned long long)m->blob.index, hex);
	}
	s->get_waiting = 0;
	s->st.blob_chunks_in++;
	s->st.blob_bytes_in += m->blob.n;
	s->blob_fetched += m->blob.n;
	err = kheo__blob_receive(s->db, m->blob.hash, m->blob.size,
		m->blob.index, m->blob.z, m->blob.chash, m->blob.p, m->blob.n,
		&completed);
	if (err == KHEO_ENOMEM || err == KHEO_EIO || err == KHEO_ERROR)
		return fail(s, "blobs: %s", kheo_errmsg(s->db));
	if (err < 0) {
		/* refused (does not verify): nothing of it kept; go on with
		 * the others, and say so */
		s->st.blobs_refused++;
		snprintf(s->st.blob_error, sizeof(s->st.blob_error), "%s",
			kheo_errmsg(s->db));
		s->hpos++;
	} else if (completed) {
		s->st.blobs_completed++;
		s->hpos++;
	}
	return blob_next(s);
}

static int on_lack(kheo_session *s, const kheo_msg *m)
{
	if (!s->get_waiting ||
	    memcmp(m->blob.hash, s->get_hash, KHEO_ID_SIZE) != 0)
		return refuse(s, "LACK out of turn");
	s->get_waiting = 0;
	s->hpos++;
	return blob_next(s);
}

/* The narrower of two scopes when one holds the other; -1 if disjoint. */
static int session_scope(char out[KHEO_UNIT_MAX + 1], const char *a,
	const char *b)
{
	if (!a[0] || (b[0] && kheo_unit_within(b, a)))
		snprintf(out, KHEO_UNIT_MAX + 1, "%s", b);
	else if (!b[0] || kheo_unit_within(a, b))
		snprintf(out, KHEO_UNIT_MAX + 1, "%s", a);
	else
		return -1;
	return 0;
}

/* The peer's certificates, offered as facts; then is it one we accept? */
static int check_peer(kheo_session *s, const kheo_msg *m)
{
	const uint8_t *peer = kheo__channel_peer(&s->ch);
	char ph[17];
	int64_t now = kheo__now_ms(s->db), off;
	size_t i;
	sqlite3_stmt *st;
	int ok = 0, revoked = 0, err;

	kheo_hex(ph, peer, 8);
	if ((err = kheo__begin(s->db)) < 0)
		return fail(s, "%s", kheo_errmsg(s->db));
	for (i = 0; i < m->hello.ncerts; i++) {
		kheo_cert c;

		if (kheo_cert_decode(&c, m->hello.certs[i],
			    m->hello.cert_lens[i], NULL) == KHEO_OK &&
		    (err = kheo__authz_add_cert(s->db, &c, m->hello.certs[i],
			     m->hello.cert_lens[i])) < 0)
			break;
	}
	if ((err = kheo__authz_refresh(s->db)) < 0 ||
	    (err = kheo__commit_tx(s->db)) < 0) {
		kheo__rollback(s->db);
		return fail(s, "%s", kheo_errmsg(s->db));
	}
	if (memcmp(peer, s->db->root, KHEO_KEY_SIZE) == 0)
		ok = 1;
	if (sqlite3_prepare_v2(s->db->sql, "SELECT (SELECT count(*) FROM"
		    " kheo_cert WHERE subject = ?1 AND status = 1), (SELECT"
		    " count(*) FROM kheo_revoked WHERE key = ?1)", -1, &st,
		    NULL) == SQLITE_OK) {
		sqlite3_bind_blob(st, 1, peer, KHEO_KEY_SIZE, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			ok |= sqlite3_column_int(st, 0) > 0;
			revoked = sqlite3_column_int(st, 1) > 0;
		}
		sqlite3_finalize(st);
	}
	if (revoked)
		return refuse(s, "%s… is revoked", ph);
	if (!ok)
		return refuse(s, "%s… is not enrolled under this province's "
			"root (no certificate of it holds)", ph);
	off = (int64_t)m->hello.wall_ms - now;
	s->st.clock_offset_ms = off;
	if (!s->o.initiator && (off > CLOCK_OFF_MAX_MS ||
				       off < -CLOCK_OFF_MAX_MS))
		return refuse(s, "your clock is %lld minutes %s this hub's: "
			"fix the device's date and time, then sync again",
			(long long)((off < 0 ? -off : off) / 60000),
			off < 0 ? "behind" : "ahead of");
	if (session_scope(s->scope, s->my_scope, m->hello.scope) < 0)
		return refuse(s, "no units in common (%s and %s)",
			s->my_scope, m->hello.scope);
	snprintf(s->st.scope, sizeof(s->st.scope), "%s", s->scope);
	s->node_role_peer = m->hello.node_role;
	s->cert_role_peer = m->hello.cert_role;
	s->st.peer_version = m->hello.version;
	/* the session runs at the lower version: a server answers an older
	 * client in the client's version (a node of version 1 refuses any
	 * other), and a client refuses an answer above its own, as that
	 * node does */
	if (m->hello.version > s->speak)
		return refuse(s, "sync version %u unknown (this node speaks "
			"%d to %u)", m->hello.version, KHEO_SYNC_VERSION_MIN,
			s->speak);
	if (!s->o.initiator)
		s->speak = m->hello.version;
	s->blobs = s->speak >= KHEO_SYNC_VERSION_BLOBS;
	return KHEO_OK;
}

static int on_hello(kheo_session *s, const kheo_msg *m)
{
	int err;

	if (s->hello_got)
		return refuse(s, "a second HELLO");
	s->hello_got = 1;
	if ((err = check_peer(s, m)) < 0)
		return err;
	if ((err = summarise(s)) < 0)
		return fail(s, "%s", kheo_errmsg(s->db));
	if (!s->o.initiator) {
		/* the client summarised its own scope: comparable when that
		 * is the session's */
		s->in_sync = strcmp(s->scope, m->hello.scope) == 0 &&
			     memcmp(s->summary, m->hello.summary,
				     KHEO_ID_SIZE) == 0;
		if ((err = send_hello(s)) < 0)
			return err;
	} else {
		/* the server summarised the session's scope and compared it
		 * with the summary our HELLO carried (when the session's scope
		 * is ours): decide exactly as it did, from what we sent, even
		 * if another session has changed what we hold since */
		s->in_sync = strcmp(s->scope, s->my_scope) == 0 &&
			     memcmp(s->hello_summary, m->hello.summary,
				     KHEO_ID_SIZE) == 0;
	}
	s->state = KHEO_SESSION_SYNCING;
	if (s->in_sync) {
		s->heads_got = 1;
		/* nothing queued: DONE; and the peer sends no changesets, so
		 * the blobs may start at once */
		if ((err = send_next(s)) < 0)
			return err;
		return start_blobs(s);
	}
	return send_heads(s);
}

static int on_heads(kheo_session *s, const kheo_msg *m)
{
	size_t i;

	if (!s->hello_got || s->heads_got || s->in_sync)
		return refuse(s, "HEADS out of turn");
	if (s->npeer + m->heads.n > 16u * KHEO_SYNC_HEADS_MAX)
		return refuse(s, "too many heads");
	if (s->npeer + m->heads.n > s->cappeer) {
		size_t cap = s->cappeer ? 2 * s->cappeer : 256;
		kheo_head *v;

		while (cap < s->npeer + m->heads.n)
			cap *= 2;
		if (!(v = kheo__realloc(s->peer_heads, cap * sizeof(*v))))
			return fail(s, "out of memory");
		s->peer_heads = v;
		s->cappeer = cap;
	}
	for (i = 0; i < m->heads.n; i++)
		s->peer_heads[s->npeer++] = m->heads.v[i];
	if (!m->heads.last)
		return KHEO_OK;
	s->heads_got = 1;
	if (!s->heads_sent) {
		int err = send_heads(s);

		if (err < 0)
			return err;
	}
	if (plan_sending(s) < 0)
		return KHEO_EPROTO;
	return send_next(s);
}

static int on_frames(kheo_session *s, const kheo_msg *m)
{
	kheo_msg ack = { .type = KHEO_MSG_ACK };
	kheo_apply_stats st = { 0 };
	int err;

	if (!s->hello_got || s->done_got)
		return refuse(s, "FRAMES out of turn");
	if (s->st.received + m->frames.n > s->o.max_changesets)
		return refuse(s, "more than %llu changesets in one session",
			(unsigned long long)s->o.max_changesets);
	/* frames came raw: stored compressed, as this node stores every
	 * frame (one that does not read is passed on as it came, for
	 * receipt to quarantine with its reason) */
	{
		size_t i, *offs, *lens;
		const uint8_t **ptrs;

		offs = kheo__calloc(m->frames.n + 1, sizeof(*offs));
		lens = kheo__calloc(m->frames.n + 1, sizeof(*lens));
		ptrs = kheo__calloc(m->frames.n + 1, sizeof(*ptrs));
		if (!offs || !lens || !ptrs) {
			kheo__free(offs);
			kheo__free(lens);
			kheo__free((void *)ptrs);
			return fail(s, "out of memory");
		}
		kheo_buf_reset(&s->frames);
		for (i = 0; i < m->frames.n; i++) {
			uint8_t sig[KHEO_SIG_SIZE];
			size_t start = s->frames.len;

			if (kheo_frame_read(s->db->codec, &s->raw, sig,
				    m->frames.p[i], m->frames.lens[i], NULL) <
				    0 ||
			    kheo_frame_write(s->db->codec, &s->frames,
				    s->raw.p, s->raw.len, sig) < 0) {
				s->frames.len = start;
				kheo_buf_put(&s->frames, m->frames.p[i],
					m->frames.lens[i]);
			}
			offs[i] = start;
			lens[i] = s->frames.len - start;
		}
		for (i = 0; i < m->frames.n; i++)
			ptrs[i] = s->frames.p + offs[i];
		/* one transaction, durable when it returns */
		err = s->frames.oom ? KHEO_ENOMEM
				    : kheo__apply_frames(s->db, ptrs, lens,
					      m->frames.n, &st);
		kheo__free(offs);
		kheo__free(lens);
		kheo__free((void *)ptrs);
		if (err < 0)
			return fail(s, "apply: %s", kheo_errmsg(s->db));
	}
	s->served_ready = 0; /* records came: what we name may have grown */
	s->st.received += m->frames.n;
	s->st.apply.applied += st.applied;
	s->st.apply.held += st.held;
	s->st.apply.rejected += st.rejected;
	s->st.apply.duplicate += st.duplicate;
	s->st.apply.released += st.released;
	s->st.apply.ops += st.ops;
	ack.ack.chunk = m->frames.chunk;
	ack.ack.applied = st.applied + st.duplicate;
	ack.ack.held = st.held;
	ack.ack.rejected = st.rejected;
	return send_msg(s, &ack);
}

static int on_ack(kheo_session *s, const kheo_msg *m)
{
	if (!s->awaiting_ack || m->ack.chunk + 1 != s->chunk)
		return refuse(s, "ACK of chunk %llu unexpected",
			(unsigned long long)m->ack.chunk);
	s->awaiting_ack = 0;
	s->st.sent += s->in_flight;
	s->st.frame_bytes_acked += s->in_flight_bytes;
	s->st.to_send = s->nqueue - s->next;
	s->in_flight = 0;
	return send_next(s);
}

/*
 * What this node remembers of a peer (kheo_peer): when it last spoke, its
 * clock offset, how the session ended.  A hub shows this per device.
 */
static void note_peer(kheo_session *s)
{
	sqlite3_stmt *st;
	int64_t now = kheo__now_ms(s->db);

	if (!kheo__channel_ready(&s->ch) || s->noted)
		return;
	if (sqlite3_prepare_v2(s->db->sql, "INSERT INTO kheo_peer(key,"
		    " node_role, cert_role, scope, last_contact, clock_offset,"
		    " last_ok, last_error, sent, received) VALUES(?1, ?2, ?3,"
		    " ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT(key) DO UPDATE"
		    " SET node_role = coalesce(excluded.node_role, node_role),"
		    " cert_role = coalesce(excluded.cert_role, cert_role),"
		    " scope = coalesce(excluded.scope, scope), last_contact ="
		    " excluded.last_contact, clock_offset ="
		    " coalesce(excluded.clock_offset, clock_offset), last_ok ="
		    " coalesce(excluded.last_ok, last_ok), last_error ="
		    " excluded.last_error, sent = sent + excluded.sent,"
		    " received = received + excluded.received", -1, &st,
		    NULL) != SQLITE_OK)
		return;
	sqlite3_bind_blob(st, 1, kheo__channel_peer(&s->ch), KHEO_KEY_SIZE,
		SQLITE_STATIC);
	if (s->hello_got) {
		sqlite3_bind_int(st, 2, s->node_role_peer);
		sqlite3_bind_int(st, 3, s->cert_role_peer);
		sqlite3_bind_text(st, 4, s->scope, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 6, s->st.clock_offset_ms);
	}
	sqlite3_bind_int64(st, 5, now);
	if (s->state == KHEO_SESSION_DONE)
		sqlite3_bind_int64(st, 7, now);
	else
		sqlite3_bind_text(st, 8, s->err, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, (int64_t)s->st.sent);
	sqlite3_bind_int64(st, 10, (int64_t)s->st.received);
	if (sqlite3_step(st) == SQLITE_DONE)
		s->noted = 1;
	sqlite3_finalize(st);
}

static void maybe_done(kheo_session *s)
{
	if (s->state == KHEO_SESSION_SYNCING && s->done_sent && s->done_got &&
	    !s->awaiting_ack && s->end_sent && s->end_got &&
	    !s->want_waiting && !s->get_waiting) {
		s->state = KHEO_SESSION_DONE;
		note_peer(s);
	}
}

/* One message, from a record or unpacked from a PACKED one. */
static int on_message(kheo_session *s, const uint8_t *p, size_t n,
	int inner)
{
	kheo_refusal why = { 0 };
	kheo_msg m;
	int err;

	if ((err = kheo_msg_decode(&m, p, n, &why)) < 0)
		return refuse(s, "bad message: %s", why.msg);
	if (m.type == KHEO_MSG_PACKED) {
		if (inner) {
			kheo_msg_free(&m);
			return refuse(s, "a packed message inside another");
		}
		kheo_buf_reset(&s->unpacked);
		err = kheo_codec_unpack(s->db->codec, &s->unpacked, m.packed.p,
			m.packed.n, (size_t)m.packed.raw_len, &why);
		kheo_msg_free(&m);
		if (err < 0)
			return refuse(s, "bad packed message: %s", why.msg);
		return on_message(s, s->unpacked.p, s->unpacked.len, 1);
	}
	if (!s->hello_got && m.type != KHEO_MSG_HELLO &&
	    m.type != KHEO_MSG_REFUSE) {
		int type = m.type;

		kheo_msg_free(&m);
		return refuse(s, "message %d before HELLO", type);
	}
	if (m.type >= KHEO_MSG_WANT && m.type <= KHEO_MSG_END && !s->blobs) {
		int type = m.type;

		kheo_msg_free(&m);
		return refuse(s, "message %d is a blob message, and this session "
			"runs at sync version 1 (no blobs)", type);
	}
	switch (m.type) {
	case KHEO_MSG_HELLO:
		err = on_hello(s, &m);
		break;
	case KHEO_MSG_HEADS:
		err = on_heads(s, &m);
		break;
	case KHEO_MSG_FRAMES:
		err = on_frames(s, &m);
		break;
	case KHEO_MSG_ACK:
		err = on_ack(s, &m);
		break;
	case KHEO_MSG_DONE:
		if (!s->hello_got || (!s->heads_got && !s->in_sync) ||
		    s->done_got)
			err = refuse(s, "DONE out of turn");
		else {
			s->done_got = 1;
			err = start_blobs(s);
		}
		break;
	case KHEO_MSG_WANT:
		err = on_want(s, &m);
		break;
	case KHEO_MSG_HAVE:
		err = on_have(s, &m);
		break;
	case KHEO_MSG_GET:
		err = on_get(s, &m);
		break;
	case KHEO_MSG_CHUNK:
		err = on_chunk(s, &m);
		break;
	case KHEO_MSG_LACK:
		err = on_lack(s, &m);
		break;
	case KHEO_MSG_END:
		if (s->end_got || !s->done_sent)
			err = refuse(s, "END out of turn");
		else
			s->end_got = 1;
		break;
	case KHEO_MSG_REFUSE:
		err = fail(s, "the peer refused: %s", m.refuse);
		break;
	}
	kheo_msg_free(&m);
	maybe_done(s);
	return err;
}

/* One record from the channel: one message. */
static int on_record(void *arg, const uint8_t *p, size_t n)
{
	kheo_session *s = arg;

	if (s->state == KHEO_SESSION_FAILED || s->state == KHEO_SESSION_DONE)
		return KHEO_OK;
	return on_message(s, p, n, 0);
}

#ifdef KHEO_FAULT_INJECTION
/* Tests play an older node, or a peer that breaks the protocol
 * (tests/unit/test_blob.c): the test build only. */
void kheo__session_speak(kheo_session *s, unsigned version)
{
	s->speak = version;
}

int kheo__session_inject(kheo_session *s, const kheo_msg *m)
{
	return send_msg(s, m);
}

void kheo__session_tamper(kheo_session *s,
	int (*fn)(void *arg, kheo_msg *m), void *arg)
{
	s->tamper = fn;
	s->tamper_arg = arg;
}
#endif

/* ------------------------------------------------------------------ API */

KHEO_EXTERN void kheo_session_free(kheo_session *s);

KHEO_EXTERN int kheo_session_new(kheo_session **out, kheo_db *db,
	const kheo_session_options *o)
{
	kheo_session *s;
	uint8_t expect[KHEO_KEY_SIZE];
	const uint8_t *want = NULL;
	sqlite3_stmt *st;
	int err;

	kheo__clear(db);
	*out = NULL;
	if (!o || o->version != KHEO_SESSION_OPTIONS_VERSION)
		return kheo__error(db, KHEO_EINVAL, "session options version "
			"unknown");
	if (!db->enforcing)
		return kheo__error(db, KHEO_EAUTH, "this node is in open mode "
			"(not enrolled): it cannot sync; enrol it first");
	if (!db->sk)
		return kheo__error(db, KHEO_EAUTH, "%s", db->sign_refusal);
	if (o->expect_peer &&
	    (strlen(o->expect_peer) != 2 * KHEO_KEY_SIZE ||
		    kheo_unhex(expect, KHEO_KEY_SIZE, o->expect_peer,
			    strlen(o->expect_peer)) < 0))
		return kheo__error(db, KHEO_EINVAL, "expected peer key must be "
			"64 hex digits");
	if (o->expect_peer)
		want = expect;
	/* edits are sealed when the node syncs */
	if ((err = kheo_commit(db, NULL)) < 0)
		return err;
	if (!(s = kheo__calloc(1, sizeof(*s))))
		return kheo__error(db, KHEO_ENOMEM, "out of memory");
	if (kheo_codec_new(&s->store, 0) < 0) {
		kheo__free(s);
		return kheo__error(db, KHEO_ENOMEM, "out of memory");
	}
	s->db = db;
	s->o = *o;
	s->o.expect_peer = NULL;
	s->speak = KHEO_SYNC_VERSION;
	if (!s->o.chunk_bytes)
		s->o.chunk_bytes = DEFAULT_CHUNK;
	if (!s->o.max_changesets)
		s->o.max_changesets = DEFAULT_MAX_CHANGESETS;
	if (o->network_key) {
		memcpy(s->network_key, o->network_key, 32);
	} else {
		crypto_generichash_state h;

		crypto_generichash_init(&h, NULL, 0, 32);
		crypto_generichash_update(&h,
			(const uint8_t *)"kheo/network/v1", 15);
		crypto_generichash_update(&h, db->root, KHEO_KEY_SIZE);
		crypto_generichash_final(&h, s->network_key, 32);
	}
	/* our scope: the best certificate's; the root's is everything */
	if (memcmp(db->pk, db->root, KHEO_KEY_SIZE) != 0 &&
	    sqlite3_prepare_v2(db->sql, "SELECT scope FROM kheo_cert WHERE"
		    " subject = ?1 AND status = 1 ORDER BY role DESC LIMIT 1",
		    -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_blob(st, 1, db->pk, KHEO_KEY_SIZE, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			snprintf(s->my_scope, sizeof(s->my_scope), "%s",
				(const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
		if (!s->my_scope[0]) {
			kheo_session_free(s);
			return kheo__error(db, KHEO_EAUTH, "no certificate of "
				"this node holds: it cannot sync (renew or "
				"enrol it)");
		}
	}
	snprintf(s->scope, sizeof(s->scope), "%s", s->my_scope);
	/* the client's HELLO summarises its own scope */
	if ((err = summarise(s)) < 0) {
		kheo_session_free(s);
		return err;
	}
	s->state = KHEO_SESSION_HANDSHAKE;
	kheo__channel_init(&s->ch, o->initiator, s->network_key, db->sk,
		db->pk, want);
	*out = s;
	return KHEO_OK;
}

KHEO_EXTERN void kheo_session_free(kheo_session *s)
{
	if (!s)
		return;
	kheo__channel_free(&s->ch);
	kheo__free(s->peer_heads);
	kheo__free(s->queue);
	kheo__free(s->want);
	kheo__free(s->have_h);
	kheo__free(s->have_sz);
	kheo__free(s->served);
	kheo_buf_free(&s->bdata);
	kheo_buf_free(&s->msg);
	kheo_buf_free(&s->raw);
	kheo_buf_free(&s->frames);
	kheo_buf_free(&s->packed);
	kheo_buf_free(&s->unpacked);
	kheo_codec_free(s->store);
	kheo__free(s);
}

/*
 * Between calls a session holds no statement, transaction or pointer into
 * its handle but `db` itself and the channel's borrowed secret key: both
 * move here.  Each call prepares, steps and finalizes its own statements
 * and ends its transactions, so any handle of the node will do for the
 * next one.
 */
KHEO_EXTERN int kheo_session_bind(kheo_session *s, kheo_db *db)
{
	if (db) {
		kheo__clear(db);
		if (memcmp(db->pk, s->ch.pk, KHEO_KEY_SIZE) != 0)
			return kheo__error(db, KHEO_EINVAL, "the session "
				"belongs to another node");
		if (!db->sk)
			return kheo__error(db, KHEO_EAUTH, "%s",
				db->sign_refusal);
	}
	s->db = db;
	kheo__channel_rebind(&s->ch, db ? db->sk : NULL);
	return KHEO_OK;
}

KHEO_EXTERN int kheo_session_input(kheo_session *s, const uint8_t *p,
	size_t n)
{
	int was_ready = kheo__channel_ready(&s->ch), err;

	assert(s->db && "kheo_session_input: bound to no kheo_db");
	if (s->state == KHEO_SESSION_FAILED)
		return KHEO_EPROTO;
	s->st.bytes_in += n;
	err = kheo__channel_input(&s->ch, p, n, on_record, s);
	if (err < 0)
		return fail(s, "%s", s->err[0] ? s->err
					       : kheo__channel_error(&s->ch));
	if (!was_ready && kheo__channel_ready(&s->ch)) {
		kheo_hex(s->st.peer, kheo__channel_peer(&s->ch), KHEO_KEY_SIZE);
		if (s->o.initiator && !s->hello_sent &&
		    (err = send_hello(s)) < 0)
			return err;
	}
	return s->state == KHEO_SESSION_FAILED ? KHEO_EPROTO : KHEO_OK;
}

KHEO_EXTERN void kheo_session_output(kheo_session *s, const uint8_t **p,
	size_t *n)
{
	const kheo_buf *b = kheo__channel_out(&s->ch);

	*p = b->p;
	*n = b->len;
}

KHEO_EXTERN void kheo_session_sent(kheo_session *s, size_t n)
{
	s->st.bytes_out += n;
	kheo__channel_consumed(&s->ch, n);
}

KHEO_EXTERN kheo_session_state kheo_session_status(const kheo_session *s,
	kheo_session_stats *st)
{
	if (st) {
		*st = s->st;
		st->to_receive = 0; /* the peer does not say; see DONE */
	}
	return s->state;
}

KHEO_EXTERN const char *kheo_session_error(const kheo_session *s)
{
	return s->state == KHEO_SESSION_FAILED ? s->err : "";
}
