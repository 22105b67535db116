/*
 * cmd_node.c - kheo init and kheo id: making a node and saying who it is.
 */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_all(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	long n;

	if (!f)
		return -1;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || !(*out = malloc((size_t)n + 1)) ||
	    fread(*out, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		return -1;
	}
	(*out)[n] = '\0';
	*len = (size_t)n;
	fclose(f);
	return 0;
}

int cmd_init(cli *c)
{
	static const char line[] =
		"init --role device|hub|province --unit UNIT [--schema FILE]";
	kheo_init_options init = KHEO_INIT_OPTIONS_INIT;
	const char *role = NULL, *schema = NULL;
	char *schema_text = NULL, *json = NULL;
	kheo_db *db = NULL;
	int i, rc = EXIT_OK;

	for (i = 1; i < c->argc; i++) {
		if (i + 1 < c->argc && strcmp(c->argv[i], "--role") == 0)
			role = c->argv[++i];
		else if (i + 1 < c->argc && strcmp(c->argv[i], "--unit") == 0)
			init.unit = c->argv[++i];
		else if (i + 1 < c->argc && strcmp(c->argv[i], "--schema") == 0)
			schema = c->argv[++i];
		else
			return cli_usage(line);
	}
	if (!role || !init.unit)
		return cli_usage(line);
	if (strcmp(role, "device") == 0)
		init.role = KHEO_NODE_DEVICE;
	else if (strcmp(role, "hub") == 0)
		init.role = KHEO_NODE_HUB;
	else if (strcmp(role, "province") == 0)
		init.role = KHEO_NODE_PROVINCE;
	else
		return cli_usage(line);
	if (schema) {
		if (read_all(schema, &schema_text, &init.schema_len) < 0) {
			fprintf(stderr, "kheo: init: cannot read %s\n", schema);
			return EXIT_REFUSED;
		}
		init.schema_json = schema_text;
	}
	if (kheo_db_init(&db, c->dir, &init, NULL) < 0) {
		rc = cli_fail(db, "init");
	} else if (kheo_id_json(db, &json) == 0) {
		json_t *id = json_loads(json, 0, NULL);

		printf("%s node %s in %s\nkey %s\n", role, init.unit, c->dir,
			json_string_value(json_object_get(id, "key")));
		json_decref(id);
		kheo_free(json);
	}
	kheo_db_close(db);
	free(schema_text);
	return rc;
}

static void id_plain(const char *json)
{
	json_t *o = json_loads(json, 0, NULL);
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v) {
		char *text = json_dumps(v, JSON_ENCODE_ANY);

		if (json_is_string(v))
			printf("%-20s %s\n", k, json_string_value(v));
		else
			printf("%-20s %s\n", k, text);
		free(text);
	}
	json_decref(o);
}

int cmd_id(cli *c)
{
	kheo_db *db;
	char *json;
	int rc;

	if (c->argc != 1)
		return cli_usage("id [--json]");
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (kheo_id_json(db, &json) < 0)
		rc = cli_fail(db, "id");
	else
		rc = cli_output(c, json, id_plain);
	kheo_db_close(db);
	return rc;
}
