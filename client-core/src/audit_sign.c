/*
 * audit_sign.c - the mirroring node signs each mirror commit.
 *
 * Everything in a commit is the mirroring node's word except the
 * changesets, which their authors signed: the received times above all
 * (committer dates and Kheo-Applied), which verify can only bound by
 * their neighbours.  Signing the commit with the node's Ed25519 key
 * fixes them: a date moved, a trailer edited or a commit re-made no
 * longer carries a valid signature.
 *
 * The format is the one git writes for `gpg.format = ssh` (OpenSSH's
 * PROTOCOL.sshsig): the commit's bytes are hashed with SHA-512, and the
 * Ed25519 signature covers
 *     "SSHSIG" string(namespace "git") string(reserved "")
 *     string(hash "sha512") string(hash of the commit)
 * then travels armoured in the commit's gpgsig header as
 *     "SSHSIG" uint32(1) string(public key) string(namespace)
 *     string(reserved) string(hash) string(signature)
 * where a public key is string("ssh-ed25519") string(32 bytes) and a
 * signature string("ssh-ed25519") string(64 bytes); strings are a
 * big-endian uint32 length and the bytes.  So an auditor's stock git,
 * given the node's key in an allowed-signers file, verifies every commit
 * (`git verify-commit`, `git log --show-signature`), and kheo audit
 * verify does the same with libsodium.
 */
#include "audit_sign.h"
#include "alloc.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define SSHSIG_MAGIC "SSHSIG"
#define SSHSIG_NAMESPACE "git"
#define SSHSIG_HASH "sha512"
#define ARMOR_BEGIN "-----BEGIN SSH SIGNATURE-----"
#define ARMOR_END "-----END SSH SIGNATURE-----"
#define ARMOR_WIDTH 70 /* as ssh-keygen writes it */

/* ------------------------------------------------------ SSH wire bytes */

static void put_u32(kheo_buf *b, uint32_t v)
{
	uint8_t be[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
			  (uint8_t)(v >> 8), (uint8_t)v };

	kheo_buf_put(b, be, 4);
}

static void put_str(kheo_buf *b, const void *p, size_t n)
{
	put_u32(b, (uint32_t)n);
	kheo_buf_put(b, p, n);
}

static void put_cstr(kheo_buf *b, const char *s)
{
	put_str(b, s, strlen(s));
}

/* string("ssh-ed25519") string(key) */
static void put_pubkey(kheo_buf *b, const uint8_t *pk)
{
	kheo_buf k = { 0 };

	put_cstr(&k, "ssh-ed25519");
	put_str(&k, pk, KHEO_KEY_SIZE);
	put_str(b, k.p, k.len);
	b->oom |= k.oom;
	kheo_buf_free(&k);
}

/* A reader over wire bytes: every get fails once one has. */
typedef struct wire {
	const uint8_t *p;
	size_t n;
	int bad;
} wire;

static uint32_t get_u32(wire *w)
{
	uint32_t v;

	if (w->bad || w->n < 4) {
		w->bad = 1;
		return 0;
	}
	v = (uint32_t)w->p[0] << 24 | (uint32_t)w->p[1] << 16 |
	    (uint32_t)w->p[2] << 8 | w->p[3];
	w->p += 4;
	w->n -= 4;
	return v;
}

static const uint8_t *get_str(wire *w, size_t *len)
{
	uint32_t n = get_u32(w);
	const uint8_t *p = w->p;

	if (w->bad || n > w->n) {
		w->bad = 1;
		*len = 0;
		return NULL;
	}
	w->p += n;
	w->n -= n;
	*len = n;
	return p;
}

static int str_is(const uint8_t *p, size_t n, const char *s)
{
	return p && n == strlen(s) && memcmp(p, s, n) == 0;
}

/* A public key or a signature: string(string("ssh-ed25519") string(want
 * bytes)) read from w; NULL when it is anything else. */
static const uint8_t *get_ed25519(wire *w, size_t want)
{
	size_t n;
	const uint8_t *p = get_str(w, &n), *type, *body;
	wire in = { p, n, w->bad };

	type = get_str(&in, &n);
	if (!str_is(type, n, "ssh-ed25519"))
		return NULL;
	body = get_str(&in, &n);
	return in.bad || in.n || n != want ? NULL : body;
}

/* ------------------------------------------------------------ signing */

