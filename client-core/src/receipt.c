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
#include "blob.h"

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

/* Records with open conflicts under `scope` ("" or NULL: all), summed over
 * the deployment's tables (not `_sys`). */
static int64_t conflicts_under(kheo_db *db, const char *scope)
{
	int64_t n = 0;
	size_t i;

	for (i = 0; i < db->schema->ntables; i++) {
		const char *t = db->schema->tables[i].name;
		sqlite3_stmt *st;
		char sql[256];

		if (strncmp(t, "sys_", 4) == 0)
			continue;
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\" WHERE"
			" _deleted = 0 AND _conflicts > 0 AND (?1 = '' OR"
			" _unit = ?1 OR substr(_unit, 1, length(?1) + 1) ="
			" ?1 || '/')", t);
		if (sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL) !=
		    SQLITE_OK)
			continue;
		sqlite3_bind_text(st, 1, scope ? scope : "", -1,
			SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			n += sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	return n;
}

/*
 * Every peer this node synced with, as a hub shows its devices: last
 * contact and how it ended, the clock offset measured then, what waits
 * here for the peer's next sync (changesets in its scope or `_sys`
 * applied here since its last good sync, not its own), its changesets
 * held or quarantined here, and open conflicts in its scope.
 */
static int peers_json(kheo_db *db, json_t *o, int64_t now)
{
	json_t *peers = json_array();
	sqlite3_stmt *st;
	int rc;

	json_object_set_new(o, "peers", peers);
	rc = sqlite3_prepare_v2(db->sql,
		"SELECT lower(hex(p.key)), p.node_role, p.cert_role, p.scope,"
		" p.last_contact, p.clock_offset, p.last_ok, p.last_error,"
		" p.sent, p.received,"
		" (SELECT count(*) FROM kheo_cs c WHERE c.state = 0 AND"
		"  c.received > coalesce(p.last_ok, 0) AND c.author <> p.key"
		"  AND (c.unit = '_sys' OR coalesce(p.scope, '') = '' OR"
		"  c.unit = p.scope OR substr(c.unit, 1, length(p.scope) + 1)"
		"  = p.scope || '/')),"
		" (SELECT count(*) FROM kheo_cs c WHERE c.author = p.key AND"
		"  c.state = 1),"
		" (SELECT count(*) FROM kheo_quarantine q WHERE q.author ="
		"  p.key)"
		" FROM kheo_peer p ORDER BY p.scope, p.key", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "status peers");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *p = json_object();
		const char *scope = (const char *)sqlite3_column_text(st, 3);
		int64_t last = sqlite3_column_int64(st, 4);

		json_object_set_new(p, "key", json_string((const char *)
			sqlite3_column_text(st, 0)));
		json_object_set_new(p, "node_role",
			sqlite3_column_type(st, 1) == SQLITE_NULL ? json_null()
			: json_string(kheo__node_role_name(
				sqlite3_column_int(st, 1))));
		json_object_set_new(p, "cert_role",
			sqlite3_column_type(st, 2) == SQLITE_NULL ||
				!sqlite3_column_int(st, 2) ? json_null()
			: json_string(kheo_role_name(sqlite3_column_int(st,
				2))));
		json_object_set_new(p, "scope", scope ? json_string(scope)
						      : json_null());
		json_object_set_new(p, "last_contact", kheo__time_json(last));
		json_object_set_new(p, "days_since_contact",
			json_integer((now - last) / DAY_MS));
		json_object_set_new(p, "last_ok", kheo__time_json(
			sqlite3_column_int64(st, 6)));
		json_object_set_new(p, "last_error",
			sqlite3_column_type(st, 7) == SQLITE_NULL ? json_null()
			: json_string((const char *)sqlite3_column_text(st,
				7)));
		json_object_set_new(p, "clock_offset_ms",
			sqlite3_column_type(st, 5) == SQLITE_NULL ? json_null()
			: json_integer(sqlite3_column_int64(st, 5)));
		json_object_set_new(p, "sent", json_integer(
			sqlite3_column_int64(st, 8)));
		json_object_set_new(p, "received", json_integer(
			sqlite3_column_int64(st, 9)));
		json_object_set_new(p, "waiting", json_integer(
			sqlite3_column_int64(st, 10)));
		json_object_set_new(p, "held", json_integer(
			sqlite3_column_int64(st, 11)));
		json_object_set_new(p, "quarantined", json_integer(
			sqlite3_column_int64(st, 12)));
		json_object_set_new(p, "conflicts", json_integer(
			conflicts_under(db, scope)));
		json_array_append_new(peers, p);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? KHEO_OK : kheo__sqlerr(db, rc,
		"status peers");
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
	/* attachments records name and this node lacks: never silent */
	{
		size_t missing = 0;

		if (kheo__blob_missing_count(db, &missing) == KHEO_OK) {
			json_object_set_new(o, "blobs_missing",
				json_integer((json_int_t)missing));
			if (missing)
				json_array_append_new(warnings, json_sprintf(
					"%zu attachment%s named by records "
					"%s not here (kheo blob missing)",
					missing, missing == 1 ? "" : "s",
					missing == 1 ? "is" : "are"));
		}
	}
	if ((rc = peers_json(db, o, now)) < 0) {
		json_decref(o);
		return rc;
	}
	return kheo__json_out(db, out, o);
}
