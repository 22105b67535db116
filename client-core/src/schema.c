/*
 * schema.c - reading a schema file, and checking every value written
 * locally against it.
 *
 * The file format is in docs/schema.md.  The parser is strict: an unknown
 * key, a value of the wrong JSON type, a duplicate name, a name that breaks
 * proto's name rule, an enum without values or a ref to a missing table is
 * refused with a message naming the table and field, because a schema that
 * is silently half-understood would materialise the wrong tables on every
 * node that loads it.  jansson reads the JSON (duplicate object keys
 * refused); everything the parsed kheo_schema points at is copied out of
 * jansson into an arena owned by the schema, so no jansson object outlives
 * kheo_schema_parse.  jansson's own allocations do not go through
 * proto/alloc.h (that would need its process-global allocator hook), so
 * the fault-injection tests reach only ours.
 *
 * Values: kheo_schema_value_from_text parses what a person typed and
 * kheo_schema_check checks a typed value; the first ends in the second, so
 * both give the same messages.  Text is NFC-normalised with utf8proc into
 * the caller's scratch buffer (so that memory, too, comes from
 * proto/alloc.h).
 *
 * Not here: merge (values from other nodes are stored whatever their type)
 * and authorisation (who may set `level`, which unit a visit may name).
 */
#include "schema.h"
#include "alloc.h"

#include <assert.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <utf8proc.h>

/* Limits of a schema file; a schema travels in `_sys` as one value. */
#define SCHEMA_TABLES_MAX 256u
#define SCHEMA_VALUES_MAX 1024u   /* values of one enum */
#define SCHEMA_LABEL_MAX 1024u    /* bytes in a label or note */
#define SCHEMA_INT_BOUND 9007199254740992LL /* 2^53: exact as a double */

#define NFC_OPTIONS (UTF8PROC_STABLE | UTF8PROC_COMPOSE)

/* ------------------------------------------------------------------ arena */

/*
 * Every string and array of a parsed schema lives in a chain of blocks
 * freed together: the schema is built once and never edited.
 */
typedef struct block {
	struct block *next;
	size_t used, cap;
	max_align_t data[];
} block;

#define BLOCK_SIZE 16384u

typedef struct schema_own {
	kheo_schema pub;  /* first: kheo_schema_free casts back */
	block *blocks;
} schema_own;

static void *arena_alloc(schema_own *s, size_t n)
{
	const size_t align = sizeof(max_align_t);
	block *b = s->blocks;
	void *p;

	n = n ? (n + align - 1) / align * align : align;
	if (!b || b->cap - b->used < n) {
		size_t cap = n > BLOCK_SIZE ? n : BLOCK_SIZE;

		if (!(b = kheo__malloc(sizeof(*b) + cap)))
			return NULL;
		b->next = s->blocks;
		b->used = 0;
		b->cap = cap;
		s->blocks = b;
	}
	p = (char *)b->data + b->used;
	b->used += n;
	memset(p, 0, n);
	return p;
}

static char *arena_strndup(schema_own *s, const char *p, size_t n)
{
	char *q = arena_alloc(s, n + 1);

	if (q) {
		memcpy(q, p, n);
		q[n] = '\0';
	}
	return q;
}

void kheo_schema_free(kheo_schema *pub)
{
	schema_own *s = (schema_own *)pub;
	block *b, *next;

	if (!s)
		return;
	for (b = s->blocks; b; b = next) {
		next = b->next;
		kheo__free(b);
	}
	kheo__free(s);
}

/* --------------------------------------------------------------- messages */

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return KHEO_EINVAL;
}

/*
 * A value quoted for a message: at most QUOTE_CHARS code points, `"` and
 * `\` escaped, control characters and bytes that are not UTF-8 as \xHH,
 * "..." when cut.
 */
#define QUOTE_CHARS 48
typedef struct quoted {
	char s[QUOTE_CHARS * 4 + 16];
} quoted;

static const char *quote(quoted *q, const uint8_t *p, size_t n)
{
	size_t off = 0, o = 0, chars = 0;

	q->s[o++] = '"';
	while (off < n) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t step;
		size_t left = n - off;

		if (chars == QUOTE_CHARS) {
			memcpy(q->s + o, "...", 3);
			o += 3;
			break;
		}
		chars++;
		step = utf8proc_iterate(p + off,
			(utf8proc_ssize_t)(left > 4 ? 4 : left), &cp);
		if (step <= 0 || cp < 0x20 || cp == 0x7f) {
			o += (size_t)snprintf(q->s + o, sizeof(q->s) - o,
				"\\x%02x", p[off]);
			off++;
			continue;
		}
		if (cp == '"' || cp == '\\')
			q->s[o++] = '\\';
		memcpy(q->s + o, p + off, (size_t)step);
		o += (size_t)step;
		off += (size_t)step;
	}
	q->s[o++] = '"';
	q->s[o] = '\0';
	return q->s;
}

static const char *quote_str(quoted *q, const char *s)
{
	return quote(q, (const uint8_t *)s, strlen(s));
}

/* A double in the fewest digits that read back as the same double. */
typedef struct numtext {
	char s[40];
} numtext;

static const char *num(numtext *t, double d)
{
	int prec;

	if (d == floor(d) && fabs(d) < 1e15) {
		snprintf(t->s, sizeof(t->s), "%.0f", d);
		return t->s;
	}
	for (prec = 1; prec < 17; prec++) {
		snprintf(t->s, sizeof(t->s), "%.*g", prec, d);
		if (strtod(t->s, NULL) == d)
			return t->s;
	}
	snprintf(t->s, sizeof(t->s), "%.17g", d);
	return t->s;
}

