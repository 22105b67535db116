/*
 * schema.h - the declarative schema: which tables and typed fields a
 * deployment records, and the validation of every value written locally.
 *
 * A schema is a JSON file (read with jansson, never by hand); the default,
 * `dvk` version 1, ships in client-core/schema/dvk-v1.json and is compiled
 * into the library (kheo_schema_default_json).  A node stores the JSON text
 * of its schema in its database, so a data directory describes itself.
 *
 * Not here: merge (values from other nodes are stored whatever their type:
 * a newer schema may have sent them) and authorisation.
 */
#ifndef KHEO_SCHEMA_H
#define KHEO_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

typedef enum kheo_ftype {
	KHEO_F_TEXT = 1,  /* UTF-8, stored NFC */
	KHEO_F_INT,       /* 64-bit integer */
	KHEO_F_REAL,      /* finite double */
	KHEO_F_BOOL,
	KHEO_F_DATE,      /* text "YYYY-MM-DD", a real calendar date */
	KHEO_F_ENUM,      /* text, one of `values` */
	KHEO_F_UNIT,      /* text, a unit path (kheo_unit_valid) */
	KHEO_F_REF,       /* text, 32 lowercase hex digits: a record id */
	KHEO_F_HASH,      /* 32-byte content hash (KHEO_VAL_HASH) */
} kheo_ftype;

typedef struct kheo_sfield {
	const char *name;
	kheo_ftype type;
	int is_set;            /* a set of members of `type` (add/remove) */
	int required;          /* must be given at put */
	int fixed;             /* may not be set after put (e.g. unit) */
	int workflow;          /* every change kept at sealing (status) */
	int reviewer_only;     /* set only by reviewers and above (authz.c) */
	int has_min, has_max;  /* INT, REAL: bounds on the value; */
	double min, max;       /* TEXT: bounds on the length in code points */
	const char *const *values; /* ENUM: allowed values */
	size_t nvalues;
	const char *ref;       /* REF: the table referred to */
	const char *label_vi;  /* labels for people (never for files/keys) */
	const char *label_en;
	const char *const *value_labels_vi; /* ENUM: per value, or NULL */
	const char *const *value_labels_en;
	const unsigned char *value_reviewer_only; /* ENUM: per value, or NULL */
} kheo_sfield;

typedef struct kheo_stable {
	const char *name;
	const char *label_vi, *label_en;
	const kheo_sfield *fields; /* in the file's order */
	size_t nfields;
	int system;                /* a table of the system unit _sys */
} kheo_stable;

typedef struct kheo_schema {
	const char *name;          /* "dvk" */
	uint32_t version;          /* 1 */
	const kheo_stable *tables; /* in the file's order */
	size_t ntables;
	const char *json;          /* the text it was parsed from (NUL-ended) */
	size_t json_len;
} kheo_schema;

/* The default schema's JSON text (dvk v1), compiled in; static storage. */
extern const char kheo_schema_default_json[];
extern const size_t kheo_schema_default_json_len;

/* The system tables' JSON (client-core/schema/sys-v1.json), compiled in. */
extern const char kheo_schema_system_json[];
extern const size_t kheo_schema_system_json_len;

/*
 * Parse and check a schema file.  On error, returns KHEO_EINVAL and writes a
 * message naming the table, field and rule into err.  *out is the caller's.
 */
int kheo_schema_parse(kheo_schema **out, const char *json, size_t len,
	char *err, size_t errlen);
void kheo_schema_free(kheo_schema *s);

/*
 * Append the system tables (sys_unit, sys_cert, sys_revocation,
 * sys_receipt) to a parsed deployment schema, marked `system`.  Every node
 * has them whatever its deployment schema, because identity and
 * authorisation live there.  KHEO_OK or an error with a message.
 */
int kheo_schema_add_system(kheo_schema *s, char *err, size_t errlen);

/* Lookups; NULL when absent.  Borrowed for the schema's lifetime. */
const kheo_stable *kheo_schema_table(const kheo_schema *s, const char *name);
const kheo_sfield *kheo_schema_field(const kheo_stable *t, const char *name);

/*
 * Turn text typed by a person (the CLI's FIELD=VALUE) into a typed value of
 * field f: "42" for INT, "true"/"false" for BOOL, 64 hex digits for HASH,
 * "" or "null" for null (refused when f is required), text NFC-normalised.
 * Text bytes are written into `scratch` (reset first) and out->p points
 * there.  On refusal: KHEO_EINVAL and a message such as
 *   model.kind: "collectiv" is not one of collective, individual
 */
int kheo_schema_value_from_text(kheo_value *out, kheo_buf *scratch,
	const kheo_stable *t, const kheo_sfield *f, const char *text,
	char *err, size_t errlen);

/*
 * Check a typed value against field f (type, enum, range, length, date,
 * unit, ref, UTF-8) and normalise text to NFC: if it changes, the NFC bytes
 * go to `scratch` and out->p points there.  NULL values pass unless f is
 * required.  Same errors as above.
 */
int kheo_schema_check(kheo_value *v, kheo_buf *scratch,
	const kheo_stable *t, const kheo_sfield *f, char *err, size_t errlen);

#endif
