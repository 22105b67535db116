/*
 * server.c - TCP connections around libkheo sync sessions: the ones
 * devices and hubs open to this node, and the one upstream.c opens to the
 * province.
 *
 * Each connection owns a kheo_session, and no database handle: the
 * handles of the node are a pool shared by all connections (below), and
 * a session is bound to one (kheo_session_bind) only while a call of its
 * runs.  Every call that may touch the database (kheo_session_new and
 * kheo_session_input) runs in libuv's thread pool, one at a time per
 * connection; the loop thread only moves bytes, reads the session's
 * state while no work is running, and frees it (which needs no handle).
 * A connection is always in one of three states: database work running,
 * a write in flight, or waiting for the peer.  Bytes that arrive
 * meanwhile are kept, up to max_buffer, and reading pauses until the
 * session has taken them: what a peer can make us hold is bounded, and a
 * slow disk slows the peer rather than growing memory.  The bytes of kheo_session_output are
 * written as they are (they are borrowed until the next call on the
 * session, and no call is made until the write is done).
 *
 * Limits (kheod.conf(5)): sessions in all and per peer address, checked
 * at accept before anything is allocated beyond the connection; an idle
 * timeout (no byte either way), a time to finish the handshake (so that a
 * peer trickling a byte a minute cannot hold a place for long without
 * proving who it is) and a total session time, all on one timer; the
 * library bounds message sizes and changesets per session.  Every session
 * ends with one log line naming the peer (and its key once the handshake
 * named it): refused, failed or done.
 *
 * Not here: what the bytes mean (libkheo), when to call upstream
 * (upstream.c).
 */
#include "daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum job { JOB_OPEN = 1, JOB_INPUT };

struct conn {
	struct conn *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_work_t work;
	uv_write_t wreq;
	uv_connect_t creq;
	uv_buf_t wbuf;
	int outgoing;        /* we connected (upstream) */
	int refused;         /* over a limit: closed at once, not counted */
	char peer[INET6_ADDRSTRLEN + 16]; /* "1.2.3.4:5678", "[::1]:5678" */
	char ip[INET6_ADDRSTRLEN];
	char expect[KHEO_KEY_HEX + 1];
	kheo_session_options opts;

	kheo_session *s;     /* bound to no handle between jobs */
	kheo_session_state phase; /* the last state before DONE or FAILED */
	uint8_t *in;         /* read, not yet handed to the session */
	size_t in_len, in_cap;
	uint8_t *feed;       /* handed to the running JOB_INPUT */
	size_t feed_len;
	enum job job;
	int job_rc;
	char job_err[256];   /* a job's failure, written by the thread */

	int connected, working, writing, reading, eof;
	int ending;          /* a reason is set: close when no work runs */
	int closing;         /* handles are closing */
	int handles;         /* open libuv handles */
	int timer_on;        /* the timer handle was initialised */
	char why[256];       /* the first reason the session ended */
	uint64_t t0, deadline; /* uv_now() ms; deadline 0: none */
	uint64_t hs_deadline;  /* the handshake's */

	conn_done_fn done;
	void *payload;
};

static struct {
	uv_loop_t *loop;
	uv_tcp_t listener;
	int listening;
	uv_timer_t grace;
	int grace_open;
	int stopping;
	struct conn *head;
	unsigned n;          /* connections alive, refused ones included */
	unsigned sessions;   /* incoming, counted against max_sessions */

	char dir[PATH_MAX];
	const char *pass;
	unsigned idle_timeout, connect_timeout, session_timeout;
	unsigned handshake_timeout;
	unsigned shutdown_grace, max_sessions, max_per_peer;
	size_t max_buffer, chunk_bytes;
	uint64_t max_changesets, device_blob_bytes;
	char audit_mirror[PATH_MAX]; /* "" for none */
} srv;

static void pump(struct conn *c);
static void conn_close(struct conn *c);
static void mirror_kick(void);

