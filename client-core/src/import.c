/*
 * import.c - kheo_import_jsonl: the op lines of a ../shared/bench trace
 * (TRACE.md there) as local edits of this node.
 *
 * put -> kheo_put with the line's id and fields; set -> kheo_set of one
 * field; del -> kheo_delete.  As the trace format says, a set or del of a
 * record that is absent or deleted here is a no-op (counted as skipped).
 * `updated_by` is dropped: the signature already says who.  topology,
 * sync and end lines are skipped.  Lines are committed in batches of
 * IMPORT_BATCH (one fsync each); a refused line stops the import with its
 * line number, and the lines before it stay.
 */
#include "internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT_BATCH 2000

/* The text a person would type for a JSON scalar. */
static int scalar_text(json_t *v, char *buf, size_t n, const char **out)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		*out = json_string_value(v);
		return 0;
	case JSON_INTEGER:
		snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		snprintf(buf, n, "%.17g", json_real_value(v));
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		snprintf(buf, n, "%s", json_is_true(v) ? "true" : "false");
		break;
	case JSON_NULL:
		buf[0] = '\0';
		break;
	default:
		return -1;
	}
	*out = buf;
	return 0;
}

static int import_put(kheo_db *db, json_t *line, kheo_import_stats *st)
{
	json_t *fields = json_object_get(line, "fields"), *v;
	const char *table = json_string_value(json_object_get(line, "table"));
	const char *id = json_string_value(json_object_get(line, "id"));
	kheo_assign a[64];
	char bufs[64][64];
	const char *k;
	size_t n = 0;

	if (!table || !id || !json_is_object(fields))
		return kheo__error(db, KHEO_EINVAL,
			"put needs table, id and fields");
	json_object_foreach(fields, k, v) {
		if (strcmp(k, "updated_by") == 0)
			continue;
		if (n == 64)
			return kheo__error(db, KHEO_ELIMIT, "too many fields");
		a[n].field = k;
		a[n].op = KHEO_ASSIGN_SET;
		if (scalar_text(v, bufs[n], sizeof(bufs[n]), &a[n].value) < 0)
			return kheo__error(db, KHEO_EINVAL,
				"field %s is not a scalar", k);
		n++;
	}
	{
		int err = kheo_put(db, NULL, table, id, a, n);

		st->puts += err == KHEO_OK;
		return err;
	}
}

/* Is the record here and alive?  (Trace semantics: else a no-op.) */
static int alive(kheo_db *db, const char *table, const char *id)
{
	char *json = NULL;
	int yes;

	if (kheo_get_json(db, &json, table, id) < 0)
		return 0;
	yes = strstr(json, "\"_deleted\": true") == NULL;
	kheo_free(json);
	return yes;
}

static int import_line(kheo_db *db, json_t *line, kheo_import_stats *st)
{
	const char *op = json_string_value(json_object_get(line, "op"));
	const char *table = json_string_value(json_object_get(line, "table"));
	const char *id = json_string_value(json_object_get(line, "id"));
	char buf[64];

	if (!op)
		return kheo__error(db, KHEO_EINVAL, "no \"op\"");
	if (strcmp(op, "put") == 0)
		return import_put(db, line, st);
	if (strcmp(op, "set") == 0 || strcmp(op, "del") == 0) {
		const char *field =
			json_string_value(json_object_get(line, "field"));
		kheo_assign a;

		if (!table || !id)
			return kheo__error(db, KHEO_EINVAL,
				"%s needs table and id", op);
		if (!alive(db, table, id) ||
		    (field && strcmp(field, "updated_by") == 0)) {
			st->skipped++;
			return KHEO_OK;
		}
		if (op[0] == 'd') {
			int err = kheo_delete(db, table, id);

			st->deletes += err == KHEO_OK;
			return err;
		}
		if (!field || scalar_text(json_object_get(line, "value"), buf,
				      sizeof(buf), &a.value) < 0)
			return kheo__error(db, KHEO_EINVAL,
				"set needs a field and a scalar value");
		a.field = field;
		a.op = KHEO_ASSIGN_SET;
		{
			int err = kheo_set(db, table, id, &a, 1);

			st->sets += err == KHEO_OK;
			return err;
		}
	}
	st->skipped++; /* topology, sync, end */
	return KHEO_OK;
}

KHEO_EXTERN int kheo_import_jsonl(kheo_db *db, const char *path,
	kheo_import_stats *st)
{
	kheo_import_stats local = { 0 };
	char *text = NULL;
	size_t cap = 0, batch = 0;
	ssize_t len;
	FILE *f;
	int err = KHEO_OK;

	kheo__clear(db);
	if (!st)
		st = &local;
	if (!(f = fopen(path, "r")))
		return kheo__error(db, KHEO_EIO, "%s: %s", path,
			strerror(errno));
	if ((err = kheo_batch_begin(db)) < 0)
		goto done;
	while ((len = getline(&text, &cap, f)) > 0) {
		json_error_t jerr;
		json_t *line;

		st->lines++;
		if (len == 1 && text[0] == '\n')
			continue;
		line = json_loadb(text, (size_t)len, 0, &jerr);
		if (!line) {
			err = kheo__error(db, KHEO_EINVAL, "%s:%zu: %s", path,
				st->lines, jerr.text);
			break;
		}
		err = import_line(db, line, st);
		json_decref(line);
		if (err < 0) {
			char msg[sizeof(db->errmsg)];

			snprintf(msg, sizeof(msg), "%s", db->errmsg);
			kheo__error(db, err, "%s:%zu: %s", path, st->lines,
				msg);
			break;
		}
		if (++batch == IMPORT_BATCH) {
			if ((err = kheo_batch_commit(db)) < 0 ||
			    (err = kheo_batch_begin(db)) < 0)
				break;
			batch = 0;
		}
	}
	if (db->in_tx) {
		/* keep the lines before a refused one: they were fine */
		char msg[sizeof(db->errmsg)];
		int cerr;

		snprintf(msg, sizeof(msg), "%s", db->errmsg);
		cerr = kheo_batch_commit(db);
		if (err == KHEO_OK)
			err = cerr;
		else
			kheo__error(db, err, "%s", msg);
	}
done:
	free(text);
	fclose(f);
	return err;
}