/* ------------------------------------------------------------------ text */

static int is_ascii(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] & 0x80)
			return 0;
	return 1;
}

/*
 * The NFC form of [p, p+n) (valid UTF-8, not inside dst) into dst, reset
 * first and NUL-terminated (the NUL not counted in dst->len).  Done as
 * utf8proc_map does it, but in our buffer: decompose into UTF-32, then
 * utf8proc_reencode composes and writes UTF-8 back into the same memory.
 */
static int nfc(kheo_buf *dst, const uint8_t *p, size_t n)
{
	utf8proc_ssize_t cps, again, outlen;

	kheo_buf_reset(dst);
	if (n > KHEO_VALUE_MAX)
		return KHEO_EINVAL;
	if (is_ascii(p, n)) {
		if (kheo_buf_reserve(dst, n + 1) < 0)
			return KHEO_ENOMEM;
		memcpy(dst->p, p, n);
		dst->p[n] = '\0';
		dst->len = n;
		return KHEO_OK;
	}
	cps = utf8proc_decompose(p, (utf8proc_ssize_t)n, NULL, 0, NFC_OPTIONS);
	if (cps < 0)
		return KHEO_EINVAL;
	/* room for the UTF-32 form, which the UTF-8 result never exceeds,
	 * and the NUL utf8proc_reencode writes */
	if (kheo_buf_reserve(dst, (size_t)cps * sizeof(utf8proc_int32_t) + 1) < 0)
		return KHEO_ENOMEM;
	/* dst->p comes from kheo__realloc: aligned for any type */
	again = utf8proc_decompose(p, (utf8proc_ssize_t)n,
		(utf8proc_int32_t *)(void *)dst->p, cps, NFC_OPTIONS);
	if (again != cps)
		return KHEO_EINVAL;
	outlen = utf8proc_reencode((utf8proc_int32_t *)(void *)dst->p, cps,
		NFC_OPTIONS);
	if (outlen < 0)
		return KHEO_EINVAL;
	dst->len = (size_t)outlen;
	dst->p[dst->len] = '\0';
	return KHEO_OK;
}

/* Code points in valid UTF-8. */
static size_t utf8_chars(const uint8_t *p, size_t n)
{
	size_t i, c = 0;

	for (i = 0; i < n; i++)
		c += (p[i] & 0xc0) != 0x80;
	return c;
}

/* ------------------------------------------------------------- rules */

/* "YYYY-MM-DD", a date of the proleptic Gregorian calendar, year ≥ 1. */
static int date_valid(const uint8_t *p, size_t n)
{
	static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30,
		31, 30, 31 };
	int y, m, d, dim;
	size_t i;

	if (n != 10 || p[4] != '-' || p[7] != '-')
		return 0;
	for (i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (p[i] < '0' || p[i] > '9'))
			return 0;
	y = (p[0] - '0') * 1000 + (p[1] - '0') * 100 + (p[2] - '0') * 10 +
	    (p[3] - '0');
	m = (p[5] - '0') * 10 + (p[6] - '0');
	d = (p[8] - '0') * 10 + (p[9] - '0');
	if (y < 1 || m < 1 || m > 12 || d < 1)
		return 0;
	dim = mdays[m - 1];
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		dim = 29;
	return d <= dim;
}

/* A record id: exactly 32 lowercase hex digits. */
static int ref_valid(const uint8_t *p, size_t n)
{
	size_t i;

	if (n != 2 * KHEO_RECORD_SIZE)
		return 0;
	for (i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') ||
		      (p[i] >= 'a' && p[i] <= 'f')))
			return 0;
	return 1;
}

static int enum_index(const kheo_sfield *f, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < f->nvalues; i++)
		if (strlen(f->values[i]) == n && memcmp(f->values[i], p, n) == 0)
			return (int)i;
	return -1;
}

static int not_one_of(char *err, size_t errlen, const kheo_stable *t,
	const kheo_sfield *f, const uint8_t *p, size_t n)
{
	char list[512];
	size_t i, o = 0;
	quoted q;

	list[0] = '\0';
	for (i = 0; i < f->nvalues && o < sizeof(list) - 1; i++)
		o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s",
			i ? ", " : "", f->values[i]);
	return fail(err, errlen, "%s.%s: %s is not one of %s", t->name,
		f->name, quote(&q, p, n), list);
}

static const char *vtype_name(kheo_value_type type)
{
	switch (type) {
	case KHEO_VAL_NULL: return "null";
	case KHEO_VAL_INT: return "an integer";
	case KHEO_VAL_REAL: return "a real";
	case KHEO_VAL_TEXT: return "text";
	case KHEO_VAL_BYTES: return "bytes";
	case KHEO_VAL_BOOL: return "a boolean";
	case KHEO_VAL_HASH: return "a hash";
	}
	return "an unknown value type";
}

static const char *ftype_expect(kheo_ftype type)
{
	switch (type) {
	case KHEO_F_INT: return "an integer";
	case KHEO_F_REAL: return "a number";
	case KHEO_F_BOOL: return "true or false";
	case KHEO_F_HASH: return "a hash";
	default: return "text";
	}
}

/* Is pointer p inside buffer b's memory? */
static int points_into(const kheo_buf *b, const uint8_t *p)
{
	return b->p && p >= b->p && p < b->p + b->cap;
}

