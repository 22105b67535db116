/*
 * report.c - the figures an office reports upward, and search that folds
 * Vietnamese: counts of models grouped by unit, kind, field, status, level
 * or year, computed with SQL on the materialised tables; models with no
 * recent inspection or supervision visit; `kheo_fold`, the SQL function
 * behind `kheo ls --search`.
 *
 * Output is JSON whose keys and values are the schema's names, never
 * translated, plus a "labels" object with the words for people (Vietnamese
 * or English, from the schema and sys_unit): the CLI builds tables, CSV and
 * XLSX from it.  Nothing here writes.
 */
#include "internal.h"
#include "alloc.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

/* ------------------------------------------------------------------ folding */

/*
 * Fold text for search: NFC forms and compatibility forms alike, case
 * folded, marks stripped (tones and the hook, horn and breve), and "đ"
 * made "d", which Unicode does not decompose: "Đắk Nông" -> "dak nong".
 * Returns a malloc'd NUL-terminated string, or NULL (invalid UTF-8, or out
 * of memory).
 */
static char *fold(const uint8_t *p, size_t n)
{
	utf8proc_uint8_t *out = NULL;
	utf8proc_ssize_t len;
	uint8_t *w, *r;

	len = utf8proc_map(p, (utf8proc_ssize_t)n, &out,
		UTF8PROC_COMPAT | UTF8PROC_DECOMPOSE | UTF8PROC_STRIPMARK |
		UTF8PROC_CASEFOLD);
	if (len < 0)
		return NULL;
	/* đ (U+0111, C4 91) and Đ folded to it: one byte "d" for two */
	for (r = w = out; *r; ) {
		if (r[0] == 0xc4 && r[1] == 0x91) {
			*w++ = 'd';
			r += 2;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
	return (char *)out;
}

static void sql_fold(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const unsigned char *p;
	char *f;

	(void)argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
		sqlite3_result_null(ctx);
		return;
	}
	p = sqlite3_value_text(argv[0]);
	if (!p) {
		sqlite3_result_error_nomem(ctx);
		return;
	}
	if (!(f = fold(p, (size_t)sqlite3_value_bytes(argv[0])))) {
		sqlite3_result_error(ctx, "kheo_fold: not UTF-8", -1);
		return;
	}
	sqlite3_result_text(ctx, f, -1, free);
}

/* kheo_unit_prefix(unit, n): the unit's first n segments ("" for 0). */
static void sql_unit_prefix(sqlite3_context *ctx, int argc,
	sqlite3_value **argv)
{
	const char *u = (const char *)sqlite3_value_text(argv[0]);
	sqlite3_int64 n = sqlite3_value_int64(argv[1]);
	size_t len = 0;

	(void)argc;
	if (!u) {
		sqlite3_result_null(ctx);
		return;
	}
	while (n > 0 && u[len]) {
		len += strcspn(u + len, "/");
		if (--n > 0 && u[len] == '/')
			len++;
	}
	sqlite3_result_text(ctx, u, (int)len, SQLITE_TRANSIENT);
}

int kheo__report_register(kheo_db *db)
{
	int rc = sqlite3_create_function(db->sql, "kheo_fold", 1,
		SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
		sql_fold, NULL, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db->sql, "kheo_unit_prefix", 2,
			SQLITE_UTF8 | SQLITE_DETERMINISTIC |
				SQLITE_INNOCUOUS, NULL, sql_unit_prefix, NULL,
			NULL);
	return rc == SQLITE_OK ? KHEO_OK : kheo__sqlerr(db, rc, "functions");
}

/*
 * " AND (kheo_fold(field) LIKE ?N ESCAPE '\' OR ...)" over the table's text
 * fields, for `query` folded with its runs of spaces made one: a record
 * matches when one of its text fields holds the phrase.  *pattern (the
 * caller kheo__free's it) is what ?N binds to.
 */
int kheo__search_sql(kheo_db *db, kheo_buf *sql, const kheo_stable *t,
	const char *query, int param, char **pattern)
{
	char *folded = fold((const uint8_t *)query, strlen(query)), *pat;
	char part[160];
	size_t i, k = 0, f, any = 0;
	int space = 1;

	*pattern = NULL;
	if (!folded)
		return kheo__error(db, KHEO_EINVAL, "search: not UTF-8");
	if (!(pat = kheo__malloc(2 * strlen(folded) + 3))) {
		free(folded);
		return KHEO_ENOMEM;
	}
	pat[k++] = '%';
	for (i = 0; folded[i]; i++) {
		char ch = folded[i] == '\t' ? ' ' : folded[i];

		if (ch == ' ' && space)
			continue;
		space = ch == ' ';
		if (ch == '%' || ch == '_' || ch == '\\')
			pat[k++] = '\\';
		pat[k++] = ch;
	}
	if (k > 1 && pat[k - 1] == ' ')
		k--;
	pat[k++] = '%';
	pat[k] = '\0';
	free(folded);
	*pattern = pat;
	kheo_buf_put(sql, " AND (", 6);
	for (f = 0; f < t->nfields; f++) {
		if (t->fields[f].type != KHEO_F_TEXT || t->fields[f].is_set)
			continue;
		snprintf(part, sizeof(part),
			"%skheo_fold(\"%s\") LIKE ?%d ESCAPE '\\'",
			any++ ? " OR " : "", t->fields[f].name, param);
		kheo_buf_put(sql, part, strlen(part));
	}
	if (!any)
		kheo_buf_put(sql, "0", 1);
	kheo_buf_put(sql, ")", 1);
	return sql->oom ? KHEO_ENOMEM : KHEO_OK;
}

/* ----------------------------------------------------------------- reports */

static const char *const dims[] = { "unit", "kind", "field", "status",
	"level", "year" };
#define NDIMS (sizeof(dims) / sizeof(dims[0]))

typedef struct query {
	const kheo_report_options *o;
	const char *lang;
	size_t by[NDIMS]; /* indexes into dims, in the order asked */
	size_t nby;
	size_t prefix_depth; /* segments of o->unit */
	size_t unit_depth;   /* --by unit rolls up to this many segments */
} query;

static size_t segments(const char *unit)
{
	size_t n = unit[0] ? 1 : 0;

	for (; *unit; unit++)
		n += *unit == '/';
	return n;
}

/* Is s a real calendar date written YYYY-MM-DD? */
static int valid_date(const char *s)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
		30, 31 };
	int y, m, d, i, leap;

	if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return 0;
	for (i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return 0;
	y = atoi(s);
	m = atoi(s + 5);
	d = atoi(s + 8);
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m >= 1 && m <= 12 && d >= 1 &&
	       d <= days[m - 1] + (m == 2 && leap);
}

