/*
 * bundle.c - making and reading bundle files (proto/bundle.c has the
 * bytes): what this node puts in one for a peer, and what it learns from
 * one it reads.
 *
 * A bundle carries the changesets the receiver may lack.  With --for, the
 * sender leaves out what it knows the receiver holds: the receiver's own
 * changesets, and every chain the receiver's last bundle said it held, up
 * to that head (heads are compared by useq *and* id, so a receiver on the
 * other branch of an equivocation is never thought to agree).
 */
#include "internal.h"
#include "blob.h"
#include "alloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Highest applied useq per (author, unit), with its id. */
static int our_heads(kheo_db *db, kheo_head **out, size_t *n)
{
	sqlite3_stmt *st;
	size_t cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = sqlite3_prepare_v2(db->sql,
		"SELECT author, unit, useq, min(id) FROM kheo_cs c WHERE"
		" state = 0 AND useq = (SELECT max(useq) FROM kheo_cs d WHERE"
		" d.author = c.author AND d.unit = c.unit AND d.state = 0)"
		" GROUP BY author, unit ORDER BY author, unit", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "heads");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		kheo_head *h;

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
		snprintf(h->unit, sizeof(h->unit), "%s",
			(const char *)sqlite3_column_text(st, 1));
		h->useq = (uint64_t)sqlite3_column_int64(st, 2);
		memcpy(h->id, sqlite3_column_blob(st, 3), KHEO_ID_SIZE);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		kheo__free(*out);
		*out = NULL;
		return rc == SQLITE_NOMEM ? KHEO_ENOMEM
					  : kheo__sqlerr(db, rc, "heads");
	}
	return KHEO_OK;
}

static int write_file(kheo_db *db, const char *path, const kheo_buf *b)
{
	char tmp[4096];
	FILE *f;

	/* write beside, then rename: a reader never sees half a bundle */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (!(f = fopen(tmp, "wb")))
		return kheo__error(db, KHEO_EIO, "%s: %s", tmp,
			strerror(errno));
	if (fwrite(b->p, 1, b->len, f) != b->len || fflush(f) != 0 ||
	    fclose(f) != 0) {
		remove(tmp);
		return kheo__error(db, KHEO_EIO, "%s: %s", tmp,
			strerror(errno));
	}
	if (rename(tmp, path) != 0) {
		int saved = errno;

		remove(tmp);
		return kheo__error(db, KHEO_EIO, "%s: %s", path,
			strerror(saved));
	}
	return KHEO_OK;
}

static int rid_cmp(const void *a, const void *b)
{
	return memcmp(a, b, KHEO_RECORD_SIZE);
}

static int hash_cmp(const void *a, const void *b)
{
	return memcmp(a, b, KHEO_ID_SIZE);
}

/*
 * The chunks of the blobs to carry, into b (their data in `data`): every
 * blob held whole that a live record names, or with rids (sorted, nrids
 * of them; NULL for all) only those named by these records.
 */
