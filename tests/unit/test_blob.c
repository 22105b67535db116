/*
 * test_blob.c - attachments: the blob store (client-core/src/blob.c), its
 * sync messages (proto/msg.c) and blobs in sync sessions, on real nodes in
 * one process; the session bytes are carried by the test, which cuts them.
 *
 * Issue 8's tests: a 20 MB set of photos from device to hub to province
 * with the link cut every few chunks (at least 30 cuts each hop), every
 * blob intact and at most one chunk re-sent per cut, measured; a chunk
 * with flipped bytes, a blob whose whole does not hash to its name, a
 * chunk for a blob no record names, a chunk above the limit: refused,
 * with a clear error, nothing stored; a --no-blobs device sees the
 * records and lists their blobs as missing.
 */
#include "nodes.h"
#include "proto.h"
#include "blob.h"

#include <dirent.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROVINCE TEST_PROVINCE
#define DISTRICT TEST_DISTRICT
#define COMMUNE TEST_COMMUNE
#define MB (1024u * 1024)

static int teardown(void **state)
{
	(void)state;
	test_cleanup();
	return 0;
}

typedef struct sopts {
	int client_no_blobs, server_no_blobs;
	uint64_t server_blob_max;
} sopts;

/* A session from client c to server s; stats of both; the client's end. */
static kheo_session_state run(test_node *c, test_node *s, test_link *l,
	const sopts *opt, kheo_session_stats *cst, kheo_session_stats *sst)
{
	kheo_session_options co = KHEO_SESSION_OPTIONS_INIT;
	kheo_session_options so = KHEO_SESSION_OPTIONS_INIT;
	kheo_session *a, *b;
	kheo_session_state sa;

	co.initiator = 1;
	if (opt) {
		co.no_blobs = opt->client_no_blobs;
		so.no_blobs = opt->server_no_blobs;
		so.blob_bytes_max = opt->server_blob_max;
	}
	if (kheo_session_new(&a, c->db, &co) < 0)
		fail_msg("client session: %s", kheo_errmsg(c->db));
	if (kheo_session_new(&b, s->db, &so) < 0)
		fail_msg("server session: %s", kheo_errmsg(s->db));
	session_pump(a, b, l);
	sa = kheo_session_status(a, cst);
	kheo_session_status(b, sst);
	if (!l->cut && (sa != KHEO_SESSION_DONE ||
			       kheo_session_status(b, NULL) !=
				       KHEO_SESSION_DONE))
		fail_msg("session: %s / %s", kheo_session_error(a),
			kheo_session_error(b));
	kheo_session_free(a);
	kheo_session_free(b);
	return sa;
}

/* n bytes that look like a JPEG and do not compress. */
static uint8_t *photo(size_t n, unsigned seed)
{
	uint8_t *p = malloc(n), key[32] = { 0 };

	key[0] = (uint8_t)seed;
	key[1] = (uint8_t)(seed >> 8);
	randombytes_buf_deterministic(p, n, key);
	p[0] = 0xff;
	p[1] = 0xd8;
	p[2] = 0xff;
	return p;
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0)
		fail_msg("write %s", path);
}

static uint8_t *read_back(test_node *n, const char *hash, size_t *len)
{
	char path[600];
	uint8_t *p;
	FILE *f;
	long sz;

	snprintf(path, sizeof(path), "%s/out.bin", test_scratch());
	if (kheo_blob_get(n->db, hash, path, NULL) < 0)
		fail_msg("blob get %s: %s", hash, kheo_errmsg(n->db));
	f = fopen(path, "rb");
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	p = malloc((size_t)sz + 1);
	if (fread(p, 1, (size_t)sz, f) != (size_t)sz)
		fail_msg("read back");
	fclose(f);
	*len = (size_t)sz;
	return p;
}

/* Attach n bytes (made by photo(n, seed)) to field of record id. */
static void attach(test_node *d, const char *id, const char *field,
	size_t n, unsigned seed, char hash[65])
{
	char path[600];
	uint8_t *p = photo(n, seed);
	kheo_blob_info info;

	snprintf(path, sizeof(path), "%s/in-%u.jpg", test_scratch(), seed);
	write_file(path, p, n);
	free(p);
	if (kheo_attach(d->db, "model", id, field, path, NULL, &info) < 0)
		fail_msg("attach: %s", kheo_errmsg(d->db));
	assert_int_equal(info.size, n);
	assert_string_equal(info.type, "jpeg");
	snprintf(hash, 65, "%s", info.hash);
}

static size_t missing_count(test_node *n)
{
	char *text;
	json_t *a;
	size_t k;

	if (kheo_blob_missing_json(n->db, &text) < 0)
		fail_msg("missing: %s", kheo_errmsg(n->db));
	a = json_loads(text, 0, NULL);
	k = json_array_size(a);
	json_decref(a);
	kheo_free(text);
	return k;
}

static int complete_here(test_node *n, const char *hex)
{
	uint8_t h[32];
	int complete = 0;

	kheo_unhex(h, 32, hex, 64);
	return kheo__blob_state(n->db, h, NULL, NULL, &complete) == KHEO_OK &&
	       complete;
}

static int held_here(test_node *n, const char *hex)
{
	uint8_t h[32];

	kheo_unhex(h, 32, hex, 64);
	return kheo__blob_state(n->db, h, NULL, NULL, NULL) == KHEO_OK;
}

/* Files under n's blobs folder for hash hex (chunk files). */
static int files_of(test_node *n, const char *hex)
{
	char path[700];
	struct dirent *e;
	DIR *dir;
	int k = 0;

	snprintf(path, sizeof(path), "%s/blobs/%.2s/%s", n->dir, hex, hex);
	if (!(dir = opendir(path)))
		return 0;
	while ((e = readdir(dir)))
		k += e->d_name[0] != '.';
	closedir(dir);
	return k;
}

/* --------------------------------------------------------------- store */

