/*
 * test_schema.c - the schema module: the shipped dvk v1 schema, every
 * refusal of a bad schema file, and the checking of values (from text and
 * typed) for every field type, with the exact message of each refusal.
 *
 * Bad schema files and bad values are tables of cases, each run as a test
 * of its own so that the TAP output names the rule that broke.  Test
 * schemas are written with ' for " to stay readable (see parse_q).
 *
 * Not here: what the store does with a checked value (db and edit tests).
 */
#include "helpers.h"
#include "alloc.h"
#include "../../client-core/src/schema.h" /* private to libkheo */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define ERRLEN 400

static kheo_schema *dvk; /* the default schema, parsed once */

static int group_setup(void **state)
{
	char err[ERRLEN];

	(void)state;
	if (kheo_schema_parse(&dvk, kheo_schema_default_json,
		    kheo_schema_default_json_len, err, sizeof(err)) != KHEO_OK) {
		fprintf(stderr, "default schema: %s\n", err);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	kheo_schema_free(dvk);
	return 0;
}

/* Parse a schema written with ' for ". */
static int parse_q(kheo_schema **out, const char *q, char *err)
{
	size_t n = strlen(q), i;
	char *json = malloc(n + 1);
	int rc;

	assert_non_null(json);
	for (i = 0; i <= n; i++)
		json[i] = q[i] == '\'' ? '"' : q[i];
	rc = kheo_schema_parse(out, json, n, err, ERRLEN);
	free(json);
	return rc;
}

/* value_from_text on a dvk field. */
static int from_text(kheo_value *v, kheo_buf *scratch, const char *table,
	const char *field, const char *text, char *err)
{
	const kheo_stable *t = kheo_schema_table(dvk, table);
	const kheo_sfield *f;

	assert_non_null(t);
	f = kheo_schema_field(t, field);
	assert_non_null(f);
	err[0] = '\0';
	return kheo_schema_value_from_text(v, scratch, t, f, text, err,
		ERRLEN);
}

static int check(kheo_value *v, kheo_buf *scratch, const char *table,
	const char *field, char *err)
{
	const kheo_stable *t = kheo_schema_table(dvk, table);

	assert_non_null(t);
	err[0] = '\0';
	return kheo_schema_check(v, scratch, t,
		kheo_schema_field(t, field), err, ERRLEN);
}

static int points_into(const kheo_buf *b, const uint8_t *p)
{
	return b->p && p >= b->p && p < b->p + b->cap;
}

/* -------------------------------------------------------- default schema */

typedef struct want_field {
	const char *table, *name;
	kheo_ftype type;
	int is_set, required, fixed;
	const char *bounds; /* "min..max", "min..", "..max" or "" */
	const char *values; /* enum values, comma-separated */
	const char *ref;
} want_field;

static const want_field dvk_fields[] = {
	{ "model", "name", KHEO_F_TEXT, 0, 1, 0, "1..300", NULL, NULL },
	{ "model", "kind", KHEO_F_ENUM, 0, 0, 0, "",
		"collective,individual", NULL },
	{ "model", "field", KHEO_F_ENUM, 0, 0, 0, "", "economy,"
		"culture_society,defence_security,party_building", NULL },
	{ "model", "level", KHEO_F_ENUM, 0, 0, 0, "",
		"village,commune,district,province", NULL },
	{ "model", "unit", KHEO_F_UNIT, 0, 1, 1, "", NULL, NULL },
	{ "model", "status", KHEO_F_ENUM, 0, 0, 0, "", "registered,building,"
		"review,recognized,replicated,withdrawn", NULL },
	{ "model", "year", KHEO_F_INT, 0, 0, 0, "1945..2100", NULL, NULL },
	{ "model", "registered_on", KHEO_F_DATE, 0, 0, 0, "", NULL, NULL },
	{ "model", "recognized_on", KHEO_F_DATE, 0, 0, 0, "", NULL, NULL },
	{ "model", "decision_no", KHEO_F_TEXT, 0, 0, 0, "..100", NULL, NULL },
	{ "model", "decision_scan", KHEO_F_HASH, 0, 0, 0, "", NULL, NULL },
	{ "model", "owner", KHEO_F_TEXT, 0, 0, 0, "..300", NULL, NULL },
	{ "model", "description", KHEO_F_TEXT, 0, 0, 0, "..20000", NULL,
		NULL },
	{ "model", "beneficiaries", KHEO_F_INT, 0, 0, 0, "0..", NULL, NULL },
	{ "model", "lat", KHEO_F_REAL, 0, 0, 0, "-90..90", NULL, NULL },
	{ "model", "lon", KHEO_F_REAL, 0, 0, 0, "-180..180", NULL, NULL },
	{ "model", "tags", KHEO_F_TEXT, 1, 0, 0, "1..100", NULL, NULL },
	{ "model", "photos", KHEO_F_HASH, 1, 0, 0, "", NULL, NULL },
	{ "model", "review_comment", KHEO_F_TEXT, 0, 0, 0, "..5000", NULL,
		NULL },
	{ "visit", "model", KHEO_F_REF, 0, 1, 0, "", NULL, "model" },
	{ "visit", "date", KHEO_F_DATE, 0, 1, 0, "", NULL, NULL },
	{ "visit", "kind", KHEO_F_ENUM, 0, 0, 0, "",
		"inspection,supervision,review_mid,review_final", NULL },
	{ "visit", "inspector", KHEO_F_TEXT, 0, 0, 0, "..300", NULL, NULL },
	{ "visit", "rating", KHEO_F_ENUM, 0, 0, 0, "", "good,fair,weak",
		NULL },
	{ "visit", "findings", KHEO_F_TEXT, 0, 0, 0, "..20000", NULL, NULL },
	{ "visit", "unit", KHEO_F_UNIT, 0, 1, 1, "", NULL, NULL },
};

static void assert_bounds(const kheo_sfield *f, const char *bounds)
{
	char got[64];
	int n = 0;

	if (f->has_min)
		n += snprintf(got + n, sizeof(got) - (size_t)n, "%g", f->min);
	if (f->has_min || f->has_max)
		n += snprintf(got + n, sizeof(got) - (size_t)n, "..");
	if (f->has_max)
		snprintf(got + n, sizeof(got) - (size_t)n, "%g", f->max);
	if (!f->has_min && !f->has_max)
		got[0] = '\0';
	assert_string_equal(got, bounds);
}

static void default_schema_has_the_design_tables_and_fields(void **state)
{
	size_t i, j, k, nmodel = 0, nvisit = 0;

	(void)state;
	assert_string_equal(dvk->name, "dvk");
	assert_int_equal(dvk->version, 1);
	assert_int_equal(dvk->ntables, 2);
	assert_string_equal(dvk->tables[0].name, "model");
	assert_string_equal(dvk->tables[1].name, "visit");
	for (i = 0; i < sizeof(dvk_fields) / sizeof(dvk_fields[0]); i++) {
		const want_field *w = &dvk_fields[i];
		const kheo_stable *t = kheo_schema_table(dvk, w->table);
		const kheo_sfield *f = kheo_schema_field(t, w->name);
		size_t *pos = strcmp(w->table, "model") == 0 ? &nmodel
							      : &nvisit;
		char values[256] = "";

		assert_non_null(f);
		/* in the file's order, which is the order listed here */
		assert_ptr_equal(f, &t->fields[(*pos)++]);
		assert_int_equal(f->type, w->type);
		assert_int_equal(f->is_set, w->is_set);
		assert_int_equal(f->required, w->required);
		assert_int_equal(f->fixed, w->fixed);
		assert_bounds(f, w->bounds);
		if (w->values) {
			size_t n = 0;

			for (j = 0; j < f->nvalues; j++)
				n += (size_t)snprintf(values + n,
					sizeof(values) - n, "%s%s",
					j ? "," : "", f->values[j]);
			assert_string_equal(values, w->values);
		} else {
			assert_int_equal(f->nvalues, 0);
			assert_null(f->values);
		}
		if (w->ref) {
			assert_string_equal(f->ref, w->ref);
			/* resolved to the table's own name */
			assert_ptr_equal(f->ref,
				kheo_schema_table(dvk, w->ref)->name);
		} else {
			assert_null(f->ref);
		}
	}
	/* nothing more than the design lists */
	assert_int_equal(dvk->tables[0].nfields, nmodel);
	assert_int_equal(dvk->tables[1].nfields, nvisit);
	for (i = 0; i < dvk->ntables; i++)
		for (j = 0; j < dvk->tables[i].nfields; j++)
			for (k = 0; k < dvk->tables[i].fields[j].nvalues; k++)
				assert_true(kheo_name_valid(
					dvk->tables[i].fields[j].values[k],
					strlen(dvk->tables[i].fields[j]
							.values[k])));
}

/* Every label given (not defaulted to the name) and in NFC. */
static void assert_label(const char *label, const char *name)
{
	utf8proc_uint8_t *nfc;

	assert_non_null(label);
	assert_true(strcmp(label, name) != 0);
	nfc = utf8proc_NFC((const utf8proc_uint8_t *)label);
	assert_non_null(nfc);
	assert_string_equal((const char *)nfc, label);
	free(nfc);
}

static void default_schema_labels_everything_in_vi_and_en(void **state)
{
	static const struct {
		const char *table, *field, *value, *vi, *en;
	} spot[] = {
		{ "model", NULL, NULL, "Mô hình", "Model" },
		{ "visit", NULL, NULL, "Kiểm tra, giám sát", "Visit" },
		{ "model", "kind", "collective", "Tập thể", "Collective" },
		{ "model", "kind", "individual", "Cá nhân", "Individual" },
		{ "model", "field", "economy", "Kinh tế", "Economy" },
		{ "model", "field", "culture_society", "Văn hóa – xã hội",
			"Culture and society" },
		{ "model", "field", "defence_security", "Quốc phòng – an ninh",
			"Defence and security" },
		{ "model", "field", "party_building",
			"Xây dựng Đảng và hệ thống chính trị",
			"Party and political-system building" },
		{ "model", "status", "recognized", "Đã công nhận",
			"Recognised" },
		{ "model", "name", NULL, "Tên mô hình", "Name" },
		{ "model", "unit", NULL, "Đơn vị", "Unit" },
		{ "visit", "rating", "good", "Tốt", "Good" },
	};
	size_t i, j, k;

	(void)state;
	for (i = 0; i < dvk->ntables; i++) {
		const kheo_stable *t = &dvk->tables[i];

		assert_label(t->label_vi, t->name);
		assert_label(t->label_en, t->name);
		for (j = 0; j < t->nfields; j++) {
			const kheo_sfield *f = &t->fields[j];

			assert_label(f->label_vi, f->name);
			assert_label(f->label_en, f->name);
			if (f->type != KHEO_F_ENUM) {
				assert_null(f->value_labels_vi);
				continue;
			}
			for (k = 0; k < f->nvalues; k++) {
				assert_label(f->value_labels_vi[k],
					f->values[k]);
				assert_label(f->value_labels_en[k],
					f->values[k]);
			}
		}
	}
	for (i = 0; i < sizeof(spot) / sizeof(spot[0]); i++) {
		const kheo_stable *t = kheo_schema_table(dvk, spot[i].table);
		const kheo_sfield *f;

		if (!spot[i].field) {
			assert_string_equal(t->label_vi, spot[i].vi);
			assert_string_equal(t->label_en, spot[i].en);
			continue;
		}
		f = kheo_schema_field(t, spot[i].field);
		if (!spot[i].value) {
			assert_string_equal(f->label_vi, spot[i].vi);
			assert_string_equal(f->label_en, spot[i].en);
			continue;
		}
		for (k = 0; k < f->nvalues; k++)
			if (strcmp(f->values[k], spot[i].value) == 0)
				break;
		assert_true(k < f->nvalues);
		assert_string_equal(f->value_labels_vi[k], spot[i].vi);
		assert_string_equal(f->value_labels_en[k], spot[i].en);
	}
}

static void embedded_default_is_the_schema_file(void **state)
{
	size_t len;
	uint8_t *file = test_read_file("client-core/schema/dvk-v1.json",
		&len);

	(void)state;
	assert_non_null(file); /* tests run from the top of the tree */
	assert_int_equal(kheo_schema_default_json_len, len);
	assert_memory_equal(kheo_schema_default_json, file, len);
	assert_int_equal(kheo_schema_default_json[len], '\0');
	/* the parsed schema keeps a copy of its text */
	assert_int_equal(dvk->json_len, len);
	assert_ptr_not_equal(dvk->json, kheo_schema_default_json);
	assert_memory_equal(dvk->json, file, len);
	assert_int_equal(dvk->json[len], '\0');
	free(file);
}

static void parsed_schema_owns_its_strings(void **state)
{
	const char *q = "{'schema':'own','version':7,'tables':[{'name':'a',"
		"'vi':'Bảng','fields':[{'name':'x','type':'enum','values':"
		"['p',{'name':'q','vi':'Cũ','en':'Old'}]},{'name':'r',"
		"'type':'ref','ref':'a'}]}]}";
	size_t n = strlen(q), i;
	char *json = malloc(n + 1), err[ERRLEN];
	kheo_schema *s;
	const kheo_sfield *x;

	(void)state;
	for (i = 0; i <= n; i++)
		json[i] = q[i] == '\'' ? '"' : q[i];
	assert_int_equal(kheo_schema_parse(&s, json, n, err, sizeof(err)),
		KHEO_OK);
	memset(json, 'Z', n);
	free(json);
	assert_string_equal(s->name, "own");
	assert_int_equal(s->version, 7);
	assert_int_equal(s->json_len, n);
	assert_int_equal(strlen(s->json), n);
	assert_true(strncmp(s->json, "{\"schema\":\"own\"", 15) == 0);
	assert_string_equal(s->tables[0].label_vi, "Bảng");
	/* a missing label is the name */
	assert_string_equal(s->tables[0].label_en, "a");
	x = kheo_schema_field(&s->tables[0], "x");
	assert_int_equal(x->nvalues, 2);
	assert_string_equal(x->values[0], "p");
	assert_string_equal(x->values[1], "q");
	assert_string_equal(x->value_labels_vi[0], "p");
	assert_string_equal(x->value_labels_vi[1], "Cũ");
	assert_string_equal(x->value_labels_en[1], "Old");
	assert_string_equal(kheo_schema_field(&s->tables[0], "r")->ref, "a");
	kheo_schema_free(s);
	kheo_schema_free(NULL);
}

static void labels_are_stored_nfc(void **state)
{
	/* "Đắk Nông" typed with combining marks */
	const char *q = "{'schema':'t','version':1,'tables':[{'name':'t',"
		"'vi':'\xc4\x90" "a\xcc\x86\xcc\x81k No\xcc\x82ng',"
		"'fields':[{'name':'a','type':'text'}]}]}";
	kheo_schema *s;
	char err[ERRLEN];

	(void)state;
	assert_int_equal(parse_q(&s, q, err), KHEO_OK);
	assert_string_equal(s->tables[0].label_vi,
		"\xc4\x90\xe1\xba\xafk N\xc3\xb4ng");
	kheo_schema_free(s);
}

static void lookups_return_null_when_absent(void **state)
{
	const kheo_stable *t;

	(void)state;
	assert_null(kheo_schema_table(dvk, "models"));
	assert_null(kheo_schema_table(dvk, ""));
	t = kheo_schema_table(dvk, "visit");
	assert_ptr_equal(t, &dvk->tables[1]);
	assert_null(kheo_schema_field(t, "name"));
	assert_ptr_equal(kheo_schema_field(t, "rating"), &t->fields[4]);
}

/* ------------------------------------------------------ bad schema files */

#define ONE(fields) "{'schema':'t','version':1,'tables':[{'name':'t'," \
	"'fields':[" fields "]}]}"
#define A(rest) ONE("{'name':'a'," rest "}")

typedef struct bad_schema {
	const char *what;
	const char *json; /* ' for " */
	const char *msg;  /* the exact message */
} bad_schema;

static const bad_schema bad_schemas[] = {
	{ "root is not an object", "[]", "a schema is a JSON object" },
	{ "unknown top-level key",
		"{'schema':'t','version':1,'tables':[],'tabels':[]}",
		"unknown key \"tabels\"" },
	{ "no schema name", "{'version':1,'tables':[]}", "no \"schema\"" },
	{ "schema name not a string", "{'schema':1,'version':1}",
		"\"schema\" must be a string" },
	{ "bad schema name", "{'schema':'DVK','version':1}",
		"schema name is not valid ([a-z_][a-z0-9_]*)" },
	{ "version 0", "{'schema':'t','version':0}",
		"\"version\" must be an integer from 1 to 4294967295" },
	{ "version as text", "{'schema':'t','version':'1'}",
		"\"version\" must be an integer from 1 to 4294967295" },
	{ "version as real", "{'schema':'t','version':1.0}",
		"\"version\" must be an integer from 1 to 4294967295" },
	{ "version above 32 bits", "{'schema':'t','version':4294967296}",
		"\"version\" must be an integer from 1 to 4294967295" },
	{ "no version", "{'schema':'t','tables':[]}",
		"\"version\" must be an integer from 1 to 4294967295" },
	{ "no tables", "{'schema':'t','version':1,'tables':[]}",
		"\"tables\" must be a non-empty array" },
	{ "tables not an array", "{'schema':'t','version':1,'tables':{}}",
		"\"tables\" must be a non-empty array" },
	{ "table not an object", "{'schema':'t','version':1,'tables':[1]}",
		"tables[1]: must be an object" },
	{ "table without name",
		"{'schema':'t','version':1,'tables':[{'fields':[]}]}",
		"tables[1]: no \"name\"" },
	{ "bad table name",
		"{'schema':'t','version':1,'tables':[{'name':'Model'}]}",
		"tables[1]: table name \"Model\" is not valid "
		"([a-z_][a-z0-9_]*, at most 64 bytes)" },
	{ "table name too long",
		"{'schema':'t','version':1,'tables':[{'name':'"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'}]}",
		"tables[1]: table name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"...\" is not valid ([a-z_][a-z0-9_]*, at most 64 bytes)" },
	{ "reserved table name _",
		"{'schema':'t','version':1,'tables':[{'name':'_sys'}]}",
		"_sys: the name is reserved (names starting with _, kheo_, "
		"sqlite_ or sys_)" },
	{ "reserved table name kheo_",
		"{'schema':'t','version':1,'tables':[{'name':'kheo_meta'}]}",
		"kheo_meta: the name is reserved (names starting with _, kheo_, "
		"sqlite_ or sys_)" },
	{ "reserved table name sys_ (the system tables')",
		"{'schema':'t','version':1,'tables':[{'name':'sys_unit'}]}",
		"sys_unit: the name is reserved (names starting with _, kheo_, "
		"sqlite_ or sys_)" },
	{ "duplicate table",
		"{'schema':'t','version':1,'tables':[{'name':'t','fields':"
		"[{'name':'a','type':'int'}]},{'name':'t'}]}",
		"t: table defined twice" },
	{ "unknown table key",
		"{'schema':'t','version':1,'tables':[{'name':'t','feilds':[]}]}",
		"t: unknown key \"feilds\"" },
	{ "table without fields",
		"{'schema':'t','version':1,'tables':[{'name':'t'}]}",
		"t: \"fields\" must be a non-empty array" },
	{ "table with no fields", ONE(""),
		"t: \"fields\" must be a non-empty array" },
	{ "field not an object", ONE("'a'"), "t.fields[1]: must be an object" },
	{ "field without name", ONE("{'type':'int'}"),
		"t.fields[1]: no \"name\"" },
	{ "bad field name", ONE("{'name':'A b','type':'int'}"),
		"t.fields[1]: field name \"A b\" is not valid "
		"([a-z_][a-z0-9_]*, at most 64 bytes)" },
	{ "reserved field id", ONE("{'name':'id','type':'int'}"),
		"t.id: the name is reserved (id and names starting with _ "
		"belong to kheo)" },
	{ "reserved field _deleted", ONE("{'name':'_deleted','type':'bool'}"),
		"t._deleted: the name is reserved (id and names starting with "
		"_ belong to kheo)" },
	{ "duplicate field",
		ONE("{'name':'a','type':'int'},{'name':'a','type':'text'}"),
		"t.a: field defined twice" },
	{ "unknown field key", A("'type':'int','requird':true"),
		"t.a: unknown key \"requird\"" },
	{ "field without type", A("'required':true"), "t.a: no \"type\"" },
	{ "type not a string", A("'type':3"), "t.a: \"type\" must be a string" },
	{ "unknown type", A("'type':'string'"),
		"t.a: type \"string\" is not one of text, int, real, bool, "
		"date, enum, unit, ref, hash" },
	{ "required not a boolean", A("'type':'int','required':'yes'"),
		"t.a: \"required\" must be true or false" },
	{ "set not a boolean", A("'type':'int','set':1"),
		"t.a: \"set\" must be true or false" },
	{ "fixed not a boolean", A("'type':'int','fixed':null"),
		"t.a: \"fixed\" must be true or false" },
	{ "min on a bool", A("'type':'bool','min':0"),
		"t.a: \"min\" is only for int, real and text fields" },
	{ "max on a date", A("'type':'date','max':20240101"),
		"t.a: \"max\" is only for int, real and text fields" },
	{ "int bound not an integer", A("'type':'int','min':1.5"),
		"t.a: \"min\" must be an integer within +-2^53" },
	{ "int bound beyond 2^53", A("'type':'int','max':9007199254740993"),
		"t.a: \"max\" must be an integer within +-2^53" },
	{ "real bound not a number", A("'type':'real','max':'90'"),
		"t.a: \"max\" must be a number" },
	{ "negative text length", A("'type':'text','max':-1"),
		"t.a: \"max\" must be a number of characters from 0 to 1048576" },
	{ "fractional text length", A("'type':'text','min':0.5"),
		"t.a: \"min\" must be a number of characters from 0 to 1048576" },
	{ "min above max", A("'type':'int','min':5,'max':1"),
		"t.a: min 5 is above max 1" },
	{ "enum without values", A("'type':'enum'"), "t.a: enum without values" },
	{ "enum with empty values", A("'type':'enum','values':[]"),
		"t.a: enum without values" },
	{ "enum values not an array", A("'type':'enum','values':'x,y'"),
		"t.a: \"values\" must be an array" },
	{ "enum value listed twice",
		A("'type':'enum','values':['x','y',{'name':'x'}]"),
		"t.a: value \"x\" listed twice" },
	{ "bad enum value name", A("'type':'enum','values':['Tap the']"),
		"t.a: value \"Tap the\" is not valid ([a-z_][a-z0-9_]*, at most "
		"64 bytes)" },
	{ "enum value neither name nor object",
		A("'type':'enum','values':['x',2]"),
		"t.a: value 2 must be a name or an object with a name" },
	{ "enum value object without name",
		A("'type':'enum','values':[{'vi':'X'}]"), "t.a: no \"name\"" },
	{ "unknown enum value key",
		A("'type':'enum','values':[{'name':'x','label':'X'}]"),
		"t.a: unknown key \"label\"" },
	{ "values on a non-enum", A("'type':'text','values':['x']"),
		"t.a: \"values\" is only for enum fields" },
	{ "ref without table", A("'type':'ref'"), "t.a: no \"ref\"" },
	{ "ref to a missing table", A("'type':'ref','ref':'nope'"),
		"t.a: ref to a missing table \"nope\"" },
	{ "ref on a non-ref", A("'type':'text','ref':'t'"),
		"t.a: \"ref\" is only for ref fields" },
	{ "required set", A("'type':'text','set':true,'required':true"),
		"t.a: a set cannot be required (members are added after the "
		"record is made)" },
	{ "fixed set", A("'type':'hash','set':true,'fixed':true"),
		"t.a: a set cannot be fixed" },
	{ "label not a string", A("'type':'int','vi':1"),
		"t.a: \"vi\" must be a string" },
	{ "empty label", A("'type':'int','en':''"),
		"t.a: \"en\" must have 1 to 1024 bytes" },
	{ "note not a string", A("'type':'int','note':['x']"),
		"t.a: \"note\" must be a string" },
	{ "table label not a string",
		"{'schema':'t','version':1,'tables':[{'name':'t','en':false,"
		"'fields':[{'name':'a','type':'int'}]}]}",
		"t: \"en\" must be a string" },
};

static void refuses_bad_schema(void **state)
{
	const bad_schema *c = *state;
	kheo_schema *s = (kheo_schema *)&s; /* not NULL: must be reset */
	char err[ERRLEN];

	assert_int_equal(parse_q(&s, c->json, err), KHEO_EINVAL);
	assert_null(s);
	assert_string_equal(err, c->msg);
}

static void refuses_bad_json(void **state)
{
	static const char *const cases[] = {
		"{\"schema\":\"t\",",                   /* truncated */
		"{\"schema\":\"t\",\"schema\":\"u\"}",  /* duplicate key */
		"{\"schema\":\"\xff\"}",                /* invalid UTF-8 */
		"{\"schema\":\"a\\u0000b\"}",           /* NUL in a string */
		"{} {}",                                /* trailing data */
		"",
	};
	kheo_schema *s;
	char err[ERRLEN];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(kheo_schema_parse(&s, cases[i],
					 strlen(cases[i]), err, sizeof(err)),
			KHEO_EINVAL);
		assert_null(s);
		assert_true(strncmp(err, "schema JSON, line ", 18) == 0);
	}
	assert_int_equal(kheo_schema_parse(&s, cases[1], strlen(cases[1]),
				 err, sizeof(err)), KHEO_EINVAL);
	assert_non_null(strstr(err, "duplicate"));
	/* the length is the caller's, not strlen: a valid prefix is not
	 * enough */
	assert_int_equal(kheo_schema_parse(&s, kheo_schema_default_json,
				 kheo_schema_default_json_len - 3, err,
				 sizeof(err)), KHEO_EINVAL);
	assert_null(s);
}

