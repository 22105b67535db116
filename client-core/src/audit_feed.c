/*
 * audit_feed.c - a mirror's history read ahead on a second thread, for
 * audit.c's verify and replay (and the verify an export starts with).
 *
 * Reading a commit back costs libgit2 a pack lookup, an inflate and a
 * delta for the commit and for each tree on the way to its changeset's
 * file; checking that changeset's Ed25519 signature costs about as much
 * again.  In a profile of verify and replay that was more than a third
 * of the time, and none of it needs the rebuilt state, which only the
 * main loop can advance (one changeset after the other).  So a reader
 * thread does it for the commits ahead, on a repository handle of its
 * own (libgit2 is thread-safe across handles; libsodium is once
 * sodium_init has run, which opening any store did), and hands each
 * commit over through a small ring: memory does not follow the history.
 * A thread, not a process: the items are a few KB each and the main loop
 * takes them at thousands a second.
 *
 * Not here: any judgement.  A missing file or a frame that does not open
 * is passed on as found, and audit.c decides what it means.  A verified
 * signature is passed as the (id, sig) it holds for, and the main loop
 * skips its own check only for those very bytes.
 */
#ifndef KHEO_NO_AUDIT

#include "audit_feed.h"
#include "audit_sign.h"
#include "alloc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* commits read ahead: enough to ride out a slow tree, few KB each */
#define FEED_AHEAD 64

#define FACTS_PATH "_kheo/mirror.json"

struct audit_feed {
	char *gitdir;
	const git_oid *commits;
	size_t n, reopen_every;
	int check_signer;
	uint8_t signer[KHEO_KEY_SIZE];
	pthread_t thread;
	int started;
	pthread_mutex_t lock;
	pthread_cond_t more, room;
	size_t head, tail;          /* items taken, items filled */
	int held;                   /* the item at head is lent out */
	int stop;                   /* the main loop is done with the feed */
	int over;                   /* the reader is done */
	audit_item ring[FEED_AHEAD];
};

