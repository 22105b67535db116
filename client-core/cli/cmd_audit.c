/*
 * cmd_audit.c - kheo audit export|verify|replay: the git mirror auditors
 * read (docs/auditor.md).
 *
 *   kheo audit export GITDIR
 *   kheo audit verify GITDIR [--backdate-days N] [--blobs DATADIR] [--json]
 *   kheo audit replay GITDIR (--until DATE | --received-until DATE)
 *                     [--out DIR]
 *   kheo audit log|blame GITDIR TABLE ID [--until DATE |
 *                     --received-until DATE]
 *
 * export needs the node (-C DIR); verify and replay need only the mirror,
 * as an auditor has it.  verify prints one line per finding ("error:" when
 * the mirror was altered, "warning:" for what the genuine history shows:
 * equivocation, back-dating) and exits 1 on any error.  With --blobs it
 * then checks the blob store of DATADIR against the mirror's records: a
 * blob missing or damaged there is an error, named with its record.
 * log and blame answer what stock git cannot: every write a record saw,
 * the ones that lost the merge included (git's history holds only shown
 * states), and for each field the write that holds it.  They replay the
 * mirror into a scratch folder, up to the date when one is given, and
 * print what `kheo history` prints on a node.
 */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char line[] =
	"audit export GITDIR | audit verify GITDIR [--backdate-days N] "
	"[--blobs DATADIR] | "
	"audit replay GITDIR (--until DATE | --received-until DATE) "
	"[--out DIR] | audit log|blame GITDIR TABLE ID [--until DATE | "
	"--received-until DATE]";

static int export(cli *c)
{
	kheo_audit_stats st;
	kheo_db *db;
	int rc;

	if (c->argc != 3)
		return cli_usage(line);
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (kheo_audit_export(db, c->argv[2], &st) < 0) {
		rc = cli_fail(db, "audit export");
	} else if (c->json) {
		printf("{\"commits\": %zu, \"changesets\": %zu, \"head\": "
		       "\"%s\"}\n", st.commits, st.changesets, st.tip);
	} else if (st.commits) {
		printf("%s: %zu commit%s appended, head %.12s\n", c->argv[2],
			st.commits, st.commits == 1 ? "" : "s", st.tip);
	} else {
		printf("%s: up to date, head %.12s\n", c->argv[2],
			*st.tip ? st.tip : "(none: nothing applied yet)");
	}
	kheo_db_close(db);
	return rc;
}

typedef struct collect {
	int json;
	json_t *arr;
} collect;

static void on_finding(const kheo_audit_finding *f, void *payload)
{
	collect *k = payload;

	if (k->json) {
		json_t *o = json_object();

		json_object_set_new(o, "severity", json_string(
			f->severity == KHEO_AUDIT_ERROR ? "error" : "warning"));
		json_object_set_new(o, "kind", json_string(f->kind));
		json_object_set_new(o, "seq", json_integer((json_int_t)f->seq));
		json_object_set_new(o, "commit", json_string(f->commit));
		json_object_set_new(o, "path", json_string(f->path));
		json_object_set_new(o, "message", json_string(f->msg));
		json_array_append_new(k->arr, o);
		return;
	}
	printf("%s: %s", f->severity == KHEO_AUDIT_ERROR ? "error"
							  : "warning", f->kind);
	if (f->seq)
		printf(" at commit %zu (%.12s)", f->seq, f->commit);
	if (*f->path)
		printf(" %s", f->path);
	printf(": %s\n", f->msg);
}

