/*
 * apply.c - receipt: every changeset that reaches this node, from a peer,
 * a bundle or this node's own sealing, is verified and then applied, held
 * or rejected (DESIGN.md, Receipt).
 *
 *   rejected  invalid from its own bytes: the frame, the encoding, the
 *             signature, or a clock below its chain predecessor's.  Kept in
 *             kheo_quarantine with the reason; never dropped.
 *   held      not decidable yet: its chain predecessor is missing or held,
 *             or its clock is more than 24 h ahead of this node's wall
 *             time.  Stored (so it is not asked for again), re-checked when
 *             its predecessor is applied and whenever kheo_apply runs.
 *   applied   its ops join the merge; the node's clock moves past it.
 *
 * Two different changesets at one (author, unit, useq) are equivocation:
 * both are applied if their chains hold, and the key is flagged.
 *
 * Authorisation (certificates, scopes, roles, revocations) is decided by
 * authz.c as part of the same three-way verdict; a node with no root yet
 * (open mode) accepts every well-formed, well-signed changeset.
 */
#include "internal.h"
#include "alloc.h"

#include <stdio.h>
#include <string.h>

int kheo__quarantine(kheo_db *db, const uint8_t *frame, size_t len,
	const kheo_refusal *why, kheo_apply_stats *st)
{
	kheo_changeset *cs = NULL;
	uint8_t sig[KHEO_SIG_SIZE], id[KHEO_ID_SIZE];
	sqlite3_stmt *s;
	int err;

	/* Name what we can: a changeset with a bad signature still has an
	 * id, an author and a place in a chain, which an auditor wants.  The
	 * very same bytes refused twice are kept once. */
	if (kheo_frame_read(db->codec, &db->raw, sig, frame, len, NULL) ==
		    KHEO_OK &&
	    kheo_changeset_decode(&cs, db->raw.p, db->raw.len, NULL) ==
		    KHEO_OK)
		kheo_changeset_id(id, db->raw.p, db->raw.len);
	if (cs) {
		s = kheo__stmt(db, ST_QUARANTINE_BY_ID);
		if (!s) {
			kheo_changeset_free(cs);
			return KHEO_ERROR;
		}
		sqlite3_bind_blob(s, 1, id, KHEO_ID_SIZE, SQLITE_STATIC);
		sqlite3_bind_blob(s, 2, frame, (int)len, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW) {
			sqlite3_reset(s);
			kheo_changeset_free(cs);
			if (st)
				st->duplicate++;
			return KHEO_OK;
		}
		sqlite3_reset(s);
	}
	s = kheo__stmt(db, ST_QUARANTINE_INSERT);
	if (!s) {
		kheo_changeset_free(cs);
		return KHEO_ERROR;
	}
	if (cs) {
		sqlite3_bind_blob(s, 1, id, KHEO_ID_SIZE, SQLITE_STATIC);
		sqlite3_bind_blob(s, 2, cs->author, KHEO_KEY_SIZE, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, cs->unit, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 4, (int64_t)cs->useq);
	}
	sqlite3_bind_text(s, 5, kheo_reason_name(why->reason), -1,
		SQLITE_STATIC);
	sqlite3_bind_text(s, 6, why->msg, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 7, kheo__now_ms(db));
	sqlite3_bind_blob(s, 8, frame, (int)len, SQLITE_STATIC);
	err = kheo__step_done(db, s, "quarantine");
	kheo_changeset_free(cs);
	if (err == KHEO_OK && st)
		st->rejected++;
	kheo__log(db, KHEO_LOG_WARN, "changeset rejected: %s: %s",
		kheo_reason_name(why->reason), why->msg);
	return err;
}

/*
 * Is this id stored already (applied or held)?  Quarantine does not count:
 * a copy with a forged signature must never keep the genuine changeset
 * (same id: the id covers the content, not the signature) out.
 */
