/*
 * conf.c - kheod.conf and the command-line flags that override it.
 *
 * The file is read with inih: "key = value" lines, "#" or ";" comments, no
 * sections (kheod.conf(5) lists the keys).  A configuration is built whole
 * (defaults, then the file, then the flags) and handed over only when every
 * line was understood, so a reload (SIGHUP) with a typo leaves the running
 * daemon as it was.  Values are checked here, not where they are used: a
 * duration is "90", "90s", "5m" or "2h"; a size "65536", "64k" or "1m".
 * Not here: what the values do (server.c, upstream.c).
 */
#include "daemon.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parse {
	struct conf *c;
	char err[256];   /* the first bad line's message */
};

static void defaults(struct conf *c)
{
	const char *home = getenv("KHEO_HOME");

	memset(c, 0, sizeof(*c));
	strf(c->dir, sizeof(c->dir), "%s",
		home && *home ? home : "./kheo-data");
	strf(c->listen, sizeof(c->listen), "0.0.0.0:%s", KHEOD_PORT);
	c->window_from = 60;     /* 01:00-05:00 */
	c->window_to = 300;
	c->retry_min = 30;
	c->retry_max = 1800;
	c->connect_timeout = 15;
	c->idle_timeout = 120;
	c->handshake_timeout = 30;
	c->session_timeout = 4 * 3600;
	c->shutdown_grace = 10;
	c->max_sessions = 1000;
	c->max_sessions_per_peer = 16;
	c->max_buffer = 128 * 1024;
	c->log_target = LOG_STDERR;
	c->log_level = KHEO_LOG_INFO;
}

/* An unsigned number with an optional unit suffix: units[i] names the
 * multiplier mult[i].  -1 when it is not one or overflows. */
