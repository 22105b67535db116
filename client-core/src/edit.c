/*
 * edit.c - local edits and sealing.
 *
 * An edit (put, set, add, remove, delete) is checked against the schema,
 * given a clock, written to kheo_pending and merged into the state as a
 * pending op, all in one SQLite transaction: durable and visible when the
 * call returns.  Each pending op is stored as a one-op changeset encoding,
 * so nothing here invents a format.
 *
 * Sealing (kheo_commit, bundles, sync) turns the pending batch into one
 * signed changeset per unit, collapsing superseded edits as DESIGN.md's
 * Sealing says: a later set of a field replaces an earlier pending one
 * (its pred becomes the union of both, less the replaced op's id), and a
 * pending put drops a field a later pending set replaced.  Workflow fields
 * (status) keep every transition.  The pending ops' rows are then removed
 * and the sealed changesets applied through the same receipt path as any
 * other, so the state after sealing is rebuilt from exactly what was
 * signed.
 */
#include "internal.h"
#include "blob.h"
#include "alloc.h"

#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Bounds on one sealed changeset.  The op count keeps it under the
 * format's caps.  The byte bound keeps it small beside a sync chunk
 * (128 KiB): a changeset travels whole in one chunk and is acknowledged
 * whole, so a week of offline edits sealed as one changeset would be
 * resent from its start after every cut, and beyond the channel's 1 MiB
 * record it could not travel over the network at all.  Splitting costs a
 * signature and a header (about 200 bytes) per 64 KiB.
 */
#define SEAL_MAX_OPS 50000
#define SEAL_MAX_BYTES (64u << 10)

/* About what an op adds to a changeset's canonical bytes (never less). */
static size_t op_size(const kheo_op *op)
{
	size_t n = 2 + 10 + strlen(op->table) + KHEO_RECORD_SIZE, i;

	for (i = 0; i < op->nfields; i++)
		n += 2 + strlen(op->fields[i].name) + 10 +
		     op->fields[i].value.len;
	return n + op->npred * (10 + KHEO_KEY_SIZE);
}

static int need_signer(kheo_db *db)
{
	if (!db->sk)
		return kheo__error(db, KHEO_EAUTH, "%s", db->sign_refusal);
	return KHEO_OK;
}

static int parse_rid(kheo_db *db, uint8_t rid[KHEO_RECORD_SIZE],
	const char *hex)
{
	if (!hex || kheo_unhex(rid, KHEO_RECORD_SIZE, hex, strlen(hex)) < 0)
		return kheo__error(db, KHEO_EINVAL,
			"record id \"%s\" is not 32 hex digits",
			hex ? hex : "");
	return KHEO_OK;
}

static const kheo_stable *find_table(kheo_db *db, const char *table)
{
	const kheo_stable *t = kheo_schema_table(db->schema, table);
	char names[256] = "";
	size_t i, n = 0;

	if (t)
		return t;
	for (i = 0; i < db->schema->ntables && n < sizeof(names) - 1; i++)
		n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s",
			i ? ", " : "", db->schema->tables[i].name);
	kheo__error(db, KHEO_EINVAL, "no table \"%s\" in schema %s v%u "
		"(tables: %s)", table, db->schema->name,
		db->schema->version, names);
	return NULL;
}

/* A workflow field (the schema says which) keeps every transition with
 * its own clock: auditors ask when each step happened. */
static int is_workflow(const kheo_db *db, const kheo_op *op)
{
	const kheo_stable *t = kheo_schema_table(db->schema, op->table);
	const kheo_sfield *f = t ? kheo_schema_field(t, op->fields[0].name)
				 : NULL;

	return f && f->workflow;
}

/*
 * Record one local op: as a pending one-op changeset, and into the state.
 * Runs inside the caller's transaction.
 */
static int add_pending(kheo_db *db, const kheo_op *op, const char *unit)
{
	kheo_changeset cs = { .version = KHEO_CS_VERSION, .unit = unit,
		.schema_version = db->schema->version, .useq = 1, .ops = op,
		.nops = 1 };
	kheo_refusal why = { 0 };
	sqlite3_stmt *st;
	int err;

	memcpy(cs.author, db->pk, KHEO_KEY_SIZE);
	if (db->enforcing) {
		/* refuse now what every other node would refuse: the officer
		 * sees why at once, not a quarantine upstream days later */
		kheo_refusal ref = { 0 };
		char hold[160];
		int role;

		cs.clock_min = cs.clock_max = op->clock;
		err = kheo__authorize(db, &cs, &role, hold, sizeof(hold), &ref);
		if (err < 0)
			return err;
		if (err == 2)
			return kheo__error(db, KHEO_EAUTH, "refused: %s",
				ref.msg);
	}
	kheo_buf_reset(&db->raw);
	if ((err = kheo_changeset_encode(&db->raw, &cs, &why)) < 0)
		return kheo__error(db, err, "%s", why.msg);
	if (!(st = kheo__stmt(db, ST_PENDING_INSERT)))
		return KHEO_ERROR;
	sqlite3_bind_text(st, 1, unit, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, db->raw.p, (int)db->raw.len, SQLITE_STATIC);
	if ((err = kheo__step_done(db, st, "pending")) < 0)
		return err;
	return kheo__merge_changeset(db, &cs, 0);
}

