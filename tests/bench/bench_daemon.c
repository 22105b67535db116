/*
 * bench_daemon.c - a trace through real kheod processes on loopback: a
 * province kheod and one kheod per district hub, each on its own data
 * directory and port, the hubs' upstream the province.
 *
 *   bench_daemon KHEOD TRACE.jsonl SCRATCH_DIR [AUTOMERGE_BYTES]
 *
 * Devices run no daemon: they are data directories this process drives
 * through libkheo, as a phone app would.  Each `sync` line of the trace is
 * one session:
 *   device <-> hub       over TCP to the hub's kheod, the device the
 *                        client (bytes counted on this side's socket);
 *   hub <-> province     the hub's kheod calls its upstream, asked on
 *                        its control socket as `kheo sync --now` does
 *                        (bytes from the session's line it answers with:
 *                        what crossed that socket);
 *   device <-> device    the trace's phase-1 syncs: in-process sessions
 *                        whose bytes this process carries, as bench_sync
 *                        does (no daemon is involved; counted apart).
 * Every node is enrolled as in bench_sync (hubs as hubs, devices as
 * reviewers, all over the province, by the province) and learns every
 * certificate before the trace starts: each hub calls the province
 * twice, each device syncs with the province's kheod twice.
 *
 * Figures: bytes on the wire per op (the daemons' sockets, and in all),
 * wall time, the peak RSS (VmHWM) of each hub's kheod and of the
 * province's, this process's (every device), and whether every node ends
 * with the same kheo_digest over "dak-nong"; with AUTOMERGE_BYTES (what
 * Automerge's sync moved on this trace: 279e6 for the medium one), the
 * ratio of the bytes to it.  No pass/fail on figures;
 * exits 1 if a session fails or the digests differ.
 */
#include "daemons.h"

#include <jansson.h>
#include <sys/resource.h>

enum kind { DEVICE, HUB, PROVINCE };

typedef struct node {
	bnode n;
	enum kind kind;
	kheod d;              /* hubs and the province */
} node;

static node *nodes;
static size_t nnodes;
static char kheod_bin[1024];

static node *find(const char *name)
{
	size_t i;

	for (i = 0; i < nnodes; i++)
		if (strcmp(nodes[i].n.name, name) == 0)
			return &nodes[i];
	die("%s: not in the topology", name);
}

static struct {
	uint64_t tcp, up, local;        /* bytes */
	size_t ntcp, nup, nlocal;       /* sessions */
	size_t moved;                   /* changesets, all sessions */
} w;

/* device <-> device: both sessions here, bytes carried in memory. */
static void sync_local(node *a, node *b)
{
	kheo_session_options co = KHEO_SESSION_OPTIONS_INIT;
	kheo_session_options so = KHEO_SESSION_OPTIONS_INIT;
	kheo_session *c, *s;
	kheo_session_stats cs, ss;
	uint8_t *copy = NULL;
	size_t cap = 0;

	co.initiator = 1;
	if (kheo_session_new(&c, a->n.db, &co) < 0)
		die("%s: %s", a->n.name, kheo_errmsg(a->n.db));
	if (kheo_session_new(&s, b->n.db, &so) < 0)
		die("%s: %s", b->n.name, kheo_errmsg(b->n.db));
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
			w.local += n;
			if (n > cap && !(copy = realloc(copy, cap = n)))
				die("out of memory");
			memcpy(copy, p, n);
			kheo_session_sent(from, n);
			kheo_session_input(to, copy, n);
		}
		if (!busy)
			break;
	}
	free(copy);
	if (kheo_session_status(c, &cs) != KHEO_SESSION_DONE ||
	    kheo_session_status(s, &ss) != KHEO_SESSION_DONE)
		die("%s -> %s: %s%s", a->n.name, b->n.name,
			kheo_session_error(c), kheo_session_error(s));
	w.moved += cs.sent + ss.sent;
	w.nlocal++;
	kheo_session_free(c);
	kheo_session_free(s);
}

/* device -> a kheod, over TCP. */
static void sync_tcp(node *dev, node *server, uint64_t *bytes)
{
	kheo_session_stats st;
	char err[512];

	if (drive_tcp(dev->n.db, server->d.port, bytes, &st, err,
		    sizeof(err)) != KHEO_SESSION_DONE)
		die("%s -> %s: %s (see %s)", dev->n.name, server->n.name, err,
			server->d.log);
	w.moved += st.sent + st.received;
}

/* A hub's kheod calls the province now: "sync" on its control socket,
 * then its answer; the session's bytes, from the line, into *bytes. */
