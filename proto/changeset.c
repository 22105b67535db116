/*
 * changeset.c - the canonical changeset encoding, its strict decoder, ids
 * and signatures.
 *
 * Layout (docs/protocol.md has it byte by byte):
 *   version, author, unit, schema_version, useq, [previous], parents,
 *   clock_min, clock_span, interned keys, ops; each op names its kind,
 *   clock, table, record, body and pred.
 * Every rule the decoder enforces, the encoder enforces too, so that
 * encode(decode(x)) == x for every x the decoder accepts, and the encoder
 * never writes what a peer would refuse.
 *
 * Not here: what an op means (merge), who may write it (authorisation),
 * storage.  Those belong to client-core.
 */
#include "proto.h"
#include "alloc.h"
#include "value.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* Smallest encodings, used to refuse counts the input cannot hold. */
#define MIN_OP_BYTES (1 + 1 + 2 + KHEO_RECORD_SIZE + 1) /* a delete */
#define MIN_FIELD_BYTES (1 + 1 + 1)               /* name "a", null */
#define MIN_PRED_BYTES 2

const char *kheo_op_name(int kind)
{
	switch (kind) {
	case KHEO_OP_PUT: return "put";
	case KHEO_OP_SET: return "set";
	case KHEO_OP_ADD: return "add";
	case KHEO_OP_REMOVE: return "remove";
	case KHEO_OP_DELETE: return "delete";
	}
	return "unknown";
}

/* -------------------------------------------------------------- arena */

/*
 * The decoder puts the changeset and everything it points to in one arena,
 * so a consumer frees it with one call and nothing it holds borrows from
 * the input buffer.
 */
typedef struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	max_align_t data[];
} arena_block;

typedef struct decoded {
	kheo_changeset cs; /* first: kheo_changeset_free casts back */
	arena_block *blocks;
} decoded;

static void *arena_alloc(decoded *d, size_t n)
{
	const size_t align = sizeof(max_align_t);
	arena_block *b = d->blocks;

	n = (n + align - 1) / align * align;
	if (!b || b->cap - b->used < n) {
		size_t cap = b ? b->cap * 2 : 4096;

		while (cap < n)
			cap *= 2;
		b = kheo__malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->next = d->blocks;
		b->used = 0;
		b->cap = cap;
		d->blocks = b;
	}
	b->used += n;
	return (uint8_t *)b->data + b->used - n;
}

