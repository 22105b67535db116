/*
 * refusal.c - names and error codes of the reasons bytes are refused.
 *
 * The strings are stable identifiers (stored with quarantined changesets
 * and printed by the CLI), not prose; the prose is in each refusal's msg.
 */
#include "proto.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const reason_names[KHEO_R_REASON_COUNT] = {
	[KHEO_R_NONE] = "none",
	[KHEO_R_TRUNCATED] = "truncated",
	[KHEO_R_OVERLONG_VARINT] = "overlong-varint",
	[KHEO_R_VARINT_OVERFLOW] = "varint-overflow",
	[KHEO_R_TRAILING_BYTES] = "trailing-bytes",
	[KHEO_R_BAD_VERSION] = "bad-version",
	[KHEO_R_BAD_ENUM] = "bad-enum",
	[KHEO_R_UNSORTED] = "unsorted",
	[KHEO_R_DUPLICATE] = "duplicate",
	[KHEO_R_BAD_UTF8] = "bad-utf8",
	[KHEO_R_BAD_NAME] = "bad-name",
	[KHEO_R_BAD_UNIT] = "bad-unit",
	[KHEO_R_BAD_REAL] = "bad-real",
	[KHEO_R_TOO_MANY] = "too-many",
	[KHEO_R_TOO_BIG] = "too-big",
	[KHEO_R_SIZE_MISMATCH] = "size-mismatch",
	[KHEO_R_BAD_CLOCK] = "bad-clock",
	[KHEO_R_BAD_CHAIN] = "bad-chain",
	[KHEO_R_UNUSED_KEY] = "unused-key",
	[KHEO_R_BAD_KEY_INDEX] = "bad-key-index",
	[KHEO_R_BAD_MAGIC] = "bad-magic",
	[KHEO_R_BAD_FRAME] = "bad-frame",
	[KHEO_R_UNKNOWN_DICT] = "unknown-dict",
	[KHEO_R_BAD_SIGNATURE] = "bad-signature",
	[KHEO_R_EMPTY] = "empty",
	[KHEO_R_BAD_FLAGS] = "bad-flags",
	[KHEO_R_BAD_CERT] = "bad-cert",
	[KHEO_R_OUT_OF_SCOPE] = "out-of-scope",
	[KHEO_R_ROLE_FORBIDS] = "role-forbids",
	[KHEO_R_REVOKED] = "revoked",
	[KHEO_R_NOT_ENROLLED] = "not-enrolled",
	[KHEO_R_BAD_HELLO] = "bad-hello",
	[KHEO_R_BAD_AUTH] = "bad-auth",
	[KHEO_R_BAD_KEY] = "bad-key",
	[KHEO_R_BAD_RECORD] = "bad-record",
};

const char *kheo_reason_name(int reason)
{
	if (reason < 0 || reason >= KHEO_R_REASON_COUNT)
		return "unknown";
	return reason_names[reason];
}

int kheo_reason_error(int reason)
{
	switch (reason) {
	case KHEO_R_NONE:
		return KHEO_OK;
	case KHEO_R_TOO_MANY:
	case KHEO_R_TOO_BIG:
		return KHEO_ELIMIT;
	case KHEO_R_BAD_SIGNATURE:
	case KHEO_R_BAD_CERT:
	case KHEO_R_OUT_OF_SCOPE:
	case KHEO_R_ROLE_FORBIDS:
	case KHEO_R_REVOKED:
	case KHEO_R_NOT_ENROLLED:
	case KHEO_R_BAD_HELLO:
	case KHEO_R_BAD_AUTH:
	case KHEO_R_BAD_KEY:
	case KHEO_R_BAD_RECORD:
		return KHEO_EAUTH;
	case KHEO_R_BAD_VERSION:
	case KHEO_R_UNKNOWN_DICT:
		return KHEO_EUNSUPPORTED;
	default:
		return KHEO_EPROTO;
	}
}

int kheo__refuse(kheo_refusal *why, int reason, size_t offset,
	const char *fmt, ...)
{
	if (why) {
		va_list ap;

		why->reason = reason;
		why->offset = offset;
		va_start(ap, fmt);
		vsnprintf(why->msg, sizeof(why->msg), fmt, ap);
		va_end(ap);
	}
	return kheo_reason_error(reason);
}