static void sync_up(node *hub, uint64_t *bytes)
{
	struct sockaddr_un sa = { 0 };
	char buf[4096], *ok, *p;
	size_t have = 0, sent = 0, received = 0;
	unsigned long long in = 0, out = 0;
	ssize_t k;
	int fd;

	sa.sun_family = AF_UNIX;
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/kheod.sock",
		    hub->n.dir) >= sizeof(sa.sun_path))
		die("%s: path too long for a Unix socket", hub->n.dir);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    write(fd, "sync\n", 5) != 5)
		die("%s: %s", sa.sun_path, strerror(errno));
	while (have < sizeof(buf) - 1 &&
	       (k = read(fd, buf + have, sizeof(buf) - 1 - have)) != 0) {
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			die("%s: %s", sa.sun_path, strerror(errno));
		have += (size_t)k;
	}
	close(fd);
	buf[have] = '\0';
	if (!(ok = strstr(buf, "\nok: ")) ||
	    !(p = strstr(ok, "), ")) ||
	    sscanf(p, "), %llu bytes in, %llu out", &in, &out) != 2)
		die("%s's upstream: %s (see %s)", hub->n.name, buf,
			hub->d.log);
	if ((p = strstr(ok, ": sent ")))
		sscanf(p, ": sent %zu, received %zu", &sent, &received);
	*bytes += in + out;
	w.moved += sent + received;
}

static void sync_pair(node *a, node *b, int counted)
{
	uint64_t scratch = 0;
	node *dev, *other;

	if (a->kind == DEVICE && b->kind == DEVICE) {
		sync_local(a, b);
		return;
	}
	if (a->kind == DEVICE || b->kind == DEVICE) {
		dev = a->kind == DEVICE ? a : b;
		other = a->kind == DEVICE ? b : a;
		sync_tcp(dev, other, counted ? &w.tcp : &scratch);
		w.ntcp += counted;
		return;
	}
	if (a->kind == HUB && b->kind == PROVINCE) {
		sync_up(a, counted ? &w.up : &scratch);
	} else if (b->kind == HUB && a->kind == PROVINCE) {
		sync_up(b, counted ? &w.up : &scratch);
	} else {
		die("sync %s %s: no such session in this bench", a->n.name,
			b->n.name);
	}
	w.nup += counted;
}

static void start_daemons(const char *prov_key)
{
	char conf[1024];
	size_t i;
	node *prov = &nodes[0];
	int pport = free_port();

	snprintf(conf, sizeof(conf), "listen = 127.0.0.1:%d\n"
		"log_level = info\n", pport);
	kheod_start(&prov->d, kheod_bin, prov->n.dir, conf, pport);
	for (i = 1; i < nnodes; i++) {
		int port;

		if (nodes[i].kind != HUB)
			continue;
		port = free_port();
		snprintf(conf, sizeof(conf), "listen = 127.0.0.1:%d\n"
			"upstream = 127.0.0.1:%d\nupstream_key = %s\n"
			"nightly = off\nlog_level = info\n", port, pport,
			prov_key);
		kheod_start(&nodes[i].d, kheod_bin, nodes[i].n.dir, conf, port);
	}
}