static char *arena_strdup(decoded *d, const uint8_t *p, size_t n)
{
	char *s = arena_alloc(d, n + 1);

	if (s) {
		memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

void kheo_changeset_free(kheo_changeset *cs)
{
	decoded *d = (decoded *)cs;
	arena_block *b, *next;

	if (!cs)
		return;
	for (b = d->blocks; b; b = next) {
		next = b->next;
		kheo__free(b);
	}
	kheo__free(d);
}

/* ---------------------------------------------------------- shared rules */

int kheo_opid_cmp(const kheo_opid *a, const kheo_opid *b)
{
	if (a->clock != b->clock)
		return a->clock < b->clock ? -1 : 1;
	return memcmp(a->key, b->key, KHEO_KEY_SIZE);
}

static const char *kind_name(int kind)
{
	static const char *const names[] = {
		"?", "put", "set", "add", "remove", "delete",
	};
	return kind >= KHEO_OP_PUT && kind <= KHEO_OP_DELETE ? names[kind]
							     : "?";
}

/* A list that must strictly ascend: DUPLICATE when equal, else UNSORTED. */
static int check_ascending(int cmp, kheo_refusal *why, size_t off,
	const char *what, size_t index)
{
	if (cmp < 0)
		return KHEO_OK;
	if (cmp == 0)
		return kheo__refuse(why, KHEO_R_DUPLICATE, off,
			"%s %zu repeats the one before", what, index);
	return kheo__refuse(why, KHEO_R_UNSORTED, off,
		"%s %zu sorts before the one before", what, index);
}

static int check_header(const kheo_changeset *cs, kheo_refusal *why,
	size_t off)
{
	size_t i, ulen = strlen(cs->unit);

	if (cs->version != KHEO_CS_VERSION)
		return kheo__refuse(why, KHEO_R_BAD_VERSION, off,
			"changeset format version %u unknown (this is %u)",
			cs->version, KHEO_CS_VERSION);
	if (ulen > KHEO_UNIT_MAX)
		return kheo__refuse(why, KHEO_R_TOO_BIG, off,
			"unit is %zu bytes, above the %u limit", ulen,
			KHEO_UNIT_MAX);
	if (!kheo_unit_valid(cs->unit, ulen))
		return kheo__refuse(why, KHEO_R_BAD_UNIT, off,
			"unit \"%.*s\" is not a slug path", (int)ulen,
			cs->unit);
	if (cs->useq == 0)
		return kheo__refuse(why, KHEO_R_BAD_CHAIN, off,
			"useq 0: chains start at 1");
	if (cs->nparents > KHEO_CS_PARENTS_MAX)
		return kheo__refuse(why, KHEO_R_TOO_MANY, off,
			"%zu parents, above the %u limit", cs->nparents,
			KHEO_CS_PARENTS_MAX);
	for (i = 0; i < cs->nparents; i++) {
		int err;

		if (cs->useq > 1 &&
		    memcmp(cs->parents[i], cs->prev, KHEO_ID_SIZE) == 0)
			return kheo__refuse(why, KHEO_R_DUPLICATE, off,
				"parent %zu repeats the previous id", i);
		if (i > 0 &&
		    (err = check_ascending(memcmp(cs->parents[i - 1],
			     cs->parents[i], KHEO_ID_SIZE),
			     why, off, "parent", i)) < 0)
			return err;
	}
	return KHEO_OK;
}

/* Field count each kind carries: -1 for "any number" (put). */
static int kind_fields(int kind)
{
	switch (kind) {
	case KHEO_OP_PUT:
		return -1;
	case KHEO_OP_SET:
	case KHEO_OP_ADD:
	case KHEO_OP_REMOVE:
		return 1;
	default:
		return 0;
	}
}

static int check_name(const char *name, kheo_refusal *why, size_t off,
	size_t opi)
{
	size_t n;

	if (!name)
		return kheo__refuse(why, KHEO_R_BAD_NAME, off,
			"op %zu: table or field name missing", opi);
	n = strlen(name);

	if (n > KHEO_NAME_MAX)
		return kheo__refuse(why, KHEO_R_TOO_BIG, off,
			"op %zu: field name of %zu bytes, above the %u limit",
			opi, n, KHEO_NAME_MAX);
	if (!kheo_name_valid(name, n))
		return kheo__refuse(why, KHEO_R_BAD_NAME, off,
			"op %zu: field name \"%.*s\" is not [a-z_][a-z0-9_]*",
			opi, (int)n, name);
	return KHEO_OK;
}

/*
 * The rules on one op, as the encoder checks them (values are checked as
 * they are written).  The decoder checks the same rules inline, as it reads,
 * so that it can name the offset; the round-trip tests and the fuzz target
 * (decode, re-encode, compare) keep the two in step.
 */
static int check_op(const kheo_op *op, const kheo_op *before,
	kheo_refusal *why, size_t off, size_t opi)
{
	size_t i;
	int err;

	if (op->kind < KHEO_OP_PUT || op->kind > KHEO_OP_DELETE)
		return kheo__refuse(why, KHEO_R_BAD_ENUM, off,
			"op %zu: kind %d unknown", opi, (int)op->kind);
	if (before && op->clock <= before->clock)
		return kheo__refuse(why, KHEO_R_BAD_CLOCK, off,
			"op %zu: clock does not rise above op %zu's", opi,
			opi - 1);
	if ((err = check_name(op->table, why, off, opi)) < 0)
		return err;
	if (kind_fields(op->kind) >= 0 &&
	    op->nfields != (size_t)kind_fields(op->kind))
		return kheo__refuse(why, KHEO_R_BAD_ENUM, off,
			"op %zu: a %s carries %d field(s), not %zu", opi,
			kind_name(op->kind), kind_fields(op->kind),
			op->nfields);
	if (op->nfields > KHEO_OP_FIELDS_MAX)
		return kheo__refuse(why, KHEO_R_TOO_MANY, off,
			"op %zu: %zu fields, above the %u limit", opi,
			op->nfields, KHEO_OP_FIELDS_MAX);
	for (i = 0; i < op->nfields; i++) {
		if ((err = check_name(op->fields[i].name, why, off, opi)) < 0)
			return err;
		if (i > 0 &&
		    (err = check_ascending(strcmp(op->fields[i - 1].name,
			     op->fields[i].name),
			     why, off, "field", i)) < 0)
			return err;
	}
	if (op->npred > KHEO_OP_PRED_MAX)
		return kheo__refuse(why, KHEO_R_TOO_MANY, off,
			"op %zu: %zu pred ids, above the %u limit", opi,
			op->npred, KHEO_OP_PRED_MAX);
	for (i = 0; i < op->npred; i++) {
		if (op->pred[i].clock >= op->clock)
			return kheo__refuse(why, KHEO_R_BAD_CLOCK, off,
				"op %zu: pred %zu is not older than the op",
				opi, i);
		if (i > 0 &&
		    (err = check_ascending(kheo_opid_cmp(&op->pred[i - 1],
			     &op->pred[i]),
			     why, off, "pred", i)) < 0)
			return err;
	}
	return KHEO_OK;
}

/* ------------------------------------------------------------- encoding */

typedef struct key_table {
	uint8_t (*keys)[KHEO_KEY_SIZE];
	size_t n;
} key_table;

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, KHEO_KEY_SIZE);
}

