/*
 * bench_audit.c - the audit mirror's export, verify and replay rates and
 * peak memory at two history sizes (issue 6's benchmark).
 *
 *   bench_audit TRACE.jsonl SCRATCH_DIR
 *
 * The history: every device of the trace edits the records it created (as
 * bench_core does: no sync between devices here) and seals after every
 * edit, so that each trace edit is one changeset; a hub receives them all
 * in the order they were sealed, in applies of 1,000.  The hub first holds
 * half of them: export (a new mirror), verify and replay (the whole
 * history, by received time) are measured; then it receives the rest and
 * the three are measured again, the export appending.  Each measurement is
 * a fresh process (this program run again with --child), so that its peak
 * RSS is its own: flat memory shows as equal figures at both sizes.
 *
 * Figures only, no pass/fail on time.  Exits 1 if anything fails or the
 * mirror does not verify.
 */
#include "kheo.h"
#include "proto.h"
#include "trace.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_audit: %s: %s\n", what, msg);
	exit(1);
}

/* The trace's edits (sync lines are not needed: each edit is sealed). */
/* One trace line as a local edit (trace.h); 1 if it changed something. */
static int edit(kheo_db *db, const trace_line *l)
{
	int n = trace_edit(db, l->j);

	if (n < 0)
		die("edit", kheo_errmsg(db));
	return n;
}

static kheo_db *make_node(const char *dir, const char *name,
	kheo_node_role role)
{
	kheo_init_options init = KHEO_INIT_OPTIONS_INIT;
	char path[1024];
	kheo_db *db;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	init.role = role;
	init.unit = "dak-nong";
	if (kheo_db_init(&db, path, &init, NULL) < 0)
		die("init", kheo_errmsg(db));
	return db;
}

/* ------------------------------------------------------------ children */

/* VmHWM, not getrusage's ru_maxrss: that one is kept across exec, and
 * would count the parent's memory that fork copied. */
static double peak_mb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char text[256];
	double kb = 0;

	while (f && fgets(text, sizeof(text), f))
		if (strncmp(text, "VmHWM:", 6) == 0)
			kb = atof(text + 6);
	if (f)
		fclose(f);
	return kb / 1024.0;
}

/* user + system CPU seconds of this process: the machine's cores are
 * shared, so wall time alone says as much about the neighbours as about
 * the code; a second core used shows as CPU time above wall time */
static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void report(const char *what, size_t n, double t, const char *note)
{
	printf("  %-8s %8zu changesets  %8.2f s  %9.0f changesets/s  "
	       "CPU %7.2f s  peak RSS %6.1f MB%s\n", what, n, t,
		t > 0 ? (double)n / t : 0, cpu_s(), peak_mb(), note);
	fflush(stdout);
}

/* One measurement, in a process of its own. */
static int child(const char *what, const char *dbdir, const char *gitdir)
{
	kheo_audit_stats st;
	double t = now_s();
	int err;

	memset(&st, 0, sizeof(st));
	if (strcmp(what, "export") == 0) {
		struct stat sb;
		int fresh = stat(gitdir, &sb) != 0;
		kheo_db *db;

		if (kheo_db_open(&db, dbdir, NULL) < 0)
			die(dbdir, kheo_errmsg(db));
		if ((err = kheo_audit_export(db, gitdir, &st)) < 0)
			die("export", kheo_errmsg(db));
		kheo_db_close(db);
		t = now_s() - t;
		report("export", st.commits, t, fresh ? " (a new mirror)"
						       : " (appended)");
	} else {
		kheo_audit *a;

		if (kheo_audit_open(&a, gitdir, NULL) < 0)
			die("open", kheo_audit_errmsg(a));
		if (strcmp(what, "verify") == 0)
			err = kheo_audit_verify(a, &st);
		else
			err = kheo_audit_replay(a, KHEO_REPLAY_RECEIVED,
				INT64_MAX / 2, NULL, NULL, &st);
		if (err < 0 || st.errors)
			die(what, kheo_audit_errmsg(a));
		kheo_audit_free(a);
		t = now_s() - t;
		report(what, st.commits, t, "");
	}
	return 0;
}