/* TEXT: normalise to NFC (into scratch when it changes), then length. */
static int check_text(kheo_value *v, kheo_buf *scratch, const kheo_stable *t,
	const kheo_sfield *f, char *err, size_t errlen)
{
	uint8_t *copy = NULL;
	const uint8_t *src = v->p;
	size_t chars;
	numtext a;
	quoted q;
	int rc;

	if (v->len && points_into(scratch, v->p)) {
		/* the caller's text already lives in scratch: copy it out
		 * before scratch is rewritten */
		if (!(copy = kheo__malloc(v->len)))
			return KHEO_ENOMEM;
		memcpy(copy, v->p, v->len);
		src = copy;
	}
	rc = nfc(scratch, src, v->len);
	kheo__free(copy);
	if (rc == KHEO_ENOMEM)
		return rc;
	if (rc < 0)
		return fail(err, errlen, "%s.%s: text is not valid UTF-8",
			t->name, f->name);
	if (scratch->len != v->len || memcmp(scratch->p, v->p, v->len) != 0) {
		v->p = scratch->p;
		v->len = scratch->len;
	}
	if (v->len > KHEO_VALUE_MAX)
		return fail(err, errlen, "%s.%s: text of %zu bytes is above "
			"the limit %u", t->name, f->name, v->len,
			KHEO_VALUE_MAX);
	chars = utf8_chars(v->p, v->len);
	if (f->has_min && (double)chars < f->min)
		return fail(err, errlen, "%s.%s: %s has %zu characters, below "
			"the minimum %s", t->name, f->name,
			quote(&q, v->p, v->len), chars, num(&a, f->min));
	if (f->has_max && (double)chars > f->max)
		return fail(err, errlen, "%s.%s: %s has %zu characters, above "
			"the maximum %s", t->name, f->name,
			quote(&q, v->p, v->len), chars, num(&a, f->max));
	return KHEO_OK;
}

int kheo_schema_check(kheo_value *v, kheo_buf *scratch,
	const kheo_stable *t, const kheo_sfield *f, char *err, size_t errlen)
{
	numtext a, b;
	quoted q;

	assert(v && scratch && t && f);
	if (v->type == KHEO_VAL_NULL) {
		if (f->required)
			return fail(err, errlen, "%s.%s: required", t->name,
				f->name);
		if (f->is_set)
			return fail(err, errlen, "%s.%s: a set member cannot "
				"be null", t->name, f->name);
		return KHEO_OK;
	}
	switch (f->type) {
	case KHEO_F_INT:
		if (v->type != KHEO_VAL_INT)
			break;
		/* bounds of an int field are integers within ±2^53 */
		if (f->has_min && v->i < (int64_t)f->min)
			return fail(err, errlen, "%s.%s: %lld is below the "
				"minimum %s", t->name, f->name,
				(long long)v->i, num(&a, f->min));
		if (f->has_max && v->i > (int64_t)f->max)
			return fail(err, errlen, "%s.%s: %lld is above the "
				"maximum %s", t->name, f->name,
				(long long)v->i, num(&a, f->max));
		return KHEO_OK;
	case KHEO_F_REAL:
		if (v->type == KHEO_VAL_INT) {
			/* a whole number where a real is wanted (JSON 12) */
			v->type = KHEO_VAL_REAL;
			v->r = (double)v->i;
			v->i = 0;
		}
		if (v->type != KHEO_VAL_REAL)
			break;
		if (!isfinite(v->r))
			return fail(err, errlen, "%s.%s: the number is not "
				"finite", t->name, f->name);
		if (f->has_min && v->r < f->min)
			return fail(err, errlen, "%s.%s: %s is below the "
				"minimum %s", t->name, f->name, num(&b, v->r),
				num(&a, f->min));
		if (f->has_max && v->r > f->max)
			return fail(err, errlen, "%s.%s: %s is above the "
				"maximum %s", t->name, f->name, num(&b, v->r),
				num(&a, f->max));
		return KHEO_OK;
	case KHEO_F_BOOL:
		if (v->type != KHEO_VAL_BOOL)
			break;
		if (v->b != 0 && v->b != 1)
			return fail(err, errlen, "%s.%s: boolean %d is neither "
				"0 nor 1", t->name, f->name, v->b);
		return KHEO_OK;
	case KHEO_F_HASH:
		if (v->type != KHEO_VAL_HASH)
			break;
		if (!v->p)
			return fail(err, errlen, "%s.%s: hash without bytes",
				t->name, f->name);
		v->len = KHEO_ID_SIZE;
		return KHEO_OK;
	case KHEO_F_TEXT:
	case KHEO_F_DATE:
	case KHEO_F_ENUM:
	case KHEO_F_UNIT:
	case KHEO_F_REF:
		if (v->type != KHEO_VAL_TEXT)
			break;
		if (v->len > KHEO_VALUE_MAX)
			return fail(err, errlen, "%s.%s: text of %zu bytes is "
				"above the limit %u", t->name, f->name, v->len,
				KHEO_VALUE_MAX);
		if (!kheo_utf8_valid(v->p, v->len))
			return fail(err, errlen, "%s.%s: text is not valid "
				"UTF-8", t->name, f->name);
		switch (f->type) {
		case KHEO_F_TEXT:
			return check_text(v, scratch, t, f, err, errlen);
		case KHEO_F_DATE:
			if (!date_valid(v->p, v->len))
				return fail(err, errlen, "%s.%s: %s is not a "
					"date (YYYY-MM-DD)", t->name, f->name,
					quote(&q, v->p, v->len));
			return KHEO_OK;
		case KHEO_F_ENUM:
			if (enum_index(f, v->p, v->len) < 0)
				return not_one_of(err, errlen, t, f, v->p,
					v->len);
			return KHEO_OK;
		case KHEO_F_UNIT:
			if (!kheo_unit_valid((const char *)v->p, v->len))
				return fail(err, errlen, "%s.%s: %s is not a "
					"unit path (such as dak-nong/cu-jut)",
					t->name, f->name,
					quote(&q, v->p, v->len));
			return KHEO_OK;
		default:
			if (!ref_valid(v->p, v->len))
				return fail(err, errlen, "%s.%s: %s is not a "
					"record id (32 lowercase hex digits)",
					t->name, f->name,
					quote(&q, v->p, v->len));
			return KHEO_OK;
		}
	}
	return fail(err, errlen, "%s.%s: %s where %s is expected", t->name,
		f->name, vtype_name(v->type), ftype_expect(f->type));
}

