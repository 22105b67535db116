/*
 * bench_proto.c - what proto/ costs on a replayed field trace: time to seal
 * and open changesets, and bytes per op on the wire.
 *
 *   bench_proto TRACE.jsonl [LABEL]
 *
 * The trace comes from ../shared/bench/gen_trace.py (TRACE.md there).  Each
 * device gathers its ops and seals them at every `sync` it takes part in and
 * at the end (DESIGN.md, "Sealing per sync"): one changeset per unit its
 * pending ops touch, chained per (device, unit) by useq and `previous`.
 * Then, in one process:
 *
 *  - encode + id + sign, against bare crypto_sign_detached of as many 49-byte
 *    messages (what kheo_changeset_sign signs);
 *  - frame_write in four modes (stored, zstd -3, zstd -3 with a dictionary
 *    trained on the changesets of the first ~20% of the trace's ops, zstd
 *    -19);
 *  - frame_open (read, decompress, decode, id, verify), against bare
 *    crypto_sign_verify_detached of the same messages;
 *  - bytes: canonical, and framed in each mode (signature and frame header
 *    included), over the held-out ~80% so the dictionary is not measured
 *    on what it was trained on, and over the whole trace for the others;
 *    a breakdown of the canonical bytes says what dominates.
 *
 * Speed is printed as a ratio against the baseline measured in the same run
 * (project rule: absolute rates depend on the machine).  There are no timing
 * asserts; the program exits non-zero only if a changeset fails to encode,
 * frame, open or verify, if the baseline signatures differ from kheo's, or
 * if a decoded changeset does not re-encode to identical bytes.
 *
 * What it is not: a replica.  Nothing is merged; pred is the last write to
 * the field anywhere in the trace (not what the device had seen), nparents
 * is 0, and pending ops are not collapsed at sealing time.  All of that
 * makes the changesets a little larger than libkheo's, not smaller.
 */
#include "proto.h"
#include "alloc.h"

#include <jansson.h>
#include <sodium.h>
#include <zstd.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLOCK_START ((uint64_t)1760000000000ull << 16) /* 2025-10, counter 0 */
#define TRAIN_SHARE 0.20        /* share of ops whose changesets train */
/* Dictionary size asked of zstd; -DDICT_CAPACITY=... to compare others. */
#ifndef DICT_CAPACITY
#define DICT_CAPACITY (64u << 10)
#endif
#define ROUNDS_MIN 2            /* timing rounds, at least ... */
#define ROUNDS_MAX 7            /* ... at most, */
#define ROUNDS_SECONDS 4.0      /* ... and more than ROUNDS_MIN while within this */
#define WRITES_MAX 16           /* fields tracked per record, _deleted too */
#define ARENA_BLOCK (1u << 20)
#define NO_PREV ((size_t)-1)
#define KIND_SLOTS 6            /* op kinds are 1..5 */

/* ------------------------------------------------------------- plumbing */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2),
	noreturn));