/* The record's table, unit and deletion state; KHEO_ENOTFOUND if absent. */
static int record_info(kheo_db *db, const uint8_t *rid, const char *table,
	char unit[KHEO_UNIT_MAX + 1], int *deleted)
{
	kheo_live_set live;
	size_t i;
	int err;

	/* the record's facts and its _deleted register only: cheaper than
	 * every field, and the same winner rule */
	if ((err = kheo__live_ops(db, &live, rid, "_deleted")) < 0)
		return err;
	if (!live.exists || strcmp(live.tbl, table) != 0) {
		char hex[2 * KHEO_RECORD_SIZE + 1];

		kheo__live_free(&live);
		kheo_hex(hex, rid, KHEO_RECORD_SIZE);
		return kheo__error(db, KHEO_ENOTFOUND, "no %s with id %s",
			table, hex);
	}
	snprintf(unit, KHEO_UNIT_MAX + 1, "%s", live.unit);
	*deleted = 0;
	for (i = 0; i < live.n; i++)
		if (strcmp(live.v[i].field, "_deleted") == 0 &&
		    !live.v[i].foreign) {
			/* the first is the winner: greatest op id */
			*deleted = live.v[i].value.type == KHEO_VAL_BOOL &&
				   live.v[i].value.b;
			break;
		}
	kheo__live_free(&live);
	return KHEO_OK;
}

/* Parsed assignments, each with its own text storage. */
typedef struct parsed {
	const kheo_sfield *f;
	const char *name;
	kheo_assign_op op;
	kheo_value v;
	kheo_buf text;
} parsed;

static void parsed_free(parsed *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		kheo_buf_free(&p[i].text);
	kheo__free(p);
}

static int parse_assigns(kheo_db *db, parsed **out, const kheo_stable *t,
	const kheo_assign *a, size_t n)
{
	parsed *p;
	char err[320];
	size_t i;
	int rc;

	*out = NULL;
	if (!(p = kheo__calloc(n ? n : 1, sizeof(*p))))
		return KHEO_ENOMEM;
	*out = p;
	for (i = 0; i < n; i++) {
		p[i].name = a[i].field;
		p[i].op = a[i].op;
		if (a[i].op != KHEO_ASSIGN_SET && a[i].op != KHEO_ASSIGN_ADD &&
		    a[i].op != KHEO_ASSIGN_REMOVE)
			return kheo__error(db, KHEO_EINVAL,
				"%s.%s: assignment must be =, += or -=",
				t->name, a[i].field);
		if (strcmp(a[i].field, "_deleted") == 0 &&
		    a[i].op == KHEO_ASSIGN_SET) {
			if (strcmp(a[i].value, "false") == 0 ||
			    strcmp(a[i].value, "true") == 0) {
				p[i].v.type = KHEO_VAL_BOOL;
				p[i].v.b = a[i].value[0] == 't';
				continue;
			}
			return kheo__error(db, KHEO_EINVAL,
				"%s._deleted: \"%s\" is not true or false",
				t->name, a[i].value);
		}
		if (!(p[i].f = kheo_schema_field(t, a[i].field)))
			return kheo__error(db, KHEO_EINVAL,
				"%s.%s: no such field", t->name, a[i].field);
		if (p[i].f->is_set && a[i].op == KHEO_ASSIGN_SET)
			return kheo__error(db, KHEO_EINVAL,
				"%s.%s is a set: use %s+=MEMBER or %s-=MEMBER",
				t->name, a[i].field, a[i].field, a[i].field);
		if (!p[i].f->is_set && a[i].op != KHEO_ASSIGN_SET)
			return kheo__error(db, KHEO_EINVAL,
				"%s.%s is not a set: use %s=VALUE", t->name,
				a[i].field, a[i].field);
		rc = kheo_schema_value_from_text(&p[i].v, &p[i].text, t,
			p[i].f, a[i].value ? a[i].value : "", err,
			sizeof(err));
		if (rc < 0)
			return kheo__error(db, rc, "%s", err);
	}
	return KHEO_OK;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const kheo_field *)a)->name,
		((const kheo_field *)b)->name);
}