/* ------------------------------------------------------------ helpers */

static void end(struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The session is over for `why` (the first reason given wins); the
 * connection closes as soon as no database work runs. */
static void end(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	if (!c->why[0] && fmt) {
		va_start(ap, fmt);
		vsnprintf(c->why, sizeof(c->why), fmt, ap);
		va_end(ap);
	}
	c->ending = 1;
	if (!c->working)
		conn_close(c);
}

static void name_peer(struct conn *c, const struct sockaddr *sa)
{
	uint16_t port = 0;

	c->ip[0] = '\0';
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)sa;

		uv_ip4_name(a, c->ip, sizeof(c->ip));
		port = ntohs(a->sin_port);
		strf(c->peer, sizeof(c->peer), "%s:%u", c->ip, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)sa;

		uv_ip6_name(a, c->ip, sizeof(c->ip));
		port = ntohs(a->sin6_port);
		strf(c->peer, sizeof(c->peer), "[%s]:%u", c->ip, port);
	} else {
		strf(c->peer, sizeof(c->peer), "(unknown address)");
	}
}

/* The one timer: connecting, then idle (no byte either way), capped by
 * the handshake's and the session's deadlines.  Stopped while database
 * work runs: a busy store is not the peer's fault. */
static void on_timer(uv_timer_t *t);

static uint64_t until(uint64_t deadline, uint64_t now, uint64_t ms)
{
	if (!deadline)
		return ms;
	if (deadline <= now)
		return 0;
	return deadline - now < ms ? deadline - now : ms;
}

static void arm(struct conn *c)
{
	uint64_t now = uv_now(srv.loop);
	uint64_t ms = 1000 * (uint64_t)(c->connected ? srv.idle_timeout :
					   srv.connect_timeout);

	ms = until(c->deadline, now, ms);
	if (c->phase == KHEO_SESSION_HANDSHAKE)
		ms = until(c->hs_deadline, now, ms);
	uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t)
{
	struct conn *c = t->data;

	if (c->working || c->ending)
		return;
	if (!c->connected)
		end(c, "no connection within %u s (connect_timeout)",
			srv.connect_timeout);
	else if (c->deadline && uv_now(srv.loop) >= c->deadline)
		end(c, "still running after %u s (session_timeout)",
			srv.session_timeout);
	else if (c->phase == KHEO_SESSION_HANDSHAKE &&
		 uv_now(srv.loop) >= c->hs_deadline)
		end(c, "no handshake within %u s (handshake_timeout)",
			srv.handshake_timeout);
	else if (!c->writing && c->s && kheo_session_status(c->s, NULL) ==
		 KHEO_SESSION_FAILED)
		end(c, "%s", kheo_session_error(c->s));
	else
		end(c, "idle for %u s (idle_timeout)", srv.idle_timeout);
}

/* ------------------------------------------------ the node's handles */

/*
 * The node's kheo_db handles, shared by every connection: a job takes one
 * for its call and gives it back after, its session bound to it
 * (kheo_session_bind) only meanwhile.  So no more are open than jobs run
 * at once, that is libuv's thread pool size (UV_THREADPOOL_SIZE, 4 by
 * default), however many connections there are: a handle costs about
 * 234 KB and SQLite's page cache (up to cache_size, 16 MiB), a
 * connection without one some 12 KiB (bench_sessions measures it).
 * Handles are opened as jobs need them and kept for POOL_AGE at most: a
 * handle reads the node's identity when it opens (key, root,
 * certificates' role), so a `kheo enroll accept` or `kheo rekey` run on
 * the node beside kheod reaches its sessions within that time, as it
 * reached the next session when each had a handle of its own.
 *
 * A handle whose call failed after the secure channel was up (when the
 * session may have been doing database work) is closed rather than given
 * back: cheap insurance against anything a failure path might leave on
 * it, and only enrolled peers get that far.  Failures in the handshake
 * (garbage, strangers, timeouts) touch no database and keep theirs.
 */