static void run_child(const char *self, const char *what, const char *dbdir,
	const char *gitdir)
{
	pid_t pid;
	int status;

	fflush(stdout);
	if ((pid = fork()) < 0)
		die("fork", "failed");
	if (pid == 0) {
		execl(self, self, "--child", what, dbdir, gitdir, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		die(what, "the measuring process failed");
}

/* ------------------------------------------------------------- history */

typedef struct device {
	char name[32];
	kheo_db *db;
	char **ids;      /* records it created */
	size_t nids;
	size_t sealed;   /* changesets it sealed */
} device;

static int owns(const device *d, const char *id)
{
	size_t i;

	for (i = 0; i < d->nids; i++)
		if (strcmp(d->ids[i], id) == 0)
			return 1;
	return 0;
}

static void apply_range(kheo_db *hub, const uint8_t **frames,
	const size_t *lens, size_t from, size_t to)
{
	kheo_apply_stats st;
	size_t i, n;

	for (i = from; i < to; i += n) {
		n = to - i < 1000 ? to - i : 1000;
		memset(&st, 0, sizeof(st));
		if (kheo_apply(hub, frames + i, lens + i, n, &st) < 0)
			die("apply", kheo_errmsg(hub));
		if (st.rejected || st.held)
			die("apply", "changesets held or rejected");
	}
}

int main(int argc, char **argv)
{
	device devs[256];
	size_t n, ndev = 0, i, j, total = 0, half;
	size_t *order = NULL, *lens;   /* order: the device of each seal */
	const uint8_t **frames;
	kheo_bundle **bundles;
	uint8_t **files;
	size_t *next;
	char hubdir[1024], gitdir[1024], self[1024];
	ssize_t selflen;
	kheo_db *hub;
	trace_line *l;
	double t;

	if (argc == 5 && strcmp(argv[1], "--child") == 0)
		return child(argv[2], argv[3], argv[4]);
	if (argc != 3) {
		fprintf(stderr, "usage: bench_audit TRACE.jsonl SCRATCH_DIR\n");
		return 2;
	}
	if (sodium_init() < 0)
		return 1;
	if ((selflen = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0)
		die("/proc/self/exe", "unreadable");
	self[selflen] = '\0';
	mkdir(argv[2], 0700);
	l = trace_load(argv[1], &n);

	/* every device seals after each of its edits */
	t = now_s();
	memset(devs, 0, sizeof(devs));
	for (i = 0; i < n; i++) {
		device *d = NULL;
		size_t sealed = 0;

		for (j = 0; j < ndev; j++)
			if (strcmp(devs[j].name, l[i].dev) == 0)
				d = &devs[j];
		if (!d) {
			char node[64], *s;

			if (ndev == 256)
				die("bench", "too many devices");
			d = &devs[ndev++];
			snprintf(d->name, sizeof(d->name), "%s", l[i].dev);
			snprintf(node, sizeof(node), "dev-%s", l[i].dev);
			for (s = node; *s; s++)
				if (*s == '/')
					*s = '-';
			d->db = make_node(argv[2], node, KHEO_NODE_DEVICE);
			kheo_batch_begin(d->db);
		}
		if (l[i].op == 'p') {
			d->ids = realloc(d->ids, (d->nids + 1) * sizeof(char *));
			d->ids[d->nids++] = strdup(l[i].id);
		} else if (!owns(d, l[i].id)) {
			continue; /* another device's record: no sync here */
		}
		if (!edit(d->db, &l[i]))
			continue;
		if (kheo_commit(d->db, &sealed) < 0)
			die("seal", kheo_errmsg(d->db));
		if (sealed != 1)
			die("seal", "one edit, not one changeset");
		if (++d->sealed % 1000 == 0 && (kheo_batch_commit(d->db) < 0 ||
						   kheo_batch_begin(d->db) < 0))
			die("batch", kheo_errmsg(d->db));
		if (!(order = realloc(order, (total + 1) * sizeof(*order))))
			die("bench", "out of memory");
		order[total++] = (size_t)(d - devs);
	}
	/* each device's changesets in chain order, from its bundle; the
	 * hub receives them in the order they were sealed */
	bundles = calloc(ndev, sizeof(*bundles));
	files = calloc(ndev, sizeof(*files));
	next = calloc(ndev, sizeof(*next));
	frames = calloc(total ? total : 1, sizeof(*frames));
	lens = calloc(total ? total : 1, sizeof(*lens));
	for (j = 0; j < ndev; j++) {
		char path[1024];
		FILE *f;
		long size;
		uint8_t *buf;

		kheo_batch_commit(devs[j].db);
		snprintf(path, sizeof(path), "%s/dev%zu.bundle", argv[2], j);
		if (kheo_bundle_create(devs[j].db, path, NULL, NULL) < 0)
			die("bundle", kheo_errmsg(devs[j].db));
		if (!(f = fopen(path, "rb")) || fseek(f, 0, SEEK_END) < 0 ||
		    (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0 ||
		    !(buf = malloc((size_t)size + 1)) ||
		    fread(buf, 1, (size_t)size, f) != (size_t)size)
			die(path, "unreadable");
		fclose(f);
		remove(path);
		/* the bundle's frames point into buf: kept to the end */
		files[j] = buf;
		if (kheo_bundle_decode(&bundles[j], buf, (size_t)size, NULL) < 0)
			die("bundle", "decode");
		if (bundles[j]->nframes != devs[j].sealed)
			die("bundle", "not every sealed changeset");
		kheo_db_close(devs[j].db);
		for (i = 0; i < devs[j].nids; i++)
			free(devs[j].ids[i]);
		free(devs[j].ids);
	}
	for (i = 0; i < total; i++) {
		size_t k = next[order[i]]++;

		frames[i] = bundles[order[i]]->frames[k];
		lens[i] = bundles[order[i]]->lens[k];
	}
	printf("audit mirror: %zu changesets (one per trace edit) from %zu "
	       "devices, made in %.1f s\n", total, ndev, now_s() - t);

	snprintf(hubdir, sizeof(hubdir), "%s/hub", argv[2]);
	snprintf(gitdir, sizeof(gitdir), "%s/mirror.git", argv[2]);
	half = total / 2;
	hub = make_node(argv[2], "hub", KHEO_NODE_HUB);
	apply_range(hub, frames, lens, 0, half);
	kheo_db_close(hub);
	printf(" history of %zu changesets:\n", half);
	run_child(self, "export", hubdir, gitdir);
	run_child(self, "verify", hubdir, gitdir);
	run_child(self, "replay", hubdir, gitdir);

	if (kheo_db_open(&hub, hubdir, NULL) < 0)
		die(hubdir, kheo_errmsg(hub));
	apply_range(hub, frames, lens, half, total);
	kheo_db_close(hub);
	printf(" history of %zu changesets:\n", total);
	run_child(self, "export", hubdir, gitdir);
	run_child(self, "verify", hubdir, gitdir);
	run_child(self, "replay", hubdir, gitdir);
	printf("  target   1M changesets verified and replayed in <= 60 s "
	       "on 2 cores, peak RSS flat in history size\n");

	for (j = 0; j < ndev; j++) {
		kheo_bundle_free(bundles[j]);
		free(files[j]);
	}
	free(bundles);
	free(files);
	free(next);
	free((void *)frames);
	free(lens);
	free(order);
	for (i = 0; i < n; i++)
		json_decref(l[i].j);
	free(l);
	return 0;
}
