/*
 * bench_core.c - libkheo's local edit and receive-and-merge rates on a
 * ../shared/bench trace, each printed as a ratio against a baseline run in
 * the same process.
 *
 *   bench_core TRACE.jsonl SCRATCH_DIR
 *
 * 1. Local edits.  Baseline: plain SQLite upserts of the same rows (one
 *    table of the trace's columns, WAL, synchronous=FULL, batches of 1000
 *    in a transaction).  kheo: the same puts, sets and deletes as local
 *    edits of one node (schema checks, NFC, clocks, pending ops, merge,
 *    materialisation), in batches of 1000 (kheo_batch_*).  Figure: field
 *    sets per second, and kheo time / SQLite time (target <= 2).
 * 2. Receive and merge.  Every device of the trace edits the records it
 *    created (edits of others' records are left out: this bench has no
 *    sync between devices) and seals at each of its sync lines; a fresh
 *    hub then receives every device's changesets (verify, decompress,
 *    decode, chain, merge, materialise).  Figure: ops per second, and the
 *    time against the bare Ed25519 verifications of the same changesets.
 *
 * No pass/fail on time: figures only.  Exits 1 if anything is refused.
 */
#include "kheo.h"
#include "proto.h"
#include "trace.h"

#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_core: %s: %s\n", what, msg);
	exit(1);
}

/* ------------------------------------------------------ SQLite baseline */

static const char *const columns[] = { "name", "kind", "field", "level",
	"unit", "status", "year", "description", "beneficiaries", "lat", "lon",
	"updated_by" };
#define NCOL 12

static int column_of(const char *f)
{
	int i;

	for (i = 0; i < NCOL; i++)
		if (strcmp(columns[i], f) == 0)
			return i;
	return -1;
}

static void bind_json(sqlite3_stmt *st, int col, json_t *v)
{
	if (json_is_string(v))
		sqlite3_bind_text(st, col, json_string_value(v), -1,
			SQLITE_STATIC);
	else if (json_is_integer(v))
		sqlite3_bind_int64(st, col, json_integer_value(v));
	else if (json_is_real(v))
		sqlite3_bind_double(st, col, json_real_value(v));
	else
		sqlite3_bind_null(st, col);
}

static double sqlite_baseline(const trace_line *l, size_t n, const char *dir,
	size_t *sets)
{
	char path[1024];
	sqlite3 *db;
	sqlite3_stmt *put, *upd[NCOL], *del;
	size_t i, batch = 0;
	double t0;
	int c;

	snprintf(path, sizeof(path), "%s/baseline.db", dir);
	remove(path);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		die(path, "open");
	sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
		"CREATE TABLE model(id TEXT PRIMARY KEY, name, kind, field,"
		" level, unit, status, year, description, beneficiaries, lat,"
		" lon, updated_by, deleted INTEGER DEFAULT 0)", NULL, NULL, NULL);
	sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO model(id, name, kind,"
		" field, level, unit, status, year, description, beneficiaries,"
		" lat, lon, updated_by) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)", -1,
		&put, NULL);
	for (c = 0; c < NCOL; c++) {
		char sql[128];

		snprintf(sql, sizeof(sql),
			"UPDATE model SET \"%s\" = ?1 WHERE id = ?2", columns[c]);
		sqlite3_prepare_v2(db, sql, -1, &upd[c], NULL);
	}
	sqlite3_prepare_v2(db, "UPDATE model SET deleted = 1 WHERE id = ?1",
		-1, &del, NULL);
	*sets = 0;
	t0 = now_s();
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	for (i = 0; i < n; i++) {
		json_t *f;

		if (l[i].op == 'p') {
			f = json_object_get(l[i].j, "fields");
			sqlite3_reset(put);
			sqlite3_bind_text(put, 1, l[i].id, -1, SQLITE_STATIC);
			for (c = 0; c < NCOL; c++)
				bind_json(put, c + 2,
					json_object_get(f, columns[c]));
			sqlite3_step(put);
			*sets += NCOL;
		} else if (l[i].op == 's' &&
			   (c = column_of(l[i].field)) >= 0) {
			sqlite3_reset(upd[c]);
			bind_json(upd[c], 1, json_object_get(l[i].j, "value"));
			sqlite3_bind_text(upd[c], 2, l[i].id, -1, SQLITE_STATIC);
			sqlite3_step(upd[c]);
			(*sets)++;
		} else if (l[i].op == 'd') {
			sqlite3_reset(del);
			sqlite3_bind_text(del, 1, l[i].id, -1, SQLITE_STATIC);
			sqlite3_step(del);
		} else {
			continue;
		}
		if (++batch == 1000) {
			sqlite3_exec(db, "COMMIT; BEGIN", NULL, NULL, NULL);
			batch = 0;
		}
	}
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	t0 = now_s() - t0;
	sqlite3_finalize(put);
	sqlite3_finalize(del);
	for (c = 0; c < NCOL; c++)
		sqlite3_finalize(upd[c]);
	sqlite3_close(db);
	return t0;
}

