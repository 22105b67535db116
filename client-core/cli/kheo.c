/*
 * kheo.c - the kheo command: global options, dispatch, shared helpers.
 *
 *   kheo [-C DIR] [--passphrase-file FILE] COMMAND ...
 *
 * DIR: $KHEO_HOME, else ./kheo-data.  The passphrase of node.key comes
 * from FILE (its first line) or $KHEO_PASSPHRASE, never from an argument,
 * which every user of the machine can read in ps.
 * One cmd_*.c file per command family does the work through libkheo's
 * public API; this file only finds the data directory, the passphrase and
 * the command.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	int (*run)(cli *c);
	const char *help;
} commands[] = {
	{ "init", cmd_init, "--role device|hub|province --unit UNIT" },
	{ "id", cmd_id, "[--json]" },
	{ "rekey", cmd_rekey, "[--force]" },
	{ "put", cmd_put, "TABLE [--id ID] FIELD=VALUE..." },
	{ "set", cmd_set, "TABLE ID FIELD=VALUE|FIELD+=MEMBER|FIELD-=MEMBER..." },
	{ "del", cmd_del, "TABLE ID" },
	{ "commit", cmd_commit, "" },
	{ "get", cmd_get, "TABLE ID [--json]" },
	{ "ls", cmd_ls, "TABLE [--where FIELD=VALUE]... [--search WORDS] "
		"[--json]" },
	{ "history", cmd_history, "TABLE ID [--blame] [--json]" },
	{ "import", cmd_import, "FILE.jsonl" },
	{ "log", cmd_log, "[--json]" },
	{ "status", cmd_status, "[--json]" },
	{ "conflicts", cmd_conflicts, "[--json]" },
	{ "quarantine", cmd_quarantine, "[--json]" },
	{ "verify", cmd_verify, "" },
	{ "digest", cmd_digest, "[--unit PREFIX]" },
	{ "bundle", cmd_bundle, "create FILE [--for NODE_ID] [--no-blobs] | apply FILE" },
	{ "enroll", cmd_enroll, "request [--qr] | sign FILE|- --role ROLE "
		"--unit UNIT [--days N] | accept FILE|- --root FINGERPRINT" },
	{ "revoke", cmd_revoke, "NODE_ID [--reason TEXT]" },
	{ "sync", cmd_sync, "HOST:PORT [--key HEX] [--no-blobs] | --now" },
	{ "audit", cmd_audit, "export GITDIR | verify GITDIR [--blobs DATADIR] | "
		"replay GITDIR "
		"(--until DATE | --received-until DATE) [--out DIR] | "
		"log|blame GITDIR TABLE ID [--until DATE | --received-until "
		"DATE]" },
	{ "attach", cmd_attach, "TABLE ID FIELD FILE [--max-size BYTES]" },
	{ "blob", cmd_blob, "get HASH FILE | missing | prune [--older-than "
		"DAYS]" },
	{ "report", cmd_report, "[--by DIMS] [--unit PREFIX] [--from DATE] "
		"[--to DATE] [--overdue MONTHS] [--format table|csv|json|xlsx] "
		"[--out FILE] [--lang vi|en]" },
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: kheo [-C DIR] [--passphrase-file FILE] COMMAND "
		"...   (kheo %s)\n\n", kheo_version());
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  kheo %-11s %s\n", commands[i].name,
			commands[i].help);
	fprintf(f, "\nDIR defaults to $KHEO_HOME, else ./kheo-data. The "
		   "passphrase of node.key\ncomes from FILE or "
		   "$KHEO_PASSPHRASE. See kheo(1).\n");
}

int cli_fail(kheo_db *db, const char *what)
{
	fprintf(stderr, "kheo: %s: %s\n", what, kheo_errmsg(db));
	return EXIT_REFUSED;
}

int cli_usage(const char *line)
{
	fprintf(stderr, "usage: kheo %s\n", line);
	return EXIT_USAGE;
}

kheo_open_options cli_options(const cli *c)
{
	kheo_open_options o = KHEO_OPEN_OPTIONS_INIT;

	o.passphrase = c->passphrase;
	return o;
}

int cli_open(const cli *c, kheo_db **db)
{
	kheo_open_options o = cli_options(c);
	int err = kheo_db_open(db, c->dir, &o);

	if (err < 0) {
		fprintf(stderr, "kheo: %s\n", kheo_errmsg(*db));
		kheo_db_close(*db);
		*db = NULL;
		return EXIT_REFUSED;
	}
	return EXIT_OK;
}

int cli_output(const cli *c, char *json, void (*plain)(const char *json))
{
	if (c->json || !plain)
		printf("%s\n", json);
	else
		plain(json);
	kheo_free(json);
	return EXIT_OK;
}

int cli_assign(char *arg, kheo_assign *out)
{
	char *eq = strchr(arg, '=');

	if (!eq || eq == arg)
		return -1;
	out->value = eq + 1;
	out->op = KHEO_ASSIGN_SET;
	if (eq[-1] == '+' || eq[-1] == '-') {
		out->op = eq[-1] == '+' ? KHEO_ASSIGN_ADD : KHEO_ASSIGN_REMOVE;
		eq--;
		if (eq == arg)
			return -1;
	}
	*eq = '\0';
	out->field = arg;
	return 0;
}

/* The passphrase read from a file: wiped when the process exits. */
static char pass_buf[KHEO_PASSPHRASE_MAX + 3];

