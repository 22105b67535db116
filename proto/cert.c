/*
 * cert.c - certificates and enrolment requests, and the one-line text
 * people pass them around in (docs/protocol.md section 9).
 *
 *   certificate  "KCT" 0x01 | subject key | role (u8) | scope (str)
 *                | not_before, not_after (varint ms) | issuer key
 *                | heads: count, (unit str, useq varint, id) ascending by unit
 *                | signature: Ed25519 by the issuer over
 *                  "kheo/cert/v1" || BLAKE2b-256(every byte before it)
 *   request      "KRQ" 0x01 | key | node role (u8) | unit (str)
 *                | created (varint ms) | heads as above
 *                | signature: Ed25519 by `key` over
 *                  "kheo/enroll/v1" || BLAKE2b-256(every byte before it)
 *
 * Decoding is strict like the changeset decoder's: one byte string per
 * certificate, so its digest names it.  Whether a certificate is *trusted*
 * (its chain, its issuer's scope and role) is a question for the node that
 * holds the facts: client-core/src/authz.c.
 */
#include "proto.h"

#include <sodium.h>
#include <string.h>

static const char *const role_names[] = {
	[KHEO_ROLE_NONE] = "none",
	[KHEO_ROLE_COLLECTOR] = "collector",
	[KHEO_ROLE_REVIEWER] = "reviewer",
	[KHEO_ROLE_AUDITOR] = "auditor",
	[KHEO_ROLE_HUB] = "hub",
	[KHEO_ROLE_PROVINCE] = "province",
};

const char *kheo_role_name(int role)
{
	if (role < 0 || role > KHEO_ROLE_PROVINCE)
		return "unknown";
	return role_names[role];
}

int kheo_role_parse(const char *name)
{
	int r;

	for (r = KHEO_ROLE_COLLECTOR; r <= KHEO_ROLE_PROVINCE; r++)
		if (strcmp(name, role_names[r]) == 0)
			return r;
	return KHEO_ROLE_NONE;
}

int kheo_unit_within(const char *u, const char *scope)
{
	size_t n = strlen(scope);

	return strncmp(u, scope, n) == 0 && (u[n] == '\0' || u[n] == '/');
}

/* ------------------------------------------------------- shared pieces */

/* Sign `ctx || BLAKE2b-256(p[0..n))`; the digest goes to `digest`. */
static void sign_digest(uint8_t sig[KHEO_SIG_SIZE],
	uint8_t digest[KHEO_ID_SIZE], const char *ctx, const uint8_t *p,
	size_t n, const uint8_t sk[KHEO_SECRET_SIZE])
{
	uint8_t msg[32 + KHEO_ID_SIZE];
	size_t clen = strlen(ctx);

	crypto_generichash(digest, KHEO_ID_SIZE, p, n, NULL, 0);
	memcpy(msg, ctx, clen);
	memcpy(msg + clen, digest, KHEO_ID_SIZE);
	crypto_sign_detached(sig, NULL, msg, clen + KHEO_ID_SIZE, sk);
}

static int verify_digest(const uint8_t sig[KHEO_SIG_SIZE],
	uint8_t digest[KHEO_ID_SIZE], const char *ctx, const uint8_t *p,
	size_t n, const uint8_t pk[KHEO_KEY_SIZE])
{
	uint8_t msg[32 + KHEO_ID_SIZE];
	size_t clen = strlen(ctx);

	crypto_generichash(digest, KHEO_ID_SIZE, p, n, NULL, 0);
	memcpy(msg, ctx, clen);
	memcpy(msg + clen, digest, KHEO_ID_SIZE);
	return crypto_sign_verify_detached(sig, msg, clen + KHEO_ID_SIZE,
		pk) == 0;
}

static void put_heads(kheo_buf *b, const kheo_cert_head *h, size_t n)
{
	size_t i;

	kheo_buf_put_varint(b, n);
	for (i = 0; i < n; i++) {
		kheo_buf_put_str(b, h[i].unit, strlen(h[i].unit));
		kheo_buf_put_varint(b, h[i].useq);
		kheo_buf_put(b, h[i].id, KHEO_ID_SIZE);
	}
}