/* ------------------------------------------------------------ kheo edits */

static kheo_db *make_node(const char *dir, const char *name,
	kheo_node_role role, const char *unit)
{
	kheo_init_options init = KHEO_INIT_OPTIONS_INIT;
	char path[1024];
	kheo_db *db;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	init.role = role;
	init.unit = unit;
	if (kheo_db_init(&db, path, &init, NULL) < 0)
		die("init", kheo_errmsg(db));
	return db;
}

/* Apply one trace line as a local edit; 1 if applied, 0 if a no-op. */
static int edit(kheo_db *db, const trace_line *l)
{
	int n = trace_edit(db, l->j);

	if (n < 0)
		die("edit", kheo_errmsg(db));
	return n;
}

static double kheo_edits(const trace_line *l, size_t n, const char *dir,
	size_t *applied)
{
	kheo_db *db = make_node(dir, "editor", KHEO_NODE_DEVICE, "dak-nong");
	size_t i, batch = 0;
	double t0 = now_s();

	*applied = 0;
	kheo_batch_begin(db);
	for (i = 0; i < n; i++) {
		*applied += (size_t)edit(db, &l[i]);
		if (++batch == 1000) {
			if (kheo_batch_commit(db) < 0 || kheo_batch_begin(db) < 0)
				die("batch", kheo_errmsg(db));
			batch = 0;
		}
	}
	if (kheo_batch_commit(db) < 0)
		die("batch", kheo_errmsg(db));
	t0 = now_s() - t0;
	kheo_db_close(db);
	return t0;
}

/* -------------------------------------------------------- receive, merge */

typedef struct device {
	char name[32];
	kheo_db *db;
	char **ids;      /* records it created */
	size_t nids;
} device;

static int owns(const device *d, const char *id)
{
	size_t i;

	for (i = 0; i < d->nids; i++)
		if (strcmp(d->ids[i], id) == 0)
			return 1;
	return 0;
}

