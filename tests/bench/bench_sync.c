/*
 * bench_sync.c - the whole trace through real sync sessions: every node of
 * the trace (province, hubs, devices) is a kheo node with its own data
 * directory, enrolled under the province; every `sync a b` line is one
 * session, a as client and b as server, whose bytes the bench carries
 * between the two in memory (no sockets: what the daemon adds is measured
 * by the daemon bench) and counts.
 *
 *   bench_sync TRACE.jsonl SCRATCH_DIR
 *
 * The trace replicates the whole province to every node, so every node is
 * enrolled over the whole province: hubs as hubs, devices as reviewers
 * (the trace sets `level` and `recognized`).  Figures: bytes on the wire
 * in all (handshakes, certificates, heads and frames included) per op and
 * as a ratio to what Automerge's sync moved for the medium trace (279 MB,
 * measured outside this repository), wall time and peak RSS as ratios to
 * Yjs's (197 s, 6.0 GB, likewise), sessions, and whether
 * every node ends with the same digest.  No pass/fail on figures; exits 1
 * if a session fails or the digests differ.
 */
#include "kheo.h"
#include "trace.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#define AUTOMERGE_MEDIUM_BYTES 279e6
#define YJS_MEDIUM_SECONDS 197.0
#define YJS_MEDIUM_RSS_MB 6000.0
#define CACHE_KIB 2048

typedef struct node {
	char name[32];
	kheo_db *db;
} node;

static node *nodes;
static size_t nnodes;

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_sync: %s: %s\n", what, msg);
	exit(1);
}

static node *find(const char *name)
{
	size_t i;

	for (i = 0; i < nnodes; i++)
		if (strcmp(nodes[i].name, name) == 0)
			return &nodes[i];
	die(name, "not in the topology");
	return NULL;
}