KHEO_EXTERN int kheo_put(kheo_db *db, char id_out[KHEO_RECORD_HEX + 1],
	const char *table, const char *id, const kheo_assign *a, size_t n)
{
	uint8_t rid[KHEO_RECORD_SIZE];
	const kheo_stable *t;
	kheo_field *fields = NULL;
	parsed *p = NULL;
	const char *unit = db->unit;
	kheo_op op = { .kind = KHEO_OP_PUT };
	size_t i, j, nf = 0;
	char unitbuf[KHEO_UNIT_MAX + 1], had_unit[KHEO_UNIT_MAX + 1];
	int err, deleted;

	kheo__clear(db);
	if ((err = need_signer(db)) < 0)
		return err;
	if (!(t = find_table(db, table)))
		return KHEO_EINVAL;
	if (id) {
		if ((err = parse_rid(db, rid, id)) < 0)
			return err;
	} else {
		randombytes_buf(rid, sizeof(rid));
	}
	if ((err = parse_assigns(db, &p, t, a, n)) < 0)
		goto done;
	if (!(fields = kheo__calloc(n ? n : 1, sizeof(*fields)))) {
		err = KHEO_ENOMEM;
		goto done;
	}
	for (i = 0; i < n; i++) {
		if (p[i].op == KHEO_ASSIGN_REMOVE) {
			err = kheo__error(db, KHEO_EINVAL,
				"%s.%s: a new record has no members to remove",
				t->name, p[i].name);
			goto done;
		}
		if (p[i].op != KHEO_ASSIGN_SET || !p[i].f)
			continue;
		for (j = 0; j < nf; j++)
			if (strcmp(fields[j].name, p[i].name) == 0) {
				err = kheo__error(db, KHEO_EINVAL,
					"%s.%s given twice", t->name,
					p[i].name);
				goto done;
			}
		fields[nf].name = p[i].f->name;
		fields[nf++].value = p[i].v;
		if (p[i].f->type == KHEO_F_UNIT &&
		    strcmp(p[i].f->name, "unit") == 0) {
			snprintf(unitbuf, sizeof(unitbuf), "%.*s",
				(int)p[i].v.len, (const char *)p[i].v.p);
			unit = unitbuf;
		}
	}
	/* every node receives the system tables; but a blob's
	 * acknowledgement goes in the unit of the records naming the blob,
	 * to the nodes that hold them and no others (blob_ack.c) */
	if (t->system && strcmp(t->name, "sys_blob_ack") != 0)
		unit = "_sys";
	for (i = 0; i < t->nfields; i++) {
		if (!t->fields[i].required)
			continue;
		for (j = 0; j < nf; j++)
			if (strcmp(fields[j].name, t->fields[i].name) == 0)
				break;
		if (j == nf) {
			err = kheo__error(db, KHEO_EINVAL, "%s.%s: required",
				t->name, t->fields[i].name);
			goto done;
		}
	}
	qsort(fields, nf, sizeof(*fields), by_name);

	if ((err = kheo__begin(db)) < 0)
		goto done;
	err = record_info(db, rid, table, had_unit, &deleted);
	if (err == KHEO_OK) {
		char hex[2 * KHEO_RECORD_SIZE + 1];

		kheo_hex(hex, rid, KHEO_RECORD_SIZE);
		err = kheo__error(db, KHEO_EEXISTS, "%s %s exists already",
			table, hex);
		goto fail;
	}
	if (err != KHEO_ENOTFOUND)
		goto fail;
	kheo__clear(db);
	op.clock = kheo__clock_tick(db);
	op.table = t->name;
	memcpy(op.record, rid, sizeof(rid));
	op.fields = fields;
	op.nfields = nf;
	if ((err = add_pending(db, &op, unit)) < 0)
		goto fail;
	for (i = 0; i < n; i++) {
		kheo_field member;
		kheo_op add = { .kind = KHEO_OP_ADD, .table = t->name };

		if (p[i].op != KHEO_ASSIGN_ADD)
			continue;
		member.name = p[i].f->name;
		member.value = p[i].v;
		add.clock = kheo__clock_tick(db);
		memcpy(add.record, rid, sizeof(rid));
		add.fields = &member;
		add.nfields = 1;
		if ((err = add_pending(db, &add, unit)) < 0)
			goto fail;
	}
	if ((err = kheo__commit_tx(db)) < 0)
		goto fail;
	if (id_out)
		kheo_hex(id_out, rid, KHEO_RECORD_SIZE);
	goto done;
fail:
	kheo__rollback(db);
done:
	kheo__free(fields);
	parsed_free(p, n);
	return err;
}