/* -------------------------------------------------------- typed from text */

/* [-]digits, within int64; no spaces, no '+'. */
static int parse_int(const char *s, int64_t *out)
{
	const char *p = s;
	uint64_t v = 0, lim;
	int neg = 0;

	if (*p == '-') {
		neg = 1;
		p++;
	}
	if (!*p)
		return -1;
	for (; *p; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (*p < '0' || *p > '9')
			return -1;
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	if (v > lim)
		return -1;
	if (neg)
		*out = v == lim ? INT64_MIN : -(int64_t)v;
	else
		*out = (int64_t)v;
	return 0;
}

/*
 * [-]digits[.digits][(e|E)[+|-]digits], a '.' for the decimal point
 * whatever the locale (a Vietnamese locale writes a comma; files never do).
 * strtod would also take "nan", "inf", hex and leading spaces: the grammar
 * is checked first, and the text rewritten with the locale's point.
 */
static int parse_real(const char *s, double *out)
{
	const char *p = s, *point = localeconv()->decimal_point;
	char buf[80];
	size_t o = 0, digits = 0, plen = strlen(point);
	char *end;

	if (*p == '-')
		buf[o++] = *p++;
	for (; *p >= '0' && *p <= '9' && o < 64; p++, digits++)
		buf[o++] = *p;
	if (*p == '.') {
		if (plen == 0 || plen > 4)
			return -1;
		memcpy(buf + o, point, plen);
		o += plen;
		for (p++; *p >= '0' && *p <= '9' && o < 64; p++, digits++)
			buf[o++] = *p;
	}
	if (digits == 0)
		return -1;
	if (*p == 'e' || *p == 'E') {
		size_t edigits = 0;

		buf[o++] = *p++;
		if (*p == '+' || *p == '-')
			buf[o++] = *p++;
		for (; *p >= '0' && *p <= '9' && o < 72; p++, edigits++)
			buf[o++] = *p;
		if (edigits == 0)
			return -1;
	}
	if (*p != '\0')
		return -1; /* a stray character, or more than 64 digits */
	buf[o] = '\0';
	*out = strtod(buf, &end);
	if (*end != '\0')
		return -1;
	return 0;
}

int kheo_schema_value_from_text(kheo_value *out, kheo_buf *scratch,
	const kheo_stable *t, const kheo_sfield *f, const char *text,
	char *err, size_t errlen)
{
	size_t n, i;
	quoted q;
	int rc;

	assert(out && scratch && t && f && text);
	kheo_buf_reset(scratch);
	memset(out, 0, sizeof(*out));
	n = strlen(text);
	if (n == 0 || strcmp(text, "null") == 0) {
		out->type = KHEO_VAL_NULL;
		return kheo_schema_check(out, scratch, t, f, err, errlen);
	}
	switch (f->type) {
	case KHEO_F_INT:
		out->type = KHEO_VAL_INT;
		if (parse_int(text, &out->i) < 0)
			return fail(err, errlen, "%s.%s: %s is not an integer",
				t->name, f->name, quote_str(&q, text));
		break;
	case KHEO_F_REAL:
		out->type = KHEO_VAL_REAL;
		if (parse_real(text, &out->r) < 0)
			return fail(err, errlen, "%s.%s: %s is not a number",
				t->name, f->name, quote_str(&q, text));
		if (!isfinite(out->r))
			return fail(err, errlen, "%s.%s: %s is out of range",
				t->name, f->name, quote_str(&q, text));
		break;
	case KHEO_F_BOOL:
		out->type = KHEO_VAL_BOOL;
		if (strcmp(text, "true") == 0)
			out->b = 1;
		else if (strcmp(text, "false") != 0)
			return fail(err, errlen, "%s.%s: %s is not true or "
				"false", t->name, f->name, quote_str(&q, text));
		break;
	case KHEO_F_HASH:
		if (kheo_buf_reserve(scratch, KHEO_ID_SIZE) < 0)
			return KHEO_ENOMEM;
		if (kheo_unhex(scratch->p, KHEO_ID_SIZE, text, n) < 0)
			return fail(err, errlen, "%s.%s: %s is not a hash "
				"(64 hex digits)", t->name, f->name,
				quote_str(&q, text));
		scratch->len = KHEO_ID_SIZE;
		out->type = KHEO_VAL_HASH;
		out->p = scratch->p;
		out->len = KHEO_ID_SIZE;
		break;
	case KHEO_F_REF:
		out->type = KHEO_VAL_TEXT;
		out->p = (const uint8_t *)text;
		out->len = n;
		if (n != 2 * KHEO_RECORD_SIZE)
			break; /* refused below, with the check's message */
		/* ids are shown lowercase; accept what people paste */
		if (kheo_buf_reserve(scratch, n + 1) < 0)
			return KHEO_ENOMEM;
		for (i = 0; i < n; i++)
			scratch->p[i] = text[i] >= 'A' && text[i] <= 'F'
					? (uint8_t)(text[i] - 'A' + 'a')
					: (uint8_t)text[i];
		scratch->p[n] = '\0';
		scratch->len = n;
		out->p = scratch->p;
		break;
	default:
		out->type = KHEO_VAL_TEXT;
		out->p = (const uint8_t *)text;
		out->len = n;
		break;
	}
	if ((rc = kheo_schema_check(out, scratch, t, f, err, errlen)) < 0)
		return rc;
	if (out->type == KHEO_VAL_TEXT && !points_into(scratch, out->p)) {
		/* the text was already canonical: it still goes to scratch */
		kheo_buf_reset(scratch);
		if (kheo_buf_reserve(scratch, out->len + 1) < 0)
			return KHEO_ENOMEM;
		memcpy(scratch->p, out->p, out->len);
		scratch->p[out->len] = '\0';
		scratch->len = out->len;
		out->p = scratch->p;
	}
	return KHEO_OK;
}

/* ---------------------------------------------------------------- lookups */

const kheo_stable *kheo_schema_table(const kheo_schema *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->ntables; i++)
		if (strcmp(s->tables[i].name, name) == 0)
			return &s->tables[i];
	return NULL;
}

