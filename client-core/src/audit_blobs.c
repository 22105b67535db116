/*
 * audit_blobs.c - kheo_audit_verify_blobs: a blob store checked against
 * an audit mirror (docs/auditor.md, "Attachments").
 *
 * The mirror records the hashes of attachments, never their bytes (a
 * record's file lists its photos and decision scan as hex).  Given a data
 * directory that holds the bytes (the node's, or a copy of its kheo.db
 * and blobs/), this checks that every blob a live record of the mirror's
 * head names is there whole and hashes to its name, and reports each one
 * that is not, with the record's file in the mirror.
 *
 * It reads the state kheo_audit_verify rebuilt (audit.c hands it over),
 * so the list of blobs comes from the verified history, not from the
 * store being checked; reading and hashing the blobs is blob.c's.
 */
#include "internal.h"
#include "blob.h"
#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef KHEO_NO_AUDIT

/* audit.c's hook */
kheo_db *kheo__audit_state(kheo_audit *a);
void kheo__audit_error(kheo_audit *a, const char *kind, const char *path,
	const char *msg);

/* By hash, then record: the references to one blob side by side. */
static int by_hash(const void *pa, const void *pb)
{
	const kheo_blob_ref *a = pa, *b = pb;
	int c = memcmp(a->hash, b->hash, KHEO_ID_SIZE);

	return c ? c : strcmp(a->id, b->id);
}

KHEO_EXTERN int kheo_audit_verify_blobs(kheo_audit *a, const char *datadir,
	kheo_audit_blob_stats *out)
{
	kheo_open_options oo = KHEO_OPEN_OPTIONS_INIT;
	kheo_audit_blob_stats st = { 0 };
	kheo_db *state, *store = NULL;
	kheo_blob_ref *v = NULL;
	size_t n = 0, i;
	char why[300] = "";
	int err, bad = KHEO_OK;

	if (!(state = kheo__audit_state(a))) {
		kheo__audit_error(a, "usage", "", "verify the mirror first "
			"(kheo_audit_verify), then its blobs");
		return KHEO_EINVAL;
	}
	if ((err = kheo__blob_named(state, NULL, NULL, &v, &n)) < 0) {
		kheo__audit_error(a, "blobs", "", kheo_errmsg(state));
		return err;
	}
	if ((err = kheo_db_open(&store, datadir, &oo)) < 0) {
		char msg[600];

		snprintf(msg, sizeof(msg), "the blob store %s: %s", datadir,
			store ? kheo_errmsg(store) : "out of memory");
		kheo__audit_error(a, "blobs", "", msg);
		goto done;
	}
	if (n)
		qsort(v, n, sizeof(*v), by_hash);
	/* each blob read once; each record naming a bad one reported (an
	 * auditor wants every record concerned) */
	for (i = 0; i < n; i++) {
		char path[KHEO_UNIT_MAX + KHEO_NAME_MAX + 48], hex[65];
		char msg[800];

		if (i == 0 || memcmp(v[i].hash, v[i - 1].hash,
				      KHEO_ID_SIZE) != 0) {
			bad = kheo__blob_verify(store, v[i].hash, NULL);
			if (bad == KHEO_ENOMEM) {
				err = KHEO_ENOMEM;
				goto done;
			}
			snprintf(why, sizeof(why), "%s",
				bad ? kheo_errmsg(store) : "");
			st.blobs++;
			if (bad == KHEO_OK)
				st.intact++;
			else if (bad == KHEO_ENOTFOUND)
				st.missing++;
			else
				st.damaged++;
		}
		if (bad == KHEO_OK)
			continue;
		/* the record's file in the mirror (auditor.md's layout) */
		snprintf(path, sizeof(path), "%s/%s/%.2s/%s.json", v[i].unit,
			v[i].table, v[i].id, v[i].id);
		kheo_hex(hex, v[i].hash, KHEO_ID_SIZE);
		snprintf(msg, sizeof(msg), "%s %s of %s %s: %s",
			v[i].field, hex, v[i].table, v[i].id, why);
		kheo__audit_error(a, bad == KHEO_ENOTFOUND ? "blob-missing"
							   : "blob-damaged",
			path, msg);
	}
	err = st.missing || st.damaged ? KHEO_ECORRUPT : KHEO_OK;
done:
	if (out)
		*out = st;
	kheo_db_close(store);
	kheo__free(v);
	return err;
}

#else

KHEO_EXTERN int kheo_audit_verify_blobs(kheo_audit *a, const char *datadir,
	kheo_audit_blob_stats *out)
{
	(void)a;
	(void)datadir;
	(void)out;
	return KHEO_EUNSUPPORTED;
}

#endif