static void pass_wipe(void)
{
	explicit_bzero(pass_buf, sizeof(pass_buf));
}

/* The first line of FILE, without its line end; -1 with a message. */
static int pass_read(const char *file, const char **out)
{
	FILE *f = fopen(file, "r");
	size_t n;

	if (!f) {
		fprintf(stderr, "kheo: --passphrase-file %s: %s\n", file,
			strerror(errno));
		return -1;
	}
	atexit(pass_wipe);
	n = fread(pass_buf, 1, sizeof(pass_buf) - 1, f);
	fclose(f);
	pass_buf[n] = '\0';
	pass_buf[strcspn(pass_buf, "\r\n")] = '\0';
	if (strlen(pass_buf) > KHEO_PASSPHRASE_MAX || !pass_buf[0]) {
		fprintf(stderr, "kheo: --passphrase-file %s: the first line "
			"must hold the passphrase (1 to %d bytes)\n", file,
			KHEO_PASSPHRASE_MAX);
		return -1;
	}
	*out = pass_buf;
	return 0;
}

int main(int argc, char **argv)
{
	cli c = { 0 };
	char **rest;
	const char *pass_file = NULL;
	int i, n = 0;
	size_t k;

	c.dir = getenv("KHEO_HOME");
	if (!c.dir || !*c.dir)
		c.dir = "./kheo-data";
	i = 1;
	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "-C") == 0 && i + 1 < argc) {
			c.dir = argv[i + 1];
			i += 2;
		} else if (strcmp(argv[i], "--passphrase-file") == 0 &&
			   i + 1 < argc) {
			pass_file = argv[i + 1];
			i += 2;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("kheo %s\n", kheo_version());
			return EXIT_OK;
		} else if (strcmp(argv[i], "-h") == 0 ||
			   strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return EXIT_OK;
		} else {
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	/* the file, when given, wins over the environment, as -C does */
	c.passphrase = getenv("KHEO_PASSPHRASE");
	if (c.passphrase && !*c.passphrase)
		c.passphrase = NULL;
	if (pass_file && pass_read(pass_file, &c.passphrase) < 0)
		return EXIT_REFUSED;
	/* --json may come anywhere after the command */
	rest = calloc((size_t)(argc - i) + 1, sizeof(*rest));
	if (!rest)
		return EXIT_REFUSED;
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			c.json = 1;
		else
			rest[n++] = argv[i];
	}
	c.argc = n;
	c.argv = rest;
	for (k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
		if (strcmp(rest[0], commands[k].name) == 0) {
			int rc = commands[k].run(&c);

			free(rest);
			return rc;
		}
	fprintf(stderr, "kheo: unknown command \"%s\"\n", rest[0]);
	usage(stderr);
	free(rest);
	return EXIT_USAGE;
}
