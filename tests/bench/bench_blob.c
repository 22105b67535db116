/*
 * bench_blob.c - attachments over a sync session on TCP loopback: how fast
 * blobs move (each chunk fsync'd before the next is asked for) and what
 * the protocol adds per chunk on the wire.
 *
 *   bench_blob DIR [MB]       (default 20 MB of photos that do not compress)
 *
 * A province enrols a hub, the hub a device; the device attaches MB of
 * JPEG-like photos (500 KB each) to ten records; then three sessions from
 * the device to the hub, over a real TCP connection on 127.0.0.1 that
 * both sessions' bytes cross (one process, poll(2), non-blocking
 * sockets): the records alone (the hub asks for no blob), the blobs
 * (records already in sync), and an in-sync session as the baseline.
 * Overhead per chunk = (blob session bytes - baseline bytes - chunk data
 * bytes) / chunks.  DIR holds the nodes (on a real disk, fsync counts).
 * Figures only; a non-zero exit means a session failed.
 */
#include "kheo.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what, kheo_db *db)
{
	fprintf(stderr, "bench_blob: %s: %s\n", what,
		db ? kheo_errmsg(db) : strerror(errno));
	exit(1);
}

static kheo_db *node(const char *dir, const char *name, kheo_node_role role,
	const char *unit)
{
	kheo_init_options io = KHEO_INIT_OPTIONS_INIT;
	char path[1024];
	kheo_db *db;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	io.role = role;
	io.unit = unit;
	if (kheo_db_init(&db, path, &io, NULL) < 0)
		die("init", db);
	return db;
}

static void enroll(kheo_db *issuer, kheo_db *n, const char *role,
	const char *unit, const char *root)
{
	char *req, *cert;

	if (kheo_enroll_request(n, &req) < 0 ||
	    kheo_enroll_sign(issuer, req, role, unit, 365, &cert) < 0 ||
	    kheo_enroll_accept(n, cert, root) < 0)
		die("enrol", n);
	kheo_free(req);
	kheo_free(cert);
}

