/*
 * verify.c - kheo_verify: trust nothing stored, recompute everything.
 *
 * Every stored changeset is re-opened (frame, canonical decoding, id equal
 * to the id it is stored under, signature), every applied one's chain
 * predecessor must be there, and the whole state is rebuilt from the
 * applied changesets plus the pending edits in a scratch store, through
 * the same receipt and merge code, then compared with the store's: the
 * digest of every record, and every row of every materialised table.
 * SQLite's own integrity check runs first.
 */
#include "internal.h"
#include "alloc.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

static int integrity(kheo_db *db)
{
	sqlite3_stmt *st;
	int rc, err = KHEO_OK;

	rc = sqlite3_prepare_v2(db->sql, "PRAGMA integrity_check", -1, &st,
		NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "integrity_check");
	if (sqlite3_step(st) == SQLITE_ROW &&
	    strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0)
		err = kheo__error(db, KHEO_ECORRUPT,
			"SQLite integrity check: %s",
			(const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return err;
}

/* Why the rebuild did not apply a changeset this node applied. */
static int not_rebuilt(kheo_db *db, kheo_db *scratch)
{
	sqlite3_stmt *st, *q;
	int err = KHEO_OK, rc;

	rc = sqlite3_prepare_v2(db->sql, "SELECT id, unit, useq FROM kheo_cs"
		" WHERE state = 0 ORDER BY n", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "verify");
	rc = sqlite3_prepare_v2(scratch->sql, "SELECT state, why FROM kheo_cs"
		" WHERE id = ?1 UNION ALL SELECT 2, reason || ': ' || detail"
		" FROM kheo_quarantine WHERE id = ?1", -1, &q, NULL);
	if (rc != SQLITE_OK) {
		sqlite3_finalize(st);
		return kheo__sqlerr(scratch, rc, "verify");
	}
	while (err == KHEO_OK && sqlite3_step(st) == SQLITE_ROW) {
		char hex[2 * KHEO_ID_SIZE + 1];
		int state = -1;
		const char *why = "missing";

		sqlite3_reset(q);
		sqlite3_bind_blob(q, 1, sqlite3_column_blob(st, 0),
			KHEO_ID_SIZE, SQLITE_TRANSIENT);
		if (sqlite3_step(q) == SQLITE_ROW) {
			state = sqlite3_column_int(q, 0);
			if (sqlite3_column_text(q, 1))
				why = (const char *)sqlite3_column_text(q, 1);
		}
		if (state == KHEO_CS_APPLIED)
			continue;
		kheo_hex(hex, sqlite3_column_blob(st, 0), KHEO_ID_SIZE);
		err = kheo__error(db, KHEO_ECORRUPT, "changeset %s (%s useq "
			"%lld) is stored as applied but would be %s (%s): "
			"was its chain cut, or a fact it needs removed?", hex,
			(const char *)sqlite3_column_text(st, 1),
			(long long)sqlite3_column_int64(st, 2),
			state == KHEO_CS_HELD ? "held" : "rejected", why);
	}
	sqlite3_finalize(q);
	sqlite3_finalize(st);
	return err;
}

/*
 * Re-open every stored changeset and feed the applied ones to scratch:
 * `_sys` first (the facts every decision rests on), then chain by chain.
 * A changeset the rebuild holds at its turn may be released by a later
 * one, as on the node itself; what counts is that in the end the rebuild
 * applied exactly what the node applied.  This node's own changesets are
 * replayed as its own (checked when they were edited, not on receipt).
 */
static int replay(kheo_db *db, kheo_db *scratch, size_t *count)
{
	sqlite3_stmt *st;
	kheo_apply_stats stats = { 0 };
	int rc, err;

	rc = sqlite3_prepare_v2(db->sql,
		"SELECT id, state, frame, useq, unit, local FROM kheo_cs"
		" ORDER BY unit != '_sys', author, unit, useq, id", -1, &st,
		NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "verify");
	if ((err = kheo__begin(scratch)) < 0)
		goto done;
	*count = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const uint8_t *frame = sqlite3_column_blob(st, 2);
		size_t len = (size_t)sqlite3_column_bytes(st, 2);
		uint8_t id[KHEO_ID_SIZE];
		char hex[2 * KHEO_ID_SIZE + 1];
		kheo_refusal why = { 0 };
		kheo_changeset *cs;

		kheo_hex(hex, sqlite3_column_blob(st, 0), KHEO_ID_SIZE);
		if (kheo_frame_open(db->codec, &cs, id, &db->raw, frame, len,
			    &why) < 0) {
			err = kheo__error(db, KHEO_ECORRUPT,
				"changeset %s: %s", hex, why.msg);
			goto done;
		}
		kheo_changeset_free(cs);
		if (memcmp(id, sqlite3_column_blob(st, 0), KHEO_ID_SIZE) != 0) {
			err = kheo__error(db, KHEO_ECORRUPT,
				"changeset stored as %s has another id", hex);
			goto done;
		}
		if (sqlite3_column_int(st, 1) != KHEO_CS_APPLIED)
			continue;
		scratch->sealing = sqlite3_column_int(st, 5);
		err = kheo__receive(scratch, frame, len, &stats);
		scratch->sealing = 0;
		if (err < 0)
			goto done;
		(*count)++;
	}
	if (rc != SQLITE_DONE)
		err = kheo__sqlerr(db, rc, "verify");
	else
		err = not_rebuilt(db, scratch);
done:
	sqlite3_finalize(st);
	return err;
}

static int replay_pending(kheo_db *db, kheo_db *scratch)
{
	sqlite3_stmt *st;
	int rc, err = KHEO_OK;

	rc = sqlite3_prepare_v2(db->sql, "SELECT op FROM kheo_pending ORDER BY n",
		-1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "verify");
	while (err == KHEO_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		kheo_changeset *cs;
		kheo_refusal why;

		if (kheo_changeset_decode(&cs, sqlite3_column_blob(st, 0),
			    (size_t)sqlite3_column_bytes(st, 0), &why) < 0) {
			err = kheo__error(db, KHEO_ECORRUPT,
				"pending edit damaged: %s", why.msg);
			break;
		}
		err = kheo__merge_changeset(scratch, cs, 0);
		kheo_changeset_free(cs);
	}
	sqlite3_finalize(st);
	if (err == KHEO_OK && rc != SQLITE_DONE)
		err = kheo__sqlerr(db, rc, "verify");
	return err;
}

/* BLAKE2b of every row of a materialised table, in id order. */
static int table_hash(kheo_db *db, const char *table, uint8_t out[32])
{
	crypto_generichash_state h;
	char sql[128];
	sqlite3_stmt *st;
	int rc, i;

	snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\" ORDER BY id", table);
	rc = sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "verify");
	crypto_generichash_init(&h, NULL, 0, 32);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		for (i = 0; i < sqlite3_column_count(st); i++) {
			uint8_t type = (uint8_t)sqlite3_column_type(st, i);
			const void *p = sqlite3_column_blob(st, i);
			uint64_t n = (uint64_t)sqlite3_column_bytes(st, i);

			crypto_generichash_update(&h, &type, 1);
			crypto_generichash_update(&h, (const uint8_t *)&n,
				sizeof(n));
			if (p)
				crypto_generichash_update(&h, p, n);
		}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return kheo__sqlerr(db, rc, "verify");
	crypto_generichash_final(&h, out, 32);
	return KHEO_OK;
}