/* The distinct pred keys other than the author, sorted. */
static int collect_keys(key_table *t, const kheo_changeset *cs)
{
	size_t i, j, total = 0, n = 0;

	for (i = 0; i < cs->nops; i++)
		total += cs->ops[i].npred;
	t->keys = kheo__malloc(total * KHEO_KEY_SIZE);
	if (!t->keys)
		return KHEO_ENOMEM;
	for (i = 0; i < cs->nops; i++)
		for (j = 0; j < cs->ops[i].npred; j++) {
			const uint8_t *k = cs->ops[i].pred[j].key;

			if (memcmp(k, cs->author, KHEO_KEY_SIZE) != 0)
				memcpy(t->keys[n++], k, KHEO_KEY_SIZE);
		}
	if (n > 0)
		qsort(t->keys, n, KHEO_KEY_SIZE, key_cmp);
	t->n = 0;
	for (i = 0; i < n; i++)
		if (t->n == 0 || memcmp(t->keys[t->n - 1], t->keys[i],
				     KHEO_KEY_SIZE) != 0)
			memmove(t->keys[t->n++], t->keys[i], KHEO_KEY_SIZE);
	return KHEO_OK;
}

/* The index a pred key is written as: 0 the author, i+1 keys[i]. */
static uint64_t key_index(const key_table *t, const kheo_changeset *cs,
	const uint8_t *key)
{
	const uint8_t (*hit)[KHEO_KEY_SIZE];

	if (memcmp(key, cs->author, KHEO_KEY_SIZE) == 0)
		return 0;
	hit = bsearch(key, t->keys, t->n, KHEO_KEY_SIZE, key_cmp);
	return (uint64_t)(hit - t->keys) + 1;
}