static int known(kheo_db *db, const uint8_t id[KHEO_ID_SIZE], int *yes)
{
	sqlite3_stmt *s = kheo__stmt(db, ST_CS_BY_ID);
	int rc;

	if (!s)
		return KHEO_ERROR;
	sqlite3_bind_blob(s, 1, id, KHEO_ID_SIZE, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return kheo__sqlerr(db, rc, "lookup");
	*yes = rc == SQLITE_ROW;
	return KHEO_OK;
}

/*
 * Decide a decoded, signed changeset: 0 to apply (*role: the role it is
 * applied under), 1 to hold (why says what it waits for), or a rejection
 * in `refusal` (returned as 2).
 */
static int decide(kheo_db *db, const kheo_changeset *cs, int *role,
	char *why, size_t whylen, kheo_refusal *refusal)
{
	int64_t now = kheo__now_ms(db);
	sqlite3_stmt *s;
	int rc;

	if (!db->sealing && kheo__authz_revoked(db, cs, refusal))
		return 2;
	if (cs->useq > 1) {
		s = kheo__stmt(db, ST_CS_CHAIN);
		if (!s)
			return KHEO_ERROR;
		sqlite3_bind_blob(s, 1, cs->author, KHEO_KEY_SIZE, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, cs->unit, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, (int64_t)(cs->useq - 1));
		sqlite3_bind_blob(s, 4, cs->prev, KHEO_ID_SIZE, SQLITE_STATIC);
		rc = sqlite3_step(s);
		if (rc == SQLITE_DONE || (rc == SQLITE_ROW &&
					     sqlite3_column_int(s, 1) != 0)) {
			sqlite3_reset(s);
			snprintf(why, whylen, "waiting for useq %llu",
				(unsigned long long)(cs->useq - 1));
			return 1;
		}
		if (rc != SQLITE_ROW) {
			sqlite3_reset(s);
			return kheo__sqlerr(db, rc, "chain");
		}
		if ((uint64_t)sqlite3_column_int64(s, 2) >= cs->clock_min) {
			sqlite3_reset(s);
			kheo__refuse(refusal, KHEO_R_BAD_CLOCK, 0,
				"clock not above its predecessor's (useq "
				"%llu): an author's clock only rises",
				(unsigned long long)(cs->useq - 1));
			return 2;
		}
		sqlite3_reset(s);
	}
	if (now > 0 && cs->clock_max > ((uint64_t)(now + KHEO_FUTURE_MS) << 16)) {
		snprintf(why, whylen, "clock more than 24 h ahead of this "
					 "node's");
		return 1;
	}
	/* what this node just sealed was checked when it was edited */
	if (db->sealing) {
		*role = db->cert_role;
		return 0;
	}
	return kheo__authorize(db, cs, role, why, whylen, refusal);
}

static int flag_equivocation(kheo_db *db, const kheo_changeset *cs,
	const uint8_t id[KHEO_ID_SIZE])
{
	sqlite3_stmt *s = kheo__stmt(db, ST_CS_SAME_USEQ);
	char detail[200], a[2 * KHEO_ID_SIZE + 1], b[2 * KHEO_ID_SIZE + 1];
	int rc;

	if (!s)
		return KHEO_ERROR;
	sqlite3_bind_blob(s, 1, cs->author, KHEO_KEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, cs->unit, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (int64_t)cs->useq);
	sqlite3_bind_blob(s, 4, id, KHEO_ID_SIZE, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return rc == SQLITE_DONE ? KHEO_OK
					 : kheo__sqlerr(db, rc, "equivocation");
	}
	kheo_hex(a, sqlite3_column_blob(s, 0), 8);
	kheo_hex(b, id, 8);
	sqlite3_reset(s);
	snprintf(detail, sizeof(detail),
		"two changesets at %s useq %llu: %s… and %s… (a cloned or "
		"restored device?)", cs->unit, (unsigned long long)cs->useq,
		a, b);
	kheo__log(db, KHEO_LOG_WARN, "equivocation: %s", detail);
	s = kheo__stmt(db, ST_FLAG_INSERT);
	if (!s)
		return KHEO_ERROR;
	sqlite3_bind_blob(s, 1, cs->author, KHEO_KEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, "equivocation", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, detail, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 4, kheo__now_ms(db));
	return kheo__step_done(db, s, "flag");
}

static int store(kheo_db *db, const kheo_changeset *cs,
	const uint8_t id[KHEO_ID_SIZE], const uint8_t *frame, size_t len,
	int held, const char *why, int role, int64_t *n)
{
	sqlite3_stmt *s = kheo__stmt(db, ST_CS_INSERT);
	int64_t now = kheo__now_ms(db);
	int err;

	if (!s)
		return KHEO_ERROR;
	sqlite3_bind_blob(s, 1, id, KHEO_ID_SIZE, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, cs->author, KHEO_KEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, cs->unit, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, (int64_t)cs->useq);
	if (cs->useq > 1)
		sqlite3_bind_blob(s, 5, cs->prev, KHEO_ID_SIZE, SQLITE_STATIC);
	sqlite3_bind_int64(s, 6, (int64_t)cs->clock_min);
	sqlite3_bind_int64(s, 7, (int64_t)cs->clock_max);
	sqlite3_bind_int64(s, 8, (int64_t)cs->nops);
	sqlite3_bind_int(s, 9, held ? KHEO_CS_HELD : KHEO_CS_APPLIED);
	if (held)
		sqlite3_bind_text(s, 10, why, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 11, now);
	if (!held)
		sqlite3_bind_int64(s, 12, now);
	sqlite3_bind_blob(s, 13, frame, (int)len, SQLITE_STATIC);
	sqlite3_bind_int(s, 14, db->sealing);
	sqlite3_bind_int(s, 15, role);
	if ((err = kheo__step_done(db, s, "store changeset")) < 0)
		return err;
	*n = sqlite3_last_insert_rowid(db->sql);
	return KHEO_OK;
}

static int apply_now(kheo_db *db, const kheo_changeset *cs,
	const uint8_t id[KHEO_ID_SIZE], int64_t n, kheo_apply_stats *st)
{
	int err;

	if ((err = flag_equivocation(db, cs, id)) < 0)
		return err;
	if ((err = kheo__merge_changeset(db, cs, n)) < 0)
		return err;
	kheo__clock_observe(db, cs->clock_max);
	if (st) {
		st->applied++;
		st->ops += cs->nops;
	}
	/* `_sys` facts (certificates, revocations, units) may decide
	 * changesets held or quarantined for lack of them */
	return kheo__authz_learn(db, cs, st);
}

/* A held changeset waiting on a given predecessor. */
typedef struct waiting {
	int64_t n;
	kheo_buf frame;
} waiting;

/* Every held changeset whose predecessor is (useq, id) of this chain. */
static int held_after(kheo_db *db, const uint8_t *author, const char *unit,
	uint64_t useq, const uint8_t *id, waiting **out, size_t *count)
{
	sqlite3_stmt *s = kheo__stmt(db, ST_CS_HELD_NEXT);
	size_t cap = 0;
	int rc;

	*out = NULL;
	*count = 0;
	if (!s)
		return KHEO_ERROR;
	sqlite3_bind_blob(s, 1, author, KHEO_KEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, unit, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (int64_t)(useq + 1));
	sqlite3_bind_blob(s, 4, id, KHEO_ID_SIZE, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		waiting *w;

		if (*count == cap) {
			cap = cap ? 2 * cap : 2;
			w = kheo__realloc(*out, cap * sizeof(*w));
			if (!w) {
				rc = SQLITE_NOMEM;
				break;
			}
			*out = w;
		}
		w = &(*out)[(*count)++];
		memset(w, 0, sizeof(*w));
		w->n = sqlite3_column_int64(s, 0);
		kheo_buf_put(&w->frame, sqlite3_column_blob(s, 1),
			(size_t)sqlite3_column_bytes(s, 1));
		if (w->frame.oom) {
			rc = SQLITE_NOMEM;
			break;
		}
	}
	sqlite3_reset(s);
	if (rc == SQLITE_DONE)
		return KHEO_OK;
	return rc == SQLITE_NOMEM ? KHEO_ENOMEM : kheo__sqlerr(db, rc, "held");
}

/*
 * Try one held changeset again now that its predecessor is applied:
 * apply it (*applied set, its id in nid), leave it held, or, if it is now
 * provably bad, move it to quarantine.
 */
static int retry_held(kheo_db *db, const waiting *w, kheo_apply_stats *st,
	uint8_t nid[KHEO_ID_SIZE], kheo_changeset **applied)
{
	kheo_refusal refusal = { 0 };
	kheo_changeset *cs;
	sqlite3_stmt *s;
	char why[160];
	int err, verdict, role = 0;

	*applied = NULL;
	/* it was verified when stored; decode it again */
	if ((err = kheo_frame_open(db->codec, &cs, nid, &db->raw, w->frame.p,
		     w->frame.len, &refusal)) < 0)
		return err;
	verdict = decide(db, cs, &role, why, sizeof(why), &refusal);
	if (verdict == 2) {
		/* from the held changesets to quarantine */
		int rc = sqlite3_prepare_v2(db->sql,
			"DELETE FROM kheo_cs WHERE n = ?1", -1, &s, NULL);

		kheo_changeset_free(cs);
		if (rc != SQLITE_OK)
			return kheo__sqlerr(db, rc, "release");
		sqlite3_bind_int64(s, 1, w->n);
		err = kheo__step_done(db, s, "release");
		sqlite3_finalize(s);
		return err < 0 ? err
			       : kheo__quarantine(db, w->frame.p, w->frame.len,
				       &refusal, st);
	}
	if (verdict != 0) { /* still waiting (its clock), or an error */
		kheo_changeset_free(cs);
		return verdict < 0 ? verdict : KHEO_OK;
	}
	if (!(s = kheo__stmt(db, ST_CS_SET_APPLIED))) {
		kheo_changeset_free(cs);
		return KHEO_ERROR;
	}
	sqlite3_bind_int64(s, 1, w->n);
	sqlite3_bind_int64(s, 2, kheo__now_ms(db));
	sqlite3_bind_int(s, 3, role);
	if ((err = kheo__step_done(db, s, "release")) < 0 ||
	    (err = apply_now(db, cs, nid, w->n, st)) < 0) {
		kheo_changeset_free(cs);
		return err;
	}
	if (st) {
		st->released++;
		st->applied--; /* counted as released, not received */
	}
	*applied = cs;
	return KHEO_OK;
}

/*
 * After applying `first`, changesets held for it may go: all of them (two
 * branches of an equivocation can wait on one predecessor), then theirs,
 * and so on.  A worklist, not recursion, so a long chain cannot exhaust
 * the stack.
 */
static int release_successors(kheo_db *db, const kheo_changeset *first,
	const uint8_t first_id[KHEO_ID_SIZE], kheo_apply_stats *st)
{
	typedef struct link {
		uint64_t useq;
		uint8_t id[KHEO_ID_SIZE];
	} link;
	uint8_t author[KHEO_KEY_SIZE];
	char unit[KHEO_UNIT_MAX + 1];
	link *todo;
	size_t ntodo = 1, cap = 8;
	int err = KHEO_OK;

	if (!(todo = kheo__malloc(cap * sizeof(*todo))))
		return KHEO_ENOMEM;
	memcpy(author, first->author, KHEO_KEY_SIZE);
	snprintf(unit, sizeof(unit), "%s", first->unit);
	todo[0].useq = first->useq;
	memcpy(todo[0].id, first_id, KHEO_ID_SIZE);
	while (ntodo && err == KHEO_OK) {
		link at = todo[--ntodo];
		waiting *w = NULL;
		size_t nw = 0, i;

		err = held_after(db, author, unit, at.useq, at.id, &w, &nw);
		for (i = 0; i < nw && err == KHEO_OK; i++) {
			kheo_changeset *cs;
			uint8_t nid[KHEO_ID_SIZE];

			if ((err = retry_held(db, &w[i], st, nid, &cs)) < 0 ||
			    !cs)
				continue;
			if (ntodo == cap) {
				link *more = kheo__realloc(todo,
					2 * cap * sizeof(*more));

				if (!more) {
					kheo_changeset_free(cs);
					err = KHEO_ENOMEM;
					break;
				}
				todo = more;
				cap *= 2;
			}
			todo[ntodo].useq = cs->useq;
			memcpy(todo[ntodo++].id, nid, KHEO_ID_SIZE);
			kheo_changeset_free(cs);
		}
		for (i = 0; i < nw; i++)
			kheo_buf_free(&w[i].frame);
		kheo__free(w);
	}
	kheo__free(todo);
	return err;
}

int kheo__receive(kheo_db *db, const uint8_t *frame, size_t len,
	kheo_apply_stats *st)
{
	uint8_t id[KHEO_ID_SIZE];
	kheo_refusal refusal = { 0 };
	kheo_changeset *cs;
	char why[160] = "";
	int64_t n;
	int err, yes = 0, verdict, role = 0;

	if (db->checked_id) {
		/* the caller verified this frame's signature (audit.c): the
		 * same bytes, the same id, need no second Ed25519 check */
		uint8_t sig[KHEO_SIG_SIZE];

		cs = NULL;
		if ((err = kheo_frame_read(db->codec, &db->raw, sig, frame,
			     len, &refusal)) == KHEO_OK &&
		    (err = kheo_changeset_decode(&cs, db->raw.p, db->raw.len,
			     &refusal)) == KHEO_OK) {
			kheo_changeset_id(id, db->raw.p, db->raw.len);
			if (memcmp(id, db->checked_id, KHEO_ID_SIZE) != 0 &&
			    (err = kheo_changeset_verify(sig, id, cs->author,
				     &refusal)) < 0) {
				kheo_changeset_free(cs);
				cs = NULL;
			}
		}
	} else {
		err = kheo_frame_open(db->codec, &cs, id, &db->raw, frame,
			len, &refusal);
	}
	if (err == KHEO_ENOMEM)
		return kheo__error(db, err, "out of memory reading a frame");
	if (err < 0)
		return kheo__quarantine(db, frame, len, &refusal, st);
	if ((err = known(db, id, &yes)) < 0 || yes) {
		if (err == KHEO_OK && st)
			st->duplicate++;
		kheo_changeset_free(cs);
		return err;
	}
	verdict = decide(db, cs, &role, why, sizeof(why), &refusal);
	if (verdict < 0) {
		err = verdict;
	} else if (verdict == 2) {
		err = kheo__quarantine(db, frame, len, &refusal, st);
	} else if ((err = store(db, cs, id, frame, len, verdict, why, role,
			    &n)) < 0) {
		/* fall through to free */
	} else if (verdict == 1) {
		if (st)
			st->held++;
	} else if ((err = apply_now(db, cs, id, n, st)) == KHEO_OK) {
		err = release_successors(db, cs, id, st);
	}
	kheo_changeset_free(cs);
	return err;
}

/* Re-check changesets held for their clock: wall time moves on. */
static int recheck_future(kheo_db *db, kheo_apply_stats *st)
{
	sqlite3_stmt *s;
	int rc, err = KHEO_OK;
	int64_t ns[64];
	size_t count = 0, i;

	rc = sqlite3_prepare_v2(db->sql,
		"SELECT n FROM kheo_cs WHERE state = 1 AND why LIKE 'clock%'"
		" AND clock_max <= ?1 ORDER BY author, unit, useq LIMIT 64",
		-1, &s, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "held");
	sqlite3_bind_int64(s, 1,
		(int64_t)((uint64_t)(kheo__now_ms(db) + KHEO_FUTURE_MS) << 16));
	while ((rc = sqlite3_step(s)) == SQLITE_ROW && count < 64)
		ns[count++] = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	for (i = 0; i < count && err == KHEO_OK; i++) {
		kheo_buf frame = { 0 };
		sqlite3_stmt *d;

		/* take it out and receive it again, as if it just came */
		rc = sqlite3_prepare_v2(db->sql,
			"DELETE FROM kheo_cs WHERE n = ?1 RETURNING frame", -1,
			&d, NULL);
		if (rc != SQLITE_OK)
			return kheo__sqlerr(db, rc, "held");
		sqlite3_bind_int64(d, 1, ns[i]);
		if (sqlite3_step(d) == SQLITE_ROW)
			kheo_buf_put(&frame, sqlite3_column_blob(d, 0),
				(size_t)sqlite3_column_bytes(d, 0));
		sqlite3_finalize(d);
		if (frame.len) {
			kheo_apply_stats tmp = { 0 };

			err = kheo__receive(db, frame.p, frame.len, &tmp);
			if (st) {
				st->released += tmp.applied + tmp.released;
				st->ops += tmp.ops;
			}
		}
		kheo_buf_free(&frame);
	}
	return err;
}

int kheo__apply_frames(kheo_db *db, const uint8_t *const *frames,
	const size_t *lens, size_t n, kheo_apply_stats *st)
{
	kheo_apply_stats local = { 0 };
	size_t i, batch_ops = 0;
	int err;

	if (!st)
		st = &local;
	if ((err = kheo__begin(db)) < 0)
		return err;
	{
		/* a rejection this call takes back (new facts came later in
		 * the same batch) is not counted as one */
		sqlite3_stmt *q;

		db->quarantine_mark = 0;
		if (sqlite3_prepare_v2(db->sql, "SELECT coalesce(max(n), 0)"
			    " FROM kheo_quarantine", -1, &q, NULL) == SQLITE_OK) {
			if (sqlite3_step(q) == SQLITE_ROW)
				db->quarantine_mark = sqlite3_column_int64(q, 0);
			sqlite3_finalize(q);
		}
	}
	if ((err = recheck_future(db, st)) < 0)
		goto fail;
	for (i = 0; i < n; i++) {
		size_t before = st->ops;

		if ((err = kheo__receive(db, frames[i], lens[i], st)) < 0)
			goto fail;
		batch_ops += st->ops - before;
		if (batch_ops >= KHEO_APPLY_BATCH_OPS && i + 1 < n) {
			if ((err = kheo__commit_tx(db)) < 0 ||
			    (err = kheo__begin(db)) < 0)
				goto fail;
			batch_ops = 0;
		}
	}
	if ((err = kheo__commit_tx(db)) < 0)
		goto fail;
	return KHEO_OK;
fail:
	kheo__rollback(db);
	return err;
}

KHEO_EXTERN int kheo_apply(kheo_db *db, const uint8_t *const *frames,
	const size_t *lens, size_t n, kheo_apply_stats *st)
{
	kheo__clear(db);
	return kheo__apply_frames(db, frames, lens, n, st);
}
