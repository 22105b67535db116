/*
 * cmd_history.c - kheo history: every write a record has seen, and who
 * made the values it shows.
 *
 *   kheo history TABLE ID [--blame] [--json]
 *
 * The default lists every write oldest first (kheo_history_json), with
 * what became of it: holds, competing, foreign, superseded (and by what).
 * --blame shows, field by field, the writes that hold: the value, who
 * wrote it with which role, when by its clock, in which changeset.  On a
 * node this reads its own store; `kheo audit log|blame` (cmd_audit.c)
 * print the same from a mirror's replayed history, through history_plain
 * and blame_plain here.
 */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

/* A value on one line: text as it is, anything else as JSON. */
static void print_value(json_t *v)
{
	char *text;

	if (json_is_string(v)) {
		printf("\"%s\"", json_string_value(v));
		return;
	}
	text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	fputs(text ? text : "?", stdout);
	free(text);
}

/* "collector 1a2b3c4d5e6f7a8b in UNIT, changeset 9c8d7e6f5a4b3c2d (useq
 * N)", or "this node, not yet sealed" */
static void print_who(json_t *w)
{
	if (json_is_true(json_object_get(w, "pending"))) {
		printf("this node (%.16s), not yet sealed", str(w, "author"));
		return;
	}
	printf("%s %.16s in %s, changeset %.16s (useq %lld)", str(w, "role"),
		str(w, "author"), str(w, "cs_unit"), str(w, "changeset"),
		(long long)json_integer_value(json_object_get(w, "useq")));
}

static void print_head(json_t *o, size_t n, const char *what)
{
	printf("%s %s in %s: %zu %s%s\n", str(o, "table"), str(o, "id"),
		str(o, "unit"), n, what, n == 1 ? "" : "s");
}

void history_plain(const char *json)
{
	json_t *o = json_loads(json, 0, NULL), *writes, *w;
	size_t i;

	writes = json_object_get(o, "writes");
	print_head(o, json_array_size(writes), "write");
	json_array_foreach(writes, i, w) {
		json_t *by = json_object_get(w, "superseded_by");

		printf("%.24s  %s %s ", str(w, "time"), str(w, "op"),
			str(w, "field"));
		print_value(json_object_get(w, "value"));
		printf("\n    by ");
		print_who(w);
		printf(": %s", str(w, "state"));
		if (by && json_is_string(json_object_get(by, "changeset")))
			printf(" at %.24s by changeset %.16s", str(by, "time"),
				str(by, "changeset"));
		else if (by)
			printf(" at %.24s by an edit not yet sealed",
				str(by, "time"));
		putchar('\n');
	}
	json_decref(o);
}

void blame_plain(const char *json)
{
	json_t *o = json_loads(json, 0, NULL), *writes, *w, *v;
	json_t *lost = json_object(); /* field -> writes that do not hold */
	json_t *seen = json_array();  /* fields, in order of first write */
	size_t i, nfields = 0;
	const char *k;

	writes = json_object_get(o, "writes");
	json_array_foreach(writes, i, w) {
		const char *f = str(w, "field");
		json_t *n = json_object_get(lost, f);

		if (!n) {
			json_object_set_new(lost, f, json_integer(0));
			json_array_append_new(seen, json_string(f));
			n = json_object_get(lost, f);
		}
		if (strcmp(str(w, "state"), "holds") != 0 &&
		    strcmp(str(w, "state"), "competing") != 0)
			json_integer_set(n, json_integer_value(n) + 1);
	}
	json_array_foreach(seen, i, v) {
		k = json_string_value(v);
		if (strcmp(k, "_deleted") != 0)
			nfields++;
	}
	print_head(o, nfields, "field");
	json_array_foreach(seen, i, v) {
		size_t j, holders = 0;
		json_int_t other;
		int pass;

		k = json_string_value(v);
		/* the value shown first, then any competing with it */
		for (pass = 0; pass < 2; pass++) {
			json_array_foreach(writes, j, w) {
				if (strcmp(str(w, "field"), k) != 0 ||
				    strcmp(str(w, "state"), pass ? "competing"
								 : "holds"))
					continue;
				printf("%-16s ", holders++ ? "" : k);
				print_value(json_object_get(w, "value"));
				printf("%s\n    %.24s by ", pass ?
					"  (competing: a conflict)" : "",
					str(w, "time"));
				print_who(w);
				putchar('\n');
			}
		}
		if (!holders)
			printf("%-16s (no value holds: every write was "
			       "superseded or foreign)\n", k);
		other = json_integer_value(json_object_get(lost, k));
		if (other)
			printf("    and %lld more write%s that do%s not hold "
			       "(the log lists them)\n", (long long)other,
				other == 1 ? "" : "s", other == 1 ? "es" : "");
	}
	json_decref(seen);
	json_decref(lost);
	json_decref(o);
}

int cmd_history(cli *c)
{
	static const char line[] = "history TABLE ID [--blame] [--json]";
	kheo_db *db;
	char *json;
	int rc, blame = 0;

	if (c->argc == 4 && strcmp(c->argv[3], "--blame") == 0)
		blame = 1;
	else if (c->argc != 3)
		return cli_usage(line);
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (kheo_history_json(db, &json, c->argv[1], c->argv[2]) < 0)
		rc = cli_fail(db, "history");
	else
		rc = cli_output(c, json, blame ? blame_plain : history_plain);
	kheo_db_close(db);
	return rc;
}