#define POOL_AGE (60 * (uint64_t)1000000000) /* ns */

struct pooled {
	kheo_db *db;
	uint64_t born;       /* uv_hrtime() at open */
};

static struct {
	uv_mutex_t lock;
	int lock_ready;
	struct pooled *free; /* idle handles */
	size_t nfree, cap;
	unsigned open;       /* in all, idle or lent */
} pool;

/* A handle for one call, from a worker thread; -1 with a message. */
static int pool_take(struct pooled *h, char *err, size_t len)
{
	kheo_open_options o = KHEO_OPEN_OPTIONS_INIT;
	unsigned n = 0;

	for (;;) {
		int stale = 0;

		h->db = NULL;
		uv_mutex_lock(&pool.lock);
		if (pool.nfree) {
			*h = pool.free[--pool.nfree];
			if (uv_hrtime() - h->born >= POOL_AGE) {
				stale = 1; /* idle too long: closed below */
				pool.open--;
			}
		} else {
			n = ++pool.open;
		}
		uv_mutex_unlock(&pool.lock);
		if (!h->db)
			break;
		if (!stale)
			return 0;
		kheo_db_close(h->db);
	}
	o.log = log_kheo;
	o.passphrase = srv.pass;
	h->born = uv_hrtime();
	if (kheo_db_open(&h->db, srv.dir, &o) < 0) {
		strf(err, len, "cannot open the node in %s: %s", srv.dir,
			kheo_errmsg(h->db));
		kheo_db_close(h->db);
		h->db = NULL;
		uv_mutex_lock(&pool.lock);
		pool.open--;
		uv_mutex_unlock(&pool.lock);
		return -1;
	}
	log_debug("database handle %u opened", n);
	return 0;
}

/* Back to the pool, or closed: keep 0, older than POOL_AGE, or no memory
 * to keep it. */
static void pool_give(struct pooled *h, int keep)
{
	struct pooled *v;

	if (uv_hrtime() - h->born >= POOL_AGE)
		keep = 0;
	uv_mutex_lock(&pool.lock);
	if (keep && pool.nfree == pool.cap) {
		size_t cap = pool.cap ? 2 * pool.cap : 8;

		if ((v = realloc(pool.free, cap * sizeof(*v)))) {
			pool.free = v;
			pool.cap = cap;
		} else {
			keep = 0;
		}
	}
	if (keep)
		pool.free[pool.nfree++] = *h;
	else
		pool.open--;
	uv_mutex_unlock(&pool.lock);
	if (!keep)
		kheo_db_close(h->db);
	h->db = NULL;
}

/* Close the idle handles: kheod stops, and no connection is left. */
static void pool_drain(void)
{
	while (pool.nfree)
		kheo_db_close(pool.free[--pool.nfree].db);
	pool.open = 0;
	free(pool.free);
	pool.free = NULL;
	pool.cap = 0;
}

/* --------------------------------------------------- the audit mirror */

/*
 * With audit_mirror set, a session that applied changesets is followed by
 * kheo_audit_export into that mirror (docs/auditor.md), in the thread
 * pool with a pooled handle, as other database work is.  One export runs
 * at a time: sessions that end meanwhile ask for one more, which then
 * takes all they applied.  An export costs what it appends (it takes up
 * the rebuild the last one kept); one that fails is logged, and the next
 * session that applies something tries again.
 */
static struct {
	uv_work_t work;
	int running, again;
	char path[PATH_MAX];  /* the running export's mirror */
	int rc;
	char err[600];
	kheo_audit_stats st;
	double secs;
} mir;

