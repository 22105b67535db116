/*
 * bench_sessions.c - concurrent device sessions at one hub: what a kheod
 * costs in memory per session (DESIGN.md's target: 1,000 sessions in
 * <= 200 MiB).
 *
 *   bench_sessions KHEOD SCRATCH_DIR [TRACE.jsonl]
 *
 * A province and a hub (over the whole province, as in bench_sync) and
 * KHEO_BENCH_DEVICES devices (default 100), collectors of the communes of
 * one district enrolled by the hub; with a trace, the hub first imports
 * its edits as its own, so that it serves from a store of a province's
 * size (100 records a commune) rather than an empty one.  kheod runs on
 * the hub's data directory on a loopback port, and each device syncs
 * with it once, so that the sessions measured are the nightly kind (in
 * sync).  The bench then opens KHEO_BENCH_SESSIONS connections (default
 * 1,000) from this one process, the devices taking turns, and drives
 * each session through the handshake and the HELLOs: each client reads
 * the hub's HELLO and then holds its answer, so every session stays open
 * on the hub at once, past the point where the hub has checked the
 * device's certificates and summarised its store.  With all of them
 * held, it reads the hub's VmRSS and VmHWM from /proc/PID/status, then
 * lets every session finish and counts those that ended DONE.
 *
 * Figures only (no pass/fail on memory).  Exits 1 when a session is not
 * served, or when the hub does not hold them all at once.
 */
#include "daemons.h"

#include <sys/resource.h>

enum { C_RUN, C_HELD, C_GO, C_END };

/* the communes of one district of the bench traces (gen_trace.py) */
static const char *const communes[10] = {
	"binh-quang", "hoa-truc", "kien-an", "kien-nghia", "long-nghia",
	"minh-son", "nam-truc", "po-hoa", "po-son", "thanh-hoa",
};

typedef struct client {
	int fd;
	int phase;          /* C_RUN until the hub's HELLO, then held */
	kheo_session *s;
} client;