static node *make(const char *dir, const char *name, kheo_node_role role,
	const char *unit)
{
	kheo_init_options init = KHEO_INIT_OPTIONS_INIT;
	kheo_open_options open = KHEO_OPEN_OPTIONS_INIT;
	char path[1024], *p;
	node *n = &nodes[nnodes++];

	snprintf(n->name, sizeof(n->name), "%s", name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	for (p = path + strlen(dir) + 1; *p; p++)
		if (*p == '/')
			*p = '-';
	init.role = role;
	init.unit = unit;
	/* 89 nodes live in this process, as 89 phones and servers would
	 * not: each keeps a page cache of CACHE_KIB, its data on disk */
	open.cache_kib = CACHE_KIB;
	if (kheo_db_init(&n->db, path, &init, &open) < 0)
		die(path, kheo_errmsg(n->db));
	return n;
}

static void root_of(node *p, char root[65])
{
	char *text;
	json_t *o;

	if (kheo_id_json(p->db, &text) < 0)
		die("id", kheo_errmsg(p->db));
	o = json_loads(text, 0, NULL);
	snprintf(root, 65, "%s", json_string_value(json_object_get(o, "key")));
	json_decref(o);
	kheo_free(text);
}

static void enroll(node *issuer, const char *root, node *n, const char *role,
	const char *unit)
{
	char *req, *cert;

	if (kheo_enroll_request(n->db, &req) < 0 ||
	    kheo_enroll_sign(issuer->db, req, role, unit, 365, &cert) < 0 ||
	    kheo_enroll_accept(n->db, cert, root) < 0)
		die(n->name, "enrolment failed");
	kheo_free(req);
	kheo_free(cert);
}

static uint64_t frame_bytes;

static void sync_pair(node *a, node *b, uint64_t *bytes, size_t *moved)
{
	kheo_session_options co = KHEO_SESSION_OPTIONS_INIT;
	kheo_session_options so = KHEO_SESSION_OPTIONS_INIT;
	kheo_session *c, *s;
	kheo_session_stats cs, ss;

	co.initiator = 1;
	if (kheo_session_new(&c, a->db, &co) < 0)
		die(a->name, kheo_errmsg(a->db));
	if (kheo_session_new(&s, b->db, &so) < 0)
		die(b->name, kheo_errmsg(b->db));
	for (;;) {
		const uint8_t *p;
		size_t n;
		int side, busy = 0;

		for (side = 0; side < 2; side++) {
			kheo_session *from = side ? s : c, *to = side ? c : s;

			kheo_session_output(from, &p, &n);
			if (!n)
				continue;
			busy = 1;
			*bytes += n;
			{
				uint8_t *copy = malloc(n);

				memcpy(copy, p, n);
				kheo_session_sent(from, n);
				kheo_session_input(to, copy, n);
				free(copy);
			}
		}
		if (!busy)
			break;
	}
	if (kheo_session_status(c, &cs) != KHEO_SESSION_DONE ||
	    kheo_session_status(s, &ss) != KHEO_SESSION_DONE) {
		fprintf(stderr, "bench_sync: %s -> %s: %s%s\n", a->name,
			b->name, kheo_session_error(c), kheo_session_error(s));
		exit(1);
	}
	*moved += cs.sent + ss.sent;
	frame_bytes += cs.frame_bytes + ss.frame_bytes;
	kheo_session_free(c);
	kheo_session_free(s);
}

int main(int argc, char **argv)
{
	FILE *f;
	char *text = NULL, root[65], first[65] = "", cmd[2200];
	size_t cap = 0, ops = 0, sessions = 0, moved = 0, i;
	uint64_t bytes = 0;
	double t0, t_setup;
	node *prov = NULL;
	struct rusage ru;

	if (argc != 3) {
		fprintf(stderr, "usage: bench_sync TRACE.jsonl SCRATCH_DIR\n");
		return 2;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", argv[2],
		argv[2]);
	if (system(cmd) != 0)
		die(argv[2], "cannot make the scratch folder");
	if (!(f = fopen(argv[1], "r")))
		die(argv[1], "cannot open");
	t0 = now_s();
	while (getline(&text, &cap, f) > 0) {
		json_t *j = json_loads(text, 0, NULL);
		const char *op = json_string_value(json_object_get(j, "op"));

		if (!op)
			die(argv[1], "a line without op");
		if (strcmp(op, "topology") == 0) {
			json_t *ds = json_object_get(j, "districts"), *d;
			size_t k, m, total = 1;

			json_array_foreach(ds, k, d)
				total += 1 + json_array_size(
					json_object_get(d, "devices"));
			nodes = calloc(total, sizeof(*nodes));
			prov = make(argv[2], "province", KHEO_NODE_PROVINCE,
				"dak-nong");
			root_of(prov, root);
			json_array_foreach(ds, k, d) {
				const char *id = json_string_value(
					json_object_get(d, "id"));
				node *h = make(argv[2], id, KHEO_NODE_HUB,
					"dak-nong");
				json_t *dev;

				enroll(prov, root, h, "hub", "dak-nong");
				json_array_foreach(json_object_get(d,
						   "devices"), m, dev) {
					node *n = make(argv[2],
						json_string_value(dev),
						KHEO_NODE_DEVICE, "dak-nong");

					enroll(prov, root, n, "reviewer",
						"dak-nong");
				}
			}
			/* every node knows every certificate before the trace
			 * starts, as the province's `_sys` would bring them */
			for (k = 1; k < nnodes; k++)
				sync_pair(&nodes[k], prov, &bytes, &moved);
			for (k = 1; k < nnodes; k++)
				sync_pair(&nodes[k], prov, &bytes, &moved);
			t_setup = now_s() - t0;
			printf("setup: %zu nodes enrolled, certificates spread "
			       "(%.1f s, %.2f MB)\n", nnodes, t_setup,
				(double)bytes / 1e6);
			bytes = 0;
			moved = 0;
			frame_bytes = 0;
			t0 = now_s();
		} else if (strcmp(op, "put") == 0 || strcmp(op, "set") == 0 ||
			   strcmp(op, "del") == 0) {
			node *n = find(json_string_value(json_object_get(j,
				"dev")));

			if (trace_edit(n->db, j) < 0)
				die(n->name, kheo_errmsg(n->db));
			ops++;
		} else if (strcmp(op, "sync") == 0) {
			sync_pair(find(json_string_value(json_object_get(j,
					  "a"))),
				find(json_string_value(json_object_get(j, "b"))),
				&bytes, &moved);
			sessions++;
		}
		json_decref(j);
	}
	free(text);
	fclose(f);
	{
		double t = now_s() - t0;
		int same = 1;

		for (i = 0; i < nnodes; i++) {
			uint8_t d[32];
			char hex[65];
			size_t k;

			if (kheo_digest(nodes[i].db, d, "dak-nong") < 0)
				die(nodes[i].name, kheo_errmsg(nodes[i].db));
			for (k = 0; k < 32; k++)
				snprintf(hex + 2 * k, 3, "%02x", d[k]);
			if (!first[0])
				snprintf(first, sizeof(first), "%s", hex);
			else if (strcmp(first, hex) != 0)
				same = 0;
		}
		getrusage(RUSAGE_SELF, &ru);
		printf("trace: %zu ops, %zu sync sessions, %zu changesets moved\n",
			ops, sessions, moved);
		printf("  bytes on the wire        %.2f MB  (%.0f B/op)\n",
			(double)bytes / 1e6, (double)bytes / (double)ops);
		printf("  of which changeset frames %.2f MB (%.0f B per changeset "
		       "moved); the rest handshakes, certificates, heads\n",
			(double)frame_bytes / 1e6,
			moved ? (double)frame_bytes / (double)moved : 0.0);
		printf("  ratio to Automerge sync  %.3fx  (279 MB on the medium "
		       "trace; target <= 0.5x)\n",
			(double)bytes / AUTOMERGE_MEDIUM_BYTES);
		printf("  wall time                %.1f s  (all %zu nodes in "
		       "one process; %.2fx Yjs's 197 s, target <= 0.1x)\n", t,
			nnodes, t / YJS_MEDIUM_SECONDS);
		printf("  CPU time                 %.1f s  (user and system, this "
		       "process: the wall time counts what else runs)\n",
			(double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
			(double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
		printf("  peak RSS                 %.1f MB  (the whole process, "
		       "%u KiB of page cache per node; %.2fx Yjs's 6.0 GB, "
		       "target <= 0.1x)\n", (double)ru.ru_maxrss / 1024.0,
			CACHE_KIB, (double)ru.ru_maxrss / 1024.0 /
				YJS_MEDIUM_RSS_MB);
		printf("  every node's digest of dak-nong: %s\n",
			same ? "equal" : "DIFFERENT");
		for (i = 0; i < nnodes; i++)
			kheo_db_close(nodes[i].db);
		free(nodes);
		return same ? 0 : 1;
	}
}
