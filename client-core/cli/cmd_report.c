/*
 * cmd_report.c - `kheo report`: the library's report JSON (kheo_report_json)
 * as a table for people, CSV for spreadsheets, JSON for programs, or an
 * XLSX workbook (libxlsxwriter) for the office.
 *
 * Tables and workbooks carry the labels (Vietnamese unless --lang en);
 * CSV headers and JSON keys are the schema's names, never translated.  CSV
 * starts with a UTF-8 byte-order mark so Excel reads Vietnamese right, and
 * ends its lines with CRLF (RFC 4180).
 */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xlsxwriter.h>

/* Room for any one cell: a unit path is at most 255 bytes */
#define CELL_MAX 320

typedef struct report {
	json_t *root, *by, *measures, *rows, *total, *columns, *values;
} report;

static int report_load(report *r, const char *json)
{
	json_t *labels;

	if (!(r->root = json_loads(json, 0, NULL)))
		return -1;
	r->by = json_object_get(r->root, "by");
	r->measures = json_object_get(r->root, "measures");
	r->rows = json_object_get(r->root, "rows");
	r->total = json_object_get(r->root, "total");
	labels = json_object_get(r->root, "labels");
	r->columns = json_object_get(labels, "columns");
	r->values = json_object_get(labels, "values");
	return 0;
}

