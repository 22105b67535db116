/*
 * cmd_node.c - kheo init, kheo id and kheo rekey: making a node, saying
 * who it is, and giving a restored or copied node a new key.
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
	kheo_open_options opts = cli_options(c);
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
	if (kheo_db_init(&db, c->dir, &init, &opts) < 0) {
		rc = cli_fail(db, "init");
	} else if (kheo_id_json(db, &json) == 0) {
		json_t *id = json_loads(json, 0, NULL);

		printf("%s node %s in %s\nkey %s%s\n", role, init.unit, c->dir,
			json_string_value(json_object_get(id, "key")),
			c->passphrase ? " (node.key sealed with the passphrase)"
				      : "");
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

/* A field of kheo_id_json's object, copied into out. */
static int id_field(kheo_db *db, const char *name, char *out, size_t n,
	int *can_sign)
{
	const char *v;
	json_t *o;
	char *json;

	if (kheo_id_json(db, &json) < 0)
		return -1;
	o = json_loads(json, 0, NULL);
	kheo_free(json);
	v = json_string_value(json_object_get(o, name));
	snprintf(out, n, "%s", v ? v : "");
	if (can_sign)
		*can_sign = json_is_true(json_object_get(o, "can_sign"));
	json_decref(o);
	return 0;
}

int cmd_rekey(cli *c)
{
	char old[KHEO_KEY_HEX + 1], key[KHEO_KEY_HEX + 1];
	kheo_db *db;
	int rc, force = 0, can_sign = 0;

	if (c->argc == 2 && strcmp(c->argv[1], "--force") == 0)
		force = 1;
	else if (c->argc != 1)
		return cli_usage("rekey [--force]");
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (id_field(db, "key", old, sizeof(old), &can_sign) < 0) {
		rc = cli_fail(db, "rekey");
	} else if (can_sign && !force) {
		fprintf(stderr, "kheo: rekey: this node signs with its key "
			"%.16s...: re-keying is for a restored or copied node, "
			"and a re-keyed node must be enrolled again; give "
			"--force to replace a working key\n", old);
		rc = EXIT_REFUSED;
	} else if (kheo_rekey(db) < 0 ||
		   id_field(db, "key", key, sizeof(key), NULL) < 0) {
		rc = cli_fail(db, "rekey");
	} else {
		printf("new key %s\n(was %s, which this node never uses "
			"again)\nthis node must be enrolled again: its "
			"certificate named the old key\n", key, old);
	}
	kheo_db_close(db);
	return rc;
}