static void refuses_schema_above_the_size_limit(void **state)
{
	size_t n = KHEO_VALUE_MAX + 1;
	char *big = malloc(n), err[ERRLEN];
	kheo_schema *s;

	(void)state;
	assert_non_null(big);
	memset(big, ' ', n);
	assert_int_equal(kheo_schema_parse(&s, big, n, err, sizeof(err)),
		KHEO_EINVAL);
	assert_null(s);
	assert_string_equal(err,
		"schema of 1048577 bytes, above the limit 1048576");
	free(big);
}

static void messages_are_cut_to_errlen(void **state)
{
	kheo_schema *s;
	char err[8];

	(void)state;
	memset(err, 'x', sizeof(err));
	assert_int_equal(kheo_schema_parse(&s, "[]", 2, err, sizeof(err)),
		KHEO_EINVAL);
	assert_string_equal(err, "a schem");
	/* and no buffer at all is fine */
	assert_int_equal(kheo_schema_parse(&s, "[]", 2, NULL, 0),
		KHEO_EINVAL);
}

static void accepts_a_schema_with_every_type(void **state)
{
	const char *q = "{'schema':'all','version':3,'tables':["
		"{'name':'b','fields':[{'name':'up','type':'ref','ref':'a',"
		"'set':true}]},"
		"{'name':'a','fields':["
		"{'name':'t','type':'text','min':0,'max':0},"
		"{'name':'i','type':'int','min':-9007199254740992},"
		"{'name':'r','type':'real','min':-0.5,'max':1e300},"
		"{'name':'f','type':'bool','required':true,'fixed':true},"
		"{'name':'d','type':'date','set':true},"
		"{'name':'e','type':'enum','values':['x']},"
		"{'name':'u','type':'unit'},"
		"{'name':'h','type':'hash'}]}]}";
	static const kheo_ftype types[] = { KHEO_F_TEXT, KHEO_F_INT,
		KHEO_F_REAL, KHEO_F_BOOL, KHEO_F_DATE, KHEO_F_ENUM, KHEO_F_UNIT,
		KHEO_F_HASH };
	kheo_schema *s;
	char err[ERRLEN];
	size_t i;

	(void)state;
	assert_int_equal(parse_q(&s, q, err), KHEO_OK);
	assert_int_equal(s->version, 3);
	/* a ref may name a table defined after it */
	assert_string_equal(s->tables[0].fields[0].ref, "a");
	assert_true(s->tables[0].fields[0].is_set);
	assert_int_equal(s->tables[1].nfields, 8);
	for (i = 0; i < 8; i++)
		assert_int_equal(s->tables[1].fields[i].type, types[i]);
	assert_true(s->tables[1].fields[0].has_max);
	assert_true(s->tables[1].fields[0].max == 0);
	assert_true(s->tables[1].fields[1].min == -9007199254740992.0);
	assert_false(s->tables[1].fields[1].has_max);
	assert_true(s->tables[1].fields[2].min == -0.5);
	assert_true(s->tables[1].fields[3].required);
	assert_true(s->tables[1].fields[3].fixed);
	kheo_schema_free(s);
}

