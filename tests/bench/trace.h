/*
 * trace.h - what every benchmark that replays a ../shared/bench trace
 * needs: a monotonic clock, and one trace edit (put, set, del of a
 * model) applied to a node as a local edit, the way the trace format
 * says (an edit of a record absent or deleted here is a no-op).
 *
 * Header-only, as daemons.h: each bench includes it once.
 */
#ifndef KHEO_BENCH_TRACE_H
#define KHEO_BENCH_TRACE_H

#include "kheo.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TRACE_FN static __attribute__((unused))

/* fields a put carries at most (the model table has fewer) */
#define TRACE_FIELDS_MAX 16

TRACE_FN double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A JSON scalar as the CLI would type it: strings as they are, numbers
 * in the shortest form that reads back the same. */
TRACE_FN const char *trace_text(json_t *v, char *buf, size_t n)
{
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v)) {
		snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	} else if (json_is_real(v)) {
		snprintf(buf, n, "%.15g", json_real_value(v));
		if (strtod(buf, NULL) != json_real_value(v))
			snprintf(buf, n, "%.17g", json_real_value(v));
	} else {
		snprintf(buf, n, "%s", json_is_true(v) ? "true" : "false");
	}
	return buf;
}

/* The trace line's "op" as one letter: 'p' put, 's' set, 'd' del, 'y'
 * sync, 't' topology, 0 anything else. */
TRACE_FN int trace_op(json_t *line)
{
	const char *op = json_string_value(json_object_get(line, "op"));

	if (!op)
		return 0;
	if (strcmp(op, "put") == 0)
		return 'p';
	if (strcmp(op, "set") == 0)
		return 's';
	if (strcmp(op, "del") == 0)
		return 'd';
	if (strcmp(op, "sync") == 0)
		return 'y';
	if (strcmp(op, "topology") == 0)
		return 't';
	return 0;
}

/*
 * Apply a put, set or del line to db as a local edit: 1 when applied, 0
 * when it is a no-op (another op, `updated_by`, which kheo records
 * itself, or a record absent or deleted here), a KHEO_E* code when the
 * node refused it (kheo_errmsg says why).
 */
TRACE_FN int trace_edit(kheo_db *db, json_t *line)
{
	const char *id = json_string_value(json_object_get(line, "id"));
	kheo_assign a[TRACE_FIELDS_MAX];
	char bufs[TRACE_FIELDS_MAX][64];
	size_t k = 0;
	int err;

	switch (trace_op(line)) {
	case 'p': {
		json_t *fields = json_object_get(line, "fields"), *v;
		const char *key;

		json_object_foreach(fields, key, v) {
			if (k == TRACE_FIELDS_MAX ||
			    strcmp(key, "updated_by") == 0)
				continue;
			a[k].field = key;
			a[k].op = KHEO_ASSIGN_SET;
			a[k].value = trace_text(v, bufs[k], sizeof(bufs[k]));
			k++;
		}
		err = kheo_put(db, NULL, "model", id, a, k);
		break;
	}
	case 's':
		a[0].field = json_string_value(json_object_get(line, "field"));
		if (!a[0].field || strcmp(a[0].field, "updated_by") == 0)
			return 0;
		a[0].op = KHEO_ASSIGN_SET;
		a[0].value = trace_text(json_object_get(line, "value"),
			bufs[0], sizeof(bufs[0]));
		err = kheo_set(db, "model", id, a, 1);
		break;
	case 'd':
		err = kheo_delete(db, "model", id);
		break;
	default:
		return 0;
	}
	/* absent or deleted here: a no-op, as the trace format says */
	if (err == KHEO_ENOTFOUND ||
	    (err == KHEO_EINVAL && strstr(kheo_errmsg(db), "deleted")))
		return 0;
	return err < 0 ? err : 1;
}

/* One line of a trace, loaded: the benches that replay it more than
 * once (bench_core, bench_audit) hold the whole trace in memory. */
typedef struct trace_line {
	int op;              /* as trace_op */
	char dev[32], dev2[32]; /* the device; a sync's two ends */
	char id[33];
	char field[32];      /* a set's field */
	json_t *j;           /* the parsed line */
} trace_line;

/* Every put, set, del and sync line of the trace at path, in order
 * (*n of them); exits with a message when the file cannot be read. */
TRACE_FN trace_line *trace_load(const char *path, size_t *n)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t cap = 0, count = 0, room = 0;
	trace_line *lines = NULL;

	if (!f) {
		fprintf(stderr, "%s: cannot open\n", path);
		exit(1);
	}
	while (getline(&text, &cap, f) > 0) {
		json_t *j = json_loads(text, 0, NULL);
		trace_line *l;
		int op;

		if (!j) {
			fprintf(stderr, "%s: line %zu is not JSON\n", path,
				count + 1);
			exit(1);
		}
		op = trace_op(j);
		if (op != 'p' && op != 's' && op != 'd' && op != 'y') {
			json_decref(j);
			continue;
		}
		if (count == room) {
			room = room ? 2 * room : 4096;
			if (!(lines = realloc(lines, room * sizeof(*lines)))) {
				fprintf(stderr, "%s: out of memory\n", path);
				exit(1);
			}
		}
		l = &lines[count++];
		memset(l, 0, sizeof(*l));
		l->op = op;
		l->j = j;
		if (op == 'y') {
			snprintf(l->dev, sizeof(l->dev), "%s",
				json_string_value(json_object_get(j, "a")));
			snprintf(l->dev2, sizeof(l->dev2), "%s",
				json_string_value(json_object_get(j, "b")));
			continue;
		}
		snprintf(l->dev, sizeof(l->dev), "%s",
			json_string_value(json_object_get(j, "dev")));
		snprintf(l->id, sizeof(l->id), "%s",
			json_string_value(json_object_get(j, "id")));
		if (op == 's')
			snprintf(l->field, sizeof(l->field), "%s",
				json_string_value(json_object_get(j, "field")));
	}
	free(text);
	fclose(f);
	*n = count;
	return lines;
}

#endif
