/*
 * test_convergence.c - the property that makes the merge conflict-free:
 * N replicas (2 to 7) make random edits, exchange changesets by bundles in
 * random order, with duplicates and partial delivery, now and then one of
 * them is cloned whole (equivocation), and after a final full exchange
 * every replica prints the same digest.
 *
 * Odd seeds run with authorisation on: a province enrols every replica
 * (collectors of two communes, reviewers over the whole province), so
 * edits are checked on receipt, certificates arrive in any order (holding
 * what they cover until they come), and reviewers' recognitions lock
 * records against collectors' concurrent edits (the approval lock).
 *
 * KHEO_SCENARIOS sets how many seeded scenarios run (default 2000; `make
 * soak` runs 100000).  A failure names its seed; KHEO_SEED=n replays one.
 */
#include "nodes.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_NODES 7
#define MAX_RECORDS 64

typedef struct rng {
	uint64_t s;
} rng;

static uint64_t next(rng *r)
{
	/* xorshift64*: deterministic across platforms */
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 2685821657736338717ull;
}

static unsigned pick(rng *r, unsigned n)
{
	return (unsigned)(next(r) % n);
}

typedef struct world {
	test_node node[MAX_NODES];
	int n;
	char ids[MAX_RECORDS][KHEO_RECORD_HEX + 1];
	int nids;
	rng r;
	kheo_buf file;
	int authz;        /* replicas enrolled: authorisation on */
} world;

static const char *const statuses[] = { "registered", "building", "review",
	"recognized", "replicated", "withdrawn" };
static const char *const tags[] = { "bò", "cà phê", "tiêu", "lúa" };

/* Edits may be refused (a record this node has not seen, or deleted):
 * that is the node's answer, not a test failure. */
static void random_edit(world *w, test_node *n)
{
	char buf[64];
	kheo_assign a = { 0 };
	unsigned k = pick(&w->r, 100);
	const char *id;

	if (k < 20 || w->nids == 0) {
		char unit[64];
		kheo_assign p[3] = {
			{ "name", KHEO_ASSIGN_SET, "Mô hình" },
			{ "unit", KHEO_ASSIGN_SET, unit },
			{ "status", KHEO_ASSIGN_SET, statuses[pick(&w->r, 6)] },
		};

		if (w->nids == MAX_RECORDS)
			return;
		/* with authorisation, two communes shared by the replicas */
		snprintf(unit, sizeof(unit), "dak-nong/u%d",
			(int)(n - w->node) % (w->authz ? 2 : MAX_NODES + 1));
		if (kheo_put(n->db, w->ids[w->nids], "model", NULL, p, 3) == 0)
			w->nids++;
		return;
	}
	id = w->ids[pick(&w->r, (unsigned)w->nids)];
	if (k < 70) {
		a.op = KHEO_ASSIGN_SET;
		switch (pick(&w->r, 3)) {
		case 0:
			a.field = "status";
			a.value = statuses[pick(&w->r, 6)];
			break;
		case 1:
			a.field = "beneficiaries";
			snprintf(buf, sizeof(buf), "%u", pick(&w->r, 500));
			a.value = buf;
			break;
		default:
			a.field = "name";
			snprintf(buf, sizeof(buf), "Mô hình số %u",
				pick(&w->r, 1000));
			a.value = buf;
		}
	} else if (k < 82) {
		a.op = KHEO_ASSIGN_ADD;
		a.field = "tags";
		a.value = tags[pick(&w->r, 4)];
	} else if (k < 90) {
		a.op = KHEO_ASSIGN_REMOVE;
		a.field = "tags";
		a.value = tags[pick(&w->r, 4)];
	} else if (k < 96) {
		kheo_delete(n->db, "model", id);
		return;
	} else {
		a.op = KHEO_ASSIGN_SET;
		a.field = "_deleted";
		a.value = "false";
	}
	kheo_set(n->db, "model", id, &a, 1);
}

/* Some of a's changesets reach b: a random subset, shuffled, some twice. */
static void partial_delivery(world *w, test_node *a, test_node *b)
{
	char path[600];
	const uint8_t *frames[256];
	size_t lens[256], k = 0, i;
	kheo_bundle *bun;
	uint8_t *p;
	size_t len;

	snprintf(path, sizeof(path), "%s/partial", test_scratch());
	if (kheo_bundle_create(a->db, path, NULL, NULL) < 0)
		fail_msg("bundle: %s", kheo_errmsg(a->db));
	p = test_read_file(path, &len);
	kheo_buf_reset(&w->file);
	kheo_buf_put(&w->file, p, len);
	free(p);
	assert_int_equal(kheo_bundle_decode(&bun, w->file.p, w->file.len,
				 NULL), KHEO_OK);
	for (i = 0; i < bun->nframes && k < 250; i++) {
		unsigned roll = pick(&w->r, 10);

		if (roll < 3)
			continue; /* lost */
		frames[k] = bun->frames[i];
		lens[k++] = bun->lens[i];
		if (roll == 9) { /* delivered twice */
			frames[k] = bun->frames[i];
			lens[k++] = bun->lens[i];
		}
	}
	for (i = k; i > 1; i--) { /* shuffle */
		size_t j = pick(&w->r, (unsigned)i);
		const uint8_t *f = frames[i - 1];
		size_t l = lens[i - 1];

		frames[i - 1] = frames[j];
		lens[i - 1] = lens[j];
		frames[j] = f;
		lens[j] = l;
	}
	if (kheo_apply(b->db, frames, lens, k, NULL) < 0)
		fail_msg("apply: %s", kheo_errmsg(b->db));
	kheo_bundle_free(bun);
}

/*
 * A device copied whole, key and clock included (a cloned phone): from now
 * on two devices sign one author's chains, so the replicas see
 * equivocation and, at times, equal op ids with different content.
 */