/* ------------------------------------------------------------ bad values */

typedef struct bad_value {
	const char *table, *field, *text;
	const char *msg; /* the exact message */
} bad_value;

#define NOT_DATE(v) { "model", "registered_on", v, \
	"model.registered_on: \"" v "\" is not a date (YYYY-MM-DD)" }
#define NOT_NUMBER(v) { "model", "lat", v, \
	"model.lat: \"" v "\" is not a number" }
#define NOT_INT(v) { "model", "year", v, \
	"model.year: \"" v "\" is not an integer" }
#define BAD_UTF8(f, v) { "model", f, v, \
	"model." f ": text is not valid UTF-8" }
#define HEX64 "0123456789abcdef0123456789abcdef" \
	"0123456789abcdef0123456789abcdef"

static const bad_value bad_values[] = {
	/* enum */
	{ "model", "kind", "collectiv",
		"model.kind: \"collectiv\" is not one of collective, "
		"individual" },
	{ "model", "kind", "Collective",
		"model.kind: \"Collective\" is not one of collective, "
		"individual" },
	{ "model", "kind", "collective ",
		"model.kind: \"collective \" is not one of collective, "
		"individual" },
	{ "model", "status", "done",
		"model.status: \"done\" is not one of registered, building, "
		"review, recognized, replicated, withdrawn" },
	{ "visit", "rating", "excellent",
		"visit.rating: \"excellent\" is not one of good, fair, weak" },
	{ "model", "kind", "a\"b\\c\nd",
		"model.kind: \"a\\\"b\\\\c\\x0ad\" is not one of collective, "
		"individual" },
	/* int and its bounds */
	{ "model", "beneficiaries", "-3",
		"model.beneficiaries: -3 is below the minimum 0" },
	{ "model", "year", "1944",
		"model.year: 1944 is below the minimum 1945" },
	{ "model", "year", "2101",
		"model.year: 2101 is above the maximum 2100" },
	{ "model", "year", "-9223372036854775808",
		"model.year: -9223372036854775808 is below the minimum 1945" },
	NOT_INT("20x"), NOT_INT(" 2024"), NOT_INT("2024 "), NOT_INT("+2024"),
	NOT_INT("2024.0"), NOT_INT("2e3"), NOT_INT("-"), NOT_INT("0x7e8"),
	NOT_INT("9223372036854775808"), NOT_INT("-9223372036854775809"),
	NOT_INT("99999999999999999999999"),
	/* real and its bounds */
	{ "model", "lat", "90.5", "model.lat: 90.5 is above the maximum 90" },
	{ "model", "lat", "-90.000001",
		"model.lat: -90.000001 is below the minimum -90" },
	{ "model", "lon", "180.1",
		"model.lon: 180.1 is above the maximum 180" },
	{ "model", "lon", "-1e3",
		"model.lon: -1000 is below the minimum -180" },
	{ "model", "lat", "1e999", "model.lat: \"1e999\" is out of range" },
	NOT_NUMBER("abc"), NOT_NUMBER("nan"), NOT_NUMBER("NaN"),
	NOT_NUMBER("inf"), NOT_NUMBER("-infinity"), NOT_NUMBER("12,5"),
	NOT_NUMBER("0x10"), NOT_NUMBER(" 12"), NOT_NUMBER("12 "),
	NOT_NUMBER("1e"), NOT_NUMBER("1e+"), NOT_NUMBER("."), NOT_NUMBER("-"),
	NOT_NUMBER("+1"), NOT_NUMBER("1.2.3"), NOT_NUMBER("--1"),
	{ "model", "lat", "1" "0000000000" "0000000000" "0000000000"
		"0000000000" "0000000000" "0000000000" "0000",
		"model.lat: \"1" "0000000000" "0000000000" "0000000000"
		"0000000000" "0000000...\" is not a number" },
	/* dates */
	NOT_DATE("2024-02-30"), NOT_DATE("2023-02-29"), NOT_DATE("2024-2-1"),
	NOT_DATE("1900-02-29"), NOT_DATE("2100-02-29"), NOT_DATE("2024-04-31"),
	NOT_DATE("2024-06-31"), NOT_DATE("2024-09-31"), NOT_DATE("2024-11-31"),
	NOT_DATE("2024-13-01"), NOT_DATE("2024-00-10"), NOT_DATE("2024-01-00"),
	NOT_DATE("2024-01-32"), NOT_DATE("0000-01-01"), NOT_DATE("24-01-01"),
	NOT_DATE("2024/01/01"), NOT_DATE("2024-01-01T08:00"),
	NOT_DATE(" 2024-01-01"), NOT_DATE("20240101"), NOT_DATE("2024-0a-01"),
	NOT_DATE("today"),
	{ "visit", "date", "2023-02-29",
		"visit.date: \"2023-02-29\" is not a date (YYYY-MM-DD)" },
	/* units */
	{ "model", "unit", "Dak Nong",
		"model.unit: \"Dak Nong\" is not a unit path (such as "
		"dak-nong/cu-jut)" },
	{ "model", "unit", "dak-nong/",
		"model.unit: \"dak-nong/\" is not a unit path (such as "
		"dak-nong/cu-jut)" },
	{ "model", "unit", "dak_nong",
		"model.unit: \"dak_nong\" is not a unit path (such as "
		"dak-nong/cu-jut)" },
	{ "visit", "unit", "\xc4\x90\xe1\xba\xafk N\xc3\xb4ng",
		"visit.unit: \"\xc4\x90\xe1\xba\xafk N\xc3\xb4ng\" is not a unit "
		"path (such as dak-nong/cu-jut)" },
	/* hashes */
	{ "model", "decision_scan", "xyz",
		"model.decision_scan: \"xyz\" is not a hash (64 hex digits)" },
	{ "model", "decision_scan", HEX64 "0",
		"model.decision_scan: \"" "0123456789abcdef0123456789abcdef"
		"0123456789abcdef...\" is not a hash (64 hex digits)" },
	{ "model", "photos", "0123456789abcdef0123456789abcdef"
		"0123456789abcdef0123456789abcdeg",
		"model.photos: \"0123456789abcdef0123456789abcdef0123456789ab"
		"cdef...\" is not a hash (64 hex digits)" },
	/* record ids */
	{ "visit", "model", "abc",
		"visit.model: \"abc\" is not a record id (32 lowercase hex "
		"digits)" },
	{ "visit", "model", "0123456789abcdef0123456789abcde",
		"visit.model: \"0123456789abcdef0123456789abcde\" is not a "
		"record id (32 lowercase hex digits)" },
	{ "visit", "model", "0123456789abcdef0123456789abcdef0",
		"visit.model: \"0123456789abcdef0123456789abcdef0\" is not a "
		"record id (32 lowercase hex digits)" },
	{ "visit", "model", "0123456789abcdef0123456789abcdeg",
		"visit.model: \"0123456789abcdef0123456789abcdeg\" is not a "
		"record id (32 lowercase hex digits)" },
	/* null where a value is required */
	{ "model", "name", "", "model.name: required" },
	{ "model", "name", "null", "model.name: required" },
	{ "model", "unit", "", "model.unit: required" },
	{ "visit", "model", "null", "visit.model: required" },
	{ "visit", "date", "", "visit.date: required" },
	{ "visit", "unit", "null", "visit.unit: required" },
	{ "model", "tags", "", "model.tags: a set member cannot be null" },
	{ "model", "photos", "null",
		"model.photos: a set member cannot be null" },
	/* invalid UTF-8, whatever the type */
	BAD_UTF8("name", "\xff"), BAD_UTF8("name", "M\xc3\x28"),
	BAD_UTF8("name", "\xc0\xaf"),          /* overlong '/' */
	BAD_UTF8("name", "a\xed\xa0\x80"),     /* surrogate */
	BAD_UTF8("name", "\xf4\x90\x80\x80"),  /* above U+10FFFF */
	BAD_UTF8("description", "Nông d\xc3"), /* cut in a character */
	BAD_UTF8("tags", "\x80"),
	BAD_UTF8("kind", "\xff"), BAD_UTF8("registered_on", "\xff"),
	BAD_UTF8("unit", "dak-nong\xff"),
};