static int verify(cli *c)
{
	kheo_audit_options o = KHEO_AUDIT_OPTIONS_INIT;
	kheo_audit_stats st;
	kheo_audit_blob_stats bst = { 0 };
	kheo_audit *a = NULL;
	collect k = { c->json, NULL };
	const char *blobs = NULL;
	int i, err, berr = KHEO_OK, rc = EXIT_OK;

	if (c->argc < 3)
		return cli_usage(line);
	for (i = 3; i < c->argc; i++) {
		char *end;
		double days;

		if (strcmp(c->argv[i], "--blobs") == 0 && i + 1 < c->argc &&
		    !blobs) {
			blobs = c->argv[++i];
			continue;
		}
		if (strcmp(c->argv[i], "--backdate-days") != 0 ||
		    i + 1 >= c->argc)
			return cli_usage(line);
		days = strtod(c->argv[++i], &end);
		if (*end || end == c->argv[i] || !(days > 0) || days > 3650) {
			fprintf(stderr, "kheo: audit verify: --backdate-days "
				"\"%s\" is not a number of days (above 0, at "
				"most 3650)\n", c->argv[i]);
			return EXIT_USAGE;
		}
		o.backdate_ms = (int64_t)(days * 86400000.0);
	}
	o.finding = on_finding;
	o.payload = &k;
	if (c->json)
		k.arr = json_array();
	if ((err = kheo_audit_open(&a, c->argv[2], &o)) < 0) {
		fprintf(stderr, "kheo: audit verify: %s\n",
			kheo_audit_errmsg(a));
		kheo_audit_free(a);
		json_decref(k.arr);
		return EXIT_REFUSED;
	}
	err = kheo_audit_verify(a, &st);
	/* the blobs against the state the mirror verified to */
	if (blobs && (err == KHEO_OK || err == KHEO_ECORRUPT)) {
		berr = kheo_audit_verify_blobs(a, blobs, &bst);
		if (berr < 0 && berr != KHEO_ECORRUPT)
			err = berr;
		else if (berr == KHEO_ECORRUPT)
			err = KHEO_ECORRUPT;
	}
	if (err < 0 && err != KHEO_ECORRUPT) {
		fprintf(stderr, "kheo: audit verify: %s\n",
			kheo_audit_errmsg(a));
		rc = EXIT_REFUSED;
	} else if (c->json) {
		json_t *r = json_object();
		char *text;

		json_object_set_new(r, "ok", json_boolean(st.errors == 0 &&
			!bst.missing && !bst.damaged));
		json_object_set_new(r, "commits",
			json_integer((json_int_t)st.commits));
		json_object_set_new(r, "changesets",
			json_integer((json_int_t)st.changesets));
		json_object_set_new(r, "errors",
			json_integer((json_int_t)st.errors));
		json_object_set_new(r, "warnings",
			json_integer((json_int_t)st.warnings));
		json_object_set_new(r, "head", json_string(st.tip));
		if (blobs)
			json_object_set_new(r, "blobs", json_pack("{s:I, s:I, "
				"s:I, s:I}", "named", (json_int_t)bst.blobs,
				"intact", (json_int_t)bst.intact, "missing",
				(json_int_t)bst.missing, "damaged",
				(json_int_t)bst.damaged));
		json_object_set(r, "findings", k.arr);
		text = json_dumps(r, JSON_INDENT(2));
		if (text)
			printf("%s\n", text);
		free(text);
		json_decref(r);
	} else {
		printf("%s: %zu commits, %zu changesets, head %.12s: %s "
		       "(%zu error%s, %zu warning%s)\n", c->argv[2],
			st.commits, st.changesets, st.tip,
			st.errors ? "ALTERED" : "verified", st.errors,
			st.errors == 1 ? "" : "s", st.warnings,
			st.warnings == 1 ? "" : "s");
		if (blobs)
			printf("%s: %zu blobs named, %zu intact, %zu missing, "
			       "%zu damaged\n", blobs, bst.blobs, bst.intact,
				bst.missing, bst.damaged);
	}
	if (err == KHEO_ECORRUPT) {
		fprintf(stderr, "kheo: audit verify: %s\n",
			kheo_audit_errmsg(a));
		rc = EXIT_REFUSED;
	}
	json_decref(k.arr);
	kheo_audit_free(a);
	return rc;
}

/* --until DATE | --received-until DATE (at most one), and --out DIR
 * when `out` is not NULL, from argv[from] on; EXIT_USAGE for anything
 * else, with the bad date named. */
