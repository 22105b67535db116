/*
 * merge.c - the conflict-free merge: ops into rows, rows into state.
 *
 * State is a pure function of the set of applied ops (DESIGN.md, Merge
 * semantics), so nothing here depends on arrival order:
 *   - every op value is a row of kheo_op, keyed by (record, field, op id);
 *   - every pred entry is a row of kheo_pred saying "this op id, in this
 *     record and field, is superseded";
 *   - a register's values are its rows no pred row names; the winner is
 *     the greatest op id among those from the record's own unit (an op of
 *     another unit's changeset never wins, but stays visible);
 *   - a set's members are the values of its live ADD rows (add-wins: a
 *     remove supersedes only the adds it saw);
 *   - a delete is a value of the hidden register _deleted; the op ids it
 *     saw go to kheo_seen, so that an edit it did not see shows as a
 *     conflict instead of vanishing.
 * Records touched are queued in temp.kheo_dirty and re-materialised into
 * the schema's plain tables at the end of each batch.
 *
 * Not here: deciding whether a changeset may be applied (apply.c), making
 * ops (edit.c).
 */
#include "internal.h"
#include "alloc.h"

#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------- value binding */

void kheo__bind_value(sqlite3_stmt *st, int col, const kheo_value *v)
{
	switch (v->type) {
	case KHEO_VAL_NULL:
		sqlite3_bind_null(st, col);
		break;
	case KHEO_VAL_INT:
		sqlite3_bind_int64(st, col, v->i);
		break;
	case KHEO_VAL_REAL:
		sqlite3_bind_double(st, col, v->r);
		break;
	case KHEO_VAL_BOOL:
		sqlite3_bind_int(st, col, v->b);
		break;
	case KHEO_VAL_TEXT:
		sqlite3_bind_text(st, col, (const char *)v->p, (int)v->len,
			SQLITE_STATIC);
		break;
	case KHEO_VAL_BYTES:
	case KHEO_VAL_HASH:
		sqlite3_bind_blob(st, col, v->p, (int)v->len, SQLITE_STATIC);
		break;
	}
}

void kheo__column_value(sqlite3_stmt *st, int col, int vtype, kheo_value *v)
{
	memset(v, 0, sizeof(*v));
	v->type = (kheo_value_type)vtype;
	switch (v->type) {
	case KHEO_VAL_NULL:
		break;
	case KHEO_VAL_INT:
		v->i = sqlite3_column_int64(st, col);
		break;
	case KHEO_VAL_REAL:
		v->r = sqlite3_column_double(st, col);
		break;
	case KHEO_VAL_BOOL:
		v->b = sqlite3_column_int(st, col) != 0;
		break;
	case KHEO_VAL_TEXT:
		v->p = sqlite3_column_text(st, col);
		v->len = (size_t)sqlite3_column_bytes(st, col);
		break;
	case KHEO_VAL_BYTES:
	case KHEO_VAL_HASH:
		v->p = sqlite3_column_blob(st, col);
		v->len = (size_t)sqlite3_column_bytes(st, col);
		break;
	}
}

/* ------------------------------------------------------------ ops → rows */

static int insert_op(kheo_db *db, const kheo_changeset *cs, int64_t cs_n,
	const kheo_op *op, const char *field, int kind, const kheo_value *v)
{
	sqlite3_stmt *st = kheo__stmt(db, ST_OP_INSERT);

	if (!st)
		return KHEO_ERROR;
	sqlite3_bind_blob(st, 1, op->record, KHEO_RECORD_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, field, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)op->clock);
	sqlite3_bind_blob(st, 4, cs->author, KHEO_KEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, cs_n);
	sqlite3_bind_text(st, 6, op->table, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 7, kind);
	sqlite3_bind_text(st, 8, cs->unit, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 9, (int)v->type);
	kheo__bind_value(st, 10, v);
	return kheo__step_done(db, st, "store op");
}

static int insert_preds(kheo_db *db, const kheo_op *op, const char *field,
	int64_t cs_n, int seen)
{
	size_t i;
	int err;

	for (i = 0; i < op->npred; i++) {
		sqlite3_stmt *st = kheo__stmt(db, ST_PRED_INSERT);

		if (!st)
			return KHEO_ERROR;
		sqlite3_bind_blob(st, 1, op->record, KHEO_RECORD_SIZE,
			SQLITE_STATIC);
		sqlite3_bind_text(st, 2, field, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (int64_t)op->pred[i].clock);
		sqlite3_bind_blob(st, 4, op->pred[i].key, KHEO_KEY_SIZE,
			SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, cs_n);
		sqlite3_bind_int64(st, 6, (int64_t)op->clock);
		if ((err = kheo__step_done(db, st, "store pred")) < 0)
			return err;
		if (!seen)
			continue;
		st = kheo__stmt(db, ST_SEEN_INSERT);
		if (!st)
			return KHEO_ERROR;
		sqlite3_bind_blob(st, 1, op->record, KHEO_RECORD_SIZE,
			SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (int64_t)op->pred[i].clock);
		sqlite3_bind_blob(st, 3, op->pred[i].key, KHEO_KEY_SIZE,
			SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, cs_n);
		if ((err = kheo__step_done(db, st, "store seen")) < 0)
			return err;
	}
	return KHEO_OK;
}

