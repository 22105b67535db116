/*
 * read.c - what a node shows: records, listings, its log, conflicts,
 * quarantine and identity, as JSON text (jansson).
 *
 * Names in the output are the schema's names, never translated; the CLI
 * turns these into tables for people.  Nothing here writes.
 */
#include "internal.h"
#include "alloc.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *kheo__node_role_name(int role)
{
	switch (role) {
	case KHEO_NODE_DEVICE: return "device";
	case KHEO_NODE_HUB: return "hub";
	case KHEO_NODE_PROVINCE: return "province";
	}
	return "unknown";
}

/* ISO 8601 (UTC, ms) of a wall time in ms. */
json_t *kheo__time_json(int64_t ms)
{
	char buf[40];
	struct tm tm;
	time_t secs = (time_t)(ms / 1000);

	if (ms <= 0)
		return json_null();
	gmtime_r(&secs, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), ".%03dZ",
		(int)(ms % 1000));
	return json_string(buf);
}

static json_t *hex_json(const void *p, size_t n)
{
	char hex[2 * 64 + 1];

	if (!p || n > 64)
		return json_null();
	kheo_hex(hex, p, n);
	return json_string(hex);
}

/* Hand a JSON value to the caller as text. */
int kheo__json_out(kheo_db *db, char **out, json_t *j)
{
	char *text;

	*out = NULL;
	if (!j)
		return kheo__error(db, KHEO_ENOMEM, "out of memory");
	text = json_dumps(j, JSON_INDENT(2));
	json_decref(j);
	if (!text)
		return kheo__error(db, KHEO_ENOMEM, "out of memory");
	/* callers free with kheo_free: give them our allocator's copy */
	*out = kheo__malloc(strlen(text) + 1);
	if (*out)
		strcpy(*out, text);
	free(text);
	return *out ? KHEO_OK : KHEO_ENOMEM;
}

/* The JSON object of one record, or NULL with *err set (also used by
 * audit.c for the mirror's record files). */