const kheo_sfield *kheo_schema_field(const kheo_stable *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->nfields; i++)
		if (strcmp(t->fields[i].name, name) == 0)
			return &t->fields[i];
	return NULL;
}

/* ---------------------------------------------------------------- parsing */

/* What parsing carries along: the schema being built and the message. */
typedef struct parser {
	schema_own *s;
	char *err;
	size_t errlen;
	kheo_buf tmp;      /* NFC of labels */
	char where[160];   /* "model.kind", "model", "tables[3]", "" */
	int system;        /* parsing the compiled-in system tables */
} parser;

static int perr(parser *ps, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A message prefixed with where it is: "model.kind: ...". */
static int perr(parser *ps, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ps->where[0])
		return fail(ps->err, ps->errlen, "%s: %s", ps->where, msg);
	return fail(ps->err, ps->errlen, "%s", msg);
}

/* Refuse keys other than those in `allowed` (NULL-terminated). */
static int only_keys(parser *ps, json_t *obj, const char *const *allowed)
{
	const char *key;
	json_t *val;
	quoted q;

	json_object_foreach(obj, key, val) {
		const char *const *a;

		(void)val;
		for (a = allowed; *a; a++)
			if (strcmp(*a, key) == 0)
				break;
		if (!*a)
			return perr(ps, "unknown key %s", quote_str(&q, key));
	}
	return KHEO_OK;
}

/* An optional string member (required if `need`); *out NULL if absent. */
static int get_string(parser *ps, json_t *obj, const char *key, int need,
	const char **out, size_t *len)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	*len = 0;
	if (!v) {
		if (need)
			return perr(ps, "no \"%s\"", key);
		return KHEO_OK;
	}
	if (!json_is_string(v))
		return perr(ps, "\"%s\" must be a string", key);
	*out = json_string_value(v);
	*len = json_string_length(v);
	return KHEO_OK;
}

static int get_bool(parser *ps, json_t *obj, const char *key, int *out)
{
	json_t *v = json_object_get(obj, key);

	*out = 0;
	if (!v)
		return KHEO_OK;
	if (!json_is_boolean(v))
		return perr(ps, "\"%s\" must be true or false", key);
	*out = json_is_true(v);
	return KHEO_OK;
}

/* A name by proto's rule, copied into the arena. */
static int get_name(parser *ps, json_t *obj, const char *what,
	const char **out)
{
	const char *p;
	size_t n;
	quoted q;
	int rc;

	*out = NULL;
	if ((rc = get_string(ps, obj, "name", 1, &p, &n)) < 0)
		return rc;
	if (!kheo_name_valid(p, n))
		return perr(ps, "%s name %s is not valid ([a-z_][a-z0-9_]*, "
			"at most %u bytes)", what, quote(&q, (const uint8_t *)p,
			n), KHEO_NAME_MAX);
	if (!(*out = arena_strndup(ps->s, p, n)))
		return KHEO_ENOMEM;
	return KHEO_OK;
}

/*
 * The labels "vi" and "en" (NFC, into the arena), each the name when
 * absent; and "note", checked and dropped (it stays in the JSON text).
 */
static int get_labels(parser *ps, json_t *obj, const char *name,
	const char **vi, const char **en)
{
	static const char *const keys[] = { "vi", "en", "note" };
	const char **outs[] = { vi, en, NULL };
	size_t i;

	for (i = 0; i < 3; i++) {
		const char *p;
		size_t n;
		int rc;

		if ((rc = get_string(ps, obj, keys[i], 0, &p, &n)) < 0)
			return rc;
		if (!outs[i])
			continue; /* a note: any string */
		if (!p) {
			*outs[i] = name;
			continue;
		}
		if (n == 0 || n > SCHEMA_LABEL_MAX)
			return perr(ps, "\"%s\" must have 1 to %u bytes",
				keys[i], SCHEMA_LABEL_MAX);
		/* jansson gives valid UTF-8 without NUL, so only memory
		 * can fail here */
		if ((rc = nfc(&ps->tmp, (const uint8_t *)p, n)) < 0)
			return rc;
		if (!(*outs[i] = arena_strndup(ps->s, (const char *)ps->tmp.p,
			      ps->tmp.len)))
			return KHEO_ENOMEM;
	}
	return KHEO_OK;
}

