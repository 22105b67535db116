/*
 * receipt.c - province receipts, and what a node tells its user about
 * them (DESIGN.md: "The province signs receipts ... they are the trusted
 * time, they flow back down so a device knows what the province holds").
 *
 * Whenever the province seals (a commit, a bundle, a sync), it first
 * writes, for every chain it holds of another author, one sys_receipt
 * record: (author, unit, highest useq held, province time).  The record is
 * named by (author, unit), so each chain has one receipt that later seals
 * move forward.  Receipts travel in `_sys`, which every node receives.
 */
#include "internal.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define DAY_MS (24LL * 3600 * 1000)
/* A device warns when its changesets wait this long for the province. */
#define RECEIPT_WARN_MS (3 * DAY_MS)

/* The receipt record of a chain: its id is derived from (author, unit). */
static void receipt_id(char out[2 * KHEO_RECORD_SIZE + 1],
	const uint8_t *author, const char *unit)
{
	static const char ctx[] = "kheo/receipt/v1";
	uint8_t h[KHEO_RECORD_SIZE];
	crypto_generichash_state s;

	crypto_generichash_init(&s, NULL, 0, sizeof(h));
	crypto_generichash_update(&s, (const uint8_t *)ctx, sizeof(ctx) - 1);
	crypto_generichash_update(&s, author, KHEO_KEY_SIZE);
	crypto_generichash_update(&s, (const uint8_t *)unit, strlen(unit));
	crypto_generichash_final(&s, h, sizeof(h));
	kheo_hex(out, h, sizeof(h));
}

int kheo__write_receipts(kheo_db *db)
{
	sqlite3_stmt *st;
	int rc, err = KHEO_OK;

	if (!db->enforcing || db->role != KHEO_NODE_PROVINCE ||
	    db->cert_role != KHEO_ROLE_PROVINCE)
		return KHEO_OK;
	/* chains whose receipt is missing or behind what is applied here */
	rc = sqlite3_prepare_v2(db->sql,
		"SELECT c.author, c.unit, max(c.useq), r.id FROM kheo_cs c"
		" LEFT JOIN sys_receipt r ON r.author = lower(hex(c.author))"
		" AND r.chain_unit = c.unit AND r._deleted = 0"
		" WHERE c.state = 0 AND c.author != ?1 GROUP BY c.author, c.unit"
		" HAVING r.useq IS NULL OR r.useq < max(c.useq)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "receipts");
	sqlite3_bind_blob(st, 1, db->pk, KHEO_KEY_SIZE, SQLITE_STATIC);
	while (err == KHEO_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		char author[2 * KHEO_KEY_SIZE + 1], rid[2 * KHEO_RECORD_SIZE + 1];
		char useq[24], at[24], out[KHEO_RECORD_HEX + 1];
		const char *unit = (const char *)sqlite3_column_text(st, 1);
		kheo_assign a[4] = {
			{ "author", KHEO_ASSIGN_SET, author },
			{ "chain_unit", KHEO_ASSIGN_SET, unit },
			{ "useq", KHEO_ASSIGN_SET, useq },
			{ "held_at", KHEO_ASSIGN_SET, at },
		};

		kheo_hex(author, sqlite3_column_blob(st, 0), KHEO_KEY_SIZE);
		receipt_id(rid, sqlite3_column_blob(st, 0), unit);
		snprintf(useq, sizeof(useq), "%lld",
			(long long)sqlite3_column_int64(st, 2));
		snprintf(at, sizeof(at), "%lld", (long long)kheo__now_ms(db));
		if (sqlite3_column_type(st, 3) == SQLITE_NULL)
			err = kheo_put(db, out, "sys_receipt", rid, a, 4);
		else
			err = kheo_set(db, "sys_receipt", rid, a + 2, 2);
		/* a receipt already pending in this transaction: fine */
		if (err == KHEO_EEXISTS)
			err = kheo_set(db, "sys_receipt", rid, a + 2, 2);
	}
	sqlite3_finalize(st);
	if (err < 0)
		return err;
	return rc == SQLITE_DONE ? KHEO_OK : kheo__sqlerr(db, rc, "receipts");
}

KHEO_EXTERN int kheo_status_json(kheo_db *db, char **out)
{
	json_t *o = json_object(), *warnings;
	sqlite3_stmt *st;
	int64_t now = kheo__now_ms(db), unacked = 0, oldest = 0;
	int rc;

	kheo__clear(db);
	*out = NULL;
	kheo__identity_json(db, o);
	warnings = json_object_get(o, "warnings");
	/* this node's own changesets the province does not hold yet */
	rc = sqlite3_prepare_v2(db->sql,
		"SELECT count(*), min(c.received) FROM kheo_cs c WHERE"
		" c.author = ?1 AND c.local = 1 AND NOT EXISTS (SELECT 1 FROM"
		" sys_receipt r WHERE r.author = lower(hex(c.author)) AND"
		" r.chain_unit = c.unit AND r.useq >= c.useq AND"
		" r._deleted = 0)", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		json_decref(o);
		return kheo__sqlerr(db, rc, "status");
	}
	sqlite3_bind_blob(st, 1, db->pk, KHEO_KEY_SIZE, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		unacked = sqlite3_column_int64(st, 0);
		oldest = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	json_object_set_new(o, "unacknowledged", json_integer(
		db->role == KHEO_NODE_PROVINCE ? 0 : unacked));
	if (db->role != KHEO_NODE_PROVINCE && unacked &&
	    now - oldest > RECEIPT_WARN_MS)
		json_array_append_new(warnings, json_sprintf("%lld of this "
			"node's changesets are not yet held by the province; "
			"the oldest was sealed %lld days ago: sync",
			(long long)unacked,
			(long long)((now - oldest) / DAY_MS)));
	if (sqlite3_prepare_v2(db->sql, "SELECT (SELECT count(*) FROM"
		    " kheo_pending), (SELECT count(*) FROM kheo_cs WHERE state ="
		    " 1), (SELECT count(*) FROM kheo_quarantine)", -1, &st,
		    NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW) {
			json_object_set_new(o, "pending_edits", json_integer(
				sqlite3_column_int64(st, 0)));
			json_object_set_new(o, "held", json_integer(
				sqlite3_column_int64(st, 1)));
			json_object_set_new(o, "quarantined", json_integer(
				sqlite3_column_int64(st, 2)));
		}
		sqlite3_finalize(st);
	}
	return kheo__json_out(db, out, o);
}