int kheo_changeset_encode(kheo_buf *out, const kheo_changeset *cs,
	kheo_refusal *why)
{
	key_table keys = { NULL, 0 };
	size_t start = out->len, i, j;
	uint64_t clock_min, clock_max;
	int err;

	if ((err = check_header(cs, why, 0)) < 0)
		return err;
	if (cs->nops == 0)
		return kheo__refuse(why, KHEO_R_EMPTY, 0,
			"a changeset needs at least one op");
	if (cs->nops > KHEO_CS_OPS_MAX)
		return kheo__refuse(why, KHEO_R_TOO_MANY, 0,
			"%zu ops, above the %u limit", cs->nops,
			KHEO_CS_OPS_MAX);
	for (i = 0; i < cs->nops; i++)
		if ((err = check_op(&cs->ops[i], i ? &cs->ops[i - 1] : NULL,
			     why, 0, i)) < 0)
			return err;
	if ((err = collect_keys(&keys, cs)) < 0)
		return err;
	if (keys.n > KHEO_CS_KEYS_MAX) {
		err = kheo__refuse(why, KHEO_R_TOO_MANY, 0,
			"%zu interned keys, above the %u limit", keys.n,
			KHEO_CS_KEYS_MAX);
		goto done;
	}
	clock_min = cs->ops[0].clock;
	clock_max = cs->ops[cs->nops - 1].clock;

	kheo_buf_put_varint(out, cs->version);
	kheo_buf_put(out, cs->author, KHEO_KEY_SIZE);
	kheo_buf_put_str(out, cs->unit, strlen(cs->unit));
	kheo_buf_put_varint(out, cs->schema_version);
	kheo_buf_put_varint(out, cs->useq);
	if (cs->useq > 1)
		kheo_buf_put(out, cs->prev, KHEO_ID_SIZE);
	kheo_buf_put_varint(out, cs->nparents);
	for (i = 0; i < cs->nparents; i++)
		kheo_buf_put(out, cs->parents[i], KHEO_ID_SIZE);
	kheo_buf_put_varint(out, clock_min);
	kheo_buf_put_varint(out, clock_max - clock_min);
	kheo_buf_put_varint(out, keys.n);
	kheo_buf_put(out, keys.keys, keys.n * KHEO_KEY_SIZE);
	kheo_buf_put_varint(out, cs->nops);

	for (i = 0; i < cs->nops; i++) {
		const kheo_op *op = &cs->ops[i];

		kheo_buf_put_u8(out, (uint8_t)op->kind);
		kheo_buf_put_varint(out,
			op->clock - (i ? cs->ops[i - 1].clock : clock_min));
		kheo_buf_put_str(out, op->table, strlen(op->table));
		kheo_buf_put(out, op->record, KHEO_RECORD_SIZE);
		if (op->kind == KHEO_OP_PUT)
			kheo_buf_put_varint(out, op->nfields);
		for (j = 0; j < op->nfields; j++) {
			const kheo_field *f = &op->fields[j];

			kheo_buf_put_str(out, f->name, strlen(f->name));
			if ((err = kheo__value_put(out, &f->value, why,
				     f->name)) < 0)
				goto done;
		}
		kheo_buf_put_varint(out, op->npred);
		for (j = 0; j < op->npred; j++) {
			kheo_buf_put_varint(out, op->clock - op->pred[j].clock);
			kheo_buf_put_varint(out,
				key_index(&keys, cs, op->pred[j].key));
		}
	}
	if (out->len - start > KHEO_CS_RAW_MAX)
		err = kheo__refuse(why, KHEO_R_TOO_BIG, 0,
			"changeset of %zu bytes, above the %u limit",
			out->len - start, KHEO_CS_RAW_MAX);
	else if (out->oom)
		err = KHEO_ENOMEM;
done:
	if (err < 0 && !out->oom)
		out->len = start;
	kheo__free(keys.keys);
	return err;
}

/* ------------------------------------------------------------- decoding */

