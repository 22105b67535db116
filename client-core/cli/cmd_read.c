/*
 * cmd_read.c - the commands that show a node: get, ls, log, conflicts,
 * quarantine, verify, digest.  --json prints the library's JSON as is;
 * without it, lines for people.
 */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_scalar(json_t *v)
{
	char *text;

	if (json_is_string(v)) {
		fputs(json_string_value(v), stdout);
		return;
	}
	text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	fputs(text ? text : "?", stdout);
	free(text);
}

static void get_plain(const char *json)
{
	json_t *o = json_loads(json, 0, NULL), *v;
	const char *k;

	json_object_foreach(o, k, v) {
		if (strcmp(k, "_conflicts") == 0 || strcmp(k, "_unknown") == 0)
			continue;
		printf("%-16s ", k);
		print_scalar(v);
		putchar('\n');
	}
	json_object_foreach(json_object_get(o, "_conflicts"), k, v)
		printf("%-16s CONFLICT, %zu values (see kheo conflicts)\n", k,
			json_array_size(v));
	json_decref(o);
}

int cmd_get(cli *c)
{
	kheo_db *db;
	char *json;
	int rc;

	if (c->argc != 3)
		return cli_usage("get TABLE ID [--json]");
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (kheo_get_json(db, &json, c->argv[1], c->argv[2]) < 0)
		rc = cli_fail(db, "get");
	else
		rc = cli_output(c, json, get_plain);
	kheo_db_close(db);
	return rc;
}

static void ls_plain(const char *json)
{
	json_t *arr = json_loads(json, 0, NULL), *o;
	size_t i;

	json_array_foreach(arr, i, o) {
		json_t *name = json_object_get(o, "name");
		json_t *status = json_object_get(o, "status");

		printf("%s  %-28s", json_string_value(json_object_get(o, "id")),
			json_string_value(json_object_get(o, "_unit")));
		if (json_is_string(status))
			printf("  %-11s", json_string_value(status));
		if (json_is_string(name))
			printf("  %s", json_string_value(name));
		if (json_object_get(o, "_conflicts"))
			printf("  [conflict]");
		putchar('\n');
	}
	json_decref(arr);
}

int cmd_ls(cli *c)
{
	static const char line[] = "ls TABLE [--where FIELD=VALUE]... "
		"[--search WORDS] [--json]";
	kheo_assign *where;
	const char *search = NULL;
	kheo_db *db;
	char *json;
	size_t n = 0;
	int i, rc;

	if (c->argc < 2)
		return cli_usage(line);
	where = calloc((size_t)c->argc, sizeof(*where));
	if (!where)
		return EXIT_REFUSED;
	for (i = 2; i < c->argc; i++) {
		if (strcmp(c->argv[i], "--search") == 0 && i + 1 < c->argc) {
			search = c->argv[++i];
			continue;
		}
		if (strcmp(c->argv[i], "--where") != 0 || i + 1 == c->argc ||
		    cli_assign(c->argv[i + 1], &where[n]) < 0 ||
		    where[n].op != KHEO_ASSIGN_SET) {
			free(where);
			return cli_usage(line);
		}
		n++;
		i++;
	}
	if ((rc = cli_open(c, &db)) == EXIT_OK) {
		if (kheo_search_json(db, &json, c->argv[1], where, n,
			    search) < 0)
			rc = cli_fail(db, "ls");
		else
			rc = cli_output(c, json, ls_plain);
		kheo_db_close(db);
	}
	free(where);
	return rc;
}

static void log_plain(const char *json)
{
	json_t *arr = json_loads(json, 0, NULL), *o;
	size_t i;

	json_array_foreach(arr, i, o) {
		json_t *why = json_object_get(o, "why");

		printf("%.24s  %.16s  %-7s %s%s%s useq %lld, %lld ops%s%s\n",
			json_string_value(json_object_get(o, "time")),
			json_string_value(json_object_get(o, "id")),
			json_string_value(json_object_get(o, "state")),
			json_is_true(json_object_get(o, "mine")) ? "mine " : "",
			json_is_true(json_object_get(o, "province_held"))
				? "province-held " : "",
			json_string_value(json_object_get(o, "unit")),
			(long long)json_integer_value(json_object_get(o, "useq")),
			(long long)json_integer_value(json_object_get(o, "ops")),
			why ? ": " : "", why ? json_string_value(why) : "");
	}
	json_decref(arr);
}

static int simple_list(cli *c, const char *name,
	int (*get)(kheo_db *, char **), void (*plain)(const char *))
{
	kheo_db *db;
	char *json;
	int rc;

	if (c->argc != 1) {
		char line[64];

		snprintf(line, sizeof(line), "%s [--json]", name);
		return cli_usage(line);
	}
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (get(db, &json) < 0)
		rc = cli_fail(db, name);
	else
		rc = cli_output(c, json, plain);
	kheo_db_close(db);
	return rc;
}

int cmd_log(cli *c)
{
	return simple_list(c, "log", kheo_log_json, log_plain);
}

