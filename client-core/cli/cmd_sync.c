/*
 * cmd_sync.c - kheo sync: a device (or any node) syncs with a kheod over
 * TCP; kheo sync --now asks the local kheod to sync with its upstream.
 *
 *   kheo sync HOST:PORT [--key HEX] [--no-blobs]
 *                                        exit 0 when the session is DONE,
 *                                        1 when it failed (why on stderr)
 *   kheo sync --now                      through DIR/kheod.sock
 *
 * A blocking client: one socket, poll(2) with timeouts, and a kheo_session
 * as the initiator doing everything that matters (the secure channel, the
 * certificates, what to send).  On a terminal, stderr shows one line of
 * progress (what is left to send and to receive, as far as the session
 * knows); stdout gets a one-line summary at the end (JSON with --json).
 * PORT defaults to 7878, kheod's.  --key: the hub's key in hex, when the
 * device must talk to that hub and no other.  --no-blobs: fetch no
 * attachments, only the records naming them (kheo blob missing lists
 * them); this node's own blobs still go up when the hub asks.  Not here: retries (run it
 * again: a cut session resumes where it stopped).
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SYNC_PORT "7878"
#define CONNECT_MS 15000   /* to connect */
#define IDLE_MS 120000     /* with no byte either way */

static const char usage_line[] = "sync HOST:PORT [--key HEX] [--no-blobs] | "
				  "sync --now";

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "host:port", "[v6]:port", or "host" (port 7878). */
static int split(const char *s, char *host, size_t hostlen, char *port,
	size_t portlen)
{
	const char *h = s, *p = SYNC_PORT, *end;
	size_t n;

	if (*s == '[') {
		if (!(end = strchr(s, ']')) || (end[1] && end[1] != ':'))
			return -1;
		h = s + 1;
		n = (size_t)(end - h);
		if (end[1])
			p = end + 2;
	} else if ((end = strchr(s, ':'))) {
		if (strchr(end + 1, ':'))
			return -1;
		n = (size_t)(end - s);
		p = end + 1;
	} else {
		n = strlen(s);
	}
	if (!n || n >= hostlen || !*p || strlen(p) >= portlen ||
	    strspn(p, "0123456789") != strlen(p))
		return -1;
	memcpy(host, h, n);
	host[n] = '\0';
	strcpy(port, p);
	return 0;
}

/* Wait for `events` on fd; 0 on timeout. */
static int wait_fd(int fd, short events, int ms)
{
	struct pollfd p = { fd, events, 0 };
	int rc;

	while ((rc = poll(&p, 1, ms)) < 0 && errno == EINTR)
		;
	return rc;
}