static void refuses_bad_value(void **state)
{
	const bad_value *c = *state;
	kheo_buf scratch = { 0 };
	kheo_value v;
	char err[ERRLEN];

	assert_int_equal(from_text(&v, &scratch, c->table, c->field, c->text,
				 err), KHEO_EINVAL);
	assert_string_equal(err, c->msg);
	kheo_buf_free(&scratch);
}

/* ------------------------------------------------------------ good values */

/* from_text must succeed; returns the value. */
static kheo_value ok_text(kheo_buf *scratch, const char *table,
	const char *field, const char *text)
{
	kheo_value v;
	char err[ERRLEN];
	int rc = from_text(&v, scratch, table, field, text, err);

	if (rc != KHEO_OK)
		fail_msg("%s.%s = \"%s\": %s", table, field, text, err);
	return v;
}

static void assert_text(const kheo_value *v, const kheo_buf *scratch,
	const char *want)
{
	assert_int_equal(v->type, KHEO_VAL_TEXT);
	assert_int_equal(v->len, strlen(want));
	assert_memory_equal(v->p, want, v->len);
	/* in scratch, NUL-terminated */
	assert_ptr_equal(v->p, scratch->p);
	assert_int_equal(v->p[v->len], '\0');
}

static void text_values_go_to_scratch(void **state)
{
	kheo_buf scratch = { 0 };
	char input[] = "Mô hình nuôi bò sinh sản";
	kheo_value v;

	(void)state;
	v = ok_text(&scratch, "model", "name", input);
	/* the caller's text may go away: the value must not point at it */
	memset(input, 'x', sizeof(input) - 1);
	assert_text(&v, &scratch, "Mô hình nuôi bò sinh sản");
	v = ok_text(&scratch, "model", "kind", "individual");
	assert_text(&v, &scratch, "individual");
	v = ok_text(&scratch, "model", "unit", "dak-nong/cu-jut/ea-po");
	assert_text(&v, &scratch, "dak-nong/cu-jut/ea-po");
	v = ok_text(&scratch, "model", "registered_on", "2024-02-29");
	assert_text(&v, &scratch, "2024-02-29");
	v = ok_text(&scratch, "model", "tags", "bò");
	assert_text(&v, &scratch, "bò");
	/* "null" and "" are null where a field is optional */
	v = ok_text(&scratch, "model", "description", "null");
	assert_int_equal(v.type, KHEO_VAL_NULL);
	v = ok_text(&scratch, "model", "year", "");
	assert_int_equal(v.type, KHEO_VAL_NULL);
	v = ok_text(&scratch, "model", "decision_scan", "");
	assert_int_equal(v.type, KHEO_VAL_NULL);
	kheo_buf_free(&scratch);
}

