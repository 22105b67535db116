/*
 * audit_sign.h - mirror commits signed with the mirroring node's key, in
 * the format git uses for SSH keys (OpenSSH's SSHSIG, namespace "git"),
 * so that stock `git verify-commit` checks them as kheo audit verify
 * does (audit_sign.c).  Internal to libkheo; the commit calls are built
 * with the audit mirror only.
 */
#ifndef KHEO_AUDIT_SIGN_H
#define KHEO_AUDIT_SIGN_H

#include "internal.h"

/* "ssh-ed25519 AAAA…" of an Ed25519 public key, as allowed_signers files
 * and authorized_keys hold it. */
#define KHEO_SSH_KEY_MAX 100
void kheo__ssh_key_line(char out[KHEO_SSH_KEY_MAX], const uint8_t *pk);

/* The armoured SSH signature (namespace "git", SHA-512) of data by the
 * key pair (pk, sk), NUL-terminated in out.  KHEO_ENOMEM or KHEO_OK. */
int kheo__sshsig_sign(kheo_buf *out, const uint8_t *data, size_t n,
	const uint8_t *pk, const uint8_t *sk);

/*
 * Is `armored` (len bytes) a valid SSH signature of data by pk, in the
 * namespace "git"?  KHEO_OK; KHEO_ECORRUPT with a sentence in why when it
 * is malformed, by another key, or does not match; KHEO_ENOMEM.  Reads
 * untrusted input (tests/fuzz/fuzz_sshsig.c).
 */
int kheo__sshsig_check(const char *armored, size_t len, const uint8_t *data,
	size_t n_data, const uint8_t *pk, char *why, size_t why_len);

#ifndef KHEO_NO_AUDIT
#include <git2.h>

/*
 * Write a commit (one parent, or none when parent is NULL) signed with
 * the key pair (pk, sk): its gpgsig header holds an SSH signature of the
 * commit's bytes.  libgit2's error code on failure (git_error_last).
 */
int kheo__commit_signed(git_oid *out, git_repository *repo,
	const git_signature *author, const git_signature *committer,
	const char *message, const git_tree *tree, const git_commit *parent,
	const uint8_t *pk, const uint8_t *sk);

/*
 * Check the signature of commit `id` against the key pk: KHEO_OK when it
 * is a valid SSH signature of the commit by pk; KHEO_ENOTFOUND when the
 * commit is not signed; KHEO_ECORRUPT with a sentence in why when the
 * signature is malformed, by another key, or does not match the bytes;
 * KHEO_ERROR when the commit cannot be read.
 */
int kheo__commit_check(git_repository *repo, const git_oid *id,
	const uint8_t *pk, char *why, size_t why_len);
#endif

#endif