/* A unit path (str) into out; `sys_ok`: may it be "_sys"? */
static int read_unit(kheo_reader *r, char out[KHEO_UNIT_MAX + 1],
	int sys_ok, const char *what)
{
	const uint8_t *p;
	uint64_t n;
	size_t at = r->off;
	int err;

	if ((err = kheo_read_varint(r, &n, KHEO_UNIT_MAX, what)) < 0 ||
	    (err = kheo_read_bytes(r, &p, (size_t)n, what)) < 0)
		return err;
	if (!kheo_unit_valid((const char *)p, (size_t)n) ||
	    (!sys_ok && n == 4 && memcmp(p, "_sys", 4) == 0))
		return kheo__refuse(r->why, KHEO_R_BAD_UNIT, at,
			"%s: \"%.*s\" is not a unit path", what, (int)n,
			(const char *)p);
	memcpy(out, p, (size_t)n);
	out[n] = '\0';
	return KHEO_OK;
}

static int read_heads(kheo_reader *r, kheo_cert_head *h, size_t *count)
{
	uint64_t n;
	size_t i, at;
	int err;

	if ((err = kheo_read_varint(r, &n, KHEO_CERT_HEADS_MAX,
		     "head count")) < 0)
		return err;
	for (i = 0; i < n; i++) {
		const uint8_t *id;

		at = r->off;
		if ((err = read_unit(r, h[i].unit, 1, "head unit")) < 0 ||
		    (err = kheo_read_varint(r, &h[i].useq, UINT64_MAX,
			     "head useq")) < 0 ||
		    (err = kheo_read_bytes(r, &id, KHEO_ID_SIZE,
			     "head id")) < 0)
			return err;
		memcpy(h[i].id, id, KHEO_ID_SIZE);
		if (h[i].useq == 0)
			return kheo__refuse(r->why, KHEO_R_BAD_CHAIN, at,
				"head of %s at useq 0", h[i].unit);
		if (i > 0) {
			int c = strcmp(h[i - 1].unit, h[i].unit);

			if (c == 0)
				return kheo__refuse(r->why, KHEO_R_DUPLICATE,
					at, "two heads for %s", h[i].unit);
			if (c > 0)
				return kheo__refuse(r->why, KHEO_R_UNSORTED,
					at, "heads not ascending by unit");
		}
	}
	*count = (size_t)n;
	return KHEO_OK;
}

static int check_heads_sorted(const kheo_cert_head *h, size_t n)
{
	size_t i;

	if (n > KHEO_CERT_HEADS_MAX)
		return KHEO_ELIMIT;
	for (i = 1; i < n; i++)
		if (strcmp(h[i - 1].unit, h[i].unit) >= 0)
			return KHEO_EINVAL;
	return KHEO_OK;
}

/* -------------------------------------------------------- certificates */

int kheo_cert_encode(kheo_buf *out, kheo_cert *c,
	const uint8_t sk[KHEO_SECRET_SIZE])
{
	size_t start = out->len;
	int err;

	if (c->role < KHEO_ROLE_COLLECTOR || c->role > KHEO_ROLE_PROVINCE ||
	    !kheo_unit_valid(c->scope, strlen(c->scope)) ||
	    strcmp(c->scope, "_sys") == 0 || c->not_after <= c->not_before)
		return KHEO_EINVAL;
	if ((err = check_heads_sorted(c->heads, c->nheads)) < 0)
		return err;
	kheo_buf_put(out, KHEO_CERT_MAGIC, 4);
	kheo_buf_put(out, c->subject, KHEO_KEY_SIZE);
	kheo_buf_put_u8(out, (uint8_t)c->role);
	kheo_buf_put_str(out, c->scope, strlen(c->scope));
	kheo_buf_put_varint(out, c->not_before);
	kheo_buf_put_varint(out, c->not_after);
	kheo_buf_put(out, c->issuer, KHEO_KEY_SIZE);
	put_heads(out, c->heads, c->nheads);
	if (out->oom)
		return KHEO_ENOMEM;
	sign_digest(c->sig, c->digest, KHEO_CTX_CERT, out->p + start,
		out->len - start, sk);
	kheo_buf_put(out, c->sig, KHEO_SIG_SIZE);
	return out->oom ? KHEO_ENOMEM : KHEO_OK;
}

