/*
 * value.c - typed values, field names and unit paths: their canonical
 * bytes and the rules that make them valid.
 *
 * A value is a tag byte and a body:
 *   0 null | 1 int (zigzag varint) | 2 real (binary64, little-endian, finite)
 *   3 text (varint length, UTF-8 without NUL) | 4 bytes (varint length, bytes)
 *   5 false | 6 true | 7 hash (32 bytes)
 * Booleans are two tags rather than a tag and a byte so that no byte can
 * hold a third truth value.  Text validity is checked with utf8proc, which
 * refuses overlong forms, surrogates and code points above U+10FFFF.
 */
#include "proto.h"
#include "value.h"

#include <math.h>
#include <string.h>
#include <utf8proc.h>

enum {
	TAG_NULL = 0, TAG_INT = 1, TAG_REAL = 2, TAG_TEXT = 3, TAG_BYTES = 4,
	TAG_FALSE = 5, TAG_TRUE = 6, TAG_HASH = 7,
};

int kheo_utf8_valid(const uint8_t *p, size_t n)
{
	size_t off = 0;

	while (off < n) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t step;
		size_t left = n - off;

		/* utf8proc takes a signed length; a text value is ≤ 1 MiB. */
		if (left > KHEO_VALUE_MAX)
			left = KHEO_VALUE_MAX;
		step = utf8proc_iterate(p + off, (utf8proc_ssize_t)left, &cp);
		if (step <= 0 || cp == 0)
			return 0;
		off += (size_t)step;
	}
	return 1;
}

int kheo_name_valid(const char *p, size_t n)
{
	size_t i;

	if (n == 0 || n > KHEO_NAME_MAX)
		return 0;
	if (!((p[0] >= 'a' && p[0] <= 'z') || p[0] == '_'))
		return 0;
	for (i = 1; i < n; i++) {
		char c = p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '_'))
			return 0;
	}
	return 1;
}

static int slug_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int kheo_unit_valid(const char *p, size_t n)
{
	size_t i, segments = 1;

	if (n == 4 && memcmp(p, "_sys", 4) == 0)
		return 1;
	if (n == 0 || n > KHEO_UNIT_MAX)
		return 0;
	/* slug ('/' slug)*, slug = alnum+ ('-' alnum+)* */
	for (i = 0; i < n; i++) {
		char c = p[i];

		if (slug_char(c))
			continue;
		if (c != '-' && c != '/')
			return 0;
		if (i == 0 || i + 1 == n || !slug_char(p[i - 1]) ||
		    !slug_char(p[i + 1]))
			return 0;
		if (c == '/' && ++segments > KHEO_UNIT_DEPTH_MAX)
			return 0;
	}
	return 1;
}

static uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static void put_real(kheo_buf *b, double r)
{
	uint8_t le[8];
	uint64_t bits;
	int i;

	memcpy(&bits, &r, 8);
	for (i = 0; i < 8; i++)
		le[i] = (uint8_t)(bits >> (8 * i));
	kheo_buf_put(b, le, 8);
}

static double get_real(const uint8_t *le)
{
	uint64_t bits = 0;
	double r;
	int i;

	for (i = 0; i < 8; i++)
		bits |= (uint64_t)le[i] << (8 * i);
	memcpy(&r, &bits, 8);
	return r;
}

int kheo__value_check(const kheo_value *v, kheo_refusal *why,
	const char *what)
{
	switch (v->type) {
	case KHEO_VAL_NULL:
	case KHEO_VAL_INT:
	case KHEO_VAL_HASH:
		return KHEO_OK;
	case KHEO_VAL_BOOL:
		if (v->b != 0 && v->b != 1)
			return kheo__refuse(why, KHEO_R_BAD_ENUM, 0,
				"%s: boolean %d is neither 0 nor 1", what,
				v->b);
		return KHEO_OK;
	case KHEO_VAL_REAL:
		if (!isfinite(v->r))
			return kheo__refuse(why, KHEO_R_BAD_REAL, 0,
				"%s: real is not finite", what);
		return KHEO_OK;
	case KHEO_VAL_TEXT:
	case KHEO_VAL_BYTES:
		if (v->len > KHEO_VALUE_MAX)
			return kheo__refuse(why, KHEO_R_TOO_BIG, 0,
				"%s: %zu bytes, above the %u limit", what,
				v->len, KHEO_VALUE_MAX);
		if (v->type == KHEO_VAL_TEXT && !kheo_utf8_valid(v->p, v->len))
			return kheo__refuse(why, KHEO_R_BAD_UTF8, 0,
				"%s: text is not valid UTF-8 (or holds NUL)",
				what);
		return KHEO_OK;
	}
	return kheo__refuse(why, KHEO_R_BAD_ENUM, 0,
		"%s: value type %d unknown", what, (int)v->type);
}

