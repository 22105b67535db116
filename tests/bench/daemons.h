/*
 * daemons.h - what the daemon benches share (bench_sessions.c,
 * bench_daemon.c): nodes made and enrolled in-process, kheod started as a
 * child process on a loopback port and its memory read from
 * /proc/PID/status, and a blocking client that drives a kheo_session
 * over a TCP socket and counts the bytes that crossed it.
 *
 * Static functions in a header, included once per bench: the benches are
 * one file each (the Makefile's bench rule) and this is their common part,
 * not a library.  Errors end the bench (die): it measures, it does not
 * recover.
 */
#ifndef KHEO_BENCH_DAEMONS_H
#define KHEO_BENCH_DAEMONS_H

#include "kheo.h"
#include "trace.h" /* now_s, trace edits */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* each bench uses some of these */
#define BENCH_FN static __attribute__((unused))

static const char *bench_name = "bench";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
	noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "%s: ", bench_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* ------------------------------------------------------------ nodes */

/* A node of the bench: its data directory and, while the bench holds
 * it, an open handle. */
typedef struct bnode {
	char name[32];
	char dir[1024];
	kheo_db *db;
} bnode;

/*
 * The nodes a bench holds in its own process (80 devices) each keep a page
 * cache of this much, their data on disk, as kheo_open_options.cache_kib
 * allows: one process holding them all is the bench's doing, not a phone's.
 */
#define BENCH_NODE_CACHE_KIB 2048

BENCH_FN kheo_open_options node_options(void)
{
	kheo_open_options o = KHEO_OPEN_OPTIONS_INIT;

	o.cache_kib = BENCH_NODE_CACHE_KIB;
	return o;
}

/* Make a node NAME in SCRATCH (slashes in the name become '-'). */
BENCH_FN void node_make(bnode *n, const char *scratch, const char *name,
	kheo_node_role role, const char *unit)
{
	kheo_init_options init = KHEO_INIT_OPTIONS_INIT;
	kheo_open_options o = node_options();
	char *p;

	snprintf(n->name, sizeof(n->name), "%s", name);
	snprintf(n->dir, sizeof(n->dir), "%s/%s", scratch, name);
	for (p = n->dir + strlen(scratch) + 1; *p; p++)
		if (*p == '/')
			*p = '-';
	init.role = role;
	init.unit = unit;
	if (kheo_db_init(&n->db, n->dir, &init, &o) < 0)
		die("%s: %s", n->dir, kheo_errmsg(n->db));
}

BENCH_FN void node_open(bnode *n)
{
	kheo_open_options o = node_options();

	if (!n->db && kheo_db_open(&n->db, n->dir, &o) < 0)
		die("%s: %s", n->dir, kheo_errmsg(n->db));
}

BENCH_FN void node_close(bnode *n)
{
	kheo_db_close(n->db);
	n->db = NULL;
}

/* The node's key in hex, from kheo_id_json ("key"). */
BENCH_FN void node_key(bnode *n, char key[KHEO_KEY_HEX + 1])
{
	char *text, *p;

	if (kheo_id_json(n->db, &text) < 0)
		die("%s: %s", n->name, kheo_errmsg(n->db));
	if (!(p = strstr(text, "\"key\"")) || !(p = strchr(p + 5, '"')) ||
	    strlen(p + 1) < KHEO_KEY_HEX)
		die("%s: no key in kheo_id_json", n->name);
	memcpy(key, p + 1, KHEO_KEY_HEX);
	key[KHEO_KEY_HEX] = '\0';
	kheo_free(text);
}

/* Enrol n as ROLE over UNIT, its certificate issued by `issuer`. */
BENCH_FN void node_enroll(bnode *issuer, const char *root, bnode *n,
	const char *role, const char *unit)
{
	char *req = NULL, *cert = NULL;

	if (kheo_enroll_request(n->db, &req) < 0)
		die("%s: %s", n->name, kheo_errmsg(n->db));
	if (kheo_enroll_sign(issuer->db, req, role, unit, 365, &cert) < 0)
		die("%s enrolling %s: %s", issuer->name, n->name,
			kheo_errmsg(issuer->db));
	if (kheo_enroll_accept(n->db, cert, root) < 0)
		die("%s: %s", n->name, kheo_errmsg(n->db));
	kheo_free(req);
	kheo_free(cert);
}

/* kheo_digest over PREFIX, in hex. */
BENCH_FN void node_digest(bnode *n, const char *prefix, char hex[65])
{
	uint8_t d[32];
	size_t k;

	if (kheo_digest(n->db, d, prefix) < 0)
		die("%s: %s", n->name, kheo_errmsg(n->db));
	for (k = 0; k < 32; k++)
		snprintf(hex + 2 * k, 3, "%02x", d[k]);
}

/* ------------------------------------------------------------ kheod */

typedef struct kheod {
	pid_t pid;
	int port;            /* loopback port it listens on; 0: none */
	char log[1100];
} kheod;