static void attach_checks_type_size_and_field(void **state)
{
	test_node d;
	char id[KHEO_RECORD_HEX + 1], path[600], hash[65];
	kheo_attach_options o = KHEO_ATTACH_OPTIONS_INIT;
	kheo_blob_info info;
	uint8_t *p;
	size_t n;
	json_t *r;

	(void)state;
	node_make(&d, "d", COMMUNE, KHEO_NODE_DEVICE);
	node_put(&d, id, "model", "name=Vườn cà phê", "unit=" COMMUNE, NULL);
	/* not a JPEG, PNG, PDF or WebP */
	snprintf(path, sizeof(path), "%s/notes.txt", test_scratch());
	write_file(path, (const uint8_t *)"just text", 9);
	assert_int_equal(kheo_attach(d.db, "model", id, "photos", path, NULL,
				 NULL), KHEO_EINVAL);
	assert_non_null(strstr(kheo_errmsg(d.db), "not a JPEG, PNG, PDF"));
	/* above the cap */
	p = photo(300000, 1);
	snprintf(path, sizeof(path), "%s/big.jpg", test_scratch());
	write_file(path, p, 300000);
	o.max_bytes = 200000;
	assert_int_equal(kheo_attach(d.db, "model", id, "photos", path, &o,
				 NULL), KHEO_ELIMIT);
	assert_non_null(strstr(kheo_errmsg(d.db), "above the limit"));
	/* not a hash field */
	assert_int_equal(kheo_attach(d.db, "model", id, "name", path, NULL,
				 NULL), KHEO_EINVAL);
	assert_non_null(strstr(kheo_errmsg(d.db), "not an attachment field"));
	assert_int_equal(missing_count(&d), 0);
	/* accepted: into the set, and as the decision scan */
	assert_int_equal(kheo_attach(d.db, "model", id, "photos", path, NULL,
				 &info), KHEO_OK);
	assert_int_equal(info.chunks, (300000 + KHEO_BLOB_CHUNK - 1) /
					      KHEO_BLOB_CHUNK);
	/* a JPEG does not shrink: stored as it is */
	assert_int_equal(info.stored, 300000);
	snprintf(hash, sizeof(hash), "%s", info.hash);
	r = node_get(&d, "model", id);
	assert_string_equal(json_string_value(json_array_get(json_object_get(r,
				    "photos"), 0)), hash);
	json_decref(r);
	{
		uint8_t *back = read_back(&d, hash, &n);

		assert_int_equal(n, 300000);
		assert_memory_equal(back, p, n);
		free(back);
	}
	free(p);
	/* a PDF of text shrinks: its chunks are stored compressed */
	{
		size_t len = 200000, i;
		uint8_t *pdf = malloc(len);

		memcpy(pdf, "%PDF-1.4\n", 9);
		for (i = 9; i < len; i++)
			pdf[i] = "Quyết định công nhận "[i % 20];
		snprintf(path, sizeof(path), "%s/scan.pdf", test_scratch());
		write_file(path, pdf, len);
		assert_int_equal(kheo_attach(d.db, "model", id,
					 "decision_scan", path, NULL, &info),
			KHEO_OK);
		assert_string_equal(info.type, "pdf");
		assert_true(info.stored < len / 10);
		free(pdf);
	}
	node_close(&d);
}

/*
 * The four refusals, through the one door every chunk from a peer or a
 * bundle goes through (kheo__blob_receive): nothing stored, no file left,
 * a message that says what was wrong.
 */