static int read_name(kheo_reader *r, decoded *d, const char **out,
	size_t opi, const char *what)
{
	size_t start = r->off;
	const uint8_t *p;
	uint64_t n;
	int err;

	if ((err = kheo_read_varint(r, &n, UINT64_MAX, what)) < 0)
		return err;
	if (n > KHEO_NAME_MAX)
		return kheo__refuse(r->why, KHEO_R_TOO_BIG, start,
			"op %zu: %s of %llu bytes, above the %u limit",
			opi, what, (unsigned long long)n, KHEO_NAME_MAX);
	if ((err = kheo_read_bytes(r, &p, (size_t)n, what)) < 0)
		return err;
	if (!kheo_name_valid((const char *)p, (size_t)n))
		return kheo__refuse(r->why, KHEO_R_BAD_NAME, start,
			"op %zu: %s \"%.*s\" is not [a-z_][a-z0-9_]*",
			opi, what, (int)n, (const char *)p);
	if (!(*out = arena_strdup(d, p, (size_t)n)))
		return KHEO_ENOMEM;
	return KHEO_OK;
}

/* Read a value and give its bytes to the arena. */
static int read_value(kheo_reader *r, decoded *d, kheo_value *v,
	const char *what)
{
	int err;

	if ((err = kheo__value_read(r, v, what)) < 0)
		return err;
	if (v->type == KHEO_VAL_TEXT || v->type == KHEO_VAL_BYTES ||
	    v->type == KHEO_VAL_HASH) {
		char *copy = arena_strdup(d, v->p, v->len);

		if (!copy)
			return KHEO_ENOMEM;
		v->p = (const uint8_t *)copy;
	}
	return KHEO_OK;
}

/* A count that must fit both its cap and the bytes left to hold it. */
static int read_count(kheo_reader *r, size_t *out, uint64_t cap,
	size_t min_bytes, const char *what)
{
	size_t start = r->off;
	uint64_t n;
	int err;

	if ((err = kheo_read_varint(r, &n, UINT64_MAX, what)) < 0)
		return err;
	if (n > cap)
		return kheo__refuse(r->why, KHEO_R_TOO_MANY, start,
			"%llu %s, above the %llu limit",
			(unsigned long long)n, what, (unsigned long long)cap);
	if (n * min_bytes > r->len - r->off)
		return kheo__refuse(r->why, KHEO_R_TRUNCATED, start,
			"%llu %s cannot fit in the %zu bytes left",
			(unsigned long long)n, what, r->len - r->off);
	*out = (size_t)n;
	return KHEO_OK;
}

