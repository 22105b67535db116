/*
 * upstream.c - when a hub calls the province: the nightly window, retries
 * with backoff, and syncs on demand.
 *
 * Inside the window (kheod.conf's `nightly`, local time) the node syncs
 * with its upstream once: the first attempt comes a random 0..retry_min
 * seconds after the window opens (so that a province's hubs do not all
 * call at the same second), and a failed one is retried after a delay
 * that doubles from retry_min up to retry_max, each drawn at random from
 * its upper half ("equal jitter"), until one succeeds or the window
 * closes.  The schedule is re-read from the wall clock at least every 10
 * minutes, so a clock change, a suspend or a DST jump costs at most that.
 *
 * On demand: SIGUSR1, or a client of the control socket DIR/kheod.sock
 * (`kheo sync --now`), starts an attempt at once, outside the window too,
 * and is not retried; a client waits for the end and gets one line back.
 * The control socket is a Unix socket of mode 0600 (only the daemon's
 * user and root may ask), speaking lines: the client sends "sync", the
 * daemon answers "syncing with HOST:PORT" and, at the end, "ok: LINE" or
 * "failed: LINE", LINE being the session's log line.  It was chosen over a
 * watched trigger file because the client learns the outcome and because
 * a stale socket is told from a live daemon by connecting to it (which
 * also keeps two daemons off one data directory).
 *
 * Not here: the session itself (server.c).
 */
#include "daemon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CHECK_EVERY 600    /* seconds: the longest the timer sleeps */
#define MAX_WAITERS 32     /* control clients at once */

struct waiter {
	struct waiter *next;
	uv_pipe_t pipe;
	uv_write_t wreq;
	uv_shutdown_t sreq;
	char in[64];
	size_t in_len;
	char *out;
	int asked;           /* sent "sync": waits for the result */
	int closing;
};

static struct {
	uv_loop_t *loop;
	uv_timer_t timer;
	uv_getaddrinfo_t gai;
	uv_pipe_t ctl;
	int ctl_open, stopping;
	char sock[PATH_MAX];
	struct waiter *waiters;
	unsigned nwaiters;

	char addr[CONF_ADDR_MAX];      /* "" for none */
	char key[KHEO_KEY_HEX + 1];
	int from, to;                  /* the window, minutes; -1: none */
	unsigned retry_min, retry_max;

	int running;         /* resolving or a session runs */
	int resolving;       /* up.gai is in flight */
	int demand;          /* an attempt is wanted now */
	unsigned failures;   /* in a row, this window */
	time_t next_try;     /* 0: none planned */
	time_t synced;       /* start of the window already synced */
} up;

static void schedule(void);

static uint32_t random32(void)
{
	uint32_t r = 0;

	/* synchronous (no loop): getrandom(2) or /dev/urandom */
	if (uv_random(NULL, NULL, &r, sizeof(r), 0, NULL) < 0)
		r = (uint32_t)rand();
	return r;
}

/* Seconds before attempt number failures + 1. */
static unsigned backoff(unsigned failures)
{
	uint64_t d = up.retry_min;
	unsigned i;

	for (i = 1; i < failures && d < up.retry_max; i++)
		d *= 2;
	if (d > up.retry_max)
		d = up.retry_max;
	return (unsigned)(d - d / 2 + random32() % (d / 2 + 1));
}

static time_t at_minute(const struct tm *day, int minute, int days)
{
	struct tm t = *day;

	t.tm_hour = minute / 60;
	t.tm_min = minute % 60;
	t.tm_sec = 0;
	t.tm_mday += days;
	t.tm_isdst = -1;
	return mktime(&t);
}

/* The start of the window `now` falls in (*in = 1), else of the next
 * one.  A window may cross midnight; from == to is the whole day. */
static time_t window_start(time_t now, int *in)
{
	struct tm tm;
	int m;

	localtime_r(&now, &tm);
	m = tm.tm_hour * 60 + tm.tm_min;
	if (up.from < up.to)
		*in = m >= up.from && m < up.to;
	else
		*in = m >= up.from || m < up.to;
	if (*in)
		return at_minute(&tm, up.from, m >= up.from ? 0 : -1);
	return at_minute(&tm, up.from, m < up.from ? 0 : 1);
}