static int add_blobs(kheo_db *db, kheo_bundle *b, kheo_buf *data,
	const uint8_t *rids, size_t nrids, size_t *nblobs)
{
	kheo_blob_ref *v;
	uint8_t *hs = NULL;
	size_t n, i, k = 0, *offs = NULL, cap = 0;
	kheo_buf one = { 0 };
	int err;

	*nblobs = 0;
	if ((err = kheo__blob_named(db, NULL, NULL, &v, &n)) < 0)
		return err;
	if (n && !(hs = kheo__calloc(n, KHEO_ID_SIZE))) {
		kheo__free(v);
		return kheo__error(db, KHEO_ENOMEM, "out of memory");
	}
	for (i = 0; i < n; i++) {
		uint8_t rid[KHEO_RECORD_SIZE];
		int complete = 0;

		if (rids && (kheo_unhex(rid, sizeof(rid), v[i].id,
				     strlen(v[i].id)) < 0 || !nrids ||
				    !bsearch(rid, rids, nrids, KHEO_RECORD_SIZE,
					    rid_cmp)))
			continue;
		if (kheo__blob_state(db, v[i].hash, NULL, NULL, &complete) ==
			    KHEO_OK && complete)
			memcpy(hs + k++ * KHEO_ID_SIZE, v[i].hash,
				KHEO_ID_SIZE);
	}
	kheo__free(v);
	if (k)
		qsort(hs, k, KHEO_ID_SIZE, hash_cmp);
	for (i = 0; i < k && err == KHEO_OK; i++) {
		const uint8_t *h = hs + i * KHEO_ID_SIZE;
		uint64_t idx, size = 1;

		if (i && memcmp(h, h - KHEO_ID_SIZE, KHEO_ID_SIZE) == 0)
			continue;
		(*nblobs)++;
		for (idx = 0; idx * KHEO_BLOB_CHUNK < size; idx++) {
			kheo_blob_chunk *c;

			if (b->nchunks == cap) {
				size_t ncap = cap ? 2 * cap : 64;
				kheo_blob_chunk *nc = kheo__realloc(b->chunks,
					ncap * sizeof(*nc));
				size_t *no;

				if (nc)
					b->chunks = nc;
				no = nc ? kheo__realloc(offs,
						  ncap * sizeof(*no)) : NULL;
				if (no)
					offs = no;
				if (!nc || !no) {
					err = kheo__error(db, KHEO_ENOMEM,
						"out of memory");
					break;
				}
				cap = ncap;
			}
			c = &b->chunks[b->nchunks];
			memset(c, 0, sizeof(*c));
			if ((err = kheo__blob_chunk_read(db, h, idx, &one,
				     &c->z, c->chash, &size)) < 0)
				break;
			memcpy(c->hash, h, KHEO_ID_SIZE);
			c->index = idx;
			c->size = size;
			c->n = one.len;
			offs[b->nchunks++] = data->len;
			kheo_buf_put(data, one.p, one.len);
		}
	}
	/* pointers once the data no longer moves */
	if (err == KHEO_OK && data->oom)
		err = kheo__error(db, KHEO_ENOMEM, "out of memory");
	for (i = 0; err == KHEO_OK && i < b->nchunks; i++)
		b->chunks[i].p = data->p + offs[i];
	kheo__free(offs);
	kheo__free(hs);
	kheo_buf_free(&one);
	return err;
}

/* The records the changesets numbered cs[0..n) touch, sorted. */
static int touched_rids(kheo_db *db, const int64_t *cs, size_t n,
	uint8_t **out, size_t *nout)
{
	sqlite3_stmt *st;
	size_t i, k = 0, cap = 0;
	uint8_t *v = NULL;
	int rc = SQLITE_DONE;

	*out = NULL;
	*nout = 0;
	if ((rc = sqlite3_prepare_v2(db->sql, "SELECT DISTINCT rid FROM"
		     " kheo_op WHERE cs = ?1", -1, &st, NULL)) != SQLITE_OK)
		return kheo__sqlerr(db, rc, "bundle");
	rc = SQLITE_DONE;
	for (i = 0; i < n && rc == SQLITE_DONE; i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, cs[i]);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			if (k == cap) {
				uint8_t *nv = kheo__realloc(v,
					(cap = cap ? 2 * cap : 64) *
						KHEO_RECORD_SIZE);

				if (!nv) {
					rc = SQLITE_NOMEM;
					break;
				}
				v = nv;
			}
			memcpy(v + k++ * KHEO_RECORD_SIZE,
				sqlite3_column_blob(st, 0), KHEO_RECORD_SIZE);
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		kheo__free(v);
		return rc == SQLITE_NOMEM
			       ? kheo__error(db, KHEO_ENOMEM, "out of memory")
			       : kheo__sqlerr(db, rc, "bundle");
	}
	if (k)
		qsort(v, k, KHEO_RECORD_SIZE, rid_cmp);
	*out = v;
	*nout = k;
	return KHEO_OK;
}

KHEO_EXTERN int kheo_bundle_create(kheo_db *db, const char *path,
	const char *for_node, kheo_bundle_stats *st)
{
	kheo_bundle_options o = KHEO_BUNDLE_OPTIONS_INIT;

	o.for_node = for_node;
	return kheo_bundle_create_ext(db, path, &o, st);
}