void kheo__ssh_key_line(char out[KHEO_SSH_KEY_MAX], const uint8_t *pk)
{
	kheo_buf b = { 0 };
	size_t at = strlen("ssh-ed25519 ");

	put_cstr(&b, "ssh-ed25519");
	put_str(&b, pk, KHEO_KEY_SIZE);
	memcpy(out, "ssh-ed25519 ", at);
	if (b.oom || sodium_base64_ENCODED_LEN(b.len,
		     sodium_base64_VARIANT_ORIGINAL) > KHEO_SSH_KEY_MAX - at)
		out[at] = '\0';
	else
		sodium_bin2base64(out + at, KHEO_SSH_KEY_MAX - at, b.p, b.len,
			sodium_base64_VARIANT_ORIGINAL);
	kheo_buf_free(&b);
}

/* What the Ed25519 signature covers, for the commit's bytes `data`. */
static void signed_blob(kheo_buf *b, const uint8_t *data, size_t n)
{
	uint8_t h[crypto_hash_sha512_BYTES];

	crypto_hash_sha512(h, data, n);
	kheo_buf_put(b, SSHSIG_MAGIC, 6);
	put_cstr(b, SSHSIG_NAMESPACE);
	put_cstr(b, "");
	put_cstr(b, SSHSIG_HASH);
	put_str(b, h, sizeof(h));
}

/* The armoured signature of `data` by (pk, sk), NUL-terminated in out. */
int kheo__sshsig_sign(kheo_buf *out, const uint8_t *data, size_t n,
	const uint8_t *pk, const uint8_t *sk)
{
	kheo_buf blob = { 0 }, sig = { 0 }, wire_sig = { 0 };
	uint8_t ed[crypto_sign_BYTES];
	char *b64 = NULL;
	size_t b64len, i;
	int err = KHEO_ENOMEM;

	signed_blob(&blob, data, n);
	if (blob.oom)
		goto done;
	crypto_sign_detached(ed, NULL, blob.p, blob.len, sk);
	put_cstr(&wire_sig, "ssh-ed25519");
	put_str(&wire_sig, ed, sizeof(ed));

	kheo_buf_put(&sig, SSHSIG_MAGIC, 6);
	put_u32(&sig, 1);
	put_pubkey(&sig, pk);
	put_cstr(&sig, SSHSIG_NAMESPACE);
	put_cstr(&sig, "");
	put_cstr(&sig, SSHSIG_HASH);
	put_str(&sig, wire_sig.p, wire_sig.len);
	if (sig.oom || wire_sig.oom)
		goto done;
	b64len = sodium_base64_ENCODED_LEN(sig.len,
		sodium_base64_VARIANT_ORIGINAL);
	if (!(b64 = kheo__malloc(b64len)))
		goto done;
	sodium_bin2base64(b64, b64len, sig.p, sig.len,
		sodium_base64_VARIANT_ORIGINAL);
	kheo_buf_reset(out);
	kheo_buf_put(out, ARMOR_BEGIN "\n", strlen(ARMOR_BEGIN) + 1);
	for (i = 0; b64[i]; i += ARMOR_WIDTH) {
		size_t k = strlen(b64 + i);

		kheo_buf_put(out, b64 + i, k < ARMOR_WIDTH ? k : ARMOR_WIDTH);
		kheo_buf_put(out, "\n", 1);
		if (k < ARMOR_WIDTH)
			break;
	}
	/* no newline after the last line: libgit2 ends the header itself */
	kheo_buf_put(out, ARMOR_END, strlen(ARMOR_END) + 1);
	err = out->oom ? KHEO_ENOMEM : KHEO_OK;
done:
	kheo__free(b64);
	kheo_buf_free(&blob);
	kheo_buf_free(&sig);
	kheo_buf_free(&wire_sig);
	return err;
}

/* ----------------------------------------------------------- checking */

#define WHY(...) (snprintf(why, why_len, __VA_ARGS__), KHEO_ECORRUPT)

/* Where `line` starts in text[0..len), or NULL. */
static const char *find(const char *text, size_t len, const char *line)
{
	size_t n = strlen(line), i;

	for (i = 0; i + n <= len; i++)
		if (memcmp(text + i, line, n) == 0)
			return text + i;
	return NULL;
}