/*
 * A record's table and unit come from its put.  Two puts of one id (a
 * mistake, or a forged one) are resolved by the smaller op id, so that the
 * result does not depend on which arrived first.
 */
static int record_put(kheo_db *db, const kheo_changeset *cs,
	const kheo_op *op, int pending)
{
	sqlite3_stmt *st = kheo__stmt(db, ST_RECORD_GET);
	int rc, replace = 1;

	if (!st)
		return KHEO_ERROR;
	sqlite3_bind_blob(st, 1, op->record, KHEO_RECORD_SIZE, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		kheo_opid have = { (uint64_t)sqlite3_column_int64(st, 2),
			sqlite3_column_blob(st, 3) };
		kheo_opid mine = { op->clock, cs->author };

		int c = kheo_opid_cmp(&mine, &have);

		/* the same put, sealed, replaces its pending self (a clone's
		 * twin may deliver it before this copy seals its own) */
		replace = c < 0 || (c == 0 && !pending &&
					   sqlite3_column_int(st, 4));
	} else if (rc != SQLITE_DONE) {
		return kheo__sqlerr(db, rc, "record");
	}
	sqlite3_reset(st);
	if (!replace)
		return KHEO_OK;
	st = kheo__stmt(db, ST_RECORD_PUT);
	if (!st)
		return KHEO_ERROR;
	sqlite3_bind_blob(st, 1, op->record, KHEO_RECORD_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, op->table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, cs->unit, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (int64_t)op->clock);
	sqlite3_bind_blob(st, 5, cs->author, KHEO_KEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_int(st, 6, pending);
	return kheo__step_done(db, st, "record");
}

static int mark_dirty(kheo_db *db, const uint8_t *rid)
{
	sqlite3_stmt *st = kheo__stmt(db, ST_DIRTY_ADD);

	if (!st)
		return KHEO_ERROR;
	sqlite3_bind_blob(st, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
	return kheo__step_done(db, st, "dirty");
}

int kheo__merge_changeset(kheo_db *db, const kheo_changeset *cs,
	int64_t cs_n)
{
	static const kheo_value deleted = { .type = KHEO_VAL_BOOL, .b = 1 };
	int pending = cs_n == 0;
	size_t i, j;
	int err = KHEO_OK;

	for (i = 0; i < cs->nops && err == KHEO_OK; i++) {
		const kheo_op *op = &cs->ops[i];

		switch (op->kind) {
		case KHEO_OP_PUT:
			err = record_put(db, cs, op, pending);
			for (j = 0; j < op->nfields && err == KHEO_OK; j++)
				err = insert_op(db, cs, cs_n, op,
					op->fields[j].name, KHEO_OP_PUT,
					&op->fields[j].value);
			/* a put's pred (rare: a put over a known id) applies
			 * to each of its fields */
			for (j = 0; j < op->nfields && err == KHEO_OK; j++)
				err = insert_preds(db, op, op->fields[j].name,
					cs_n, 0);
			break;
		case KHEO_OP_SET:
		case KHEO_OP_ADD:
			err = insert_op(db, cs, cs_n, op, op->fields[0].name,
				op->kind, &op->fields[0].value);
			if (err == KHEO_OK)
				err = insert_preds(db, op, op->fields[0].name,
					cs_n, 0);
			break;
		case KHEO_OP_REMOVE:
			err = insert_preds(db, op, op->fields[0].name, cs_n,
				0);
			break;
		case KHEO_OP_DELETE:
			err = insert_op(db, cs, cs_n, op, "_deleted",
				KHEO_OP_DELETE, &deleted);
			if (err == KHEO_OK)
				err = insert_preds(db, op, "_deleted", cs_n,
					1);
			break;
		}
		if (err == KHEO_OK)
			err = mark_dirty(db, op->record);
	}
	return err;
}

/* ------------------------------------------------------------- live ops */

static int add_lock(kheo_db *db, uint64_t lo, uint64_t hi)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db->sql,
		"INSERT INTO temp.kheo_lock(lo, hi) VALUES(?1, ?2)", -1, &st,
		NULL);

	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "lock");
	sqlite3_bind_int64(st, 1, (int64_t)lo);
	sqlite3_bind_int64(st, 2, (int64_t)hi);
	rc = kheo__step_done(db, st, "lock");
	sqlite3_finalize(st);
	db->lock_rows = 1;
	return rc;
}