static void mirror_job(uv_work_t *w)
{
	struct pooled h;
	uint64_t t0 = uv_hrtime();

	(void)w;
	mir.err[0] = '\0';
	memset(&mir.st, 0, sizeof(mir.st));
	if (pool_take(&h, mir.err, sizeof(mir.err)) < 0) {
		mir.rc = KHEO_ERROR;
		return;
	}
	mir.rc = kheo_audit_export(h.db, mir.path, &mir.st);
	if (mir.rc < 0)
		strf(mir.err, sizeof(mir.err), "%s", kheo_errmsg(h.db));
	pool_give(&h, mir.rc == KHEO_OK);
	mir.secs = (double)(uv_hrtime() - t0) / 1e9;
}

static void mirror_done(uv_work_t *w, int status)
{
	(void)w;
	(void)status;
	mir.running = 0;
	if (mir.rc < 0)
		log_warn("audit mirror %s: export failed: %s", mir.path,
			mir.err);
	else
		log_info("audit mirror %s: %zu commits appended in %.1f s, "
			"head %.12s", mir.path, mir.st.commits, mir.secs,
			mir.st.tip);
	if (mir.again && !srv.stopping)
		mirror_kick();
	else if (srv.stopping && srv.n == 0)
		pool_drain();
}

static void mirror_kick(void)
{
	if (!srv.audit_mirror[0])
		return;
	if (mir.running) {
		mir.again = 1;
		return;
	}
	mir.again = 0;
	mir.running = 1;
	strf(mir.path, sizeof(mir.path), "%s", srv.audit_mirror);
	(void)uv_queue_work(srv.loop, &mir.work, mirror_job, mirror_done);
}

/* ------------------------------------------------- database work (pool) */

static void do_job(uv_work_t *w)
{
	struct conn *c = w->data;
	kheo_session_stats st;
	struct pooled h;
	const char *msg;
	kheo_db *db;
	int rc;

	c->job_err[0] = '\0';
	if (pool_take(&h, c->job_err, sizeof(c->job_err)) < 0) {
		c->job_rc = KHEO_ERROR;
		return;
	}
	db = h.db;
	switch (c->job) {
	case JOB_OPEN:
		if ((rc = kheo_session_new(&c->s, db, &c->opts)) < 0) {
			msg = kheo_errmsg(db);
			strf(c->job_err, sizeof(c->job_err), "cannot start "
				"a session: %s (%s)", msg && *msg ? msg :
				"this node cannot sync", kheo_error_name(rc));
			c->s = NULL;
		} else {
			(void)kheo_session_bind(c->s, NULL); /* cannot fail */
		}
		c->job_rc = rc;
		pool_give(&h, 1);
		break;
	case JOB_INPUT:
		if ((rc = kheo_session_bind(c->s, db)) < 0) {
			strf(c->job_err, sizeof(c->job_err), "%s",
				kheo_errmsg(db));
			c->job_rc = rc;
			pool_give(&h, 0);
			break;
		}
		/* An error leaves the session FAILED; pump() reads why. */
		c->job_rc = kheo_session_input(c->s, c->feed, c->feed_len);
		(void)kheo_session_bind(c->s, NULL);
		kheo_session_status(c->s, &st);
		pool_give(&h, c->job_rc == KHEO_OK || !st.peer[0]);
		break;
	}
}

static void conn_free(struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		srv.head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv.n--;
	free(c->in);
	free(c->feed);
	free(c);
	if (srv.stopping && srv.n == 0) {
		pool_drain();
		if (srv.grace_open) {
			srv.grace_open = 0;
			uv_close((uv_handle_t *)&srv.grace, NULL);
		}
	}
}

static void after_job(uv_work_t *w, int status)
{
	struct conn *c = w->data;

	(void)status; /* never cancelled: we do not call uv_cancel */
	c->working = 0;
	free(c->feed);
	c->feed = NULL;
	c->feed_len = 0;
	switch (c->job) {
	case JOB_OPEN:
		if (!c->s && !c->why[0])
			end(c, "%s", c->job_err);
		break;
	case JOB_INPUT:
		/* no handle for it; or the header promises FAILED with a
		 * reason, and if not, say so */
		if (c->job_rc < 0 && kheo_session_status(c->s, NULL) !=
		    KHEO_SESSION_FAILED)
			end(c, "%s", c->job_err[0] ? c->job_err :
				kheo_error_name(c->job_rc));
		break;
	}
	if (c->ending) {
		conn_close(c);
		return;
	}
	arm(c);
	pump(c);
}