static int parse_type(parser *ps, json_t *obj, kheo_ftype *out)
{
	static const struct {
		const char *name;
		kheo_ftype type;
	} types[] = {
		{ "text", KHEO_F_TEXT }, { "int", KHEO_F_INT },
		{ "real", KHEO_F_REAL }, { "bool", KHEO_F_BOOL },
		{ "date", KHEO_F_DATE }, { "enum", KHEO_F_ENUM },
		{ "unit", KHEO_F_UNIT }, { "ref", KHEO_F_REF },
		{ "hash", KHEO_F_HASH },
	};
	const char *p;
	size_t n, i;
	quoted q;
	int rc;

	if ((rc = get_string(ps, obj, "type", 1, &p, &n)) < 0)
		return rc;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(types[i].name, p) == 0 && strlen(p) == n) {
			*out = types[i].type;
			return KHEO_OK;
		}
	return perr(ps, "type %s is not one of text, int, real, bool, date, "
		"enum, unit, ref, hash", quote(&q, (const uint8_t *)p, n));
}

/* "min" or "max": a number whose kind depends on the field's type. */
static int parse_bound(parser *ps, json_t *obj, const char *key,
	kheo_sfield *f, int *has, double *out)
{
	json_t *v = json_object_get(obj, key);

	*has = 0;
	if (!v)
		return KHEO_OK;
	switch (f->type) {
	case KHEO_F_INT:
		if (!json_is_integer(v) ||
		    json_integer_value(v) > SCHEMA_INT_BOUND ||
		    json_integer_value(v) < -SCHEMA_INT_BOUND)
			return perr(ps, "\"%s\" must be an integer within "
				"+-2^53", key);
		*out = (double)json_integer_value(v);
		break;
	case KHEO_F_REAL:
		if (!json_is_number(v))
			return perr(ps, "\"%s\" must be a number", key);
		*out = json_number_value(v);
		if (!isfinite(*out))
			return perr(ps, "\"%s\" must be finite", key);
		break;
	case KHEO_F_TEXT:
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > KHEO_VALUE_MAX)
			return perr(ps, "\"%s\" must be a number of characters "
				"from 0 to %u", key, KHEO_VALUE_MAX);
		*out = (double)json_integer_value(v);
		break;
	default:
		return perr(ps, "\"%s\" is only for int, real and text fields",
			key);
	}
	*has = 1;
	return KHEO_OK;
}

/* "values" of an enum: names (strings) or {name, vi, en, note}. */
static int parse_values(parser *ps, json_t *obj, kheo_sfield *f)
{
	static const char *const keys[] = { "name", "vi", "en", "note",
		"reviewer_only", NULL };
	unsigned char *restricted;
	json_t *arr = json_object_get(obj, "values");
	const char **names, **vi, **en;
	size_t i, j, n;
	quoted q;
	int rc;

	if (f->type != KHEO_F_ENUM) {
		if (arr)
			return perr(ps, "\"values\" is only for enum fields");
		return KHEO_OK;
	}
	if (!arr)
		return perr(ps, "enum without values");
	if (!json_is_array(arr))
		return perr(ps, "\"values\" must be an array");
	if ((n = json_array_size(arr)) == 0)
		return perr(ps, "enum without values");
	if (n > SCHEMA_VALUES_MAX)
		return perr(ps, "%zu values, above the limit %u", n,
			SCHEMA_VALUES_MAX);
	names = arena_alloc(ps->s, n * sizeof(*names));
	vi = arena_alloc(ps->s, n * sizeof(*vi));
	en = arena_alloc(ps->s, n * sizeof(*en));
	restricted = arena_alloc(ps->s, n);
	if (!names || !vi || !en || !restricted)
		return KHEO_ENOMEM;
	for (i = 0; i < n; i++) {
		json_t *v = json_array_get(arr, i);
		const char *p = NULL;
		size_t len = 0;

		if (json_is_string(v)) {
			p = json_string_value(v);
			len = json_string_length(v);
		} else if (json_is_object(v)) {
			if ((rc = only_keys(ps, v, keys)) < 0 ||
			    (rc = get_string(ps, v, "name", 1, &p, &len)) < 0)
				return rc;
		} else {
			return perr(ps, "value %zu must be a name or an object "
				"with a name", i + 1);
		}
		if (!kheo_name_valid(p, len))
			return perr(ps, "value %s is not valid "
				"([a-z_][a-z0-9_]*, at most %u bytes)",
				quote(&q, (const uint8_t *)p, len),
				KHEO_NAME_MAX);
		for (j = 0; j < i; j++)
			if (strlen(names[j]) == len &&
			    memcmp(names[j], p, len) == 0)
				return perr(ps, "value %s listed twice",
					quote(&q, (const uint8_t *)p, len));
		if (!(names[i] = arena_strndup(ps->s, p, len)))
			return KHEO_ENOMEM;
		vi[i] = en[i] = names[i];
		if (json_is_object(v)) {
			int only = 0;

			if ((rc = get_labels(ps, v, names[i], &vi[i],
				     &en[i])) < 0 ||
			    (rc = get_bool(ps, v, "reviewer_only", &only)) < 0)
				return rc;
			restricted[i] = (unsigned char)only;
		}
	}
	f->value_reviewer_only = restricted;
	f->values = names;
	f->value_labels_vi = vi;
	f->value_labels_en = en;
	f->nvalues = n;
	return KHEO_OK;
}