static void fail(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("bench_proto: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *xrealloc(void *p, size_t n)
{
	if (!(p = realloc(p, n ? n : 1)))
		fail("out of memory (%zu bytes)", n);
	return p;
}

/* Grow p (of *cap items of `size`) to hold `need` items; the new p. */
static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
	size_t n = *cap ? *cap : 16;

	if (need <= *cap)
		return p;
	while (n < need)
		n *= 2;
	*cap = n;
	return xrealloc(p, n * size);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static size_t varint_len(uint64_t v)
{
	uint8_t tmp[10];

	return kheo_varint_encode(tmp, v);
}

/*
 * Bump allocator for everything built from the trace (strings, ops, field
 * and pred arrays): it all lives until exit, so it is never freed piecemeal.
 */
typedef struct arena_block {
	struct arena_block *next;
	max_align_t data[];
} arena_block;

typedef struct arena {
	arena_block *blocks;
	char *p;
	size_t left;
} arena;

static void *arena_alloc(arena *a, size_t n)
{
	const size_t align = sizeof(max_align_t);
	void *out;

	n = (n + align - 1) / align * align;
	if (n > a->left) {
		size_t size = n > ARENA_BLOCK ? n : ARENA_BLOCK;
		arena_block *b = xrealloc(NULL, sizeof(*b) + size);

		b->next = a->blocks;
		a->blocks = b;
		a->p = (char *)b->data;
		a->left = size;
	}
	out = a->p;
	a->p += n;
	a->left -= n;
	return out;
}

static void *arena_copy(arena *a, const void *p, size_t n, int nul)
{
	char *out = arena_alloc(a, n + (nul != 0));

	memcpy(out, p, n);
	if (nul)
		out[n] = 0;
	return out;
}

static void arena_free(arena *a)
{
	while (a->blocks) {
		arena_block *next = a->blocks->next;

		free(a->blocks);
		a->blocks = next;
	}
}

/*
 * Interned strings (field names, table names, units): few and repeated on
 * every op, so a linear list is enough, and pointers compare for equality.
 */
typedef struct strset {
	const char **s;
	size_t n, cap;
} strset;

static const char *intern(strset *set, arena *a, const char *s)
{
	size_t i;

	for (i = 0; i < set->n; i++)
		if (strcmp(set->s[i], s) == 0)
			return set->s[i];
	set->s = grow(set->s, &set->cap, set->n + 1, sizeof(*set->s));
	set->s[set->n] = arena_copy(a, s, strlen(s), 1);
	return set->s[set->n++];
}

/* ---------------------------------------------------------------- model */

/* A device's chain in one unit. */
typedef struct chain {
	const char *unit;
	uint64_t useq;
	size_t last;      /* index of its latest changeset */
} chain;

/* An op waiting to be sealed, with the unit of its record. */
typedef struct pending {
	kheo_op op;
	const char *unit;
} pending;

typedef struct device {
	const char *name;
	const char *home;   /* unit of its first put (interned) */
	uint8_t pk[KHEO_KEY_SIZE];
	uint8_t sk[KHEO_SECRET_SIZE];
	pending *pending;
	size_t npending, cap;
	chain *chains;
	size_t nchains, chains_cap;
} device;

/* The last write to one field of a record: the pred of the next. */
typedef struct last_write {
	const char *field;  /* interned */
	kheo_opid id;       /* key points into a device */
} last_write;

typedef struct record {
	uint8_t id[KHEO_RECORD_SIZE];
	int used;
	const char *unit;   /* interned: the unit of its put */
	last_write w[WRITES_MAX];
	size_t nw;
} record;

/* A sealed changeset; `prev` is filled from ids at encode time. */
typedef struct sealed {
	kheo_changeset cs;
	size_t prev;        /* index of the previous in its chain, or NO_PREV */
	size_t dev;
} sealed;

/* One way of framing every changeset. */
typedef struct mode {
	const char *name;
	kheo_codec *codec;
	kheo_buf frames;
	size_t *off, *len;
	double write_s, open_s;
} mode;

enum { M_STORED, M_ZSTD3, M_DICT, M_ZSTD19, M_COUNT };

/* Parts of the canonical encoding, for the breakdown. */
enum {
	P_AUTHOR, P_PREV, P_HEADER, P_KEYS,
	P_OPHEAD, P_TABLE, P_RECORD, P_NAMES, P_TEXT, P_VALUES, P_PRED,
	P_COUNT
};

static const char *const part_names[P_COUNT] = {
	"header: author key (32 B)",
	"header: previous id (32 B)",
	"header: unit, counters, clocks",
	"interned pred keys (32 B each)",
	"op kind + clock delta",
	"op table name (\"model\")",
	"op record id (16 B)",
	"field names (+ put field count)",
	"text values",
	"int/real/other values",
	"pred lists",
};

typedef struct bench {
	arena a;
	strset names, units;
	device *devs;
	size_t ndevs;
	record *recs;
	size_t nrecs, recs_cap;  /* capacity a power of two */
	uint64_t clock;

	sealed *cs;
	size_t ncs, cs_cap;
	size_t nops, nput, nset, ndel, nskipped, nlines;

	/* Output of the encode pass, per changeset. */
	kheo_buf raw;
	size_t *off, *len;
	uint8_t (*ids)[KHEO_ID_SIZE];
	uint8_t (*sigs)[KHEO_SIG_SIZE];
	/* What bare libsodium signs: context || id. */
	uint8_t (*msgs)[sizeof(KHEO_CTX_CHANGESET) - 1 + KHEO_ID_SIZE];
	uint8_t (*base_sigs)[KHEO_SIG_SIZE];

	size_t ntrain;          /* changesets [0, ntrain) train the dictionary */
	kheo_dict *dict;
	size_t dict_len;
	mode modes[M_COUNT];
	kheo_buf scratch, reenc;
} bench;

/* ---------------------------------------------------------------- trace */

static device *find_device(bench *b, const char *name)
{
	size_t i;

	for (i = 0; i < b->ndevs; i++)
		if (strcmp(b->devs[i].name, name) == 0)
			return &b->devs[i];
	return NULL;  /* a hub or the province: they author nothing here */
}

static void read_topology(bench *b, json_t *line)
{
	json_t *districts = json_object_get(line, "districts"), *d, *dev;
	size_t i, j, n = 0;

	if (!json_is_array(districts))
		fail("topology line without districts");
	json_array_foreach(districts, i, d)
		n += json_array_size(json_object_get(d, "devices"));
	b->devs = calloc(n ? n : 1, sizeof(*b->devs));
	if (!b->devs)
		fail("out of memory");
	json_array_foreach(districts, i, d)
		json_array_foreach(json_object_get(d, "devices"), j, dev) {
			device *v = &b->devs[b->ndevs++];
			const char *name = json_string_value(dev);
			uint8_t seed[crypto_sign_SEEDBYTES];

			if (!name)
				fail("topology: a device name is not a string");
			v->name = arena_copy(&b->a, name, strlen(name), 1);
			/* A key per device, the same in every run. */
			crypto_generichash(seed, sizeof(seed),
				(const uint8_t *)name, strlen(name), NULL, 0);
			if (crypto_sign_seed_keypair(v->pk, v->sk, seed) != 0)
				fail("crypto_sign_seed_keypair");
		}
}

/* The record with this id, or a free slot for it (never NULL). */
static record *record_slot(bench *b, const uint8_t id[KHEO_RECORD_SIZE])
{
	uint64_t h;
	size_t i, mask = b->recs_cap - 1;

	memcpy(&h, id, sizeof(h));  /* ids are random: any 8 bytes hash */
	for (i = (size_t)h & mask;; i = (i + 1) & mask)
		if (!b->recs[i].used ||
		    memcmp(b->recs[i].id, id, KHEO_RECORD_SIZE) == 0)
			return &b->recs[i];
}

static record *record_add(bench *b, const uint8_t id[KHEO_RECORD_SIZE])
{
	record *r;

	if (2 * (b->nrecs + 1) > b->recs_cap) {  /* keep the load below 1/2 */
		record *old = b->recs;
		size_t i, oldcap = b->recs_cap;

		b->recs_cap = oldcap ? 2 * oldcap : 1024;
		if (!(b->recs = calloc(b->recs_cap, sizeof(*b->recs))))
			fail("out of memory");
		for (i = 0; i < oldcap; i++)
			if (old[i].used)
				*record_slot(b, old[i].id) = old[i];
		free(old);
	}
	r = record_slot(b, id);
	if (r->used)
		fail("record put twice");
	r->used = 1;
	memcpy(r->id, id, KHEO_RECORD_SIZE);
	b->nrecs++;
	return r;
}

static record *record_find(bench *b, const uint8_t id[KHEO_RECORD_SIZE])
{
	record *r = b->recs_cap ? record_slot(b, id) : NULL;

	return r && r->used ? r : NULL;
}

static last_write *write_of(record *r, const char *field)
{
	size_t i;

	for (i = 0; i < r->nw; i++)
		if (r->w[i].field == field)
			return &r->w[i];
	return NULL;
}

/* Note (clock, key) as the latest write to `field` of `r`. */
static void note_write(record *r, const char *field, uint64_t clock,
	const uint8_t *key)
{
	last_write *w = write_of(r, field);

	if (!w) {
		if (r->nw == WRITES_MAX)
			fail("a record with more than %d fields", WRITES_MAX);
		w = &r->w[r->nw++];
		w->field = field;
	}
	w->id.clock = clock;
	w->id.key = key;
}

/* A JSON value as a kheo value; text is copied to the arena. */
static void to_value(bench *b, kheo_value *v, json_t *j, size_t line)
{
	memset(v, 0, sizeof(*v));
	if (json_is_string(j)) {
		v->type = KHEO_VAL_TEXT;
		v->len = json_string_length(j);
		v->p = arena_copy(&b->a, json_string_value(j), v->len, 1);
	} else if (json_is_integer(j)) {
		v->type = KHEO_VAL_INT;
		v->i = (int64_t)json_integer_value(j);
	} else if (json_is_real(j)) {
		v->type = KHEO_VAL_REAL;
		v->r = json_real_value(j);
	} else if (json_is_boolean(j)) {
		v->type = KHEO_VAL_BOOL;
		v->b = json_is_true(j);
	} else if (json_is_null(j)) {
		v->type = KHEO_VAL_NULL;
	} else {
		fail("line %zu: a value that is an array or object", line);
	}
}

static int field_cmp(const void *x, const void *y)
{
	return strcmp(((const kheo_field *)x)->name,
		((const kheo_field *)y)->name);
}

static const char *get_str(json_t *line, const char *key, size_t lineno)
{
	const char *s = json_string_value(json_object_get(line, key));

	if (!s)
		fail("line %zu: no string \"%s\"", lineno, key);
	return s;
}

/* Append an op of `dev` to its pending batch; its clock is the next one. */
static kheo_op *push_op(bench *b, device *dev, kheo_op_kind kind,
	json_t *line, size_t lineno, record **rec)
{
	const char *hex = get_str(line, "id", lineno);
	uint8_t id[KHEO_RECORD_SIZE];
	pending *p;

	if (kheo_unhex(id, KHEO_RECORD_SIZE, hex, strlen(hex)) != KHEO_OK)
		fail("line %zu: record id \"%s\" is not 32 hex digits", lineno,
			hex);
	if (kind == KHEO_OP_PUT)
		*rec = record_add(b, id);
	else if (!(*rec = record_find(b, id)))
		fail("line %zu: op on a record never put", lineno);
	dev->pending = grow(dev->pending, &dev->cap, dev->npending + 1,
		sizeof(*p));
	p = &dev->pending[dev->npending++];
	memset(p, 0, sizeof(*p));
	p->op.kind = kind;
	p->op.clock = ++b->clock;  /* one global clock: every pred is older */
	p->op.table = intern(&b->names, &b->a, get_str(line, "table", lineno));
	memcpy(p->op.record, id, KHEO_RECORD_SIZE);
	b->nops++;
	return &p->op;
}

static void set_pred(bench *b, kheo_op *op, record *r, const char *field)
{
	last_write *w = write_of(r, field);

	if (w) {
		kheo_opid *pred = arena_alloc(&b->a, sizeof(*pred));

		*pred = w->id;
		op->pred = pred;
		op->npred = 1;
	}
}

static void read_put(bench *b, device *dev, json_t *line, size_t lineno)
{
	json_t *fields = json_object_get(line, "fields"), *value;
	const char *key, *unit;
	kheo_field *f;
	record *r;
	kheo_op *op;
	size_t n = 0, i;

	if (!json_is_object(fields))
		fail("line %zu: put without fields", lineno);
	op = push_op(b, dev, KHEO_OP_PUT, line, lineno, &r);
	unit = get_str(fields, "unit", lineno);
	r->unit = intern(&b->units, &b->a, unit);
	dev->pending[dev->npending - 1].unit = r->unit;
	if (!dev->home)
		dev->home = r->unit;
	f = arena_alloc(&b->a, json_object_size(fields) * sizeof(*f));
	json_object_foreach(fields, key, value) {
		if (strcmp(key, "updated_by") == 0)
			continue;  /* the author key says who */
		f[n].name = intern(&b->names, &b->a, key);
		to_value(b, &f[n].value, value, lineno);
		n++;
	}
	qsort(f, n, sizeof(*f), field_cmp);  /* the encoder refuses unsorted */
	for (i = 0; i < n; i++)
		note_write(r, f[i].name, op->clock, dev->pk);
	op->fields = f;
	op->nfields = n;
	b->nput++;
}

static void read_set(bench *b, device *dev, json_t *line, size_t lineno)
{
	const char *field = get_str(line, "field", lineno);
	kheo_field *f;
	record *r;
	kheo_op *op;

	if (strcmp(field, "updated_by") == 0) {
		b->nskipped++;
		return;
	}
	op = push_op(b, dev, KHEO_OP_SET, line, lineno, &r);
	dev->pending[dev->npending - 1].unit = r->unit;
	f = arena_alloc(&b->a, sizeof(*f));
	f->name = intern(&b->names, &b->a, field);
	to_value(b, &f->value, json_object_get(line, "value"), lineno);
	op->fields = f;
	op->nfields = 1;
	set_pred(b, op, r, f->name);
	note_write(r, f->name, op->clock, dev->pk);
	b->nset++;
}

static void read_del(bench *b, device *dev, json_t *line, size_t lineno)
{
	const char *deleted = intern(&b->names, &b->a, "_deleted");
	record *r;
	kheo_op *op;

	op = push_op(b, dev, KHEO_OP_DELETE, line, lineno, &r);
	dev->pending[dev->npending - 1].unit = r->unit;
	set_pred(b, op, r, deleted);
	note_write(r, deleted, op->clock, dev->pk);
	b->ndel++;
}

static chain *chain_of(device *dev, const char *unit)
{
	chain *c;
	size_t i;

	for (i = 0; i < dev->nchains; i++)
		if (dev->chains[i].unit == unit)
			return &dev->chains[i];
	dev->chains = grow(dev->chains, &dev->chains_cap, dev->nchains + 1,
		sizeof(*c));
	c = &dev->chains[dev->nchains++];
	c->unit = unit;
	c->useq = 0;
	c->last = NO_PREV;
	return c;
}

/* Seal a device's pending ops: one changeset per unit they touch. */
static void seal(bench *b, device *dev)
{
	size_t i, j, n, k;

	for (i = 0; i < dev->npending; i++) {
		const char *unit = dev->pending[i].unit;
		kheo_op *ops;
		sealed *s;
		chain *c;

		for (j = 0; j < i && dev->pending[j].unit != unit; j++)
			;
		if (j < i)
			continue;  /* this unit was sealed already */
		for (n = 0, j = i; j < dev->npending; j++)
			n += dev->pending[j].unit == unit;
		ops = arena_alloc(&b->a, n * sizeof(*ops));
		for (k = 0, j = i; j < dev->npending; j++)
			if (dev->pending[j].unit == unit)
				ops[k++] = dev->pending[j].op;

		c = chain_of(dev, unit);
		b->cs = grow(b->cs, &b->cs_cap, b->ncs + 1, sizeof(*b->cs));
		s = &b->cs[b->ncs];
		memset(s, 0, sizeof(*s));
		s->cs.version = KHEO_CS_VERSION;
		memcpy(s->cs.author, dev->pk, KHEO_KEY_SIZE);
		s->cs.unit = unit;
		s->cs.schema_version = 1;
		s->cs.useq = ++c->useq;
		s->cs.ops = ops;
		s->cs.nops = n;
		s->prev = c->last;
		s->dev = (size_t)(dev - b->devs);
		c->last = b->ncs++;
	}
	dev->npending = 0;
}

static void read_trace(bench *b, const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0, i;
	ssize_t n;
	int ended = 0;

	if (!f)
		fail("cannot open %s", path);
	b->clock = CLOCK_START;
	while ((n = getline(&buf, &cap, f)) > 0) {
		size_t lineno = ++b->nlines;
		json_error_t jerr;
		json_t *line = json_loadb(buf, (size_t)n, 0, &jerr);
		const char *op;
		device *dev = NULL;

		if (!line)
			fail("%s:%zu: %s", path, lineno, jerr.text);
		op = get_str(line, "op", lineno);
		if (strcmp(op, "put") == 0 || strcmp(op, "set") == 0 ||
		    strcmp(op, "del") == 0) {
			if (!(dev = find_device(b, get_str(line, "dev",
				      lineno))))
				fail("line %zu: op by a node that is not a "
				     "device", lineno);
		}
		if (strcmp(op, "topology") == 0)
			read_topology(b, line);
		else if (strcmp(op, "put") == 0)
			read_put(b, dev, line, lineno);
		else if (strcmp(op, "set") == 0)
			read_set(b, dev, line, lineno);
		else if (strcmp(op, "del") == 0)
			read_del(b, dev, line, lineno);
		else if (strcmp(op, "sync") == 0) {
			device *x = find_device(b, get_str(line, "a", lineno));
			device *y = find_device(b, get_str(line, "b", lineno));

			if (x)
				seal(b, x);
			if (y)
				seal(b, y);
		} else if (strcmp(op, "end") == 0)
			ended = 1;
		else
			fail("line %zu: unknown op \"%s\"", lineno, op);
		json_decref(line);
	}
	free(buf);
	if (ferror(f))
		fail("reading %s failed", path);
	fclose(f);
	if (!ended)
		fail("%s has no \"end\" line: truncated?", path);
	for (i = 0; i < b->ndevs; i++)
		seal(b, &b->devs[i]);
	if (b->ncs == 0)
		fail("%s holds no ops", path);
}

/* --------------------------------------------------------------- passes */

/* Encode, hash and sign every changeset in seal order. */
static void pass_encode(bench *b, mode *unused)
{
	kheo_refusal why;
	size_t i;
	int err;

	(void)unused;
	kheo_buf_reset(&b->raw);
	for (i = 0; i < b->ncs; i++) {
		sealed *s = &b->cs[i];

		if (s->prev != NO_PREV)
			memcpy(s->cs.prev, b->ids[s->prev], KHEO_ID_SIZE);
		b->off[i] = b->raw.len;
		if ((err = kheo_changeset_encode(&b->raw, &s->cs, &why)) < 0)
			fail("changeset %zu does not encode: %s (%s): %s", i,
				kheo_error_name(err),
				kheo_reason_name(why.reason), why.msg);
		b->len[i] = b->raw.len - b->off[i];
		kheo_changeset_id(b->ids[i], b->raw.p + b->off[i], b->len[i]);
		kheo_changeset_sign(b->sigs[i], b->ids[i],
			b->devs[s->dev].sk);
	}
}

static void pass_bare_sign(bench *b, mode *unused)
{
	size_t i;

	(void)unused;
	for (i = 0; i < b->ncs; i++)
		crypto_sign_detached(b->base_sigs[i], NULL, b->msgs[i],
			sizeof(b->msgs[i]), b->devs[b->cs[i].dev].sk);
}

static void pass_bare_verify(bench *b, mode *unused)
{
	size_t i;

	(void)unused;
	for (i = 0; i < b->ncs; i++)
		if (crypto_sign_verify_detached(b->sigs[i], b->msgs[i],
			    sizeof(b->msgs[i]), b->devs[b->cs[i].dev].pk) != 0)
			fail("bare verify of changeset %zu failed", i);
}

static void pass_frame(bench *b, mode *m)
{
	size_t i;
	int err;

	kheo_buf_reset(&m->frames);
	for (i = 0; i < b->ncs; i++) {
		m->off[i] = m->frames.len;
		if ((err = kheo_frame_write(m->codec, &m->frames,
			     b->raw.p + b->off[i], b->len[i], b->sigs[i])) < 0)
			fail("%s: changeset %zu does not frame: %s", m->name,
				i, kheo_error_name(err));
		m->len[i] = m->frames.len - m->off[i];
	}
}

static kheo_changeset *open_frame(bench *b, mode *m, size_t i,
	uint8_t id[KHEO_ID_SIZE])
{
	kheo_changeset *cs;
	kheo_refusal why;
	int err;

	if ((err = kheo_frame_open(m->codec, &cs, id, &b->scratch,
		     m->frames.p + m->off[i], m->len[i], &why)) < 0)
		fail("%s: frame %zu does not open: %s (%s): %s", m->name, i,
			kheo_error_name(err), kheo_reason_name(why.reason),
			why.msg);
	return cs;
}

/* Read, decompress, decode, hash and verify every frame. */
static void pass_open(bench *b, mode *m)
{
	uint8_t id[KHEO_ID_SIZE];
	size_t i;

	for (i = 0; i < b->ncs; i++)
		kheo_changeset_free(open_frame(b, m, i, id));
}

/*
 * Untimed: every frame opens to the bytes, id and signature that were
 * sealed, and its decoded changeset re-encodes to the same bytes.
 */
static void check_frames(bench *b, mode *m)
{
	uint8_t id[KHEO_ID_SIZE];
	kheo_refusal why;
	size_t i;
	int err;

	for (i = 0; i < b->ncs; i++) {
		kheo_changeset *cs = open_frame(b, m, i, id);

		if (memcmp(id, b->ids[i], KHEO_ID_SIZE) != 0 ||
		    b->scratch.len != b->len[i] ||
		    memcmp(b->scratch.p, b->raw.p + b->off[i], b->len[i]) != 0)
			fail("%s: frame %zu opens to other bytes", m->name, i);
		kheo_buf_reset(&b->reenc);
		if ((err = kheo_changeset_encode(&b->reenc, cs, &why)) < 0)
			fail("%s: decoded changeset %zu does not re-encode: "
			     "%s: %s", m->name, i,
				kheo_reason_name(why.reason), why.msg);
		if (b->reenc.len != b->len[i] ||
		    memcmp(b->reenc.p, b->raw.p + b->off[i], b->len[i]) != 0)
			fail("%s: changeset %zu re-encodes to other bytes "
			     "(%zu, was %zu)", m->name, i, b->reenc.len,
				b->len[i]);
		kheo_changeset_free(cs);
	}
}

/* A timed pass and the fastest run it made. */
typedef struct timed {
	void (*pass)(bench *, mode *);
	mode *m;
	double best;
} timed;

static void run_timed(bench *b, timed *t, int first)
{
	double t0 = now(), s;

	t->pass(b, t->m);
	s = now() - t0;
	if (first || s < t->best)
		t->best = s;
}

/*
 * Time passes in rounds, each pass once per round, and keep each one's
 * fastest run.  Interleaving puts a baseline and its subjects under the
 * same load, and the best run rather than the mean, because other work on a
 * shared machine only ever slows a run down.
 */
static void time_rounds(bench *b, timed *t, size_t n)
{
	double start = now();
	unsigned round = 0;
	size_t i;

	do {
		for (i = 0; i < n; i++)
			run_timed(b, &t[i], round == 0);
		round++;
	} while (round < ROUNDS_MIN ||
		(round < ROUNDS_MAX && now() - start < ROUNDS_SECONDS));
}

/* -------------------------------------------------------------- figures */

/* Bytes of the canonical encoding of value v, tag included. */
static size_t value_len(const kheo_value *v)
{
	switch (v->type) {
	case KHEO_VAL_INT: {
		uint64_t u = (uint64_t)v->i;

		return 1 + varint_len((u << 1) ^ (uint64_t)(v->i >> 63));
	}
	case KHEO_VAL_REAL: return 1 + 8;
	case KHEO_VAL_TEXT:
	case KHEO_VAL_BYTES: return 1 + varint_len(v->len) + v->len;
	case KHEO_VAL_HASH: return 1 + 32;
	default: return 1;
	}
}

/* A pred's key index: 0 the author, else 1 + its rank in the key table. */
static size_t key_index(const kheo_changeset *cs, const uint8_t **keys,
	size_t nkeys, const uint8_t *key)
{
	size_t i, rank = 1;

	if (memcmp(key, cs->author, KHEO_KEY_SIZE) == 0)
		return 0;
	for (i = 0; i < nkeys; i++)
		rank += memcmp(keys[i], key, KHEO_KEY_SIZE) < 0;
	return rank;
}

static size_t str_len(const char *s)
{
	return varint_len(strlen(s)) + strlen(s);
}

/*
 * Add the parts of changeset i's canonical bytes to `parts`, recomputed
 * from docs/protocol.md section 4; also per op kind to kind_bytes.  Returns
 * the total, which must equal the encoder's length for the breakdown to be
 * trusted (it is a reading of the spec, not of the encoder).
 */
static size_t account(const bench *b, size_t i, size_t parts[P_COUNT],
	size_t kind_bytes[KIND_SLOTS])
{
	const kheo_changeset *cs = &b->cs[i].cs;
	const uint8_t *keys[KHEO_CS_KEYS_MAX];
	size_t nkeys = 0, total = 0, k, j, p, add[P_COUNT] = { 0 };
	uint64_t prev_clock = cs->ops[0].clock;

	for (k = 0; k < cs->nops; k++)
		for (j = 0; j < cs->ops[k].npred; j++) {
			const uint8_t *key = cs->ops[k].pred[j].key;

			if (memcmp(key, cs->author, KHEO_KEY_SIZE) == 0)
				continue;
			for (p = 0; p < nkeys && memcmp(keys[p], key,
						     KHEO_KEY_SIZE); p++)
				;
			if (p == nkeys && nkeys < KHEO_CS_KEYS_MAX)
				keys[nkeys++] = key;
		}
	add[P_AUTHOR] = KHEO_KEY_SIZE;
	add[P_PREV] = cs->useq > 1 ? KHEO_ID_SIZE : 0;
	add[P_HEADER] = varint_len(cs->version) + str_len(cs->unit) +
		varint_len(cs->schema_version) + varint_len(cs->useq) +
		varint_len(cs->nparents) + cs->nparents * KHEO_ID_SIZE +
		varint_len(cs->ops[0].clock) +
		varint_len(cs->ops[cs->nops - 1].clock - cs->ops[0].clock) +
		varint_len(nkeys) + varint_len(cs->nops);
	add[P_KEYS] = nkeys * KHEO_KEY_SIZE;
	for (k = 0; k < cs->nops; k++) {
		const kheo_op *op = &cs->ops[k];
		size_t before = 0, after = 0;

		for (p = P_OPHEAD; p < P_COUNT; p++)
			before += add[p];
		add[P_OPHEAD] += 1 + varint_len(op->clock - prev_clock);
		prev_clock = op->clock;
		add[P_TABLE] += str_len(op->table);
		add[P_RECORD] += KHEO_RECORD_SIZE;
		if (op->kind == KHEO_OP_PUT)
			add[P_NAMES] += varint_len(op->nfields);
		for (j = 0; j < op->nfields; j++) {
			const kheo_value *v = &op->fields[j].value;

			add[P_NAMES] += str_len(op->fields[j].name);
			add[v->type == KHEO_VAL_TEXT ? P_TEXT : P_VALUES] +=
				value_len(v);
		}
		add[P_PRED] += varint_len(op->npred);
		for (j = 0; j < op->npred; j++)
			add[P_PRED] += varint_len(op->clock -
					       op->pred[j].clock) +
				varint_len(key_index(cs, keys, nkeys,
					op->pred[j].key));
		for (p = P_OPHEAD; p < P_COUNT; p++)
			after += add[p];
		if ((unsigned)op->kind < KIND_SLOTS)
			kind_bytes[op->kind] += after - before;
	}
	for (p = 0; p < P_COUNT; p++) {
		parts[p] += add[p];
		total += add[p];
	}
	return total;
}

static size_t sum_len(const size_t *len, size_t from, size_t to)
{
	size_t s = 0;

	for (; from < to; from++)
		s += len[from];
	return s;
}

static size_t sum_ops(const bench *b, size_t from, size_t to)
{
	size_t s = 0;

	for (; from < to; from++)
		s += b->cs[from].cs.nops;
	return s;
}

/* Compress `n` bytes as one zstd stream (window as a frame's): its size. */
static size_t stream_size(const uint8_t *p, size_t n, int level)
{
	ZSTD_CCtx *z = ZSTD_createCCtx();
	size_t bound = ZSTD_compressBound(n), got;
	void *out = xrealloc(NULL, bound);

	if (!z)
		fail("ZSTD_createCCtx");
	ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(z, ZSTD_c_windowLog, KHEO_ZSTD_WINDOW_LOG);
	got = ZSTD_compress2(z, out, bound, p, n);
	if (ZSTD_isError(got))
		fail("zstd: %s", ZSTD_getErrorName(got));
	ZSTD_freeCCtx(z);
	free(out);
	return got;
}

static void print_speed(const char *label, double base_s, double s,
	size_t ncs, size_t nops)
{
	if (nops)
		printf("  %-36s %10.0f %11.0f %8.2f\n", label,
			(double)ncs / s, (double)nops / s, base_s / s);
	else  /* a baseline: no ops */
		printf("  %-36s %10.0f %11s %8.2f\n", label,
			(double)ncs / s, "-", base_s / s);
}

static void print_size(const char *label, size_t bytes, size_t nops,
	size_t raw)
{
	printf("  %-44s %11zu %8.1f %7.3f\n", label, bytes,
		(double)bytes / (double)nops, (double)bytes / (double)raw);
}

/* The size table over changesets [from, to). */
static void print_sizes(bench *b, size_t from, size_t to, int with_dict)
{
	size_t nops = sum_ops(b, from, to), raw = sum_len(b->len, from, to);
	mode *st = &b->modes[M_STORED];
	char label[64];
	int i;

	printf("  %-44s %11s %8s %7s\n", "", "bytes", "B/op", "x raw");
	print_size("canonical changesets (unsigned, unframed)", raw, nops,
		raw);
	for (i = 0; i < M_COUNT; i++) {
		if (i == M_DICT && !with_dict)
			continue;
		snprintf(label, sizeof(label), "frames, %s", b->modes[i].name);
		print_size(label, sum_len(b->modes[i].len, from, to), nops,
			raw);
	}
	print_size("ref: stored frames as one zstd -3 stream",
		stream_size(st->frames.p + st->off[from],
			st->off[to - 1] + st->len[to - 1] - st->off[from], 3),
		nops, raw);
}

static void print_breakdown(bench *b)
{
	size_t parts[P_COUNT] = { 0 }, kind_bytes[KIND_SLOTS] = { 0 };
	size_t i, total = 0;
	size_t raw = sum_len(b->len, 0, b->ncs);
	mode *st = &b->modes[M_STORED];
	size_t framing = sum_len(st->len, 0, b->ncs) - raw, head, dict_head = 0;
	mode *dm = &b->modes[M_DICT];

	/* The dictionary frame's header, read back: magic, flags, [id],
	 * size varint, signature (docs/protocol.md section 5). */
	for (i = 0; i < b->ncs; i++)
		dict_head += KHEO_FRAME_MAGIC_SIZE + 1 +
			(dm->frames.p[dm->off[i] + KHEO_FRAME_MAGIC_SIZE] &
					KHEO_FRAME_F_DICT ? KHEO_ID_SIZE : 0) +
			varint_len(b->len[i]) + KHEO_SIG_SIZE;

	for (i = 0; i < b->ncs; i++)
		if (account(b, i, parts, kind_bytes) != b->len[i]) {
			printf("\ncanonical bytes by part: skipped, the "
			       "breakdown no longer matches the encoder\n"
			       "  (changeset %zu; docs/protocol.md changed?)\n",
				i);
			return;
		}
	printf("\ncanonical bytes by part, whole trace (%zu ops):\n",
		b->nops);
	printf("  %-44s %8s %7s\n", "", "B/op", "share");
	for (i = 0; i < P_COUNT; i++) {
		printf("  %-44s %8.1f %6.1f%%\n", part_names[i],
			(double)parts[i] / (double)b->nops,
			100.0 * (double)parts[i] / (double)raw);
		total += parts[i];
	}
	head = parts[P_AUTHOR] + parts[P_PREV] + parts[P_HEADER] +
		parts[P_KEYS];
	printf("  %-44s %8.1f %6.1f%%\n", "total", (double)total /
		(double)b->nops, 100.0);
	printf("  ops alone, by kind: put %.1f B/op (%zu), set %.1f B/op (%zu),"
	       " delete %.1f B/op (%zu)\n",
		b->nput ? (double)kind_bytes[KHEO_OP_PUT] / (double)b->nput : 0,
		b->nput,
		b->nset ? (double)kind_bytes[KHEO_OP_SET] / (double)b->nset : 0,
		b->nset,
		b->ndel ? (double)kind_bytes[KHEO_OP_DELETE] / (double)b->ndel
			: 0, b->ndel);
	printf("paid once per changeset%*s B/op   B/changeset\n", 25, "");
	printf("  %-44s %8.1f %13.1f\n",
		"changeset header and interned keys (above)",
		(double)head / (double)b->nops, (double)head / (double)b->ncs);
	printf("  %-44s %8.1f %13.1f\n", "frame header + signature, stored",
		(double)framing / (double)b->nops,
		(double)framing / (double)b->ncs);
	printf("  %-44s %8.1f %13.1f\n",
		"frame header + signature, with dictionary",
		(double)dict_head / (double)b->nops,
		(double)dict_head / (double)b->ncs);
}

/* ----------------------------------------------------------------- main */

static void setup_modes(bench *b)
{
	static const char *const names[M_COUNT] = {
		"stored", "zstd -3", "zstd -3 + dict", "zstd -19" };
	static const int levels[M_COUNT] = { 0, 3, 3, 19 };
	size_t i, train_ops = 0, want = (size_t)(TRAIN_SHARE * (double)b->nops);
	uint8_t *dict;
	int err;

	/* Train on the changesets sealed first, up to ~20% of the ops; the
	 * rest is held out to measure on. */
	for (b->ntrain = 0; b->ntrain < b->ncs && train_ops < want; b->ntrain++)
		train_ops += b->cs[b->ntrain].cs.nops;
	if (b->ntrain == 0 || b->ntrain == b->ncs)
		fail("trace too small to hold out a training share");
	/* Training changesets lie first and contiguous in b->raw. */
	if ((err = kheo_dict_train(&dict, &b->dict_len, DICT_CAPACITY,
		     b->raw.p, b->len, b->ntrain)) < 0)
		fail("kheo_dict_train: %s", kheo_error_name(err));
	if ((err = kheo_dict_new(&b->dict, dict, b->dict_len, 3)) < 0)
		fail("kheo_dict_new: %s", kheo_error_name(err));
	kheo__free(dict);

	for (i = 0; i < M_COUNT; i++) {
		mode *m = &b->modes[i];

		m->name = names[i];
		if ((err = kheo_codec_new(&m->codec, levels[i])) < 0)
			fail("kheo_codec_new: %s", kheo_error_name(err));
		if (i == M_DICT) {
			kheo_codec_use_dict(m->codec, b->dict);
			if (kheo_codec_add_dict(m->codec, b->dict) < 0)
				fail("out of memory");
		}
		m->off = xrealloc(NULL, b->ncs * sizeof(*m->off));
		m->len = xrealloc(NULL, b->ncs * sizeof(*m->len));
	}
}

static void cleanup(bench *b)
{
	size_t i;

	for (i = 0; i < M_COUNT; i++) {
		kheo_codec_free(b->modes[i].codec);
		kheo_buf_free(&b->modes[i].frames);
		free(b->modes[i].off);
		free(b->modes[i].len);
	}
	kheo_dict_free(b->dict);
	for (i = 0; i < b->ndevs; i++) {
		free(b->devs[i].pending);
		free(b->devs[i].chains);
	}
	free(b->devs);
	free(b->recs);
	free(b->cs);
	free(b->names.s);
	free(b->units.s);
	free(b->off);
	free(b->len);
	free(b->ids);
	free(b->sigs);
	free(b->msgs);
	free(b->base_sigs);
	kheo_buf_free(&b->raw);
	kheo_buf_free(&b->scratch);
	kheo_buf_free(&b->reenc);
	arena_free(&b->a);
}

int main(int argc, char **argv)
{
	static const char ctx[] = KHEO_CTX_CHANGESET;
	static bench bb;
	bench *b = &bb;
	const char *label;
	/* Everything but zstd -19 framing, which is too slow to repeat. */
	timed t[] = {
		{ pass_bare_sign, NULL, 0 },
		{ pass_encode, NULL, 0 },
		{ pass_bare_verify, NULL, 0 },
		{ pass_frame, &b->modes[M_STORED], 0 },
		{ pass_frame, &b->modes[M_ZSTD3], 0 },
		{ pass_frame, &b->modes[M_DICT], 0 },
		{ pass_open, &b->modes[M_STORED], 0 },
		{ pass_open, &b->modes[M_ZSTD3], 0 },
		{ pass_open, &b->modes[M_DICT], 0 },
		{ pass_open, &b->modes[M_ZSTD19], 0 },
	};
	const double *t_sign = &t[0].best, *t_enc = &t[1].best;
	const double *t_verify = &t[2].best;
	timed t19 = { pass_frame, &b->modes[M_ZSTD19], 0 };
	double t0;
	size_t i, max_ops = 0, nsingle = 0, nforeign = 0, nforeign1 = 0;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: bench_proto TRACE.jsonl [LABEL]\n");
		return 2;
	}
	label = argc == 3 ? argv[2] : argv[1];
	if (sodium_init() < 0)
		fail("sodium_init");

	t0 = now();
	read_trace(b, argv[1]);
	for (i = 0; i < b->ncs; i++) {
		if (b->cs[i].cs.nops > max_ops)
			max_ops = b->cs[i].cs.nops;
		nsingle += b->cs[i].cs.nops == 1;
		if (b->cs[i].cs.unit != b->devs[b->cs[i].dev].home) {
			nforeign++;
			nforeign1 += b->cs[i].cs.nops == 1;
		}
	}
	printf("== %s\n", label);
	printf("trace: %zu lines, %zu devices, %zu records; ops: %zu put, "
	       "%zu set, %zu delete (%zu updated_by sets skipped)\n",
		b->nlines, b->ndevs, b->nrecs, b->nput, b->nset, b->ndel,
		b->nskipped);
	printf("sealed: %zu changesets, %zu ops (%.1f ops per changeset, "
	       "max %zu, %zu with a single op); read in %.1f s\n",
		b->ncs, b->nops, (double)b->nops / (double)b->ncs, max_ops,
		nsingle, now() - t0);
	printf("  %zu changesets are in a unit other than their author's "
	       "own (edits of a\n  neighbour's record); %zu of those hold a "
	       "single op\n", nforeign, nforeign1);

	b->off = xrealloc(NULL, b->ncs * sizeof(*b->off));
	b->len = xrealloc(NULL, b->ncs * sizeof(*b->len));
	b->ids = xrealloc(NULL, b->ncs * sizeof(*b->ids));
	b->sigs = xrealloc(NULL, b->ncs * sizeof(*b->sigs));
	b->msgs = xrealloc(NULL, b->ncs * sizeof(*b->msgs));
	b->base_sigs = xrealloc(NULL, b->ncs * sizeof(*b->base_sigs));

	/* A first, untimed encode gives the ids the baselines sign. */
	pass_encode(b, NULL);
	for (i = 0; i < b->ncs; i++) {
		memcpy(b->msgs[i], ctx, sizeof(ctx) - 1);
		memcpy(b->msgs[i] + sizeof(ctx) - 1, b->ids[i], KHEO_ID_SIZE);
	}
	pass_bare_sign(b, NULL);
	for (i = 0; i < b->ncs; i++)
		if (memcmp(b->base_sigs[i], b->sigs[i], KHEO_SIG_SIZE) != 0)
			fail("changeset %zu: kheo's signature is not "
			     "Ed25519 over context || id", i);

	setup_modes(b);
	printf("dictionary: %zu B, trained on the first %zu changesets "
	       "(%zu ops); held out: %zu changesets, %zu ops\n",
		b->dict_len, b->ntrain, sum_ops(b, 0, b->ntrain),
		b->ncs - b->ntrain, sum_ops(b, b->ntrain, b->ncs));
	for (i = 0; i < M_COUNT; i++) {
		if (i == M_ZSTD19)
			run_timed(b, &t19, 1);
		else
			pass_frame(b, &b->modes[i]);
		check_frames(b, &b->modes[i]);
	}
	time_rounds(b, t, sizeof(t) / sizeof(t[0]));
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].m && t[i].pass == pass_frame)
			t[i].m->write_s = t[i].best;
		else if (t[i].m)
			t[i].m->open_s = t[i].best;
	b->modes[M_ZSTD19].write_s = t19.best;
	printf("checked: every frame opens to its bytes, id and signature, "
	       "and re-encodes identically (%d modes)\n", M_COUNT);

	printf("\nspeed: ratio = time of bare libsodium / time, both in "
	       "this run\n(open = read frame, decompress, decode, id, "
	       "verify)\n");
	printf("  %-36s %10s %11s %8s\n", "", "cs/s", "ops/s", "ratio");
	print_speed("bare crypto_sign_detached (49 B)", *t_sign, *t_sign,
		b->ncs, 0);
	print_speed("encode + id + sign", *t_sign, *t_enc, b->ncs, b->nops);
	for (i = 0; i < M_COUNT; i++) {
		char what[64];

		snprintf(what, sizeof(what), "  + frame, %s",
			b->modes[i].name);
		print_speed(what, *t_sign, *t_enc + b->modes[i].write_s, b->ncs,
			b->nops);
	}
	print_speed("bare crypto_sign_verify_detached", *t_verify, *t_verify,
		b->ncs, 0);
	for (i = 0; i < M_COUNT; i++) {
		char what[64];

		snprintf(what, sizeof(what), "open, %s",
			b->modes[i].name);
		print_speed(what, *t_verify, b->modes[i].open_s, b->ncs,
			b->nops);
	}

	printf("\nsize, held out (%zu changesets, %zu ops):\n",
		b->ncs - b->ntrain, sum_ops(b, b->ntrain, b->ncs));
	print_sizes(b, b->ntrain, b->ncs, 1);
	printf("size, whole trace (%zu changesets, %zu ops):\n", b->ncs,
		b->nops);
	print_sizes(b, 0, b->ncs, 0);
	print_breakdown(b);

	cleanup(b);
	return 0;
}