static int read_header(kheo_reader *r, decoded *d, uint64_t *clock_span,
	const uint8_t **keys, size_t *nkeys)
{
	kheo_changeset *cs = &d->cs;
	const uint8_t *p;
	uint64_t v;
	size_t i, start;
	int err;

	start = r->off;
	if ((err = kheo_read_varint(r, &v, UINT64_MAX, "version")) < 0)
		return err;
	if (v != KHEO_CS_VERSION)
		return kheo__refuse(r->why, KHEO_R_BAD_VERSION, start,
			"changeset format version %llu unknown (this is %u)",
			(unsigned long long)v, KHEO_CS_VERSION);
	cs->version = (uint32_t)v;
	if ((err = kheo_read_bytes(r, &p, KHEO_KEY_SIZE, "author")) < 0)
		return err;
	memcpy(cs->author, p, KHEO_KEY_SIZE);

	start = r->off;
	if ((err = kheo_read_varint(r, &v, UINT64_MAX, "unit")) < 0)
		return err;
	if (v > KHEO_UNIT_MAX)
		return kheo__refuse(r->why, KHEO_R_TOO_BIG, start,
			"unit of %llu bytes, above the %u limit",
			(unsigned long long)v, KHEO_UNIT_MAX);
	if ((err = kheo_read_bytes(r, &p, (size_t)v, "unit")) < 0)
		return err;
	if (!kheo_unit_valid((const char *)p, (size_t)v))
		return kheo__refuse(r->why, KHEO_R_BAD_UNIT, start,
			"unit \"%.*s\" is not a slug path", (int)v,
			(const char *)p);
	if (!(cs->unit = arena_strdup(d, p, (size_t)v)))
		return KHEO_ENOMEM;

	if ((err = kheo_read_varint(r, &v, KHEO_SCHEMA_VERSION_MAX,
		     "schema version")) < 0)
		return err;
	cs->schema_version = (uint32_t)v;
	start = r->off;
	if ((err = kheo_read_varint(r, &cs->useq, UINT64_MAX, "useq")) < 0)
		return err;
	if (cs->useq == 0)
		return kheo__refuse(r->why, KHEO_R_BAD_CHAIN, start,
			"useq 0: chains start at 1");
	if (cs->useq > 1) {
		if ((err = kheo_read_bytes(r, &p, KHEO_ID_SIZE,
			     "previous")) < 0)
			return err;
		memcpy(cs->prev, p, KHEO_ID_SIZE);
	}
	start = r->off;
	if ((err = read_count(r, &cs->nparents, KHEO_CS_PARENTS_MAX,
		     KHEO_ID_SIZE, "parents")) < 0)
		return err;
	for (i = 0; i < cs->nparents; i++) {
		if ((err = kheo_read_bytes(r, &p, KHEO_ID_SIZE, "parent")) < 0)
			return err;
		memcpy(cs->parents[i], p, KHEO_ID_SIZE);
	}
	/* The header rules the encoder checks, with this offset. */
	if ((err = check_header(cs, r->why, start)) < 0)
		return err;
	if ((err = kheo_read_varint(r, &cs->clock_min, UINT64_MAX,
		     "clock_min")) < 0)
		return err;
	start = r->off;
	if ((err = kheo_read_varint(r, clock_span, UINT64_MAX,
		     "clock_span")) < 0)
		return err;
	if (*clock_span > UINT64_MAX - cs->clock_min)
		return kheo__refuse(r->why, KHEO_R_BAD_CLOCK, start,
			"clock range passes 2^64-1");
	cs->clock_max = cs->clock_min + *clock_span;

	start = r->off;
	if ((err = read_count(r, nkeys, KHEO_CS_KEYS_MAX, KHEO_KEY_SIZE,
		     "interned keys")) < 0)
		return err;
	if ((err = kheo_read_bytes(r, keys, *nkeys * KHEO_KEY_SIZE,
		     "interned keys")) < 0)
		return err;
	for (i = 0; i < *nkeys; i++) {
		const uint8_t *k = *keys + i * KHEO_KEY_SIZE;

		if (memcmp(k, cs->author, KHEO_KEY_SIZE) == 0)
			return kheo__refuse(r->why, KHEO_R_DUPLICATE, start,
				"interned key %zu is the author's", i);
		if (i > 0 &&
		    (err = check_ascending(memcmp(k - KHEO_KEY_SIZE, k,
			     KHEO_KEY_SIZE),
			     r->why, start, "interned key", i)) < 0)
			return err;
	}
	return KHEO_OK;
}