static void nfd_vietnamese_becomes_nfc(void **state)
{
	static const char nfd[] =
		"\xc4\x90" "a\xcc\x86\xcc\x81" "k No\xcc\x82" "ng";
	static const char nfc[] = "\xc4\x90\xe1\xba\xafk N\xc3\xb4ng";
	/* "ắ" as "ă" + combining acute: a keyboard that composes halfway */
	static const char half[] = "\xc4\x83\xcc\x81";
	kheo_buf scratch = { 0 };
	kheo_value v;

	(void)state;
	assert_int_equal(strlen(nfd), 15);
	v = ok_text(&scratch, "model", "name", nfd);
	assert_text(&v, &scratch, nfc);
	assert_int_equal(v.len, 12);
	v = ok_text(&scratch, "model", "owner", nfc);
	assert_text(&v, &scratch, nfc);
	v = ok_text(&scratch, "visit", "findings", half);
	assert_text(&v, &scratch, "\xe1\xba\xaf");
	/* set members too */
	v = ok_text(&scratch, "model", "tags", nfd);
	assert_text(&v, &scratch, nfc);
	kheo_buf_free(&scratch);
}

/* n copies of s, NUL-terminated; caller frees. */
static char *repeat(const char *s, size_t n)
{
	size_t len = strlen(s), i;
	char *out = malloc(len * n + 1);

	assert_non_null(out);
	for (i = 0; i < n; i++)
		memcpy(out + i * len, s, len);
	out[len * n] = '\0';
	return out;
}