static int value_cmp(const kheo_value *a, const kheo_value *b);

/*
 * Equal op ids with different content happen only under equivocation (a
 * cloned device with the same key and clock).  Order them by content, never
 * by arrival, so that every node picks the same winner and digest.
 */
static int same_id_cmp(const kheo_live *a, const kheo_live *b)
{
	if (a->kind != b->kind)
		return a->kind - b->kind;
	return value_cmp(&a->value, &b->value);
}

void kheo__live_free(kheo_live_set *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		kheo__free(s->v[i].bytes);
	kheo__free(s->v);
	memset(s, 0, sizeof(*s));
}

/*
 * The approval lock (DESIGN.md, Merge semantics): once a reviewer sets a
 * workflow field to a reviewer-only value (status `recognized`), a
 * collector's ops clocked after it and before the next reviewer's step
 * back (a send-back to `building`) are kept but never win.  The intervals
 * are a function of the record's workflow ops and their authors' roles
 * alone, so every order of arrival gives the same state.  They go to
 * temp.kheo_lock for the live-ops query; *any says whether there are any.
 */
static int lock_intervals(kheo_db *db, const uint8_t *rid, const char *tbl,
	int *any)
{
	const kheo_stable *t = kheo_schema_table(db->schema, tbl);
	const kheo_sfield *f = NULL;
	sqlite3_stmt *st;
	uint64_t lo = 0;
	size_t i;
	int rc, locked = 0, err;

	*any = 0;
	/* roles are known only to an enforcing node; in open mode no op is
	 * a collector's, so nothing can be locked */
	if (!db->enforcing)
		return KHEO_OK;
	for (i = 0; t && i < t->nfields && !f; i++)
		if (t->fields[i].workflow && t->fields[i].value_reviewer_only)
			f = &t->fields[i];
	if (!f)
		return KHEO_OK;
	if (db->lock_rows) {
		if ((err = kheo__exec(db, "DELETE FROM temp.kheo_lock")) < 0)
			return err;
		db->lock_rows = 0;
	}
	if (!(st = kheo__stmt(db, ST_WORKFLOW_OPS)))
		return KHEO_ERROR;
	sqlite3_bind_blob(st, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, f->name, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, db->cert_role);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t clock = (uint64_t)sqlite3_column_int64(st, 0);
		const char *v = (const char *)sqlite3_column_text(st, 2);
		int role = sqlite3_column_int(st, 3), locks = 0;

		if (locked && role == KHEO_ROLE_COLLECTOR)
			continue; /* itself locked */
		for (i = 0; v && i < f->nvalues; i++)
			if (f->value_reviewer_only[i] &&
			    strcmp(f->values[i], v) == 0)
				locks = 1;
		if (locks && !locked) {
			lo = clock;
			locked = 1;
		} else if (!locks && locked) {
			if ((err = add_lock(db, lo, clock)) < 0)
				break;
			locked = 0;
			*any = 1;
		}
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return kheo__sqlerr(db, rc, "workflow ops");
	if (locked) {
		if ((err = add_lock(db, lo, (uint64_t)INT64_MAX)) < 0)
			return err;
		*any = 1;
	}
	return KHEO_OK;
}