static int parse_field(parser *ps, json_t *obj, const kheo_stable *t,
	size_t index, kheo_sfield *f)
{
	static const char *const keys[] = { "name", "type", "set", "required",
		"fixed", "workflow", "reviewer_only", "min", "max", "values",
		"ref", "vi", "en", "note", NULL };
	const char *ref;
	numtext lo, hi;
	size_t i, n;
	int rc;

	snprintf(ps->where, sizeof(ps->where), "%s.fields[%zu]", t->name,
		index + 1);
	if (!json_is_object(obj))
		return perr(ps, "must be an object");
	if ((rc = get_name(ps, obj, "field", &f->name)) < 0)
		return rc;
	snprintf(ps->where, sizeof(ps->where), "%s.%s", t->name, f->name);
	if (f->name[0] == '_' || strcmp(f->name, "id") == 0)
		return perr(ps, "the name is reserved (id and names starting "
			"with _ belong to kheo)");
	for (i = 0; i < index; i++)
		if (strcmp(t->fields[i].name, f->name) == 0)
			return perr(ps, "field defined twice");
	if ((rc = only_keys(ps, obj, keys)) < 0 ||
	    (rc = parse_type(ps, obj, &f->type)) < 0 ||
	    (rc = get_bool(ps, obj, "set", &f->is_set)) < 0 ||
	    (rc = get_bool(ps, obj, "required", &f->required)) < 0 ||
	    (rc = get_bool(ps, obj, "fixed", &f->fixed)) < 0 ||
	    (rc = get_bool(ps, obj, "workflow", &f->workflow)) < 0 ||
	    (rc = get_bool(ps, obj, "reviewer_only", &f->reviewer_only)) < 0 ||
	    (rc = parse_bound(ps, obj, "min", f, &f->has_min, &f->min)) < 0 ||
	    (rc = parse_bound(ps, obj, "max", f, &f->has_max, &f->max)) < 0 ||
	    (rc = parse_values(ps, obj, f)) < 0 ||
	    (rc = get_labels(ps, obj, f->name, &f->label_vi,
		     &f->label_en)) < 0)
		return rc;
	if (f->has_min && f->has_max && f->min > f->max)
		return perr(ps, "min %s is above max %s", num(&lo, f->min),
			num(&hi, f->max));
	if (f->is_set && f->required)
		return perr(ps, "a set cannot be required (members are added "
			"after the record is made)");
	if (f->is_set && f->fixed)
		return perr(ps, "a set cannot be fixed");
	if (f->workflow && (f->is_set || f->fixed))
		return perr(ps, "a workflow field is a plain field that changes");
	if ((rc = get_string(ps, obj, "ref", f->type == KHEO_F_REF, &ref,
		     &n)) < 0)
		return rc;
	if (ref && f->type != KHEO_F_REF)
		return perr(ps, "\"ref\" is only for ref fields");
	/* the table is resolved once every table is known */
	if (ref && !(f->ref = arena_strndup(ps->s, ref, n)))
		return KHEO_ENOMEM;
	return KHEO_OK;
}

static int parse_table(parser *ps, json_t *obj, size_t index,
	kheo_stable *tables)
{
	static const char *const keys[] = { "name", "fields", "vi", "en",
		"note", NULL };
	kheo_stable *t = &tables[index];
	kheo_sfield *fields;
	json_t *arr;
	size_t i, n;
	int rc;

	snprintf(ps->where, sizeof(ps->where), "tables[%zu]", index + 1);
	if (!json_is_object(obj))
		return perr(ps, "must be an object");
	if ((rc = get_name(ps, obj, "table", &t->name)) < 0)
		return rc;
	snprintf(ps->where, sizeof(ps->where), "%s", t->name);
	if (t->name[0] == '_' || strncmp(t->name, "kheo_", 5) == 0 ||
	    strncmp(t->name, "sqlite_", 7) == 0 ||
	    (strncmp(t->name, "sys_", 4) == 0) != ps->system)
		return perr(ps, "the name is reserved (names starting with _, "
			"kheo_, sqlite_ or sys_)");
	t->system = ps->system;
	for (i = 0; i < index; i++)
		if (strcmp(tables[i].name, t->name) == 0)
			return perr(ps, "table defined twice");
	if ((rc = only_keys(ps, obj, keys)) < 0 ||
	    (rc = get_labels(ps, obj, t->name, &t->label_vi,
		     &t->label_en)) < 0)
		return rc;
	arr = json_object_get(obj, "fields");
	if (!json_is_array(arr) || (n = json_array_size(arr)) == 0)
		return perr(ps, "\"fields\" must be a non-empty array");
	/* a put carries every field of a record */
	if (n > KHEO_OP_FIELDS_MAX)
		return perr(ps, "%zu fields, above the limit %u", n,
			KHEO_OP_FIELDS_MAX);
	if (!(fields = arena_alloc(ps->s, n * sizeof(*fields))))
		return KHEO_ENOMEM;
	t->fields = fields;
	for (i = 0; i < n; i++) {
		t->nfields = i; /* fields before i are complete */
		if ((rc = parse_field(ps, json_array_get(arr, i), t, i,
			     &fields[i])) < 0)
			return rc;
	}
	t->nfields = n;
	return KHEO_OK;
}

