/*
 * test_authz.c - identity and authorisation (DESIGN.md, Identity and
 * authorisation) on real nodes: a province (the root), hubs and devices
 * enrolled offline, exchanging bundles.  Each test is one behaviour of
 * receipt: held until the facts arrive, rejected with the right reason,
 * taken back by a late revocation, the approval lock of the merge, unit
 * mergers, forged frames relayed by a hub.
 *
 * What is not here: the certificate and request encodings byte for byte
 * (test_vectors.c), and the merge rules that do not depend on roles
 * (test_merge.c).
 */
#include "nodes.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROVINCE "dak-nong"
#define DISTRICT "dak-nong/cu-jut"
#define COMMUNE "dak-nong/cu-jut/ea-po"
#define DAY_MS (24LL * 3600 * 1000)

static int teardown(void **state)
{
	(void)state;
	test_cleanup();
	return 0;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* ------------------------------------------------------------- nodes */

/* kheo_id_json, parsed; caller json_decref's. */
static json_t *id_of(test_node *n)
{
	char *text;
	json_t *o;

	if (kheo_id_json(n->db, &text) < 0)
		fail_msg("id: %s", kheo_errmsg(n->db));
	o = json_loads(text, 0, NULL);
	kheo_free(text);
	assert_non_null(o);
	return o;
}

/* The node's key ("key") or the root it trusts ("root"), in hex. */
static void hex_of(test_node *n, const char *what, char out[KHEO_KEY_HEX + 1])
{
	json_t *o = id_of(n);

	assert_non_null(str(o, what));
	snprintf(out, KHEO_KEY_HEX + 1, "%s", str(o, what));
	json_decref(o);
}

/* The node's secret key, from DIR/node.key. */
static void secret_of(test_node *n, uint8_t sk[KHEO_SECRET_SIZE])
{
	char path[600], hex[2 * KHEO_SECRET_SIZE + 1];
	uint8_t *text;
	size_t len;

	snprintf(path, sizeof(path), "%s/node.key", n->dir);
	text = test_read_file(path, &len);
	assert_non_null(text);
	assert_int_equal(sscanf((char *)text, "kheo-node-key 1\nsecret %128s",
				 hex), 1);
	sodium_memzero(text, len);
	free(text);
	assert_int_equal(kheo_unhex(sk, KHEO_SECRET_SIZE, hex, strlen(hex)),
		KHEO_OK);
	sodium_memzero(hex, sizeof(hex));
}

/*
 * Enrol `subject` offline: its request, signed by `issuer` as `role` over
 * `unit` for `days`, accepted with the issuer's root.  The certificate
 * chain text comes back in *chain when chain is not NULL (kheo_free).
 */
static void enroll(test_node *issuer, test_node *subject, const char *role,
	const char *unit, unsigned days, char **chain)
{
	char *req, *cert, root[KHEO_KEY_HEX + 1];

	hex_of(issuer, "root", root);
	if (kheo_enroll_request(subject->db, &req) < 0)
		fail_msg("request: %s", kheo_errmsg(subject->db));
	if (kheo_enroll_sign(issuer->db, req, role, unit, days, &cert) < 0)
		fail_msg("sign: %s", kheo_errmsg(issuer->db));
	if (kheo_enroll_accept(subject->db, cert, root) < 0)
		fail_msg("accept: %s", kheo_errmsg(subject->db));
	assert_true(kheo_enforcing(subject->db));
	kheo_free(req);
	if (chain)
		*chain = cert;
	else
		kheo_free(cert);
}

/* The province of PROVINCE: the root of its deployment from init on,
 * its key the root's fingerprint. */
static void province_make(test_node *p, const char *name)
{
	char key[KHEO_KEY_HEX + 1], root[KHEO_KEY_HEX + 1];

	node_make(p, name, PROVINCE, KHEO_NODE_PROVINCE);
	assert_true(kheo_enforcing(p->db));
	hex_of(p, "key", key);
	hex_of(p, "root", root);
	assert_string_equal(key, root);
}

/* A hub over `scope`, certified by the province for a year. */
static void hub_make(test_node *h, test_node *province, const char *name,
	const char *scope)
{
	node_make(h, name, scope, KHEO_NODE_HUB);
	enroll(province, h, "hub", scope, 365, NULL);
}

/* A device of `unit`; enrolled by `issuer` as `role` when role is set,
 * else left in open mode (to write before its enrolment). */
static void device_make(test_node *d, test_node *issuer, const char *name,
	const char *unit, const char *role, unsigned days)
{
	node_make(d, name, unit, KHEO_NODE_DEVICE);
	if (role)
		enroll(issuer, d, role, unit, days, NULL);
	else
		assert_false(kheo_enforcing(d->db));
}

/* Everything `from` holds, into `to`; the receipt's counts. */
static kheo_apply_stats deliver(test_node *from, test_node *to)
{
	kheo_bundle_stats st = { 0 };

	node_send(from, to, &st);
	return st.apply;
}

/* A model of `unit`, made on n (sealed at the next commit or bundle). */
static void model(test_node *n, char id[KHEO_RECORD_HEX + 1],
	const char *unit)
{
	char u[300];

	snprintf(u, sizeof(u), "unit=%s", unit);
	node_put(n, id, "model", "name=Mô hình nuôi bò sinh sản", u,
		"beneficiaries=3");
}

static void commit(test_node *n)
{
	if (kheo_commit(n->db, NULL) < 0)
		fail_msg("commit: %s", kheo_errmsg(n->db));
}

/* Does the record exist on n? */
static int has_record(test_node *n, const char *table, const char *id)
{
	char *text = NULL;
	int err = kheo_get_json(n->db, &text, table, id);

	kheo_free(text);
	if (err != KHEO_OK && err != KHEO_ENOTFOUND)
		fail_msg("get: %s", kheo_errmsg(n->db));
	return err == KHEO_OK;
}

/* kheo_verify: the state rebuilt from the stored changesets is the same. */
static void assert_verifies(test_node *n)
{
	if (kheo_verify(n->db) != KHEO_OK)
		fail_msg("verify %s: %s", n->dir, kheo_errmsg(n->db));
}

static json_int_t int_field(test_node *n, const char *id, const char *field)
{
	json_t *r = node_get(n, "model", id);
	json_int_t v = json_integer_value(json_object_get(r, field));

	json_decref(r);
	return v;
}

/* -------------------------------------------------- frames by hand */

/*
 * The frames a node holds, read from its full bundle with proto's
 * decoder, so that a test can deliver some of them, in its own order.
 */
typedef struct frames {
	kheo_buf file;
	kheo_bundle *b;
} frames;

static void frames_of(test_node *n, frames *f)
{
	char path[600];
	uint8_t *p;
	size_t len;

	memset(f, 0, sizeof(*f));
	snprintf(path, sizeof(path), "%s/frames.bundle", test_scratch());
	if (kheo_bundle_create(n->db, path, NULL, NULL) < 0)
		fail_msg("bundle: %s", kheo_errmsg(n->db));
	p = test_read_file(path, &len);
	assert_non_null(p);
	unlink(path);
	kheo_buf_put(&f->file, p, len);
	free(p);
	assert_int_equal(kheo_bundle_decode(&f->b, f->file.p, f->file.len,
				 NULL), KHEO_OK);
}

static void frames_free(frames *f)
{
	kheo_bundle_free(f->b);
	kheo_buf_free(&f->file);
}

/* Author and unit of a frame (decoded, signature checked). */
static void frame_info(const uint8_t *p, size_t len,
	uint8_t author[KHEO_KEY_SIZE], char unit[KHEO_UNIT_MAX + 1])
{
	kheo_codec *c;
	kheo_changeset *cs;
	kheo_buf raw = { 0 };
	uint8_t id[KHEO_ID_SIZE];

	assert_int_equal(kheo_codec_new(&c, 0), KHEO_OK);
	assert_int_equal(kheo_frame_open(c, &cs, id, &raw, p, len, NULL),
		KHEO_OK);
	memcpy(author, cs->author, KHEO_KEY_SIZE);
	snprintf(unit, KHEO_UNIT_MAX + 1, "%s", cs->unit);
	kheo_changeset_free(cs);
	kheo_buf_free(&raw);
	kheo_codec_free(c);
}

/*
 * A selection of frames to deliver in one kheo_apply: a batch.  Frames
 * are borrowed from a `frames` that must outlive the batch.
 */
typedef struct batch {
	const uint8_t *p[64];
	size_t len[64];
	size_t n;
} batch;

enum which { ANY_UNIT, SYS_ONLY, DATA_ONLY };

/* Add the frames of f written by `author` (NULL: anyone) in the units
 * asked for (`_sys`, the others, or both).  How many were added. */
static size_t pick(batch *to, const frames *f, test_node *author,
	enum which which)
{
	uint8_t key[KHEO_KEY_SIZE], a[KHEO_KEY_SIZE];
	char hex[KHEO_KEY_HEX + 1], unit[KHEO_UNIT_MAX + 1];
	size_t i, added = 0;

	if (author) {
		hex_of(author, "key", hex);
		assert_int_equal(kheo_unhex(key, KHEO_KEY_SIZE, hex,
					 strlen(hex)), KHEO_OK);
	}
	for (i = 0; i < f->b->nframes; i++) {
		int is_sys;

		frame_info(f->b->frames[i], f->b->lens[i], a, unit);
		is_sys = strcmp(unit, "_sys") == 0;
		if ((author && memcmp(a, key, KHEO_KEY_SIZE) != 0) ||
		    (which == SYS_ONLY && !is_sys) ||
		    (which == DATA_ONLY && is_sys))
			continue;
		assert_true(to->n < 64);
		to->p[to->n] = f->b->frames[i];
		to->len[to->n++] = f->b->lens[i];
		added++;
	}
	return added;
}

static kheo_apply_stats apply(test_node *to, const batch *b)
{
	kheo_apply_stats st = { 0 };

	if (kheo_apply(to->db, b->p, b->len, b->n, &st) < 0)
		fail_msg("apply: %s", kheo_errmsg(to->db));
	return st;
}

/* ------------------------------------------------ what a node says */

static json_t *json_of(int err, test_node *n, char *text)
{
	json_t *o;

	if (err < 0)
		fail_msg("%s", kheo_errmsg(n->db));
	o = json_loads(text, 0, NULL);
	kheo_free(text);
	assert_non_null(o);
	return o;
}

static json_t *quarantine_of(test_node *n)
{
	char *text = NULL;
	int err = kheo_quarantine_json(n->db, &text);

	return json_of(err, n, text);
}

static json_t *log_of(test_node *n)
{
	char *text = NULL;
	int err = kheo_log_json(n->db, &text);

	return json_of(err, n, text);
}

/*
 * The quarantine entry of `author`'s changeset in `unit` (useq 0: any),
 * or NULL.  Borrowed from q.
 */
static json_t *quarantined(json_t *q, test_node *author, const char *unit,
	json_int_t useq)
{
	char key[KHEO_KEY_HEX + 1];
	json_t *e;
	size_t i;

	hex_of(author, "key", key);
	json_array_foreach(q, i, e)
		if (strcmp(str(e, "author"), key) == 0 &&
		    strcmp(str(e, "unit"), unit) == 0 &&
		    (!useq || json_integer_value(json_object_get(e, "useq"))
				      == useq))
			return e;
	return NULL;
}

/* Assert that q holds author's changeset of unit with this reason, and
 * that its detail says `detail`. */
static void assert_rejected(json_t *q, test_node *author, const char *unit,
	json_int_t useq, const char *reason, const char *detail)
{
	json_t *e = quarantined(q, author, unit, useq);

	if (!e)
		fail_msg("no quarantined changeset of %s in %s (useq %lld)",
			author->dir, unit, (long long)useq);
	assert_string_equal(str(e, "reason"), reason);
	if (detail && !strstr(str(e, "detail"), detail))
		fail_msg("detail \"%s\" does not say \"%s\"", str(e, "detail"),
			detail);
}

/* Changesets n holds as held, and the `why` of the first. */
static size_t held_on(test_node *n, char *why, size_t whylen)
{
	json_t *log = log_of(n), *e;
	size_t i, k = 0;

	if (why)
		why[0] = '\0';
	json_array_foreach(log, i, e)
		if (strcmp(str(e, "state"), "held") == 0) {
			if (k++ == 0 && why)
				snprintf(why, whylen, "%s", str(e, "why"));
		}
	json_decref(log);
	return k;
}

/* Does a warning of kheo_id_json contain `text`? */
static int warns(test_node *n, const char *text)
{
	json_t *o = id_of(n), *w;
	size_t i;
	int found = 0;

	json_array_foreach(json_object_get(o, "warnings"), i, w)
		if (strstr(json_string_value(w), text))
			found = 1;
	json_decref(o);
	return found;
}

/* ------------------------------------------------------------- tests */

static void held_until_the_author_certificate_arrives(void **state)
{
	test_node p, h, d;
	char id[KHEO_RECORD_HEX + 1], why[200];
	frames f;
	batch data = { 0 }, sys = { 0 };
	kheo_apply_stats st;

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	device_make(&d, &h, "d", COMMUNE, "collector", 365);
	model(&d, id, COMMUNE);
	frames_of(&d, &f);
	assert_int_equal(pick(&data, &f, &d, DATA_ONLY), 1);
	assert_true(pick(&sys, &f, &d, SYS_ONLY) >= 1);

	/* the province knows the hub, not yet the device the hub certified */
	st = apply(&p, &data);
	assert_int_equal(st.held, 1);
	assert_int_equal(st.applied, 0);
	assert_int_equal(st.rejected, 0);
	assert_false(has_record(&p, "model", id));
	assert_int_equal(held_on(&p, why, sizeof(why)), 1);
	assert_non_null(strstr(why, "no certificate"));

	/* the device's `_sys` changeset brings its certificate */
	st = apply(&p, &sys);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.released, 1);
	assert_true(has_record(&p, "model", id));
	assert_int_equal(held_on(&p, NULL, 0), 0);
	assert_string_equal(node_digest(&p, COMMUNE), node_digest(&d, COMMUNE));
	frames_free(&f);
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

static void held_until_the_issuer_certificate_arrives(void **state)
{
	test_node p, h, h2, d, z;
	char id[KHEO_RECORD_HEX + 1], rid[KHEO_RECORD_HEX + 1], why[200];
	char *chain, *dot;
	kheo_assign a = { "text", KHEO_ASSIGN_SET, NULL };
	kheo_buf bytes = { 0 };
	size_t off[1], lens[1], n;
	kheo_cert c;
	frames fd, fh;
	batch data = { 0 }, hub_sys = { 0 };
	kheo_apply_stats st;

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	hub_make(&h2, &p, "h2", "dak-nong/krong-no");
	node_make(&d, "d", COMMUNE, KHEO_NODE_DEVICE);
	enroll(&h, &d, "collector", COMMUNE, 365, &chain);
	model(&d, id, COMMUNE);

	/* the device's certificate alone (the chain text's first item)
	 * reaches the other district's hub, relayed by a node in open mode */
	dot = strchr(chain, '.');
	assert_non_null(dot);
	*dot = '\0';
	assert_int_equal(kheo_text_decode(&bytes, off, lens, 1, &n,
				 "kheo-cert1:", chain, strlen(chain), NULL),
		KHEO_OK);
	assert_int_equal(kheo_cert_decode(&c, bytes.p + off[0], lens[0], NULL),
		KHEO_OK);
	kheo_hex(rid, c.digest, KHEO_RECORD_SIZE);
	node_make(&z, "z", COMMUNE, KHEO_NODE_DEVICE);
	a.value = chain;
	assert_int_equal(kheo_put(z.db, NULL, "sys_cert", rid, &a, 1),
		KHEO_OK);
	st = deliver(&z, &h2);
	assert_int_equal(st.rejected + st.held, 0);

	/* its work waits for the certificate of the hub that issued it */
	frames_of(&d, &fd);
	assert_int_equal(pick(&data, &fd, &d, DATA_ONLY), 1);
	st = apply(&h2, &data);
	assert_int_equal(st.held, 1);
	assert_int_equal(held_on(&h2, why, sizeof(why)), 1);
	assert_non_null(strstr(why, "certificate of the issuer"));
	assert_false(has_record(&h2, "model", id));

	/* the hub's `_sys` brings it */
	frames_of(&h, &fh);
	assert_true(pick(&hub_sys, &fh, &h, SYS_ONLY) >= 1);
	st = apply(&h2, &hub_sys);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.released, 1);
	assert_true(has_record(&h2, "model", id));
	assert_string_equal(node_digest(&h2, COMMUNE),
		node_digest(&d, COMMUNE));
	kheo_free(chain);
	kheo_buf_free(&bytes);
	frames_free(&fd);
	frames_free(&fh);
	node_close(&p);
	node_close(&h);
	node_close(&h2);
	node_close(&d);
	node_close(&z);
}