/* An op superseding everything live in `field` (NULL: the whole record). */
static int op_with_pred(kheo_db *db, kheo_op *op, kheo_opid **pred,
	uint8_t (**keys)[KHEO_KEY_SIZE], const uint8_t *rid, const char *field,
	const kheo_value *member)
{
	size_t n;
	int err;

	if ((err = kheo__live_ids(db, pred, &n, keys, rid, field, member)) < 0)
		return err;
	if (n > KHEO_OP_PRED_MAX)
		return kheo__error(db, KHEO_ELIMIT,
			"%zu values to supersede, above the %u limit", n,
			KHEO_OP_PRED_MAX);
	op->pred = *pred;
	op->npred = n;
	op->clock = kheo__clock_tick(db);
	return KHEO_OK;
}

KHEO_EXTERN int kheo_set(kheo_db *db, const char *table, const char *id,
	const kheo_assign *a, size_t n)
{
	uint8_t rid[KHEO_RECORD_SIZE];
	char unit[KHEO_UNIT_MAX + 1];
	const kheo_stable *t;
	parsed *p = NULL;
	size_t i;
	int err, deleted, undelete = 0;

	kheo__clear(db);
	if ((err = need_signer(db)) < 0)
		return err;
	if (!(t = find_table(db, table)))
		return KHEO_EINVAL;
	if ((err = parse_rid(db, rid, id)) < 0)
		return err;
	if (n == 0)
		return kheo__error(db, KHEO_EINVAL, "nothing to set");
	if ((err = parse_assigns(db, &p, t, a, n)) < 0)
		goto done;
	for (i = 0; i < n; i++) {
		if (p[i].f && p[i].f->fixed) {
			err = kheo__error(db, KHEO_EINVAL,
				"%s.%s is fixed when the record is made",
				t->name, p[i].name);
			goto done;
		}
		if (!p[i].f && p[i].v.b == 0)
			undelete = 1;
	}
	if ((err = kheo__begin(db)) < 0)
		goto done;
	if ((err = record_info(db, rid, table, unit, &deleted)) < 0)
		goto fail;
	if (deleted && !undelete) {
		err = kheo__error(db, KHEO_EINVAL,
			"%s %s is deleted: undelete it first (_deleted=false)",
			table, id);
		goto fail;
	}
	for (i = 0; i < n; i++) {
		kheo_opid *pred = NULL;
		uint8_t(*keys)[KHEO_KEY_SIZE] = NULL;
		kheo_field f = { .name = p[i].f ? p[i].f->name : "_deleted",
			.value = p[i].v };
		kheo_op op = { .table = t->name, .fields = &f, .nfields = 1 };

		memcpy(op.record, rid, sizeof(rid));
		switch (p[i].op) {
		case KHEO_ASSIGN_SET:
			op.kind = KHEO_OP_SET;
			err = op_with_pred(db, &op, &pred, &keys, rid, f.name,
				NULL);
			break;
		case KHEO_ASSIGN_ADD:
			op.kind = KHEO_OP_ADD;
			op.clock = kheo__clock_tick(db);
			break;
		case KHEO_ASSIGN_REMOVE:
			op.kind = KHEO_OP_REMOVE;
			err = op_with_pred(db, &op, &pred, &keys, rid, f.name,
				&f.value);
			if (err == KHEO_OK && op.npred == 0)
				err = kheo__error(db, KHEO_ENOTFOUND,
					"%s.%s: \"%s\" is not a member",
					t->name, f.name, a[i].value);
			break;
		}
		if (err == KHEO_OK)
			err = add_pending(db, &op, unit);
		kheo__free(pred);
		kheo__free(keys);
		if (err < 0)
			goto fail;
	}
	if ((err = kheo__commit_tx(db)) < 0)
		goto fail;
	goto done;
fail:
	kheo__rollback(db);
done:
	parsed_free(p, n);
	return err;
}

KHEO_EXTERN int kheo_delete(kheo_db *db, const char *table, const char *id)
{
	uint8_t rid[KHEO_RECORD_SIZE];
	uint8_t(*keys)[KHEO_KEY_SIZE] = NULL;
	char unit[KHEO_UNIT_MAX + 1];
	kheo_opid *pred = NULL;
	kheo_op op = { .kind = KHEO_OP_DELETE };
	int err, deleted;

	kheo__clear(db);
	if ((err = need_signer(db)) < 0)
		return err;
	if (!find_table(db, table))
		return KHEO_EINVAL;
	if ((err = parse_rid(db, rid, id)) < 0)
		return err;
	if ((err = kheo__begin(db)) < 0)
		return err;
	if ((err = record_info(db, rid, table, unit, &deleted)) < 0)
		goto fail;
	if (deleted) {
		err = kheo__error(db, KHEO_EINVAL, "%s %s is already deleted",
			table, id);
		goto fail;
	}
	op.table = kheo_schema_table(db->schema, table)->name;
	memcpy(op.record, rid, sizeof(rid));
	/* pred: every live op of the record, so that edits this delete did
	 * not see can be told apart (and shown) later */
	if ((err = op_with_pred(db, &op, &pred, &keys, rid, NULL, NULL)) < 0 ||
	    (err = add_pending(db, &op, unit)) < 0 ||
	    (err = kheo__commit_tx(db)) < 0)
		goto fail;
	goto done;
fail:
	kheo__rollback(db);
done:
	kheo__free(pred);
	kheo__free(keys);
	return err;
}

