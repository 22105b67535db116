/*
 * log.c - kheod's log lines, to stderr or to syslog.
 *
 * One line per event, in words an operator can grep: "refused", "failed",
 * "done", with the peer address.  Lines come from the loop thread and,
 * through libkheo's log callback, from the thread pool, so the target and
 * the level are atomics and each line is written with one call (stdio
 * locks the stream; syslog(3) is thread-safe).  No timestamps on stderr:
 * under systemd the journal adds them, and in a terminal they are noise.
 * Not a logging framework: no files, no rotation (the journal or syslogd
 * does that).
 */
#include "daemon.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <syslog.h>

static atomic_int target = LOG_STDERR;
static atomic_int threshold = KHEO_LOG_INFO;
static atomic_int syslog_open;

void log_setup(int to, int level)
{
	if (to == LOG_SYSLOG && !atomic_exchange(&syslog_open, 1))
		openlog("kheod", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	atomic_store(&threshold, level);
	atomic_store(&target, to);
}

/* Levels are kheo.h's, plus one for the line fatal() writes. */
enum { LEVEL_FATAL = KHEO_LOG_WARN + 1 };

static void vlog(int level, const char *fmt, va_list ap)
{
	static const char *const prefix[] = { "debug: ", "", "warning: ", "" };
	static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
	char line[1024];

	if (level < atomic_load(&threshold))
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	if (atomic_load(&target) == LOG_SYSLOG)
		syslog(prio[level], "%s", line);
	else
		fprintf(stderr, "kheod: %s%s\n", prefix[level], line);
}

void log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(KHEO_LOG_DEBUG, fmt, ap);
	va_end(ap);
}

void log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(KHEO_LOG_INFO, fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(KHEO_LOG_WARN, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LEVEL_FATAL, fmt, ap);
	va_end(ap);
	exit(1);
}

void log_kheo(int level, const char *msg, void *payload)
{
	(void)payload;
	if (level < KHEO_LOG_DEBUG || level > KHEO_LOG_WARN)
		level = KHEO_LOG_WARN;
	if (level == KHEO_LOG_WARN)
		log_warn("libkheo: %s", msg);
	else if (level == KHEO_LOG_INFO)
		log_info("libkheo: %s", msg);
	else
		log_debug("libkheo: %s", msg);
}