/* The bytes between the armour lines, decoded into raw. */
static int unarmor(kheo_buf *raw, const char *text, size_t len)
{
	const char *b = find(text, len, ARMOR_BEGIN), *e;
	size_t got;

	if (!b)
		return -1;
	b += strlen(ARMOR_BEGIN);
	/* the end marker after the begin marker, not inside it */
	if (!(e = find(b, len - (size_t)(b - text), ARMOR_END)) || e == b)
		return -1;
	kheo_buf_reset(raw);
	if (kheo_buf_reserve(raw, (size_t)(e - b)) < 0)
		return -1;
	if (sodium_base642bin(raw->p, (size_t)(e - b), b, (size_t)(e - b),
		    " \t\r\n", &got, NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
		return -1;
	raw->len = got;
	return 0;
}

int kheo__sshsig_check(const char *armored, size_t len, const uint8_t *data,
	size_t n_data, const uint8_t *pk, char *why, size_t why_len)
{
	kheo_buf raw = { 0 }, blob = { 0 };
	const uint8_t *p, *key, *ed;
	size_t n;
	wire w;
	int err;

	if (unarmor(&raw, armored, len) < 0) {
		err = WHY("its signature is not an armoured SSH signature");
		goto done;
	}
	w.p = raw.p;
	w.n = raw.len;
	w.bad = raw.len < 6 || memcmp(raw.p, SSHSIG_MAGIC, 6) != 0;
	if (!w.bad) {
		w.p += 6;
		w.n -= 6;
	}
	if (get_u32(&w) != 1 || w.bad) {
		err = WHY("its signature is not SSHSIG version 1");
		goto done;
	}
	if (!(key = get_ed25519(&w, KHEO_KEY_SIZE))) {
		err = WHY("it is signed with a key that is not Ed25519");
		goto done;
	}
	if (memcmp(key, pk, KHEO_KEY_SIZE) != 0) {
		char hex[2 * KHEO_KEY_SIZE + 1];

		kheo_hex(hex, key, KHEO_KEY_SIZE);
		err = WHY("it is signed by %.16s…, not by the mirrored node",
			hex);
		goto done;
	}
	p = get_str(&w, &n);
	if (!str_is(p, n, SSHSIG_NAMESPACE)) {
		err = WHY("its signature is not in the namespace \"git\"");
		goto done;
	}
	get_str(&w, &n); /* reserved */
	p = get_str(&w, &n);
	if (!str_is(p, n, SSHSIG_HASH)) {
		err = WHY("its signature does not hash with sha512");
		goto done;
	}
	ed = get_ed25519(&w, crypto_sign_BYTES);
	if (w.bad || w.n || !ed) {
		err = WHY("its signature is malformed");
		goto done;
	}
	signed_blob(&blob, data, n_data);
	if (blob.oom) {
		err = KHEO_ENOMEM;
		goto done;
	}
	err = crypto_sign_verify_detached(ed, blob.p, blob.len, pk) == 0
		      ? KHEO_OK
		      : WHY("its signature does not match its bytes (the "
			    "commit was altered after it was signed)");
done:
	kheo_buf_free(&raw);
	kheo_buf_free(&blob);
	return err;
}

/* ------------------------------------------------------------- commits */

#ifndef KHEO_NO_AUDIT

int kheo__commit_signed(git_oid *out, git_repository *repo,
	const git_signature *author, const git_signature *committer,
	const char *message, const git_tree *tree, const git_commit *parent,
	const uint8_t *pk, const uint8_t *sk)
{
	git_buf content = { 0 };
	kheo_buf sig = { 0 };
	int rc;

	rc = git_commit_create_buffer(&content, repo, author, committer, NULL,
		message, tree, parent ? 1 : 0, parent ? &parent : NULL);
	if (rc < 0)
		return rc;
	if (kheo__sshsig_sign(&sig, (const uint8_t *)content.ptr, content.size, pk,
		    sk) < 0) {
		git_error_set_oom();
		rc = GIT_ERROR;
	} else {
		rc = git_commit_create_with_signature(out, repo, content.ptr,
			(const char *)sig.p, "gpgsig");
	}
	git_buf_dispose(&content);
	kheo_buf_free(&sig);
	return rc;
}

int kheo__commit_check(git_repository *repo, const git_oid *id,
	const uint8_t *pk, char *why, size_t why_len)
{
	git_buf sigtext = { 0 }, data = { 0 };
	int rc, err;

	rc = git_commit_extract_signature(&sigtext, &data, repo,
		(git_oid *)id, NULL);
	if (rc == GIT_ENOTFOUND) {
		snprintf(why, why_len, "the commit is not signed");
		return KHEO_ENOTFOUND;
	}
	if (rc < 0) {
		snprintf(why, why_len, "%s", git_error_last() ?
			git_error_last()->message : "unreadable commit");
		return KHEO_ERROR;
	}
	err = kheo__sshsig_check(sigtext.ptr, sigtext.size,
		(const uint8_t *)data.ptr, data.size, pk, why, why_len);
	git_buf_dispose(&sigtext);
	git_buf_dispose(&data);
	return err;
}

#endif /* KHEO_NO_AUDIT */
