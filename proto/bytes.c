/*
 * bytes.c - growable output buffers, bounds-checked input cursors,
 * canonical varints and hex.
 *
 * The varint is unsigned LEB128 (7 bits a byte, least significant first,
 * high bit = more follows), and only its shortest form is accepted: a final
 * byte of 0x00 after other bytes is overlong.  That rule is what makes every
 * integer, and so every changeset, have one encoding.
 */
#include "proto.h"
#include "alloc.h"

#include <string.h>

void kheo_buf_free(kheo_buf *b)
{
	kheo__free(b->p);
	memset(b, 0, sizeof(*b));
}

void kheo_buf_reset(kheo_buf *b)
{
	b->len = 0;
	b->oom = 0;
}

int kheo_buf_reserve(kheo_buf *b, size_t n)
{
	size_t want, cap;
	uint8_t *p;

	if (b->oom)
		return KHEO_ENOMEM;
	if (n <= b->cap - b->len)
		return KHEO_OK;
	if (n > SIZE_MAX / 2 - b->len) {
		b->oom = 1;
		return KHEO_ENOMEM;
	}
	want = b->len + n;
	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	p = kheo__realloc(b->p, cap);
	if (!p) {
		b->oom = 1;
		return KHEO_ENOMEM;
	}
	b->p = p;
	b->cap = cap;
	return KHEO_OK;
}

void kheo_buf_put(kheo_buf *b, const void *p, size_t n)
{
	if (n == 0 || kheo_buf_reserve(b, n) < 0)
		return;
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

void kheo_buf_put_u8(kheo_buf *b, uint8_t v)
{
	kheo_buf_put(b, &v, 1);
}

size_t kheo_varint_encode(uint8_t out[10], uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

void kheo_buf_put_varint(kheo_buf *b, uint64_t v)
{
	uint8_t tmp[10];

	kheo_buf_put(b, tmp, kheo_varint_encode(tmp, v));
}

void kheo_buf_put_str(kheo_buf *b, const void *p, size_t n)
{
	kheo_buf_put_varint(b, n);
	kheo_buf_put(b, p, n);
}

void kheo_reader_init(kheo_reader *r, const void *p, size_t len,
	kheo_refusal *why)
{
	r->p = p;
	r->len = len;
	r->off = 0;
	r->why = why;
}

int kheo_read_bytes(kheo_reader *r, const uint8_t **out, size_t n,
	const char *what)
{
	if (n > r->len - r->off)
		return kheo__refuse(r->why, KHEO_R_TRUNCATED, r->off,
			"%s: needs %zu bytes, %zu left", what, n,
			r->len - r->off);
	*out = r->p + r->off;
	r->off += n;
	return KHEO_OK;
}

int kheo_read_u8(kheo_reader *r, uint8_t *out, const char *what)
{
	const uint8_t *p = NULL;
	int err;

	if ((err = kheo_read_bytes(r, &p, 1, what)) < 0)
		return err;
	*out = *p;
	return KHEO_OK;
}

int kheo_read_varint(kheo_reader *r, uint64_t *out, uint64_t max,
	const char *what)
{
	size_t start = r->off, i;
	uint64_t v = 0;

	for (i = 0; i < 10; i++) {
		uint8_t byte;

		if (r->off >= r->len)
			return kheo__refuse(r->why, KHEO_R_TRUNCATED, start,
				"%s: varint cut short", what);
		byte = r->p[r->off++];
		if (i == 9 && byte > 1)
			return kheo__refuse(r->why, KHEO_R_VARINT_OVERFLOW,
				start, "%s: varint above 2^64-1", what);
		v |= (uint64_t)(byte & 0x7f) << (7 * i);
		if (!(byte & 0x80)) {
			if (byte == 0 && i > 0)
				return kheo__refuse(r->why,
					KHEO_R_OVERLONG_VARINT, start,
					"%s: varint not in shortest form",
					what);
			if (v > max)
				return kheo__refuse(r->why,
					KHEO_R_VARINT_OVERFLOW, start,
					"%s: %llu above its maximum %llu",
					what, (unsigned long long)v,
					(unsigned long long)max);
			*out = v;
			return KHEO_OK;
		}
	}
	return kheo__refuse(r->why, KHEO_R_VARINT_OVERFLOW, start,
		"%s: varint longer than 10 bytes", what);
}

int kheo_read_end(kheo_reader *r, const char *what)
{
	if (r->off != r->len)
		return kheo__refuse(r->why, KHEO_R_TRAILING_BYTES, r->off,
			"%s: %zu bytes after the end", what,
			r->len - r->off);
	return KHEO_OK;
}

void kheo_hex(char *out, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int kheo_unhex(uint8_t *out, size_t n, const char *hex, size_t hexlen)
{
	size_t i;

	if (hexlen != 2 * n)
		return KHEO_EINVAL;
	for (i = 0; i < n; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return KHEO_EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return KHEO_OK;
}