static void bad_chunks_are_refused_and_nothing_stored(void **state)
{
	test_node p, h, d;
	test_link l = { 0 };
	sopts none = { 0, 1, 0 };
	char id[KHEO_RECORD_HEX + 1], a[65], b[65];
	uint8_t ha[32], hb[32], chash[32], bogus[32];
	kheo_buf data = { 0 };
	uint64_t size, i, n;
	int z, completed;

	(void)state;
	node_tiers(&p, &h, &d);
	node_put(&d, id, "model", "name=Mô hình", "unit=" COMMUNE, NULL);
	attach(&d, id, "photos", 200000, 11, a);
	attach(&d, id, "photos", 200000, 12, b);
	/* the hub gets the record, not the blobs */
	run(&d, &h, &l, &none, NULL, NULL);
	kheo_unhex(ha, 32, a, 64);
	kheo_unhex(hb, 32, b, 64);
	assert_false(held_here(&h, a));
	assert_int_equal(missing_count(&h), 2);

	/* 1. a chunk with flipped bytes */
	if (kheo__blob_chunk_read(d.db, ha, 1, &data, &z, chash, &size) < 0)
		fail_msg("%s", kheo_errmsg(d.db));
	data.p[100] ^= 0x20;
	assert_int_equal(kheo__blob_receive(h.db, ha, size, 1, z, chash,
				 data.p, data.len, &completed),
		KHEO_ECORRUPT);
	assert_non_null(strstr(kheo_errmsg(h.db), "do not match its hash"));
	assert_false(complete_here(&h, a));

	/* 2. a chunk above the limit (and a stored chunk of the wrong
	 * length) */
	{
		uint8_t *big = calloc(1, KHEO_BLOB_CHUNK + 1);

		crypto_generichash(chash, 32, big, KHEO_BLOB_CHUNK + 1, NULL,
			0);
		assert_int_equal(kheo__blob_receive(h.db, hb, 200000, 0, 0,
					 chash, big, KHEO_BLOB_CHUNK + 1,
					 &completed),
			KHEO_ELIMIT);
		assert_non_null(strstr(kheo_errmsg(h.db), "above the limit"));
		free(big);
	}

	/* 3. a chunk for a blob no record names */
	memset(bogus, 0x5a, sizeof(bogus));
	if (kheo__blob_chunk_read(d.db, ha, 0, &data, &z, chash, &size) < 0)
		fail_msg("%s", kheo_errmsg(d.db));
	assert_int_equal(kheo__blob_receive(h.db, bogus, size, 0, z, chash,
				 data.p, data.len, &completed),
		KHEO_EINVAL);
	assert_non_null(strstr(kheo_errmsg(h.db), "no record here names it"));
	{
		char bx[65];

		kheo_hex(bx, bogus, 32);
		assert_false(held_here(&h, bx));
		assert_int_equal(files_of(&h, bx), 0);
	}

	/* 4. a blob whose hash does not match: a's chunks, each sound, sent
	 * as b (same size) — refused when the last one comes, and what came
	 * before it goes too */
	n = (200000 + KHEO_BLOB_CHUNK - 1) / KHEO_BLOB_CHUNK;
	for (i = 0; i < n; i++) {
		int err;

		if (kheo__blob_chunk_read(d.db, ha, i, &data, &z, chash,
			    &size) < 0)
			fail_msg("%s", kheo_errmsg(d.db));
		err = kheo__blob_receive(h.db, hb, size, i, z, chash, data.p,
			data.len, &completed);
		if (i + 1 < n) {
			assert_int_equal(err, KHEO_OK);
			assert_true(held_here(&h, b));
		} else {
			assert_int_equal(err, KHEO_ECORRUPT);
			assert_non_null(strstr(kheo_errmsg(h.db),
				"do not hash to its name"));
		}
	}
	assert_false(held_here(&h, b));
	assert_int_equal(files_of(&h, b), 0);
	kheo_buf_free(&data);

	/* and after all that, a clean sync brings both, intact */
	memset(&l, 0, sizeof(l));
	run(&d, &h, &l, NULL, NULL, NULL);
	assert_true(complete_here(&h, a));
	assert_true(complete_here(&h, b));
	assert_int_equal(missing_count(&h), 0);
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/* A damaged chunk on the sender's disk: the receiver refuses that blob,
 * says why, keeps nothing of it, and still takes the others. */
static void damaged_chunk_in_a_session_is_refused(void **state)
{
	test_node p, h, d;
	test_link l = { 0 };
	kheo_session_stats cs, ss;
	char id[KHEO_RECORD_HEX + 1], a[65], b[65], path[800];
	FILE *f;
	int c;

	(void)state;
	node_tiers(&p, &h, &d);
	node_put(&d, id, "model", "name=Mô hình", "unit=" COMMUNE, NULL);
	attach(&d, id, "photos", 150000, 21, a);
	attach(&d, id, "photos", 150000, 22, b);
	snprintf(path, sizeof(path), "%s/blobs/%.2s/%s/1", d.dir, a, a);
	f = fopen(path, "r+b");
	assert_non_null(f);
	fseek(f, 500, SEEK_SET);
	c = fgetc(f);
	fseek(f, 500, SEEK_SET);
	fputc(c ^ 1, f);
	fclose(f);
	run(&d, &h, &l, NULL, &cs, &ss);
	assert_int_equal(ss.blobs_refused, 1);
	assert_non_null(strstr(ss.blob_error, "do not match its hash"));
	assert_int_equal(ss.blobs_completed, 1);
	assert_true(complete_here(&h, b));
	assert_false(complete_here(&h, a));
	assert_int_equal(missing_count(&h), 1);
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/* ------------------------------------------------------------- prune */

/* sys_blob_ack records naming blob hex that node n holds applied. */
static int acks_here(test_node *n, const char *hex)
{
	sqlite3_stmt *st;
	int k = -1;

	if (sqlite3_prepare_v2(n->db->sql, "SELECT count(*) FROM sys_blob_ack"
		    " WHERE blob = ?1 AND _deleted = 0", -1, &st, NULL) !=
	    SQLITE_OK)
		fail_msg("acks: %s", sqlite3_errmsg(n->db->sql));
	sqlite3_bind_text(st, 1, hex, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		k = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return k;
}

static kheo_prune_stats prune(test_node *n, unsigned days)
{
	kheo_prune_stats ps;

	memset(&ps, 0xff, sizeof(ps));
	if (kheo_blob_prune(n->db, days, &ps) < 0)
		fail_msg("prune: %s", kheo_errmsg(n->db));
	return ps;
}

static void advance(test_node **v, size_t n, int64_t ms)
{
	size_t i;

	for (i = 0; i < n; i++)
		v[i]->now += ms;
}

/*
 * A photo a device took off its record stays on the device and the hub
 * until the province, holding it whole, has acknowledged it; the
 * acknowledgement (a sys_blob_ack of the province, in the record's unit)
 * comes down with the records, to the hub and the device but not to a
 * device of another commune; then prune removes it there.  The province
 * prunes by age alone.  An acknowledgement a collector writes is refused,
 * and prunes nothing.
 */
static void prune_waits_for_the_province(void **state)
{
	test_node p, h, d, e;
	test_node *all[] = { &p, &h, &d, &e };
	test_link l = { 0 };
	kheo_prune_stats ps;
	char id[KHEO_RECORD_HEX + 1], id2[KHEO_RECORD_HEX + 1], a[65], b[65];
	char rm[80];
	const int64_t day = 86400000;

	(void)state;
	node_tiers(&p, &h, &d);
	node_make(&e, "e", DISTRICT "/nam-dong", KHEO_NODE_DEVICE);
	node_enroll(&h, &e, "collector", DISTRICT "/nam-dong");
	node_put(&d, id, "model", "name=Mô hình", "unit=" COMMUNE, NULL);
	attach(&d, id, "photos", 100000, 71, a);
	run(&d, &h, &l, NULL, NULL, NULL);
	run(&h, &p, &l, NULL, NULL, NULL);
	assert_true(complete_here(&p, a));

	/* the device takes the photo off before the province's word */
	snprintf(rm, sizeof(rm), "photos-=%s", a);
	node_set(&d, "model", id, rm);
	run(&d, &h, &l, NULL, NULL, NULL);
	advance(all, 4, 31 * day);
	ps = prune(&d, 30);
	assert_int_equal(ps.pruned, 0);
	assert_int_equal(ps.unacked, 1);
	ps = prune(&h, 30);
	assert_int_equal(ps.pruned, 0);
	assert_int_equal(ps.unacked, 1);
	assert_true(complete_here(&d, a));
	assert_true(complete_here(&h, a));

	/* the province seals (a commit, as each sync does): its word goes
	 * in the commune's unit, down to the hub, then the device */
	assert_int_equal(acks_here(&p, a), 0);
	if (kheo_commit(p.db, NULL) < 0)
		fail_msg("commit: %s", kheo_errmsg(p.db));
	assert_int_equal(acks_here(&p, a), 1);
	run(&h, &p, &l, NULL, NULL, NULL);
	assert_int_equal(acks_here(&h, a), 1);
	run(&d, &h, &l, NULL, NULL, NULL);
	assert_int_equal(acks_here(&d, a), 1);
	run(&e, &h, &l, NULL, NULL, NULL);
	assert_int_equal(acks_here(&e, a), 0);

	/* the age rule still holds: too young, kept */
	ps = prune(&d, 100);
	assert_int_equal(ps.pruned, 0);
	assert_int_equal(ps.unacked, 0);
	ps = prune(&d, 30);
	assert_int_equal(ps.pruned, 1);
	assert_true(ps.bytes >= 100000);
	assert_false(held_here(&d, a));
	assert_int_equal(files_of(&d, a), 0);
	ps = prune(&h, 30);
	assert_int_equal(ps.pruned, 1);
	assert_false(held_here(&h, a));

	/* the province: by age alone, once no record there names it */
	ps = prune(&p, 30);
	assert_int_equal(ps.pruned, 1);
	assert_false(held_here(&p, a));

	/* an "acknowledgement" by anyone but the province: refused as an
	 * edit on an enrolled device, and refused by the hub when it comes
	 * from a device that wrote it before it was enrolled (open mode
	 * checks nothing) */
	{
		char rid[KHEO_RECORD_HEX + 1];
		kheo_assign f[4] = {
			{ "blob", KHEO_ASSIGN_SET, a },
			{ "unit", KHEO_ASSIGN_SET, COMMUNE },
			{ "size", KHEO_ASSIGN_SET, "100000" },
			{ "acked_at", KHEO_ASSIGN_SET, "1" },
		};
		test_node o;
		kheo_session_stats cs, ss;

		assert_true(kheo_put(d.db, rid, "sys_blob_ack", NULL, f, 4) <
			    0);
		assert_non_null(strstr(kheo_errmsg(d.db),
			"sys_blob_ack may be written only by the province"));

		node_make(&o, "o", COMMUNE, KHEO_NODE_DEVICE);
		o.now = d.now;
		node_put(&o, id2, "model", "name=Khác", "unit=" COMMUNE, NULL);
		attach(&o, id2, "photos", 80000, 72, b);
		/* sealed apart: the record's changeset is sound */
		if (kheo_commit(o.db, NULL) < 0)
			fail_msg("commit: %s", kheo_errmsg(o.db));
		f[0].value = b;
		f[2].value = "80000";
		if (kheo_put(o.db, rid, "sys_blob_ack", NULL, f, 4) < 0)
			fail_msg("open-mode put: %s", kheo_errmsg(o.db));
		node_enroll(&h, &o, "collector", COMMUNE);
		run(&o, &h, &l, NULL, &cs, &ss);
		assert_int_equal(ss.apply.rejected, 1);
		assert_true(complete_here(&h, b));
		assert_int_equal(acks_here(&h, b), 0);
		/* o's next changesets wait behind the refused one: the
		 * commune's other device takes the photo off */
		run(&d, &h, &l, NULL, NULL, NULL);
		snprintf(rm, sizeof(rm), "photos-=%s", b);
		node_set(&d, "model", id2, rm);
		run(&d, &h, &l, NULL, NULL, NULL);
		advance(all, 4, 31 * day);
		ps = prune(&h, 30);
		assert_int_equal(ps.pruned, 0);
		assert_int_equal(ps.unacked, 1);
		assert_true(complete_here(&h, b));
		node_close(&o);
	}
	node_close(&p);
	node_close(&h);
	node_close(&d);
	node_close(&e);
}

/* ------------------------------------------- a peer that breaks the rules */

/* What a broken device does to the messages it sends (tamper, below). */
typedef struct breakage {
	int what;
	int done;                          /* times it broke something */
	uint8_t other[32];                 /* a hash nobody asked for */
	uint8_t *big;                      /* data above the limit */
} breakage;

enum { UNASKED_CHUNK = 1, HAVE_UNNAMED, CHUNK_TOO_BIG, CHUNK_FLIPPED,
       END_IN_V1 };

static int tamper(void *arg, kheo_msg *m)
{
	breakage *b = arg;

	if (b->done)
		return 0; /* once: then it behaves */
	if (b->what == HAVE_UNNAMED && m->type == KHEO_MSG_HAVE && m->want.n) {
		/* a blob no record in the session's scope names, alone:
		 * other holds one hash */
		m->want.hashes = b->other;
		m->want.n = 1;
		b->done = 1;
	}
	if (m->type != KHEO_MSG_CHUNK)
		return 0;
	switch (b->what) {
	case UNASKED_CHUNK:
		/* a chunk of another blob than the one the hub asked for:
		 * one no record names */
		memcpy(m->blob.hash, b->other, 32);
		b->done = 1;
		break;
	case CHUNK_TOO_BIG:
		m->blob.z = 1;
		m->blob.p = b->big;
		m->blob.n = KHEO_SYNC_BLOB_CHUNK + KHEO_SYNC_CHUNK_SLACK + 1;
		b->done = 1;
		break;
	case CHUNK_FLIPPED:
		memcpy(b->big, m->blob.p, m->blob.n);
		b->big[m->blob.n / 2] ^= 0x20;
		m->blob.p = b->big;
		b->done = 1;
		break;
	}
	return 0;
}

/* END_IN_V1: once the device's HELLO is out, an END the version it
 * spoke does not have (session_pump calls this before each round). */
typedef struct injection {
	kheo_session *a;
	breakage *b;
} injection;

static void inject_end(void *arg)
{
	injection *in = arg;
	kheo_msg m = { .type = KHEO_MSG_END };

	if (!in->b || in->b->what != END_IN_V1 || in->b->done ||
	    kheo_session_status(in->a, NULL) != KHEO_SESSION_SYNCING)
		return;
	kheo__session_inject(in->a, &m);
	in->b->done = 1;
}

/*
 * A session from device c, which breaks the protocol as b says, to hub
 * s, in one process; both sides' final states and errors.
 */
static void run_broken(test_node *c, test_node *s, breakage *b,
	unsigned client_version, unsigned server_version,
	kheo_session_state *cstate, kheo_session_state *sstate,
	kheo_session_stats *sst, char *serr)
{
	kheo_session_options co = KHEO_SESSION_OPTIONS_INIT;
	kheo_session_options so = KHEO_SESSION_OPTIONS_INIT;
	kheo_session *a, *h;
	injection inj = { NULL, NULL };
	test_link l = { 0 };

	co.initiator = 1;
	if (kheo_session_new(&a, c->db, &co) < 0 ||
	    kheo_session_new(&h, s->db, &so) < 0)
		fail_msg("session: %s / %s", kheo_errmsg(c->db),
			kheo_errmsg(s->db));
	if (client_version)
		kheo__session_speak(a, client_version);
	if (server_version)
		kheo__session_speak(h, server_version);
	if (b)
		kheo__session_tamper(a, tamper, b);
	inj.a = a;
	inj.b = b;
	l.each_round = inject_end;
	l.arg = &inj;
	session_pump(a, h, &l);
	*cstate = kheo_session_status(a, NULL);
	*sstate = kheo_session_status(h, sst);
	/* the server's error, or the client's when only it failed */
	snprintf(serr, 400, "%s", *sstate == KHEO_SESSION_FAILED
					  ? kheo_session_error(h)
					  : kheo_session_error(a));
	kheo_session_free(a);
	kheo_session_free(h);
}

/* The hub's memory of the device: how its last session ended. */
static void last_error_of(test_node *hub, test_node *dev, char *out,
	size_t len)
{
	char key[65], *text;
	json_t *o, *peers;
	size_t i;

	out[0] = '\0';
	node_id_hex(dev, "key", key);
	if (kheo_status_json(hub->db, &text) < 0)
		fail_msg("status: %s", kheo_errmsg(hub->db));
	o = json_loads(text, 0, NULL);
	peers = json_object_get(o, "peers");
	for (i = 0; i < json_array_size(peers); i++) {
		json_t *p = json_array_get(peers, i);
		json_t *e = json_object_get(p, "last_error");

		if (strcmp(json_string_value(json_object_get(p, "key")),
			    key) == 0 && json_is_string(e))
			snprintf(out, len, "%s", json_string_value(e));
	}
	json_decref(o);
	kheo_free(text);
}

/*
 * A device that breaks the blob protocol in a live session, four ways:
 * a CHUNK the hub did not ask for, a HAVE naming a blob no record in the
 * session's scope names, a chunk above the limit, a chunk whose bytes do
 * not match.  Each is refused with a clear error, nothing of it is
 * stored, the hub remembers why, and the next honest session between the
 * two brings every blob whole.
 */
static void peer_breaking_the_blob_protocol_is_refused(void **state)
{
	static const struct {
		int what;
		int session_fails;     /* else: that blob refused, rest goes on */
		const char *error;
	} cases[] = {
		{ UNASKED_CHUNK, 1, "not asked for" },
		{ HAVE_UNNAMED, 1, "HAVE names a blob we did not ask for" },
		{ CHUNK_TOO_BIG, 1, "above the limit" },
		{ CHUNK_FLIPPED, 0, "do not match its hash" },
	};
	size_t k;

	(void)state;
	for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		test_node p, h, d;
		breakage b = { .what = cases[k].what };
		kheo_session_state cst, sst;
		kheo_session_stats ss;
		char id[KHEO_RECORD_HEX + 1], a[65], c[65], other[65];
		char serr[400], last[400];
		test_link l = { 0 };

		node_tiers(&p, &h, &d);
		node_put(&d, id, "model", "name=Mô hình", "unit=" COMMUNE,
			NULL);
		attach(&d, id, "photos", 150000, 41, a);
		attach(&d, id, "photos", 70000, 42, c);
		/* a blob the device holds that no record names */
		{
			char id2[KHEO_RECORD_HEX + 1], rm[80];

			node_put(&d, id2, "model", "name=Khác",
				"unit=" COMMUNE, NULL);
			attach(&d, id2, "photos", 60000, 43, other);
			snprintf(rm, sizeof(rm), "photos-=%s", other);
			node_set(&d, "model", id2, rm);
		}
		kheo_unhex(b.other, 32, other, 64);
		b.big = calloc(1, KHEO_SYNC_BLOB_CHUNK +
					  KHEO_SYNC_CHUNK_SLACK + 1);
		run_broken(&d, &h, &b, 0, 0, &cst, &sst, &ss, serr);
		assert_int_equal(b.done, 1);
		if (cases[k].session_fails) {
			assert_int_equal(sst, KHEO_SESSION_FAILED);
			assert_int_equal(cst, KHEO_SESSION_FAILED);
			if (!strstr(serr, cases[k].error))
				fail_msg("case %zu: %s", k, serr);
			last_error_of(&h, &d, last, sizeof(last));
			assert_non_null(strstr(last, cases[k].error));
		} else {
			assert_int_equal(sst, KHEO_SESSION_DONE);
			assert_int_equal(ss.blobs_refused, 1);
			assert_non_null(strstr(ss.blob_error,
				cases[k].error));
		}
		/* nothing of what was refused is kept; never the other */
		assert_false(held_here(&h, other));
		assert_int_equal(files_of(&h, other), 0);
		if (cases[k].what != CHUNK_FLIPPED) {
			assert_false(complete_here(&h, a));
			assert_int_equal(files_of(&h, a), 0);
		}
		/* the records came first, and the next session heals */
		assert_int_equal(missing_count(&h) > 0, 1);
		run(&d, &h, &l, NULL, NULL, NULL);
		assert_true(complete_here(&h, a));
		assert_true(complete_here(&h, c));
		assert_false(held_here(&h, other));
		assert_int_equal(missing_count(&h), 0);
		free(b.big);
		node_close(&p);
		node_close(&h);
		node_close(&d);
		test_cleanup();
	}
}

/*
 * Sync version 1 knows no blobs.  A device speaking it gets a clean
 * session of records with a hub of version 2, which answers in version 1
 * (the device, like a node of the first release, refuses any other): no
 * blob message either way, the blobs listed as missing.  A blob message
 * in such a session is refused naming the version; a hub of version 1
 * refuses a device of version 2 naming it; a HELLO of a version this
 * node does not speak is refused naming both.
 */
static void version_1_peer_gets_records_without_blobs(void **state)
{
	test_node p, h, d;
	breakage b = { .what = END_IN_V1 };
	kheo_session_state cst, sst;
	kheo_session_stats ss;
	char id[KHEO_RECORD_HEX + 1], a[65], serr[400];
	json_t *rec;

	(void)state;
	node_tiers(&p, &h, &d);
	node_put(&d, id, "model", "name=Mô hình", "unit=" COMMUNE, NULL);
	attach(&d, id, "photos", 100000, 51, a);
	run_broken(&d, &h, NULL, 1, 0, &cst, &sst, &ss, serr);
	assert_int_equal(cst, KHEO_SESSION_DONE);
	assert_int_equal(sst, KHEO_SESSION_DONE);
	assert_int_equal(ss.peer_version, 1);
	assert_true(ss.received > 0);
	assert_int_equal(ss.blob_chunks_in + ss.blob_chunks_out, 0);
	assert_int_equal(ss.blobs_left, 1);
	rec = node_get(&h, "model", id);
	assert_string_equal(json_string_value(json_array_get(json_object_get(
				    rec, "photos"), 0)), a);
	json_decref(rec);
	assert_false(held_here(&h, a));
	assert_int_equal(missing_count(&h), 1);
	/* an END in a version 1 session */
	node_put(&d, id, "model", "name=Thêm", "unit=" COMMUNE, NULL);
	run_broken(&d, &h, &b, 1, 0, &cst, &sst, &ss, serr);
	assert_int_equal(sst, KHEO_SESSION_FAILED);
	assert_non_null(strstr(serr, "runs at sync version 1"));
	/* a hub of version 1 refuses a device of version 2, naming it
	 * (what a node of the first release does) */
	run_broken(&d, &h, NULL, 0, 1, &cst, &sst, &ss, serr);
	assert_int_equal(sst, KHEO_SESSION_FAILED);
	assert_int_equal(cst, KHEO_SESSION_FAILED);
	assert_non_null(strstr(serr, "sync version 2 unknown"));
	assert_false(held_here(&h, a));
	/* both at version 2: the blob comes */
	run_broken(&d, &h, NULL, 0, 0, &cst, &sst, &ss, serr);
	assert_int_equal(sst, KHEO_SESSION_DONE);
	assert_int_equal(ss.peer_version, KHEO_SYNC_VERSION);
	assert_true(complete_here(&h, a));
	/* a HELLO of version 3 */
	{
		kheo_msg m = { .type = KHEO_MSG_HELLO }, back;
		kheo_refusal why = { 0 };
		kheo_buf buf = { 0 };

		m.hello.version = 3;
		m.hello.node_role = KHEO_NODE_DEVICE;
		assert_int_equal(kheo_msg_encode(&buf, &m), KHEO_OK);
		assert_true(kheo_msg_decode(&back, buf.p, buf.len, &why) < 0);
		assert_int_equal(why.reason, KHEO_R_BAD_VERSION);
		assert_non_null(strstr(why.msg, "sync version 3 unknown "
						"(this node speaks 1 to 2)"));
		kheo_buf_free(&buf);
	}
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/* ---------------------------------------------------------------- sync */

/*
 * 20 MB of photos, device -> hub -> province, the link cut every few
 * chunks: at least 30 cuts on each hop, every blob intact at the
 * province, and what was sent beyond the blobs' stored bytes at most one
 * chunk per cut.
 */
static void twenty_megabytes_of_photos_survive_cuts(void **state)
{
	enum { NREC = 8, PER = 5 };
	test_node p, h, d;
	char ids[NREC][KHEO_RECORD_HEX + 1], hashes[NREC * PER][65];
	size_t sizes[NREC * PER];
	uint64_t total = 0;
	int r, k, hop;

	(void)state;
	node_tiers(&p, &h, &d);
	for (r = 0; r < NREC; r++) {
		char name[64];

		snprintf(name, sizeof(name), "name=Mô hình %d", r);
		node_put(&d, ids[r], "model", name, "unit=" COMMUNE, NULL);
		for (k = 0; k < PER; k++) {
			int i = r * PER + k;

			/* 500 KB each, uneven so last chunks differ */
			sizes[i] = 500000 + (size_t)i * 1237;
			total += sizes[i];
			attach(&d, ids[r], "photos", sizes[i],
				100 + (unsigned)i, hashes[i]);
		}
	}
	assert_true(total >= 20u * 1000 * 1000);
	for (hop = 0; hop < 2; hop++) {
		test_node *from = hop ? &h : &d, *to = hop ? &p : &h;
		uint64_t sent = 0;
		int cuts = 0, sessions = 0;

		while (missing_count(to) > 0 || sessions == 0) {
			kheo_session_stats cs, ss;
			test_link l = { 0 };

			/* a cut after about two and a half chunks of blob
			 * data, never at the same place */
			l.cut_after = 165000 + (size_t)(sessions * 7919) % 9000;
			run(from, to, &l, NULL, &cs, &ss);
			sent += cs.blob_bytes_out;
			cuts += l.cut;
			sessions++;
			assert_true(sessions < 1000);
		}
		/* every chunk arrived whole; what went more than once is at
		 * most one chunk per cut */
		print_message("hop %d: %d sessions, %d cuts, %llu blob bytes "
			      "sent for %llu, %llu re-sent (%.2f chunks/cut)\n",
			hop, sessions, cuts, (unsigned long long)sent,
			(unsigned long long)total,
			(unsigned long long)(sent - total),
			cuts ? (double)(sent - total) / KHEO_BLOB_CHUNK / cuts
			     : 0.0);
		assert_true(cuts >= 30);
		assert_true(sent >= total);
		assert_true(sent - total <= (uint64_t)cuts * KHEO_BLOB_CHUNK);
	}
	for (k = 0; k < NREC * PER; k++) {
		size_t n;
		uint8_t *back = read_back(&p, hashes[k], &n),
			*orig = photo(sizes[k], 100 + (unsigned)k);

		assert_int_equal(n, sizes[k]);
		assert_memory_equal(back, orig, n);
		free(back);
		free(orig);
	}
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/* A device that syncs with no_blobs sees the records and lists their
 * blobs as missing; a later sync without it fetches them. */
static void no_blobs_device_sees_metadata_and_lists_missing(void **state)
{
	test_node p, h, d, d2;
	test_link l = { 0 };
	sopts nb = { 1, 0, 0 };
	kheo_session_stats cs, ss;
	char id[KHEO_RECORD_HEX + 1], a[65], scan[65];
	json_t *rec;

	(void)state;
	node_tiers(&p, &h, &d);
	node_make(&d2, "d2", COMMUNE, KHEO_NODE_DEVICE);
	node_enroll(&h, &d2, "collector", COMMUNE);
	node_put(&d, id, "model", "name=Mô hình", "unit=" COMMUNE, NULL);
	attach(&d, id, "photos", 100000, 31, a);
	attach(&d, id, "decision_scan", 90000, 32, scan);
	run(&d, &h, &l, NULL, NULL, NULL);
	assert_int_equal(missing_count(&h), 0);
	memset(&l, 0, sizeof(l));
	run(&d2, &h, &l, &nb, &cs, &ss);
	assert_int_equal(cs.blob_chunks_in, 0);
	assert_int_equal(cs.blobs_left, 2);
	rec = node_get(&d2, "model", id);
	assert_string_equal(json_string_value(json_object_get(rec,
				    "decision_scan")), scan);
	assert_string_equal(json_string_value(json_array_get(json_object_get(rec,
				    "photos"), 0)), a);
	json_decref(rec);
	assert_int_equal(missing_count(&d2), 2);
	{
		char *text;
		json_t *o;

		if (kheo_status_json(d2.db, &text) < 0)
			fail_msg("status: %s", kheo_errmsg(d2.db));
		o = json_loads(text, 0, NULL);
		assert_int_equal(json_integer_value(json_object_get(o,
					 "blobs_missing")), 2);
		assert_non_null(strstr(text, "2 attachments named by records"));
		json_decref(o);
		kheo_free(text);
	}
	assert_false(held_here(&d2, a));
	assert_int_equal(kheo_blob_get(d2.db, a, "/nonexistent/x", NULL),
		KHEO_ENOTFOUND);
	assert_non_null(strstr(kheo_errmsg(d2.db), "not here"));
	memset(&l, 0, sizeof(l));
	run(&d2, &h, &l, NULL, &cs, &ss);
	assert_int_equal(missing_count(&d2), 0);
	assert_int_equal(cs.blobs_completed, 2);
	node_close(&d2);
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/* The hub caps what a device may push per session; decision scans come
 * before photos; the rest comes at the next sessions. */
static void hub_caps_blob_bytes_and_scans_come_first(void **state)
{
	test_node p, h, d;
	test_link l = { 0 };
	sopts cap = { 0, 0, 3 * KHEO_BLOB_CHUNK };
	kheo_session_stats cs, ss;
	char id[KHEO_RECORD_HEX + 1], a[65], scan[65];
	int sessions = 0;

	(void)state;
	node_tiers(&p, &h, &d);
	node_put(&d, id, "model", "name=Mô hình", "unit=" COMMUNE, NULL);
	attach(&d, id, "photos", 600000, 41, a);
	attach(&d, id, "decision_scan", 150000, 42, scan);
	run(&d, &h, &l, &cap, &cs, &ss);
	/* the scan (3 chunks) first, and no more than the cap */
	assert_true(complete_here(&h, scan));
	assert_false(complete_here(&h, a));
	assert_true(ss.blob_bytes_in <= 3 * KHEO_BLOB_CHUNK);
	assert_int_equal(ss.blobs_left, 1);
	while (missing_count(&h) > 0) {
		memset(&l, 0, sizeof(l));
		run(&d, &h, &l, &cap, &cs, &ss);
		assert_true(ss.blob_bytes_in <= 3 * KHEO_BLOB_CHUNK);
		assert_true(++sessions < 10);
	}
	assert_int_equal(sessions, 4); /* 10 chunks of photo, 3 a session */
	assert_true(complete_here(&h, a));
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/* Bundles carry blobs: all of them, or with --for those named by the
 * records the bundle's changesets touch. */
/* A bundle made with no_blobs carries the records only, in format 1: the
 * receiver sees the record, lists its blob as missing, and a later
 * bundle with blobs brings it. */
static void bundle_without_blobs_carries_records_only(void **state)
{
	test_node p, h, d;
	kheo_bundle_stats st;
	kheo_bundle_options o = KHEO_BUNDLE_OPTIONS_INIT;
	char id[KHEO_RECORD_HEX + 1], a[65], path[600];
	json_t *rec;
	FILE *f;
	long size;

	(void)state;
	node_tiers(&p, &h, &d);
	node_put(&d, id, "model", "name=Mô hình", "unit=" COMMUNE, NULL);
	attach(&d, id, "photos", 300000, 61, a);
	snprintf(path, sizeof(path), "%s/records.khb", test_scratch());
	o.no_blobs = 1;
	memset(&st, 0, sizeof(st));
	if (kheo_bundle_create_ext(d.db, path, &o, &st) < 0)
		fail_msg("bundle: %s", kheo_errmsg(d.db));
	assert_int_equal(st.blobs, 0);
	assert_int_equal(st.blob_chunks, 0);
	assert_true(st.changesets > 0);
	f = fopen(path, "rb");
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fclose(f);
	assert_true(size < 100000); /* not the 300 kB photo */
	memset(&st, 0, sizeof(st));
	if (kheo_bundle_apply(h.db, path, &st) < 0)
		fail_msg("apply: %s", kheo_errmsg(h.db));
	assert_int_equal(st.blobs, 0);
	rec = node_get(&h, "model", id);
	assert_string_equal(json_string_value(json_array_get(json_object_get(
				    rec, "photos"), 0)), a);
	json_decref(rec);
	assert_false(held_here(&h, a));
	assert_int_equal(missing_count(&h), 1);
	/* an unknown options version is refused, naming it */
	o.version = 99;
	assert_int_equal(kheo_bundle_create_ext(d.db, path, &o, NULL),
		KHEO_EINVAL);
	assert_non_null(strstr(kheo_errmsg(d.db), "options version"));
	/* the same bundle with blobs brings it */
	if (kheo_bundle_create(d.db, path, NULL, &st) < 0 ||
	    kheo_bundle_apply(h.db, path, NULL) < 0)
		fail_msg("bundle: %s / %s", kheo_errmsg(d.db),
			kheo_errmsg(h.db));
	assert_true(complete_here(&h, a));
	assert_int_equal(missing_count(&h), 0);
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

static void bundles_carry_blobs(void **state)
{
	test_node p, h, d;
	kheo_bundle_stats st;
	char id1[KHEO_RECORD_HEX + 1], id2[KHEO_RECORD_HEX + 1], a[65], b[65];
	char path[600], hkey[65], *text;
	json_t *o;
	size_t n;
	uint8_t *back, *orig;

	(void)state;
	node_tiers(&p, &h, &d);
	node_put(&d, id1, "model", "name=Mô hình 1", "unit=" COMMUNE, NULL);
	attach(&d, id1, "photos", 300000, 51, a);
	snprintf(path, sizeof(path), "%s/one.khb", test_scratch());
	memset(&st, 0, sizeof(st));
	if (kheo_bundle_create(d.db, path, NULL, &st) < 0)
		fail_msg("bundle: %s", kheo_errmsg(d.db));
	assert_int_equal(st.blobs, 1);
	assert_int_equal(st.blob_chunks, 5);
	memset(&st, 0, sizeof(st));
	if (kheo_bundle_apply(h.db, path, &st) < 0)
		fail_msg("apply: %s", kheo_errmsg(h.db));
	assert_int_equal(st.blobs_completed, 1);
	assert_int_equal(st.blobs_refused, 0);
	back = read_back(&h, a, &n);
	orig = photo(300000, 51);
	assert_int_equal(n, 300000);
	assert_memory_equal(back, orig, n);
	free(back);
	free(orig);

	/* the hub's bundle back tells the device what the hub holds; the
	 * next one for the hub carries only the new record's blob */
	snprintf(path, sizeof(path), "%s/back.khb", test_scratch());
	if (kheo_bundle_create(h.db, path, NULL, NULL) < 0 ||
	    kheo_bundle_apply(d.db, path, NULL) < 0)
		fail_msg("bundle back: %s / %s", kheo_errmsg(h.db),
			kheo_errmsg(d.db));
	node_put(&d, id2, "model", "name=Mô hình 2", "unit=" COMMUNE, NULL);
	attach(&d, id2, "decision_scan", 70000, 52, b);
	if (kheo_id_json(h.db, &text) < 0)
		fail_msg("id");
	o = json_loads(text, 0, NULL);
	snprintf(hkey, sizeof(hkey), "%s",
		json_string_value(json_object_get(o, "key")));
	json_decref(o);
	kheo_free(text);
	snprintf(path, sizeof(path), "%s/two.khb", test_scratch());
	memset(&st, 0, sizeof(st));
	if (kheo_bundle_create(d.db, path, hkey, &st) < 0)
		fail_msg("bundle: %s", kheo_errmsg(d.db));
	assert_int_equal(st.blobs, 1);
	assert_int_equal(st.blob_chunks, 2);
	memset(&st, 0, sizeof(st));
	if (kheo_bundle_apply(h.db, path, &st) < 0)
		fail_msg("apply: %s", kheo_errmsg(h.db));
	assert_int_equal(st.blobs_completed, 1);
	assert_true(complete_here(&h, b));
	assert_int_equal(missing_count(&h), 0);

	/* a bundle of chunks alone, for a blob no record at the province
	 * names: refused, the apply says so, nothing kept */
	{
		kheo_bundle bb = { 0 }, *dec;
		kheo_blob_chunk c;
		kheo_buf data = { 0 }, file = { 0 };
		uint8_t ha[32], sk[64];
		kheo_refusal why;
		FILE *f;

		kheo_unhex(ha, 32, a, 64);
		memset(&c, 0, sizeof(c));
		if (kheo__blob_chunk_read(d.db, ha, 0, &data, &c.z, c.chash,
			    &c.size) < 0)
			fail_msg("%s", kheo_errmsg(d.db));
		memcpy(c.hash, ha, 32);
		c.p = data.p;
		c.n = data.len;
		crypto_sign_keypair(bb.sender, sk);
		bb.chunks = &c;
		bb.nchunks = 1;
		assert_int_equal(kheo_bundle_encode(&file, &bb, sk), KHEO_OK);
		assert_int_equal(file.p[3], 2);
		assert_int_equal(kheo_bundle_decode(&dec, file.p, file.len,
					 &why), KHEO_OK);
		assert_int_equal(dec->nchunks, 1);
		kheo_bundle_free(dec);
		snprintf(path, sizeof(path), "%s/stray.khb", test_scratch());
		f = fopen(path, "wb");
		fwrite(file.p, 1, file.len, f);
		fclose(f);
		memset(&st, 0, sizeof(st));
		assert_int_equal(kheo_bundle_apply(p.db, path, &st), KHEO_OK);
		assert_int_equal(st.blobs_refused, 1);
		assert_non_null(strstr(st.blob_error, "no record here names"));
		assert_false(held_here(&p, a));
		assert_int_equal(files_of(&p, a), 0);
		kheo_buf_free(&data);
		kheo_buf_free(&file);
	}
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/* ------------------------------------------------------------- messages */

static void blob_messages_round_trip_and_decode_strictly(void **state)
{
	uint8_t hs[64], data[100];
	uint64_t sizes[2] = { 1, KHEO_SYNC_BLOB_SIZE_MAX };
	kheo_refusal why;
	kheo_buf b = { 0 };
	kheo_msg m = { .type = KHEO_MSG_HAVE }, back;

	(void)state;
	memset(hs, 7, sizeof(hs));
	memset(data, 9, sizeof(data));
	m.want.hashes = hs;
	m.want.sizes = sizes;
	m.want.n = 2;
	assert_int_equal(kheo_msg_encode(&b, &m), KHEO_OK);
	assert_int_equal(kheo_msg_decode(&back, b.p, b.len, &why), KHEO_OK);
	assert_int_equal(back.want.n, 2);
	assert_int_equal(back.want.sizes[1], KHEO_SYNC_BLOB_SIZE_MAX);
	kheo_msg_free(&back);

	/* a WANT of nothing */
	m = (kheo_msg){ .type = KHEO_MSG_WANT };
	kheo_buf_reset(&b);
	assert_int_equal(kheo_msg_encode(&b, &m), KHEO_OK);
	assert_int_equal(kheo_msg_decode(&back, b.p, b.len, &why),
		KHEO_EPROTO);

	/* a CHUNK: the last one of a 100-byte blob; then its data too long,
	 * its index past the end, unknown flags */
	m = (kheo_msg){ .type = KHEO_MSG_CHUNK };
	memcpy(m.blob.hash, hs, 32);
	m.blob.size = 100;
	m.blob.p = data;
	m.blob.n = 100;
	kheo_buf_reset(&b);
	assert_int_equal(kheo_msg_encode(&b, &m), KHEO_OK);
	assert_int_equal(kheo_msg_decode(&back, b.p, b.len, &why), KHEO_OK);
	assert_int_equal(back.blob.n, 100);
	kheo_msg_free(&back);
	m.blob.size = 99;
	kheo_buf_reset(&b);
	kheo_msg_encode(&b, &m);
	assert_int_equal(kheo_msg_decode(&back, b.p, b.len, &why),
		KHEO_ELIMIT);
	assert_int_equal(why.reason, KHEO_R_TOO_BIG);
	assert_non_null(strstr(why.msg, "above the limit"));
	m.blob.size = 100;
	m.blob.index = 1;
	kheo_buf_reset(&b);
	kheo_msg_encode(&b, &m);
	assert_int_equal(kheo_msg_decode(&back, b.p, b.len, &why),
		KHEO_EPROTO);
	m.blob.index = 0;
	kheo_buf_reset(&b);
	kheo_msg_encode(&b, &m);
	b.p[1 + 32 + 1 + 1] = 2; /* flags */
	assert_int_equal(kheo_msg_decode(&back, b.p, b.len, &why),
		KHEO_EPROTO);
	assert_int_equal(why.reason, KHEO_R_BAD_FLAGS);
	/* a compressed chunk may not be above 64 KiB + 1 KiB */
	{
		uint8_t *big = calloc(1, KHEO_SYNC_BLOB_CHUNK +
						 KHEO_SYNC_CHUNK_SLACK + 1);

		m.blob.size = KHEO_SYNC_BLOB_CHUNK;
		m.blob.z = 1;
		m.blob.p = big;
		m.blob.n = KHEO_SYNC_BLOB_CHUNK + KHEO_SYNC_CHUNK_SLACK + 1;
		kheo_buf_reset(&b);
		kheo_msg_encode(&b, &m);
		assert_int_equal(kheo_msg_decode(&back, b.p, b.len, &why),
			KHEO_ELIMIT);
		free(big);
	}
	kheo_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(blob_messages_round_trip_and_decode_strictly),
		cmocka_unit_test_teardown(attach_checks_type_size_and_field,
			teardown),
		cmocka_unit_test_teardown(
			bad_chunks_are_refused_and_nothing_stored, teardown),
		cmocka_unit_test_teardown(
			damaged_chunk_in_a_session_is_refused, teardown),
		cmocka_unit_test_teardown(
			no_blobs_device_sees_metadata_and_lists_missing,
			teardown),
		cmocka_unit_test_teardown(
			hub_caps_blob_bytes_and_scans_come_first, teardown),
		cmocka_unit_test_teardown(bundles_carry_blobs, teardown),
		cmocka_unit_test_teardown(prune_waits_for_the_province,
			teardown),
		cmocka_unit_test_teardown(
			bundle_without_blobs_carries_records_only, teardown),
		cmocka_unit_test_teardown(
			peer_breaking_the_blob_protocol_is_refused, teardown),
		cmocka_unit_test_teardown(
			version_1_peer_gets_records_without_blobs, teardown),
		cmocka_unit_test_teardown(
			twenty_megabytes_of_photos_survive_cuts, teardown),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("blob", tests, NULL, NULL);
}