/* ---------------------------------------------------------------- sealing */

/* A map (record, field) -> index of the last surviving op writing it. */
typedef struct slot {
	uint8_t rid[KHEO_RECORD_SIZE];
	const char *field;
	size_t op;
	int used;
} slot;

typedef struct reg_map {
	slot *s;
	size_t cap;
} reg_map;

static size_t slot_hash(const uint8_t *rid, const char *field, size_t cap)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < KHEO_RECORD_SIZE; i++)
		h = (h ^ rid[i]) * 1099511628211ull;
	for (; *field; field++)
		h = (h ^ (uint8_t)*field) * 1099511628211ull;
	return (size_t)(h & (cap - 1));
}

static slot *map_find(reg_map *m, const uint8_t *rid, const char *field)
{
	size_t i = slot_hash(rid, field, m->cap);

	while (m->s[i].used && (memcmp(m->s[i].rid, rid, KHEO_RECORD_SIZE) ||
				       strcmp(m->s[i].field, field)))
		i = (i + 1) & (m->cap - 1);
	return &m->s[i];
}

static void map_set(reg_map *m, const uint8_t *rid, const char *field,
	size_t op)
{
	slot *s = map_find(m, rid, field);

	memcpy(s->rid, rid, KHEO_RECORD_SIZE);
	s->field = field;
	s->op = op;
	s->used = 1;
}

static int has_pred(const kheo_op *op, uint64_t clock, const uint8_t *key)
{
	size_t i;

	for (i = 0; i < op->npred; i++)
		if (op->pred[i].clock == clock &&
		    memcmp(op->pred[i].key, key, KHEO_KEY_SIZE) == 0)
			return 1;
	return 0;
}

/* (a ∪ b) \ {drop}, sorted, into a new array owned by the caller. */
static kheo_opid *pred_union(const kheo_op *a, const kheo_op *b,
	const kheo_opid *drop, size_t *n)
{
	kheo_opid *out = kheo__malloc((a->npred + b->npred + 1) *
		sizeof(*out));
	size_t i = 0, j = 0;

	*n = 0;
	if (!out)
		return NULL;
	while (i < a->npred || j < b->npred) {
		const kheo_opid *next;
		int c = i == a->npred ? 1 : j == b->npred ? -1 :
			kheo_opid_cmp(&a->pred[i], &b->pred[j]);

		next = c <= 0 ? &a->pred[i] : &b->pred[j];
		if (c <= 0)
			i++;
		if (c >= 0)
			j++;
		if (kheo_opid_cmp(next, drop) != 0)
			out[(*n)++] = *next;
	}
	return out;
}

typedef struct seal_state {
	kheo_changeset **pending; /* decoded one-op changesets */
	char **units;
	size_t n;
	kheo_op *ops;             /* working copies */
	int *alive;
	void **owned;             /* arrays made while collapsing */
	size_t nowned;
} seal_state;

static void seal_free(seal_state *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		kheo_changeset_free(s->pending[i]);
		kheo__free(s->units[i]);
	}
	for (i = 0; i < s->nowned; i++)
		kheo__free(s->owned[i]);
	kheo__free(s->pending);
	kheo__free(s->units);
	kheo__free(s->ops);
	kheo__free(s->alive);
	kheo__free(s->owned);
}

static int load_pending(kheo_db *db, seal_state *s)
{
	sqlite3_stmt *st;
	size_t cap = 0;
	int rc, err = KHEO_OK;

	rc = sqlite3_prepare_v2(db->sql,
		"SELECT unit, op FROM kheo_pending ORDER BY n", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "pending");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		kheo_refusal why;
		const char *unit = (const char *)sqlite3_column_text(st, 0);

		if (s->n == cap) {
			size_t ncap = cap ? 2 * cap : 64;
			void *a = kheo__realloc(s->pending,
				ncap * sizeof(*s->pending));

			if (a)
				s->pending = a;
			a = a ? kheo__realloc(s->units, ncap * sizeof(*s->units))
			      : NULL;
			if (!a) {
				err = KHEO_ENOMEM;
				break;
			}
			s->units = a;
			cap = ncap;
		}
		s->units[s->n] = kheo__malloc(strlen(unit) + 1);
		if (!s->units[s->n]) {
			err = KHEO_ENOMEM;
			break;
		}
		strcpy(s->units[s->n], unit);
		err = kheo_changeset_decode(&s->pending[s->n],
			sqlite3_column_blob(st, 1),
			(size_t)sqlite3_column_bytes(st, 1), &why);
		if (err < 0) {
			kheo__free(s->units[s->n]);
			kheo__error(db, KHEO_ECORRUPT,
				"pending edit damaged: %s", why.msg);
			break;
		}
		s->n++;
	}
	sqlite3_finalize(st);
	if (err == KHEO_OK && rc != SQLITE_DONE)
		err = kheo__sqlerr(db, rc, "pending");
	return err;
}

