/*
 * blob_ack.c - the province's acknowledgement of the blobs it holds
 * (docs/protocol.md 10.2, sys_blob_ack; docs/architecture.md,
 * "Attachments"), which is what lets another node prune a blob no record
 * names any more without losing the only copy.
 *
 * Whenever the province seals, it writes, for each blob it holds whole
 * (read back and hashed to its name: blob.c completes nothing less) that
 * a live record names, one sys_blob_ack record per unit of the records
 * naming it, in a changeset of that unit.  So an acknowledgement travels
 * with the records that name the blob, to the nodes whose scope holds
 * them and to no others: a phone receives those of its commune's photos,
 * not the province's.  It is signed as every changeset is, by the
 * province's key; authz.c refuses sys_blob_ack from any other role, so an
 * applied one is the province's word.
 *
 * Not here: the store and prune (blob.c); receipts of changesets
 * (receipt.c), which travel in `_sys` because every node needs them.
 */
#include "internal.h"
#include "blob.h"
#include "alloc.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

/* The record id: BLAKE2b-128 of the context, the blob, the unit. */
static void ack_id(char out[2 * KHEO_RECORD_SIZE + 1],
	const uint8_t *blob, const char *unit)
{
	static const char ctx[] = "kheo/blob-ack/v1";
	uint8_t h[KHEO_RECORD_SIZE];
	crypto_generichash_state s;

	crypto_generichash_init(&s, NULL, 0, sizeof(h));
	crypto_generichash_update(&s, (const uint8_t *)ctx, sizeof(ctx) - 1);
	crypto_generichash_update(&s, blob, KHEO_ID_SIZE);
	crypto_generichash_update(&s, (const uint8_t *)unit, strlen(unit));
	crypto_generichash_final(&s, h, sizeof(h));
	kheo_hex(out, h, sizeof(h));
}

int kheo__write_blob_acks(kheo_db *db)
{
	kheo_blob_ref *v;
	sqlite3_stmt *st;
	size_t n, i;
	int err = KHEO_OK, rc;

	if (!db->enforcing || db->role != KHEO_NODE_PROVINCE ||
	    db->cert_role != KHEO_ROLE_PROVINCE)
		return KHEO_OK;
	if ((err = kheo__blob_named(db, NULL, NULL, &v, &n)) < 0)
		return err;
	rc = sqlite3_prepare_v2(db->sql, "SELECT 1 FROM sys_blob_ack WHERE"
		" id = ?1", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		kheo__free(v);
		return kheo__sqlerr(db, rc, "blob acknowledgements");
	}
	for (i = 0; i < n && err == KHEO_OK; i++) {
		char rid[2 * KHEO_RECORD_SIZE + 1], blob[2 * KHEO_ID_SIZE + 1];
		char size[24], at[24], out[KHEO_RECORD_HEX + 1];
		uint64_t bytes = 0;
		int complete = 0;
		kheo_assign a[4] = {
			{ "blob", KHEO_ASSIGN_SET, blob },
			{ "unit", KHEO_ASSIGN_SET, v[i].unit },
			{ "size", KHEO_ASSIGN_SET, size },
			{ "acked_at", KHEO_ASSIGN_SET, at },
		};

		if (kheo__blob_state(db, v[i].hash, &bytes, NULL,
			    &complete) < 0 || !complete)
			continue; /* not here whole: nothing to vouch for */
		ack_id(rid, v[i].hash, v[i].unit);
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, rid, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			continue; /* acknowledged once: for good */
		if (rc != SQLITE_DONE) {
			err = kheo__sqlerr(db, rc, "blob acknowledgements");
			break;
		}
		kheo_hex(blob, v[i].hash, KHEO_ID_SIZE);
		snprintf(size, sizeof(size), "%llu", (unsigned long long)bytes);
		snprintf(at, sizeof(at), "%lld", (long long)kheo__now_ms(db));
		err = kheo_put(db, out, "sys_blob_ack", rid, a, 4);
		/* two records of one unit name it: the first put serves */
		if (err == KHEO_EEXISTS)
			err = KHEO_OK;
	}
	sqlite3_finalize(st);
	kheo__free(v);
	if (err == KHEO_OK)
		kheo__clear(db);
	return err;
}

int kheo__blob_acked(kheo_db *db, const uint8_t h[KHEO_ID_SIZE])
{
	char hex[2 * KHEO_ID_SIZE + 1];
	sqlite3_stmt *st;
	int rc;

	/* in open mode nothing says who wrote it */
	if (!db->enforcing)
		return 0;
	kheo_hex(hex, h, KHEO_ID_SIZE);
	rc = sqlite3_prepare_v2(db->sql, "SELECT 1 FROM sys_blob_ack WHERE"
		" blob = ?1 AND _deleted = 0 LIMIT 1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "blob acknowledgements");
	sqlite3_bind_text(st, 1, hex, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0
				 : kheo__sqlerr(db, rc, "blob acknowledgements");
}