static void expired_certificate_holds_work_until_renewed(void **state)
{
	test_node p, h, d;
	char id[KHEO_RECORD_HEX + 1], why[200];
	kheo_apply_stats st;

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	device_make(&d, &h, "d", COMMUNE, "collector", 30);
	model(&d, id, COMMUNE);
	st = deliver(&d, &h);
	assert_int_equal(st.rejected + st.held, 0);
	assert_true(has_record(&h, "model", id));

	/* the device warns 14 days ahead, not before */
	d.now += 10 * DAY_MS;
	assert_false(warns(&d, "expires in"));
	d.now += 10 * DAY_MS;
	assert_true(warns(&d, "expires in 10 days"));

	/* offline past its expiry: the device still works... */
	d.now = h.now = p.now = d.now + 11 * DAY_MS;
	assert_true(warns(&d, "expired"));
	node_set(&d, "model", id, "beneficiaries=5");
	/* ... and what it did after expiry is held, not rejected */
	st = deliver(&d, &h);
	assert_int_equal(st.held, 1);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(int_field(&h, id, "beneficiaries"), 3);
	assert_int_equal(held_on(&h, why, sizeof(why)), 1);
	assert_non_null(strstr(why, "expired"));

	/* renewed by the province; the new certificate reaches the hub in
	 * the device's `_sys`, and the held work goes */
	enroll(&p, &d, "collector", COMMUNE, 365, NULL);
	assert_false(warns(&d, "expire"));
	st = deliver(&d, &h);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.released, 1);
	assert_int_equal(held_on(&h, NULL, 0), 0);
	assert_int_equal(int_field(&h, id, "beneficiaries"), 5);
	assert_string_equal(node_digest(&h, COMMUNE), node_digest(&d, COMMUNE));
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