static int replay_args(cli *c, int from, kheo_replay_mode *mode,
	int64_t *until, const char **out)
{
	const char *date = NULL;
	int i;

	*mode = 0;
	for (i = from; i < c->argc; i++) {
		if (out && i + 1 < c->argc &&
		    strcmp(c->argv[i], "--out") == 0 && !*out) {
			*out = c->argv[++i];
		} else if (i + 1 < c->argc && !*mode &&
			   (strcmp(c->argv[i], "--until") == 0 ||
			    strcmp(c->argv[i], "--received-until") == 0)) {
			*mode = c->argv[i][2] == 'u' ? KHEO_REPLAY_CLOCK
						     : KHEO_REPLAY_RECEIVED;
			date = c->argv[++i];
		} else {
			return cli_usage(line);
		}
	}
	if (date && kheo_audit_parse_time(until, date) < 0) {
		fprintf(stderr, "kheo: audit %s: \"%s\" is not a date "
			"(2024-05-01, 2024-05-01T10:30:00Z, "
			"2024-05-01T17:30+07:00 or @MS)\n", c->argv[1], date);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

static int replay(cli *c)
{
	kheo_replay_mode mode;
	kheo_audit_stats st;
	kheo_audit *a = NULL;
	const char *out = NULL;
	char *json = NULL;
	int64_t until;
	int rc;

	if (c->argc < 3)
		return cli_usage(line);
	if ((rc = replay_args(c, 3, &mode, &until, &out)) != EXIT_OK)
		return rc;
	if (!mode)
		return cli_usage(line);
	if (kheo_audit_open(&a, c->argv[2], NULL) < 0 ||
	    kheo_audit_replay(a, mode, until, out, out ? NULL : &json,
		    &st) < 0) {
		fprintf(stderr, "kheo: audit replay: %s\n",
			kheo_audit_errmsg(a));
		rc = EXIT_REFUSED;
	} else if (json) {
		printf("%s\n", json);
	} else {
		printf("%s: %zu changesets replayed into %s, digest %s\n",
			c->argv[2], st.changesets, out, st.digest);
	}
	kheo_free(json);
	kheo_audit_free(a);
	return rc;
}

/* Remove a folder and everything in it (the scratch replay). */
static void remove_tree(const char *path)
{
	struct stat sb;
	struct dirent *e;
	DIR *d;

	if (lstat(path, &sb) != 0)
		return;
	if (S_ISDIR(sb.st_mode) && (d = opendir(path))) {
		while ((e = readdir(d))) {
			char sub[4096];

			if (strcmp(e->d_name, ".") == 0 ||
			    strcmp(e->d_name, "..") == 0)
				continue;
			if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path,
				    e->d_name) < sizeof(sub))
				remove_tree(sub);
		}
		closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

/* audit log and audit blame: the record's history in the mirror's
 * replayed state (by default the whole of it, as the node received it) */
static int record_history(cli *c, int blame)
{
	kheo_replay_mode mode;
	kheo_audit_stats st;
	kheo_audit *a = NULL;
	kheo_db *db = NULL;
	const char *tmp = getenv("TMPDIR");
	char scratch[4096], *json = NULL;
	int64_t until = INT64_MAX;
	int rc;

	if (c->argc < 5)
		return cli_usage(line);
	if ((rc = replay_args(c, 5, &mode, &until, NULL)) != EXIT_OK)
		return rc;
	if (!mode)
		mode = KHEO_REPLAY_RECEIVED;
	snprintf(scratch, sizeof(scratch), "%s/kheo-audit-%s-XXXXXX",
		tmp && *tmp ? tmp : "/tmp", c->argv[1]);
	if (!mkdtemp(scratch)) {
		fprintf(stderr, "kheo: audit %s: %s: %s\n", c->argv[1],
			scratch, strerror(errno));
		return EXIT_REFUSED;
	}
	if (kheo_audit_open(&a, c->argv[2], NULL) < 0 ||
	    kheo_audit_replay(a, mode, until, scratch, NULL, &st) < 0) {
		fprintf(stderr, "kheo: audit %s: %s\n", c->argv[1],
			kheo_audit_errmsg(a));
		rc = EXIT_REFUSED;
	} else {
		kheo_open_options o = KHEO_OPEN_OPTIONS_INIT;

		if (kheo_db_open(&db, scratch, &o) < 0 ||
		    kheo_history_json(db, &json, c->argv[3], c->argv[4]) < 0)
			rc = cli_fail(db, blame ? "audit blame" : "audit log");
		else
			rc = cli_output(c, json,
				blame ? blame_plain : history_plain);
		kheo_db_close(db);
	}
	kheo_audit_free(a);
	remove_tree(scratch);
	return rc;
}

int cmd_audit(cli *c)
{
	if (c->argc >= 2 && strcmp(c->argv[1], "export") == 0)
		return export(c);
	if (c->argc >= 2 && strcmp(c->argv[1], "verify") == 0)
		return verify(c);
	if (c->argc >= 2 && strcmp(c->argv[1], "replay") == 0)
		return replay(c);
	if (c->argc >= 2 && strcmp(c->argv[1], "log") == 0)
		return record_history(c, 0);
	if (c->argc >= 2 && strcmp(c->argv[1], "blame") == 0)
		return record_history(c, 1);
	return cli_usage(line);
}