const char *kheo__audit_trailer(const char *msg, const char *key, char *out,
	size_t n)
{
	size_t klen = strlen(key);
	const char *p = msg;

	while (p && *p) {
		if (strncmp(p, key, klen) == 0 && p[klen] == ':' &&
		    p[klen + 1] == ' ') {
			const char *v = p + klen + 2;
			size_t len = strcspn(v, "\n");

			if (len >= n)
				len = n - 1;
			memcpy(out, v, len);
			out[len] = '\0';
			return out;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

void kheo__audit_cs_path(char out[96], const uint8_t id[KHEO_ID_SIZE])
{
	char hex[2 * KHEO_ID_SIZE + 1];

	kheo_hex(hex, id, KHEO_ID_SIZE);
	snprintf(out, 96, "_changesets/%.2s/%.2s/%s.kcs", hex, hex + 2,
		hex + 4);
}

/* ------------------------------------------------------------ reader */

/* The reader's state, on its own stack. */
typedef struct reader {
	audit_feed *f;
	git_repository *repo;
	kheo_codec *codec;
	kheo_buf raw;
	git_oid facts;              /* the last mirror.json blob seen */
	int have_facts;
	git_oid kheo_dir;           /* and the _kheo tree it was in */
} reader;

static void item_clear(audit_item *it)
{
	kheo__free(it->msg);
	it->msg = NULL;
	git_signature_free(it->author);
	git_signature_free(it->committer);
	it->author = it->committer = NULL;
	it->err = 0;
	it->errmsg[0] = '\0';
	it->named = it->found = it->facts_new = it->signed_ok = 0;
	it->commit_signed = 0;
	it->commit_why[0] = '\0';
	it->path[0] = '\0';
	kheo_buf_reset(&it->frame);
	kheo_buf_reset(&it->facts);
}

static int item_fail(audit_item *it, int rc, const char *what)
{
	const git_error *e = git_error_last();

	it->err = rc == GIT_ENOTFOUND ? KHEO_ENOTFOUND : KHEO_EIO;
	snprintf(it->errmsg, sizeof(it->errmsg), "%s: %s", what,
		e && e->message ? e->message : "libgit2 error");
	return it->err;
}

/* A blob's bytes at path in tree into out, with its oid; 0 if there is
 * no blob there, < 0 on a read error. */
static int blob_copy(reader *r, const git_tree *tree, const char *path,
	kheo_buf *out, git_oid *oid, const git_oid *skip_if)
{
	git_tree_entry *e = NULL;
	git_blob *b = NULL;
	int rc;

	if (git_tree_entry_bypath(&e, tree, path) < 0)
		return 0;
	if (git_tree_entry_type(e) != GIT_OBJECT_BLOB) {
		git_tree_entry_free(e);
		return 0;
	}
	git_oid_cpy(oid, git_tree_entry_id(e));
	git_tree_entry_free(e);
	if (skip_if && git_oid_equal(oid, skip_if))
		return 0;
	if ((rc = git_blob_lookup(&b, r->repo, oid)) < 0)
		return 0; /* named but unreadable: as if missing */
	kheo_buf_reset(out);
	kheo_buf_put(out, git_blob_rawcontent(b), (size_t)git_blob_rawsize(b));
	git_blob_free(b);
	return out->oom ? -1 : 1;
}

/* Everything audit.c needs of commit i, read and checked here. */
static int fill(reader *r, audit_item *it, size_t i)
{
	git_commit *c = NULL;
	git_tree *tree = NULL;
	char val[160];
	git_oid oid;
	int rc;

	item_clear(it);
	it->i = i;
	if ((rc = git_commit_lookup(&c, r->repo, &r->f->commits[i])) < 0 ||
	    (rc = git_commit_tree(&tree, c)) < 0) {
		git_commit_free(c);
		return item_fail(it, rc, "history");
	}
	git_oid_cpy(&it->tree, git_commit_tree_id(c));
	if (!(it->msg = kheo__malloc(strlen(git_commit_message(c)) + 1)) ||
	    git_signature_dup(&it->author, git_commit_author(c)) < 0 ||
	    git_signature_dup(&it->committer, git_commit_committer(c)) < 0) {
		git_tree_free(tree);
		git_commit_free(c);
		it->err = KHEO_ENOMEM;
		snprintf(it->errmsg, sizeof(it->errmsg), "out of memory");
		return it->err;
	}
	strcpy(it->msg, git_commit_message(c));
	git_commit_free(c);

	/* the facts change once in a history, if ever (an enrolment):
	 * read and parsed only when their blob is not the last one seen */
	memset(&oid, 0, sizeof(oid));
	rc = 0;
	{
		/* the _kheo tree named by the root (no read): the same one
		 * holds the same facts, and reading it was a tree per commit */
		const git_tree_entry *dir = git_tree_entry_byname(tree,
			"_kheo");

		if (!dir || !r->have_facts ||
		    !git_oid_equal(git_tree_entry_id(dir), &r->kheo_dir)) {
			if ((rc = blob_copy(r, tree, FACTS_PATH, &it->facts,
				     &oid, r->have_facts ? &r->facts
							  : NULL)) > 0)
				it->facts_new = 1;
			if (rc >= 0 && !git_oid_is_zero(&oid) && dir) {
				r->facts = oid;
				r->kheo_dir = *git_tree_entry_id(dir);
				r->have_facts = 1;
			}
		}
	}
	rc = rc < 0 ? rc : 0;
	if (kheo__audit_trailer(it->msg, "Kheo-Changeset", val, sizeof(val)) &&
	    strlen(val) == 2 * KHEO_ID_SIZE &&
	    kheo_unhex(it->named_id, KHEO_ID_SIZE, val, strlen(val)) == 0) {
		it->named = 1;
		kheo__audit_cs_path(it->path, it->named_id);
		if (rc == 0) {
			rc = blob_copy(r, tree, it->path, &it->frame, &oid,
				NULL);
			it->found = rc > 0;
		}
	}
	git_tree_free(tree);
	if (rc < 0) {
		it->err = KHEO_ENOMEM;
		snprintf(it->errmsg, sizeof(it->errmsg), "out of memory");
		return it->err;
	}
	/* the commit's own signature, by the mirrored node (a second
	 * Ed25519 check per commit, and a read of the commit: off the
	 * main loop too) */
	if (r->f->check_signer)
		it->commit_signed = kheo__commit_check(r->repo,
			&r->f->commits[i], r->f->signer, it->commit_why,
			sizeof(it->commit_why));
	/* the changeset's signature, for these bytes only */
	if (it->found) {
		kheo_changeset *cs = NULL;

		if (kheo_frame_read(r->codec, &r->raw, it->sig, it->frame.p,
			    it->frame.len, NULL) == KHEO_OK &&
		    kheo_changeset_decode(&cs, r->raw.p, r->raw.len,
			    NULL) == KHEO_OK) {
			kheo_changeset_id(it->id, r->raw.p, r->raw.len);
			it->signed_ok = kheo_changeset_verify(it->sig, it->id,
				cs->author, NULL) == KHEO_OK;
		}
		kheo_changeset_free(cs);
	}
	return KHEO_OK;
}

static int reader_open(reader *r)
{
	git_repository_free(r->repo);
	r->repo = NULL;
	return git_repository_open_ext(&r->repo, r->f->gitdir,
		GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
}

static void *reader_main(void *arg)
{
	reader r;
	audit_feed *f = arg;
	size_t i;
	int rc;

	memset(&r, 0, sizeof(r));
	r.f = f;
	rc = kheo_codec_new(&r.codec, 0) < 0 ? -1 : reader_open(&r);
	for (i = 0; i < f->n; i++) {
		audit_item *it;

		/* a reopen waits for the main loop to catch up: libgit2
		 * shares a pack, and the delta-base cache that grows in it,
		 * between the handles that opened it, and frees it only when
		 * none holds it.  The reader lets go first, then the main
		 * loop reopens after item i - 1 (at the same period), and
		 * only then does the reader open again: were the two to
		 * reopen in turn, some handle would always hold every pack,
		 * and the caches would grow with the history. */
		int reopen = i > 0 && f->reopen_every &&
			     i % f->reopen_every == 0 && rc >= 0;

		if (reopen) {
			git_repository_free(r.repo);
			r.repo = NULL;
		}
		pthread_mutex_lock(&f->lock);
		while (!f->stop && (f->tail - f->head >= FEED_AHEAD ||
					   (reopen && f->head < i)))
			pthread_cond_wait(&f->room, &f->lock);
		if (f->stop) {
			pthread_mutex_unlock(&f->lock);
			break;
		}
		pthread_mutex_unlock(&f->lock);
		/* the slot at tail is the reader's alone until published */
		it = &f->ring[f->tail % FEED_AHEAD];
		if (rc < 0) {
			item_clear(it);
			it->i = i;
			item_fail(it, rc, f->gitdir);
		} else {
			if (reopen && (rc = reader_open(&r)) < 0) {
				item_clear(it);
				it->i = i;
				item_fail(it, rc, f->gitdir);
			} else
				rc = fill(&r, it, i);
		}
		pthread_mutex_lock(&f->lock);
		f->tail++;
		pthread_cond_signal(&f->more);
		pthread_mutex_unlock(&f->lock);
		if (rc < 0)
			break; /* the main loop stops at this item */
	}
	pthread_mutex_lock(&f->lock);
	f->over = 1;
	pthread_cond_signal(&f->more);
	pthread_mutex_unlock(&f->lock);
	kheo_buf_free(&r.raw);
	kheo_codec_free(r.codec);
	git_repository_free(r.repo);
	return NULL;
}

/* ------------------------------------------------------------ public */

int audit_feed_start(audit_feed **out, const char *gitdir,
	const git_oid *commits, size_t n, size_t reopen_every,
	const uint8_t *signer)
{
	audit_feed *f;

	*out = NULL;
	if (!(f = kheo__calloc(1, sizeof(*f))) ||
	    !(f->gitdir = kheo__malloc(strlen(gitdir) + 1))) {
		kheo__free(f);
		return KHEO_ENOMEM;
	}
	strcpy(f->gitdir, gitdir);
	f->commits = commits;
	f->n = n;
	f->reopen_every = reopen_every;
	if (signer) {
		f->check_signer = 1;
		memcpy(f->signer, signer, KHEO_KEY_SIZE);
	}
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->more, NULL);
	pthread_cond_init(&f->room, NULL);
	if (pthread_create(&f->thread, NULL, reader_main, f) != 0) {
		audit_feed_free(f);
		return KHEO_ERROR;
	}
	f->started = 1;
	*out = f;
	return KHEO_OK;
}

audit_item *audit_feed_next(audit_feed *f)
{
	audit_item *it = NULL;

	pthread_mutex_lock(&f->lock);
	if (f->held) {
		f->head++;
		f->held = 0;
		pthread_cond_signal(&f->room);
	}
	while (f->head == f->tail && !f->over)
		pthread_cond_wait(&f->more, &f->lock);
	if (f->head != f->tail) {
		it = &f->ring[f->head % FEED_AHEAD];
		f->held = 1;
	}
	pthread_mutex_unlock(&f->lock);
	return it;
}

void audit_feed_free(audit_feed *f)
{
	size_t i;

	if (!f)
		return;
	if (f->started) {
		pthread_mutex_lock(&f->lock);
		f->stop = 1;
		pthread_cond_signal(&f->room);
		pthread_mutex_unlock(&f->lock);
		pthread_join(f->thread, NULL);
	}
	for (i = 0; i < FEED_AHEAD; i++) {
		item_clear(&f->ring[i]);
		kheo_buf_free(&f->ring[i].frame);
		kheo_buf_free(&f->ring[i].facts);
	}
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->more);
	pthread_cond_destroy(&f->room);
	kheo__free(f->gitdir);
	kheo__free(f);
}

#endif /* KHEO_NO_AUDIT */