/* A connected, non-blocking socket to host:port; -1 with a message. */
static int dial(const char *host, const char *port, const char *name)
{
	struct addrinfo hints, *res, *ai;
	int fd = -1, rc, err = 0, one = 1;
	socklen_t len = sizeof(err);

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		fprintf(stderr, "kheo sync: %s: %s\n", name, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, ai->ai_socktype,
				 ai->ai_protocol)) < 0) {
			err = errno;
			continue;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			rc = wait_fd(fd, POLLOUT, CONNECT_MS);
			len = sizeof(err);
			if (rc == 0)
				err = ETIMEDOUT;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
					    &len) < 0)
				err = errno;
			if (rc > 0 && err == 0)
				break;
		} else {
			err = errno;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		fprintf(stderr, "kheo sync: cannot connect to %s: %s\n", name,
			strerror(err ? err : ECONNREFUSED));
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void progress(const kheo_session_stats *st, kheo_session_state s,
	const char *name)
{
	fprintf(stderr, "\r\033[Ksync %s: %s; %zu to send, %zu to receive "
		"(%zu sent, %zu received)", name,
		s == KHEO_SESSION_HANDSHAKE ? "handshake" : "syncing",
		st->to_send, st->to_receive, st->sent, st->received);
	fflush(stderr);
}

/* Run the session over fd until it is DONE or FAILED; -1 when the
 * transport failed first (message printed). */
static int drive(kheo_session *s, int fd, const char *name, int tty)
{
	uint8_t buf[65536];
	const uint8_t *p;
	size_t n;
	ssize_t k;
	kheo_session_stats st;
	kheo_session_state state;
	int64_t shown = 0;
	int rc;

	for (;;) {
		kheo_session_output(s, &p, &n);
		if (n) {
			if ((rc = wait_fd(fd, POLLOUT, IDLE_MS)) <= 0)
				goto stalled;
			k = send(fd, p, n, MSG_NOSIGNAL);
			if (k < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (k < 0)
				goto broken;
			kheo_session_sent(s, (size_t)k);
			continue;
		}
		state = kheo_session_status(s, &st);
		if (state == KHEO_SESSION_DONE || state == KHEO_SESSION_FAILED)
			return 0;
		if (tty && now_ms() - shown >= 100) {
			progress(&st, state, name);
			shown = now_ms();
		}
		if ((rc = wait_fd(fd, POLLIN, IDLE_MS)) <= 0)
			goto stalled;
		k = recv(fd, buf, sizeof(buf), 0);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (k < 0)
			goto broken;
		if (k == 0) {
			if (tty)
				fprintf(stderr, "\r\033[K");
			fprintf(stderr, "kheo sync: %s closed the connection "
				"%s\n", name, state == KHEO_SESSION_HANDSHAKE ?
				"during the handshake (see its log: a wrong "
				"network, an unknown or revoked node, or a "
				"limit)" : "before the end (run it again: it "
				"resumes)");
			return -1;
		}
		/* an error leaves the session FAILED: the loop ends above */
		(void)kheo_session_input(s, buf, (size_t)k);
	}
stalled:
	if (tty)
		fprintf(stderr, "\r\033[K");
	fprintf(stderr, "kheo sync: %s: %s\n", name, rc < 0 ?
		strerror(errno) : "no byte either way for 120 s");
	return -1;
broken:
	if (tty)
		fprintf(stderr, "\r\033[K");
	fprintf(stderr, "kheo sync: %s: %s\n", name, strerror(errno));
	return -1;
}

static void human_bytes(char *out, size_t len, uint64_t n)
{
	if (n < 10 * 1024)
		snprintf(out, len, "%llu B", (unsigned long long)n);
	else if (n < 10 * 1024 * 1024)
		snprintf(out, len, "%.1f KiB", (double)n / 1024);
	else
		snprintf(out, len, "%.1f MiB", (double)n / (1024 * 1024));
}

static void summary(const cli *c, const char *name,
	const kheo_session_stats *st, double secs)
{
	char in[32], out[32];
	json_t *j;
	char *text;

	if (c->json) {
		j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
			"s:I, s:f, s:I, s:s}",
			"peer", name, "peer_key", st->peer,
			"sent", (json_int_t)st->sent,
			"received", (json_int_t)st->received,
			"applied", (json_int_t)st->apply.applied,
			"held", (json_int_t)st->apply.held,
			"rejected", (json_int_t)st->apply.rejected,
			"duplicate", (json_int_t)st->apply.duplicate,
			"bytes_in", (json_int_t)st->bytes_in,
			"bytes_out", (json_int_t)st->bytes_out,
			"seconds", secs,
			"clock_offset_ms", (json_int_t)st->clock_offset_ms,
			"scope", st->scope);
		if (j)
			json_object_update_new(j, json_pack("{s:I, s:I, s:I, "
				"s:I, s:I, s:I, s:I, s:s}",
				"blob_chunks_in", (json_int_t)st->blob_chunks_in,
				"blob_chunks_out",
				(json_int_t)st->blob_chunks_out,
				"blob_bytes_in", (json_int_t)st->blob_bytes_in,
				"blob_bytes_out", (json_int_t)st->blob_bytes_out,
				"blobs_completed",
				(json_int_t)st->blobs_completed,
				"blobs_refused", (json_int_t)st->blobs_refused,
				"blobs_left", (json_int_t)st->blobs_left,
				"blob_error", st->blob_error));
		if (j)
			json_object_set_new(j, "peer_version",
				json_integer((json_int_t)st->peer_version));
		if (j && (text = json_dumps(j, JSON_COMPACT))) {
			printf("%s\n", text);
			free(text);
		}
		json_decref(j);
		return;
	}
	human_bytes(in, sizeof(in), st->bytes_in);
	human_bytes(out, sizeof(out), st->bytes_out);
	printf("synced with %s (%.16s): sent %zu, received %zu (applied "
	       "%zu, held %zu, rejected %zu), %s in, %s out, %.1f s, clock "
	       "offset %+lld ms\n", name, st->peer, st->sent, st->received,
		st->apply.applied, st->apply.held, st->apply.rejected, in, out,
		secs, (long long)st->clock_offset_ms);
	if (st->blob_chunks_in || st->blob_chunks_out || st->blobs_left)
		printf("blobs: %zu chunks in, %zu out; %zu complete here, %zu "
		       "still missing (kheo blob missing)\n",
			st->blob_chunks_in, st->blob_chunks_out,
			st->blobs_completed, st->blobs_left);
	if (st->peer_version && st->peer_version < 2)
		fprintf(stderr, "kheo sync: the peer speaks sync version %u, "
			"which carries no attachments: upgrade it to move "
			"them\n", st->peer_version);
	if (st->blobs_refused)
		fprintf(stderr, "kheo sync: %zu blob%s refused: %s\n",
			st->blobs_refused, st->blobs_refused == 1 ? "" : "s",
			st->blob_error);
}

static int valid_key(const char *k)
{
	size_t i;

	if (strlen(k) != KHEO_KEY_HEX)
		return 0;
	for (i = 0; i < KHEO_KEY_HEX; i++)
		if (!isxdigit((unsigned char)k[i]))
			return 0;
	return 1;
}

/* kheo sync --now: one request on the control socket, one answer. */
static int sync_now(const cli *c)
{
	struct sockaddr_un sa;
	char buf[1024], *line, *nl;
	size_t have = 0;
	ssize_t k;
	int fd, rc = EXIT_REFUSED;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path),
			     "%s/kheod.sock", c->dir) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "kheo sync --now: %s: the path is too long "
			"for a Unix socket (send kheod SIGUSR1)\n", c->dir);
		return EXIT_REFUSED;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "kheo sync --now: no kheod answers at %s: %s\n",
			sa.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return EXIT_REFUSED;
	}
	if (send(fd, "sync\n", 5, MSG_NOSIGNAL) != 5) {
		fprintf(stderr, "kheo sync --now: %s: %s\n", sa.sun_path,
			strerror(errno));
		close(fd);
		return EXIT_REFUSED;
	}
	/* Lines: "syncing with HOST:PORT", then "ok: ..." or "failed: ...".
	 * No timeout: kheod's own timeouts end the session. */
	for (;;) {
		k = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		have += (size_t)k;
		buf[have] = '\0';
		while ((nl = strchr(buf, '\n'))) {
			*nl = '\0';
			line = buf;
			if (strncmp(line, "ok: ", 4) == 0) {
				printf("%s\n", line + 4);
				rc = EXIT_OK;
			} else if (strncmp(line, "failed: ", 8) == 0) {
				fprintf(stderr, "kheo sync --now: %s\n",
					line + 8);
				rc = EXIT_REFUSED;
			} else {
				printf("kheod: %s\n", line);
				fflush(stdout);
			}
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have + 1);
		}
		if (have == sizeof(buf) - 1)
			have = 0; /* a line too long for us: drop it */
	}
	close(fd);
	return rc;
}