static int read_op(kheo_reader *r, decoded *d, kheo_op *op,
	const uint8_t *keys, size_t nkeys, uint8_t *key_used, size_t opi)
{
	kheo_changeset *cs = &d->cs;
	size_t start = r->off, i;
	kheo_field *fields = NULL;
	kheo_opid *pred = NULL;
	const uint8_t *p;
	uint64_t delta;
	uint8_t kind;
	int err;

	if ((err = kheo_read_u8(r, &kind, "op kind")) < 0)
		return err;
	if (kind < KHEO_OP_PUT || kind > KHEO_OP_DELETE)
		return kheo__refuse(r->why, KHEO_R_BAD_ENUM, start,
			"op %zu: kind %u unknown", opi, kind);
	op->kind = (kheo_op_kind)kind;

	if ((err = kheo_read_varint(r, &delta, UINT64_MAX, "op clock")) < 0)
		return err;
	if (opi == 0) {
		if (delta != 0)
			return kheo__refuse(r->why, KHEO_R_BAD_CLOCK, start,
				"op 0: clock is not clock_min");
		op->clock = cs->clock_min;
	} else {
		uint64_t prev = cs->ops[opi - 1].clock;

		if (delta == 0)
			return kheo__refuse(r->why, KHEO_R_BAD_CLOCK, start,
				"op %zu: clock does not rise above op %zu's",
				opi, opi - 1);
		if (delta > cs->clock_max - prev)
			return kheo__refuse(r->why, KHEO_R_BAD_CLOCK, start,
				"op %zu: clock beyond the header's range",
				opi);
		op->clock = prev + delta;
	}
	if ((err = read_name(r, d, &op->table, opi, "table name")) < 0)
		return err;
	if ((err = kheo_read_bytes(r, &p, KHEO_RECORD_SIZE, "record id")) < 0)
		return err;
	memcpy(op->record, p, KHEO_RECORD_SIZE);

	if (op->kind == KHEO_OP_PUT) {
		if ((err = read_count(r, &op->nfields, KHEO_OP_FIELDS_MAX,
			     MIN_FIELD_BYTES, "fields")) < 0)
			return err;
	} else {
		op->nfields = (size_t)kind_fields(op->kind);
	}
	if (op->nfields) {
		fields = arena_alloc(d, op->nfields * sizeof(*fields));
		if (!fields)
			return KHEO_ENOMEM;
	}
	for (i = 0; i < op->nfields; i++) {
		size_t fstart = r->off;

		if ((err = read_name(r, d, &fields[i].name, opi, "field name")) < 0)
			return err;
		if (i > 0 &&
		    (err = check_ascending(strcmp(fields[i - 1].name,
			     fields[i].name),
			     r->why, fstart, "field", i)) < 0)
			return err;
		if ((err = read_value(r, d, &fields[i].value,
			     fields[i].name)) < 0)
			return err;
	}
	op->fields = fields;

	if ((err = read_count(r, &op->npred, KHEO_OP_PRED_MAX,
		     MIN_PRED_BYTES, "pred ids")) < 0)
		return err;
	if (op->npred) {
		pred = arena_alloc(d, op->npred * sizeof(*pred));
		if (!pred)
			return KHEO_ENOMEM;
	}
	for (i = 0; i < op->npred; i++) {
		size_t pstart = r->off;
		uint64_t back, idx;

		if ((err = kheo_read_varint(r, &back, UINT64_MAX,
			     "pred clock")) < 0)
			return err;
		if (back == 0 || back > op->clock)
			return kheo__refuse(r->why, KHEO_R_BAD_CLOCK, pstart,
				"op %zu: pred %zu is not older than the op",
				opi, i);
		if ((err = kheo_read_varint(r, &idx, UINT64_MAX,
			     "pred key")) < 0)
			return err;
		if (idx > nkeys)
			return kheo__refuse(r->why, KHEO_R_BAD_KEY_INDEX,
				pstart, "op %zu: pred %zu names key %llu of %zu",
				opi, i, (unsigned long long)idx, nkeys);
		pred[i].clock = op->clock - back;
		pred[i].key = idx ? keys + (idx - 1) * KHEO_KEY_SIZE
				  : cs->author;
		if (idx)
			key_used[idx - 1] = 1;
		if (i > 0 &&
		    (err = check_ascending(kheo_opid_cmp(&pred[i - 1],
			     &pred[i]),
			     r->why, pstart, "pred", i)) < 0)
			return err;
	}
	op->pred = pred;
	return KHEO_OK;
}