json_t *kheo__record_json(kheo_db *db, const uint8_t *rid, int *err)
{
	const kheo_stable *t;
	kheo_live_set live;
	json_t *obj, *conflicts, *unknown;
	size_t i, j;

	if ((*err = kheo__live_ops(db, &live, rid, NULL)) < 0)
		return NULL;
	if (!live.exists) {
		char hex[2 * KHEO_RECORD_SIZE + 1];

		kheo__live_free(&live);
		kheo_hex(hex, rid, KHEO_RECORD_SIZE);
		*err = kheo__error(db, KHEO_ENOTFOUND,
			"record %s has no put here", hex);
		return NULL;
	}
	t = kheo_schema_table(db->schema, live.tbl);
	obj = json_object();
	conflicts = json_object();
	unknown = json_object();
	json_object_set_new(obj, "id", hex_json(rid, KHEO_RECORD_SIZE));
	json_object_set_new(obj, "_unit", json_string(live.unit));
	json_object_set_new(obj, "_deleted", json_false());
	/* set fields start empty: a set with no members is [] */
	for (i = 0; t && i < t->nfields; i++)
		if (t->fields[i].is_set)
			json_object_set_new(obj, t->fields[i].name,
				json_array());
	for (i = 0; i < live.n;) {
		const char *name = live.v[i].field;
		const kheo_sfield *f = t ? kheo_schema_field(t, name) : NULL;
		json_t *dest = f || strcmp(name, "_deleted") == 0 ? obj
								 : unknown;
		const kheo_live *win = NULL;
		size_t nreg = 0;

		for (j = i; j < live.n && strcmp(live.v[j].field, name) == 0;
		     j++) {
			if (live.v[j].kind == KHEO_OP_ADD) {
				json_t *arr;

				if (live.v[j].foreign)
					continue;
				arr = json_object_get(dest, name);
				if (!json_is_array(arr)) {
					arr = json_array();
					json_object_set_new(dest, name, arr);
				}
				json_array_append_new(arr,
					kheo__value_json(&live.v[j].value));
				continue;
			}
			nreg++;
			if (!win && !live.v[j].foreign)
				win = &live.v[j];
		}
		if (win)
			json_object_set_new(dest, name,
				kheo__value_json(&win->value));
		if (nreg > 1 && kheo__register_conflict(&live, i, j)) {
			json_t *vals = json_array();
			size_t k;

			for (k = i; k < j; k++) {
				json_t *v;

				if (live.v[k].kind == KHEO_OP_ADD)
					continue;
				v = json_object();
				json_object_set_new(v, "value",
					kheo__value_json(&live.v[k].value));
				json_object_set_new(v, "author",
					hex_json(live.v[k].author,
						KHEO_KEY_SIZE));
				json_object_set_new(v, "time",
					kheo__time_json((int64_t)(live.v[k].clock >>
						16)));
				json_object_set_new(v, "wins",
					json_boolean(&live.v[k] == win));
				if (live.v[k].foreign)
					json_object_set_new(v, "foreign",
						json_true());
				json_array_append_new(vals, v);
			}
			json_object_set_new(conflicts, name, vals);
		}
		i = j;
	}
	/* sets print sorted and without repeats */
	for (i = 0; t && i < t->nfields; i++) {
		json_t *arr = json_object_get(obj, t->fields[i].name);
		json_t *sorted;
		size_t k, n;

		if (!t->fields[i].is_set || json_array_size(arr) < 2)
			continue;
		n = json_array_size(arr);
		sorted = json_array();
		for (k = 0; k < n; k++) {
			json_t *m = json_array_get(arr, k);
			size_t pos = 0, q;
			char *mt = json_dumps(m, JSON_ENCODE_ANY);
			int dup = 0;

			for (q = 0; q < json_array_size(sorted); q++) {
				char *qt = json_dumps(json_array_get(sorted, q),
					JSON_ENCODE_ANY);
				int c = strcmp(qt, mt);

				free(qt);
				if (c == 0)
					dup = 1;
				if (c < 0)
					pos = q + 1;
			}
			free(mt);
			if (!dup)
				json_array_insert(sorted, pos, m);
		}
		json_object_set_new(obj, t->fields[i].name, sorted);
	}
	if (json_object_size(conflicts))
		json_object_set(obj, "_conflicts", conflicts);
	if (json_object_size(unknown))
		json_object_set(obj, "_unknown", unknown);
	json_decref(conflicts);
	json_decref(unknown);
	kheo__live_free(&live);
	*err = KHEO_OK;
	return obj;
}