KHEO_EXTERN int kheo_verify(kheo_db *db)
{
	uint8_t a[32], b[32];
	kheo_db *scratch = NULL;
	size_t count = 0, i;
	int err;

	kheo__clear(db);
	if ((err = integrity(db)) < 0)
		return err;
	if ((err = kheo__db_scratch(db, &scratch)) < 0) {
		if (scratch)
			kheo__error(db, err, "%s", kheo_errmsg(scratch));
		goto done;
	}
	if ((err = replay(db, scratch, &count)) < 0 ||
	    (err = replay_pending(db, scratch)) < 0)
		goto done;
	if ((err = kheo__commit_tx(scratch)) < 0) {
		kheo__error(db, err, "rebuild: %s", kheo_errmsg(scratch));
		goto done;
	}
	if ((err = kheo_digest(db, a, "")) < 0)
		goto done;
	if ((err = kheo_digest(scratch, b, "")) < 0) {
		kheo__error(db, err, "rebuild: %s", kheo_errmsg(scratch));
		goto done;
	}
	if (memcmp(a, b, 32) != 0) {
		err = kheo__error(db, KHEO_ECORRUPT,
			"the state differs from the one rebuilt from the %zu "
			"changesets (records were changed outside kheo)",
			count);
		goto done;
	}
	for (i = 0; i < db->schema->ntables; i++) {
		const char *t = db->schema->tables[i].name;

		if ((err = table_hash(db, t, a)) < 0 ||
		    (err = table_hash(scratch, t, b)) < 0)
			goto done;
		if (memcmp(a, b, 32) != 0) {
			err = kheo__error(db, KHEO_ECORRUPT,
				"table %s differs from the state rebuilt from "
				"the changesets (edited outside kheo?)", t);
			goto done;
		}
	}
done:
	kheo_db_close(scratch);
	return err;
}