static unsigned env_unsigned(const char *name, unsigned dflt)
{
	const char *v = getenv(name);

	return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

/* A connection that does not wait for the TCP handshake. */
static int dial_nb(int port)
{
	struct sockaddr_in a = { 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;

	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 &&
	    errno != EINPROGRESS)
		die("connect: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/*
 * Move bytes for every client not yet ended, until none is in C_RUN or
 * C_GO, or `secs` pass with nothing moving.  A client in C_RUN becomes
 * C_HELD once its session is SYNCING (it has the hub's HELLO): its
 * answer waits in the session's output.
 */
static void pump_all(client *c, size_t n, struct pollfd *pf, double secs)
{
	static uint8_t buf[1 << 16];
	double idle_since = now_s();
	size_t i;

	for (;;) {
		size_t active = 0;
		int rc;

		for (i = 0; i < n; i++) {
			const uint8_t *p;
			size_t len = 0;

			pf[i].fd = -1;
			pf[i].events = 0;
			pf[i].revents = 0;
			if (c[i].phase == C_END || c[i].phase == C_HELD)
				continue;
			active++;
			pf[i].fd = c[i].fd;
			kheo_session_output(c[i].s, &p, &len);
			pf[i].events = len ? POLLOUT : POLLIN;
		}
		if (!active || now_s() - idle_since > secs)
			return;
		if ((rc = poll(pf, n, 1000)) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (rc <= 0)
			continue;
		idle_since = now_s();
		for (i = 0; i < n; i++) {
			const uint8_t *p;
			size_t len;
			ssize_t k;
			kheo_session_state st;

			if (!pf[i].revents || c[i].phase == C_END)
				continue;
			if (pf[i].events & POLLOUT) {
				kheo_session_output(c[i].s, &p, &len);
				k = send(c[i].fd, p, len, MSG_NOSIGNAL);
				if (k > 0)
					kheo_session_sent(c[i].s, (size_t)k);
				else if (k < 0 && errno != EAGAIN &&
					 errno != EINTR)
					c[i].phase = C_END;
				continue;
			}
			k = recv(c[i].fd, buf, sizeof(buf), 0);
			if (k < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (k <= 0) {
				c[i].phase = C_END;
				continue;
			}
			(void)kheo_session_input(c[i].s, buf, (size_t)k);
			st = kheo_session_status(c[i].s, NULL);
			kheo_session_output(c[i].s, &p, &len);
			/* past the hub's HELLO (the hub's DONE may have come
			 * with it): hold our answer */
			if (st == KHEO_SESSION_FAILED ||
			    (st == KHEO_SESSION_DONE && !len))
				c[i].phase = C_END;
			else if (st != KHEO_SESSION_HANDSHAKE &&
				 c[i].phase == C_RUN)
				c[i].phase = C_HELD;
		}
	}
}

int main(int argc, char **argv)
{
	unsigned nsess = env_unsigned("KHEO_BENCH_SESSIONS", 1000);
	unsigned ndev = env_unsigned("KHEO_BENCH_DEVICES", 100);
	char root[KHEO_KEY_HEX + 1], cmd[2300], conf[1024];
	bnode prov, hub, *dev;
	kheod d;
	client *c;
	struct pollfd *pf;
	struct rlimit rl;
	unsigned long idle_rss, held_rss, held_hwm, end_hwm;
	size_t i, held = 0, done = 0, failed = 0, moved = 0;
	uint64_t bytes = 0;
	double t0, t_held, t_all;
	int port;

	bench_name = "bench_sessions";
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: bench_sessions KHEOD SCRATCH_DIR "
			"[TRACE.jsonl]\n");
		return 2;
	}
	if (!ndev || !nsess)
		die("KHEO_BENCH_DEVICES and KHEO_BENCH_SESSIONS must be > 0");
	/* a descriptor per connection, and SQLite's per device */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)nsess + 4 * ndev + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)nsess + 4 * ndev + 64)
			die("%u sessions need %u file descriptors; the limit "
				"is %llu", nsess, nsess + 4 * ndev + 64,
				(unsigned long long)rl.rlim_cur);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", argv[2],
		argv[2]);
	if (system(cmd) != 0)
		die("%s: cannot make the scratch folder", argv[2]);

	t0 = now_s();
	node_make(&prov, argv[2], "province", KHEO_NODE_PROVINCE, "dak-nong");
	node_key(&prov, root);
	node_make(&hub, argv[2], "hub", KHEO_NODE_HUB, "dak-nong");
	node_enroll(&prov, root, &hub, "hub", "dak-nong");
	if (argc == 4) {
		kheo_import_stats is;

		if (kheo_import_jsonl(hub.db, argv[3], &is) < 0 ||
		    kheo_commit(hub.db, NULL) < 0)
			die("import %s: %s", argv[3], kheo_errmsg(hub.db));
	}
	if (!(dev = calloc(ndev, sizeof(*dev))))
		die("out of memory");
	for (i = 0; i < ndev; i++) {
		char name[32], unit[80];

		snprintf(name, sizeof(name), "v%03zu", i + 1);
		snprintf(unit, sizeof(unit), "dak-nong/dak-glong/%s",
			communes[i % 10]);
		node_make(&dev[i], argv[2], name, KHEO_NODE_DEVICE, unit);
		node_enroll(&hub, root, &dev[i], "collector", unit);
	}
	node_close(&hub);
	node_close(&prov);
	printf("setup: a hub%s and %u devices (collectors of the 10 communes "
	       "of a district) enrolled by it (%.1f s)\n",
		argc == 4 ? " holding the trace's records" : "", ndev,
		now_s() - t0);

	port = free_port();
	snprintf(conf, sizeof(conf), "listen = 127.0.0.1:%d\n"
		"max_sessions = %u\nmax_sessions_per_peer = %u\n"
		"idle_timeout = 300\nhandshake_timeout = 300\n"
		"session_timeout = 0\nlog_level = info\n", port, nsess + 16,
		nsess + 16);
	kheod_start(&d, argv[1], hub.dir, conf, port);
	/* each device takes its commune, and in a second round the `_sys`
	 * of the devices after it: the sessions measured are then the
	 * nightly kind, a device already in sync */
	t0 = now_s();
	for (i = 0; i < 2 * ndev; i++) {
		char err[512];

		if (drive_tcp(dev[i % ndev].db, port, &bytes, NULL, err,
			    sizeof(err)) != KHEO_SESSION_DONE)
			die("%s: first sync: %s", dev[i % ndev].name, err);
	}
	printf("each device synced twice with the hub's kheod: %.1f s, "
	       "%.1f MB\n", now_s() - t0, (double)bytes / 1e6);
	bytes = 0;
	usleep(200000);
	idle_rss = proc_kib(d.pid, "VmRSS");

	if (!(c = calloc(nsess, sizeof(*c))) ||
	    !(pf = calloc(nsess, sizeof(*pf))))
		die("out of memory");
	t0 = now_s();
	for (i = 0; i < nsess; i++) {
		kheo_session_options o = KHEO_SESSION_OPTIONS_INIT;
		kheo_db *db = dev[i % ndev].db;

		o.initiator = 1;
		if (kheo_session_new(&c[i].s, db, &o) < 0)
			die("session: %s", kheo_errmsg(db));
		c[i].fd = dial_nb(port);
	}
	pump_all(c, nsess, pf, 120);
	t_held = now_s() - t0;
	for (i = 0; i < nsess; i++) {
		if (c[i].phase == C_HELD)
			held++;
		else if (i - held < 5) /* the first few, for a reader */
			fprintf(stderr, "bench_sessions: session %zu (%s) "
				"not held: %s\n", i, dev[i % ndev].name,
				c[i].phase == C_END ? kheo_session_error(c[i].s)
						    : "still in the handshake");
	}
	usleep(500000); /* the hub's last writes and frees settle */
	held_rss = proc_kib(d.pid, "VmRSS");
	held_hwm = proc_kib(d.pid, "VmHWM");

	for (i = 0; i < nsess; i++)
		if (c[i].phase == C_HELD)
			c[i].phase = C_GO;
	pump_all(c, nsess, pf, 120);
	t_all = now_s() - t0;
	for (i = 0; i < nsess; i++) {
		kheo_session_stats st;

		if (kheo_session_status(c[i].s, &st) == KHEO_SESSION_DONE)
			done++;
		else
			failed++;
		moved += st.sent + st.received;
		bytes += st.bytes_in + st.bytes_out;
		kheo_session_free(c[i].s);
		close(c[i].fd);
	}
	usleep(500000);
	end_hwm = proc_kib(d.pid, "VmHWM");
	printf("%u sessions from %u devices, one kheod (hub), loopback:\n",
		nsess, ndev);
	printf("  held at once after the hub's HELLO  %zu  (%.1f s to get "
	       "there)\n", held, t_held);
	printf("  kheod VmRSS before (no session)     %.1f MiB\n",
		(double)idle_rss / 1024.0);
	printf("  kheod VmRSS with all held           %.1f MiB  (%.1f KiB "
	       "per session over idle; target <= 200 MiB for 1,000)\n",
		(double)held_rss / 1024.0, held ? (double)(held_rss -
		(held_rss > idle_rss ? idle_rss : held_rss)) / (double)held :
		0.0);
	printf("  kheod VmHWM (peak) then             %.1f MiB\n",
		(double)held_hwm / 1024.0);
	printf("  then all released: %zu done, %zu not (%.1f s in all); "
	       "VmHWM %.1f MiB\n", done, failed, t_all,
		(double)end_hwm / 1024.0);
	printf("  changesets moved %zu, bytes on the sockets %.0f per "
	       "session\n", moved, (double)bytes / (double)nsess);
	if (kheod_stop(&d) != 0)
		die("kheod did not exit cleanly: see %s", d.log);
	for (i = 0; i < ndev; i++)
		node_close(&dev[i]);
	free(dev);
	free(c);
	free(pf);
	if (held != nsess || done != nsess) {
		fprintf(stderr, "bench_sessions: not every session was served: "
			"see %s\n", d.log);
		return 1;
	}
	return 0;
}