KHEO_EXTERN int kheo_get_json(kheo_db *db, char **out, const char *table,
	const char *id)
{
	uint8_t rid[KHEO_RECORD_SIZE];
	json_t *obj;
	int err;

	kheo__clear(db);
	*out = NULL;
	if (!kheo_schema_table(db->schema, table))
		return kheo__error(db, KHEO_EINVAL, "no table \"%s\"", table);
	if (!id || kheo_unhex(rid, KHEO_RECORD_SIZE, id, strlen(id)) < 0)
		return kheo__error(db, KHEO_EINVAL,
			"record id \"%s\" is not 32 hex digits",
			id ? id : "");
	{
		sqlite3_stmt *st = kheo__stmt(db, ST_RECORD_GET);
		int rc, same;

		if (!st)
			return KHEO_ERROR;
		sqlite3_bind_blob(st, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
		rc = sqlite3_step(st);
		same = rc == SQLITE_ROW &&
		       strcmp((const char *)sqlite3_column_text(st, 0),
			       table) == 0;
		sqlite3_reset(st);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return kheo__sqlerr(db, rc, "get");
		if (!same)
			return kheo__error(db, KHEO_ENOTFOUND,
				"no %s with id %s", table, id);
	}
	if (!(obj = kheo__record_json(db, rid, &err)))
		return err;
	return kheo__json_out(db, out, obj);
}

KHEO_EXTERN int kheo_list_json(kheo_db *db, char **out, const char *table,
	const kheo_assign *where, size_t nwhere)
{
	return kheo_search_json(db, out, table, where, nwhere, NULL);
}

KHEO_EXTERN int kheo_search_json(kheo_db *db, char **out, const char *table,
	const kheo_assign *where, size_t nwhere, const char *search)
{
	char *pattern = NULL;
	const kheo_stable *t;
	kheo_buf sql = { 0 }, *vals = NULL;
	kheo_value *v = NULL;
	sqlite3_stmt *st = NULL;
	json_t *arr = NULL;
	char msg[320], part[160];
	size_t i;
	int rc, err = KHEO_OK;

	kheo__clear(db);
	*out = NULL;
	if (!(t = kheo_schema_table(db->schema, table)))
		return kheo__error(db, KHEO_EINVAL, "no table \"%s\"", table);
	if (db->in_tx && (err = kheo__flush_dirty(db)) < 0)
		return err;
	vals = kheo__calloc(nwhere ? nwhere : 1, sizeof(*vals));
	v = kheo__calloc(nwhere ? nwhere : 1, sizeof(*v));
	if (!vals || !v) {
		err = KHEO_ENOMEM;
		goto done;
	}
	snprintf(part, sizeof(part),
		"SELECT id FROM \"%s\" WHERE _deleted = 0", t->name);
	kheo_buf_put(&sql, part, strlen(part));
	for (i = 0; i < nwhere; i++) {
		const kheo_sfield *f = kheo_schema_field(t, where[i].field);

		if (!f) {
			err = kheo__error(db, KHEO_EINVAL,
				"%s.%s: no such field", t->name,
				where[i].field);
			goto done;
		}
		if ((err = kheo_schema_value_from_text(&v[i], &vals[i], t, f,
			     where[i].value, msg, sizeof(msg))) < 0) {
			kheo__error(db, err, "%s", msg);
			goto done;
		}
		if (f->is_set)
			snprintf(part, sizeof(part),
				" AND EXISTS (SELECT 1 FROM json_each(\"%s\")"
				" WHERE value = ?%zu)", f->name, i + 1);
		else
			snprintf(part, sizeof(part), " AND \"%s\" IS ?%zu",
				f->name, i + 1);
		kheo_buf_put(&sql, part, strlen(part));
	}
	if (search && *search &&
	    (err = kheo__search_sql(db, &sql, t, search, (int)nwhere + 1,
		     &pattern)) < 0)
		goto done;
	kheo_buf_put(&sql, " ORDER BY id", 13);
	if (sql.oom) {
		err = KHEO_ENOMEM;
		goto done;
	}
	rc = sqlite3_prepare_v2(db->sql, (const char *)sql.p, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		err = kheo__sqlerr(db, rc, "list");
		goto done;
	}
	for (i = 0; i < nwhere; i++) {
		if (v[i].type == KHEO_VAL_HASH) {
			char hex[2 * KHEO_ID_SIZE + 1];

			kheo_hex(hex, v[i].p, KHEO_ID_SIZE);
			sqlite3_bind_text(st, (int)i + 1, hex, -1,
				SQLITE_TRANSIENT);
		} else {
			kheo__bind_value(st, (int)i + 1, &v[i]);
		}
	}
	if (pattern)
		sqlite3_bind_text(st, (int)nwhere + 1, pattern, -1,
			SQLITE_STATIC);
	arr = json_array();
	while (err == KHEO_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint8_t rid[KHEO_RECORD_SIZE];
		json_t *obj;

		kheo_unhex(rid, KHEO_RECORD_SIZE,
			(const char *)sqlite3_column_text(st, 0), 32);
		if ((obj = kheo__record_json(db, rid, &err)))
			json_array_append_new(arr, obj);
	}
	if (err == KHEO_OK && rc != SQLITE_DONE)
		err = kheo__sqlerr(db, rc, "list");
	if (err == KHEO_OK) {
		err = kheo__json_out(db, out, arr);
		arr = NULL;
	}
done:
	json_decref(arr);
	sqlite3_finalize(st);
	for (i = 0; vals && i < nwhere; i++)
		kheo_buf_free(&vals[i]);
	kheo__free(vals);
	kheo__free(v);
	kheo__free(pattern);
	kheo_buf_free(&sql);
	return err;
}

KHEO_EXTERN int kheo_log_json(kheo_db *db, char **out)
{
	sqlite3_stmt *st;
	json_t *arr;
	int rc;

	kheo__clear(db);
	*out = NULL;
	rc = sqlite3_prepare_v2(db->sql,
		"SELECT id, author, unit, useq, clock_min, clock_max, nops,"
		" state, why, received, applied, length(frame), EXISTS (SELECT"
		" 1 FROM sys_receipt r WHERE r.author = lower(hex(c.author))"
		" AND r.chain_unit = c.unit AND r.useq >= c.useq AND"
		" r._deleted = 0) FROM kheo_cs c ORDER BY n DESC", -1, &st,
		NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "log");
	arr = json_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *o = json_object();
		const void *author = sqlite3_column_blob(st, 1);

		json_object_set_new(o, "id",
			hex_json(sqlite3_column_blob(st, 0), KHEO_ID_SIZE));
		json_object_set_new(o, "author",
			hex_json(author, KHEO_KEY_SIZE));
		json_object_set_new(o, "mine", json_boolean(
			memcmp(author, db->pk, KHEO_KEY_SIZE) == 0));
		json_object_set_new(o, "unit", json_string(
			(const char *)sqlite3_column_text(st, 2)));
		json_object_set_new(o, "useq",
			json_integer(sqlite3_column_int64(st, 3)));
		json_object_set_new(o, "time", kheo__time_json(
			sqlite3_column_int64(st, 5) >> 16));
		json_object_set_new(o, "ops",
			json_integer(sqlite3_column_int64(st, 6)));
		json_object_set_new(o, "state", json_string(
			sqlite3_column_int(st, 7) ? "held" : "applied"));
		if (sqlite3_column_type(st, 8) != SQLITE_NULL)
			json_object_set_new(o, "why", json_string(
				(const char *)sqlite3_column_text(st, 8)));
		json_object_set_new(o, "received",
			kheo__time_json(sqlite3_column_int64(st, 9)));
		json_object_set_new(o, "bytes",
			json_integer(sqlite3_column_int64(st, 11)));
		/* a province receipt covers it: the province holds it */
		json_object_set_new(o, "province_held",
			json_boolean(sqlite3_column_int(st, 12)));
		json_array_append_new(arr, o);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		json_decref(arr);
		return kheo__sqlerr(db, rc, "log");
	}
	return kheo__json_out(db, out, arr);
}