int kheo__value_put(kheo_buf *b, const kheo_value *v, kheo_refusal *why,
	const char *what)
{
	int err;

	if ((err = kheo__value_check(v, why, what)) < 0)
		return err;
	switch (v->type) {
	case KHEO_VAL_NULL:
		kheo_buf_put_u8(b, TAG_NULL);
		break;
	case KHEO_VAL_INT:
		kheo_buf_put_u8(b, TAG_INT);
		kheo_buf_put_varint(b, zigzag(v->i));
		break;
	case KHEO_VAL_REAL:
		kheo_buf_put_u8(b, TAG_REAL);
		put_real(b, v->r);
		break;
	case KHEO_VAL_TEXT:
		kheo_buf_put_u8(b, TAG_TEXT);
		kheo_buf_put_str(b, v->p, v->len);
		break;
	case KHEO_VAL_BYTES:
		kheo_buf_put_u8(b, TAG_BYTES);
		kheo_buf_put_str(b, v->p, v->len);
		break;
	case KHEO_VAL_BOOL:
		kheo_buf_put_u8(b, v->b ? TAG_TRUE : TAG_FALSE);
		break;
	case KHEO_VAL_HASH:
		kheo_buf_put_u8(b, TAG_HASH);
		kheo_buf_put(b, v->p, KHEO_ID_SIZE);
		break;
	}
	return b->oom ? KHEO_ENOMEM : KHEO_OK;
}

int kheo__value_read(kheo_reader *r, kheo_value *v, const char *what)
{
	size_t start = r->off;
	uint64_t u;
	uint8_t tag;
	int err;

	memset(v, 0, sizeof(*v));
	if ((err = kheo_read_u8(r, &tag, what)) < 0)
		return err;
	switch (tag) {
	case TAG_NULL:
		v->type = KHEO_VAL_NULL;
		return KHEO_OK;
	case TAG_INT:
		v->type = KHEO_VAL_INT;
		if ((err = kheo_read_varint(r, &u, UINT64_MAX, what)) < 0)
			return err;
		v->i = unzigzag(u);
		return KHEO_OK;
	case TAG_REAL:
		v->type = KHEO_VAL_REAL;
		if ((err = kheo_read_bytes(r, &v->p, 8, what)) < 0)
			return err;
		v->r = get_real(v->p);
		v->p = NULL;
		if (!isfinite(v->r))
			return kheo__refuse(r->why, KHEO_R_BAD_REAL, start,
				"%s: real is not finite", what);
		return KHEO_OK;
	case TAG_TEXT:
	case TAG_BYTES:
		v->type = tag == TAG_TEXT ? KHEO_VAL_TEXT : KHEO_VAL_BYTES;
		if ((err = kheo_read_varint(r, &u, UINT64_MAX, what)) < 0)
			return err;
		if (u > KHEO_VALUE_MAX)
			return kheo__refuse(r->why, KHEO_R_TOO_BIG, start,
				"%s: %llu bytes, above the %u limit", what,
				(unsigned long long)u, KHEO_VALUE_MAX);
		v->len = (size_t)u;
		if ((err = kheo_read_bytes(r, &v->p, v->len, what)) < 0)
			return err;
		if (tag == TAG_TEXT && !kheo_utf8_valid(v->p, v->len))
			return kheo__refuse(r->why, KHEO_R_BAD_UTF8, start,
				"%s: text is not valid UTF-8 (or holds NUL)",
				what);
		return KHEO_OK;
	case TAG_FALSE:
	case TAG_TRUE:
		v->type = KHEO_VAL_BOOL;
		v->b = tag == TAG_TRUE;
		return KHEO_OK;
	case TAG_HASH:
		v->type = KHEO_VAL_HASH;
		v->len = KHEO_ID_SIZE;
		return kheo_read_bytes(r, &v->p, KHEO_ID_SIZE, what);
	}
	return kheo__refuse(r->why, KHEO_R_BAD_ENUM, start,
		"%s: value tag %u unknown", what, tag);
}

int kheo_value_encode(kheo_buf *b, const kheo_value *v)
{
	return kheo__value_put(b, v, NULL, "value");
}