static void writes_outside_the_certified_unit_are_out_of_scope(void **state)
{
	test_node p, h, d;
	char in[KHEO_RECORD_HEX + 1], out[KHEO_RECORD_HEX + 1];
	const char *other = "dak-nong/cu-jut/nam-dong";
	kheo_assign a[] = {
		{ "name", KHEO_ASSIGN_SET, "Mô hình khác" },
		{ "unit", KHEO_ASSIGN_SET, "dak-nong/cu-jut/nam-dong" },
	};
	kheo_apply_stats st;
	json_t *q;

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	/* in open mode, before its enrolment, the device writes in its own
	 * commune and in the next one */
	device_make(&d, NULL, "d", COMMUNE, NULL, 0);
	model(&d, in, COMMUNE);
	model(&d, out, other);
	enroll(&h, &d, "collector", COMMUNE, 365, NULL);

	st = deliver(&d, &h);
	assert_int_equal(st.rejected, 1);
	assert_int_equal(st.held, 0);
	assert_true(has_record(&h, "model", in));
	assert_false(has_record(&h, "model", out));
	q = quarantine_of(&h);
	assert_int_equal(json_array_size(q), 1);
	assert_rejected(q, &d, other, 1, "out-of-scope", other);
	json_decref(q);

	/* enrolled, the device refuses such an edit at once */
	assert_int_equal(kheo_put(d.db, NULL, "model", NULL, a, 2),
		KHEO_EAUTH);
	assert_non_null(strstr(kheo_errmsg(d.db), "outside"));
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

static void collector_may_not_recognize_nor_set_level(void **state)
{
	test_node p, h, c, r;
	char m[KHEO_RECORD_HEX + 1], m2[KHEO_RECORD_HEX + 1];
	char mr[KHEO_RECORD_HEX + 1];
	const char *village = COMMUNE "/bon-u1";
	kheo_assign recognize = { "status", KHEO_ASSIGN_SET, "recognized" };
	kheo_assign level = { "level", KHEO_ASSIGN_SET, "commune" };
	frames fc, fr;
	batch b = { 0 };
	kheo_apply_stats st;
	json_t *q, *rec;

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	/* the collector, before its enrolment: a model (allowed), then its
	 * recognition, and another model with a level (both a reviewer's) */
	device_make(&c, NULL, "c", COMMUNE, NULL, 0);
	model(&c, m, COMMUNE);
	commit(&c);
	node_set(&c, "model", m, "status=recognized");
	commit(&c);
	node_put(&c, m2, "model", "name=Mô hình thôn", "unit=" COMMUNE
		"/bon-u1", "level=commune");
	enroll(&h, &c, "collector", COMMUNE, 365, NULL);
	/* a reviewer of the same commune does the same, rightly */
	device_make(&r, &h, "r", COMMUNE, "reviewer", 365);
	node_put(&r, mr, "model", "name=Mô hình của xã", "unit=" COMMUNE,
		"level=commune");
	node_set(&r, "model", mr, "status=recognized");

	/* all in one batch */
	frames_of(&c, &fc);
	frames_of(&r, &fr);
	pick(&b, &fc, NULL, ANY_UNIT);
	pick(&b, &fr, NULL, ANY_UNIT);
	st = apply(&h, &b);
	assert_int_equal(st.rejected, 2);
	assert_int_equal(st.held, 0);
	q = quarantine_of(&h);
	assert_int_equal(json_array_size(q), 2);
	assert_rejected(q, &c, COMMUNE, 2, "role-forbids",
		"status = recognized");
	assert_rejected(q, &c, village, 1, "role-forbids", "level");
	json_decref(q);
	/* the collector's model stands, unrecognised; the reviewer's went */
	rec = node_get(&h, "model", m);
	assert_null(json_object_get(rec, "status"));
	json_decref(rec);
	assert_false(has_record(&h, "model", m2));
	rec = node_get(&h, "model", mr);
	assert_string_equal(str(rec, "status"), "recognized");
	assert_string_equal(str(rec, "level"), "commune");
	json_decref(rec);

	/* enrolled, the collector's own node refuses both at once */
	assert_int_equal(kheo_set(c.db, "model", m, &recognize, 1),
		KHEO_EAUTH);
	assert_int_equal(kheo_set(c.db, "model", m, &level, 1), KHEO_EAUTH);
	assert_non_null(strstr(kheo_errmsg(c.db), "reviewer"));
	frames_free(&fc);
	frames_free(&fr);
	node_close(&p);
	node_close(&h);
	node_close(&c);
	node_close(&r);
}

static void certificate_beyond_its_issuer_scope_is_bad_cert(void **state)
{
	test_node p, h, d, x;
	const char *elsewhere = "dak-nong/krong-no/nam-n-dir";
	char hk[KHEO_KEY_HEX + 1], xk[KHEO_KEY_HEX + 1], *req;
	char rid[KHEO_RECORD_HEX + 1];
	char dm[KHEO_RECORD_HEX + 1], xm[KHEO_RECORD_HEX + 1], *out = NULL;
	uint8_t sk[KHEO_SECRET_SIZE];
	kheo_cert c;
	kheo_buf body = { 0 }, text = { 0 };
	const uint8_t *items[1];
	size_t lens[1];
	kheo_assign a = { "text", KHEO_ASSIGN_SET, NULL };
	frames fx, fd;
	batch b = { 0 };
	kheo_apply_stats st;
	json_t *q;

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	device_make(&d, &h, "d", COMMUNE, "collector", 365);
	model(&d, dm, COMMUNE);
	device_make(&x, NULL, "x", elsewhere, NULL, 0);

	/* the hub's own node refuses to issue it... */
	assert_int_equal(kheo_enroll_request(x.db, &req), KHEO_OK);
	assert_int_equal(kheo_enroll_sign(h.db, req, "collector", elsewhere,
				 365, &out), KHEO_EAUTH);
	assert_null(out);
	kheo_free(req);

	/* ... so it is forged with the hub's key, outside the hub's scope */
	hex_of(&h, "key", hk);
	hex_of(&x, "key", xk);
	secret_of(&h, sk);
	memset(&c, 0, sizeof(c));
	kheo_unhex(c.subject, KHEO_KEY_SIZE, xk, KHEO_KEY_HEX);
	kheo_unhex(c.issuer, KHEO_KEY_SIZE, hk, KHEO_KEY_HEX);
	c.role = KHEO_ROLE_COLLECTOR;
	snprintf(c.scope, sizeof(c.scope), "%s", elsewhere);
	c.not_before = (uint64_t)x.now;
	c.not_after = (uint64_t)(x.now + 365 * DAY_MS);
	assert_int_equal(kheo_cert_encode(&body, &c, sk), KHEO_OK);
	items[0] = body.p;
	lens[0] = body.len;
	assert_int_equal(kheo_text_encode(&text, "kheo-cert1:", items, lens,
				 1), KHEO_OK);
	/* the device publishes it in `_sys` (anyone may relay a
	 * certificate) and writes in its unit */
	kheo_hex(rid, c.digest, KHEO_RECORD_SIZE);
	a.value = (const char *)text.p;
	assert_int_equal(kheo_put(x.db, NULL, "sys_cert", rid, &a, 1),
		KHEO_OK);
	model(&x, xm, elsewhere);

	/* the province gets it with a valid device's work, in one batch */
	frames_of(&x, &fx);
	frames_of(&d, &fd);
	pick(&b, &fx, NULL, ANY_UNIT);
	pick(&b, &fd, NULL, ANY_UNIT);
	st = apply(&p, &b);
	assert_int_equal(st.rejected, 1);
	assert_int_equal(st.held, 0);
	q = quarantine_of(&p);
	assert_int_equal(json_array_size(q), 1);
	assert_rejected(q, &x, elsewhere, 1, "bad-cert", "does not cover");
	json_decref(q);
	assert_false(has_record(&p, "model", xm));
	assert_true(has_record(&p, "model", dm));
	frames_free(&fx);
	frames_free(&fd);
	kheo_buf_free(&body);
	kheo_buf_free(&text);
	sodium_memzero(sk, sizeof(sk));
	node_close(&p);
	node_close(&h);
	node_close(&d);
	node_close(&x);
}

static void device_of_another_root_is_not_enrolled(void **state)
{
	test_node p, h, d, p2, y;
	char dm[KHEO_RECORD_HEX + 1], ym[KHEO_RECORD_HEX + 1];
	char root[KHEO_KEY_HEX + 1], root2[KHEO_KEY_HEX + 1];
	frames fy, fd;
	batch b = { 0 };
	kheo_apply_stats st;
	json_t *q;

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	device_make(&d, &h, "d", COMMUNE, "collector", 365);
	model(&d, dm, COMMUNE);
	/* a second "province" with its own root certifies a device for the
	 * same commune */
	province_make(&p2, "p2");
	device_make(&y, &p2, "y", COMMUNE, "collector", 365);
	hex_of(&p, "root", root);
	hex_of(&p2, "root", root2);
	assert_string_not_equal(root, root2);
	model(&y, ym, COMMUNE);

	frames_of(&y, &fy);
	frames_of(&d, &fd);
	pick(&b, &fy, NULL, ANY_UNIT);
	pick(&b, &fd, NULL, ANY_UNIT);
	st = apply(&h, &b);
	assert_int_equal(st.rejected, 1);
	assert_int_equal(st.held, 0);
	q = quarantine_of(&h);
	assert_int_equal(json_array_size(q), 1);
	assert_rejected(q, &y, COMMUNE, 1, "not-enrolled", "another");
	json_decref(q);
	assert_false(has_record(&h, "model", ym));
	assert_true(has_record(&h, "model", dm));
	frames_free(&fy);
	frames_free(&fd);
	node_close(&p);
	node_close(&h);
	node_close(&d);
	node_close(&p2);
	node_close(&y);
}

static void revoked_device_is_rejected_whatever_its_clock(void **state)
{
	test_node p, h, d, e;
	char m[KHEO_RECORD_HEX + 1], late[KHEO_RECORD_HEX + 1];
	char em[KHEO_RECORD_HEX + 1], dk[KHEO_KEY_HEX + 1];
	const char *village = COMMUNE "/bon-u1";
	frames fd, fe;
	batch b = { 0 };
	kheo_apply_stats st;
	json_t *q;

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	device_make(&d, &h, "d", COMMUNE, "collector", 365);
	device_make(&e, &h, "e", COMMUNE, "collector", 365);
	model(&d, m, COMMUNE);
	st = deliver(&d, &h);
	assert_int_equal(st.rejected + st.held, 0);

	/* the hub revokes d two hours on; d, offline, knows nothing */
	h.now += 2 * 3600 * 1000;
	hex_of(&d, "key", dk);
	assert_int_equal(kheo_revoke(h.db, dk, "máy bị mất"), KHEO_OK);
	/* back-dated: clocked an hour before the revocation */
	d.now += 3600 * 1000;
	node_set(&d, "model", m, "beneficiaries=4");
	commit(&d);
	/* later, in a unit the revocation does not name */
	d.now += 2 * 3600 * 1000;
	node_put(&d, late, "model", "name=Mô hình sau", "unit=" COMMUNE
		"/bon-u1", NULL);
	/* a valid device's work comes in the same batch */
	model(&e, em, COMMUNE);

	frames_of(&d, &fd);
	frames_of(&e, &fe);
	pick(&b, &fd, &d, DATA_ONLY);
	pick(&b, &fe, &e, ANY_UNIT);
	st = apply(&h, &b);
	assert_int_equal(st.rejected, 2);
	q = quarantine_of(&h);
	assert_int_equal(json_array_size(q), 2);
	assert_rejected(q, &d, COMMUNE, 2, "revoked", "revoked");
	assert_rejected(q, &d, village, 1, "revoked", "revoked");
	json_decref(q);
	assert_int_equal(int_field(&h, m, "beneficiaries"), 3);
	assert_false(has_record(&h, "model", late));
	assert_true(has_record(&h, "model", em));
	frames_free(&fd);
	frames_free(&fe);
	node_close(&p);
	node_close(&h);
	node_close(&d);
	node_close(&e);
}

static void late_revocation_takes_back_what_it_excludes(void **state)
{
	test_node p, h, d, e;
	char m[KHEO_RECORD_HEX + 1], m2[KHEO_RECORD_HEX + 1];
	char dk[KHEO_KEY_HEX + 1], before[65];
	kheo_apply_stats st;
	json_t *q, *rec;

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	device_make(&d, &h, "d", COMMUNE, "collector", 365);
	device_make(&e, &h, "e", COMMUNE, "collector", 365);
	model(&d, m, COMMUNE);
	deliver(&d, &h);
	snprintf(before, sizeof(before), "%s", node_digest(&h, COMMUNE));
	h.now += 3600 * 1000;
	hex_of(&d, "key", dk);
	assert_int_equal(kheo_revoke(h.db, dk, NULL), KHEO_OK);

	/* d goes on: two more changesets the revocation excludes */
	d.now += 2 * 3600 * 1000;
	node_set(&d, "model", m, "beneficiaries=8");
	commit(&d);
	node_put(&d, m2, "model", "name=Mô hình thứ hai", "unit=" COMMUNE,
		NULL);
	commit(&d);

	/* the province gets d's work first and applies it all */
	st = deliver(&d, &p);
	assert_int_equal(st.rejected + st.held, 0);
	assert_int_equal(int_field(&p, m, "beneficiaries"), 8);
	assert_true(has_record(&p, "model", m2));

	/* then the revocation: both are taken back */
	st = deliver(&h, &p);
	q = quarantine_of(&p);
	assert_int_equal(json_array_size(q), 2);
	assert_rejected(q, &d, COMMUNE, 2, "revoked", "taken back");
	assert_rejected(q, &d, COMMUNE, 3, "revoked", "taken back");
	json_decref(q);
	rec = node_get(&p, "model", m);
	assert_int_equal(json_integer_value(json_object_get(rec,
				 "beneficiaries")), 3);
	assert_null(json_object_get(rec, "_conflicts"));
	json_decref(rec);
	assert_false(has_record(&p, "model", m2));

	/* e got the revocation first: the same state */
	deliver(&h, &e);
	st = deliver(&d, &e);
	assert_int_equal(st.applied, 0);
	assert_string_equal(node_digest(&p, COMMUNE), before);
	assert_string_equal(node_digest(&e, COMMUNE), before);
	deliver(&d, &h);
	assert_string_equal(node_digest(&h, COMMUNE), before);
	assert_verifies(&p);
	node_close(&p);
	node_close(&h);
	node_close(&d);
	node_close(&e);
}

/* The competing values of a field as kheo_get_json shows them. */
static json_t *conflict_of(json_t *rec, const char *field)
{
	return json_object_get(json_object_get(rec, "_conflicts"), field);
}

/* Is `v` among the values of the conflict, and does it win? -1: absent */
static int conflict_value_wins(json_t *values, json_int_t v)
{
	json_t *e;
	size_t i;

	json_array_foreach(values, i, e)
		if (json_integer_value(json_object_get(e, "value")) == v)
			return json_is_true(json_object_get(e, "wins"));
	return -1;
}

static void collector_edit_after_recognition_never_wins(void **state)
{
	test_node p, h, d, r;
	char m[KHEO_RECORD_HEX + 1];
	json_t *rec;
	test_node *both[2];
	int i;

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	device_make(&d, &h, "d", COMMUNE, "collector", 365);
	device_make(&r, &h, "r", COMMUNE, "reviewer", 365);
	model(&d, m, COMMUNE);
	deliver(&d, &r);

	/* the reviewer recognises it; the collector, unaware, edits later */
	r.now += 1000;
	node_set(&r, "model", m, "status=recognized");
	d.now += 2000;
	node_set(&d, "model", m, "beneficiaries=7");

	/* the hub hears the reviewer first, the province the collector */
	deliver(&r, &h);
	deliver(&d, &h);
	deliver(&d, &p);
	deliver(&r, &p);
	both[0] = &h;
	both[1] = &p;
	assert_string_equal(node_digest(&h, COMMUNE), node_digest(&p, COMMUNE));
	for (i = 0; i < 2; i++) {
		rec = node_get(both[i], "model", m);
		assert_string_equal(str(rec, "status"), "recognized");
		assert_int_equal(json_integer_value(json_object_get(rec,
					 "beneficiaries")), 3);
		assert_int_equal(json_array_size(conflict_of(rec,
					 "beneficiaries")), 2);
		assert_int_equal(conflict_value_wins(conflict_of(rec,
					 "beneficiaries"), 7), 0);
		json_decref(rec);
	}

	/* the reviewer sends it back; the collector's next edit wins */
	deliver(&d, &r);
	r.now += 10000;
	node_set(&r, "model", m, "status=building");
	node_set(&r, "model", m, "review_comment=Bổ sung danh sách hộ");
	deliver(&r, &d);
	d.now += 20000;
	node_set(&d, "model", m, "beneficiaries=9");
	deliver(&r, &h);
	deliver(&d, &h);
	deliver(&d, &p);
	deliver(&r, &p);
	assert_string_equal(node_digest(&h, COMMUNE), node_digest(&p, COMMUNE));
	for (i = 0; i < 2; i++) {
		rec = node_get(both[i], "model", m);
		assert_string_equal(str(rec, "status"), "building");
		assert_string_equal(str(rec, "review_comment"),
			"Bổ sung danh sách hộ");
		assert_int_equal(json_integer_value(json_object_get(rec,
					 "beneficiaries")), 9);
		assert_int_not_equal(conflict_value_wins(conflict_of(rec,
					     "beneficiaries"), 7), 1);
		json_decref(rec);
		assert_verifies(both[i]);
	}
	node_close(&p);
	node_close(&h);
	node_close(&d);
	node_close(&r);
}

static void merged_commune_is_written_by_the_successor(void **state)
{
	test_node p, h, t, o;
	const char *old = "dak-nong/cu-jut/tam-thang";
	char mt[KHEO_RECORD_HEX + 1];
	kheo_assign set = { "beneficiaries", KHEO_ASSIGN_SET, "12" };
	frames fo;
	batch b = { 0 };
	kheo_apply_stats st;
	json_t *q;

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	device_make(&t, &h, "t", old, "collector", 365);
	device_make(&o, &h, "o", COMMUNE, "collector", 365);
	/* a model of the old commune, known everywhere */
	model(&t, mt, old);
	deliver(&t, &h);
	deliver(&t, &o);
	deliver(&t, &p);

	/* before the merger the new commune's officer may not write it */
	assert_int_equal(kheo_set(o.db, "model", mt, &set, 1), KHEO_EAUTH);

	/* the province merges the old commune into the new one */
	node_put(&p, NULL, "sys_unit", "slug=dak-nong/cu-jut/tam-thang",
		"name=Xã Tâm Thắng", "successor=" COMMUNE);
	deliver(&p, &o);
	node_set(&o, "model", mt, "beneficiaries=12");

	/* the hub, without the merger yet, rejects it as out of scope */
	frames_of(&o, &fo);
	assert_int_equal(pick(&b, &fo, &o, ANY_UNIT), 2); /* `_sys`, old unit */
	st = apply(&h, &b);
	assert_int_equal(st.rejected, 1);
	q = quarantine_of(&h);
	assert_rejected(q, &o, old, 1, "out-of-scope", old);
	json_decref(q);
	assert_int_equal(int_field(&h, mt, "beneficiaries"), 3);

	/* the merger arrives: it is looked at again, and applied */
	st = deliver(&p, &h);
	assert_true(st.released >= 1);
	q = quarantine_of(&h);
	assert_int_equal(json_array_size(q), 0);
	json_decref(q);
	assert_int_equal(int_field(&h, mt, "beneficiaries"), 12);
	assert_string_equal(node_digest(&h, old), node_digest(&o, old));
	frames_free(&fo);
	node_close(&p);
	node_close(&h);
	node_close(&t);
	node_close(&o);
}

/* Write a bundle file of b's frames, as `sender` signs it. */
static void write_bundle(const char *path, kheo_bundle *b, test_node *sender)
{
	uint8_t sk[KHEO_SECRET_SIZE];
	kheo_buf out = { 0 };
	FILE *fp;

	secret_of(sender, sk);
	assert_int_equal(kheo_bundle_encode(&out, b, sk), KHEO_OK);
	sodium_memzero(sk, sizeof(sk));
	fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(out.p, 1, out.len, fp), out.len);
	assert_int_equal(fclose(fp), 0);
	kheo_buf_free(&out);
}