static int parse_by(kheo_db *db, query *q, const char *by)
{
	const char *p = by;

	q->nby = 0;
	while (p && *p) {
		size_t n = strcspn(p, ","), i, k;

		for (i = 0; i < NDIMS; i++)
			if (strlen(dims[i]) == n && strncmp(p, dims[i], n) == 0)
				break;
		if (i == NDIMS)
			return kheo__error(db, KHEO_EINVAL, "--by: "
				"\"%.*s\" is not one of unit, kind, field, "
				"status, level, year", (int)n, p);
		for (k = 0; k < q->nby; k++)
			if (q->by[k] == i)
				return kheo__error(db, KHEO_EINVAL, "--by: %s twice", dims[i]);
		q->by[q->nby++] = i;
		p += n;
		if (*p == ',')
			p++;
	}
	return KHEO_OK;
}

/* The SQL expression that a dimension groups by. */
static void dim_expr(const query *q, size_t d, char *out, size_t n)
{
	if (strcmp(dims[d], "unit") == 0)
		snprintf(out, n, "kheo_unit_prefix(m._unit, %zu)",
			q->unit_depth);
	else
		snprintf(out, n, "m.\"%s\"", dims[d]);
}

static json_t *value_json(sqlite3_stmt *st, int col)
{
	switch (sqlite3_column_type(st, col)) {
	case SQLITE_NULL:
		return json_null();
	case SQLITE_INTEGER:
		return json_integer(sqlite3_column_int64(st, col));
	default:
		return json_string((const char *)sqlite3_column_text(st, col));
	}
}