static int parse_root(parser *ps, json_t *root)
{
	static const char *const keys[] = { "schema", "version", "tables",
		"vi", "en", "note", NULL };
	kheo_schema *pub = &ps->s->pub;
	kheo_stable *tables;
	const char *name, *vi, *en;
	json_t *v, *arr;
	size_t i, j, n;
	int rc;

	ps->where[0] = '\0';
	if (!json_is_object(root))
		return perr(ps, "a schema is a JSON object");
	if ((rc = only_keys(ps, root, keys)) < 0)
		return rc;
	if ((rc = get_string(ps, root, "schema", 1, &name, &n)) < 0)
		return rc;
	if (!kheo_name_valid(name, n))
		return perr(ps, "schema name is not valid ([a-z_][a-z0-9_]*)");
	if (!(pub->name = arena_strndup(ps->s, name, n)))
		return KHEO_ENOMEM;
	v = json_object_get(root, "version");
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    (uint64_t)json_integer_value(v) > KHEO_SCHEMA_VERSION_MAX)
		return perr(ps, "\"version\" must be an integer from 1 to %u",
			KHEO_SCHEMA_VERSION_MAX);
	pub->version = (uint32_t)json_integer_value(v);
	/* the schema's own labels are for the JSON's readers only */
	if ((rc = get_labels(ps, root, pub->name, &vi, &en)) < 0)
		return rc;
	arr = json_object_get(root, "tables");
	if (!json_is_array(arr) || (n = json_array_size(arr)) == 0)
		return perr(ps, "\"tables\" must be a non-empty array");
	if (n > SCHEMA_TABLES_MAX)
		return perr(ps, "%zu tables, above the limit %u", n,
			SCHEMA_TABLES_MAX);
	if (!(tables = arena_alloc(ps->s, n * sizeof(*tables))))
		return KHEO_ENOMEM;
	pub->tables = tables;
	for (i = 0; i < n; i++) {
		pub->ntables = i;
		if ((rc = parse_table(ps, json_array_get(arr, i), i,
			     tables)) < 0)
			return rc;
	}
	pub->ntables = n;
	for (i = 0; i < n; i++)
		for (j = 0; j < tables[i].nfields; j++) {
			kheo_sfield *f = (kheo_sfield *)&tables[i].fields[j];
			const kheo_stable *to;
			quoted q;

			if (!f->ref)
				continue;
			if (!(to = kheo_schema_table(pub, f->ref))) {
				snprintf(ps->where, sizeof(ps->where),
					"%s.%s", tables[i].name, f->name);
				return perr(ps, "ref to a missing table %s",
					quote_str(&q, f->ref));
			}
			f->ref = to->name;
		}
	return KHEO_OK;
}

int kheo_schema_parse(kheo_schema **out, const char *json, size_t len,
	char *err, size_t errlen)
{
	parser ps = { .err = err, .errlen = errlen };
	json_error_t jerr;
	json_t *root = NULL;
	char *text;
	int rc;

	assert(out && (json || len == 0));
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (len > KHEO_VALUE_MAX)
		return fail(err, errlen, "schema of %zu bytes, above the "
			"limit %u", len, KHEO_VALUE_MAX);
	if (!(ps.s = kheo__calloc(1, sizeof(*ps.s))))
		return KHEO_ENOMEM;
	if (!(text = arena_strndup(ps.s, json ? json : "", len))) {
		rc = KHEO_ENOMEM;
		goto done;
	}
	ps.s->pub.json = text;
	ps.s->pub.json_len = len;
	root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		rc = fail(err, errlen, "schema JSON, line %d column %d: %s",
			jerr.line, jerr.column, jerr.text);
		goto done;
	}
	rc = parse_root(&ps, root);
done:
	json_decref(root);
	kheo_buf_free(&ps.tmp);
	if (rc < 0) {
		kheo_schema_free(&ps.s->pub);
		return rc;
	}
	*out = &ps.s->pub;
	return KHEO_OK;
}

int kheo_schema_add_system(kheo_schema *pub, char *err, size_t errlen)
{
	parser ps = { .s = (schema_own *)pub, .err = err, .errlen = errlen,
		.system = 1 };
	json_error_t jerr;
	json_t *root, *arr;
	kheo_stable *tables;
	size_t i, n;
	int rc = KHEO_OK;

	root = json_loadb(kheo_schema_system_json,
		kheo_schema_system_json_len, JSON_REJECT_DUPLICATES, &jerr);
	arr = root ? json_object_get(root, "tables") : NULL;
	if (!json_is_array(arr)) {
		json_decref(root);
		return fail(err, errlen, "system tables: JSON, line %d: %s",
			jerr.line, jerr.text);
	}
	n = json_array_size(arr);
	if (!(tables = arena_alloc(ps.s, (pub->ntables + n) *
					    sizeof(*tables)))) {
		json_decref(root);
		return KHEO_ENOMEM;
	}
	memcpy(tables, pub->tables, pub->ntables * sizeof(*tables));
	for (i = 0; i < n && rc == KHEO_OK; i++)
		rc = parse_table(&ps, json_array_get(arr, i),
			pub->ntables + i, tables);
	json_decref(root);
	kheo_buf_free(&ps.tmp);
	if (rc < 0)
		return rc;
	pub->tables = tables;
	pub->ntables += n;
	return KHEO_OK;
}