static void forged_frame_relayed_by_a_hub_is_bad_signature(void **state)
{
	test_node p, h, d;
	char m[KHEO_RECORD_HEX + 1], path[600];
	uint8_t author[KHEO_KEY_SIZE], dkey[KHEO_KEY_SIZE];
	uint8_t sig[KHEO_SIG_SIZE], *keep;
	char unit[KHEO_UNIT_MAX + 1], dk[KHEO_KEY_HEX + 1];
	kheo_buf raw = { 0 }, forged = { 0 };
	kheo_bundle_stats st = { 0 };
	kheo_codec *c;
	size_t i, at = SIZE_MAX, keeplen;
	frames fh;
	json_t *q;

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	device_make(&d, &h, "d", COMMUNE, "collector", 365);
	model(&d, m, COMMUNE);
	deliver(&d, &h);

	/* the hub relays everything it holds, with one bit of the
	 * device's data changeset's signature flipped */
	hex_of(&d, "key", dk);
	kheo_unhex(dkey, KHEO_KEY_SIZE, dk, KHEO_KEY_HEX);
	frames_of(&h, &fh);
	for (i = 0; i < fh.b->nframes; i++) {
		frame_info(fh.b->frames[i], fh.b->lens[i], author, unit);
		if (memcmp(author, dkey, KHEO_KEY_SIZE) == 0 &&
		    strcmp(unit, COMMUNE) == 0)
			at = i;
	}
	assert_true(at != SIZE_MAX);
	assert_int_equal(kheo_codec_new(&c, 0), KHEO_OK);
	assert_int_equal(kheo_frame_read(c, &raw, sig, fh.b->frames[at],
				 fh.b->lens[at], NULL), KHEO_OK);
	sig[7] ^= 0x10;
	assert_int_equal(kheo_frame_write(c, &forged, raw.p, raw.len, sig),
		KHEO_OK);
	keep = (uint8_t *)fh.b->frames[at];
	keeplen = fh.b->lens[at];
	fh.b->frames[at] = forged.p;
	fh.b->lens[at] = forged.len;
	snprintf(path, sizeof(path), "%s/relayed.bundle", test_scratch());
	write_bundle(path, fh.b, &h);

	assert_int_equal(kheo_bundle_apply(p.db, path, &st), KHEO_OK);
	assert_int_equal(st.apply.rejected, 1);
	assert_int_equal(st.apply.held, 0);
	assert_int_equal(st.apply.applied, fh.b->nframes - 1);
	q = quarantine_of(&p);
	assert_int_equal(json_array_size(q), 1);
	assert_rejected(q, &d, COMMUNE, 1, "bad-signature", NULL);
	json_decref(q);
	assert_false(has_record(&p, "model", m));

	/* the genuine changeset is not kept out by its forged copy */
	st = (kheo_bundle_stats){ 0 };
	fh.b->frames[at] = keep;
	fh.b->lens[at] = keeplen;
	write_bundle(path, fh.b, &h);
	assert_int_equal(kheo_bundle_apply(p.db, path, &st), KHEO_OK);
	assert_int_equal(st.apply.applied, 1);
	assert_true(has_record(&p, "model", m));
	assert_string_equal(node_digest(&p, COMMUNE), node_digest(&d, COMMUNE));
	unlink(path);
	kheo_codec_free(c);
	kheo_buf_free(&raw);
	kheo_buf_free(&forged);
	frames_free(&fh);
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/*
 * A collector promoted to reviewer: the role its applied changesets carry
 * follows the certificates a node holds, not the order they came in, so a
 * node that learnt of the promotion last agrees with one that learnt it
 * first (the approval lock reads those roles).
 */
static void promotion_gives_every_node_the_same_state(void **state)
{
	test_node p, h, d, r, a, b;
	char m[KHEO_RECORD_HEX + 1];
	frames fd;
	batch bt = { 0 };

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	device_make(&d, &h, "d", COMMUNE, "collector", 365);
	device_make(&r, &h, "r", COMMUNE, "reviewer", 365);
	hub_make(&a, &p, "a", DISTRICT);
	hub_make(&b, &p, "b", DISTRICT);
	model(&d, m, COMMUNE);
	deliver(&d, &r);
	r.now += 1000;
	node_set(&r, "model", m, "status=recognized");
	d.now += 2000;
	node_set(&d, "model", m, "beneficiaries=7");
	commit(&d);
	deliver(&r, &h);

	/* a: the certificates of the day, then the work: d's edit is a
	 * collector's after the recognition, so it is locked */
	deliver(&p, &a);
	deliver(&h, &a);
	deliver(&r, &a);
	frames_of(&d, &fd);
	pick(&bt, &fd, &d, DATA_ONLY);
	apply(&a, &bt);
	assert_int_equal(int_field(&a, m, "beneficiaries"), 3);

	/* the hub promotes the collector */
	enroll(&h, &d, "reviewer", COMMUNE, 365, NULL);

	/* b: the promotion with the work; a: the promotion last */
	deliver(&p, &b);
	deliver(&h, &b);
	deliver(&r, &b);
	deliver(&d, &b);
	deliver(&h, &a);
	deliver(&d, &a);
	assert_string_equal(node_digest(&a, COMMUNE), node_digest(&b, COMMUNE));
	/* the promotion covers the author's work by position: its edit is
	 * a reviewer's now, on both */
	assert_int_equal(int_field(&a, m, "beneficiaries"), 7);
	assert_int_equal(int_field(&b, m, "beneficiaries"), 7);
	assert_verifies(&a);
	assert_verifies(&b);
	frames_free(&fd);
	node_close(&p);
	node_close(&h);
	node_close(&d);
	node_close(&r);
	node_close(&a);
	node_close(&b);
}

/*
 * A revoked device's changesets after the first one refused: each is
 * rejected as revoked on its own, not held forever behind the refused one.
 */
static void revoked_chain_successors_are_rejected_not_held(void **state)
{
	test_node p, h, d;
	char m[KHEO_RECORD_HEX + 1], dk[KHEO_KEY_HEX + 1], why[200];
	kheo_apply_stats st;
	json_t *q;

	(void)state;
	province_make(&p, "p");
	hub_make(&h, &p, "h", DISTRICT);
	device_make(&d, &h, "d", COMMUNE, "collector", 365);
	model(&d, m, COMMUNE);
	deliver(&d, &h);
	hex_of(&d, "key", dk);
	assert_int_equal(kheo_revoke(h.db, dk, NULL), KHEO_OK);
	node_set(&d, "model", m, "beneficiaries=4");
	commit(&d);
	node_set(&d, "model", m, "beneficiaries=5");
	commit(&d);
	st = deliver(&d, &h);
	assert_int_equal(st.rejected, 2);
	assert_int_equal(held_on(&h, why, sizeof(why)), 0);
	q = quarantine_of(&h);
	assert_rejected(q, &d, COMMUNE, 2, "revoked", "revoked");
	assert_rejected(q, &d, COMMUNE, 3, "revoked", "revoked");
	json_decref(q);
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(
			held_until_the_author_certificate_arrives, teardown),
		cmocka_unit_test_teardown(
			held_until_the_issuer_certificate_arrives, teardown),
		cmocka_unit_test_teardown(
			expired_certificate_holds_work_until_renewed, teardown),
		cmocka_unit_test_teardown(
			writes_outside_the_certified_unit_are_out_of_scope,
			teardown),
		cmocka_unit_test_teardown(
			collector_may_not_recognize_nor_set_level, teardown),
		cmocka_unit_test_teardown(
			certificate_beyond_its_issuer_scope_is_bad_cert,
			teardown),
		cmocka_unit_test_teardown(
			device_of_another_root_is_not_enrolled, teardown),
		cmocka_unit_test_teardown(
			revoked_device_is_rejected_whatever_its_clock,
			teardown),
		cmocka_unit_test_teardown(
			late_revocation_takes_back_what_it_excludes, teardown),
		cmocka_unit_test_teardown(
			collector_edit_after_recognition_never_wins, teardown),
		cmocka_unit_test_teardown(
			merged_commune_is_written_by_the_successor, teardown),
		cmocka_unit_test_teardown(
			promotion_gives_every_node_the_same_state, teardown),
		cmocka_unit_test_teardown(
			revoked_chain_successors_are_rejected_not_held,
			teardown),
		cmocka_unit_test_teardown(
			forged_frame_relayed_by_a_hub_is_bad_signature,
			teardown),
	};

	return cmocka_run_group_tests_name("authz", tests, NULL, NULL);
}