static void tcp_pair(int fd[2])
{
	struct sockaddr_in a = { 0 };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1, i;

	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&a, &len) < 0)
		die("listen", NULL);
	fd[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd[0], (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    (fd[1] = accept(l, NULL, NULL)) < 0)
		die("connect", NULL);
	close(l);
	for (i = 0; i < 2; i++) {
		setsockopt(fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		fcntl(fd[i], F_SETFL, O_NONBLOCK);
	}
}

/* One session, client c to server s over TCP loopback; wire bytes (both
 * ways) and both sides' stats. */
static uint64_t session(kheo_db *c, kheo_db *s, int server_no_blobs,
	kheo_session_stats *cst, kheo_session_stats *sst, double *secs)
{
	kheo_session_options co = KHEO_SESSION_OPTIONS_INIT;
	kheo_session_options so = KHEO_SESSION_OPTIONS_INIT;
	kheo_session *ss[2];
	static uint8_t buf[1 << 16];
	uint64_t wire = 0;
	double t0 = now_s();
	int fd[2], i;

	co.initiator = 1;
	so.no_blobs = server_no_blobs;
	if (kheo_session_new(&ss[0], c, &co) < 0)
		die("client session", c);
	if (kheo_session_new(&ss[1], s, &so) < 0)
		die("server session", s);
	tcp_pair(fd);
	for (;;) {
		struct pollfd p[2];
		int done = 1;

		for (i = 0; i < 2; i++) {
			kheo_session_state st = kheo_session_status(ss[i], NULL);
			const uint8_t *out;
			size_t n;

			if (st == KHEO_SESSION_FAILED) {
				fprintf(stderr, "bench_blob: %s\n",
					kheo_session_error(ss[i]));
				exit(1);
			}
			kheo_session_output(ss[i], &out, &n);
			if (n) {
				ssize_t w = write(fd[i], out, n);

				if (w > 0) {
					kheo_session_sent(ss[i], (size_t)w);
					wire += (uint64_t)w;
				}
			}
			kheo_session_output(ss[i], &out, &n);
			p[i].fd = fd[i];
			p[i].events = POLLIN | (n ? POLLOUT : 0);
			if (st != KHEO_SESSION_DONE || n)
				done = 0;
		}
		if (done)
			break;
		if (poll(p, 2, 10000) <= 0)
			die("poll (stalled)", NULL);
		for (i = 0; i < 2; i++) {
			ssize_t r;

			if (!(p[i].revents & POLLIN))
				continue;
			r = read(fd[i], buf, sizeof(buf));
			if (r > 0)
				kheo_session_input(ss[i], buf, (size_t)r);
		}
	}
	*secs = now_s() - t0;
	kheo_session_status(ss[0], cst);
	kheo_session_status(ss[1], sst);
	kheo_session_free(ss[0]);
	kheo_session_free(ss[1]);
	close(fd[0]);
	close(fd[1]);
	return wire;
}

int main(int argc, char **argv)
{
	const char *dir;
	kheo_db *p, *h, *d;
	kheo_session_stats cs, ss;
	char *text, root[65], path[1024], id[KHEO_RECORD_HEX + 1];
	uint64_t mb = 20, total = 0, w1, w2, w3, data;
	double t1, t2, t3, ta;
	size_t chunks;
	json_t *o;
	size_t i, nphotos;
	int k;

	if (argc < 2) {
		fprintf(stderr, "usage: bench_blob DIR [MB]\n");
		return 2;
	}
	dir = argv[1];
	if (argc > 2)
		mb = strtoull(argv[2], NULL, 10);
	mkdir(dir, 0700);
	p = node(dir, "p", KHEO_NODE_PROVINCE, "dak-nong");
	if (kheo_id_json(p, &text) < 0)
		die("id", p);
	o = json_loads(text, 0, NULL);
	snprintf(root, sizeof(root), "%s",
		json_string_value(json_object_get(o, "root")));
	json_decref(o);
	kheo_free(text);
	h = node(dir, "h", KHEO_NODE_HUB, "dak-nong/cu-jut");
	enroll(p, h, "hub", "dak-nong/cu-jut", root);
	d = node(dir, "d", KHEO_NODE_DEVICE, "dak-nong/cu-jut/ea-po");
	enroll(h, d, "collector", "dak-nong/cu-jut/ea-po", root);

	nphotos = (size_t)(mb * 1000000 / 500000);
	ta = now_s();
	for (i = 0; i < nphotos; i++) {
		kheo_assign a[2] = { { "name", KHEO_ASSIGN_SET, "Mô hình" },
			{ "unit", KHEO_ASSIGN_SET, "dak-nong/cu-jut/ea-po" } };
		uint8_t *b = malloc(500000);
		FILE *f;

		if (i % 10 == 0 && kheo_put(d, id, "model", NULL, a, 2) < 0)
			die("put", d);
		for (k = 0; k < 500000; k++)
			b[k] = (uint8_t)(rand() >> 7);
		b[0] = 0xff;
		b[1] = 0xd8;
		b[2] = 0xff;
		snprintf(path, sizeof(path), "%s/photo.jpg", dir);
		f = fopen(path, "wb");
		if (!f || fwrite(b, 1, 500000, f) != 500000 || fclose(f))
			die("photo", NULL);
		free(b);
		if (kheo_attach(d, "model", id, "photos", path, NULL, NULL) < 0)
			die("attach", d);
		total += 500000;
	}
	ta = now_s() - ta;

	w1 = session(d, h, 1, &cs, &ss, &t1);
	w2 = session(d, h, 0, &cs, &ss, &t2);
	if (ss.blobs_completed != nphotos) {
		fprintf(stderr, "bench_blob: %zu of %zu blobs arrived\n",
			ss.blobs_completed, nphotos);
		return 1;
	}
	chunks = ss.blob_chunks_in;
	data = ss.blob_bytes_in;
	w3 = session(d, h, 0, &cs, &ss, &t3);
	printf("attach: %zu photos, %.1f MB in %.2f s (%.1f MB/s: hash, "
	       "chunk, try zstd, fsync)\n", nphotos, (double)total / 1e6, ta,
		(double)total / 1e6 / ta);
	printf("records only: %llu bytes on the wire, %.2f s\n",
		(unsigned long long)w1, t1);
	printf("blobs over TCP loopback: %.1f MB in %.2f s = %.1f MB/s (one "
	       "chunk in flight, each fsync'd before the next GET)\n",
		(double)total / 1e6, t2, (double)total / 1e6 / t2);
	printf("wire: %llu bytes for %llu bytes of chunk data in %zu chunks; "
	       "an in-sync session %llu bytes (%.3f s)\n",
		(unsigned long long)w2, (unsigned long long)data, chunks,
		(unsigned long long)w3, t3);
	printf("overhead per chunk: %.1f bytes (%.3f%% of 64 KiB)\n",
		(double)(w2 - w3 - data) / (double)chunks,
		100.0 * (double)(w2 - w3 - data) / (double)chunks / 65536.0);
	kheo_db_close(d);
	kheo_db_close(h);
	kheo_db_close(p);
	return 0;
}