int kheo__live_ops(kheo_db *db, kheo_live_set *out, const uint8_t *rid,
	const char *field)
{
	sqlite3_stmt *st = kheo__stmt(db, ST_RECORD_GET);
	int rc, err, locks = 0;

	memset(out, 0, sizeof(*out));
	if (!st)
		return KHEO_ERROR;
	sqlite3_bind_blob(st, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		out->exists = 1;
		snprintf(out->tbl, sizeof(out->tbl), "%s",
			(const char *)sqlite3_column_text(st, 0));
		snprintf(out->unit, sizeof(out->unit), "%s",
			(const char *)sqlite3_column_text(st, 1));
	} else if (rc != SQLITE_DONE) {
		return kheo__sqlerr(db, rc, "record");
	}
	sqlite3_reset(st);

	if (out->exists && (err = lock_intervals(db, rid, out->tbl,
				    &locks)) < 0)
		return err;
	if (locks)
		st = kheo__stmt(db, field ? ST_LIVE_OPS_LOCKED_FIELD
					  : ST_LIVE_OPS_LOCKED);
	else
		st = kheo__stmt(db, field ? ST_LIVE_OPS_FIELD : ST_LIVE_OPS);
	if (!st)
		return KHEO_ERROR;
	sqlite3_bind_blob(st, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
	if (field)
		sqlite3_bind_text(st, 2, field, -1, SQLITE_STATIC);
	if (locks)
		sqlite3_bind_int(st, 3, db->cert_role);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		kheo_live *l;
		kheo_value v;

		if (out->n == out->cap) {
			size_t cap = out->cap ? 2 * out->cap : 16;
			kheo_live *nv = kheo__realloc(out->v, cap * sizeof(*nv));

			if (!nv)
				goto nomem;
			out->v = nv;
			out->cap = cap;
		}
		l = &out->v[out->n];
		memset(l, 0, sizeof(*l));
		snprintf(l->field, sizeof(l->field), "%s",
			(const char *)sqlite3_column_text(st, 0));
		l->kind = sqlite3_column_int(st, 1);
		kheo__column_value(st, 3, sqlite3_column_int(st, 2), &v);
		if (v.p) {
			if (!(l->bytes = kheo__malloc(v.len + 1)))
				goto nomem;
			memcpy(l->bytes, v.p, v.len);
			l->bytes[v.len] = '\0';
			v.p = l->bytes;
		}
		l->value = v;
		l->clock = (uint64_t)sqlite3_column_int64(st, 4);
		memcpy(l->author, sqlite3_column_blob(st, 5), KHEO_KEY_SIZE);
		l->foreign = strcmp((const char *)sqlite3_column_text(st, 6),
				     out->unit) != 0 ||
			     (locks && sqlite3_column_int(st, 7));
		out->n++;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		kheo__live_free(out);
		return kheo__sqlerr(db, rc, "live ops");
	}
	/* rows come in key order (no sort in SQLite; equal op ids in arrival
	 * order): settle ties by content, then give each field's values
	 * greatest op id first, the winner's place */
	{
		size_t i = 0, j, a, b;

		for (i = 1; i < out->n; i++) /* insertion sort: runs are tiny */
			for (j = i; j > 0; j--) {
				kheo_live *x = &out->v[j - 1], *y = &out->v[j];
				kheo_live t;

				if (strcmp(x->field, y->field) != 0 ||
				    x->clock != y->clock ||
				    memcmp(x->author, y->author, KHEO_KEY_SIZE) ||
				    same_id_cmp(x, y) <= 0)
					break;
				t = *x;
				*x = *y;
				*y = t;
			}
		i = 0;
		while (i < out->n) {
			for (j = i; j < out->n &&
			     strcmp(out->v[j].field, out->v[i].field) == 0;)
				j++;
			for (a = i, b = j - 1; a < b; a++, b--) {
				kheo_live t = out->v[a];

				out->v[a] = out->v[b];
				out->v[b] = t;
			}
			i = j;
		}
	}
	return KHEO_OK;
nomem:
	sqlite3_reset(st);
	kheo__live_free(out);
	return KHEO_ENOMEM;
}

static int opid_cmp(const void *a, const void *b)
{
	return kheo_opid_cmp(a, b);
}

/*
 * kheo__live_ids for a record under an approval lock: the live set is the
 * lock-aware one of kheo__live_ops (a locked op supersedes nothing), so a
 * new op's pred names every value shown, and resolves them.
 */
static int live_ids_locked(kheo_db *db, kheo_opid **out, size_t *n,
	uint8_t (**keys)[KHEO_KEY_SIZE], const uint8_t *rid, const char *field,
	const kheo_value *member)
{
	kheo_live_set live;
	size_t i, k = 0;
	int err;

	if ((err = kheo__live_ops(db, &live, rid, field)) < 0)
		return err;
	if (live.n && (!(*out = kheo__malloc(live.n * sizeof(**out))) ||
			      !(*keys = kheo__malloc(live.n * KHEO_KEY_SIZE)))) {
		kheo__free(*out);
		*out = NULL;
		kheo__live_free(&live);
		return KHEO_ENOMEM;
	}
	for (i = 0; i < live.n; i++) {
		const kheo_live *l = &live.v[i];

		if (member && (l->kind != KHEO_OP_ADD ||
				      value_cmp(&l->value, member) != 0))
			continue;
		memcpy((*keys)[k], l->author, KHEO_KEY_SIZE);
		(*out)[k].clock = l->clock;
		(*out)[k].key = (*keys)[k];
		k++;
	}
	kheo__live_free(&live);
	/* ascending op id, each once (a put's fields share one id); the
	 * keys do not move, so sorting the ids is enough */
	if (k > 1)
		qsort(*out, k, sizeof(**out), opid_cmp);
	for (i = 0, *n = 0; i < k; i++)
		if (*n == 0 || kheo_opid_cmp(&(*out)[*n - 1], &(*out)[i]) != 0)
			(*out)[(*n)++] = (*out)[i];
	return KHEO_OK;
}