/* The schema's label for an enum field's value, or the value itself. */
static json_t *enum_label(const kheo_stable *t, const char *field, json_t *v,
	const char *lang)
{
	const kheo_sfield *f = kheo_schema_field(t, field);
	const char *const *labels;
	size_t i;

	if (!f || f->type != KHEO_F_ENUM || !json_is_string(v))
		return json_deep_copy(v);
	labels = strcmp(lang, "en") == 0 ? f->value_labels_en
					 : f->value_labels_vi;
	for (i = 0; labels && i < f->nvalues; i++)
		if (strcmp(f->values[i], json_string_value(v)) == 0 &&
		    labels[i])
			return json_string(labels[i]);
	return json_deep_copy(v);
}

/* A label for a dimension's value: enum labels from the schema, unit
 * names from sys_unit, otherwise the value itself. */
static json_t *label_of(kheo_db *db, const query *q, const kheo_stable *t,
	size_t d, json_t *v)
{
	const kheo_sfield *f = kheo_schema_field(t, dims[d]);
	int en = strcmp(q->lang, "en") == 0;

	if (json_is_null(v))
		return json_string(en ? "(none)" : "(chưa có)");
	if (!json_is_string(v))
		return json_deep_copy(v);
	if (f && f->type == KHEO_F_ENUM)
		return enum_label(t, dims[d], v, q->lang);
	if (strcmp(dims[d], "unit") == 0) {
		sqlite3_stmt *st;
		json_t *name = NULL;

		if (sqlite3_prepare_v2(db->sql, "SELECT name FROM sys_unit "
			    "WHERE slug = ?1 AND _deleted = 0 AND name IS NOT "
			    "NULL ORDER BY id LIMIT 1", -1, &st, NULL) ==
		    SQLITE_OK) {
			sqlite3_bind_text(st, 1, json_string_value(v), -1,
				SQLITE_STATIC);
			if (sqlite3_step(st) == SQLITE_ROW)
				name = json_string((const char *)
					sqlite3_column_text(st, 0));
			sqlite3_finalize(st);
		}
		if (name)
			return name;
	}
	return json_deep_copy(v);
}

static const char *measure_label(const char *m, const char *lang)
{
	int en = strcmp(lang, "en") == 0;

	if (strcmp(m, "models") == 0)
		return en ? "Models" : "Số mô hình";
	if (strcmp(m, "registered") == 0)
		return en ? "Registered" : "Đăng ký";
	if (strcmp(m, "recognized") == 0)
		return en ? "Recognised" : "Được công nhận";
	if (strcmp(m, "overdue") == 0)
		return en ? "No inspection or supervision"
			  : "Chưa kiểm tra, giám sát";
	return m;
}

static json_t *labels_json(const query *q, const kheo_stable *t)
{
	json_t *cols = json_object();
	static const char *const measures[] = { "models", "registered",
		"recognized", "overdue" };
	int en = strcmp(q->lang, "en") == 0;
	size_t i;

	for (i = 0; i < q->nby; i++) {
		const kheo_sfield *f = kheo_schema_field(t, dims[q->by[i]]);
		const char *l = f ? (en ? f->label_en : f->label_vi) : NULL;

		if (strcmp(dims[q->by[i]], "unit") == 0)
			l = en ? "Unit" : "Đơn vị";
		json_object_set_new(cols, dims[q->by[i]],
			json_string(l ? l : dims[q->by[i]]));
	}
	for (i = 0; i < 3; i++)
		json_object_set_new(cols, measures[i],
			json_string(measure_label(measures[i], q->lang)));
	if (q->o->overdue_months > 0) {
		char l[96];

		snprintf(l, sizeof(l), en ? "%s in %d months"
					  : "%s %d tháng",
			measure_label(measures[3], q->lang),
			q->o->overdue_months);
		json_object_set_new(cols, measures[3], json_string(l));
	}
	json_object_set_new(cols, "total", json_string(en ? "Total"
							  : "Tổng cộng"));
	return cols;
}