/* ------------------------------------------------------ control clients */

static void waiter_closed(uv_handle_t *h)
{
	struct waiter *w = h->data, **p;

	for (p = &up.waiters; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	up.nwaiters--;
	free(w->out);
	free(w);
}

static void waiter_close(struct waiter *w)
{
	if (!w->closing) {
		w->closing = 1;
		uv_close((uv_handle_t *)&w->pipe, waiter_closed);
	}
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	(void)status;
	waiter_close(req->data);
}

static void on_wrote(uv_write_t *req, int status)
{
	struct waiter *w = req->data;

	free(w->out);
	w->out = NULL;
	if (status < 0)
		waiter_close(w);
}

/* Send one line; with `last`, close once it has gone. */
static void answer(struct waiter *w, const char *line, int last)
{
	uv_buf_t b;
	size_t n = strlen(line);

	if (w->closing || w->out)
		return;
	if (!(w->out = malloc(n + 1))) {
		waiter_close(w);
		return;
	}
	memcpy(w->out, line, n);
	w->out[n] = '\n';
	b = uv_buf_init(w->out, (unsigned)n + 1);
	w->wreq.data = w->sreq.data = w;
	if (uv_write(&w->wreq, (uv_stream_t *)&w->pipe, &b, 1, on_wrote) < 0) {
		waiter_close(w);
		return;
	}
	if (last && uv_shutdown(&w->sreq, (uv_stream_t *)&w->pipe,
				on_shutdown) < 0)
		waiter_close(w);
}

static void tell_waiters(int ok, const char *line)
{
	struct waiter *w;
	char buf[800];

	strf(buf, sizeof(buf), "%s: %s", ok ? "ok" : "failed", line);
	for (w = up.waiters; w; w = w->next)
		if (w->asked) {
			w->asked = 0;
			answer(w, buf, 1);
		}
}

static void on_ctl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct waiter *w = h->data;

	(void)suggested;
	*buf = uv_buf_init(w->in + w->in_len,
		(unsigned)(sizeof(w->in) - 1 - w->in_len));
}

static void on_ctl_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct waiter *w = s->data;
	char *nl, line[CONF_ADDR_MAX + 32];

	(void)buf;
	if (nread < 0) {
		waiter_close(w); /* gone: nobody to tell */
		return;
	}
	w->in_len += (size_t)nread;
	w->in[w->in_len] = '\0';
	if (!(nl = strchr(w->in, '\n'))) {
		if (w->in_len == sizeof(w->in) - 1) {
			uv_read_stop(s);
			answer(w, "failed: a line too long", 1);
		}
		return;
	}
	uv_read_stop(s);
	*nl = '\0';
	if (strcmp(w->in, "sync") != 0) {
		answer(w, "failed: unknown command (kheod knows \"sync\")", 1);
		return;
	}
	if (!up.addr[0]) {
		answer(w, "failed: kheod has no upstream (set upstream in "
			"kheod.conf, or --upstream)", 1);
		return;
	}
	if (up.stopping) {
		answer(w, "failed: kheod is stopping", 1);
		return;
	}
	strf(line, sizeof(line), "syncing with %s", up.addr);
	answer(w, line, 0);
	w->asked = 1;
	upstream_now("kheo sync --now");
}

static void on_ctl(uv_stream_t *server, int status)
{
	struct waiter *w;

	if (status < 0)
		return;
	if (!(w = calloc(1, sizeof(*w))))
		return;
	uv_pipe_init(up.loop, &w->pipe, 0);
	w->pipe.data = w;
	w->next = up.waiters;
	up.waiters = w;
	up.nwaiters++;
	if (uv_accept(server, (uv_stream_t *)&w->pipe) < 0) {
		waiter_close(w);
		return;
	}
	if (up.nwaiters > MAX_WAITERS) {
		answer(w, "failed: too many clients waiting", 1);
		return;
	}
	if (uv_read_start((uv_stream_t *)&w->pipe, on_ctl_alloc,
			  on_ctl_read) < 0)
		waiter_close(w);
}