static void status_plain(const char *json)
{
	json_t *o = json_loads(json, 0, NULL), *w;
	size_t i;

	printf("mode            %s\n", json_string_value(json_object_get(o,
		"mode")));
	if (json_is_string(json_object_get(o, "cert_role")))
		printf("certificate     %s of %s\n",
			json_string_value(json_object_get(o, "cert_role")),
			json_string_value(json_object_get(o, "cert_scope")));
	printf("pending edits   %lld\n", (long long)json_integer_value(
		json_object_get(o, "pending_edits")));
	printf("not yet held by the province  %lld\n",
		(long long)json_integer_value(json_object_get(o,
			"unacknowledged")));
	printf("held            %lld\n", (long long)json_integer_value(
		json_object_get(o, "held")));
	printf("quarantined     %lld\n", (long long)json_integer_value(
		json_object_get(o, "quarantined")));
	json_array_foreach(json_object_get(o, "warnings"), i, w)
		printf("warning: %s\n", json_string_value(w));
	if (json_array_size(json_object_get(o, "peers"))) {
		json_t *p;

		printf("\n%-8s  %-9s  %-32s  %-16s  %6s  %7s  %4s  %4s  %9s"
		       "  %s\n", "peer", "role", "scope", "last contact",
			"clock", "waiting", "held", "quar", "conflicts",
			"last sync");
		json_array_foreach(json_object_get(o, "peers"), i, p) {
			json_t *off = json_object_get(p, "clock_offset_ms");
			json_t *err = json_object_get(p, "last_error");
			const char *role = json_string_value(json_object_get(p,
				"cert_role"));
			const char *when = json_string_value(json_object_get(p,
				"last_contact"));
			char clock[24] = "-";

			if (json_is_integer(off))
				snprintf(clock, sizeof(clock), "%+llds",
					(long long)(json_integer_value(off) /
						    1000));
			printf("%.8s  %-9s  %-32s  %-16.16s  %6s  %7lld  %4lld"
			       "  %4lld  %9lld  %s\n",
				json_string_value(json_object_get(p, "key")),
				role ? role : json_string_value(json_object_get(
					p, "node_role")) ? json_string_value(
					json_object_get(p, "node_role")) : "-",
				json_string_value(json_object_get(p, "scope"))
					? json_string_value(json_object_get(p,
						"scope")) : "-",
				when ? when : "-", clock,
				(long long)json_integer_value(json_object_get(p,
					"waiting")),
				(long long)json_integer_value(json_object_get(p,
					"held")),
				(long long)json_integer_value(json_object_get(p,
					"quarantined")),
				(long long)json_integer_value(json_object_get(p,
					"conflicts")),
				json_is_string(err) ? json_string_value(err)
						    : "ok");
		}
	}
	json_decref(o);
}

int cmd_status(cli *c)
{
	return simple_list(c, "status", kheo_status_json, status_plain);
}

static void conflicts_plain(const char *json)
{
	json_t *arr = json_loads(json, 0, NULL), *o, *v;
	size_t i, j;

	if (json_array_size(arr) == 0)
		printf("no conflicts\n");
	json_array_foreach(arr, i, o) {
		printf("%s %s %s:",
			json_string_value(json_object_get(o, "table")),
			json_string_value(json_object_get(o, "id")),
			json_string_value(json_object_get(o, "field")));
		if (json_object_get(o, "kind"))
			printf(" %s",
				json_string_value(json_object_get(o, "kind")));
		json_array_foreach(json_object_get(o, "values"), j, v) {
			printf("%s ", j ? " |" : "");
			print_scalar(json_object_get(v, "value"));
			printf(" (by %.8s at %.19s%s)",
				json_string_value(json_object_get(v, "author")),
				json_string_value(json_object_get(v, "time")),
				json_is_true(json_object_get(v, "wins"))
					? ", shown" : "");
		}
		putchar('\n');
	}
	json_decref(arr);
}

int cmd_conflicts(cli *c)
{
	return simple_list(c, "conflicts", kheo_conflicts_json,
		conflicts_plain);
}

static void quarantine_plain(const char *json)
{
	json_t *arr = json_loads(json, 0, NULL), *o;
	size_t i;

	if (json_array_size(arr) == 0)
		printf("quarantine is empty\n");
	json_array_foreach(arr, i, o) {
		json_t *id = json_object_get(o, "id");

		printf("%.24s  %.16s  %s: %s\n",
			json_string_value(json_object_get(o, "received")),
			json_is_string(id) ? json_string_value(id) : "(no id)",
			json_string_value(json_object_get(o, "reason")),
			json_string_value(json_object_get(o, "detail")));
	}
	json_decref(arr);
}

int cmd_quarantine(cli *c)
{
	return simple_list(c, "quarantine", kheo_quarantine_json,
		quarantine_plain);
}

int cmd_verify(cli *c)
{
	kheo_db *db;
	int rc;

	if (c->argc != 1)
		return cli_usage("verify");
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (kheo_verify(db) < 0)
		rc = cli_fail(db, "verify");
	else
		printf("ok: every signature and chain verified, state rebuilt "
		       "and identical\n");
	kheo_db_close(db);
	return rc;
}

int cmd_digest(cli *c)
{
	const char *prefix = NULL;
	uint8_t d[32];
	kheo_db *db;
	int rc, i;

	if (c->argc == 3 && strcmp(c->argv[1], "--unit") == 0)
		prefix = c->argv[2];
	else if (c->argc != 1)
		return cli_usage("digest [--unit PREFIX]");
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (kheo_digest(db, d, prefix) < 0) {
		rc = cli_fail(db, "digest");
	} else {
		for (i = 0; i < 32; i++)
			printf("%02x", d[i]);
		putchar('\n');
	}
	kheo_db_close(db);
	return rc;
}