int kheo_cert_decode(kheo_cert *c, const uint8_t *p, size_t n,
	kheo_refusal *why)
{
	kheo_reader r;
	const uint8_t *b;
	uint8_t role;
	size_t body;
	int err;

	memset(c, 0, sizeof(*c));
	kheo_reader_init(&r, p, n, why);
	if ((err = kheo_read_bytes(&r, &b, 4, "magic")) < 0)
		return err;
	if (memcmp(b, KHEO_CERT_MAGIC, 4) != 0)
		return kheo__refuse(why, KHEO_R_BAD_MAGIC, 0,
			"not a kheo certificate");
	if ((err = kheo_read_bytes(&r, &b, KHEO_KEY_SIZE, "subject")) < 0)
		return err;
	memcpy(c->subject, b, KHEO_KEY_SIZE);
	if ((err = kheo_read_u8(&r, &role, "role")) < 0)
		return err;
	if (role < KHEO_ROLE_COLLECTOR || role > KHEO_ROLE_PROVINCE)
		return kheo__refuse(why, KHEO_R_BAD_ENUM, r.off - 1,
			"role %u unknown", role);
	c->role = role;
	if ((err = read_unit(&r, c->scope, 0, "scope")) < 0 ||
	    (err = kheo_read_varint(&r, &c->not_before, UINT64_MAX,
		     "not_before")) < 0 ||
	    (err = kheo_read_varint(&r, &c->not_after, UINT64_MAX,
		     "not_after")) < 0)
		return err;
	if (c->not_after <= c->not_before)
		return kheo__refuse(why, KHEO_R_BAD_CLOCK, r.off,
			"certificate ends before it begins");
	if ((err = kheo_read_bytes(&r, &b, KHEO_KEY_SIZE, "issuer")) < 0)
		return err;
	memcpy(c->issuer, b, KHEO_KEY_SIZE);
	if ((err = read_heads(&r, c->heads, &c->nheads)) < 0)
		return err;
	body = r.off;
	if ((err = kheo_read_bytes(&r, &b, KHEO_SIG_SIZE, "signature")) < 0)
		return err;
	memcpy(c->sig, b, KHEO_SIG_SIZE);
	if ((err = kheo_read_end(&r, "certificate")) < 0)
		return err;
	if (!verify_digest(c->sig, c->digest, KHEO_CTX_CERT, p, body,
		    c->issuer))
		return kheo__refuse(why, KHEO_R_BAD_SIGNATURE, body,
			"certificate signature does not verify with its "
			"issuer's key");
	return KHEO_OK;
}

/* ------------------------------------------------- enrolment requests */

int kheo_enroll_req_encode(kheo_buf *out, kheo_enroll_req *q,
	const uint8_t sk[KHEO_SECRET_SIZE])
{
	uint8_t digest[KHEO_ID_SIZE];
	size_t start = out->len;
	int err;

	if (q->node_role < KHEO_NODE_DEVICE ||
	    q->node_role > KHEO_NODE_PROVINCE ||
	    !kheo_unit_valid(q->unit, strlen(q->unit)))
		return KHEO_EINVAL;
	if ((err = check_heads_sorted(q->heads, q->nheads)) < 0)
		return err;
	kheo_buf_put(out, KHEO_REQ_MAGIC, 4);
	kheo_buf_put(out, q->key, KHEO_KEY_SIZE);
	kheo_buf_put_u8(out, (uint8_t)q->node_role);
	kheo_buf_put_str(out, q->unit, strlen(q->unit));
	kheo_buf_put_varint(out, q->created_ms);
	put_heads(out, q->heads, q->nheads);
	if (out->oom)
		return KHEO_ENOMEM;
	sign_digest(q->sig, digest, KHEO_CTX_ENROLL, out->p + start,
		out->len - start, sk);
	kheo_buf_put(out, q->sig, KHEO_SIG_SIZE);
	return out->oom ? KHEO_ENOMEM : KHEO_OK;
}