KHEO_EXTERN int kheo_conflicts_json(kheo_db *db, char **out)
{
	json_t *arr;
	size_t ti;
	int err = KHEO_OK;

	kheo__clear(db);
	*out = NULL;
	/* inside a batch the tables wait for its commit: catch up first */
	if (db->in_tx && (err = kheo__flush_dirty(db)) < 0)
		return err;
	arr = json_array();
	for (ti = 0; ti < db->schema->ntables && err == KHEO_OK; ti++) {
		const char *tname = db->schema->tables[ti].name;
		char sql[160];
		sqlite3_stmt *st;
		int rc;

		snprintf(sql, sizeof(sql), "SELECT id, _deleted FROM \"%s\""
			" WHERE _conflicts > 0 ORDER BY id", tname);
		rc = sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL);
		if (rc != SQLITE_OK) {
			err = kheo__sqlerr(db, rc, "conflicts");
			break;
		}
		while (err == KHEO_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
			uint8_t rid[KHEO_RECORD_SIZE];
			json_t *rec, *c, *o;
			const char *k;

			kheo_unhex(rid, KHEO_RECORD_SIZE,
				(const char *)sqlite3_column_text(st, 0), 32);
			if (!(rec = kheo__record_json(db, rid, &err)))
				break;
			c = json_object_get(rec, "_conflicts");
			json_object_foreach(c, k, o) {
				json_t *e = json_object();

				json_object_set_new(e, "table",
					json_string(tname));
				json_object_set(e, "id",
					json_object_get(rec, "id"));
				json_object_set_new(e, "field", json_string(k));
				json_object_set(e, "values", o);
				json_array_append_new(arr, e);
			}
			if (sqlite3_column_int(st, 1) &&
			    json_object_size(c) == 0) {
				/* deleted while someone edited it */
				json_t *e = json_object();

				json_object_set_new(e, "table",
					json_string(tname));
				json_object_set(e, "id",
					json_object_get(rec, "id"));
				json_object_set_new(e, "field",
					json_string("_deleted"));
				json_object_set_new(e, "kind", json_string(
					"edit concurrent with delete"));
				json_array_append_new(arr, e);
			}
			json_decref(rec);
		}
		if (err == KHEO_OK && rc != SQLITE_DONE)
			err = kheo__sqlerr(db, rc, "conflicts");
		sqlite3_finalize(st);
	}
	if (err < 0) {
		json_decref(arr);
		return err;
	}
	return kheo__json_out(db, out, arr);
}