static void text_length_counts_code_points_after_nfc(void **state)
{
	/* "ộ": 3 code points in NFD, 1 (3 bytes) in NFC */
	char *ok = repeat("o\xcc\xa3\xcc\x82", 300);
	char *over = repeat("\xe1\xbb\x99", 301);
	char *ascii = repeat("a", 301);
	char *want, err[ERRLEN], msg[ERRLEN];
	kheo_buf scratch = { 0 };
	kheo_value v;

	(void)state;
	v = ok_text(&scratch, "model", "name", ok);
	assert_int_equal(v.len, 900);
	want = repeat("\xe1\xbb\x99", 300);
	assert_text(&v, &scratch, want);
	free(want);
	assert_int_equal(from_text(&v, &scratch, "model", "name", over, err),
		KHEO_EINVAL);
	want = repeat("\xe1\xbb\x99", 48);
	snprintf(msg, sizeof(msg), "model.name: \"%s...\" has 301 characters,"
		" above the maximum 300", want);
	assert_string_equal(err, msg);
	free(want);
	assert_int_equal(from_text(&v, &scratch, "model", "name", ascii,
				 err), KHEO_EINVAL);
	assert_non_null(strstr(err, "has 301 characters, above the maximum "
				    "300"));
	ascii[300] = '\0';
	v = ok_text(&scratch, "model", "name", ascii);
	assert_int_equal(v.len, 300);
	free(ok);
	free(over);
	free(ascii);
	kheo_buf_free(&scratch);
}

static void int_values_and_bounds(void **state)
{
	kheo_buf scratch = { 0 };
	kheo_value v;

	(void)state;
	v = ok_text(&scratch, "model", "year", "2024");
	assert_int_equal(v.type, KHEO_VAL_INT);
	assert_true(v.i == 2024);
	v = ok_text(&scratch, "model", "year", "1945");
	assert_true(v.i == 1945);
	v = ok_text(&scratch, "model", "year", "2100");
	assert_true(v.i == 2100);
	v = ok_text(&scratch, "model", "beneficiaries", "0");
	assert_true(v.i == 0);
	v = ok_text(&scratch, "model", "beneficiaries", "-0");
	assert_true(v.i == 0);
	v = ok_text(&scratch, "model", "beneficiaries", "9223372036854775807");
	assert_true(v.i == INT64_MAX);
	v = ok_text(&scratch, "model", "beneficiaries", "007");
	assert_true(v.i == 7);
	kheo_buf_free(&scratch);
}

static void real_values_and_bounds(void **state)
{
	static const struct {
		const char *field, *text;
		double want;
	} cases[] = {
		{ "lat", "12.345678", 12.345678 }, { "lat", "-90", -90 },
		{ "lat", "90", 90 }, { "lat", "90.0", 90 }, { "lat", ".5", 0.5 },
		{ "lat", "5.", 5 }, { "lat", "1e1", 10 }, { "lat", "1E-2", 0.01 },
		{ "lat", "-0", 0 }, { "lon", "108", 108 },
		{ "lon", "107.712345", 107.712345 }, { "lon", "-180", -180 },
		{ "lon", "1.8e+2", 180 },
	};
	kheo_buf scratch = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		kheo_value v = ok_text(&scratch, "model", cases[i].field,
			cases[i].text);

		assert_int_equal(v.type, KHEO_VAL_REAL);
		assert_true(v.r == cases[i].want);
	}
	kheo_buf_free(&scratch);
}

static void dates_follow_the_calendar(void **state)
{
	static const char *const good[] = { "2024-02-29", "2000-02-29",
		"1600-02-29", "2023-02-28", "2023-12-31", "1945-09-02",
		"2024-04-30", "2024-01-31", "0001-01-01", "9999-12-31" };
	kheo_buf scratch = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		kheo_value v = ok_text(&scratch, "model", "recognized_on",
			good[i]);

		assert_text(&v, &scratch, good[i]);
		v = ok_text(&scratch, "visit", "date", good[i]);
		assert_text(&v, &scratch, good[i]);
	}
	kheo_buf_free(&scratch);
}

static void every_enum_value_is_accepted(void **state)
{
	kheo_buf scratch = { 0 };
	size_t i, j, k, n = 0;

	(void)state;
	for (i = 0; i < dvk->ntables; i++)
		for (j = 0; j < dvk->tables[i].nfields; j++) {
			const kheo_sfield *f = &dvk->tables[i].fields[j];

			for (k = 0; k < f->nvalues; k++, n++) {
				kheo_value v = ok_text(&scratch,
					dvk->tables[i].name, f->name,
					f->values[k]);

				assert_text(&v, &scratch, f->values[k]);
			}
		}
	assert_int_equal(n, 2 + 4 + 4 + 6 + 4 + 3);
	kheo_buf_free(&scratch);
}

