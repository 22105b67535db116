/*
 * nodes.c - see nodes.h.
 */
#include "nodes.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch[256];

const char *test_scratch(void)
{
	const char *base;

	if (scratch[0])
		return scratch;
	base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	snprintf(scratch, sizeof(scratch), "%s/kheo-test-XXXXXX",
		base ? base : "/tmp");
	if (!mkdtemp(scratch))
		fail_msg("mkdtemp %s", scratch);
	return scratch;
}

void test_cleanup(void)
{
	char cmd[300];

	if (!scratch[0] || getenv("KHEO_KEEP_TEST_DATA"))
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", scratch);
	scratch[0] = '\0';
}

static int64_t node_now(void *payload)
{
	return ((test_node *)payload)->now;
}

static void open_node(test_node *n)
{
	kheo_open_options o = KHEO_OPEN_OPTIONS_INIT;

	o.now_ms = node_now;
	o.now_payload = n;
	if (kheo_db_open(&n->db, n->dir, &o) < 0)
		fail_msg("open %s: %s", n->dir, kheo_errmsg(n->db));
}

void node_make(test_node *n, const char *name, const char *unit,
	kheo_node_role role)
{
	kheo_init_options init = KHEO_INIT_OPTIONS_INIT;
	kheo_open_options o = KHEO_OPEN_OPTIONS_INIT;

	memset(n, 0, sizeof(*n));
	snprintf(n->dir, sizeof(n->dir), "%s/%s", test_scratch(), name);
	n->now = 1764000000000LL; /* 2025-11-24 */
	init.role = role;
	init.unit = unit;
	o.now_ms = node_now;
	o.now_payload = n;
	if (kheo_db_init(&n->db, n->dir, &init, &o) < 0)
		fail_msg("init %s: %s", n->dir, kheo_errmsg(n->db));
}

void node_close(test_node *n)
{
	kheo_db_close(n->db);
	n->db = NULL;
}

void node_reopen(test_node *n)
{
	node_close(n);
	open_node(n);
}

void node_send(test_node *from, test_node *to, kheo_bundle_stats *st)
{
	char path[600];
	kheo_bundle_stats local;

	snprintf(path, sizeof(path), "%s/bundle-%p-%p", test_scratch(),
		(void *)from, (void *)to);
	if (kheo_bundle_create(from->db, path, NULL, NULL) < 0)
		fail_msg("bundle create: %s", kheo_errmsg(from->db));
	if (kheo_bundle_apply(to->db, path, st ? st : &local) < 0)
		fail_msg("bundle apply: %s", kheo_errmsg(to->db));
	unlink(path);
}

const char *node_digest(test_node *n, const char *prefix)
{
	static char hex[65];
	uint8_t d[32];

	if (kheo_digest(n->db, d, prefix) < 0)
		fail_msg("digest: %s", kheo_errmsg(n->db));
	kheo_hex(hex, d, 32);
	return hex;
}

static void parse(char *buf, kheo_assign *a)
{
	char *eq = strchr(buf, '=');

	assert_non_null(eq);
	a->op = KHEO_ASSIGN_SET;
	if (eq[-1] == '+' || eq[-1] == '-') {
		a->op = eq[-1] == '+' ? KHEO_ASSIGN_ADD : KHEO_ASSIGN_REMOVE;
		eq[-1] = '\0';
	}
	*eq = '\0';
	a->field = buf;
	a->value = eq + 1;
}

void node_put(test_node *n, char id[KHEO_RECORD_HEX + 1], const char *table,
	const char *a1, const char *a2, const char *a3)
{
	char b[3][256];
	kheo_assign a[3];
	const char *in[3] = { a1, a2, a3 };
	size_t k = 0, i;

	for (i = 0; i < 3; i++)
		if (in[i]) {
			snprintf(b[k], sizeof(b[k]), "%s", in[i]);
			parse(b[k], &a[k]);
			k++;
		}
	if (kheo_put(n->db, id, table, NULL, a, k) < 0)
		fail_msg("put: %s", kheo_errmsg(n->db));
}

void node_set(test_node *n, const char *table, const char *id,
	const char *assign)
{
	char b[256];
	kheo_assign a;

	snprintf(b, sizeof(b), "%s", assign);
	parse(b, &a);
	if (kheo_set(n->db, table, id, &a, 1) < 0)
		fail_msg("set %s: %s", assign, kheo_errmsg(n->db));
}

json_t *node_get(test_node *n, const char *table, const char *id)
{
	char *text;
	json_t *j;

	if (kheo_get_json(n->db, &text, table, id) < 0)
		fail_msg("get: %s", kheo_errmsg(n->db));
	j = json_loads(text, 0, NULL);
	kheo_free(text);
	assert_non_null(j);
	return j;
}

void node_id_hex(test_node *n, const char *what, char out[65])
{
	char *text;
	json_t *o;

	if (kheo_id_json(n->db, &text) < 0)
		fail_msg("id: %s", kheo_errmsg(n->db));
	o = json_loads(text, 0, NULL);
	snprintf(out, 65, "%s", json_string_value(json_object_get(o, what)));
	json_decref(o);
	kheo_free(text);
}

void node_enroll(test_node *issuer, test_node *n, const char *role,
	const char *unit)
{
	char *req, *cert, root[65];

	node_id_hex(issuer, "root", root);
	if (kheo_enroll_request(n->db, &req) < 0 ||
	    kheo_enroll_sign(issuer->db, req, role, unit, 365, &cert) < 0 ||
	    kheo_enroll_accept(n->db, cert, root) < 0)
		fail_msg("enrol: %s / %s", kheo_errmsg(n->db),
			kheo_errmsg(issuer->db));
	kheo_free(req);
	kheo_free(cert);
}

void node_tiers(test_node *p, test_node *h, test_node *d)
{
	node_make(p, "p", TEST_PROVINCE, KHEO_NODE_PROVINCE);
	node_make(h, "h", TEST_DISTRICT, KHEO_NODE_HUB);
	node_enroll(p, h, "hub", TEST_DISTRICT);
	node_make(d, "d", TEST_COMMUNE, KHEO_NODE_DEVICE);
	node_enroll(h, d, "collector", TEST_COMMUNE);
}

void session_pump(kheo_session *a, kheo_session *b, test_link *l)
{
	int rounds, last = -1;

	l->cut = 0;
	for (rounds = 0; rounds < 1000000; rounds++) {
		int moved = 0, side;

		if (l->each_round)
			l->each_round(l->arg);
		for (side = 0; side < 2; side++) {
			kheo_session *from = side ? b : a, *to = side ? a : b;
			const uint8_t *p;
			size_t n;

			kheo_session_output(from, &p, &n);
			if (!n)
				continue;
			if (l->cut_after && l->bytes + n > l->cut_after)
				n = (size_t)(l->cut_after - l->bytes);
			if (n) {
				/* a copy: sent() may reuse the sender's
				 * buffer */
				uint8_t *copy = malloc(n);

				memcpy(copy, p, n);
				kheo_session_sent(from, n);
				l->bytes += n;
				kheo_session_input(to, copy, n);
				free(copy);
				moved = 1;
				if (last != side)
					l->flights++;
				last = side;
			}
			if (l->cut_after && l->bytes >= l->cut_after) {
				l->cut = 1;
				return;
			}
		}
		if (!moved)
			return;
	}
}