KHEO_EXTERN int kheo_quarantine_json(kheo_db *db, char **out)
{
	sqlite3_stmt *st;
	json_t *arr;
	int rc;

	kheo__clear(db);
	*out = NULL;
	rc = sqlite3_prepare_v2(db->sql,
		"SELECT id, author, unit, useq, reason, detail, received,"
		" length(frame) FROM kheo_quarantine ORDER BY n", -1, &st,
		NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "quarantine");
	arr = json_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *o = json_object();

		json_object_set_new(o, "id",
			hex_json(sqlite3_column_blob(st, 0), KHEO_ID_SIZE));
		json_object_set_new(o, "author",
			hex_json(sqlite3_column_blob(st, 1), KHEO_KEY_SIZE));
		json_object_set_new(o, "unit",
			sqlite3_column_type(st, 2) == SQLITE_NULL ? json_null()
			: json_string((const char *)sqlite3_column_text(st, 2)));
		json_object_set_new(o, "useq",
			sqlite3_column_type(st, 3) == SQLITE_NULL ? json_null()
			: json_integer(sqlite3_column_int64(st, 3)));
		json_object_set_new(o, "reason", json_string(
			(const char *)sqlite3_column_text(st, 4)));
		json_object_set_new(o, "detail", json_string(
			(const char *)sqlite3_column_text(st, 5)));
		json_object_set_new(o, "received",
			kheo__time_json(sqlite3_column_int64(st, 6)));
		json_object_set_new(o, "bytes",
			json_integer(sqlite3_column_int64(st, 7)));
		json_array_append_new(arr, o);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		json_decref(arr);
		return kheo__sqlerr(db, rc, "quarantine");
	}
	return kheo__json_out(db, out, arr);
}

static int64_t count(kheo_db *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t n = -1;

	if (sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

KHEO_EXTERN int kheo_id_json(kheo_db *db, char **out)
{
	json_t *o = json_object();
	char schema[96];

	kheo__clear(db);
	json_object_set_new(o, "key", hex_json(db->pk, KHEO_KEY_SIZE));
	json_object_set_new(o, "node_role",
		json_string(kheo__node_role_name(db->role)));
	json_object_set_new(o, "unit", json_string(db->unit));
	kheo__identity_json(db, o);
	snprintf(schema, sizeof(schema), "%s v%u", db->schema->name,
		db->schema->version);
	json_object_set_new(o, "schema", json_string(schema));
	json_object_set_new(o, "can_sign", json_boolean(db->sk != NULL));
	if (!db->sk)
		json_object_set_new(o, "cannot_sign_because",
			json_string(db->sign_refusal));
	json_object_set_new(o, "pending_edits", json_integer(
		count(db, "SELECT count(*) FROM kheo_pending")));
	json_object_set_new(o, "changesets", json_integer(
		count(db, "SELECT count(*) FROM kheo_cs WHERE state = 0")));
	json_object_set_new(o, "held", json_integer(
		count(db, "SELECT count(*) FROM kheo_cs WHERE state = 1")));
	json_object_set_new(o, "quarantined", json_integer(
		count(db, "SELECT count(*) FROM kheo_quarantine")));
	json_object_set_new(o, "flagged_keys", json_integer(
		count(db, "SELECT count(DISTINCT author) FROM kheo_flag")));
	return kheo__json_out(db, out, o);
}