static void hash_is_64_hex_digits(void **state)
{
	static const char upper[] = "0123456789ABCDEF0123456789ABCDEF"
		"0123456789ABCDEF0123456789ABCDEF";
	static const uint8_t part[8] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
		0xcd, 0xef };
	uint8_t want[32];
	kheo_buf scratch = { 0 };
	kheo_value v;
	size_t i;

	(void)state;
	for (i = 0; i < 32; i++)
		want[i] = part[i % 8];
	v = ok_text(&scratch, "model", "decision_scan", HEX64);
	assert_int_equal(v.type, KHEO_VAL_HASH);
	assert_int_equal(v.len, 32);
	assert_ptr_equal(v.p, scratch.p);
	assert_memory_equal(v.p, want, 32);
	v = ok_text(&scratch, "model", "photos", upper);
	assert_int_equal(v.type, KHEO_VAL_HASH);
	assert_memory_equal(v.p, want, 32);
	kheo_buf_free(&scratch);
}

static void ref_is_32_hex_digits_lowercased(void **state)
{
	kheo_buf scratch = { 0 };
	kheo_value v;

	(void)state;
	v = ok_text(&scratch, "visit", "model",
		"00112233445566778899aabbccddeeff");
	assert_text(&v, &scratch, "00112233445566778899aabbccddeeff");
	v = ok_text(&scratch, "visit", "model",
		"00112233445566778899AABBCCDDEEFF");
	assert_text(&v, &scratch, "00112233445566778899aabbccddeeff");
	kheo_buf_free(&scratch);
}

static void bool_is_true_or_false(void **state)
{
	const char *q = "{'schema':'t','version':1,'tables':[{'name':'t',"
		"'fields':[{'name':'ok','type':'bool'},{'name':'must',"
		"'type':'bool','required':true}]}]}";
	kheo_schema *s;
	kheo_buf scratch = { 0 };
	kheo_value v;
	char err[ERRLEN];
	const kheo_stable *t;

	(void)state;
	assert_int_equal(parse_q(&s, q, err), KHEO_OK);
	t = &s->tables[0];
	assert_int_equal(kheo_schema_value_from_text(&v, &scratch, t,
				 &t->fields[0], "true", err, ERRLEN), KHEO_OK);
	assert_int_equal(v.type, KHEO_VAL_BOOL);
	assert_int_equal(v.b, 1);
	assert_int_equal(kheo_schema_value_from_text(&v, &scratch, t,
				 &t->fields[0], "false", err, ERRLEN), KHEO_OK);
	assert_int_equal(v.type, KHEO_VAL_BOOL);
	assert_int_equal(v.b, 0);
	assert_int_equal(kheo_schema_value_from_text(&v, &scratch, t,
				 &t->fields[0], "", err, ERRLEN), KHEO_OK);
	assert_int_equal(v.type, KHEO_VAL_NULL);
	assert_int_equal(kheo_schema_value_from_text(&v, &scratch, t,
				 &t->fields[0], "yes", err, ERRLEN),
		KHEO_EINVAL);
	assert_string_equal(err, "t.ok: \"yes\" is not true or false");
	assert_int_equal(kheo_schema_value_from_text(&v, &scratch, t,
				 &t->fields[0], "True", err, ERRLEN),
		KHEO_EINVAL);
	assert_string_equal(err, "t.ok: \"True\" is not true or false");
	assert_int_equal(kheo_schema_value_from_text(&v, &scratch, t,
				 &t->fields[1], "null", err, ERRLEN),
		KHEO_EINVAL);
	assert_string_equal(err, "t.must: required");
	kheo_buf_free(&scratch);
	kheo_schema_free(s);
}

static void text_length_minimum(void **state)
{
	const char *q = "{'schema':'t','version':1,'tables':[{'name':'t',"
		"'fields':[{'name':'code','type':'text','min':3,'max':3}]}]}";
	kheo_schema *s;
	kheo_buf scratch = { 0 };
	kheo_value v;
	char err[ERRLEN];
	const kheo_stable *t;

	(void)state;
	assert_int_equal(parse_q(&s, q, err), KHEO_OK);
	t = &s->tables[0];
	assert_int_equal(kheo_schema_value_from_text(&v, &scratch, t,
				 &t->fields[0], "ab", err, ERRLEN),
		KHEO_EINVAL);
	assert_string_equal(err, "t.code: \"ab\" has 2 characters, below the "
				 "minimum 3");
	/* three characters, six bytes */
	assert_int_equal(kheo_schema_value_from_text(&v, &scratch, t,
				 &t->fields[0], "Đắk", err, ERRLEN), KHEO_OK);
	assert_int_equal(v.len, 6);
	kheo_buf_free(&scratch);
	kheo_schema_free(s);
}

/* ---------------------------------------------------------- typed values */

static void check_normalises_text_only_when_needed(void **state)
{
	static const char nfd[] =
		"\xc4\x90" "a\xcc\x86\xcc\x81" "k No\xcc\x82" "ng";
	static const char nfc[] = "\xc4\x90\xe1\xba\xafk N\xc3\xb4ng";
	kheo_buf scratch = { 0 };
	kheo_value v = { .type = KHEO_VAL_TEXT, .p = (const uint8_t *)nfc,
		.len = strlen(nfc) };
	char err[ERRLEN];

	(void)state;
	assert_int_equal(check(&v, &scratch, "model", "name", err), KHEO_OK);
	/* already NFC: left where it was */
	assert_ptr_equal(v.p, nfc);
	v.p = (const uint8_t *)nfd;
	v.len = strlen(nfd);
	assert_int_equal(check(&v, &scratch, "model", "name", err), KHEO_OK);
	assert_true(points_into(&scratch, v.p));
	assert_int_equal(v.len, strlen(nfc));
	assert_memory_equal(v.p, nfc, v.len);
	/* text that already lives in scratch is normalised correctly too */
	kheo_buf_reset(&scratch);
	kheo_buf_put(&scratch, nfd, strlen(nfd));
	v.p = scratch.p;
	v.len = scratch.len;
	assert_int_equal(check(&v, &scratch, "model", "owner", err), KHEO_OK);
	assert_int_equal(v.len, strlen(nfc));
	assert_memory_equal(v.p, nfc, v.len);
	kheo_buf_free(&scratch);
}