/* Keep p (made while collapsing) to free with the seal state. */
static int own(seal_state *s, void *p)
{
	void **o;

	if (!p)
		return KHEO_ENOMEM;
	if (!(o = kheo__realloc(s->owned, (s->nowned + 1) * sizeof(*o)))) {
		kheo__free(p);
		return KHEO_ENOMEM;
	}
	s->owned = o;
	s->owned[s->nowned++] = p;
	return KHEO_OK;
}

static int collapse(const kheo_db *db, seal_state *s)
{
	reg_map m = { NULL, 1 };
	size_t i, j, entries = 16;
	int err = KHEO_OK;

	/* one entry per (record, field) written: a put writes many */
	for (i = 0; i < s->n; i++)
		entries += s->pending[i]->ops[0].nfields + 1;
	while (m.cap < 2 * entries)
		m.cap *= 2;
	s->ops = kheo__malloc((s->n ? s->n : 1) * sizeof(*s->ops));
	s->alive = kheo__malloc((s->n ? s->n : 1) * sizeof(*s->alive));
	m.s = kheo__calloc(m.cap, sizeof(*m.s));
	if (!s->ops || !s->alive || !m.s) {
		kheo__free(m.s);
		return KHEO_ENOMEM;
	}
	for (i = 0; i < s->n; i++) {
		s->ops[i] = s->pending[i]->ops[0];
		s->alive[i] = 1;
	}
	for (i = 0; i < s->n && err == KHEO_OK; i++) {
		kheo_op *y = &s->ops[i];
		slot *hit;

		if (y->kind == KHEO_OP_PUT) {
			for (j = 0; j < y->nfields; j++)
				map_set(&m, y->record, y->fields[j].name, i);
			continue;
		}
		if (y->kind != KHEO_OP_SET || is_workflow(db, y) ||
		    strcmp(y->fields[0].name, "_deleted") == 0)
			continue;
		hit = map_find(&m, y->record, y->fields[0].name);
		if (hit->used && s->alive[hit->op]) {
			kheo_op *x = &s->ops[hit->op];
			kheo_opid xid = { x->clock, s->pending[hit->op]->author };

			if (x->kind == KHEO_OP_SET &&
			    has_pred(y, x->clock, xid.key)) {
				/* y replaces x */
				size_t n;
				kheo_opid *u = pred_union(y, x, &xid, &n);

				if ((err = own(s, u)) < 0)
					break;
				y->pred = u;
				y->npred = n;
				s->alive[hit->op] = 0;
			} else if (x->kind == KHEO_OP_PUT &&
				   has_pred(y, x->clock, xid.key)) {
				/* y replaces the pending put's value of the
				 * field: the put drops it, y keeps its own
				 * clock (so the state, clocks included, is
				 * what it was) and the put's pred */
				kheo_field *f = kheo__malloc(x->nfields *
					sizeof(*f));
				kheo_opid *u;
				size_t n, k = 0;

				if ((err = own(s, f)) < 0)
					break;
				for (j = 0; j < x->nfields; j++)
					if (strcmp(x->fields[j].name,
						    y->fields[0].name) != 0)
						f[k++] = x->fields[j];
				x->fields = f;
				x->nfields = k;
				u = pred_union(y, x, &xid, &n);
				if ((err = own(s, u)) < 0)
					break;
				y->pred = u;
				y->npred = n;
			}
		}
		map_set(&m, y->record, y->fields[0].name, i);
	}
	kheo__free(m.s);
	return err;
}

