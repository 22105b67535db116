/*
 * cmd_edit.c - the commands that change a node: put, set, del, commit,
 * import.  Each edit is durable when the command returns.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Collect FIELD=VALUE arguments from argv[from..]. */
static int assigns(cli *c, int from, kheo_assign **out, size_t *n)
{
	int i;

	*n = 0;
	*out = calloc((size_t)c->argc + 1, sizeof(**out));
	if (!*out)
		return -1;
	for (i = from; i < c->argc; i++) {
		if (cli_assign(c->argv[i], &(*out)[*n]) < 0) {
			fprintf(stderr, "kheo: \"%s\" is not FIELD=VALUE, "
				"FIELD+=MEMBER or FIELD-=MEMBER\n", c->argv[i]);
			free(*out);
			*out = NULL;
			return -1;
		}
		(*n)++;
	}
	return 0;
}

int cmd_put(cli *c)
{
	static const char line[] = "put TABLE [--id ID] FIELD=VALUE...";
	char id[KHEO_RECORD_HEX + 1];
	const char *given = NULL;
	kheo_assign *a;
	kheo_db *db;
	size_t n;
	int rc, from = 2;

	if (c->argc < 3)
		return cli_usage(line);
	if (strcmp(c->argv[2], "--id") == 0) {
		if (c->argc < 4)
			return cli_usage(line);
		given = c->argv[3];
		from = 4;
	}
	if (assigns(c, from, &a, &n) < 0)
		return cli_usage(line);
	if ((rc = cli_open(c, &db)) == EXIT_OK) {
		if (kheo_put(db, id, c->argv[1], given, a, n) < 0)
			rc = cli_fail(db, "put");
		else
			printf("%s\n", id);
		kheo_db_close(db);
	}
	free(a);
	return rc;
}

int cmd_set(cli *c)
{
	static const char line[] =
		"set TABLE ID FIELD=VALUE|FIELD+=MEMBER|FIELD-=MEMBER...";
	kheo_assign *a;
	kheo_db *db;
	size_t n;
	int rc;

	if (c->argc < 4 || assigns(c, 3, &a, &n) < 0)
		return cli_usage(line);
	if ((rc = cli_open(c, &db)) == EXIT_OK) {
		if (kheo_set(db, c->argv[1], c->argv[2], a, n) < 0)
			rc = cli_fail(db, "set");
		kheo_db_close(db);
	}
	free(a);
	return rc;
}

int cmd_del(cli *c)
{
	kheo_db *db;
	int rc;

	if (c->argc != 3)
		return cli_usage("del TABLE ID");
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (kheo_delete(db, c->argv[1], c->argv[2]) < 0)
		rc = cli_fail(db, "del");
	kheo_db_close(db);
	return rc;
}

int cmd_commit(cli *c)
{
	kheo_db *db;
	size_t sealed = 0;
	int rc;

	if (c->argc != 1)
		return cli_usage("commit");
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (kheo_commit(db, &sealed) < 0)
		rc = cli_fail(db, "commit");
	else
		printf("sealed %zu changeset%s\n", sealed,
			sealed == 1 ? "" : "s");
	kheo_db_close(db);
	return rc;
}

int cmd_import(cli *c)
{
	kheo_import_stats st = { 0 };
	kheo_db *db;
	int rc;

	if (c->argc != 2)
		return cli_usage("import FILE.jsonl");
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (kheo_import_jsonl(db, c->argv[1], &st) < 0)
		rc = cli_fail(db, "import");
	printf("imported %zu lines: %zu puts, %zu sets, %zu deletes, "
	       "%zu skipped\n", st.lines, st.puts, st.sets, st.deletes,
		st.skipped);
	kheo_db_close(db);
	return rc;
}