static void clone_node(world *w, test_node *n)
{
	test_node *c = &w->node[w->n];
	char cmd[2048], from[sizeof(n->dir)];

	node_close(n);
	memcpy(from, n->dir, sizeof(from));
	snprintf(c->dir, sizeof(c->dir), "%.480s-clone%d", from, w->n);
	snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s'", from, c->dir);
	if (system(cmd) != 0)
		fail_msg("%s failed", cmd);
	c->now = n->now;
	c->db = NULL;
	node_reopen(n);
	node_reopen(c);
	w->n++;
}

/* Enrol `n` under the province `p` as `role` over `unit`, offline, through
 * the public API (request, sign, accept with the root fingerprint). */
static void enrol(test_node *p, const char *root, test_node *n,
	const char *role, const char *unit)
{
	char *req = NULL, *cert = NULL;

	if (kheo_enroll_request(n->db, &req) < 0 ||
	    kheo_enroll_sign(p->db, req, role, unit, 365, &cert) < 0 ||
	    kheo_enroll_accept(n->db, cert, root) < 0)
		fail_msg("enrol %s as %s of %s: %s / %s", n->dir, role, unit,
			kheo_errmsg(n->db), kheo_errmsg(p->db));
	kheo_free(req);
	kheo_free(cert);
}

static void root_of(test_node *p, char root[65])
{
	char *text = NULL;
	json_t *o;

	if (kheo_id_json(p->db, &text) < 0)
		fail_msg("id: %s", kheo_errmsg(p->db));
	o = json_loads(text, 0, NULL);
	snprintf(root, 65, "%s", json_string_value(json_object_get(o, "key")));
	json_decref(o);
	kheo_free(text);
}

static void scenario(uint64_t seed)
{
	test_node prov;
	char root[65];
	world w;
	int i, j, step, steps;
	char first[65];

	memset(&w, 0, sizeof(w));
	w.r.s = seed * 0x9e3779b97f4a7c15ull + 1;
	w.n = 2 + (int)(seed % 6);
	w.authz = (int)(seed % 2);
	if (w.authz) {
		char name[32];

		snprintf(name, sizeof(name), "s%llu-p", (unsigned long long)seed);
		node_make(&prov, name, "dak-nong", KHEO_NODE_PROVINCE);
		root_of(&prov, root);
	}
	for (i = 0; i < w.n; i++) {
		char name[32], unit[32];

		snprintf(name, sizeof(name), "s%llu-n%d",
			(unsigned long long)seed, i);
		snprintf(unit, sizeof(unit), "dak-nong/u%d",
			w.authz ? i % 2 : i);
		node_make(&w.node[i], name, unit, KHEO_NODE_DEVICE);
		/* a reviewer over the province, or a collector of a commune */
		if (w.authz)
			enrol(&prov, root, &w.node[i],
				i % 3 == 0 ? "reviewer" : "collector",
				i % 3 == 0 ? "dak-nong" : unit);
		/* clocks a little apart, as real devices are */
		w.node[i].now += (int64_t)pick(&w.r, 5000);
	}
	if (w.authz)
		node_close(&prov);
	steps = 15 + (int)pick(&w.r, 30);
	for (step = 0; step < steps; step++) {
		test_node *n = &w.node[pick(&w.r, (unsigned)w.n)];
		unsigned k = pick(&w.r, 100);

		for (i = 0; i < w.n; i++)
			w.node[i].now += (int64_t)pick(&w.r, 3) * 
				(int64_t)pick(&w.r, 1000);
		if (k < 65) {
			random_edit(&w, n);
		} else if (k < 75) {
			if (kheo_commit(n->db, NULL) < 0)
				fail_msg("seed %llu: commit: %s",
					(unsigned long long)seed,
					kheo_errmsg(n->db));
		} else if (k == 75 && w.n < MAX_NODES) {
			clone_node(&w, n);
		} else {
			test_node *to = &w.node[pick(&w.r, (unsigned)w.n)];

			if (to != n)
				partial_delivery(&w, n, to);
		}
	}
	/* the final full exchange: twice round, so everything reaches all */
	for (step = 0; step < 2; step++)
		for (i = 0; i < w.n; i++)
			for (j = 0; j < w.n; j++)
				if (i != j)
					node_send(&w.node[i], &w.node[j], NULL);
	snprintf(first, sizeof(first), "%s", node_digest(&w.node[0], ""));
	for (i = 1; i < w.n; i++)
		if (strcmp(node_digest(&w.node[i], ""), first) != 0)
			fail_msg("seed %llu: replica %d's digest differs from "
				 "replica 0's", (unsigned long long)seed, i);
	if (seed % 50 == 0 && kheo_verify(w.node[seed % w.n].db) < 0)
		fail_msg("seed %llu: verify: %s", (unsigned long long)seed,
			kheo_errmsg(w.node[seed % w.n].db));
	for (i = 0; i < w.n; i++)
		node_close(&w.node[i]);
	kheo_buf_free(&w.file);
}

static void replicas_converge(void **state)
{
	const char *env = getenv("KHEO_SCENARIOS");
	const char *one = getenv("KHEO_SEED");
	uint64_t n = env ? strtoull(env, NULL, 10) : 2000, s;

	(void)state;
	if (one) {
		scenario(strtoull(one, NULL, 10));
		test_cleanup();
		return;
	}
	for (s = 0; s < n; s++) {
		scenario(s);
		if (s % 20 == 19)
			test_cleanup(); /* keep the scratch folder small */
	}
	test_cleanup();
	printf("# %llu scenarios converged\n", (unsigned long long)n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(replicas_converge),
	};

	return cmocka_run_group_tests_name("convergence", tests, NULL, NULL);
}