static void receive_bench(const trace_line *l, size_t n, const char *dir)
{
	device devs[256];
	size_t ndev = 0, i, j, total_frames = 0, cap = 0, ops = 0, bytes = 0;
	const uint8_t **frames = NULL;
	size_t *lens = NULL;
	kheo_buf *files;
	kheo_apply_stats st = { 0 };
	kheo_db *hub;
	double t, tsig;

	memset(devs, 0, sizeof(devs));
	for (i = 0; i < n; i++) {
		device *d = NULL;

		if (l[i].op == 'y') {
			/* seal at each sync of a device, as a phone would;
			 * its edits in between are one batch (one fsync) */
			for (j = 0; j < ndev; j++)
				if (strcmp(devs[j].name, l[i].dev) == 0 ||
				    strcmp(devs[j].name, l[i].dev2) == 0) {
					if (kheo_commit(devs[j].db, NULL) < 0 ||
					    kheo_batch_commit(devs[j].db) < 0 ||
					    kheo_batch_begin(devs[j].db) < 0)
						die("seal",
							kheo_errmsg(devs[j].db));
				}
			continue;
		}
		for (j = 0; j < ndev; j++)
			if (strcmp(devs[j].name, l[i].dev) == 0)
				d = &devs[j];
		if (!d) {
			char node[64], *s;

			if (ndev == 256)
				die("bench", "too many devices");
			d = &devs[ndev++];
			snprintf(d->name, sizeof(d->name), "%s", l[i].dev);
			snprintf(node, sizeof(node), "dev-%s", l[i].dev);
			for (s = node; *s; s++)
				if (*s == '/')
					*s = '-';
			d->db = make_node(dir, node, KHEO_NODE_DEVICE,
				"dak-nong");
			kheo_batch_begin(d->db);
		}
		if (l[i].op == 'p') {
			d->ids = realloc(d->ids, (d->nids + 1) * sizeof(char *));
			d->ids[d->nids++] = strdup(l[i].id);
		} else if (!owns(d, l[i].id)) {
			continue; /* another device's record: no sync here */
		}
		edit(d->db, &l[i]);
	}
	/* every device's changesets, as files, then read into memory */
	files = calloc(ndev, sizeof(*files));
	for (j = 0; j < ndev; j++) {
		char path[1024];
		kheo_bundle *b;
		FILE *f;
		uint8_t chunk[65536];
		size_t got;

		kheo_batch_commit(devs[j].db);
		snprintf(path, sizeof(path), "%s/dev%zu.bundle", dir, j);
		if (kheo_bundle_create(devs[j].db, path, NULL, NULL) < 0)
			die("bundle", kheo_errmsg(devs[j].db));
		f = fopen(path, "rb");
		while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
			kheo_buf_put(&files[j], chunk, got);
		fclose(f);
		if (kheo_bundle_decode(&b, files[j].p, files[j].len, NULL) < 0)
			die("bundle", "decode");
		for (i = 0; i < b->nframes; i++) {
			if (total_frames == cap) {
				cap = cap ? 2 * cap : 1024;
				frames = realloc(frames, cap * sizeof(*frames));
				lens = realloc(lens, cap * sizeof(*lens));
			}
			frames[total_frames] = b->frames[i];
			lens[total_frames++] = b->lens[i];
			bytes += b->lens[i];
		}
		kheo_bundle_free(b);
		kheo_db_close(devs[j].db);
	}

	/* baseline: the bare signature checks of the same changesets */
	{
		kheo_codec *c;
		kheo_buf raw = { 0 };
		uint8_t sig[64], id[32], pk[32], sk[64], msg[49];

		kheo_codec_new(&c, 3);
		crypto_sign_keypair(pk, sk);
		memcpy(msg, "kheo/changeset/v1", 17);
		memset(msg + 17, 7, 32);
		crypto_sign_detached(sig, NULL, msg, 49, sk);
		tsig = now_s();
		for (i = 0; i < total_frames; i++)
			if (crypto_sign_verify_detached(sig, msg, 49, pk) != 0)
				die("bench", "verify");
		tsig = now_s() - tsig;
		(void)id;
		kheo_buf_free(&raw);
		kheo_codec_free(c);
	}

	hub = make_node(dir, "hub", KHEO_NODE_HUB, "dak-nong");
	t = now_s();
	if (kheo_apply(hub, frames, lens, total_frames, &st) < 0)
		die("apply", kheo_errmsg(hub));
	t = now_s() - t;
	ops = st.ops;
	if (st.rejected || st.held)
		die("apply", "changesets held or rejected");
	printf("receive and merge at a hub: %zu changesets from %zu devices, "
	       "%zu ops, %.1f MB framed\n", total_frames, ndev, ops,
		(double)bytes / 1e6);
	printf("  kheo_apply                 %8.3f s  %9.0f ops/s  %8.0f "
	       "changesets/s\n", t, (double)ops / t, (double)total_frames / t);
	printf("  bare Ed25519 verify        %8.3f s  (baseline: the "
	       "signatures alone)\n", tsig);
	printf("  ratio apply / verify       %8.1fx\n", t / tsig);
	printf("  target                     >= 100000 ops/s per core\n");
	kheo_db_close(hub);
	for (j = 0; j < ndev; j++) {
		for (i = 0; i < devs[j].nids; i++)
			free(devs[j].ids[i]);
		free(devs[j].ids);
		kheo_buf_free(&files[j]);
	}
	free(files);
	free((void *)frames);
	free(lens);
}

int main(int argc, char **argv)
{
	size_t n, sets, applied, i;
	double tsql, tkheo;
	trace_line *l;

	if (argc != 3) {
		fprintf(stderr, "usage: bench_core TRACE.jsonl SCRATCH_DIR\n");
		return 2;
	}
	if (sodium_init() < 0)
		return 1;
	mkdir(argv[2], 0700);
	l = trace_load(argv[1], &n);
	tsql = sqlite_baseline(l, n, argv[2], &sets);
	tkheo = kheo_edits(l, n, argv[2], &applied);
	printf("local edits: %zu trace ops (%zu applied as edits), %zu field "
	       "sets\n", n, applied, sets);
	printf("  plain SQLite upserts       %8.3f s  %9.0f field sets/s\n",
		tsql, (double)sets / tsql);
	printf("  kheo edits (batched)       %8.3f s  %9.0f field sets/s\n",
		tkheo, (double)sets / tkheo);
	printf("  ratio kheo / SQLite        %8.2fx   (target <= 2x, and "
	       ">= 200000 field sets/s)\n", tkheo / tsql);
	receive_bench(l, n, argv[2]);
	for (i = 0; i < n; i++)
		json_decref(l[i].j);
	free(l);
	return 0;
}