int cmd_sync(cli *c)
{
	kheo_session_options o = KHEO_SESSION_OPTIONS_INIT;
	kheo_session_stats st;
	kheo_session *s = NULL;
	kheo_db *db = NULL;
	const char *addr = NULL, *key = NULL;
	char host[256], port[16];
	int64_t t0;
	int i, fd = -1, rc, tty = isatty(2), now = 0, no_blobs = 0;

	for (i = 1; i < c->argc; i++) {
		if (strcmp(c->argv[i], "--now") == 0)
			now = 1;
		else if (strcmp(c->argv[i], "--key") == 0 && i + 1 < c->argc)
			key = c->argv[++i];
		else if (strcmp(c->argv[i], "--no-blobs") == 0)
			no_blobs = 1;
		else if (c->argv[i][0] != '-' && !addr)
			addr = c->argv[i];
		else
			return cli_usage(usage_line);
	}
	if (now)
		return addr || key || no_blobs ? cli_usage(usage_line)
					       : sync_now(c);
	if (!addr || split(addr, host, sizeof(host), port, sizeof(port)) < 0)
		return cli_usage(usage_line);
	if (key && !valid_key(key)) {
		fprintf(stderr, "kheo sync: --key %s: want the hub's key, 64 "
			"hex digits (kheo id on the hub)\n", key);
		return EXIT_USAGE;
	}
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	/* seal pending edits first, as bundle create does */
	if (kheo_commit(db, NULL) < 0) {
		rc = cli_fail(db, "sync");
		goto done;
	}
	o.initiator = 1;
	o.expect_peer = key;
	o.no_blobs = no_blobs;
	if ((rc = kheo_session_new(&s, db, &o)) < 0) {
		fprintf(stderr, "kheo sync: %s (%s)\n", *kheo_errmsg(db) ?
			kheo_errmsg(db) : "this node cannot sync",
			kheo_error_name(rc));
		rc = EXIT_REFUSED;
		goto done;
	}
	t0 = now_ms();
	if ((fd = dial(host, port, addr)) < 0 || drive(s, fd, addr, tty) < 0) {
		rc = EXIT_REFUSED;
		goto done;
	}
	if (tty)
		fprintf(stderr, "\r\033[K");
	if (kheo_session_status(s, &st) != KHEO_SESSION_DONE) {
		fprintf(stderr, "kheo sync: %s%s%.16s: %s\n", addr,
			st.peer[0] ? " key " : "", st.peer,
			kheo_session_error(s));
		rc = EXIT_REFUSED;
		goto done;
	}
	summary(c, addr, &st, (double)(now_ms() - t0) / 1000.0);
	if (st.apply.rejected)
		fprintf(stderr, "kheo sync: %zu changeset%s rejected (see kheo "
			"quarantine)\n", st.apply.rejected,
			st.apply.rejected == 1 ? "" : "s");
	rc = EXIT_OK;
done:
	if (fd >= 0)
		close(fd);
	kheo_session_free(s);
	kheo_db_close(db);
	return rc;
}
