/*
 * history.c - every write a record has seen, and which of them hold.
 *
 * A record's file in the audit mirror changes only when its shown state
 * changes, so `git log` and `git blame` never see a write that lost the
 * merge (an older clock, another unit's changeset, a collector's edit
 * of a recognised model), nor a later write of the same value.  The
 * store keeps every op (kheo_op) and what superseded it (kheo_pred), so
 * the whole story can be told: this file tells it, for `kheo history`
 * on a node and `kheo audit log|blame` on a replayed mirror.
 *
 * Which ops hold is not decided here: kheo__live_ops (merge.c) gives
 * the live ones, with the winner of each register first, exactly as
 * reads show the record.  A remove has no op row of its own (it
 * supersedes the adds it saw), so it is told from those pred rows.
 */
#include "internal.h"

#include <jansson.h>
#include <string.h>

static json_t *hex_json(const void *p, size_t n)
{
	char hex[2 * KHEO_KEY_SIZE + 1];

	if (!p || n > KHEO_KEY_SIZE)
		return json_null();
	kheo_hex(hex, p, n);
	return json_string(hex);
}

/* What the live set says of one op: "holds" (the value shown, or a
 * member of the set shown), "competing" (live, in conflict with the
 * holder), "foreign" (live but never wins: another unit's changeset, or
 * locked), or NULL when it is not live at all (superseded). */
static const char *live_state(const kheo_live_set *live, const char *field,
	int kind, uint64_t clock, const uint8_t *author)
{
	size_t i;
	int first = 1;

	for (i = 0; i < live->n; i++) {
		const kheo_live *l = &live->v[i];
		int same;

		if (strcmp(l->field, field) != 0)
			continue;
		same = l->clock == clock &&
		       memcmp(l->author, author, KHEO_KEY_SIZE) == 0;
		if (l->foreign) {
			if (same)
				return "foreign";
			continue;
		}
		/* a set's live adds all hold; a register's first
		 * non-foreign value is its winner (merge.c's order) */
		if (same)
			return kind == KHEO_OP_ADD || first ? "holds"
							    : "competing";
		if (l->kind != KHEO_OP_ADD)
			first = 0;
	}
	return NULL;
}

/* The changeset columns every write carries, from a kheo_cs row read
 * at column `c` (id, author, unit, useq, role, applied); NULL columns
 * (a pending edit, cs 0) leave them out. */
static void put_changeset(json_t *w, sqlite3_stmt *st, int c)
{
	if (sqlite3_column_type(st, c) == SQLITE_NULL) {
		json_object_set_new(w, "changeset", json_null());
		json_object_set_new(w, "pending", json_true());
		return;
	}
	json_object_set_new(w, "changeset",
		hex_json(sqlite3_column_blob(st, c), KHEO_ID_SIZE));
	json_object_set_new(w, "author",
		hex_json(sqlite3_column_blob(st, c + 1), KHEO_KEY_SIZE));
	json_object_set_new(w, "cs_unit", json_string(
		(const char *)sqlite3_column_text(st, c + 2)));
	json_object_set_new(w, "useq",
		json_integer(sqlite3_column_int64(st, c + 3)));
	json_object_set_new(w, "role", json_string(
		kheo_role_name(sqlite3_column_int(st, c + 4))));
	json_object_set_new(w, "applied",
		kheo__time_json(sqlite3_column_int64(st, c + 5)));
}

#define CS_COLS "c.id, c.author, c.unit, c.useq, c.role, c.applied"

/* Every op row of the record, oldest first, each with the first write
 * that superseded it (when one did). */
static int op_writes(kheo_db *db, const uint8_t *rid,
	const kheo_live_set *live, json_t *arr)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db->sql,
		"SELECT o.field, o.kind, o.vtype, o.value, o.clock, o.author,"
		" " CS_COLS ", (SELECT p.by_clock FROM kheo_pred p WHERE"
		" p.rid = o.rid AND p.field = o.field AND p.clock = o.clock"
		" AND p.author = o.author ORDER BY p.by_clock LIMIT 1),"
		" (SELECT pc.id FROM kheo_pred p JOIN kheo_cs pc ON pc.n ="
		" p.cs WHERE p.rid = o.rid AND p.field = o.field AND p.clock ="
		" o.clock AND p.author = o.author ORDER BY p.by_clock LIMIT 1)"
		" FROM kheo_op o LEFT JOIN kheo_cs c ON c.n = o.cs AND o.cs != 0"
		" WHERE o.rid = ?1 ORDER BY o.clock, o.author, o.field", -1,
		&st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "history");
	sqlite3_bind_blob(st, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *field = (const char *)sqlite3_column_text(st, 0);
		int kind = sqlite3_column_int(st, 1);
		uint64_t clock = (uint64_t)sqlite3_column_int64(st, 4);
		const uint8_t *author = sqlite3_column_blob(st, 5);
		const char *state = live_state(live, field, kind, clock,
			author);
		json_t *w = json_object();
		kheo_value v;

		kheo__column_value(st, 3, sqlite3_column_int(st, 2), &v);
		json_object_set_new(w, "time",
			kheo__time_json((int64_t)(clock >> 16)));
		json_object_set_new(w, "clock", json_integer((json_int_t)clock));
		json_object_set_new(w, "field", json_string(field));
		json_object_set_new(w, "op", json_string(kheo_op_name(kind)));
		json_object_set_new(w, "value", kheo__value_json(&v));
		put_changeset(w, st, 6);
		/* a pending edit's author is this node */
		if (!json_object_get(w, "author"))
			json_object_set_new(w, "author",
				hex_json(author, KHEO_KEY_SIZE));
		json_object_set_new(w, "state",
			json_string(state ? state : "superseded"));
		if (!state && sqlite3_column_type(st, 12) != SQLITE_NULL) {
			json_t *by = json_object();

			json_object_set_new(by, "time", kheo__time_json(
				sqlite3_column_int64(st, 12) >> 16));
			json_object_set_new(by, "changeset", sqlite3_column_type(
				st, 13) == SQLITE_NULL ? json_null() : hex_json(
				sqlite3_column_blob(st, 13), KHEO_ID_SIZE));
			json_object_set_new(w, "superseded_by", by);
		}
		json_array_append_new(arr, w);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? KHEO_OK : kheo__sqlerr(db, rc, "history");
}