static void queue(struct conn *c, enum job job)
{
	c->job = job;
	c->working = 1;
	if (c->timer_on)
		uv_timer_stop(&c->timer);
	/* fails only for a NULL callback */
	(void)uv_queue_work(srv.loop, &c->work, do_job, after_job);
}

/* ----------------------------------------------------------- closing */

static void on_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	if (--c->handles > 0)
		return;
	kheo_session_free(c->s); /* no handle, no work runs */
	c->s = NULL;
	conn_free(c);
}

/* The line that says how the session ended, logged and handed to the
 * caller of server_connect. */
static void conn_close(struct conn *c)
{
	kheo_session_stats st;
	kheo_session_state state = KHEO_SESSION_FAILED;
	const char *who = c->outgoing ? "upstream" : "session";
	char key[40] = "", line[768];
	double secs = (double)(uv_now(srv.loop) - c->t0) / 1000.0;
	int ok;

	if (c->closing)
		return;
	c->closing = 1;
	memset(&st, 0, sizeof(st));
	/* No work runs and kheo_session_status is a read: it does not
	 * disturb a write of the session's output still in flight. */
	if (c->s)
		state = kheo_session_status(c->s, &st);
	if (st.peer[0])
		strf(key, sizeof(key), " key %.16s", st.peer);
	ok = c->s && state == KHEO_SESSION_DONE;
	if (c->refused) {
		line[0] = '\0';
	} else if (ok) {
		strf(line, sizeof(line), "%s %s%s: done in %.1f s: sent "
			"%zu, received %zu (applied %zu, held %zu, rejected "
			"%zu), %llu bytes in, %llu out, clock offset %+lld ms",
			who, c->peer, key, secs, st.sent, st.received,
			st.apply.applied, st.apply.held, st.apply.rejected,
			(unsigned long long)st.bytes_in,
			(unsigned long long)st.bytes_out,
			(long long)st.clock_offset_ms);
		log_info("%s", line);
		/* an older peer moves records only: say so once per session
		 * (docs/operator.md, Upgrades) */
		if (st.peer_version && st.peer_version < 2)
			log_warn("peer %s%s speaks sync version %u: no "
				"attachments moved with it; upgrade it",
				c->peer, key, st.peer_version);
	} else {
		/* A peer is "refused" until it is let in; a session "failed"
		 * after, and an upstream one always (we called). */
		if (c->s && state != KHEO_SESSION_FAILED)
			c->phase = state;
		strf(line, sizeof(line), "%s %s%s: %s %s after %.1f s: %s",
			who, c->peer, key, c->outgoing ||
			c->phase == KHEO_SESSION_SYNCING ? "failed" :
			"refused", !c->s ?
			"before the session started" :
			c->phase == KHEO_SESSION_SYNCING ? "while syncing" :
			"in the handshake", secs,
			c->why[0] ? c->why : kheo_session_error(c->s));
		log_warn("%s", line);
	}
	if (ok && st.apply.applied)
		mirror_kick();
	if (!c->outgoing && !c->refused)
		srv.sessions--;
	if (c->done) {
		c->done(ok, line, c->payload);
		c->done = NULL;
	}
	c->handles = 1 + c->timer_on;
	uv_close((uv_handle_t *)&c->tcp, on_closed);
	if (c->timer_on)
		uv_close((uv_handle_t *)&c->timer, on_closed);
}