/* DIR/kheod.sock as an address; -1 when the path is too long. */
static int sock_addr(const char *dir, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(dir) + 1 + strlen(KHEOD_SOCK) >= sizeof(sa->sun_path))
		return -1;
	strf(sa->sun_path, sizeof(sa->sun_path), "%s/%s", dir, KHEOD_SOCK);
	return 0;
}

int upstream_probe(const char *dir, char *err, size_t len)
{
	struct sockaddr_un sa;
	int fd, rc;

	if (sock_addr(dir, &sa) < 0 || (fd = socket(AF_UNIX, SOCK_STREAM,
						    0)) < 0)
		return 0;
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (rc == 0) {
		strf(err, len, "another kheod serves %s (%s answers)", dir,
			sa.sun_path);
		return -1;
	}
	return 0;
}

/* Bind DIR/kheod.sock, unless a live daemon answers there. */
static int ctl_start(const char *dir, char *err, size_t len)
{
	struct sockaddr_un sa;
	mode_t old;
	int rc;

	if (sock_addr(dir, &sa) < 0) {
		log_warn("%s/%s: the path is too long for a Unix socket: no "
			"control socket, so kheo sync --now cannot reach "
			"this daemon (SIGUSR1 still works)", dir, KHEOD_SOCK);
		return 0;
	}
	if (upstream_probe(dir, err, len) < 0)
		return -1;
	strf(up.sock, sizeof(up.sock), "%s", sa.sun_path);
	unlink(up.sock); /* stale: its daemon died without removing it */
	uv_pipe_init(up.loop, &up.ctl, 0);
	old = umask(0077);
	rc = uv_pipe_bind(&up.ctl, up.sock);
	umask(old);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&up.ctl, 16, on_ctl);
	if (rc < 0) {
		strf(err, len, "%s: %s", up.sock, uv_strerror(rc));
		uv_close((uv_handle_t *)&up.ctl, NULL);
		up.sock[0] = '\0';
		return -1;
	}
	up.ctl_open = 1;
	return 0;
}

/* ------------------------------------------------------------ attempts */

static void finish(int ok, const char *line)
{
	time_t now = time(NULL), start = 0;
	unsigned wait;
	int in = 0;

	up.running = 0;
	tell_waiters(ok, line);
	if (up.stopping)
		return;
	if (up.from >= 0)
		start = window_start(now, &in);
	if (ok) {
		up.failures = 0;
		up.next_try = 0;
		if (in)
			up.synced = start;
	} else if (in && up.synced != start) {
		wait = backoff(++up.failures);
		up.next_try = now + wait;
		log_info("upstream %s: next attempt in %u s (attempt %u in "
			"this window)", up.addr, wait, up.failures + 1);
	}
	schedule();
}

static void on_done(int ok, const char *line, void *payload)
{
	(void)payload;
	finish(ok, line);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
	struct addrinfo *res)
{
	char line[CONF_ADDR_MAX + 300], ip[INET6_ADDRSTRLEN] = "?";

	(void)req;
	up.resolving = 0;
	if (up.stopping) {
		uv_freeaddrinfo(res);
		up.running = 0;
		return;
	}
	if (status < 0) {
		strf(line, sizeof(line), "upstream %s: failed: cannot "
			"resolve it: %s", up.addr, uv_strerror(status));
		log_warn("%s", line);
		finish(0, line);
		return;
	}
	if (res->ai_family == AF_INET6)
		uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip,
			sizeof(ip));
	else
		uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip,
			sizeof(ip));
	strf(line, sizeof(line), "%s (%s)", up.addr, ip);
	if (server_connect(res->ai_addr, line, up.key, on_done, NULL) < 0) {
		uv_freeaddrinfo(res);
		strf(line, sizeof(line), "upstream %s: failed: cannot "
			"start a connection", up.addr);
		log_warn("%s", line);
		finish(0, line);
		return;
	}
	uv_freeaddrinfo(res);
}