int main(int argc, char **argv)
{
	FILE *f;
	char *text = NULL, root[KHEO_KEY_HEX + 1], first[65] = "";
	char cmd[2200];
	size_t cap = 0, ops = 0, i, nhubs = 0;
	unsigned long hwm, hub_max = 0, hub_sum = 0, prov_hwm = 0;
	char each[1024] = "";
	double t0;
	struct rusage ru;
	int same = 1, bad = 0;

	bench_name = "bench_daemon";
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: bench_daemon KHEOD TRACE.jsonl "
			"SCRATCH_DIR [AUTOMERGE_BYTES]\n");
		return 2;
	}
	if (!realpath(argv[1], kheod_bin))
		die("%s: %s", argv[1], strerror(errno));
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", argv[3],
		argv[3]);
	if (system(cmd) != 0)
		die("%s: cannot make the scratch folder", argv[3]);
	if (!(f = fopen(argv[2], "r")))
		die("%s: cannot open", argv[2]);
	t0 = now_s();
	while (getline(&text, &cap, f) > 0) {
		json_t *j = json_loads(text, 0, NULL);
		const char *op = json_string_value(json_object_get(j, "op"));

		if (!op)
			die("%s: a line without op", argv[2]);
		if (strcmp(op, "topology") == 0) {
			json_t *ds = json_object_get(j, "districts"), *d;
			size_t k, m, total = 1;
			char prov_key[KHEO_KEY_HEX + 1];

			json_array_foreach(ds, k, d)
				total += 1 + json_array_size(
					json_object_get(d, "devices"));
			nodes = calloc(total, sizeof(*nodes));
			node_make(&nodes[0].n, argv[3], "province",
				KHEO_NODE_PROVINCE, "dak-nong");
			nodes[0].kind = PROVINCE;
			nnodes = 1;
			node_key(&nodes[0].n, root);
			snprintf(prov_key, sizeof(prov_key), "%s", root);
			json_array_foreach(ds, k, d) {
				node *h = &nodes[nnodes++];
				json_t *dev;

				node_make(&h->n, argv[3], json_string_value(
					json_object_get(d, "id")),
					KHEO_NODE_HUB, "dak-nong");
				h->kind = HUB;
				nhubs++;
				node_enroll(&nodes[0].n, root, &h->n, "hub",
					"dak-nong");
				json_array_foreach(json_object_get(d,
						   "devices"), m, dev) {
					node *n = &nodes[nnodes++];

					node_make(&n->n, argv[3],
						json_string_value(dev),
						KHEO_NODE_DEVICE, "dak-nong");
					n->kind = DEVICE;
					node_enroll(&nodes[0].n, root, &n->n,
						"reviewer", "dak-nong");
				}
			}
			/* the daemons own their stores from now on */
			for (k = 0; k < nnodes; k++)
				if (nodes[k].kind != DEVICE)
					node_close(&nodes[k].n);
			start_daemons(prov_key);
			/* every node knows every certificate before the trace
			 * starts, as the province's `_sys` would bring them */
			for (m = 0; m < 2; m++)
				for (k = 1; k < nnodes; k++)
					sync_pair(&nodes[k], &nodes[0], 0);
			printf("setup: %zu nodes enrolled, %zu kheods started, "
			       "certificates spread (%.1f s)\n", nnodes,
				nhubs + 1, now_s() - t0);
			memset(&w, 0, sizeof(w));
			t0 = now_s();
		} else if (strcmp(op, "put") == 0 || strcmp(op, "set") == 0 ||
			   strcmp(op, "del") == 0) {
			node *n = find(json_string_value(json_object_get(j,
				"dev")));

			if (trace_edit(n->n.db, j) < 0)
				die("%s: %s", n->n.name, kheo_errmsg(n->n.db));
			ops++;
		} else if (strcmp(op, "sync") == 0) {
			sync_pair(find(json_string_value(json_object_get(j,
					  "a"))),
				find(json_string_value(json_object_get(j, "b"))),
				1);
		}
		json_decref(j);
	}
	free(text);
	fclose(f);
	{
		double t = now_s() - t0;
		uint64_t daemons = w.tcp + w.up, all = daemons + w.local;

		for (i = 0; i < nnodes; i++) {
			if (nodes[i].kind == DEVICE)
				continue;
			hwm = proc_kib(nodes[i].d.pid, "VmHWM");
			if (nodes[i].kind == PROVINCE) {
				prov_hwm = hwm;
				continue;
			}
			hub_sum += hwm;
			if (hwm > hub_max)
				hub_max = hwm;
			snprintf(each + strlen(each), sizeof(each) -
				strlen(each), "%s%s %.1f", each[0] ? ", " : "",
				nodes[i].n.name, (double)hwm / 1024.0);
		}
		for (i = 0; i < nnodes; i++)
			if (nodes[i].kind != DEVICE &&
			    kheod_stop(&nodes[i].d) != 0) {
				fprintf(stderr, "bench_daemon: %s's kheod did "
					"not exit cleanly: see %s\n",
					nodes[i].n.name, nodes[i].d.log);
				bad = 1;
			}
		for (i = 0; i < nnodes; i++) {
			char hex[65];

			node_open(&nodes[i].n);
			node_digest(&nodes[i].n, "dak-nong", hex);
			if (!first[0])
				snprintf(first, sizeof(first), "%s", hex);
			else if (strcmp(first, hex) != 0)
				same = 0;
			node_close(&nodes[i].n);
		}
		getrusage(RUSAGE_SELF, &ru);
		printf("trace: %zu ops; sessions: %zu device-hub over TCP to "
		       "a hub's kheod, %zu hub-province (the hub kheod's "
		       "upstream), %zu device-device in this process; %zu "
		       "changesets moved\n", ops, w.ntcp, w.nup, w.nlocal,
			w.moved);
		printf("  bytes through the kheods' sockets  %.2f MB  (%.0f "
		       "B/op): device-hub %.2f MB, hub-province %.2f MB\n",
			(double)daemons / 1e6, (double)daemons / (double)ops,
			(double)w.tcp / 1e6, (double)w.up / 1e6);
		printf("  device-device, in-process          %.2f MB  (no "
		       "daemon: devices run none)\n", (double)w.local / 1e6);
		printf("  bytes on the wire in all           %.2f MB  (%.0f "
		       "B/op", (double)all / 1e6, (double)all / (double)ops);
		if (argc == 5)
			printf("; %.3fx the %.0f MB Automerge's sync moved",
				(double)all / atof(argv[4]),
				atof(argv[4]) / 1e6);
		printf(")\n");
		printf("  wall time                          %.1f s  (%zu "
		       "kheods and this process on one machine)\n", t,
			nhubs + 1);
		printf("  peak RSS, hub kheods (VmHWM)       max %.1f MiB, "
		       "mean %.1f MiB over %zu\n", (double)hub_max / 1024.0,
			nhubs ? (double)hub_sum / 1024.0 / (double)nhubs : 0.0,
			nhubs);
		printf("    each (MiB): %s\n", each);
		printf("  peak RSS, province kheod (VmHWM)   %.1f MiB\n",
			(double)prov_hwm / 1024.0);
		printf("  peak RSS, this process             %.1f MiB  (all "
		       "%zu devices, %u KiB of page cache each)\n",
			(double)ru.ru_maxrss / 1024.0, nnodes - nhubs - 1,
			BENCH_NODE_CACHE_KIB);
		printf("  every node's digest of dak-nong: %s\n",
			same ? "equal" : "DIFFERENT");
		free(nodes);
		return same && !bad ? 0 : 1;
	}
}