/* ------------------------------------------------------- moving bytes */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;
	size_t cap = c->in_len + 16384;
	uint8_t *p;

	(void)suggested;
	if (cap > srv.max_buffer)
		cap = srv.max_buffer > c->in_len ? srv.max_buffer : c->in_len;
	if (cap > c->in_cap) {
		if (!(p = realloc(c->in, cap))) {
			*buf = uv_buf_init(NULL, 0); /* read_cb: UV_ENOBUFS */
			return;
		}
		c->in = p;
		c->in_cap = cap;
	}
	*buf = uv_buf_init((char *)c->in + c->in_len,
		(unsigned)(c->in_cap - c->in_len));
}

static void stop_reading(struct conn *c)
{
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = 0;
	}
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = stream->data;

	(void)buf;
	if (nread == 0 || c->ending)
		return;
	if (nread == UV_ENOBUFS) {
		/* out of memory, or a reload lowered max_buffer */
		stop_reading(c);
		if (!c->in_len)
			end(c, "out of memory for its bytes");
		else
			pump(c); /* feed what we have; reading resumes after */
		return;
	}
	if (nread < 0) {
		stop_reading(c);
		if (nread == UV_EOF)
			c->eof = 1;
		else
			end(c, "read: %s", uv_strerror((int)nread));
		pump(c);
		return;
	}
	c->in_len += (size_t)nread;
	if (c->in_len >= srv.max_buffer)
		stop_reading(c);
	if (!c->working)
		arm(c);
	pump(c);
}

static void start_reading(struct conn *c)
{
	int rc;

	if (c->reading || c->eof || c->ending)
		return;
	if ((rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc,
				on_read)) < 0) {
		end(c, "read: %s", uv_strerror(rc));
		return;
	}
	c->reading = 1;
}

static void on_write(uv_write_t *req, int status)
{
	struct conn *c = req->data;

	c->writing = 0;
	if (c->closing)
		return;
	if (status < 0) {
		end(c, "write: %s", uv_strerror(status));
		return;
	}
	kheo_session_sent(c->s, c->wbuf.len);
	arm(c);
	pump(c);
}

/* Take the next step: write what the session has, feed it what came,
 * or wait for the peer. */
static void pump(struct conn *c)
{
	const uint8_t *p;
	size_t n;
	kheo_session_state st;
	int rc;

	if (c->working || c->writing || c->closing)
		return;
	if (c->ending) {
		conn_close(c);
		return;
	}
	if (!c->s)
		return; /* connecting, or JOB_OPEN runs */
	kheo_session_output(c->s, &p, &n);
	if (n) {
		c->wbuf = uv_buf_init((char *)(uintptr_t)p, (unsigned)n);
		c->wreq.data = c;
		if ((rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp,
				   &c->wbuf, 1, on_write)) < 0) {
			end(c, "write: %s", uv_strerror(rc));
			return;
		}
		c->writing = 1;
		return;
	}
	st = kheo_session_status(c->s, NULL);
	if (st == KHEO_SESSION_DONE) {
		end(c, NULL);
		return;
	}
	if (st == KHEO_SESSION_FAILED) {
		end(c, "%s", kheo_session_error(c->s));
		return;
	}
	c->phase = st;
	if (c->in_len) {
		c->feed = c->in;
		c->feed_len = c->in_len;
		c->in = NULL;
		c->in_len = c->in_cap = 0;
		queue(c, JOB_INPUT);
		start_reading(c); /* room again for what comes meanwhile */
		return;
	}
	if (c->eof) {
		end(c, "the peer closed the connection");
		return;
	}
	start_reading(c);
}

/* ------------------------------------------------------- connections */

static struct conn *conn_new(int outgoing, const char *expect)
{
	struct conn *c = calloc(1, sizeof(*c));
	kheo_session_options o = KHEO_SESSION_OPTIONS_INIT;