int kheo_enroll_req_decode(kheo_enroll_req *q, const uint8_t *p, size_t n,
	kheo_refusal *why)
{
	uint8_t digest[KHEO_ID_SIZE], role;
	kheo_reader r;
	const uint8_t *b;
	size_t body;
	int err;

	memset(q, 0, sizeof(*q));
	kheo_reader_init(&r, p, n, why);
	if ((err = kheo_read_bytes(&r, &b, 4, "magic")) < 0)
		return err;
	if (memcmp(b, KHEO_REQ_MAGIC, 4) != 0)
		return kheo__refuse(why, KHEO_R_BAD_MAGIC, 0,
			"not a kheo enrolment request");
	if ((err = kheo_read_bytes(&r, &b, KHEO_KEY_SIZE, "key")) < 0)
		return err;
	memcpy(q->key, b, KHEO_KEY_SIZE);
	if ((err = kheo_read_u8(&r, &role, "node role")) < 0)
		return err;
	if (role < KHEO_NODE_DEVICE || role > KHEO_NODE_PROVINCE)
		return kheo__refuse(why, KHEO_R_BAD_ENUM, r.off - 1,
			"node role %u unknown", role);
	q->node_role = role;
	if ((err = read_unit(&r, q->unit, 0, "unit")) < 0 ||
	    (err = kheo_read_varint(&r, &q->created_ms, UINT64_MAX,
		     "created")) < 0 ||
	    (err = read_heads(&r, q->heads, &q->nheads)) < 0)
		return err;
	body = r.off;
	if ((err = kheo_read_bytes(&r, &b, KHEO_SIG_SIZE, "signature")) < 0)
		return err;
	memcpy(q->sig, b, KHEO_SIG_SIZE);
	if ((err = kheo_read_end(&r, "request")) < 0)
		return err;
	if (!verify_digest(q->sig, digest, KHEO_CTX_ENROLL, p, body, q->key))
		return kheo__refuse(why, KHEO_R_BAD_SIGNATURE, body,
			"request signature does not verify with its key");
	return KHEO_OK;
}

/* ---------------------------------------------------------------- text */

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

int kheo_text_encode(kheo_buf *out, const char *prefix,
	const uint8_t *const *items, const size_t *lens, size_t n)
{
	size_t i;

	kheo_buf_put(out, prefix, strlen(prefix));
	for (i = 0; i < n; i++) {
		size_t room = sodium_base64_ENCODED_LEN(lens[i], B64);

		if (i)
			kheo_buf_put_u8(out, '.');
		if (kheo_buf_reserve(out, room) < 0)
			return KHEO_ENOMEM;
		sodium_bin2base64((char *)out->p + out->len, room, items[i],
			lens[i], B64);
		out->len += strlen((char *)out->p + out->len);
	}
	kheo_buf_put_u8(out, '\0');
	if (out->oom)
		return KHEO_ENOMEM;
	out->len--; /* NUL-terminated, not counted */
	return KHEO_OK;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int kheo_text_decode(kheo_buf *bytes, size_t *off, size_t *lens,
	size_t max, size_t *n, const char *prefix, const char *text,
	size_t len, kheo_refusal *why)
{
	size_t plen = strlen(prefix), i;

	*n = 0;
	kheo_buf_reset(bytes);
	while (len && is_space(*text)) {
		text++;
		len--;
	}
	while (len && is_space(text[len - 1]))
		len--;
	if (len > KHEO_CERT_TEXT_MAX)
		return kheo__refuse(why, KHEO_R_TOO_BIG, 0,
			"text of %zu bytes, above the limit %u", len,
			KHEO_CERT_TEXT_MAX);
	if (len < plen || memcmp(text, prefix, plen) != 0)
		return kheo__refuse(why, KHEO_R_BAD_MAGIC, 0,
			"text does not start with \"%s\"", prefix);
	i = plen;
	while (i <= len) {
		size_t j = i, got = 0;

		while (j < len && text[j] != '.')
			j++;
		if (*n == max)
			return kheo__refuse(why, KHEO_R_TOO_MANY, i,
				"more than %zu items", max);
		if (kheo_buf_reserve(bytes, j - i + 1) < 0)
			return KHEO_ENOMEM;
		if (j == i || sodium_base642bin(bytes->p + bytes->len,
				      bytes->cap - bytes->len, text + i,
				      j - i, NULL, &got, NULL, B64) != 0)
			return kheo__refuse(why, KHEO_R_BAD_ENUM, i,
				"item %zu is not URL-safe base64", *n + 1);
		off[*n] = bytes->len;
		lens[*n] = got;
		bytes->len += got;
		(*n)++;
		i = j + 1;
	}
	return KHEO_OK;
}