/* A TCP port nobody listens on now (a small race, harmless here). */
BENCH_FN int free_port(void)
{
	struct sockaddr_in a = { 0 };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		die("cannot find a free port: %s", strerror(errno));
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

BENCH_FN int file_has(const char *path, const char *needle)
{
	char buf[65536];
	FILE *f = fopen(path, "r");
	int found = 0;

	if (!f)
		return 0;
	while (!found && fgets(buf, sizeof(buf), f))
		found = strstr(buf, needle) != NULL;
	fclose(f);
	return found;
}

/*
 * Start `bin` on the node in `dir` with the configuration text `conf`
 * (written to DIR.conf), in the foreground, its log in DIR.log; wait until
 * it says it serves.  `port` is the one the text listens on (0: none).
 */
BENCH_FN void kheod_start(kheod *d, const char *bin, const char *dir,
	const char *conf, int port)
{
	char path[1100];
	FILE *f;
	int fd, i;

	snprintf(path, sizeof(path), "%s.conf", dir);
	snprintf(d->log, sizeof(d->log), "%s.log", dir);
	if (!(f = fopen(path, "w")) || fputs(conf, f) < 0 || fclose(f) != 0)
		die("%s: %s", path, strerror(errno));
	d->port = port;
	if ((d->pid = fork()) < 0)
		die("fork: %s", strerror(errno));
	if (d->pid == 0) {
		if ((fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
			_exit(127);
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
		execl(bin, bin, "-C", dir, "--config", path, "--foreground",
			(char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 200; i++) {
		int st;

		if (file_has(d->log, "started (kheo"))
			return;
		if (waitpid(d->pid, &st, WNOHANG) == d->pid)
			die("%s did not start: see %s", bin, d->log);
		usleep(50000);
	}
	die("%s did not start within 10 s: see %s", bin, d->log);
}

/* A line of /proc/PID/status ("VmHWM"), in KiB; 0 if absent. */
BENCH_FN unsigned long proc_kib(pid_t pid, const char *what)
{
	char path[64], line[256];
	size_t len = strlen(what);
	unsigned long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (!(f = fopen(path, "r")))
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, what, len) == 0 && line[len] == ':') {
			v = strtoul(line + len + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* SIGTERM, and wait for it to exit; its exit status. */
BENCH_FN int kheod_stop(kheod *d)
{
	int st = 0;

	if (d->pid <= 0)
		return 0;
	kill(d->pid, SIGTERM);
	while (waitpid(d->pid, &st, 0) < 0 && errno == EINTR)
		;
	d->pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ----------------------------------------------------------- clients */

/* A blocking TCP connection to 127.0.0.1:port. */
BENCH_FN int dial(int port)
{
	struct sockaddr_in a = { 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect to 127.0.0.1:%d: %s", port, strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/*
 * Run a session (the client's side, on `db`) over a new connection to
 * 127.0.0.1:port until it ends; the bytes that crossed the socket either
 * way are added to *bytes.  The session's stats in *st (may be NULL);
 * KHEO_SESSION_DONE, or KHEO_SESSION_FAILED with the reason in `err`.
 */
BENCH_FN kheo_session_state drive_tcp(kheo_db *db, int port,
	uint64_t *bytes,
	kheo_session_stats *st, char *err, size_t errlen)
{
	kheo_session_options o = KHEO_SESSION_OPTIONS_INIT;
	kheo_session *s;
	kheo_session_state state;
	static uint8_t buf[1 << 16];
	const uint8_t *p;
	size_t n;
	ssize_t k;
	int fd;

	o.initiator = 1;
	err[0] = '\0';
	if (kheo_session_new(&s, db, &o) < 0)
		die("session: %s", kheo_errmsg(db));
	fd = dial(port);
	for (;;) {
		kheo_session_output(s, &p, &n);
		if (n) {
			if ((k = send(fd, p, n, MSG_NOSIGNAL)) < 0) {
				if (errno == EINTR)
					continue;
				snprintf(err, errlen, "send: %s",
					strerror(errno));
				break;
			}
			*bytes += (uint64_t)k;
			kheo_session_sent(s, (size_t)k);
			continue;
		}
		state = kheo_session_status(s, NULL);
		if (state == KHEO_SESSION_DONE || state == KHEO_SESSION_FAILED)
			break;
		if ((k = recv(fd, buf, sizeof(buf), 0)) < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "recv: %s", strerror(errno));
			break;
		}
		if (k == 0) {
			snprintf(err, errlen, "the server closed the "
				"connection");
			break;
		}
		*bytes += (uint64_t)k;
		(void)kheo_session_input(s, buf, (size_t)k);
	}
	close(fd);
	state = kheo_session_status(s, st);
	if (state == KHEO_SESSION_FAILED)
		snprintf(err, errlen, "%s", kheo_session_error(s));
	else if (state != KHEO_SESSION_DONE && !err[0])
		snprintf(err, errlen, "ended while %s", state ==
			KHEO_SESSION_HANDSHAKE ? "in the handshake" :
			"syncing");
	kheo_session_free(s);
	return err[0] ? KHEO_SESSION_FAILED : KHEO_SESSION_DONE;
}

#endif