int kheo_changeset_decode(kheo_changeset **out, const uint8_t *raw,
	size_t len, kheo_refusal *why)
{
	const uint8_t *wire_keys = NULL;
	uint8_t *keys, *key_used;
	size_t nkeys = 0, i, start;
	uint64_t clock_span;
	kheo_reader r;
	kheo_op *ops;
	decoded *d;
	int err;

	*out = NULL;
	if (len > KHEO_CS_RAW_MAX)
		return kheo__refuse(why, KHEO_R_TOO_BIG, 0,
			"changeset of %zu bytes, above the %u limit", len,
			KHEO_CS_RAW_MAX);
	if (!(d = kheo__calloc(1, sizeof(*d))))
		return KHEO_ENOMEM;
	kheo_reader_init(&r, raw, len, why);

	if ((err = read_header(&r, d, &clock_span, &wire_keys, &nkeys)) < 0)
		goto fail;
	/* Keys move to the arena so pred pointers outlive the input. */
	keys = arena_alloc(d, nkeys * KHEO_KEY_SIZE + 1);
	key_used = arena_alloc(d, nkeys + 1);
	if (!keys || !key_used) {
		err = KHEO_ENOMEM;
		goto fail;
	}
	memcpy(keys, wire_keys, nkeys * KHEO_KEY_SIZE);
	memset(key_used, 0, nkeys);

	start = r.off;
	if ((err = read_count(&r, &d->cs.nops, KHEO_CS_OPS_MAX, MIN_OP_BYTES,
		     "ops")) < 0)
		goto fail;
	if (d->cs.nops == 0) {
		err = kheo__refuse(why, KHEO_R_EMPTY, start,
			"a changeset needs at least one op");
		goto fail;
	}
	if (!(ops = arena_alloc(d, d->cs.nops * sizeof(*ops)))) {
		err = KHEO_ENOMEM;
		goto fail;
	}
	memset(ops, 0, d->cs.nops * sizeof(*ops));
	d->cs.ops = ops;
	for (i = 0; i < d->cs.nops; i++)
		if ((err = read_op(&r, d, &ops[i], keys, nkeys, key_used,
			     i)) < 0)
			goto fail;
	if (ops[d->cs.nops - 1].clock != d->cs.clock_max) {
		err = kheo__refuse(why, KHEO_R_BAD_CLOCK, r.off,
			"last op's clock is not clock_min + clock_span");
		goto fail;
	}
	for (i = 0; i < nkeys; i++)
		if (!key_used[i]) {
			err = kheo__refuse(why, KHEO_R_UNUSED_KEY, r.off,
				"interned key %zu is named by no pred", i);
			goto fail;
		}
	if ((err = kheo_read_end(&r, "changeset")) < 0)
		goto fail;
	*out = &d->cs;
	return KHEO_OK;
fail:
	kheo_changeset_free(&d->cs);
	return err;
}

/* ------------------------------------------------------ ids, signatures */

void kheo_changeset_id(uint8_t id[KHEO_ID_SIZE], const uint8_t *raw,
	size_t len)
{
	crypto_generichash(id, KHEO_ID_SIZE, raw, len, NULL, 0);
}

/* The signed message: context string, then the id. */
static void signed_message(uint8_t *msg, const uint8_t id[KHEO_ID_SIZE])
{
	memcpy(msg, KHEO_CTX_CHANGESET, sizeof(KHEO_CTX_CHANGESET) - 1);
	memcpy(msg + sizeof(KHEO_CTX_CHANGESET) - 1, id, KHEO_ID_SIZE);
}

void kheo_changeset_sign(uint8_t sig[KHEO_SIG_SIZE],
	const uint8_t id[KHEO_ID_SIZE], const uint8_t sk[KHEO_SECRET_SIZE])
{
	uint8_t msg[sizeof(KHEO_CTX_CHANGESET) - 1 + KHEO_ID_SIZE];

	signed_message(msg, id);
	crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);
}

int kheo_changeset_verify(const uint8_t sig[KHEO_SIG_SIZE],
	const uint8_t id[KHEO_ID_SIZE], const uint8_t author[KHEO_KEY_SIZE],
	kheo_refusal *why)
{
	uint8_t msg[sizeof(KHEO_CTX_CHANGESET) - 1 + KHEO_ID_SIZE];

	signed_message(msg, id);
	if (crypto_sign_verify_detached(sig, msg, sizeof(msg), author) != 0)
		return kheo__refuse(why, KHEO_R_BAD_SIGNATURE, 0,
			"signature does not verify for the author's key");
	return KHEO_OK;
}
