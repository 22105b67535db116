/*
 * daemon.h - what kheod's files share: the configuration, the log module,
 * the network server and the upstream scheduler.
 *
 * kheod is the hub and province server (DESIGN.md, Nodes and tiers).  It
 * moves bytes between sockets and libkheo's sync sessions and decides when
 * to call the province; everything about data (the secure channel, what to
 * send, receipt) is the library's, reached only through kheo.h.  No SQL
 * here, and no internal header of client-core.
 *
 * One job per file: main.c (command line, signals, privileges, the loop),
 * conf.c (kheod.conf and flags), log.c (stderr or syslog), server.c
 * (connections around sessions, incoming and outgoing), upstream.c (the
 * nightly window, retries, the on-demand trigger and its control socket).
 */
#ifndef KHEOD_H
#define KHEOD_H

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "kheo.h"

#define KHEOD_PORT "7878"          /* the port when an address has none */
#define KHEOD_SOCK "kheod.sock"    /* the control socket, in the data dir */

/* snprintf for messages, where cutting a long path or peer message
 * short is the right thing (and GCC need not warn that it may happen). */
static inline void __attribute__((format(printf, 3, 4)))
strf(char *dst, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(dst, len, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------- log.c */

enum { LOG_STDERR = 0, LOG_SYSLOG = 1 };

/* Where lines go and the lowest level written (KHEO_LOG_DEBUG, _INFO,
 * _WARN).  Safe to call again (SIGHUP); lines may come from the thread
 * pool meanwhile. */
void log_setup(int target, int level);
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Log at warn level and exit 1: for start-up failures only. */
_Noreturn void fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
/* libkheo's log callback (kheo_open_options.log). */
void log_kheo(int level, const char *msg, void *payload);

/* ------------------------------------------------------------ conf.c */

#define CONF_ADDR_MAX 256

struct conf {
	char dir[PATH_MAX];           /* the node's data directory */
	char listen[CONF_ADDR_MAX];   /* ADDR:PORT; "" serves no device */
	char upstream[CONF_ADDR_MAX]; /* HOST:PORT; "" for none */
	char upstream_key[KHEO_KEY_HEX + 1]; /* "" for any chained to root */
	int window_from, window_to;   /* minutes after local midnight; -1:
					 on demand only */
	unsigned retry_min, retry_max;          /* seconds */
	unsigned connect_timeout, idle_timeout; /* seconds */
	unsigned handshake_timeout;             /* seconds */
	unsigned session_timeout, shutdown_grace; /* seconds; 0: none */
	unsigned max_sessions, max_sessions_per_peer;
	size_t max_buffer;            /* unprocessed bytes per connection */
	size_t chunk_bytes;           /* kheo_session_options */
	uint64_t max_changesets;      /* kheo_session_options */
	uint64_t device_blob_bytes;   /* blob bytes a connecting peer may push
					 per session (blob_bytes_max); 0: no cap */
	int log_target, log_level;
	char user[64];                /* drop to this user when started as root */
	char passphrase_file[PATH_MAX];
	char audit_mirror[PATH_MAX];  /* "" for none */
};

/* A command-line flag ("--listen"), setting a key of the file after the
 * file was read, so that it wins. */
struct conf_flag {
	const char *flag, *key, *value;
};

/* Defaults, then FILE (NULL: none), then the flags.  -1 with a message
 * in err (naming the file and line) on any unknown key or bad value. */
int conf_load(struct conf *c, const char *file,
	const struct conf_flag *flags, size_t nflags, char *err, size_t len);

/* Split "host:port", "[v6]:port" or "host" (port KHEOD_PORT). */
int conf_hostport(const char *s, char *host, size_t hostlen, char *port,
	size_t portlen);

/* ---------------------------------------------------------- server.c */

/* The end of an outgoing session: ok 1 when DONE; `line` says what
 * happened (the same words as the log line), borrowed for the call. */
typedef void (*conn_done_fn)(int ok, const char *line, void *payload);

/* Listen on c->listen (unless empty); sessions open c->dir with
 * `passphrase` (may be NULL; borrowed for the daemon's life).  -1 with a
 * message in err when the address cannot be bound. */
int server_start(uv_loop_t *loop, const struct conf *c,
	const char *passphrase, char *err, size_t len);
/* Take the limits and timeouts of a reloaded configuration. */
void server_reconf(const struct conf *c);
/* Stop accepting; sessions in flight get c->shutdown_grace seconds, then
 * are cut (never in the middle of database work).  A second call cuts at
 * once.  The loop ends when the last one is closed. */
void server_stop(void);
/* Sessions open, both directions. */
unsigned server_sessions(void);

/* Connect to `addr` (named `name` in logs) and run a session as the
 * initiator, expecting the peer key `expect` (NULL or "": any); `done` is
 * called once, whatever happens.  -1 when it could not even start. */
int server_connect(const struct sockaddr *addr, const char *name,
	const char *expect, conn_done_fn done, void *payload);

/* -------------------------------------------------------- upstream.c */

/* -1 with a message when a kheod answers on DIR/kheod.sock already. */
int upstream_probe(const char *dir, char *err, size_t len);

/* Start the schedule (if c->upstream is set) and the control socket
 * DIR/kheod.sock.  -1 with a message when another kheod serves DIR. */
int upstream_start(uv_loop_t *loop, const struct conf *c, char *err,
	size_t len);
void upstream_reconf(const struct conf *c);
/* Sync with the upstream now (SIGUSR1, `kheo sync --now`). */
void upstream_now(const char *why);
/* Close the control socket and the timers; answer waiting clients. */
void upstream_stop(void);

#endif