int kheo__live_ids(kheo_db *db, kheo_opid **out, size_t *n,
	uint8_t (**keys)[KHEO_KEY_SIZE], const uint8_t *rid, const char *field,
	const kheo_value *member)
{
	sqlite3_stmt *st;
	size_t cap = 0;
	int rc, locks = 0;

	*out = NULL;
	*keys = NULL;
	*n = 0;
	if (db->enforcing) {
		char tbl[KHEO_NAME_MAX + 1] = "";

		if (!(st = kheo__stmt(db, ST_RECORD_GET)))
			return KHEO_ERROR;
		sqlite3_bind_blob(st, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			snprintf(tbl, sizeof(tbl), "%s",
				(const char *)sqlite3_column_text(st, 0));
		sqlite3_reset(st);
		if (tbl[0] && (rc = lock_intervals(db, rid, tbl, &locks)) < 0)
			return rc;
		if (locks)
			return live_ids_locked(db, out, n, keys, rid, field,
				member);
	}
	st = kheo__stmt(db, member ? ST_LIVE_IDS_MEMBER :
			    field ? ST_LIVE_IDS_FIELD : ST_LIVE_IDS_ALL);
	if (!st)
		return KHEO_ERROR;
	sqlite3_bind_blob(st, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
	if (field)
		sqlite3_bind_text(st, 2, field, -1, SQLITE_STATIC);
	if (member) {
		sqlite3_bind_int(st, 3, (int)member->type);
		kheo__bind_value(st, 4, member);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == cap) {
			size_t i, ncap = cap ? 2 * cap : 8;
			kheo_opid *o = kheo__realloc(*out, ncap * sizeof(*o));
			uint8_t(*k)[KHEO_KEY_SIZE];

			if (o)
				*out = o;
			k = o ? kheo__realloc(*keys, ncap * KHEO_KEY_SIZE)
			      : NULL;
			if (!k) {
				rc = SQLITE_NOMEM;
				break;
			}
			*keys = k;
			for (i = 0; i < *n; i++) /* keys moved */
				(*out)[i].key = k[i];
			cap = ncap;
		}
		(*out)[*n].clock = (uint64_t)sqlite3_column_int64(st, 0);
		memcpy((*keys)[*n], sqlite3_column_blob(st, 1), KHEO_KEY_SIZE);
		(*out)[*n].key = (*keys)[*n];
		(*n)++;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		kheo__free(*out);
		kheo__free(*keys);
		*out = NULL;
		*keys = NULL;
		*n = 0;
		return rc == SQLITE_NOMEM ? KHEO_ENOMEM
					  : kheo__sqlerr(db, rc, "live ids");
	}
	return KHEO_OK;
}

/* --------------------------------------------------------- materialising */

/* A value as JSON: what set columns hold and what reads print.  Hashes
 * and short bytes as hex; long bytes as a placeholder. */
json_t *kheo__value_json(const kheo_value *v)
{
	char hex[2 * 64 + 1];

	switch (v->type) {
	case KHEO_VAL_INT:
		return json_integer(v->i);
	case KHEO_VAL_REAL:
		return json_real(v->r);
	case KHEO_VAL_BOOL:
		return json_boolean(v->b);
	case KHEO_VAL_TEXT:
		return json_stringn((const char *)v->p, v->len);
	case KHEO_VAL_HASH:
	case KHEO_VAL_BYTES:
		if (v->len > 64)
			return json_string("(bytes)");
		kheo_hex(hex, v->p, v->len);
		return json_string(hex);
	default:
		return json_null();
	}
}

static int value_cmp(const kheo_value *a, const kheo_value *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	int c;

	if (a->type != b->type)
		return (int)a->type - (int)b->type;
	switch (a->type) {
	case KHEO_VAL_INT:
		return a->i < b->i ? -1 : a->i > b->i;
	case KHEO_VAL_REAL:
		return a->r < b->r ? -1 : a->r > b->r;
	case KHEO_VAL_BOOL:
		return a->b - b->b;
	case KHEO_VAL_NULL:
		return 0;
	default:
		c = memcmp(a->p, b->p, n);
		return c ? c : (a->len < b->len ? -1 : a->len > b->len);
	}
}

static int member_cmp(const void *a, const void *b)
{
	return value_cmp(*(const kheo_value *const *)a,
		*(const kheo_value *const *)b);
}

/* Bind a register winner to a materialised column. */
static void bind_column(sqlite3_stmt *st, int col, const kheo_value *v)
{
	char hex[2 * KHEO_ID_SIZE + 1];

	if (v->type == KHEO_VAL_HASH) {
		kheo_hex(hex, v->p, KHEO_ID_SIZE);
		sqlite3_bind_text(st, col, hex, -1, SQLITE_TRANSIENT);
	} else {
		kheo__bind_value(st, col, v);
	}
}

/* Edits the winning delete did not see: a conflict to show. */
static int unseen_edits(kheo_db *db, const uint8_t *rid, int *count)
{
	sqlite3_stmt *st = kheo__stmt(db, ST_UNSEEN);
	int rc;

	if (!st)
		return KHEO_ERROR;
	sqlite3_bind_blob(st, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
	rc = sqlite3_step(st);
	*count = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? KHEO_OK : kheo__sqlerr(db, rc, "unseen");
}

int kheo__register_conflict(const kheo_live_set *live, size_t from,
	size_t to)
{
	const kheo_live *first = NULL;
	size_t k;

	for (k = from; k < to; k++) {
		const kheo_live *l = &live->v[k];

		if (l->kind == KHEO_OP_ADD)
			continue;
		/* a put and a set of one value agree too */
		if (!first)
			first = l;
		else if (value_cmp(&first->value, &l->value) != 0)
			return 1;
	}
	return 0;
}

static int materialise(kheo_db *db, const uint8_t *rid)
{
	const kheo_value **members = NULL;
	kheo_live_set live;
	const kheo_stable *t = NULL;
	sqlite3_stmt *st;
	char idhex[2 * KHEO_RECORD_SIZE + 1];
	size_t ti, fi, i;
	int err, conflicts = 0, deleted = 0;

	if ((err = kheo__live_ops(db, &live, rid, NULL)) < 0)
		return err;
	if (!live.exists)
		goto done; /* no put yet: nothing to show */
	for (ti = 0; ti < db->schema->ntables; ti++)
		if (strcmp(db->schema->tables[ti].name, live.tbl) == 0) {
			t = &db->schema->tables[ti];
			break;
		}
	if (!t)
		goto done; /* a table of a newer schema: kept, not shown */
	if (live.n && !(members = kheo__malloc(live.n * sizeof(*members)))) {
		err = KHEO_ENOMEM;
		goto done;
	}

	st = db->upsert[ti];
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	kheo_hex(idhex, rid, KHEO_RECORD_SIZE);
	sqlite3_bind_text(st, 1, idhex, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, live.unit, -1, SQLITE_TRANSIENT);

	/* registers: count values per field, pick winners */
	for (i = 0; i < live.n;) {
		size_t j = i, nreg = 0;
		const kheo_live *win = NULL;

		while (j < live.n && strcmp(live.v[j].field, live.v[i].field) == 0) {
			if (live.v[j].kind != KHEO_OP_ADD) {
				nreg++;
				if (!win && !live.v[j].foreign)
					win = &live.v[j];
			}
			j++;
		}
		if (nreg > 1 && kheo__register_conflict(&live, i, j))
			conflicts++;
		if (strcmp(live.v[i].field, "_deleted") == 0) {
			deleted = win && win->value.type == KHEO_VAL_BOOL &&
				  win->value.b;
		} else if (win) {
			for (fi = 0; fi < t->nfields; fi++)
				if (!t->fields[fi].is_set &&
				    strcmp(t->fields[fi].name, win->field) == 0)
					bind_column(st, 5 + (int)fi,
						&win->value);
		}
		i = j;
	}
	/* sets: the distinct members of live adds, sorted */
	for (fi = 0; fi < t->nfields; fi++) {
		size_t nm = 0;
		json_t *arr;
		char *text;

		if (!t->fields[fi].is_set)
			continue;
		for (i = 0; i < live.n; i++)
			if (live.v[i].kind == KHEO_OP_ADD && !live.v[i].foreign &&
			    strcmp(live.v[i].field, t->fields[fi].name) == 0)
				members[nm++] = &live.v[i].value;
		if (nm == 0) {
			sqlite3_bind_text(st, 5 + (int)fi, "[]", 2,
				SQLITE_STATIC);
			continue;
		}
		if (nm > 1)
			qsort(members, nm, sizeof(*members), member_cmp);
		arr = json_array();
		for (i = 0; i < nm; i++)
			if (i == 0 || value_cmp(members[i - 1], members[i]))
				json_array_append_new(arr,
					kheo__value_json(members[i]));
		text = json_dumps(arr, JSON_COMPACT);
		json_decref(arr);
		if (!text) {
			err = KHEO_ENOMEM;
			goto done;
		}
		sqlite3_bind_text(st, 5 + (int)fi, text, -1, SQLITE_TRANSIENT);
		free(text);
	}
	if (deleted) {
		int unseen;

		if ((err = unseen_edits(db, rid, &unseen)) < 0)
			goto done;
		if (unseen)
			conflicts++;
	}
	sqlite3_bind_int(st, 3, deleted);
	sqlite3_bind_int(st, 4, conflicts);
	err = kheo__step_done(db, st, "materialise");
done:
	kheo__free(members);
	kheo__live_free(&live);
	return err;
}

int kheo__flush_dirty(kheo_db *db)
{
	sqlite3_stmt *st = kheo__stmt(db, ST_DIRTY_LIST);
	int rc, err = KHEO_OK;

	if (!st)
		return KHEO_ERROR;
	while (err == KHEO_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint8_t rid[KHEO_RECORD_SIZE];

		memcpy(rid, sqlite3_column_blob(st, 0), KHEO_RECORD_SIZE);
		err = materialise(db, rid);
	}
	sqlite3_reset(st);
	if (err < 0)
		return err;
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return kheo__sqlerr(db, rc, "dirty");
	/* the audit mirror's rebuild writes a file for every record that
	 * changed, whichever path (merge, release, roles) changed it */
	if (db->track_touched) {
		/* prepared once: the rebuild runs this for every changeset */
		if (!(st = kheo__stmt(db, ST_TOUCHED_ADD)))
			return KHEO_ERROR;
		if ((err = kheo__step_done(db, st, "dirty")) < 0)
			return err;
	}
	if (!(st = kheo__stmt(db, ST_DIRTY_CLEAR)))
		return KHEO_ERROR;
	return kheo__step_done(db, st, "dirty");
}

/* ---------------------------------------------------------------- digest */

static void hash_str(crypto_generichash_state *h, const char *s)
{
	kheo_buf b = { 0 };

	kheo_buf_put_str(&b, s, strlen(s));
	crypto_generichash_update(h, b.p, b.len);
	kheo_buf_free(&b);
}

static void hash_varint(crypto_generichash_state *h, uint64_t v)
{
	uint8_t tmp[10];

	crypto_generichash_update(h, tmp, kheo_varint_encode(tmp, v));
}

static void hash_value(crypto_generichash_state *h, const kheo_value *v)
{
	kheo_buf b = { 0 };

	kheo_value_encode(&b, v);
	crypto_generichash_update(h, b.p, b.len);
	kheo_buf_free(&b);
}

/*
 * One record into the digest: its table and id, then per field (sorted by
 * name) its surviving register values in op id order (clock, author,
 * value) and its set members in value order.  Ops from other units'
 * changesets are left out: they never win, and a node whose scope does not
 * include their unit never receives them, yet must print the same digest.
 */
static int digest_record(kheo_db *db, crypto_generichash_state *h,
	const uint8_t *rid)
{
	kheo_live_set live;
	const kheo_value **members = NULL;
	size_t i;
	int err;

	if ((err = kheo__live_ops(db, &live, rid, NULL)) < 0)
		return err;
	if (live.n && !(members = kheo__malloc(live.n * sizeof(*members)))) {
		kheo__live_free(&live);
		return KHEO_ENOMEM;
	}
	hash_str(h, live.tbl);
	crypto_generichash_update(h, rid, KHEO_RECORD_SIZE);
	for (i = 0; i < live.n;) {
		size_t j = i, k, nreg = 0, nm = 0, distinct = 0;

		while (j < live.n && strcmp(live.v[j].field, live.v[i].field) == 0)
			j++;
		for (k = i; k < j; k++)
			if (!live.v[k].foreign) {
				if (live.v[k].kind == KHEO_OP_ADD)
					members[nm++] = &live.v[k].value;
				else
					nreg++;
			}
		if (nreg) {
			hash_str(h, live.v[i].field);
			crypto_generichash_update(h, (const uint8_t *)"r", 1);
			hash_varint(h, nreg);
			for (k = j; k-- > i;) /* ascending op id */
				if (!live.v[k].foreign &&
				    live.v[k].kind != KHEO_OP_ADD) {
					hash_varint(h, live.v[k].clock);
					crypto_generichash_update(h,
						live.v[k].author, KHEO_KEY_SIZE);
					hash_value(h, &live.v[k].value);
				}
		}
		if (nm) {
			qsort(members, nm, sizeof(*members), member_cmp);
			for (k = 0; k < nm; k++)
				if (k == 0 || value_cmp(members[k - 1], members[k]))
					distinct++;
			hash_str(h, live.v[i].field);
			crypto_generichash_update(h, (const uint8_t *)"s", 1);
			hash_varint(h, distinct);
			for (k = 0; k < nm; k++)
				if (k == 0 || value_cmp(members[k - 1], members[k]))
					hash_value(h, members[k]);
		}
		i = j;
	}
	kheo__free(members);
	kheo__live_free(&live);
	return KHEO_OK;
}

KHEO_EXTERN int kheo_digest(kheo_db *db, uint8_t out[32], const char *prefix)
{
	crypto_generichash_state h;
	sqlite3_stmt *st;
	int rc, err = KHEO_OK;

	kheo__clear(db);
	if (!prefix)
		prefix = db->unit;
	if (*prefix && !kheo_unit_valid(prefix, strlen(prefix)))
		return kheo__error(db, KHEO_EINVAL,
			"unit prefix \"%s\" is not a unit path", prefix);
	rc = sqlite3_prepare_v2(db->sql,
		"SELECT rid FROM kheo_record WHERE ?1 = '' OR unit = ?1 OR"
		" substr(unit, 1, length(?1) + 1) = ?1 || '/'"
		" ORDER BY tbl, rid", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "digest");
	sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
	crypto_generichash_init(&h, NULL, 0, 32);
	hash_str(&h, "kheo/digest/v1");
	while (err == KHEO_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint8_t rid[KHEO_RECORD_SIZE];

		memcpy(rid, sqlite3_column_blob(st, 0), KHEO_RECORD_SIZE);
		err = digest_record(db, &h, rid);
	}
	sqlite3_finalize(st);
	if (err < 0)
		return err;
	if (rc != SQLITE_DONE)
		return kheo__sqlerr(db, rc, "digest");
	crypto_generichash_final(&h, out, 32);
	return KHEO_OK;
}

/* ------------------------------------------------------------ unmerging */

/* Run one statement with (rid, cs) bound. */
static int rid_cs_exec(kheo_db *db, const char *sql, const uint8_t *rid,
	int64_t cs_n)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL);

	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "unmerge");
	sqlite3_bind_blob(st, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, cs_n);
	rc = kheo__step_done(db, st, "unmerge");
	sqlite3_finalize(st);
	return rc;
}