/* Remove the pending ops' traces from the state; mark their records. */
static int unmerge_pending(kheo_db *db, seal_state *s)
{
	static const char *const sql[] = {
		"INSERT OR IGNORE INTO temp.kheo_dirty(rid) VALUES(?1)",
		"DELETE FROM kheo_op WHERE rid = ?1 AND cs = 0",
		"DELETE FROM kheo_pred WHERE rid = ?1 AND cs = 0",
		"DELETE FROM kheo_seen WHERE rid = ?1 AND cs = 0",
		"DELETE FROM kheo_record WHERE rid = ?1 AND pending = 1",
	};
	sqlite3_stmt *st[5] = { NULL };
	size_t i, k;
	int rc, err = KHEO_OK;

	for (k = 0; k < 5; k++) {
		rc = sqlite3_prepare_v2(db->sql, sql[k], -1, &st[k], NULL);
		if (rc != SQLITE_OK) {
			err = kheo__sqlerr(db, rc, "seal");
			goto done;
		}
	}
	for (i = 0; i < s->n && err == KHEO_OK; i++)
		for (k = 0; k < 5 && err == KHEO_OK; k++) {
			sqlite3_bind_blob(st[k], 1, s->pending[i]->ops[0].record,
				KHEO_RECORD_SIZE, SQLITE_STATIC);
			err = kheo__step_done(db, st[k], "seal");
		}
done:
	for (k = 0; k < 5; k++)
		sqlite3_finalize(st[k]);
	if (err == KHEO_OK)
		err = kheo__exec(db, "DELETE FROM kheo_pending");
	return err;
}