/* A dimension's or a measure's value as text (schema names). */
static void cell_text(json_t *v, char *out, size_t n)
{
	if (json_is_string(v))
		snprintf(out, n, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(out, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else
		snprintf(out, n, "%s", "");
}

/* The label for people of dimension `dim`'s value v. */
static const char *value_label(const report *r, const char *dim, json_t *v,
	char *buf, size_t n)
{
	json_t *l;

	cell_text(v, buf, n);
	if (json_is_null(v))
		snprintf(buf, n, "%s", "null");
	l = json_object_get(json_object_get(r->values, dim), buf);
	if (json_is_string(l))
		return json_string_value(l);
	return buf;
}

static const char *column_label(const report *r, const char *name)
{
	json_t *l = json_object_get(r->columns, name);

	return json_is_string(l) ? json_string_value(l) : name;
}

/* ------------------------------------------------------------------ table */

/* Columns a terminal gives to UTF-8 text (NFC Vietnamese: one each). */
static size_t width(const char *s)
{
	const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
	utf8proc_int32_t cp;
	size_t w = 0;

	while (*p) {
		utf8proc_ssize_t k = utf8proc_iterate(p, -1, &cp);

		if (k <= 0)
			return w + strlen((const char *)p);
		w += (size_t)(utf8proc_charwidth(cp) > 0 ? utf8proc_charwidth(cp)
							 : 0);
		p += k;
	}
	return w;
}

static void pad(FILE *f, const char *s, size_t w, int right)
{
	size_t have = width(s);

	if (right)
		for (; have < w; have++)
			fputc(' ', f);
	fputs(s, f);
	if (!right)
		for (; have < w; have++)
			fputc(' ', f);
}

static void print_table(const report *r, FILE *f)
{
	size_t nby = json_array_size(r->by), nm = json_array_size(r->measures);
	size_t ncol = nby + nm, nrow = json_array_size(r->rows) + 1, i, k;
	char ***cells = calloc(nrow, sizeof(*cells)), buf[CELL_MAX];
	size_t *w = calloc(ncol ? ncol : 1, sizeof(*w));

	if (!cells || !w) {
		free(cells);
		free(w);
		return;
	}
	for (i = 0; i < nrow; i++) {
		json_t *row = i + 1 < nrow ? json_array_get(r->rows, i)
					   : r->total;

		cells[i] = calloc(ncol ? ncol : 1, sizeof(**cells));
		for (k = 0; cells[i] && k < ncol; k++) {
			const char *name = json_string_value(json_array_get(
				k < nby ? r->by : r->measures,
				k < nby ? k : k - nby));

			if (k < nby && i + 1 == nrow)
				cells[i][k] = strdup(k == 0 ? column_label(r,
						"total") : "");
			else if (k < nby)
				cells[i][k] = strdup(value_label(r, name,
					json_object_get(row, name), buf,
					sizeof(buf)));
			else {
				cell_text(json_object_get(row, name), buf,
					sizeof(buf));
				cells[i][k] = strdup(buf);
			}
		}
	}
	for (k = 0; k < ncol; k++) {
		const char *name = json_string_value(json_array_get(
			k < nby ? r->by : r->measures, k < nby ? k : k - nby));

		w[k] = width(column_label(r, name));
		for (i = 0; i < nrow; i++)
			if (cells[i] && cells[i][k] && width(cells[i][k]) > w[k])
				w[k] = width(cells[i][k]);
	}
	for (k = 0; k < ncol; k++) {
		const char *name = json_string_value(json_array_get(
			k < nby ? r->by : r->measures, k < nby ? k : k - nby));

		if (k)
			fputs("  ", f);
		pad(f, column_label(r, name), w[k], k >= nby);
	}
	fputc('\n', f);
	for (k = 0; k < ncol; k++) {
		size_t j;

		if (k)
			fputs("  ", f);
		for (j = 0; j < w[k]; j++)
			fputc('-', f);
	}
	fputc('\n', f);
	for (i = 0; i < nrow; i++) {
		for (k = 0; cells[i] && k < ncol; k++) {
			if (k)
				fputs("  ", f);
			pad(f, cells[i][k] ? cells[i][k] : "", w[k], k >= nby);
			free(cells[i][k]);
		}
		fputc('\n', f);
		free(cells[i]);
	}
	free(cells);
	free(w);
}

/* The models counted as overdue, one line each, under the table. */
static void print_overdue(const report *r, FILE *f)
{
	json_t *list = json_object_get(r->root, "overdue_models"), *m;
	int en = strcmp(json_string_value(json_object_get(r->root, "lang")),
		"en") == 0;
	size_t i;

	if (!list)
		return;
	fprintf(f, "\n%s (%zu):\n", en ? "Models with no inspection or "
		"supervision" : "Mô hình chưa được kiểm tra, giám sát",
		json_array_size(list));
	json_array_foreach(list, i, m) {
		json_t *last = json_object_get(m, "last_visit");
		json_t *unit = json_object_get(m, "unit_name");

		if (!json_is_string(unit))
			unit = json_object_get(m, "unit");
		fprintf(f, "  %.8s  %s: %s  (%s %s)\n",
			json_string_value(json_object_get(m, "id")),
			json_string_value(unit),
			json_string_value(json_object_get(m, "name"))
				? json_string_value(json_object_get(m, "name"))
				: "",
			en ? "last visit" : "lần cuối",
			json_is_string(last) ? json_string_value(last)
					     : (en ? "never" : "chưa có"));
	}
}

/* -------------------------------------------------------------------- CSV */

/* One CSV field: quoted when it holds a comma, a quote or a line break. */
static void csv_field(FILE *f, const char *s, int first)
{
	if (!first)
		fputc(',', f);
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static void print_csv(const report *r, FILE *f)
{
	size_t nby = json_array_size(r->by), nm = json_array_size(r->measures);
	size_t i, k, nrow = json_array_size(r->rows) + 1;
	char buf[CELL_MAX];

	fputs("\xEF\xBB\xBF", f);
	for (k = 0; k < nby; k++) {
		const char *d = json_string_value(json_array_get(r->by, k));

		csv_field(f, d, k == 0);
		if (strcmp(d, "unit") == 0)
			csv_field(f, "unit_name", 0);
	}
	for (k = 0; k < nm; k++)
		csv_field(f, json_string_value(json_array_get(r->measures, k)),
			nby == 0 && k == 0);
	fputs("\r\n", f);
	for (i = 0; i < nrow; i++) {
		json_t *row = i + 1 < nrow ? json_array_get(r->rows, i)
					   : r->total;

		for (k = 0; k < nby; k++) {
			const char *d = json_string_value(json_array_get(r->by,
				k));
			json_t *v = json_object_get(row, d);

			if (i + 1 == nrow)
				snprintf(buf, sizeof(buf), "%s", k == 0 ?
					"total" : "");
			else
				cell_text(v, buf, sizeof(buf));
			csv_field(f, buf, k == 0);
			if (strcmp(d, "unit") == 0) {
				char lb[CELL_MAX];

				csv_field(f, i + 1 == nrow ? "" :
					value_label(r, d, v, lb, sizeof(lb)), 0);
			}
		}
		for (k = 0; k < nm; k++) {
			cell_text(json_object_get(row, json_string_value(
				json_array_get(r->measures, k))), buf,
				sizeof(buf));
			csv_field(f, buf, nby == 0 && k == 0);
		}
		fputs("\r\n", f);
	}
}

/* ------------------------------------------------------------------- XLSX */

/* With --list, a second sheet naming the overdue models. */
static void xlsx_overdue(const report *r, lxw_workbook *wb, lxw_format *bold,
	int en)
{
	json_t *list = json_object_get(r->root, "overdue_models"), *m;
	static const char *const keys[] = { "unit_name", "name", "status",
		"last_visit", "id" };
	const char *head_vi[] = { "Đơn vị", "Tên mô hình", "Trạng thái",
		"Lần kiểm tra, giám sát cuối", "Mã" };
	const char *head_en[] = { "Unit", "Model", "Status",
		"Last inspection or supervision", "Id" };
	lxw_worksheet *ws;
	size_t i, k;

	if (!list)
		return;
	ws = workbook_add_worksheet(wb, en ? "No recent visit"
					   : "Chưa kiểm tra");
	for (k = 0; k < 5; k++) {
		worksheet_write_string(ws, 0, (lxw_col_t)k,
			en ? head_en[k] : head_vi[k], bold);
		worksheet_set_column(ws, (lxw_col_t)k, (lxw_col_t)k,
			k == 1 ? 48 : 24, NULL);
	}
	json_array_foreach(list, i, m) {
		for (k = 0; k < 5; k++) {
			json_t *v = json_object_get(m, keys[k]);

			if (k == 0 && !json_is_string(v))
				v = json_object_get(m, "unit");
			if (k == 2)
				v = json_object_get(m, "status_label");
			if (json_is_string(v))
				worksheet_write_string(ws, (lxw_row_t)(1 + i),
					(lxw_col_t)k, json_string_value(v),
					NULL);
			else if (k == 3)
				worksheet_write_string(ws, (lxw_row_t)(1 + i),
					(lxw_col_t)k, en ? "never" : "chưa có",
					NULL);
		}
	}
}

static int write_xlsx(const report *r, const char *path)
{
	size_t nby = json_array_size(r->by), nm = json_array_size(r->measures);
	size_t nrow = json_array_size(r->rows) + 1, i, k;
	int en = strcmp(json_string_value(json_object_get(r->root, "lang")),
		"en") == 0;
	lxw_workbook *wb = workbook_new(path);
	lxw_worksheet *ws;
	lxw_format *bold;
	lxw_error e;
	char title[256], buf[CELL_MAX];
	const char *from = json_string_value(json_object_get(r->root, "from"));
	const char *to = json_string_value(json_object_get(r->root, "to"));
	const char *unit = json_string_value(json_object_get(r->root, "unit"));

	if (!wb) {
		fprintf(stderr, "kheo report: cannot write %s\n", path);
		return EXIT_REFUSED;
	}
	ws = workbook_add_worksheet(wb, en ? "Report" : "Báo cáo");
	bold = workbook_add_format(wb);
	format_set_bold(bold);
	snprintf(title, sizeof(title), "%s%s%s%s%s%s%s",
		en ? "Models" : "Mô hình",
		unit && *unit ? (en ? ", unit " : ", đơn vị ") : "",
		unit && *unit ? unit : "",
		from || to ? (en ? ", from " : ", từ ") : "",
		from ? from : "…", from || to ? (en ? " to " : " đến ") : "",
		from || to ? (to ? to : "…") : "");
	worksheet_write_string(ws, 0, 0, title, bold);
	for (k = 0; k < nby + nm; k++) {
		const char *name = json_string_value(json_array_get(
			k < nby ? r->by : r->measures, k < nby ? k : k - nby));

		worksheet_write_string(ws, 2, (lxw_col_t)k,
			column_label(r, name), bold);
		worksheet_set_column(ws, (lxw_col_t)k, (lxw_col_t)k,
			k < nby ? 28 : 16, NULL);
	}
	for (i = 0; i < nrow; i++) {
		json_t *row = i + 1 < nrow ? json_array_get(r->rows, i)
					   : r->total;
		lxw_row_t y = (lxw_row_t)(3 + i);
		lxw_format *fmt = i + 1 == nrow ? bold : NULL;

		for (k = 0; k < nby; k++) {
			const char *d = json_string_value(json_array_get(r->by,
				k));

			if (i + 1 == nrow)
				worksheet_write_string(ws, y, (lxw_col_t)k,
					k == 0 ? column_label(r, "total") : "",
					fmt);
			else
				worksheet_write_string(ws, y, (lxw_col_t)k,
					value_label(r, d, json_object_get(row,
						d), buf, sizeof(buf)), NULL);
		}
		for (k = 0; k < nm; k++)
			worksheet_write_number(ws, y, (lxw_col_t)(nby + k),
				(double)json_integer_value(json_object_get(row,
					json_string_value(json_array_get(
						r->measures, k)))), fmt);
	}
	xlsx_overdue(r, wb, bold, en);
	if ((e = workbook_close(wb)) != LXW_NO_ERROR) {
		fprintf(stderr, "kheo report: %s: %s\n", path,
			lxw_strerror(e));
		return EXIT_REFUSED;
	}
	return EXIT_OK;
}

/* ---------------------------------------------------------------- command */

int cmd_report(cli *c)
{
	static const char line[] = "report [--by unit,kind,field,status,level,"
		"year] [--unit PREFIX] [--depth N] [--from DATE] [--to DATE] "
		"[--overdue MONTHS [--list]] [--as-of DATE] [--lang vi|en] "
		"[--format table|csv|json|xlsx] [--out FILE]";
	kheo_report_options o = KHEO_REPORT_OPTIONS_INIT;
	const char *format = c->json ? "json" : "table", *out = NULL;
	kheo_db *db;
	char *json;
	report r = { 0 };
	FILE *f = stdout;
	int i, rc;

	for (i = 1; i < c->argc; i++) {
		const char *a = c->argv[i], *v = i + 1 < c->argc
							 ? c->argv[i + 1]
							 : NULL;
		char *end;

		if (strcmp(a, "--list") == 0) {
			o.list_overdue = 1;
			continue;
		}
		if (!v)
			return cli_usage(line);
		if (strcmp(a, "--by") == 0)
			o.by = v;
		else if (strcmp(a, "--unit") == 0)
			o.unit = v;
		else if (strcmp(a, "--from") == 0)
			o.from = v;
		else if (strcmp(a, "--to") == 0)
			o.to = v;
		else if (strcmp(a, "--as-of") == 0)
			o.as_of = v;
		else if (strcmp(a, "--lang") == 0)
			o.lang = v;
		else if (strcmp(a, "--format") == 0)
			format = v;
		else if (strcmp(a, "--out") == 0)
			out = v;
		else if (strcmp(a, "--depth") == 0 ||
			 strcmp(a, "--overdue") == 0) {
			long n = strtol(v, &end, 10);

			if (*end || n <= 0 || n > 1200) {
				fprintf(stderr, "kheo report: %s %s: a number "
					"from 1 to 1200\n", a, v);
				return EXIT_USAGE;
			}
			if (a[2] == 'd')
				o.unit_depth = (int)n;
			else
				o.overdue_months = (int)n;
		} else
			return cli_usage(line);
		i++;
	}
	if (strcmp(format, "table") != 0 && strcmp(format, "csv") != 0 &&
	    strcmp(format, "json") != 0 && strcmp(format, "xlsx") != 0) {
		fprintf(stderr, "kheo report: --format %s: one of table, csv, "
			"json, xlsx\n", format);
		return EXIT_USAGE;
	}
	if (o.list_overdue && !o.overdue_months) {
		fprintf(stderr, "kheo report: --list lists overdue models: "
			"give --overdue MONTHS\n");
		return EXIT_USAGE;
	}
	if (strcmp(format, "xlsx") == 0 && !out) {
		fprintf(stderr, "kheo report: --format xlsx needs --out FILE\n");
		return EXIT_USAGE;
	}
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (kheo_report_json(db, &o, &json) < 0) {
		rc = cli_fail(db, "report");
		kheo_db_close(db);
		return rc;
	}
	kheo_db_close(db);
	if (report_load(&r, json) < 0) {
		kheo_free(json);
		fprintf(stderr, "kheo report: the library's JSON did not "
			"parse\n");
		return EXIT_REFUSED;
	}
	if (strcmp(format, "xlsx") == 0) {
		rc = write_xlsx(&r, out);
	} else {
		if (out && !(f = fopen(out, "wb"))) {
			fprintf(stderr, "kheo report: %s: cannot write\n", out);
			rc = EXIT_REFUSED;
		} else {
			if (strcmp(format, "json") == 0)
				fprintf(f, "%s\n", json);
			else if (strcmp(format, "csv") == 0)
				print_csv(&r, f);
			else {
				print_table(&r, f);
				print_overdue(&r, f);
			}
			if (out && fclose(f) != 0) {
				fprintf(stderr, "kheo report: %s: write "
					"failed\n", out);
				rc = EXIT_REFUSED;
			}
		}
	}
	json_decref(r.root);
	kheo_free(json);
	return rc;
}