static void check_refuses_wrong_types_and_bad_values(void **state)
{
	static const uint8_t hash[32] = { 1 };
	static const struct {
		const char *table, *field;
		kheo_value v;
		const char *msg;
	} cases[] = {
		{ "model", "name", { .type = KHEO_VAL_INT, .i = 3 },
			"model.name: an integer where text is expected" },
		{ "model", "year", { .type = KHEO_VAL_TEXT,
			.p = (const uint8_t *)"2024", .len = 4 },
			"model.year: text where an integer is expected" },
		{ "model", "year", { .type = KHEO_VAL_REAL, .r = 2024 },
			"model.year: a real where an integer is expected" },
		{ "model", "lat", { .type = KHEO_VAL_TEXT,
			.p = (const uint8_t *)"1", .len = 1 },
			"model.lat: text where a number is expected" },
		{ "model", "decision_scan", { .type = KHEO_VAL_BYTES, .p = hash,
			.len = 32 },
			"model.decision_scan: bytes where a hash is expected" },
		{ "model", "photos", { .type = KHEO_VAL_TEXT,
			.p = (const uint8_t *)HEX64, .len = 64 },
			"model.photos: text where a hash is expected" },
		{ "model", "kind", { .type = KHEO_VAL_HASH, .p = hash,
			.len = 32 },
			"model.kind: a hash where text is expected" },
		{ "model", "name", { .type = KHEO_VAL_NULL },
			"model.name: required" },
		{ "model", "tags", { .type = KHEO_VAL_NULL },
			"model.tags: a set member cannot be null" },
		{ "model", "lat", { .type = KHEO_VAL_REAL, .r = INFINITY },
			"model.lat: the number is not finite" },
		{ "model", "lat", { .type = KHEO_VAL_REAL, .r = NAN },
			"model.lat: the number is not finite" },
		{ "model", "lat", { .type = KHEO_VAL_INT, .i = 91 },
			"model.lat: 91 is above the maximum 90" },
		{ "model", "beneficiaries", { .type = KHEO_VAL_INT, .i = -1 },
			"model.beneficiaries: -1 is below the minimum 0" },
		{ "model", "name", { .type = KHEO_VAL_TEXT,
			.p = (const uint8_t *)"a\0b", .len = 3 },
			"model.name: text is not valid UTF-8" },
		{ "model", "tags", { .type = KHEO_VAL_TEXT,
			.p = (const uint8_t *)"", .len = 0 },
			"model.tags: \"\" has 0 characters, below the minimum 1" },
		{ "visit", "model", { .type = KHEO_VAL_TEXT,
			.p = (const uint8_t *)"00112233445566778899AABBCCDDEEFF",
			.len = 32 },
			"visit.model: \"00112233445566778899AABBCCDDEEFF\" is not a "
			"record id (32 lowercase hex digits)" },
		{ "model", "registered_on", { .type = KHEO_VAL_TEXT,
			.p = (const uint8_t *)"2024-02-29x", .len = 10 },
			NULL }, /* the length is the value's: accepted */
		{ "model", "registered_on", { .type = KHEO_VAL_TEXT,
			.p = (const uint8_t *)"2023-02-29", .len = 10 },
			"model.registered_on: \"2023-02-29\" is not a date "
			"(YYYY-MM-DD)" },
	};
	kheo_buf scratch = { 0 };
	char err[ERRLEN];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		kheo_value v = cases[i].v;
		int rc = check(&v, &scratch, cases[i].table, cases[i].field,
			err);

		if (!cases[i].msg) {
			assert_int_equal(rc, KHEO_OK);
			continue;
		}
		assert_int_equal(rc, KHEO_EINVAL);
		assert_string_equal(err, cases[i].msg);
	}
	kheo_buf_free(&scratch);
}

static void check_accepts_typed_values(void **state)
{
	static const uint8_t hash[32] = { 9, 8, 7 };
	kheo_buf scratch = { 0 };
	kheo_value v;
	char err[ERRLEN];

	(void)state;
	v = (kheo_value){ .type = KHEO_VAL_INT, .i = 12 };
	assert_int_equal(check(&v, &scratch, "model", "lat", err), KHEO_OK);
	/* a whole number where a real is wanted becomes a real */
	assert_int_equal(v.type, KHEO_VAL_REAL);
	assert_true(v.r == 12.0);
	v = (kheo_value){ .type = KHEO_VAL_REAL, .r = -179.5 };
	assert_int_equal(check(&v, &scratch, "model", "lon", err), KHEO_OK);
	v = (kheo_value){ .type = KHEO_VAL_INT, .i = 1945 };
	assert_int_equal(check(&v, &scratch, "model", "year", err), KHEO_OK);
	v = (kheo_value){ .type = KHEO_VAL_HASH, .p = hash, .len = 32 };
	assert_int_equal(check(&v, &scratch, "model", "photos", err), KHEO_OK);
	assert_ptr_equal(v.p, hash);
	v = (kheo_value){ .type = KHEO_VAL_NULL };
	assert_int_equal(check(&v, &scratch, "model", "description", err),
		KHEO_OK);
	v = (kheo_value){ .type = KHEO_VAL_TEXT,
		.p = (const uint8_t *)"recognized", .len = 10 };
	assert_int_equal(check(&v, &scratch, "model", "status", err), KHEO_OK);
	v = (kheo_value){ .type = KHEO_VAL_TEXT,
		.p = (const uint8_t *)"dak-nong", .len = 8 };
	assert_int_equal(check(&v, &scratch, "visit", "unit", err), KHEO_OK);
	kheo_buf_free(&scratch);
}

/* -------------------------------------------------------- out of memory */

static void every_allocation_failure_is_reported(void **state)
{
	static const char nfd[] =
		"\xc4\x90" "a\xcc\x86\xcc\x81" "k No\xcc\x82" "ng";
	long nth;
	int failures = 0;

	(void)state;
	for (nth = 1;; nth++) {
		kheo_schema *s = (kheo_schema *)&s;
		char err[ERRLEN];
		int rc;

		kheo__fault_set(nth, 1);
		rc = kheo_schema_parse(&s, kheo_schema_default_json,
			kheo_schema_default_json_len, err, sizeof(err));
		kheo__fault_set(0, 0);
		if (rc == KHEO_OK) {
			kheo_schema_free(s);
			break;
		}
		assert_int_equal(rc, KHEO_ENOMEM);
		assert_null(s);
		failures++;
	}
	assert_true(failures >= 3);
	for (nth = 1;; nth++) {
		kheo_buf scratch = { 0 };
		kheo_value v;
		char err[ERRLEN];
		int rc;

		kheo__fault_set(nth, 1);
		rc = from_text(&v, &scratch, "model", "name", nfd, err);
		kheo__fault_set(0, 0);
		kheo_buf_free(&scratch);
		if (rc == KHEO_OK)
			break;
		assert_int_equal(rc, KHEO_ENOMEM);
	}
	assert_true(nth > 1);
}

/* ------------------------------------------------------------------ main */

#define T(f) { #f, f, NULL, NULL, NULL }

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		T(default_schema_has_the_design_tables_and_fields),
		T(default_schema_labels_everything_in_vi_and_en),
		T(embedded_default_is_the_schema_file),
		T(parsed_schema_owns_its_strings),
		T(labels_are_stored_nfc),
		T(lookups_return_null_when_absent),
		T(refuses_bad_json),
		T(refuses_schema_above_the_size_limit),
		T(messages_are_cut_to_errlen),
		T(accepts_a_schema_with_every_type),
		T(text_values_go_to_scratch),
		T(nfd_vietnamese_becomes_nfc),
		T(text_length_counts_code_points_after_nfc),
		T(int_values_and_bounds),
		T(real_values_and_bounds),
		T(dates_follow_the_calendar),
		T(every_enum_value_is_accepted),
		T(hash_is_64_hex_digits),
		T(ref_is_32_hex_digits_lowercased),
		T(bool_is_true_or_false),
		T(text_length_minimum),
		T(check_normalises_text_only_when_needed),
		T(check_refuses_wrong_types_and_bad_values),
		T(check_accepts_typed_values),
		T(every_allocation_failure_is_reported),
	};
	const size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
	const size_t nschemas = sizeof(bad_schemas) / sizeof(bad_schemas[0]);
	const size_t nvalues = sizeof(bad_values) / sizeof(bad_values[0]);
	const size_t n = nfixed + nschemas + nvalues;
	struct CMUnitTest *tests = calloc(n, sizeof(*tests));
	char (*names)[160] = calloc(nschemas + nvalues, sizeof(*names));
	size_t i, k = 0;
	int rc;

	if (!tests || !names)
		return 1;
	for (i = 0; i < nfixed; i++)
		tests[k++] = fixed[i];
	for (i = 0; i < nschemas; i++, k++) {
		snprintf(names[k - nfixed], sizeof(names[0]),
			"refuses schema: %s", bad_schemas[i].what);
		tests[k] = (struct CMUnitTest){ names[k - nfixed],
			refuses_bad_schema, NULL, NULL,
			(void *)&bad_schemas[i] };
	}
	for (i = 0; i < nvalues; i++, k++) {
		snprintf(names[k - nfixed], sizeof(names[0]),
			"refuses value %s.%s #%zu", bad_values[i].table,
			bad_values[i].field, i + 1);
		tests[k] = (struct CMUnitTest){ names[k - nfixed],
			refuses_bad_value, NULL, NULL,
			(void *)&bad_values[i] };
	}
	rc = _cmocka_run_group_tests("schema", tests, n, group_setup,
		group_teardown);
	free(names);
	free(tests);
	return rc;
}