	if (!c)
		return NULL;
	c->outgoing = outgoing;
	if (expect)
		strf(c->expect, sizeof(c->expect), "%s", expect);
	o.initiator = outgoing;
	o.expect_peer = c->expect[0] ? c->expect : NULL;
	o.chunk_bytes = srv.chunk_bytes;
	o.max_changesets = srv.max_changesets;
	/* what a device (any peer that connects) may push: blobs this side
	 * fetches from it */
	if (!outgoing)
		o.blob_bytes_max = srv.device_blob_bytes;
	c->opts = o;
	c->t0 = uv_now(srv.loop);
	if (srv.session_timeout)
		c->deadline = c->t0 + 1000 * (uint64_t)srv.session_timeout;
	c->hs_deadline = c->t0 + 1000 * (uint64_t)(srv.connect_timeout +
						   srv.handshake_timeout);
	uv_tcp_init(srv.loop, &c->tcp);
	uv_timer_init(srv.loop, &c->timer);
	c->timer_on = 1;
	c->tcp.data = c->timer.data = c->work.data = c->creq.data = c;
	c->next = srv.head;
	if (srv.head)
		srv.head->prev = c;
	srv.head = c;
	srv.n++;
	return c;
}

/* Sessions open from the address of `new`, not counting it. */
static unsigned from_peer(const struct conn *new)
{
	const struct conn *c;
	unsigned n = 0;

	for (c = srv.head; c; c = c->next)
		if (c != new && !c->outgoing && !c->refused && !c->closing &&
		    strcmp(c->ip, new->ip) == 0)
			n++;
	return n;
}

static void on_accept(uv_stream_t *l, int status)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	struct conn *c;
	unsigned same;

	if (status < 0) {
		log_warn("accept: %s", uv_strerror(status));
		return;
	}
	/* Without memory we cannot take the connection off the backlog;
	 * libuv then pauses accepting until the next one.  Rare enough. */
	if (!(c = conn_new(0, NULL))) {
		log_warn("accept: out of memory");
		return;
	}
	if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0 ||
	    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0) {
		c->refused = 1;
		conn_close(c);
		return;
	}
	name_peer(c, (struct sockaddr *)&ss);
	c->connected = 1;
	c->hs_deadline = c->t0 + 1000 * (uint64_t)srv.handshake_timeout;
	if (srv.sessions >= srv.max_sessions) {
		c->refused = 1;
		log_warn("refused %s: %u sessions open (max_sessions %u)",
			c->peer, srv.sessions, srv.max_sessions);
		conn_close(c);
		return;
	}
	if ((same = from_peer(c)) >= srv.max_per_peer) {
		c->refused = 1;
		log_warn("refused %s: %u sessions from %s open "
			"(max_sessions_per_peer %u)", c->peer, same, c->ip,
			srv.max_per_peer);
		conn_close(c);
		return;
	}
	srv.sessions++;
	log_debug("session %s: connected (%u open)", c->peer, srv.sessions);
	uv_tcp_nodelay(&c->tcp, 1);
	uv_tcp_keepalive(&c->tcp, 1, 60);
	start_reading(c);
	arm(c);
	queue(c, JOB_OPEN);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->data;

	if (c->closing)
		return;
	if (status < 0) {
		end(c, "connect: %s", uv_strerror(status));
		return;
	}
	c->connected = 1;
	c->hs_deadline = uv_now(srv.loop) +
		1000 * (uint64_t)srv.handshake_timeout;
	uv_tcp_nodelay(&c->tcp, 1);
	uv_tcp_keepalive(&c->tcp, 1, 60);
	start_reading(c);
	arm(c);
	queue(c, JOB_OPEN);
}

int server_connect(const struct sockaddr *addr, const char *name,
	const char *expect, conn_done_fn done, void *payload)
{
	struct conn *c;
	int rc;

	if (srv.stopping || !(c = conn_new(1, expect)))
		return -1;
	strf(c->peer, sizeof(c->peer), "%s", name);
	c->done = done;
	c->payload = payload;
	arm(c);
	if ((rc = uv_tcp_connect(&c->creq, &c->tcp, addr, on_connect)) < 0)
		end(c, "connect: %s", uv_strerror(rc));
	return 0;
}