KHEO_EXTERN int kheo_bundle_create_ext(kheo_db *db, const char *path,
	const kheo_bundle_options *o, kheo_bundle_stats *st)
{
	const char *for_node = o ? o->for_node : NULL;
	kheo_bundle b = { 0 };
	kheo_buf out = { 0 }, frames = { 0 }, blobs = { 0 };
	uint8_t peer[KHEO_KEY_SIZE], *rids = NULL;
	sqlite3_stmt *q = NULL;
	size_t *offs = NULL, cap = 0, i, nrids = 0, nblobs = 0;
	int64_t *csn = NULL;
	int rc, err, have_peer = 0;

	kheo__clear(db);
	if (!o || o->version != KHEO_BUNDLE_OPTIONS_VERSION)
		return kheo__error(db, KHEO_EINVAL, "bundle options version "
			"unknown");
	if (!db->sk)
		return kheo__error(db, KHEO_EAUTH, "%s", db->sign_refusal);
	if (for_node) {
		if ((err = kheo__resolve_node(db, peer, for_node)) < 0)
			return err;
		have_peer = 1;
	}
	if ((err = kheo__begin(db)) < 0)
		return err;
	if ((err = kheo__seal(db, NULL)) < 0 ||
	    (err = kheo__commit_tx(db)) < 0) {
		kheo__rollback(db);
		return err;
	}
	if ((err = our_heads(db, &b.heads, &b.nheads)) < 0)
		return err;
	/* every changeset but those the peer is known to hold; chain order */
	rc = sqlite3_prepare_v2(db->sql,
		"SELECT frame, n FROM kheo_cs c WHERE ?1 IS NULL OR (c.author != ?1"
		" AND NOT EXISTS (SELECT 1 FROM kheo_peer_head h WHERE"
		" h.peer = ?1 AND h.author = c.author AND h.unit = c.unit AND"
		" h.useq >= c.useq AND EXISTS (SELECT 1 FROM kheo_cs m WHERE"
		" m.id = h.id)))"
		" ORDER BY author, unit, useq", -1, &q, NULL);
	if (rc != SQLITE_OK) {
		err = kheo__sqlerr(db, rc, "bundle");
		goto done;
	}
	if (have_peer)
		sqlite3_bind_blob(q, 1, peer, KHEO_KEY_SIZE, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (b.nframes == cap) {
			size_t ncap = cap ? 2 * cap : 256;
			size_t *no = kheo__realloc(offs, ncap * sizeof(*no));
			int64_t *nn = NULL;

			if (no)
				offs = no;
			if (!no || !(nn = kheo__realloc(csn,
					     ncap * sizeof(*nn)))) {
				err = KHEO_ENOMEM;
				goto done;
			}
			csn = nn;
			cap = ncap;
		}
		csn[b.nframes] = sqlite3_column_int64(q, 1);
		offs[b.nframes++] = frames.len;
		kheo_buf_put_varint(&frames, (uint64_t)sqlite3_column_bytes(q, 0));
		kheo_buf_put(&frames, sqlite3_column_blob(q, 0),
			(size_t)sqlite3_column_bytes(q, 0));
	}
	if (rc != SQLITE_DONE) {
		err = kheo__sqlerr(db, rc, "bundle");
		goto done;
	}
	if (frames.oom) {
		err = KHEO_ENOMEM;
		goto done;
	}
	if (b.nframes &&
	    (!(b.frames = kheo__malloc(b.nframes * sizeof(*b.frames))) ||
		    !(b.lens = kheo__malloc(b.nframes * sizeof(*b.lens))))) {
		err = KHEO_ENOMEM;
		goto done;
	}
	for (i = 0; i < b.nframes; i++) {
		kheo_reader r;
		uint64_t len;

		kheo_reader_init(&r, frames.p + offs[i], frames.len - offs[i],
			NULL);
		kheo_read_varint(&r, &len, UINT64_MAX, "len");
		b.frames[i] = frames.p + offs[i] + r.off;
		b.lens[i] = (size_t)len;
	}
	sqlite3_finalize(q);
	q = NULL;
	if (have_peer &&
	    (err = touched_rids(db, csn, b.nframes, &rids, &nrids)) < 0)
		goto done;
	/* with no_blobs, no chunk: kheo_bundle_encode then writes format 1 */
	if (!o->no_blobs &&
	    (err = add_blobs(db, &b, &blobs, have_peer ? rids : NULL, nrids,
		     &nblobs)) < 0)
		goto done;
	memcpy(b.sender, db->pk, KHEO_KEY_SIZE);
	b.created_ms = (uint64_t)kheo__now_ms(db);
	if ((err = kheo_bundle_encode(&out, &b, db->sk)) < 0 ||
	    (err = write_file(db, path, &out)) < 0)
		goto done;
	if (st) {
		st->changesets = b.nframes;
		st->bytes = out.len;
		st->blobs = nblobs;
		st->blob_chunks = b.nchunks;
	}
done:
	sqlite3_finalize(q);
	kheo__free(b.heads);
	kheo__free((void *)b.frames);
	kheo__free(b.lens);
	kheo__free(offs);
	kheo__free(csn);
	kheo__free(rids);
	kheo__free(b.chunks);
	kheo_buf_free(&frames);
	kheo_buf_free(&blobs);
	kheo_buf_free(&out);
	return err;
}