/*
 * A record's put after some of its ops went away: the smallest put op id
 * left decides its table and unit (as record_put does); with none left the
 * record is gone, from kheo_record and from its materialised table.
 */
static int record_recompute(kheo_db *db, const uint8_t *rid)
{
	sqlite3_stmt *st;
	char tbl[KHEO_NAME_MAX + 1] = "", sql[160];
	int rc, err;

	rc = sqlite3_prepare_v2(db->sql,
		"SELECT tbl, unit, clock, author, cs FROM kheo_op WHERE"
		" rid = ?1 AND kind = 1 ORDER BY clock, author LIMIT 1", -1,
		&st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "unmerge");
	sqlite3_bind_blob(st, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		sqlite3_stmt *put = kheo__stmt(db, ST_RECORD_PUT);

		if (!put) {
			sqlite3_finalize(st);
			return KHEO_ERROR;
		}
		sqlite3_bind_blob(put, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
		sqlite3_bind_text(put, 2, (const char *)sqlite3_column_text(st,
			0), -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(put, 3, (const char *)sqlite3_column_text(st,
			1), -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(put, 4, sqlite3_column_int64(st, 2));
		sqlite3_bind_blob(put, 5, sqlite3_column_blob(st, 3),
			KHEO_KEY_SIZE, SQLITE_TRANSIENT);
		sqlite3_bind_int(put, 6, sqlite3_column_int64(st, 4) == 0);
		sqlite3_finalize(st);
		return kheo__step_done(db, put, "unmerge");
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return kheo__sqlerr(db, rc, "unmerge");
	/* no put left: forget the record and its row */
	if (!(st = kheo__stmt(db, ST_RECORD_GET)))
		return KHEO_ERROR;
	sqlite3_bind_blob(st, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(tbl, sizeof(tbl), "%s",
			(const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	if ((err = rid_cs_exec(db, "DELETE FROM kheo_record WHERE rid = ?1"
				   " AND ?2 = ?2", rid, 0)) < 0 || !tbl[0] ||
	    !kheo_schema_table(db->schema, tbl))
		return err;
	{
		char hex[2 * KHEO_RECORD_SIZE + 1];

		kheo_hex(hex, rid, KHEO_RECORD_SIZE);
		snprintf(sql, sizeof(sql), "DELETE FROM \"%s\" WHERE id = '%s'",
			tbl, hex);
	}
	return kheo__exec(db, sql);
}

int kheo__unmerge_changeset(kheo_db *db, const kheo_changeset *cs,
	int64_t cs_n)
{
	size_t i;
	int err = KHEO_OK;

	for (i = 0; i < cs->nops && err == KHEO_OK; i++) {
		const uint8_t *rid = cs->ops[i].record;

		if ((err = rid_cs_exec(db, "DELETE FROM kheo_op WHERE rid = ?1"
					   " AND cs = ?2", rid, cs_n)) < 0 ||
		    (err = rid_cs_exec(db, "DELETE FROM kheo_pred WHERE"
					   " rid = ?1 AND cs = ?2", rid,
			     cs_n)) < 0 ||
		    (err = rid_cs_exec(db, "DELETE FROM kheo_seen WHERE"
					   " rid = ?1 AND cs = ?2", rid,
			     cs_n)) < 0)
			break;
		if (cs->ops[i].kind == KHEO_OP_PUT &&
		    (err = record_recompute(db, rid)) < 0)
			break;
		err = mark_dirty(db, rid);
	}
	return err;
}