/* Removes: a pred row on an add whose superseding changeset wrote no
 * op of that field at that clock.  One write per (changeset, clock,
 * member). */
static int remove_writes(kheo_db *db, const uint8_t *rid, json_t *arr)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db->sql,
		"SELECT p.field, a.vtype, a.value, p.by_clock, " CS_COLS
		" FROM kheo_pred p JOIN kheo_op a ON a.rid = p.rid AND"
		" a.field = p.field AND a.clock = p.clock AND a.author ="
		" p.author AND a.kind = ?2 LEFT JOIN kheo_cs c ON c.n = p.cs"
		" AND p.cs != 0 WHERE p.rid = ?1 AND NOT EXISTS (SELECT 1 FROM"
		" kheo_op o WHERE o.rid = p.rid AND o.field = p.field AND"
		" o.clock = p.by_clock AND o.cs = p.cs) GROUP BY p.field,"
		" p.cs, p.by_clock, a.value ORDER BY p.by_clock", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "history");
	sqlite3_bind_blob(st, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, KHEO_OP_ADD);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t clock = (uint64_t)sqlite3_column_int64(st, 3);
		json_t *w = json_object();
		kheo_value v;

		kheo__column_value(st, 2, sqlite3_column_int(st, 1), &v);
		json_object_set_new(w, "time",
			kheo__time_json((int64_t)(clock >> 16)));
		json_object_set_new(w, "clock", json_integer((json_int_t)clock));
		json_object_set_new(w, "field", json_string(
			(const char *)sqlite3_column_text(st, 0)));
		json_object_set_new(w, "op", json_string("remove"));
		json_object_set_new(w, "value", kheo__value_json(&v));
		put_changeset(w, st, 4);
		if (!json_object_get(w, "author"))
			json_object_set_new(w, "author", hex_json(db->pk,
				KHEO_KEY_SIZE));
		json_object_set_new(w, "state", json_string("applied"));
		json_array_append_new(arr, w);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? KHEO_OK : kheo__sqlerr(db, rc, "history");
}

/* Oldest first: by clock, removes after the op rows of the same clock
 * (json_array has no sort: a stable insertion sort of small arrays). */
static json_t *by_clock(json_t *arr)
{
	json_t *out = json_array();
	size_t i, j, n = json_array_size(arr);

	for (i = 0; i < n; i++) {
		json_t *w = json_array_get(arr, i);
		json_int_t c = json_integer_value(json_object_get(w, "clock"));

		for (j = json_array_size(out); j > 0; j--) {
			json_t *p = json_array_get(out, j - 1);

			if (json_integer_value(json_object_get(p, "clock")) <= c)
				break;
		}
		json_array_insert(out, j, w);
	}
	json_decref(arr);
	return out;
}

KHEO_EXTERN int kheo_history_json(kheo_db *db, char **out, const char *table,
	const char *id)
{
	uint8_t rid[KHEO_RECORD_SIZE];
	kheo_live_set live;
	json_t *obj, *writes;
	int err;

	kheo__clear(db);
	*out = NULL;
	if (!table || !kheo_schema_table(db->schema, table))
		return kheo__error(db, KHEO_EINVAL, "no table \"%s\"",
			table ? table : "");
	if (!id || kheo_unhex(rid, KHEO_RECORD_SIZE, id, strlen(id)) < 0)
		return kheo__error(db, KHEO_EINVAL,
			"record id \"%s\" is not 32 hex digits", id ? id : "");
	if ((err = kheo__live_ops(db, &live, rid, NULL)) < 0)
		return err;
	if (!live.exists || strcmp(live.tbl, table) != 0) {
		kheo__live_free(&live);
		return kheo__error(db, KHEO_ENOTFOUND, "no %s with id %s here",
			table, id);
	}
	writes = json_array();
	if ((err = op_writes(db, rid, &live, writes)) == KHEO_OK)
		err = remove_writes(db, rid, writes);
	if (err < 0) {
		kheo__live_free(&live);
		json_decref(writes);
		return err;
	}
	obj = json_object();
	json_object_set_new(obj, "table", json_string(table));
	json_object_set_new(obj, "id", hex_json(rid, KHEO_RECORD_SIZE));
	json_object_set_new(obj, "unit", json_string(live.unit));
	json_object_set_new(obj, "writes", by_clock(writes));
	kheo__live_free(&live);
	return kheo__json_out(db, out, obj);
}