/* ------------------------------------------------------- the listener */

void server_reconf(const struct conf *c)
{
	srv.idle_timeout = c->idle_timeout;
	srv.connect_timeout = c->connect_timeout;
	srv.session_timeout = c->session_timeout;
	srv.handshake_timeout = c->handshake_timeout;
	srv.shutdown_grace = c->shutdown_grace;
	srv.max_sessions = c->max_sessions;
	srv.max_per_peer = c->max_sessions_per_peer;
	srv.max_buffer = c->max_buffer;
	srv.chunk_bytes = c->chunk_bytes;
	srv.max_changesets = c->max_changesets;
	strf(srv.audit_mirror, sizeof(srv.audit_mirror), "%s",
		c->audit_mirror);
	srv.device_blob_bytes = c->device_blob_bytes;
}

int server_start(uv_loop_t *loop, const struct conf *c,
	const char *passphrase, char *err, size_t len)
{
	struct sockaddr_storage ss;
	char host[CONF_ADDR_MAX], port[8];
	int rc;

	srv.loop = loop;
	if (!pool.lock_ready) {
		if ((rc = uv_mutex_init(&pool.lock)) < 0) {
			strf(err, len, "mutex: %s", uv_strerror(rc));
			return -1;
		}
		pool.lock_ready = 1;
	}
	strf(srv.dir, sizeof(srv.dir), "%s", c->dir);
	srv.pass = passphrase;
	server_reconf(c);
	uv_timer_init(loop, &srv.grace);
	srv.grace_open = 1;
	if (!c->listen[0])
		return 0;
	if (conf_hostport(c->listen, host, sizeof(host), port,
			  sizeof(port)) < 0 ||
	    (uv_ip4_addr(host, atoi(port), (struct sockaddr_in *)&ss) < 0 &&
	     uv_ip6_addr(host, atoi(port), (struct sockaddr_in6 *)&ss) < 0)) {
		strf(err, len, "listen %s: not a numeric ADDR:PORT",
			c->listen);
		return -1;
	}
	uv_tcp_init(loop, &srv.listener);
	if ((rc = uv_tcp_bind(&srv.listener, (struct sockaddr *)&ss, 0)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)&srv.listener, 511,
			    on_accept)) < 0) {
		strf(err, len, "listen %s: %s", c->listen,
			uv_strerror(rc));
		uv_close((uv_handle_t *)&srv.listener, NULL);
		return -1;
	}
	srv.listening = 1;
	return 0;
}

unsigned server_sessions(void)
{
	return srv.n;
}

static void cut_all(void)
{
	struct conn *c, *next;

	for (c = srv.head; c; c = next) {
		next = c->next; /* end() never frees at once */
		if (!c->ending)
			end(c, "cut: kheod is stopping");
	}
}

static void on_grace(uv_timer_t *t)
{
	(void)t;
	log_info("stopping: cutting %u sessions still open after %u s "
		"(shutdown_grace)", srv.n, srv.shutdown_grace);
	cut_all();
}

void server_stop(void)
{
	if (srv.stopping) {
		log_info("stopping now: cutting %u sessions", srv.n);
		cut_all();
		return;
	}
	srv.stopping = 1;
	if (srv.listening) {
		uv_close((uv_handle_t *)&srv.listener, NULL);
		srv.listening = 0;
	}
	if (srv.n == 0) {
		pool_drain();
		if (srv.grace_open) {
			srv.grace_open = 0;
			uv_close((uv_handle_t *)&srv.grace, NULL);
		}
		return;
	}
	log_info("stopping: %u sessions in flight, %u s to finish "
		"(shutdown_grace)", srv.n, srv.shutdown_grace);
	if (srv.shutdown_grace == 0)
		cut_all();
	else
		uv_timer_start(&srv.grace, on_grace,
			1000 * (uint64_t)srv.shutdown_grace, 0);
}