/* Bind the period and as-of parameters the report's SQL names. */
static void bind_params(sqlite3_stmt *st, const kheo_report_options *o,
	const char *as_of)
{
	sqlite3_bind_text(st, 1, o->unit ? o->unit : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, o->from ? o->from : "0000-00-00", -1,
		SQLITE_STATIC);
	sqlite3_bind_text(st, 3, o->to ? o->to : "9999-99-99", -1,
		SQLITE_STATIC);
	sqlite3_bind_text(st, 4, as_of, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, o->overdue_months);
}

/*
 * The measures, for the rows of `model` the WHERE keeps:
 *   models      live models under the unit prefix
 *   registered  of those, registered_on within the period
 *   recognized  recognised or replicated, recognized_on within the period
 *   overdue     (overdue_months > 0) not withdrawn, and no live inspection
 *               or supervision visit dated within overdue_months before
 *               as_of
 */
#define OVERDUE_SQL \
	"?5 > 0 AND coalesce(m.status, '') <> 'withdrawn' AND NOT EXISTS " \
	"(SELECT 1 FROM visit v WHERE v.model = m.id AND v._deleted = 0 " \
	"AND v.kind IN ('inspection', 'supervision') AND v.date > " \
	"date(?4, '-' || ?5 || ' months') AND v.date <= ?4)"

static const char measures_sql[] =
	"count(*), "
	"sum(registered_on BETWEEN ?2 AND ?3), "
	"sum(status IN ('recognized', 'replicated') AND "
	"    coalesce(recognized_on, '') BETWEEN "
	"    (CASE WHEN ?2 = '0000-00-00' THEN '' ELSE ?2 END) AND ?3), "
	"sum(" OVERDUE_SQL ")";

static const char where_sql[] =
	" FROM model m WHERE m._deleted = 0 AND (?1 = '' OR m._unit = ?1 OR "
	"substr(m._unit, 1, length(?1) + 1) = ?1 || '/')";

static void put_measures(json_t *o, sqlite3_stmt *st, int col,
	const kheo_report_options *opt)
{
	json_object_set_new(o, "models", json_integer(
		sqlite3_column_int64(st, col)));
	json_object_set_new(o, "registered", json_integer(
		sqlite3_column_int64(st, col + 1)));
	json_object_set_new(o, "recognized", json_integer(
		sqlite3_column_int64(st, col + 2)));
	if (opt->overdue_months > 0)
		json_object_set_new(o, "overdue", json_integer(
			sqlite3_column_int64(st, col + 3)));
}

/*
 * "overdue_models": which models the overdue count counted, by unit and
 * name, each with its last inspection or supervision (null if none) and
 * its unit's name from sys_unit (null if unnamed), so that an office
 * knows where to go.
 */
static int overdue_list(kheo_db *db, const kheo_report_options *o,
	const kheo_stable *t, const char *lang, const char *as_of, json_t *root)
{
	static const char sql[] =
		"SELECT m.id, m._unit, m.name, m.status, (SELECT max(v.date)"
		" FROM visit v WHERE v.model = m.id AND v._deleted = 0 AND"
		" v.kind IN ('inspection', 'supervision') AND v.date <= ?4),"
		" (SELECT s.name FROM sys_unit s WHERE s.slug = m._unit AND"
		" s._deleted = 0 ORDER BY s.id LIMIT 1)"
		" FROM model m WHERE m._deleted = 0 AND (?1 = '' OR m._unit ="
		" ?1 OR substr(m._unit, 1, length(?1) + 1) = ?1 || '/') AND "
		OVERDUE_SQL " ORDER BY m._unit, m.name, m.id";
	json_t *list = json_array();
	sqlite3_stmt *st;
	int rc;

	json_object_set_new(root, "overdue_models", list);
	if ((rc = sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL)) !=
	    SQLITE_OK)
		return kheo__sqlerr(db, rc, "overdue list");
	bind_params(st, o, as_of);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *m = json_object();
		int k;

		for (k = 0; k < 6; k++) {
			static const char *const keys[] = { "id", "unit",
				"name", "status", "last_visit", "unit_name" };

			json_object_set_new(m, keys[k], value_json(st, k));
		}
		json_object_set_new(m, "status_label", enum_label(t, "status",
			json_object_get(m, "status"), lang));
		json_array_append_new(list, m);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? KHEO_OK : kheo__sqlerr(db, rc,
		"overdue list");
}