/* Encode, sign and frame one changeset of `unit` from ops[0..n). */
static int seal_one(kheo_db *db, const char *unit, const kheo_op *ops,
	size_t n, kheo_buf *frame, uint8_t id[KHEO_ID_SIZE])
{
	kheo_changeset cs = { .version = KHEO_CS_VERSION, .unit = unit,
		.schema_version = db->schema->version, .ops = ops, .nops = n };
	uint8_t sig[KHEO_SIG_SIZE];
	kheo_refusal why = { 0 };
	sqlite3_stmt *st = kheo__stmt(db, ST_CS_MAX_USEQ);
	int rc, err;

	if (!st)
		return KHEO_ERROR;
	memcpy(cs.author, db->pk, KHEO_KEY_SIZE);
	sqlite3_bind_blob(st, 1, db->pk, KHEO_KEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, unit, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		cs.useq = (uint64_t)sqlite3_column_int64(st, 0) + 1;
		memcpy(cs.prev, sqlite3_column_blob(st, 1), KHEO_ID_SIZE);
	} else {
		cs.useq = 1;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return kheo__sqlerr(db, rc, "useq");
	kheo_buf_reset(&db->raw);
	if ((err = kheo_changeset_encode(&db->raw, &cs, &why)) < 0)
		return kheo__error(db, err, "sealing: %s", why.msg);
	kheo_changeset_id(id, db->raw.p, db->raw.len);
	kheo_changeset_sign(sig, id, db->sk);
	kheo_buf_reset(frame);
	return kheo_frame_write(db->codec, frame, db->raw.p, db->raw.len, sig);
}

/* Seal a batch and apply it through the receipt path like any other. */
static int seal_and_apply(kheo_db *db, const char *unit, const kheo_op *ops,
	size_t n, kheo_buf *frame)
{
	kheo_apply_stats st = { 0 };
	uint8_t id[KHEO_ID_SIZE];
	int err;

	if ((err = seal_one(db, unit, ops, n, frame, id)) < 0)
		return err;
	db->sealing = 1;
	err = kheo__receive(db, frame->p, frame->len, &st);
	db->sealing = 0;
	if (err < 0)
		return err;
	if (st.duplicate == 1) {
		/* a clone of this device sealed the very same edits first
		 * and they came back: the same bytes, so the same changeset,
		 * now the head of this copy's own branch too */
		sqlite3_stmt *u;
		int rc = sqlite3_prepare_v2(db->sql,
			"UPDATE kheo_cs SET local = 1 WHERE id = ?1", -1, &u,
			NULL);

		if (rc != SQLITE_OK)
			return kheo__sqlerr(db, rc, "seal");
		sqlite3_bind_blob(u, 1, id, KHEO_ID_SIZE, SQLITE_STATIC);
		err = kheo__step_done(db, u, "seal");
		sqlite3_finalize(u);
		return err;
	}
	if (st.applied != 1)
		return kheo__error(db, KHEO_ERROR,
			"sealed changeset not applied (%zu held, %zu "
			"rejected)", st.held, st.rejected);
	return KHEO_OK;
}

int kheo__seal(kheo_db *db, size_t *sealed)
{
	seal_state s = { 0 };
	kheo_buf frame = { 0 };
	kheo_op *batch = NULL;
	size_t i, j, made = 0;
	int err;

	if (sealed)
		*sealed = 0;
	/* the province acknowledges what it holds each time it seals */
	if ((err = kheo__write_receipts(db)) < 0 ||
	    (err = kheo__write_blob_acks(db)) < 0)
		return err;
	if ((err = load_pending(db, &s)) < 0 || s.n == 0)
		goto done;
	if ((err = need_signer(db)) < 0 || (err = collapse(db, &s)) < 0 ||
	    (err = unmerge_pending(db, &s)) < 0)
		goto done;
	if (!(batch = kheo__malloc(s.n * sizeof(*batch)))) {
		err = KHEO_ENOMEM;
		goto done;
	}
	/* one changeset per unit, in order of each unit's first edit; the
	 * ops stay in clock order within it */
	for (i = 0; i < s.n; i++) {
		size_t nb = 0, bytes = 0;

		if (!s.alive[i])
			continue;
		for (j = i; j < s.n; j++) {
			if (!s.alive[j] || strcmp(s.units[j], s.units[i]) != 0)
				continue;
			if (nb && (nb == SEAL_MAX_OPS ||
				   bytes + op_size(&s.ops[j]) > SEAL_MAX_BYTES)) {
				if ((err = seal_and_apply(db, s.units[i], batch,
					     nb, &frame)) < 0)
					goto done;
				made++;
				nb = 0;
				bytes = 0;
			}
			batch[nb++] = s.ops[j];
			bytes += op_size(&s.ops[j]);
			if (j != i)
				s.alive[j] = 0;
		}
		if (nb) {
			if ((err = seal_and_apply(db, s.units[i], batch, nb,
				     &frame)) < 0)
				goto done;
			made++;
		}
	}
	if (sealed)
		*sealed = made;
done:
	kheo__free(batch);
	kheo_buf_free(&frame);
	seal_free(&s);
	return err;
}

static int opid_order(const void *a, const void *b)
{
	return kheo_opid_cmp(a, b);
}

static int clock_order(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Re-keying (keyfile.c): a pending op's id is (clock, author) and later
 * pending ops name earlier ones in their preds, so each pending op is
 * rewritten with the new author (add_pending takes db->pk), with every
 * pred naming a pending op of old_pk renamed too; the pending state is
 * then rebuilt from the rewritten ops, in their order.  Preds naming ops
 * the old key sealed stay as they are: those ops are signed and stay its.
 */
int kheo__pending_rekey(kheo_db *db, const uint8_t old_pk[KHEO_KEY_SIZE])
{
	seal_state s = { 0 };
	uint64_t *clocks = NULL;
	kheo_opid *pred = NULL;
	size_t i, j, most = 1;
	int err;

	if ((err = load_pending(db, &s)) < 0 || s.n == 0)
		goto done;
	clocks = kheo__malloc(s.n * sizeof(*clocks));
	for (i = 0; i < s.n; i++) {
		assert(memcmp(s.pending[i]->author, old_pk, KHEO_KEY_SIZE) == 0);
		if (clocks)
			clocks[i] = s.pending[i]->ops[0].clock;
		if (s.pending[i]->ops[0].npred > most)
			most = s.pending[i]->ops[0].npred;
	}
	if (!clocks || !(pred = kheo__malloc(most * sizeof(*pred)))) {
		err = KHEO_ENOMEM;
		goto done;
	}
	qsort(clocks, s.n, sizeof(*clocks), clock_order);
	if ((err = unmerge_pending(db, &s)) < 0)
		goto done;
	for (i = 0; i < s.n && err == KHEO_OK; i++) {
		kheo_op op = s.pending[i]->ops[0];

		for (j = 0; j < op.npred; j++) {
			pred[j] = op.pred[j];
			if (memcmp(pred[j].key, old_pk, KHEO_KEY_SIZE) == 0 &&
			    bsearch(&pred[j].clock, clocks, s.n,
				    sizeof(*clocks), clock_order))
				pred[j].key = db->pk;
		}
		qsort(pred, op.npred, sizeof(*pred), opid_order);
		op.pred = pred;
		err = add_pending(db, &op, s.units[i]);
	}
done:
	kheo__free(pred);
	kheo__free(clocks);
	seal_free(&s);
	return err;
}

KHEO_EXTERN int kheo_commit(kheo_db *db, size_t *sealed)
{
	int err;

	kheo__clear(db);
	if ((err = kheo__begin(db)) < 0)
		return err;
	if ((err = kheo__seal(db, sealed)) < 0 ||
	    (err = kheo__commit_tx(db)) < 0) {
		kheo__rollback(db);
		return err;
	}
	return KHEO_OK;
}

KHEO_EXTERN int kheo_batch_begin(kheo_db *db)
{
	kheo__clear(db);
	if (db->in_tx)
		return kheo__error(db, KHEO_EINVAL, "a batch is already open");
	return kheo__begin(db);
}

KHEO_EXTERN int kheo_batch_commit(kheo_db *db)
{
	int err;

	kheo__clear(db);
	if (!db->in_tx || db->savepoints)
		return kheo__error(db, KHEO_EINVAL, "no batch is open");
	if ((err = kheo__commit_tx(db)) < 0)
		kheo__rollback(db);
	return err;
}

KHEO_EXTERN void kheo_batch_rollback(kheo_db *db)
{
	while (db->savepoints)
		kheo__rollback(db);
	kheo__rollback(db);
}