/* The blob chunks of a bundle, after its changesets: each checked and
 * kept as a session keeps a CHUNK; a refused blob's later chunks are
 * skipped. */
static int apply_chunks(kheo_db *db, const kheo_bundle *b,
	kheo_bundle_stats *st)
{
	const uint8_t *refused = NULL;
	size_t i;

	for (i = 0; i < b->nchunks; i++) {
		const kheo_blob_chunk *c = &b->chunks[i];
		int completed = 0, err;

		if (i == 0 || memcmp(c[-1].hash, c->hash, KHEO_ID_SIZE) != 0)
			st->blobs++;
		if (refused && memcmp(refused, c->hash, KHEO_ID_SIZE) == 0)
			continue;
		err = kheo__blob_receive(db, c->hash, c->size, c->index, c->z,
			c->chash, c->p, c->n, &completed);
		if (err == KHEO_ENOMEM || err == KHEO_EIO ||
		    err == KHEO_ERROR)
			return err;
		if (err < 0) {
			st->blobs_refused++;
			snprintf(st->blob_error, sizeof(st->blob_error), "%s",
				kheo_errmsg(db));
			refused = c->hash;
			continue;
		}
		st->blob_chunks++;
		st->blobs_completed += completed;
	}
	kheo__clear(db);
	return KHEO_OK;
}

static int read_file(kheo_db *db, const char *path, kheo_buf *out)
{
	FILE *f = fopen(path, "rb");
	uint8_t chunk[65536];
	size_t n;

	if (!f)
		return kheo__error(db, KHEO_EIO, "%s: %s", path,
			strerror(errno));
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		kheo_buf_put(out, chunk, n);
	if (ferror(f)) {
		fclose(f);
		return kheo__error(db, KHEO_EIO, "%s: %s", path,
			strerror(errno));
	}
	fclose(f);
	return out->oom ? KHEO_ENOMEM : KHEO_OK;
}

/* Remember what the sender said it held. */
static int store_heads(kheo_db *db, const kheo_bundle *b)
{
	sqlite3_stmt *st;
	size_t i;
	int rc, err = KHEO_OK;

	if (memcmp(b->sender, db->pk, KHEO_KEY_SIZE) == 0)
		return KHEO_OK;
	rc = sqlite3_prepare_v2(db->sql,
		"INSERT OR REPLACE INTO kheo_peer_head(peer, author, unit,"
		" useq, id) VALUES(?1, ?2, ?3, ?4, ?5)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "heads");
	for (i = 0; i < b->nheads && err == KHEO_OK; i++) {
		sqlite3_reset(st);
		sqlite3_bind_blob(st, 1, b->sender, KHEO_KEY_SIZE,
			SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, b->heads[i].author, KHEO_KEY_SIZE,
			SQLITE_STATIC);
		sqlite3_bind_text(st, 3, b->heads[i].unit, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, (int64_t)b->heads[i].useq);
		sqlite3_bind_blob(st, 5, b->heads[i].id, KHEO_ID_SIZE,
			SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc != SQLITE_DONE)
			err = kheo__sqlerr(db, rc, "heads");
	}
	sqlite3_finalize(st);
	return err;
}

KHEO_EXTERN int kheo_bundle_apply(kheo_db *db, const char *path,
	kheo_bundle_stats *st)
{
	kheo_buf file = { 0 };
	kheo_bundle *b = NULL;
	kheo_refusal why = { 0 };
	kheo_bundle_stats local = { 0 };
	int err;

	kheo__clear(db);
	if (!st)
		st = &local;
	if ((err = read_file(db, path, &file)) < 0)
		goto done;
	st->bytes = file.len;
	if ((err = kheo_bundle_decode(&b, file.p, file.len, &why)) < 0) {
		if (err != KHEO_ENOMEM)
			kheo__error(db, err, "%s: %s (nothing applied)", path,
				why.msg);
		goto done;
	}
	st->changesets = b->nframes;
	if ((err = kheo__apply_frames(db, b->frames, b->lens, b->nframes,
		     &st->apply)) < 0)
		goto done;
	if ((err = kheo__begin(db)) < 0)
		goto done;
	if ((err = store_heads(db, b)) < 0 ||
	    (err = kheo__commit_tx(db)) < 0) {
		kheo__rollback(db);
		goto done;
	}
	err = apply_chunks(db, b, st);
done:
	kheo_bundle_free(b);
	kheo_buf_free(&file);
	return err;
}