KHEO_EXTERN int kheo_report_json(kheo_db *db,
	const kheo_report_options *o, char **out)
{
	const kheo_stable *t;
	kheo_buf sql = { 0 };
	sqlite3_stmt *st = NULL;
	json_t *root = NULL, *rows, *values, *by, *measures;
	char as_of[11], expr[64], part[128];
	query q = { 0 };
	size_t i;
	int rc, err = KHEO_OK;

	kheo__clear(db);
	*out = NULL;
	q.o = o;
	q.lang = o->lang && *o->lang ? o->lang : "vi";
	if (strcmp(q.lang, "vi") != 0 && strcmp(q.lang, "en") != 0)
		return kheo__error(db, KHEO_EINVAL, "language \"%s\": "
			"vi or en", q.lang);
	if (!(t = kheo_schema_table(db->schema, "model")) ||
	    !kheo_schema_table(db->schema, "visit"))
		return kheo__error(db, KHEO_EINVAL, "this schema has "
			"no model and visit tables");
	if (o->from && !valid_date(o->from))
		return kheo__error(db, KHEO_EINVAL, "--from %s is not a date "
			"(YYYY-MM-DD)", o->from);
	if (o->to && !valid_date(o->to))
		return kheo__error(db, KHEO_EINVAL, "--to %s is not a date "
			"(YYYY-MM-DD)", o->to);
	if (o->as_of && !valid_date(o->as_of))
		return kheo__error(db, KHEO_EINVAL, "--as-of %s is not a "
			"date (YYYY-MM-DD)", o->as_of);
	if (o->unit && *o->unit && !kheo_unit_valid(o->unit, strlen(o->unit)))
		return kheo__error(db, KHEO_EINVAL, "\"%s\" is not a "
			"unit path", o->unit);
	if (o->overdue_months < 0 || o->overdue_months > 1200)
		return kheo__error(db, KHEO_EINVAL, "overdue months "
			"%d: from 1 to 1200", o->overdue_months);
	if ((err = parse_by(db, &q, o->by)) < 0)
		return err;
	/* without --unit, units group one level below the node's own */
	q.prefix_depth = segments(o->unit && *o->unit ? o->unit : db->unit);
	q.unit_depth = o->unit_depth > 0 ? (size_t)o->unit_depth
					 : q.prefix_depth + 1;
	if (o->as_of) {
		snprintf(as_of, sizeof(as_of), "%s", o->as_of);
	} else {
		time_t now = (time_t)(kheo__now_ms(db) / 1000);
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(as_of, sizeof(as_of), "%Y-%m-%d", &tm);
	}
	if (db->in_tx && (err = kheo__flush_dirty(db)) < 0)
		return err;

	kheo_buf_put(&sql, "SELECT ", 7);
	for (i = 0; i < q.nby; i++) {
		dim_expr(&q, q.by[i], expr, sizeof(expr));
		snprintf(part, sizeof(part), "%s AS d%zu, ", expr, i);
		kheo_buf_put(&sql, part, strlen(part));
	}
	kheo_buf_put(&sql, measures_sql, strlen(measures_sql));
	kheo_buf_put(&sql, where_sql, strlen(where_sql));
	if (q.nby) {
		kheo_buf_put(&sql, " GROUP BY ", 10);
		for (i = 0; i < q.nby; i++) {
			snprintf(part, sizeof(part), "%sd%zu", i ? ", " : "",
				i);
			kheo_buf_put(&sql, part, strlen(part));
		}
		kheo_buf_put(&sql, " ORDER BY ", 10);
		for (i = 0; i < q.nby; i++) {
			snprintf(part, sizeof(part), "%sd%zu", i ? ", " : "",
				i);
			kheo_buf_put(&sql, part, strlen(part));
		}
	}
	kheo_buf_put(&sql, "", 1);
	if (sql.oom) {
		err = KHEO_ENOMEM;
		goto done;
	}

	root = json_object();
	by = json_array();
	for (i = 0; i < q.nby; i++)
		json_array_append_new(by, json_string(dims[q.by[i]]));
	json_object_set_new(root, "by", by);
	measures = json_array();
	json_array_append_new(measures, json_string("models"));
	json_array_append_new(measures, json_string("registered"));
	json_array_append_new(measures, json_string("recognized"));
	if (o->overdue_months > 0)
		json_array_append_new(measures, json_string("overdue"));
	json_object_set_new(root, "measures", measures);
	json_object_set_new(root, "unit", json_string(o->unit ? o->unit : ""));
	json_object_set_new(root, "from", o->from ? json_string(o->from)
						  : json_null());
	json_object_set_new(root, "to", o->to ? json_string(o->to)
					      : json_null());
	json_object_set_new(root, "as_of", json_string(as_of));
	if (o->overdue_months > 0)
		json_object_set_new(root, "overdue_months",
			json_integer(o->overdue_months));
	json_object_set_new(root, "lang", json_string(q.lang));
	rows = json_array();
	json_object_set_new(root, "rows", rows);
	values = json_object();

	rc = sqlite3_prepare_v2(db->sql, (const char *)sql.p, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		err = kheo__sqlerr(db, rc, "report");
		goto done;
	}
	bind_params(st, o, as_of);
	/* without dimensions the one row is the total, given below */
	while (q.nby && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *row = json_object();

		for (i = 0; i < q.nby; i++) {
			const char *d = dims[q.by[i]];
			json_t *v = value_json(st, (int)i), *labels;
			const char *key = json_is_string(v)
						  ? json_string_value(v)
						  : NULL;
			char num[32];

			if (json_is_integer(v)) {
				snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
					json_integer_value(v));
				key = num;
			}
			if (!(labels = json_object_get(values, d))) {
				labels = json_object();
				json_object_set_new(values, d, labels);
			}
			if (key && !json_object_get(labels, key))
				json_object_set_new(labels, key,
					label_of(db, &q, t, q.by[i], v));
			json_object_set_new(row, d, v);
		}
		put_measures(row, st, (int)q.nby, o);
		json_array_append_new(rows, row);
	}
	if (q.nby && rc != SQLITE_DONE) {
		err = kheo__sqlerr(db, rc, "report");
		json_decref(values);
		goto done;
	}
	sqlite3_finalize(st);
	st = NULL;

	/* the totals: the same measures without grouping */
	kheo_buf_reset(&sql);
	kheo_buf_put(&sql, "SELECT ", 7);
	kheo_buf_put(&sql, measures_sql, strlen(measures_sql));
	kheo_buf_put(&sql, where_sql, strlen(where_sql));
	kheo_buf_put(&sql, "", 1);
	if (sql.oom) {
		err = KHEO_ENOMEM;
		json_decref(values);
		goto done;
	}
	rc = sqlite3_prepare_v2(db->sql, (const char *)sql.p, -1, &st, NULL);
	if (rc != SQLITE_OK || (bind_params(st, o, as_of),
				rc = sqlite3_step(st)) != SQLITE_ROW) {
		err = kheo__sqlerr(db, rc, "report totals");
		json_decref(values);
		goto done;
	}
	{
		json_t *total = json_object(), *labels = json_object();

		put_measures(total, st, 0, o);
		json_object_set_new(root, "total", total);
		json_object_set_new(labels, "columns", labels_json(&q, t));
		json_object_set_new(labels, "values", values);
		json_object_set_new(root, "labels", labels);
	}
	if (o->overdue_months > 0 && o->list_overdue) {
		sqlite3_finalize(st);
		st = NULL;
		if ((err = overdue_list(db, o, t, q.lang, as_of, root)) < 0)
			goto done;
	}
	err = kheo__json_out(db, out, root);
	root = NULL;
done:
	json_decref(root);
	sqlite3_finalize(st);
	kheo_buf_free(&sql);
	return err;
}