static int number(const char *s, const char *units, const uint64_t *mult,
	uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;
	const char *u;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	if (*end) {
		if (end[1] || !(u = strchr(units, tolower((unsigned char)*end))))
			return -1;
		if (v > max / mult[u - units])
			return -1;
		v *= mult[u - units];
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

static int duration(const char *s, unsigned *out)
{
	static const uint64_t mult[] = { 1, 60, 3600 };
	uint64_t v;

	if (number(s, "smh", mult, 30 * 24 * 3600, &v) < 0)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int count(const char *s, uint64_t max, uint64_t *out)
{
	return number(s, "", NULL, max, out);
}

static int size(const char *s, uint64_t max, uint64_t *out)
{
	static const uint64_t mult[] = { 1024, 1024 * 1024 };

	return number(s, "km", mult, max, out);
}

/* "HH:MM" -> minutes after midnight. */
static int clock_time(const char *s, int *out)
{
	int h, m;

	if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
	    s[2] != ':' || !isdigit((unsigned char)s[3]) ||
	    !isdigit((unsigned char)s[4]))
		return -1;
	h = (s[0] - '0') * 10 + (s[1] - '0');
	m = (s[3] - '0') * 10 + (s[4] - '0');

	if (h > 23 || m > 59)
		return -1;
	*out = h * 60 + m;
	return 0;
}

static int window(const char *s, int *from, int *to)
{
	if (strcmp(s, "off") == 0) {
		*from = *to = -1;
		return 0;
	}
	if (strlen(s) != 11 || s[5] != '-' || clock_time(s, from) < 0 ||
	    clock_time(s + 6, to) < 0)
		return -1;
	return 0;
}

int conf_hostport(const char *s, char *host, size_t hostlen, char *port,
	size_t portlen)
{
	const char *h = s, *colon, *p = NULL;
	size_t n;
	char *end;
	long v;

	if (*s == '[') {
		if (!(colon = strchr(s, ']')))
			return -1;
		h = s + 1;
		n = (size_t)(colon - h);
		if (colon[1] == ':')
			p = colon + 2;
		else if (colon[1])
			return -1;
	} else if ((colon = strchr(s, ':'))) {
		if (strchr(colon + 1, ':'))
			return -1; /* IPv6 needs its brackets */
		n = (size_t)(colon - s);
		p = colon + 1;
	} else {
		n = strlen(s);
	}
	if (n == 0 || n >= hostlen)
		return -1;
	memcpy(host, h, n);
	host[n] = '\0';
	if (!p)
		p = KHEOD_PORT;
	v = strtol(p, &end, 10);
	if (!isdigit((unsigned char)*p) || *end || v < 1 || v > 65535)
		return -1;
	strf(port, portlen, "%ld", v);
	return 0;
}

static int listen_addr(const char *s)
{
	char host[CONF_ADDR_MAX], port[8];
	unsigned char buf[16];

	if (conf_hostport(s, host, sizeof(host), port, sizeof(port)) < 0)
		return -1;
	if (inet_pton(AF_INET, host, buf) != 1 &&
	    inet_pton(AF_INET6, host, buf) != 1)
		return -1;
	return 0;
}

static int hex_key(const char *s, char *out)
{
	size_t i;

	if (strlen(s) != KHEO_KEY_HEX)
		return -1;
	for (i = 0; i < KHEO_KEY_HEX; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return -1;
		out[i] = (char)tolower((unsigned char)s[i]);
	}
	out[KHEO_KEY_HEX] = '\0';
	return 0;
}

static int copy(char *dst, size_t len, const char *v)
{
	if (strlen(v) >= len)
		return -1;
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

/* Apply one key; NULL, or what a good value looks like. */
static const char *set(struct conf *c, const char *key, const char *v)
{
	uint64_t n;

#define IS(name) (strcmp(key, name) == 0)
	if (IS("dir"))
		return !*v || copy(c->dir, sizeof(c->dir), v) ?
			"a directory path" : NULL;
	if (IS("listen")) {
		if (strcmp(v, "off") == 0) {
			c->listen[0] = '\0';
			return NULL;
		}
		return listen_addr(v) < 0 ||
		       copy(c->listen, sizeof(c->listen), v) ?
			"ADDR:PORT with a numeric address "
			"(0.0.0.0:7878, [::]:7878), or off" : NULL;
	}
	if (IS("upstream")) {
		char host[CONF_ADDR_MAX], port[8];

		if (!*v || strcmp(v, "off") == 0) {
			c->upstream[0] = '\0';
			return NULL;
		}
		return conf_hostport(v, host, sizeof(host), port,
				     sizeof(port)) < 0 ||
		       copy(c->upstream, sizeof(c->upstream), v) ?
			"HOST:PORT, or off" : NULL;
	}
	if (IS("upstream_key")) {
		if (!*v) {
			c->upstream_key[0] = '\0';
			return NULL;
		}
		return hex_key(v, c->upstream_key) < 0 ?
			"the upstream node's key, 64 hex digits" : NULL;
	}
	if (IS("nightly"))
		return window(v, &c->window_from, &c->window_to) < 0 ?
			"HH:MM-HH:MM (local time), or off" : NULL;
	if (IS("retry_min"))
		return duration(v, &c->retry_min) < 0 || !c->retry_min ?
			"a duration above 0 (90, 90s, 5m, 2h)" : NULL;
	if (IS("retry_max"))
		return duration(v, &c->retry_max) < 0 || !c->retry_max ?
			"a duration above 0 (90, 90s, 5m, 2h)" : NULL;
	if (IS("connect_timeout"))
		return duration(v, &c->connect_timeout) < 0 ||
		       !c->connect_timeout ?
			"a duration above 0 (90, 90s, 5m, 2h)" : NULL;
	if (IS("idle_timeout"))
		return duration(v, &c->idle_timeout) < 0 || !c->idle_timeout ?
			"a duration above 0 (90, 90s, 5m, 2h)" : NULL;
	if (IS("handshake_timeout"))
		return duration(v, &c->handshake_timeout) < 0 ||
		       !c->handshake_timeout ?
			"a duration above 0 (90, 90s, 5m, 2h)" : NULL;
	if (IS("session_timeout"))
		return duration(v, &c->session_timeout) < 0 ?
			"a duration (90, 90s, 5m, 2h; 0 for none)" : NULL;
	if (IS("shutdown_grace"))
		return duration(v, &c->shutdown_grace) < 0 ?
			"a duration (90, 90s, 5m, 2h; 0 to cut at once)" : NULL;
	if (IS("max_sessions") || IS("max_sessions_per_peer")) {
		if (count(v, 100000, &n) < 0 || n == 0)
			return "a number from 1 to 100000";
		*(IS("max_sessions") ? &c->max_sessions :
		  &c->max_sessions_per_peer) = (unsigned)n;
		return NULL;
	}
	if (IS("max_buffer")) {
		if (size(v, 64 << 20, &n) < 0 || n < 4096)
			return "a size from 4k to 64m";
		c->max_buffer = (size_t)n;
		return NULL;
	}
	if (IS("chunk_bytes")) {
		if (size(v, 64 << 20, &n) < 0)
			return "a size up to 64m (0: the library's default)";
		c->chunk_bytes = (size_t)n;
		return NULL;
	}
	if (IS("max_changesets"))
		return count(v, UINT64_MAX, &c->max_changesets) < 0 ?
			"a number (0: the library's default)" : NULL;
	if (IS("device_blob_bytes"))
		return size(v, (uint64_t)1 << 40, &c->device_blob_bytes) < 0 ?
			"a size such as 20m (0: no cap)" : NULL;
	if (IS("log")) {
		if (strcmp(v, "stderr") == 0)
			c->log_target = LOG_STDERR;
		else if (strcmp(v, "syslog") == 0)
			c->log_target = LOG_SYSLOG;
		else
			return "stderr or syslog";
		return NULL;
	}
	if (IS("log_level")) {
		if (strcmp(v, "debug") == 0)
			c->log_level = KHEO_LOG_DEBUG;
		else if (strcmp(v, "info") == 0)
			c->log_level = KHEO_LOG_INFO;
		else if (strcmp(v, "warning") == 0 || strcmp(v, "warn") == 0)
			c->log_level = KHEO_LOG_WARN;
		else
			return "debug, info or warning";
		return NULL;
	}
	if (IS("user"))
		return copy(c->user, sizeof(c->user), v) ?
			"a user name" : NULL;
	if (IS("passphrase_file"))
		return copy(c->passphrase_file, sizeof(c->passphrase_file),
			    v) ? "a file path" : NULL;
	if (IS("audit_mirror")) {
		if (strcmp(v, "off") == 0)
			v = "";
		else if (v[0] != '/')
			return "an absolute folder path, or off";
		return copy(c->audit_mirror, sizeof(c->audit_mirror), v) ?
			"an absolute folder path, or off" : NULL;
	}
#undef IS
	return "";
}

static int on_line(void *user, const char *section, const char *key,
	const char *value)
{
	struct parse *p = user;
	const char *want;

	if (p->err[0])
		return 0; /* report the first bad line only */
	if (*section) {
		strf(p->err, sizeof(p->err), "[%s]: kheod.conf has no "
			"sections", section);
		return 0;
	}
	if (!(want = set(p->c, key, value)))
		return 1;
	if (*want)
		strf(p->err, sizeof(p->err), "%s: \"%s\": want %s", key,
			value, want);
	else
		strf(p->err, sizeof(p->err), "unknown key \"%s\"", key);
	return 0;
}

int conf_load(struct conf *c, const char *file,
	const struct conf_flag *flags, size_t nflags, char *err, size_t len)
{
	struct parse p = { c, "" };
	const char *want;
	size_t i;
	int line;

	defaults(c);
	if (file && (line = ini_parse(file, on_line, &p)) != 0) {
		if (line < 0)
			strf(err, len, "%s: %s", file, line == -1 ?
				"cannot read it" : "out of memory");
		else if (p.err[0])
			strf(err, len, "%s:%d: %s", file, line, p.err);
		else
			strf(err, len, "%s:%d: not a \"key = value\" "
				"line (or longer than 200 bytes)", file, line);
		return -1;
	}
	for (i = 0; i < nflags; i++) {
		if ((want = set(c, flags[i].key, flags[i].value))) {
			strf(err, len, "%s \"%s\": want %s",
				flags[i].flag, flags[i].value, want);
			return -1;
		}
	}
	if (c->retry_max < c->retry_min) {
		strf(err, len, "retry_max (%u s) is below retry_min "
			"(%u s)", c->retry_max, c->retry_min);
		return -1;
	}
	return 0;
}
