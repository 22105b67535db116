/*
 * audit_feed.h - a mirror's history read ahead on a second thread
 * (audit_feed.c), for audit.c's verify and replay.  Internal.
 */
#ifndef KHEO_AUDIT_FEED_H
#define KHEO_AUDIT_FEED_H

#ifndef KHEO_NO_AUDIT

#include "proto.h"

#include <git2.h>
#include <stddef.h>

/* What the reader found in one commit, as it found it: audit.c judges. */
typedef struct audit_item {
	size_t i;                   /* its place in the history, from 0 */
	int err;                    /* < 0: the commit could not be read, */
	char errmsg[300];           /* ... and why (the rest is unset) */
	git_oid tree;               /* the commit's tree */
	char *msg;                  /* its message */
	git_signature *author;
	git_signature *committer;
	int named;                  /* Kheo-Changeset names an id: */
	uint8_t named_id[KHEO_ID_SIZE];
	char path[96];              /* ... whose file is this */
	int found;                  /* the file is in the tree: */
	kheo_buf frame;             /* ... its bytes */
	int facts_new;              /* _kheo/mirror.json is there and is
				     * not the commit before's: */
	kheo_buf facts;             /* ... its bytes */
	int signed_ok;              /* the frame opened, and its signature
				     * verifies for this (id, sig): */
	uint8_t id[KHEO_ID_SIZE];
	uint8_t sig[KHEO_SIG_SIZE];
	int commit_signed;          /* with a signer: kheo__commit_check's
				     * answer for the commit, */
	char commit_why[200];       /* ... and its sentence */
} audit_item;

typedef struct audit_feed audit_feed;

/*
 * Start reading commits[0..n) of the repository at gitdir, in that order
 * (borrowed: keep them until audit_feed_free).  The reader's repository
 * is opened afresh every `reopen_every` commits, as audit.c does its own,
 * so that libgit2's caches do not grow with the history.  With a signer
 * (a node's key, copied), each commit's signature is checked against it
 * too (audit_sign.c).
 */
int audit_feed_start(audit_feed **out, const char *gitdir,
	const git_oid *commits, size_t n, size_t reopen_every,
	const uint8_t *signer);

/* The next commit's item, borrowed until the next call or the free;
 * NULL after the last. */
audit_item *audit_feed_next(audit_feed *f);

/* Stop the reader (wherever it is) and free everything.  NULL is fine. */
void audit_feed_free(audit_feed *f);

/* One trailer's value (up to the line end) from a message, or NULL. */
const char *kheo__audit_trailer(const char *msg, const char *key, char *out,
	size_t n);

/* The .kcs path of a changeset id in the mirror's tree. */
void kheo__audit_cs_path(char out[96], const uint8_t id[KHEO_ID_SIZE]);

#endif /* KHEO_NO_AUDIT */
#endif