static void attempt(void)
{
	struct addrinfo hints;
	char host[CONF_ADDR_MAX], port[8], line[CONF_ADDR_MAX + 100];

	up.demand = 0;
	up.running = 1;
	up.resolving = 1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (conf_hostport(up.addr, host, sizeof(host), port,
			  sizeof(port)) < 0 ||
	    uv_getaddrinfo(up.loop, &up.gai, on_resolved, host, port,
			   &hints) < 0) {
		up.resolving = 0;
		strf(line, sizeof(line), "upstream %s: failed: cannot "
			"resolve it", up.addr);
		log_warn("%s", line);
		finish(0, line);
	}
}

static void on_timer(uv_timer_t *t)
{
	(void)t;
	schedule();
}

/* Decide what happens next, from the wall clock. */
static void schedule(void)
{
	time_t now = time(NULL), start;
	uint64_t wait = CHECK_EVERY;
	int in;

	if (up.stopping || up.running)
		return;
	uv_timer_stop(&up.timer);
	if (!up.addr[0])
		return;
	if (up.demand) {
		attempt();
		return;
	}
	if (up.from < 0)
		return; /* on demand only */
	start = window_start(now, &in);
	if (in && up.synced != start) {
		if (!up.next_try) {
			up.next_try = now + random32() % (up.retry_min + 1);
			log_debug("upstream %s: the window is open: first "
				"attempt in %lld s", up.addr,
				(long long)(up.next_try - now));
		}
		if (now >= up.next_try) {
			log_info("upstream %s: syncing (nightly window)",
				up.addr);
			attempt();
			return;
		}
		wait = (uint64_t)(up.next_try - now);
	} else {
		up.next_try = 0;
		up.failures = 0;
		if (!in && start > now && (uint64_t)(start - now) < wait)
			wait = (uint64_t)(start - now);
	}
	if (wait > CHECK_EVERY)
		wait = CHECK_EVERY;
	uv_timer_start(&up.timer, on_timer, 1000 * wait, 0);
}

/* ------------------------------------------------------------- the API */

static void take(const struct conf *c)
{
	if (strcmp(up.addr, c->upstream) != 0 ||
	    strcmp(up.key, c->upstream_key) != 0 ||
	    up.from != c->window_from || up.to != c->window_to) {
		up.failures = 0;
		up.next_try = 0;
		up.synced = 0;
	}
	strf(up.addr, sizeof(up.addr), "%s", c->upstream);
	strf(up.key, sizeof(up.key), "%s", c->upstream_key);
	up.from = c->window_from;
	up.to = c->window_to;
	up.retry_min = c->retry_min;
	up.retry_max = c->retry_max;
}

int upstream_start(uv_loop_t *loop, const struct conf *c, char *err,
	size_t len)
{
	up.loop = loop;
	take(c);
	uv_timer_init(loop, &up.timer);
	if (ctl_start(c->dir, err, len) < 0) {
		uv_close((uv_handle_t *)&up.timer, NULL);
		return -1;
	}
	schedule();
	return 0;
}

void upstream_reconf(const struct conf *c)
{
	take(c);
	schedule();
}

void upstream_now(const char *why)
{
	if (up.stopping)
		return;
	if (!up.addr[0]) {
		log_warn("%s: no upstream to sync with (set upstream in "
			"kheod.conf, or --upstream)", why);
		return;
	}
	if (up.running) {
		log_info("upstream %s: %s: a sync is already running",
			up.addr, why);
		return;
	}
	log_info("upstream %s: syncing now (%s)", up.addr, why);
	up.demand = 1;
	schedule();
}

void upstream_stop(void)
{
	struct waiter *w;

	if (up.stopping)
		return;
	up.stopping = 1;
	uv_timer_stop(&up.timer);
	uv_close((uv_handle_t *)&up.timer, NULL);
	if (up.resolving)
		uv_cancel((uv_req_t *)&up.gai); /* UV_ECANCELED, or done */
	if (up.ctl_open) {
		uv_close((uv_handle_t *)&up.ctl, NULL);
		up.ctl_open = 0;
	}
	if (up.sock[0])
		unlink(up.sock);
	for (w = up.waiters; w; w = w->next)
		if (w->asked) {
			w->asked = 0;
			answer(w, "failed: kheod is stopping", 1);
		} else {
			waiter_close(w);
		}
}
