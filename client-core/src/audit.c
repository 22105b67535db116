/*
 * audit.c - the audit mirror: a node's applied changesets as a git
 * repository that auditors read with stock git (DESIGN.md, Audit).
 *
 * One commit per applied changeset, in this node's apply order.  Each
 * commit's tree is the readable state after it (UNIT/TABLE/ID.json, one
 * field per line, keys sorted), the changeset itself as a stored frame
 * (_changesets/ab/cdef....kcs) beside every earlier one, and the mirror's
 * facts (_kheo/mirror.json: the mirrored node; _kheo/schema.json).
 * docs/auditor.md has the layout and the message's trailers.
 *
 * Export, verify and replay are one loop (mirror_step): each changeset is
 * received into a scratch store by the receipt and merge code every node
 * runs (apply.c, merge.c, as kheo_verify does), the records it touched are
 * rendered, and the tree and message that follow are computed.  Export
 * writes them as a commit; verify compares them with the commit found, so
 * by construction what export writes verifies.  An export first verifies
 * the history already there and rebuilds its state the same way.
 *
 * Git objects go to libgit2's in-memory object store (mempack) and reach
 * the repository as one pack per few thousand commits; verify never
 * writes: what it puts in the mempack is thrown away after each commit, so
 * its memory follows the size of the state, not of the history.
 *
 * Not here: the merge (merge.c), receipt (apply.c), dates people type
 * (parsed here for the CLI, kheo_audit_parse_time).
 */
#include "internal.h"
#include "alloc.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- dates */

static int digits(const char **p, int n, int *out)
{
	int v = 0, i;

	for (i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

KHEO_EXTERN int kheo_audit_parse_time(int64_t *out, const char *text)
{
	const char *p = text;
	struct tm tm;
	int y, mo, d, h = 23, mi = 59, s = 59, ms = 999, off = 0;
	time_t t;

	if (!text || !*text)
		return KHEO_EINVAL;
	if (*p == '@') {
		char *end;
		long long v;

		errno = 0;
		v = strtoll(p + 1, &end, 10);
		if (errno || end == p + 1 || *end || v < 0)
			return KHEO_EINVAL;
		*out = v;
		return KHEO_OK;
	}
	if (digits(&p, 4, &y) < 0 || *p++ != '-' || digits(&p, 2, &mo) < 0 ||
	    *p++ != '-' || digits(&p, 2, &d) < 0)
		return KHEO_EINVAL;
	if (*p == 'T' || *p == ' ') {
		p++;
		s = 0;
		ms = 0;
		if (digits(&p, 2, &h) < 0 || *p++ != ':' ||
		    digits(&p, 2, &mi) < 0)
			return KHEO_EINVAL;
		if (*p == ':') {
			p++;
			if (digits(&p, 2, &s) < 0)
				return KHEO_EINVAL;
			if (*p == '.') {
				p++;
				if (digits(&p, 3, &ms) < 0)
					return KHEO_EINVAL;
			}
		}
		if (*p == 'Z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int sign = *p++ == '-' ? -1 : 1, oh, om;

			if (digits(&p, 2, &oh) < 0 || *p++ != ':' ||
			    digits(&p, 2, &om) < 0 || oh > 14 || om > 59)
				return KHEO_EINVAL;
			off = sign * (oh * 60 + om);
		}
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    s > 60 || y < 1970)
		return KHEO_EINVAL;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return KHEO_EINVAL;
	/* timegm normalises 31 February into March: refuse what moved */
	{
		struct tm back;

		if (!gmtime_r(&t, &back) || back.tm_mday != d ||
		    back.tm_mon != mo - 1)
			return KHEO_EINVAL;
	}
	*out = ((int64_t)t - (int64_t)off * 60) * 1000 + ms;
	return KHEO_OK;
}

#ifndef KHEO_NO_AUDIT
#include "audit_sign.h"

#include <git2.h>
#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>

#include "audit_feed.h"

/* ISO 8601, UTC, with ms: what the trailers carry. */
static void iso_ms(char out[32], int64_t ms)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + 19, 13, ".%03dZ", (int)(ms % 1000));
}

/* 2: record files and changesets sharded by their first hex digits, so
 * that a commit rewrites small directories (1 had UNIT/TABLE/ID.json) */
#define MIRROR_FORMAT 3 /* 3: commits signed by the node (audit_sign.c) */
#define MIRROR_REF "refs/heads/main"
#define MIRROR_FILE "_kheo/mirror.json"
#define SCHEMA_FILE "_kheo/schema.json"
/* commits between two packs written by an export, or fewer when their
 * objects reach PACK_BYTES (what the mempack and the packbuilder hold:
 * the trees of a large state are larger) */
#define PACK_EVERY 4000
#define PACK_BYTES ((size_t)48 << 20)

/* The mirrored node, as _kheo/mirror.json records it. */
typedef struct mirror_ident {
	uint8_t pk[KHEO_KEY_SIZE];
	kheo_node_role role;
	char unit[KHEO_UNIT_MAX + 1];
	int has_root;
	uint8_t root[KHEO_KEY_SIZE];
} mirror_ident;

/* What one step made of a changeset. */
typedef struct step_out {
	uint8_t id[KHEO_ID_SIZE];
	char path[96];          /* its .kcs file */
	git_oid tree;
	kheo_buf msg;           /* the commit message */
	git_signature *author;  /* (owned) */
	int verdict;            /* 0 applied, 1 held, 2 rejected, 3 twice */
	char why[260];          /* held or rejected: why */
} step_out;

typedef struct mirror {
	kheo_db *db;              /* export: the node (errors go there) */
	char errmsg[512];         /* otherwise errors go here */
	kheo_audit_options opts;
	git_repository *repo;
	git_odb *odb;
	git_odb_backend *mempack; /* owned by odb once added */
	git_packbuilder *pb;      /* export: what goes in the next pack */
	size_t pack_bytes;        /* the size of what it names */
	char *gitdir;             /* where the repository is */
	struct tdir *tree;        /* the tree being built (its root) */
	size_t tree_loaded;       /* entries of it held in memory */
	kheo_db *scratch;         /* the rebuilt state */
	char scratch_file[4096];  /* where it is kept (removed at the end) */
	kheo_codec *plain;        /* writes frames uncompressed */
	mirror_ident ident;
	char *schema;             /* _kheo/schema.json's text */
	size_t schema_len;
	git_oid *commits;         /* the history, first commit first */
	size_t ncommits;
	size_t seq;               /* commits stepped through */
	int64_t last_applied;
	int64_t quarantined;      /* verify: the rebuild's quarantine rows
				   * seen so far (kheo_quarantine.n) */
	int trees;                /* build trees (export, verify) */
	int in_verify;
	int used;                 /* verify or replay ran */
	int tree_ok;              /* the last commit checked had the tree
				   * rebuilt: every tree the cache holds is
				   * in the repository */
	kheo_audit_stats st;
	kheo_buf buf;
	kheo_buf tbuf;            /* a tree being written */
	const audit_item *pre;    /* what the feed read of the commit being
				   * stepped (its signature checked) */
	struct {                  /* statements on the rebuild, prepared once */
		const char *sql;
		sqlite3_stmt *st;
	} q[16];
} mirror;

struct kheo_audit {
	mirror m;
};

/* ------------------------------------------------------------- errors */

static int merr(mirror *m, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int merr(mirror *m, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (m->db)
		vsnprintf(m->db->errmsg, sizeof(m->db->errmsg), fmt, ap);
	else
		vsnprintf(m->errmsg, sizeof(m->errmsg), fmt, ap);
	va_end(ap);
	return code;
}

/* libgit2's error, translated once, with its message copied. */
static int gerr(mirror *m, int rc, const char *what)
{
	const git_error *e = git_error_last();
	int code = rc == GIT_ENOTFOUND ? KHEO_ENOTFOUND : KHEO_EIO;

	return merr(m, code, "%s: %s", what,
		e && e->message ? e->message : "libgit2 error");
}

/* A scratch store's error, copied to where the caller looks. */
static int serr(mirror *m, int code)
{
	return merr(m, code, "rebuild: %s", kheo_errmsg(m->scratch));
}

/* A statement on the rebuild, prepared at its first use and kept (each
 * step runs several, which it used to prepare afresh); `sql` is a
 * literal, and its address the key.  NULL if it does not prepare. */
static sqlite3_stmt *mprep(mirror *m, const char *sql)
{
	size_t i;

	for (i = 0; i < sizeof(m->q) / sizeof(m->q[0]); i++) {
		if (m->q[i].sql == sql) {
			sqlite3_reset(m->q[i].st);
			sqlite3_clear_bindings(m->q[i].st);
			return m->q[i].st;
		}
		if (!m->q[i].sql) {
			if (sqlite3_prepare_v3(m->scratch->sql, sql, -1,
				    SQLITE_PREPARE_PERSISTENT, &m->q[i].st,
				    NULL) != SQLITE_OK) {
				sqlite3_finalize(m->q[i].st);
				m->q[i].st = NULL;
				return NULL;
			}
			m->q[i].sql = sql;
			return m->q[i].st;
		}
	}
	assert(!"mirror: more statements than m->q holds");
	return NULL;
}

static void mprep_clear(mirror *m)
{
	size_t i;

	for (i = 0; i < sizeof(m->q) / sizeof(m->q[0]); i++) {
		sqlite3_finalize(m->q[i].st);
		m->q[i].st = NULL;
		m->q[i].sql = NULL;
	}
}

static void finding(mirror *m, kheo_audit_severity sev, const char *kind,
	size_t seq, const git_oid *commit, const char *path,
	const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static void finding(mirror *m, kheo_audit_severity sev, const char *kind,
	size_t seq, const git_oid *commit, const char *path,
	const char *fmt, ...)
{
	kheo_audit_finding f;
	char msg[600], hex[GIT_OID_HEXSZ + 1] = "";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (commit)
		git_oid_tostr(hex, sizeof(hex), commit);
	if (sev == KHEO_AUDIT_ERROR) {
		if (m->st.errors++ == 0)
			merr(m, KHEO_ECORRUPT, "%s%s%s%s: %s",
				seq ? "commit " : "", seq ? hex : "",
				seq && *path ? ": " : "", path, msg);
	} else {
		m->st.warnings++;
	}
	if (!m->opts.finding)
		return;
	f.severity = sev;
	f.kind = kind;
	f.seq = seq;
	f.commit = hex;
	f.path = path ? path : "";
	f.msg = msg;
	m->opts.finding(&f, m->opts.payload);
}

/* ------------------------------------------------------ the tree cache */

/*
 * The tree being built, one directory at a time: a commit rewrites only
 * the directories on the paths it changed, and every other subtree is
 * kept as its oid (what git itself does).  A directory is read from the
 * repository when a path under it first changes, and every clean one is
 * let go when more than TREE_KEEP entries are held, so memory follows
 * what a few thousand commits touch, not the size of the state or of the
 * history.  (A git index, used before, read every directory back after
 * each write: O(state) per commit.)
 */
#define TREE_KEEP 200000

static int pack_note(mirror *m, const git_oid *id, const char *name,
	size_t size);

typedef struct tent {
	char *name;
	size_t len;         /* strlen(name): compared and written often */
	unsigned int mode;  /* GIT_FILEMODE_BLOB or GIT_FILEMODE_TREE */
	git_oid oid;        /* the blob, or the subtree as last written */
	struct tdir *sub;   /* the subtree, when held in memory */
} tent;

typedef struct tdir {
	tent *e;
	size_t n, cap;
	int dirty;          /* changed since written: the oid is stale */
} tdir;

static void tdir_free(tdir *d)
{
	size_t i;

	if (!d)
		return;
	for (i = 0; i < d->n; i++) {
		kheo__free(d->e[i].name);
		tdir_free(d->e[i].sub);
	}
	kheo__free(d->e);
	kheo__free(d);
}

/* git's order: a directory's name sorts as if it ended with '/' */
static int tent_cmp(const char *a, size_t la, int ta, const char *b,
	size_t lb, int tb)
{
	size_t l = la < lb ? la : lb;
	int c = memcmp(a, b, l);
	unsigned char ca, cb;

	if (c)
		return c;
	ca = la > l ? (unsigned char)a[l] : ta ? '/' : 0;
	cb = lb > l ? (unsigned char)b[l] : tb ? '/' : 0;
	return (int)ca - (int)cb;
}

/* The place of (name, kind) in d: found (1) or where it would go (0). */
static int tdir_find(const tdir *d, const char *name, size_t len, int tree,
	size_t *at)
{
	size_t lo = 0, hi = d->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const tent *e = &d->e[mid];
		int c = tent_cmp(e->name, e->len,
			e->mode == GIT_FILEMODE_TREE, name, len, tree);

		if (c == 0) {
			*at = mid;
			return 1;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	return 0;
}

static tent *tdir_insert(mirror *m, tdir *d, size_t at, const char *name,
	size_t len, unsigned int mode)
{
	tent *e;

	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 8;
		tent *more = kheo__realloc(d->e, cap * sizeof(*more));

		if (!more)
			return NULL;
		d->e = more;
		d->cap = cap;
	}
	memmove(&d->e[at + 1], &d->e[at], (d->n - at) * sizeof(*d->e));
	e = &d->e[at];
	memset(e, 0, sizeof(*e));
	if (!(e->name = kheo__malloc(len + 1))) {
		memmove(&d->e[at], &d->e[at + 1], (d->n - at) * sizeof(*d->e));
		return NULL;
	}
	memcpy(e->name, name, len);
	e->name[len] = '\0';
	e->len = len;
	e->mode = mode;
	d->n++;
	m->tree_loaded++;
	return e;
}

/* A subtree held in memory: read from the repository if need be. */
static int tent_open(mirror *m, tent *e)
{
	git_tree *t = NULL;
	size_t i, n;
	int rc;

	if (e->sub)
		return KHEO_OK;
	if (!(e->sub = kheo__calloc(1, sizeof(*e->sub))))
		return KHEO_ENOMEM;
	if ((rc = git_tree_lookup(&t, m->repo, &e->oid)) < 0)
		return gerr(m, rc, e->name);
	n = git_tree_entrycount(t);
	if (!(e->sub->e = kheo__calloc(n ? n : 1, sizeof(tent)))) {
		git_tree_free(t);
		return KHEO_ENOMEM;
	}
	e->sub->cap = n ? n : 1;
	for (i = 0; i < n; i++) {
		const git_tree_entry *te = git_tree_entry_byindex(t, i);
		tent *x = &e->sub->e[i];
		const char *name = git_tree_entry_name(te);

		x->len = strlen(name);
		if (!(x->name = kheo__malloc(x->len + 1))) {
			git_tree_free(t);
			return KHEO_ENOMEM;
		}
		strcpy(x->name, name);
		x->mode = git_tree_entry_filemode(te) == GIT_FILEMODE_TREE
				  ? GIT_FILEMODE_TREE : GIT_FILEMODE_BLOB;
		git_oid_cpy(&x->oid, git_tree_entry_id(te));
		e->sub->n++;
		m->tree_loaded++;
	}
	git_tree_free(t);
	return KHEO_OK;
}

/*
 * Set the file at path to blob (oid), or remove it (oid NULL; an emptied
 * directory goes too).  Directories on the way are made or read.
 */
static int tree_set(mirror *m, const char *path, const git_oid *oid)
{
	tdir *stack[16];
	size_t where[16], depth = 0, at;
	tdir *d = m->tree;
	const char *p = path, *slash;
	tent *e;
	int err;

	while ((slash = strchr(p, '/'))) {
		size_t len = (size_t)(slash - p);

		if (depth == 15)
			return merr(m, KHEO_EINVAL, "%s: too deep", path);
		if (!tdir_find(d, p, len, 1, &at)) {
			if (!oid)
				return KHEO_OK; /* nothing there to remove */
			if (!(e = tdir_insert(m, d, at, p, len,
				      GIT_FILEMODE_TREE)) ||
			    !(e->sub = kheo__calloc(1, sizeof(*e->sub))))
				return KHEO_ENOMEM;
		}
		e = &d->e[at];
		if ((err = tent_open(m, e)) < 0)
			return err;
		stack[depth] = d;
		where[depth++] = at;
		d = e->sub;
		p = slash + 1;
	}
	if (tdir_find(d, p, strlen(p), 0, &at)) {
		e = &d->e[at];
		if (oid && git_oid_equal(&e->oid, oid))
			return KHEO_OK; /* unchanged */
		if (oid) {
			git_oid_cpy(&e->oid, oid);
		} else {
			kheo__free(e->name);
			memmove(&d->e[at], &d->e[at + 1],
				(d->n - at - 1) * sizeof(*d->e));
			d->n--;
			m->tree_loaded--;
		}
	} else if (!oid) {
		return KHEO_OK;
	} else {
		if (!(e = tdir_insert(m, d, at, p, strlen(p),
			      GIT_FILEMODE_BLOB)))
			return KHEO_ENOMEM;
		git_oid_cpy(&e->oid, oid);
	}
	d->dirty = 1;
	/* up the path: mark changed, and drop directories left empty */
	while (depth--) {
		tdir *up = stack[depth];

		if (d->n == 0) {
			tent *gone = &up->e[where[depth]];

			kheo__free(gone->name);
			tdir_free(gone->sub);
			memmove(gone, gone + 1, (up->n - where[depth] - 1) *
				sizeof(*gone));
			up->n--;
			m->tree_loaded--;
		}
		up->dirty = 1;
		d = up;
	}
	return KHEO_OK;
}

/*
 * An object into the memory store.  Not git_odb_write: before it stores
 * anything, that looks the id up in every pack of the repository (and
 * touches the pack's time), and in a verify every tree and file written
 * is already there, so that lookup was most of the write, and it grew
 * with the number of packs, that is with the history.  The mempack
 * keeps each id once; export's packbuilder names what goes in a pack.
 */
static int obj_write(mirror *m, git_oid *out, const void *p, size_t n,
	git_object_t type)
{
	int rc;

	if ((rc = git_odb_hash(out, p, n, type)) < 0 ||
	    (rc = m->mempack->write(m->mempack, out, p, n, type)) < 0)
		return rc;
	return 0;
}

/* Write every changed directory, deepest first; the root's oid out. */
static int tdir_write(mirror *m, tdir *d, const char *name, git_oid *out)
{
	size_t i;
	int rc, err;

	kheo_buf_reset(&m->tbuf);
	for (i = 0; i < d->n; i++) {
		tent *e = &d->e[i];

		if (e->sub && e->sub->dirty &&
		    (err = tdir_write(m, e->sub, e->name, &e->oid)) < 0)
			return err;
	}
	/* m->tbuf is shared: filled only once the subtrees are written */
	kheo_buf_reset(&m->tbuf);
	for (i = 0; i < d->n; i++) {
		const tent *e = &d->e[i];
		int tree = e->mode == GIT_FILEMODE_TREE;

		kheo_buf_put(&m->tbuf, tree ? "40000 " : "100644 ",
			tree ? 6 : 7);
		kheo_buf_put(&m->tbuf, e->name, e->len + 1);
		kheo_buf_put(&m->tbuf, e->oid.id, GIT_OID_RAWSZ);
	}
	if (m->tbuf.oom)
		return KHEO_ENOMEM;
	if ((rc = obj_write(m, out, m->tbuf.p, m->tbuf.len,
		     GIT_OBJECT_TREE)) < 0)
		return gerr(m, rc, "tree");
	d->dirty = 0;
	return pack_note(m, out, name, m->tbuf.len);
}

/* Let go of every subtree held (all are written: only their oids stay). */
static void tdir_drop(mirror *m, tdir *d)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		if (d->e[i].sub) {
			assert(!d->e[i].sub->dirty);
			tdir_drop(m, d->e[i].sub);
			m->tree_loaded -= d->e[i].sub->n;
			tdir_free(d->e[i].sub);
			d->e[i].sub = NULL;
		}
}

static int tree_write(mirror *m, git_oid *out)
{
	int err = tdir_write(m, m->tree, "", out);

	if (err == KHEO_OK && m->tree_loaded > TREE_KEEP)
		tdir_drop(m, m->tree);
	return err;
}

/* ---------------------------------------------------------- set up */

static int mirror_init(mirror *m, kheo_db *db, const kheo_audit_options *o)
{
	memset(m, 0, sizeof(*m));
	m->db = db;
	if (o) {
		if (o->version != KHEO_AUDIT_OPTIONS_VERSION)
			return merr(m, KHEO_EINVAL,
				"audit options version %u unknown", o->version);
		m->opts = *o;
	} else {
		m->opts = (kheo_audit_options)KHEO_AUDIT_OPTIONS_INIT;
	}
	if (m->opts.backdate_ms <= 0)
		m->opts.backdate_ms = KHEO_AUDIT_BACKDATE_MS;
	if (git_libgit2_init() < 0)
		return merr(m, KHEO_ERROR, "libgit2 would not start");
	/* libgit2 keeps up to 256 MiB of objects read (process-wide); a
	 * replay reads each commit and tree once, so a few MiB do */
	git_libgit2_opts(GIT_OPT_SET_CACHE_MAX_SIZE, (ssize_t)(8 << 20));
	/* in fact no cache at all: every object is read once, by the
	 * reader thread or a tree's first change, and what a cache kept
	 * sat in two threads' heaps (verify's peak RSS on the medium trace
	 * 125-140 MB with it, 91 MB without) */
	git_libgit2_opts(GIT_OPT_ENABLE_CACHING, 0);
	/* and maps up to 8 GiB of pack files, which count in the resident
	 * set once read: a history is read front to back, a few windows do */
	git_libgit2_opts(GIT_OPT_SET_MWINDOW_SIZE, (size_t)(4 << 20));
	git_libgit2_opts(GIT_OPT_SET_MWINDOW_MAPPED_LIMIT, (size_t)(32 << 20));
	/* and hashes every object it reads again, to check it against its
	 * id: a fifth of reading a history back.  Nothing here rests on
	 * it: every byte verify reads is checked against the rebuild (the
	 * changesets by their signatures, commits and trees by what kheo
	 * would write), and what it does not read it compares by id alone,
	 * so that ids match contents is git fsck's job, and a clone's
	 * (docs/auditor.md) */
	git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
	if (kheo_codec_new(&m->plain, 0) < 0)
		return KHEO_ENOMEM;
	return KHEO_OK;
}

static void mirror_free(mirror *m)
{
	git_packbuilder_free(m->pb);
	mprep_clear(m);
	kheo_db_close(m->scratch);
	if (m->scratch_file[0])
		unlink(m->scratch_file);
	tdir_free(m->tree);
	git_odb_free(m->odb); /* frees the mempack backend it owns */
	git_repository_free(m->repo);
	kheo_codec_free(m->plain);
	kheo__free(m->schema);
	kheo__free(m->gitdir);
	kheo__free(m->commits);
	kheo_buf_free(&m->buf);
	kheo_buf_free(&m->tbuf);
	git_libgit2_shutdown();
}

/* Objects written from now on go to memory first. */
static int mirror_odb(mirror *m)
{
	if (!m->gitdir) {
		const char *p = git_repository_path(m->repo);

		if (!(m->gitdir = kheo__malloc(strlen(p) + 1)))
			return KHEO_ENOMEM;
		strcpy(m->gitdir, p);
	}
	int rc;

	if ((rc = git_repository_odb(&m->odb, m->repo)) < 0 ||
	    (rc = git_mempack_new(&m->mempack)) < 0)
		return gerr(m, rc, "object store");
	if ((rc = git_odb_add_backend(m->odb, m->mempack, 1000)) < 0) {
		m->mempack->free(m->mempack);
		m->mempack = NULL;
		return gerr(m, rc, "object store");
	}
	if (!m->tree && !(m->tree = kheo__calloc(1, sizeof(*m->tree))))
		return KHEO_ENOMEM;
	return KHEO_OK;
}

/*
 * What this export wrote since the last pack, written to the repository
 * as one pack.  The objects are named to a packbuilder as they are
 * written (pack_note): git_mempack_dump would walk every commit's whole
 * tree instead, O(state) per commit.  The names (a directory's or file's
 * own) let the packbuilder delta each directory against its previous
 * versions.
 */
static int pack_note(mirror *m, const git_oid *id, const char *name,
	size_t size)
{
	int rc;

	if (!m->pb)
		return KHEO_OK;
	if ((rc = git_packbuilder_insert(m->pb, id, name)) < 0)
		return gerr(m, rc, "pack");
	m->pack_bytes += size;
	return KHEO_OK;
}

/*
 * The repository opened afresh, at a point where memory holds no object
 * that is not in it (the mempack empty, no pack being built).  libgit2
 * keeps a delta-base cache of up to 16 MiB for every pack it has read
 * and never shrinks it; an export writes a pack per PACK_EVERY commits,
 * so reading a long history would grow by that much per pack.
 */
static int mirror_reopen(mirror *m)
{
	int rc;

	assert(!m->pb);
	git_odb_free(m->odb);
	m->odb = NULL;
	m->mempack = NULL;
	git_repository_free(m->repo);
	m->repo = NULL;
	if ((rc = git_repository_open_ext(&m->repo, m->gitdir,
		     GIT_REPOSITORY_OPEN_NO_SEARCH, NULL)) < 0)
		return gerr(m, rc, m->gitdir);
	return mirror_odb(m);
}

static int pack_start(mirror *m)
{
	int rc;

	if (!m->pb && (rc = git_packbuilder_new(&m->pb, m->repo)) < 0)
		return gerr(m, rc, "pack");
	return KHEO_OK;
}

static int mirror_flush_pack(mirror *m)
{
	int rc;

	if ((rc = git_packbuilder_write(m->pb, NULL, 0, NULL, NULL)) < 0)
		return gerr(m, rc, "writing a pack");
	git_packbuilder_free(m->pb);
	m->pb = NULL;
	m->pack_bytes = 0;
	if ((rc = git_mempack_reset(m->mempack)) < 0)
		return gerr(m, rc, "pack");
	if ((rc = mirror_reopen(m)) < 0)
		return rc;
	return pack_start(m);
}

/* --------------------------------------------------- the mirror's facts */

static int ident_json(const mirror_ident *id, kheo_buf *out)
{
	static const char *const roles[] = { "", "device", "hub", "province" };
	char hex[2 * KHEO_KEY_SIZE + 1];
	json_t *o = json_object();
	char *text;

	kheo_hex(hex, id->pk, KHEO_KEY_SIZE);
	json_object_set_new(o, "format", json_integer(MIRROR_FORMAT));
	json_object_set_new(o, "node", json_string(hex));
	{
		/* for an auditor's allowed-signers file (docs/auditor.md) */
		char line[KHEO_SSH_KEY_MAX];

		kheo__ssh_key_line(line, id->pk);
		json_object_set_new(o, "signing_key", json_string(line));
	}
	json_object_set_new(o, "node_role", json_string(
		id->role >= 1 && id->role <= 3 ? roles[id->role] : "unknown"));
	json_object_set_new(o, "unit", json_string(id->unit));
	if (id->has_root) {
		kheo_hex(hex, id->root, KHEO_KEY_SIZE);
		json_object_set_new(o, "root", json_string(hex));
	} else {
		json_object_set_new(o, "root", json_null());
	}
	text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(o);
	if (!text)
		return KHEO_ENOMEM;
	kheo_buf_reset(out);
	kheo_buf_put(out, text, strlen(text));
	kheo_buf_put(out, "\n", 1);
	free(text);
	return out->oom ? KHEO_ENOMEM : KHEO_OK;
}

static int ident_parse(mirror *m, const char *text, size_t len,
	mirror_ident *id)
{
	json_t *o = json_loadb(text, len, 0, NULL);
	const char *node, *role, *unit;
	json_t *root;
	int err = KHEO_OK;

	memset(id, 0, sizeof(*id));
	node = json_string_value(json_object_get(o, "node"));
	role = json_string_value(json_object_get(o, "node_role"));
	unit = json_string_value(json_object_get(o, "unit"));
	root = json_object_get(o, "root");
	if (!o || json_integer_value(json_object_get(o, "format")) !=
			  MIRROR_FORMAT || !node || !role || !unit ||
	    kheo_unhex(id->pk, KHEO_KEY_SIZE, node, strlen(node)) < 0 ||
	    !kheo_unit_valid(unit, strlen(unit)) ||
	    (root && !json_is_null(root) &&
		    (!json_is_string(root) ||
			    kheo_unhex(id->root, KHEO_KEY_SIZE,
				    json_string_value(root),
				    strlen(json_string_value(root))) < 0))) {
		err = merr(m, KHEO_ECORRUPT, "%s is not a kheo mirror's facts "
			"(format %d: node, node_role, unit, root)", MIRROR_FILE,
			MIRROR_FORMAT);
		goto done;
	}
	id->has_root = root && json_is_string(root);
	id->role = strcmp(role, "province") == 0 ? KHEO_NODE_PROVINCE :
		   strcmp(role, "hub") == 0 ? KHEO_NODE_HUB : KHEO_NODE_DEVICE;
	snprintf(id->unit, sizeof(id->unit), "%s", unit);
done:
	json_decref(o);
	return err;
}

/* The scratch store the state is rebuilt in, for the mirrored node. */
static int mirror_scratch(mirror *m)
{
	kheo_open_options o = KHEO_OPEN_OPTIONS_INIT;
	int err;

	if (m->db)
		o = m->db->opts;
	o.passphrase = NULL;
	/* in a file: the rebuild holds every op of the history, and memory
	 * is to stay flat as that grows.  An export names its own (kept
	 * beside the mirror, rebuild_keep); otherwise a temporary one. */
	if (!m->scratch_file[0]) {
		const char *tmp = getenv("TMPDIR");
		int fd;

		snprintf(m->scratch_file, sizeof(m->scratch_file),
			"%s/kheo-audit-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if ((fd = mkstemp(m->scratch_file)) < 0) {
			err = merr(m, KHEO_EIO, "%s: %s", m->scratch_file,
				strerror(errno));
			m->scratch_file[0] = '\0';
			return err;
		}
		close(fd);
	}
	if ((err = kheo__db_scratch_for(&m->scratch, &o, m->schema,
		     m->schema_len, m->ident.pk, m->ident.role,
		     m->ident.unit, m->scratch_file)) < 0)
		return m->scratch ? serr(m, err) : err;
	m->scratch->track_touched = 1;
	if ((err = kheo__exec(m->scratch,
		     "CREATE TEMP TABLE kheo_touched(rid BLOB PRIMARY KEY)"
		     " WITHOUT ROWID;"
		     "CREATE TABLE IF NOT EXISTS audit_path(rid BLOB PRIMARY"
		     " KEY, path TEXT NOT NULL) WITHOUT ROWID;"
		     "CREATE TABLE IF NOT EXISTS audit_rcpt(author TEXT,"
		     " unit TEXT, useq INTEGER, held_at INTEGER);"
		     "CREATE TABLE IF NOT EXISTS audit_seq(id BLOB PRIMARY KEY,"
		     " seq INTEGER, commit_id TEXT) WITHOUT ROWID;"
		     "CREATE TABLE IF NOT EXISTS audit_meta(k TEXT PRIMARY"
		     " KEY, v) WITHOUT ROWID;")) < 0 ||
	    (err = kheo__begin(m->scratch)) < 0)
		return serr(m, err);
	if (m->ident.has_root && !m->scratch->enforcing &&
	    (err = kheo__authz_set_root(m->scratch, m->ident.root)) < 0)
		return serr(m, err);
	return KHEO_OK;
}

/* ----------------------------------------------------------- the tree */

static int file_put(mirror *m, const char *path, const void *p, size_t n)
{
	git_oid id;
	int rc;

	if ((rc = obj_write(m, &id, p, n, GIT_OBJECT_BLOB)) < 0)
		return gerr(m, rc, path);
	if ((rc = pack_note(m, &id, path, n)) < 0)
		return rc;
	return tree_set(m, path, &id);
}

/* Write every record the last changeset touched, as its file. */
static int render_touched(mirror *m)
{
	kheo_db *s = m->scratch;
	sqlite3_stmt *st = NULL, *get = NULL, *setp = NULL, *oldp = NULL;
	int rc, err = KHEO_OK;

	if (!m->trees) {
		if (!(st = mprep(m, "DELETE FROM temp.kheo_touched")) ||
		    sqlite3_step(st) != SQLITE_DONE)
			err = serr(m, kheo__sqlerr(s, SQLITE_ERROR, "render"));
		sqlite3_reset(st);
		return err;
	}
	if (!(st = mprep(m, "SELECT rid FROM temp.kheo_touched ORDER BY"
		      " rid")) ||
	    !(get = mprep(m, "SELECT tbl, unit FROM kheo_record WHERE"
		      " rid = ?1")) ||
	    !(setp = mprep(m, "INSERT OR REPLACE INTO audit_path(rid, path)"
		      " VALUES(?1, ?2)")) ||
	    !(oldp = mprep(m, "DELETE FROM audit_path WHERE rid = ?1"
		      " RETURNING path"))) {
		err = kheo__sqlerr(s, SQLITE_ERROR, "render");
		goto done;
	}
	while (err == KHEO_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const uint8_t *rid = sqlite3_column_blob(st, 0);
		char path[KHEO_UNIT_MAX + KHEO_NAME_MAX + 48];
		char hex[2 * KHEO_RECORD_SIZE + 1];
		json_t *obj;
		char *text;

		kheo_hex(hex, rid, KHEO_RECORD_SIZE);
		sqlite3_reset(get);
		sqlite3_bind_blob(get, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
		obj = NULL;
		if (sqlite3_step(get) == SQLITE_ROW) {
			snprintf(path, sizeof(path), "%s/%s/%.2s/%s.json",
				(const char *)sqlite3_column_text(get, 1),
				(const char *)sqlite3_column_text(get, 0), hex,
				hex);
			obj = kheo__record_json(s, rid, &err);
			if (err == KHEO_ENOTFOUND)
				err = KHEO_OK;
			if (err < 0)
				break;
		}
		if (!obj) {
			/* its put went (a revocation took it back) */
			sqlite3_reset(oldp);
			sqlite3_bind_blob(oldp, 1, rid, KHEO_RECORD_SIZE,
				SQLITE_STATIC);
			if (sqlite3_step(oldp) == SQLITE_ROW)
				err = tree_set(m, (const char *)
					sqlite3_column_text(oldp, 0), NULL);
			sqlite3_reset(oldp);
			continue;
		}
		text = json_dumps(obj, JSON_INDENT(2) | JSON_SORT_KEYS);
		json_decref(obj);
		if (!text) {
			err = KHEO_ENOMEM;
			break;
		}
		kheo_buf_reset(&m->buf);
		kheo_buf_put(&m->buf, text, strlen(text));
		kheo_buf_put(&m->buf, "\n", 1);
		free(text);
		if (m->buf.oom) {
			err = KHEO_ENOMEM;
			break;
		}
		if ((err = file_put(m, path, m->buf.p, m->buf.len)) < 0)
			break;
		sqlite3_reset(setp);
		sqlite3_bind_blob(setp, 1, rid, KHEO_RECORD_SIZE, SQLITE_STATIC);
		sqlite3_bind_text(setp, 2, path, -1, SQLITE_STATIC);
		if (sqlite3_step(setp) != SQLITE_DONE)
			err = kheo__sqlerr(s, SQLITE_ERROR, "render");
	}
	if (err == KHEO_OK) {
		sqlite3_stmt *clear = mprep(m, "DELETE FROM"
			" temp.kheo_touched");

		if (!clear || sqlite3_step(clear) != SQLITE_DONE)
			err = kheo__sqlerr(s, SQLITE_ERROR, "render");
		sqlite3_reset(clear);
	}
	if (err < 0 && err != KHEO_ENOMEM && !m->db && !*m->errmsg)
		serr(m, err);
done:
	sqlite3_reset(st);
	sqlite3_reset(get);
	sqlite3_reset(setp);
	sqlite3_reset(oldp);
	return err;
}

/* ------------------------------------------------------------ message */

/* The author's best certificate in the rebuilt state, for the trailer
 * and the author's name. */
static void cert_of(mirror *m, const uint8_t *author, char *trailer,
	size_t n, const char **role)
{
	sqlite3_stmt *st;

	snprintf(trailer, n, "none");
	*role = "uncertified";
	if (!(st = mprep(m, "SELECT digest, role, scope FROM kheo_cert WHERE"
		      " subject = ?1 AND status = 1 ORDER BY role DESC,"
		      " not_after DESC, digest LIMIT 1")))
		return;
	sqlite3_bind_blob(st, 1, author, KHEO_KEY_SIZE, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		char hex[2 * KHEO_ID_SIZE + 1];
		int bytes = sqlite3_column_bytes(st, 0);

		kheo_hex(hex, sqlite3_column_blob(st, 0),
			bytes > KHEO_ID_SIZE ? KHEO_ID_SIZE : (size_t)bytes);
		*role = kheo_role_name(sqlite3_column_int(st, 1));
		snprintf(trailer, n, "%s %s %s", hex, *role,
			(const char *)sqlite3_column_text(st, 2));
	}
	sqlite3_reset(st);
}

/* What the province held of this changeset's chain, in the rebuilt
 * state after it. */
static void receipt_of(mirror *m, const kheo_changeset *cs, char *out,
	size_t n)
{
	char author[2 * KHEO_KEY_SIZE + 1];
	sqlite3_stmt *st;

	snprintf(out, n, "none");
	kheo_hex(author, cs->author, KHEO_KEY_SIZE);
	if (!(st = mprep(m, "SELECT useq, held_at FROM sys_receipt WHERE"
		      " author = ?1 AND chain_unit = ?2 AND _deleted = 0 AND"
		      " useq >= ?3 ORDER BY useq DESC LIMIT 1")))
		return;
	sqlite3_bind_text(st, 1, author, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, cs->unit, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)cs->useq);
	if (sqlite3_step(st) == SQLITE_ROW) {
		char at[32];

		iso_ms(at, sqlite3_column_int64(st, 1));
		snprintf(out, n, "useq %lld held by the province at %s",
			(long long)sqlite3_column_int64(st, 0), at);
	}
	sqlite3_reset(st);
}

static void put_line(kheo_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void put_line(kheo_buf *b, const char *fmt, ...)
{
	char line[600];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	kheo_buf_put(b, line, (size_t)n < sizeof(line) ? (size_t)n
						       : sizeof(line) - 1);
	kheo_buf_put(b, "\n", 1);
}

/*
 * The commit message: a summary line, then trailers that git's own
 * tools read (git log --format=%(trailers)).  Everything in it follows
 * from the changeset and the rebuilt state, except Kheo-Applied, which
 * the committer date repeats: verify recomputes it.
 */
static void message(mirror *m, const kheo_changeset *cs,
	const uint8_t id[KHEO_ID_SIZE], int64_t applied, size_t seq,
	const char *cert, kheo_buf *b)
{
	char hex[2 * KHEO_KEY_SIZE + 1], rec[2 * KHEO_RECORD_SIZE + 1];
	char summary[200], at[32], at2[32], receipt[120];
	size_t i, n = 0;

	n += (size_t)snprintf(summary, sizeof(summary), "%s:", cs->unit);
	for (i = 0; i < cs->nops && i < 2; i++) {
		const kheo_op *op = &cs->ops[i];

		kheo_hex(rec, op->record, 4);
		n += (size_t)snprintf(summary + n, sizeof(summary) - n,
			"%s %s %s %s", i ? "," : "", kheo_op_name(op->kind),
			op->table, rec);
		if (op->kind != KHEO_OP_PUT && op->kind != KHEO_OP_DELETE &&
		    op->nfields == 1 && n < sizeof(summary))
			n += (size_t)snprintf(summary + n, sizeof(summary) - n,
				" %s", op->fields[0].name);
		if (n >= sizeof(summary))
			break;
	}
	if (cs->nops > 2 && n < sizeof(summary))
		snprintf(summary + n, sizeof(summary) - n, " and %zu more",
			cs->nops - 2);
	kheo_buf_reset(b);
	put_line(b, "%s", summary);
	put_line(b, "%s", "");
	kheo_hex(hex, id, KHEO_ID_SIZE);
	put_line(b, "Kheo-Changeset: %s", hex);
	kheo_hex(hex, cs->author, KHEO_KEY_SIZE);
	put_line(b, "Kheo-Author: %s", hex);
	put_line(b, "Kheo-Unit: %s", cs->unit);
	put_line(b, "Kheo-Useq: %llu", (unsigned long long)cs->useq);
	if (cs->useq > 1) {
		kheo_hex(hex, cs->prev, KHEO_ID_SIZE);
		put_line(b, "Kheo-Previous: %s", hex);
	}
	put_line(b, "Kheo-Ops: %zu", cs->nops);
	iso_ms(at, (int64_t)(cs->clock_min >> 16));
	iso_ms(at2, (int64_t)(cs->clock_max >> 16));
	put_line(b, "Kheo-Clock: %s %s", at, at2);
	put_line(b, "Kheo-Certificate: %s", cert);
	receipt_of(m, cs, receipt, sizeof(receipt));
	put_line(b, "Kheo-Receipt: %s", receipt);
	iso_ms(at, applied);
	put_line(b, "Kheo-Applied: %s", at);
	put_line(b, "Kheo-Seq: %zu", seq);
}

/* Names in git idents: what git fsck --strict accepts. */
static int person(git_signature **out, const char *role,
	const uint8_t *key, const char *unit, int64_t ms)
{
	char hex[2 * KHEO_KEY_SIZE + 1], name[KHEO_UNIT_MAX + 64];
	char email[2 * KHEO_KEY_SIZE + 16];

	kheo_hex(hex, key, KHEO_KEY_SIZE);
	snprintf(name, sizeof(name), "%s %.16s %s", role, hex, unit);
	snprintf(email, sizeof(email), "%s@kheo", hex);
	return git_signature_new(out, name, email,
		(git_time_t)(ms >= 0 ? ms / 1000 : 0), 0);
}

static const char *node_role_name(kheo_node_role r)
{
	return r == KHEO_NODE_PROVINCE ? "province" :
	       r == KHEO_NODE_HUB ? "hub" : "device";
}

/* ----------------------------------------------------------- one step */

/* After a `_sys` changeset: what the province said it held, for the
 * back-dating check at the end. */
static int note_receipts(mirror *m, const kheo_changeset *cs,
	const uint8_t id[KHEO_ID_SIZE])
{
	kheo_db *s = m->scratch;
	sqlite3_stmt *st, *role;
	size_t i;
	int rc, err = KHEO_OK, by_province = !s->enforcing;

	if (s->enforcing &&
	    sqlite3_prepare_v2(s->sql, "SELECT role FROM kheo_cs WHERE"
		    " id = ?1 AND state = 0", -1, &role, NULL) == SQLITE_OK) {
		sqlite3_bind_blob(role, 1, id, KHEO_ID_SIZE, SQLITE_STATIC);
		by_province = sqlite3_step(role) == SQLITE_ROW &&
			sqlite3_column_int(role, 0) == KHEO_ROLE_PROVINCE;
		sqlite3_finalize(role);
	}
	if (!by_province)
		return KHEO_OK;
	rc = sqlite3_prepare_v2(s->sql, "INSERT INTO audit_rcpt(author,"
		" unit, useq, held_at) SELECT author, chain_unit, useq, held_at"
		" FROM sys_receipt WHERE id = ?1 AND _deleted = 0", -1, &st,
		NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(s, rc, "receipts");
	for (i = 0; i < cs->nops && err == KHEO_OK; i++) {
		char hex[2 * KHEO_RECORD_SIZE + 1];

		if (strcmp(cs->ops[i].table, "sys_receipt") != 0)
			continue;
		kheo_hex(hex, cs->ops[i].record, KHEO_RECORD_SIZE);
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, hex, -1, SQLITE_TRANSIENT);
		if ((rc = sqlite3_step(st)) != SQLITE_DONE)
			err = kheo__sqlerr(s, rc, "receipts");
	}
	sqlite3_finalize(st);
	return err;
}

/* What became of the changeset `id` in the rebuild: 0 applied, 1 held,
 * 2 rejected (no row: it went to quarantine), or an error. */
static int own_fate(mirror *m, const uint8_t *id)
{
	sqlite3_stmt *q = mprep(m, "SELECT state FROM kheo_cs WHERE id = ?1");
	int rc, fate;

	if (!q)
		return merr(m, KHEO_ERROR, "rebuild: %s",
			sqlite3_errmsg(m->scratch->sql));
	sqlite3_bind_blob(q, 1, id, KHEO_ID_SIZE, SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		fate = sqlite3_column_int(q, 0) == 0 ? 0 : 1;
	else if (rc == SQLITE_DONE)
		fate = 2;
	else
		fate = serr(m, kheo__sqlerr(m->scratch, rc, "changeset fate"));
	sqlite3_reset(q);
	return fate;
}

/*
 * Receive one stored frame into the rebuilt state and compute what the
 * commit for it holds: its tree (when m->trees) and message.  A frame
 * that does not open is refused (KHEO_EPROTO, why in o->why) and changes
 * nothing.  `applied`: when the mirrored node applied it.
 */
static int mirror_step(mirror *m, const uint8_t *frame, size_t len,
	int64_t applied, size_t seq, step_out *o)
{
	kheo_db *s = m->scratch;
	kheo_refusal why = { 0 };
	kheo_changeset *cs = NULL;
	kheo_apply_stats stats = { 0 };
	uint8_t sig[KHEO_SIG_SIZE];
	kheo_buf raw = { 0 }, plain = { 0 };
	char cert[200];
	const char *role;
	int err;

	o->verdict = 0;
	o->why[0] = '\0';
	if ((err = kheo_frame_read(s->codec, &raw, sig, frame, len,
		     &why)) < 0 ||
	    (err = kheo_changeset_decode(&cs, raw.p, raw.len, &why)) < 0) {
		snprintf(o->why, sizeof(o->why), "%s: %s",
			kheo_reason_name(why.reason), why.msg);
		err = err == KHEO_ENOMEM ? err : KHEO_EPROTO;
		goto done;
	}
	kheo_changeset_id(o->id, raw.p, raw.len);
	kheo__audit_cs_path(o->path, o->id);
	/* the feed checked this signature ahead, on the other core: for
	 * these bytes (the id is their hash) and this signature only */
	if (m->pre && m->pre->signed_ok &&
	    memcmp(m->pre->id, o->id, KHEO_ID_SIZE) == 0 &&
	    memcmp(m->pre->sig, sig, KHEO_SIG_SIZE) == 0) {
		err = KHEO_OK;
	} else if ((err = kheo_changeset_verify(sig, o->id, cs->author,
			    &why)) < 0) {
		snprintf(o->why, sizeof(o->why), "%s: %s",
			kheo_reason_name(why.reason), why.msg);
		err = KHEO_EPROTO;
		goto done;
	}
	/* the mirror keeps frames uncompressed (git compresses), so that
	 * no dictionary is needed to read them */
	if ((err = kheo_frame_write(m->plain, &plain, raw.p, raw.len,
		     sig)) < 0)
		goto done;
	/* this node's own changesets are replayed as its own, as
	 * kheo_verify does */
	s->sealing = memcmp(cs->author, m->ident.pk, KHEO_KEY_SIZE) == 0;
	s->checked_id = o->id;
	err = kheo__receive(s, plain.p, plain.len, &stats);
	s->checked_id = NULL;
	s->sealing = 0;
	if (err < 0) {
		serr(m, err);
		goto done;
	}
	if ((err = kheo__flush_dirty(s)) < 0) {
		serr(m, err);
		goto done;
	}
	/* The stats count what this changeset did to others too: a
	 * revocation that takes back a changeset applied before counts that
	 * one as rejected.  This changeset's own fate is its row. */
	if (stats.duplicate) {
		o->verdict = 3;
	} else if ((err = own_fate(m, o->id)) < 0) {
		goto done;
	} else if (err == 2) {
		o->verdict = 2;
		snprintf(o->why, sizeof(o->why), "rejected");
	} else if (err == 1) {
		o->verdict = 1;
	} else {
		m->st.changesets += 1 + stats.released;
		m->st.ops += stats.ops;
	}
	err = KHEO_OK;
	if (o->verdict == 1 || o->verdict == 2) {
		sqlite3_stmt *q;

		if (sqlite3_prepare_v2(s->sql, "SELECT why FROM kheo_cs WHERE"
			    " id = ?1 UNION ALL SELECT reason || ': ' || detail"
			    " FROM kheo_quarantine WHERE id = ?1", -1, &q,
			    NULL) == SQLITE_OK) {
			sqlite3_bind_blob(q, 1, o->id, KHEO_ID_SIZE,
				SQLITE_STATIC);
			if (sqlite3_step(q) == SQLITE_ROW &&
			    sqlite3_column_text(q, 0))
				snprintf(o->why, sizeof(o->why), "%s",
					(const char *)sqlite3_column_text(q,
						0));
			sqlite3_finalize(q);
		}
	}
	if (strcmp(cs->unit, "_sys") == 0) {
		/* a certificate of this node's own changes the role its own
		 * changesets are replayed under, as on the node */
		if ((err = kheo__authz_own_role(s)) < 0 ||
		    (err = note_receipts(m, cs, o->id)) < 0) {
			serr(m, err);
			goto done;
		}
	}
	{
		sqlite3_stmt *q;
		char hex[GIT_OID_HEXSZ + 1] = "";

		if ((q = mprep(m, "INSERT OR IGNORE INTO audit_seq(id, seq,"
			     " commit_id) VALUES(?1, ?2, ?3)"))) {
			sqlite3_bind_blob(q, 1, o->id, KHEO_ID_SIZE,
				SQLITE_STATIC);
			sqlite3_bind_int64(q, 2, (int64_t)seq);
			if (seq && seq <= m->ncommits)
				git_oid_tostr(hex, sizeof(hex),
					&m->commits[seq - 1]);
			sqlite3_bind_text(q, 3, hex, -1, SQLITE_TRANSIENT);
			sqlite3_step(q);
			sqlite3_reset(q);
		}
	}
	if ((err = render_touched(m)) < 0)
		goto done;
	if (!m->trees)
		goto done;
	if ((err = file_put(m, o->path, plain.p, plain.len)) < 0)
		goto done;
	if ((err = tree_write(m, &o->tree)) < 0)
		goto done;
	cert_of(m, cs->author, cert, sizeof(cert), &role);
	message(m, cs, o->id, applied, seq, cert, &o->msg);
	if (o->msg.oom) {
		err = KHEO_ENOMEM;
		goto done;
	}
	if (person(&o->author, role, cs->author, cs->unit,
		    (int64_t)(cs->clock_max >> 16)) < 0)
		err = gerr(m, -1, "author");
done:
	kheo_changeset_free(cs);
	kheo_buf_free(&raw);
	kheo_buf_free(&plain);
	return err;
}

static void step_clear(step_out *o)
{
	git_signature_free(o->author);
	o->author = NULL;
	kheo_buf_free(&o->msg);
}

/* ------------------------------------------------------- reading a mirror */

static int blob_at(mirror *m, const git_tree *tree, const char *path,
	git_blob **out)
{
	git_tree_entry *e = NULL;
	int rc;

	*out = NULL;
	if ((rc = git_tree_entry_bypath(&e, tree, path)) < 0)
		return KHEO_ENOTFOUND;
	rc = git_tree_entry_type(e) == GIT_OBJECT_BLOB
		     ? git_blob_lookup(out, m->repo, git_tree_entry_id(e))
		     : -1;
	git_tree_entry_free(e);
	return rc < 0 ? KHEO_ENOTFOUND : KHEO_OK;
}

/* The history from HEAD (or refs/heads/main) down to the first commit,
 * first-parent, stored first commit first.  Merges are refused. */
static int load_history(mirror *m, const char *ref)
{
	git_oid at;
	size_t cap = 0;
	int rc;

	m->ncommits = 0;
	if ((rc = git_reference_name_to_id(&at, m->repo, ref)) < 0)
		return rc == GIT_ENOTFOUND ? KHEO_ENOTFOUND
					   : gerr(m, rc, ref);
	for (;;) {
		git_odb_object *obj = NULL;
		const char *p, *end;
		unsigned parents = 0;
		git_oid parent;

		if (m->ncommits == cap) {
			git_oid *more;

			cap = cap ? 2 * cap : 1024;
			if (!(more = kheo__realloc(m->commits,
				      cap * sizeof(*more))))
				return KHEO_ENOMEM;
			m->commits = more;
		}
		m->commits[m->ncommits++] = at;
		/* only the parent lines of the raw commit: parsing all of it
		 * (git_commit_lookup) made this walk, which nothing overlaps,
		 * a tenth of a replay */
		if ((rc = git_odb_read(&obj, m->odb, &at)) < 0)
			return gerr(m, rc, "history");
		if (git_odb_object_type(obj) != GIT_OBJECT_COMMIT) {
			git_odb_object_free(obj);
			return merr(m, KHEO_ECORRUPT, "history: an object in "
				"the line of commits is not a commit");
		}
		p = git_odb_object_data(obj);
		end = p + git_odb_object_size(obj);
		while (p < end && *p != '\n') {
			const char *eol = memchr(p, '\n', (size_t)(end - p));

			if (!eol)
				break;
			if (eol - p == 7 + GIT_OID_HEXSZ &&
			    memcmp(p, "parent ", 7) == 0 &&
			    git_oid_fromstrn(&parent, p + 7, GIT_OID_HEXSZ) == 0 &&
			    parents++ == 0)
				at = parent;
			p = eol + 1;
		}
		git_odb_object_free(obj);
		if (parents > 1) {
			char hex[GIT_OID_HEXSZ + 1];

			git_oid_tostr(hex, sizeof(hex),
				&m->commits[m->ncommits - 1]);
			return merr(m, KHEO_ECORRUPT, "commit %s is a merge: "
				"a mirror's history is a single line (rewritten "
				"history)", hex);
		}
		if (parents == 0)
			break;
		/* the walk crosses every pack: reopened as the loops are,
		 * or the delta-base cache of each pack it passed stays (it
		 * was the peak of a verify or replay, growing with the
		 * number of packs) */
		if (m->ncommits % PACK_EVERY == 0 && (rc = mirror_reopen(m)) < 0)
			return rc;
	}
	/* first commit first */
	{
		size_t i;

		for (i = 0; i < m->ncommits / 2; i++) {
			git_oid t = m->commits[i];

			m->commits[i] = m->commits[m->ncommits - 1 - i];
			m->commits[m->ncommits - 1 - i] = t;
		}
	}
	return KHEO_OK;
}

/* The mirror's facts and schema from a commit's tree. */
static int read_facts(mirror *m, const git_tree *tree, mirror_ident *id,
	int want_schema)
{
	git_blob *b;
	int err;

	if (blob_at(m, tree, MIRROR_FILE, &b) < 0)
		return merr(m, KHEO_ECORRUPT, "no %s: not a kheo mirror",
			MIRROR_FILE);
	err = ident_parse(m, git_blob_rawcontent(b),
		(size_t)git_blob_rawsize(b), id);
	git_blob_free(b);
	if (err < 0 || !want_schema)
		return err;
	if (blob_at(m, tree, SCHEMA_FILE, &b) < 0)
		return merr(m, KHEO_ECORRUPT, "no %s: not a kheo mirror",
			SCHEMA_FILE);
	m->schema_len = (size_t)git_blob_rawsize(b);
	if (!(m->schema = kheo__malloc(m->schema_len + 1))) {
		git_blob_free(b);
		return KHEO_ENOMEM;
	}
	memcpy(m->schema, git_blob_rawcontent(b), m->schema_len);
	m->schema[m->schema_len] = '\0';
	git_blob_free(b);
	return KHEO_OK;
}

/* Seed the tree being built with the mirror's facts, as found in the
 * first commit (they are inputs: verify checks they never change but
 * for the root an enrolment adds). */
static int seed_facts(mirror *m)
{
	int err;

	if ((err = ident_json(&m->ident, &m->buf)) < 0 ||
	    (err = file_put(m, MIRROR_FILE, m->buf.p, m->buf.len)) < 0 ||
	    (err = file_put(m, SCHEMA_FILE, m->schema, m->schema_len)) < 0)
		return err;
	return KHEO_OK;
}

/* The differences between the tree built and the commit's. */
static void report_diff(mirror *m, size_t seq, const git_oid *commit,
	const git_oid *want, const git_oid *got, const char *skip)
{
	git_tree *a = NULL, *b = NULL;
	git_diff *d = NULL;
	size_t i, n;

	if (git_tree_lookup(&a, m->repo, want) < 0 ||
	    git_tree_lookup(&b, m->repo, got) < 0 ||
	    git_diff_tree_to_tree(&d, m->repo, a, b, NULL) < 0) {
		finding(m, KHEO_AUDIT_ERROR, "edited", seq, commit, "",
			"the tree is not the one rebuilt from the changesets");
		goto done;
	}
	n = git_diff_num_deltas(d);
	for (i = 0; i < n; i++) {
		const git_diff_delta *dd = git_diff_get_delta(d, i);
		const char *path = dd->status == GIT_DELTA_ADDED
					   ? dd->new_file.path
					   : dd->old_file.path;

		if (skip && strcmp(path, skip) == 0)
			continue;
		switch (dd->status) {
		case GIT_DELTA_ADDED:
			finding(m, KHEO_AUDIT_ERROR, "added", seq, commit, path,
				"added: no changeset up to this commit makes "
				"this file");
			break;
		case GIT_DELTA_DELETED:
			finding(m, KHEO_AUDIT_ERROR, "removed", seq, commit,
				path, "removed: the changesets up to this "
				"commit make this file");
			break;
		default:
			finding(m, KHEO_AUDIT_ERROR, "edited", seq, commit,
				path, "edited: differs from the state rebuilt "
				"from the changesets");
		}
	}
	if (n == 0)
		finding(m, KHEO_AUDIT_ERROR, "edited", seq, commit, "",
			"the tree differs from the rebuilt one (file modes?)");
done:
	git_diff_free(d);
	git_tree_free(a);
	git_tree_free(b);
}

/* The first line where two messages differ, for the finding. */
static void first_diff_line(const char *a, const char *b, char *out,
	size_t n)
{
	while (*a && *b) {
		size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");

		if (la != lb || memcmp(a, b, la) != 0) {
			snprintf(out, n, "\"%.*s\" where kheo writes \"%.*s\"",
				(int)(lb > 120 ? 120 : lb), b,
				(int)(la > 120 ? 120 : la), a);
			return;
		}
		a += la + (a[la] == '\n');
		b += lb + (b[lb] == '\n');
	}
	snprintf(out, n, "%s", *a ? "lines missing at the end"
				  : "lines added at the end");
}

static int same_person(const git_signature *a, const git_signature *b)
{
	return strcmp(a->name, b->name) == 0 &&
	       strcmp(a->email, b->email) == 0 &&
	       a->when.time == b->when.time && a->when.offset == b->when.offset;
}

/* Is the commit signed by the mirrored node (audit_sign.c)?  Only it
 * makes commits: a commit it did not sign was made or re-made by
 * someone else, whatever else in it still checks. */
static int check_signed(mirror *m, size_t seq, const git_oid *oid,
	const audit_item *it)
{
	/* checked by the feed, on the other core (kheo__commit_check) */
	const char *why = it->commit_why;
	int err = it->commit_signed;

	if (err == KHEO_ERROR)
		return merr(m, KHEO_EIO, "commit %zu: %s", seq, why);
	if (err < 0)
		finding(m, KHEO_AUDIT_ERROR, "signature", seq, oid, "",
			"%s: the mirrored node did not make this commit as "
			"it is", why);
	return KHEO_OK;
}

/*
 * Changesets this commit's changeset took back: a revocation that reached
 * the node after it had applied (and mirrored) later changesets of the
 * revoked key.  The history stays as it was, and this commit's tree drops
 * their effects; an auditor is told which ones, and where they were.
 */
static int taken_back(mirror *m, size_t seq, const git_oid *oid)
{
	sqlite3_stmt *q = mprep(m, "SELECT q.n, q.detail, s.seq,"
		" s.commit_id, q.id FROM kheo_quarantine q LEFT JOIN audit_seq"
		" s ON s.id = q.id WHERE q.n > ?1 ORDER BY q.n");
	int rc;

	if (!q)
		return merr(m, KHEO_ERROR, "rebuild: %s",
			sqlite3_errmsg(m->scratch->sql));
	sqlite3_bind_int64(q, 1, m->quarantined);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		char path[96];
		const void *id = sqlite3_column_blob(q, 4);

		m->quarantined = sqlite3_column_int64(q, 0);
		/* only what was applied before: a mirrored commit of its own */
		if (sqlite3_column_type(q, 2) == SQLITE_NULL || !id ||
		    sqlite3_column_bytes(q, 4) != KHEO_ID_SIZE)
			continue;
		kheo__audit_cs_path(path, id);
		finding(m, KHEO_AUDIT_WARNING, "taken-back", seq, oid, path,
			"this commit takes back the changeset mirrored at "
			"commit %lld (%.12s): %s",
			(long long)sqlite3_column_int64(q, 2),
			(const char *)sqlite3_column_text(q, 3),
			(const char *)sqlite3_column_text(q, 1));
	}
	sqlite3_reset(q);
	return rc == SQLITE_DONE ? KHEO_OK
				 : serr(m, kheo__sqlerr(m->scratch, rc, "taken back"));
}

/*
 * Check one commit of the history, as the feed read it: step its
 * changeset through the rebuild and compare what kheo would have written
 * with what is there.  Findings are reported; an error return means the
 * check itself could not go on (I/O, memory).
 */
static int check_commit(mirror *m, const audit_item *it, int check)
{
	size_t i = it->i;
	const git_oid *oid = &m->commits[i];
	size_t seq = i + 1;
	step_out o;
	const char *msg = it->msg;
	char val[160];
	const char *path = it->path;
	int64_t applied = 0;
	int err = KHEO_OK;

	memset(&o, 0, sizeof(o));
	m->tree_ok = 0;
	if (it->err < 0) {
		err = merr(m, it->err, "%s", it->errmsg);
		goto done;
	}
	if (!kheo__audit_trailer(msg, "Kheo-Seq", val, sizeof(val)) ||
	    strtoull(val, NULL, 10) != seq) {
		finding(m, KHEO_AUDIT_ERROR, "history", seq, oid, "",
			"history rewritten: this is commit %zu from the "
			"first, but says Kheo-Seq %s (a commit was removed "
			"or added before it)", seq,
			kheo__audit_trailer(msg, "Kheo-Seq", val, sizeof(val)) ? val
								     : "nothing");
	}
	if (!it->named) {
		finding(m, KHEO_AUDIT_ERROR, "history", seq, oid, "",
			"not a mirror commit: no Kheo-Changeset trailer "
			"(a commit added to the history)");
		goto done;
	}
	if (!kheo__audit_trailer(msg, "Kheo-Applied", val, sizeof(val)) ||
	    kheo_audit_parse_time(&applied, val) < 0) {
		finding(m, KHEO_AUDIT_ERROR, "message", seq, oid, "",
			"no Kheo-Applied trailer (message altered)");
		applied = (int64_t)it->committer->when.time * 1000;
	}
	if (!it->found) {
		finding(m, KHEO_AUDIT_ERROR, "removed", seq, oid, path,
			"removed: the changeset this commit names is not in "
			"its tree");
		goto done;
	}
	/* an enrolment between two exports: the mirrored node learnt its
	 * root, and so does the rebuild, at the same place (the feed hands
	 * the facts over only where they differ from the commit before's:
	 * the same facts would decide the same) */
	if (i > 0 && check && it->facts_new) {
		mirror_ident now;

		if (ident_parse(m, (const char *)it->facts.p, it->facts.len,
			    &now) == KHEO_OK &&
		    now.has_root && !m->ident.has_root &&
		    memcmp(now.pk, m->ident.pk, KHEO_KEY_SIZE) == 0) {
			m->ident.has_root = 1;
			memcpy(m->ident.root, now.root, KHEO_KEY_SIZE);
			if ((err = kheo__authz_set_root(m->scratch,
				     now.root)) < 0 ||
			    (err = seed_facts(m)) < 0) {
				serr(m, err);
				goto done;
			}
		}
	}
	m->pre = it;
	err = mirror_step(m, it->frame.p, it->frame.len, applied, seq, &o);
	m->pre = NULL;
	if (err == KHEO_EPROTO) {
		finding(m, KHEO_AUDIT_ERROR, "changeset", seq, oid, path,
			"the changeset does not verify (%s): its bytes were "
			"altered", o.why);
		/* keep what is there, so that only this is reported */
		file_put(m, path, it->frame.p, it->frame.len);
		err = KHEO_OK;
		goto done;
	}
	if (err < 0)
		goto done;
	if (memcmp(o.id, it->named_id, KHEO_ID_SIZE) != 0) {
		finding(m, KHEO_AUDIT_ERROR, "changeset", seq, oid, path,
			"this file holds another changeset than the one its "
			"name and the commit name");
	}
	if (o.verdict == 3)
		finding(m, KHEO_AUDIT_ERROR, "history", seq, oid, path,
			"this changeset was mirrored before (a commit "
			"repeated)");
	else if (o.verdict == 2)
		finding(m, KHEO_AUDIT_ERROR, "rejected", seq, oid, path,
			"the rebuild rejects this changeset, which the node "
			"applied: %s", o.why);
	if (check && (err = taken_back(m, seq, oid)) < 0)
		goto done;
	if (check && (err = check_signed(m, seq, oid, it)) < 0)
		goto done;
	if (!check || !m->trees)
		goto done;
	if (git_oid_equal(&o.tree, &it->tree))
		m->tree_ok = 1;
	else
		report_diff(m, seq, oid, &o.tree, &it->tree, NULL);
	if (o.msg.len != strlen(msg) || memcmp(o.msg.p, msg, o.msg.len) != 0) {
		char d[400];

		kheo_buf_put(&o.msg, "", 1);
		first_diff_line((const char *)o.msg.p, msg, d, sizeof(d));
		finding(m, KHEO_AUDIT_ERROR, "message", seq, oid, "",
			"message altered: %s", d);
	}
	{
		const git_signature *a = it->author;
		const git_signature *k = it->committer;
		git_signature *want = NULL;

		if (a->when.time != o.author->when.time)
			finding(m, KHEO_AUDIT_ERROR, "dates", seq, oid, "",
				"author date %lld is not the changeset's clock "
				"%lld (git dates rewritten)",
				(long long)a->when.time,
				(long long)o.author->when.time);
		else if (!same_person(a, o.author))
			finding(m, KHEO_AUDIT_ERROR, "message", seq, oid, "",
				"author \"%s <%s>\" is not the changeset's "
				"author \"%s <%s>\"", a->name, a->email,
				o.author->name, o.author->email);
		if (k->when.time != applied / 1000)
			finding(m, KHEO_AUDIT_ERROR, "dates", seq, oid, "",
				"committer date %lld is not when the node "
				"applied the changeset (Kheo-Applied, %lld): "
				"git dates rewritten", (long long)k->when.time,
				(long long)(applied / 1000));
		if (applied < m->last_applied)
			finding(m, KHEO_AUDIT_ERROR, "dates", seq, oid, "",
				"applied before the commit before it: the "
				"history's dates or order were rewritten");
		if (person(&want, node_role_name(m->ident.role), m->ident.pk,
			    m->ident.unit, applied) == 0 &&
		    (strcmp(want->name, k->name) != 0 ||
			    strcmp(want->email, k->email) != 0))
			finding(m, KHEO_AUDIT_ERROR, "message", seq, oid, "",
				"committer \"%s <%s>\" is not the mirrored "
				"node \"%s <%s>\"", k->name, k->email,
				want->name, want->email);
		git_signature_free(want);
	}
done:
	if (applied > m->last_applied && err == KHEO_OK)
		m->last_applied = applied;
	m->seq = seq;
	step_clear(&o);
	return err;
}

/*
 * Check every commit of the history in order, read ahead by the feed.
 * An export (`export`) stops at the first finding, for it appends only
 * to a mirror that verifies; verify goes on, to report them all, and
 * counts what it checked.
 */
static int check_history(mirror *m, int export)
{
	audit_feed *feed = NULL;
	audit_item *it;
	int err;

	if ((err = audit_feed_start(&feed, m->gitdir, m->commits,
		     m->ncommits, PACK_EVERY, m->ident.pk)) < 0)
		return merr(m, err, "%s: cannot read it ahead (%s)",
			m->gitdir, err == KHEO_ENOMEM ? "out of memory"
						       : "no thread");
	while (err == KHEO_OK && (it = audit_feed_next(feed))) {
		err = check_commit(m, it, 1);
		/* the trees built for this commit are in the repository
		 * (it matched): memory need not keep them.  After a
		 * mismatch they stay, for the diffs of the next ones. */
		if (err == KHEO_OK && m->tree_ok &&
		    git_mempack_reset(m->mempack) < 0)
			err = gerr(m, -1, "memory store");
		if (err == KHEO_OK && m->tree_ok &&
		    (it->i + 1) % PACK_EVERY == 0)
			err = mirror_reopen(m);
		if (export && err == KHEO_OK && m->st.errors)
			err = KHEO_ECORRUPT;
		if (!export)
			m->st.commits++;
	}
	audit_feed_free(feed);
	return err;
}

/* After the last commit: what the rebuild still holds (chain gaps),
 * equivocation, back-dating. */
static int final_findings(mirror *m)
{
	kheo_db *s = m->scratch;
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(s->sql, "SELECT c.id, lower(hex(c.author)),"
		" c.unit, c.useq, c.why, q.seq, q.commit_id FROM kheo_cs c"
		" LEFT JOIN audit_seq q ON q.id = c.id WHERE c.state = 1"
		" ORDER BY q.seq", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(s, rc, "verify");
	while (sqlite3_step(st) == SQLITE_ROW) {
		char path[96];
		const char *why = (const char *)sqlite3_column_text(st, 4);
		git_oid oid;
		int have = sqlite3_column_text(st, 6) &&
			git_oid_fromstr(&oid, (const char *)
				sqlite3_column_text(st, 6)) == 0;

		kheo__audit_cs_path(path, sqlite3_column_blob(st, 0));
		if (why && strncmp(why, "waiting for useq", 16) == 0)
			finding(m, KHEO_AUDIT_ERROR, "chain-gap",
				(size_t)sqlite3_column_int64(st, 5),
				have ? &oid : NULL, path,
				"chain gap: %.16s... %s useq %lld follows a "
				"changeset the mirror does not hold (%s): one "
				"was dropped", (const char *)
				sqlite3_column_text(st, 1),
				(const char *)sqlite3_column_text(st, 2),
				(long long)sqlite3_column_int64(st, 3), why);
		else
			finding(m, KHEO_AUDIT_ERROR, "rejected",
				(size_t)sqlite3_column_int64(st, 5),
				have ? &oid : NULL, path,
				"the rebuild holds this changeset, which the "
				"node applied: %s", why ? why : "");
	}
	sqlite3_finalize(st);
	rc = sqlite3_prepare_v2(s->sql, "SELECT lower(hex(author)), detail"
		" FROM kheo_flag WHERE kind = 'equivocation' ORDER BY author",
		-1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(s, rc, "verify");
	while (sqlite3_step(st) == SQLITE_ROW)
		finding(m, KHEO_AUDIT_WARNING, "equivocation", 0, NULL, "",
			"equivocation by %s: %s",
			(const char *)sqlite3_column_text(st, 0),
			(const char *)sqlite3_column_text(st, 1));
	sqlite3_finalize(st);
	/* back-dated: clocked more than the bound before the first province
	 * receipt that covers it */
	rc = sqlite3_prepare_v2(s->sql, "SELECT c.id, lower(hex(c.author)),"
		" c.unit, c.useq, c.clock_max >> 16, (SELECT min(r.held_at)"
		" FROM audit_rcpt r WHERE r.author = lower(hex(c.author))"
		" AND r.unit = c.unit AND r.useq >= c.useq) AS first, q.seq,"
		" q.commit_id FROM kheo_cs c LEFT JOIN audit_seq q ON"
		" q.id = c.id WHERE c.state = 0 AND c.unit != '_sys' AND"
		" first - (c.clock_max >> 16) > ?1 ORDER BY q.seq", -1, &st,
		NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(s, rc, "verify");
	sqlite3_bind_int64(st, 1, m->opts.backdate_ms);
	while (sqlite3_step(st) == SQLITE_ROW) {
		char path[96], clock[32], first[32];
		int64_t gap = sqlite3_column_int64(st, 5) -
			      sqlite3_column_int64(st, 4);
		git_oid oid;
		int have = sqlite3_column_text(st, 7) &&
			git_oid_fromstr(&oid, (const char *)
				sqlite3_column_text(st, 7)) == 0;

		kheo__audit_cs_path(path, sqlite3_column_blob(st, 0));
		iso_ms(clock, sqlite3_column_int64(st, 4));
		iso_ms(first, sqlite3_column_int64(st, 5));
		finding(m, KHEO_AUDIT_WARNING, "back-dated",
			(size_t)sqlite3_column_int64(st, 6), have ? &oid : NULL,
			path, "back-dated: %.16s... %s useq %lld is clocked "
			"%s, %.1f days before the first province receipt "
			"that covers it (%s); the bound is %.1f days",
			(const char *)sqlite3_column_text(st, 1),
			(const char *)sqlite3_column_text(st, 2),
			(long long)sqlite3_column_int64(st, 3), clock,
			(double)gap / 86400000.0, first,
			(double)m->opts.backdate_ms / 86400000.0);
	}
	sqlite3_finalize(st);
	return KHEO_OK;
}

/* Open the repository and read the mirror's history and facts. */
static int mirror_open_existing(mirror *m, const char *gitdir,
	const char *ref)
{
	git_commit *c = NULL;
	git_tree *t = NULL;
	int rc, err;

	if ((rc = git_repository_open_ext(&m->repo, gitdir,
		     GIT_REPOSITORY_OPEN_NO_SEARCH, NULL)) < 0)
		return merr(m, KHEO_ENOTFOUND, "%s is not a git repository",
			gitdir);
	if ((err = mirror_odb(m)) < 0)
		return err;
	if ((err = load_history(m, ref)) < 0) {
		if (err == KHEO_ENOTFOUND)
			merr(m, err, "%s has no commits: nothing to read",
				gitdir);
		return err;
	}
	if ((rc = git_commit_lookup(&c, m->repo, &m->commits[0])) < 0 ||
	    (rc = git_commit_tree(&t, c)) < 0) {
		git_commit_free(c);
		return gerr(m, rc, "first commit");
	}
	err = read_facts(m, t, &m->ident, 1);
	git_tree_free(t);
	git_commit_free(c);
	if (err < 0)
		return err;
	/* the rebuild starts from the facts as they were at first: the
	 * root, if any, as of the first commit */
	if ((err = mirror_scratch(m)) < 0 || (err = seed_facts(m)) < 0)
		return err;
	return KHEO_OK;
}

/* ------------------------------------------------------------ public */

KHEO_EXTERN int kheo_audit_open(kheo_audit **out, const char *gitdir,
	const kheo_audit_options *opts)
{
	kheo_audit *a;
	int err;

	*out = NULL;
	if (!gitdir)
		return KHEO_EINVAL;
	if (!(a = kheo__calloc(1, sizeof(*a))))
		return KHEO_ENOMEM;
	*out = a;
	if ((err = mirror_init(&a->m, NULL, opts)) < 0)
		return err;
	return mirror_open_existing(&a->m, gitdir, "HEAD");
}

KHEO_EXTERN void kheo_audit_free(kheo_audit *a)
{
	if (!a)
		return;
	mirror_free(&a->m);
	kheo__free(a);
}

KHEO_EXTERN const char *kheo_audit_errmsg(const kheo_audit *a)
{
	return a ? a->m.errmsg : "out of memory";
}

static void fill_stats(mirror *m, kheo_audit_stats *st)
{
	if (m->ncommits)
		git_oid_tostr(m->st.tip, sizeof(m->st.tip),
			&m->commits[m->ncommits - 1]);
	if (st)
		*st = m->st;
}

KHEO_EXTERN int kheo_audit_verify(kheo_audit *a, kheo_audit_stats *st)
{
	mirror *m = &a->m;
	int err = KHEO_OK;

	if (!m->scratch || m->used)
		return merr(m, KHEO_EINVAL, "the mirror is not open, or was "
			"already read: open it again");
	m->used = 1;
	m->trees = 1;
	m->errmsg[0] = '\0';
	err = check_history(m, 0);
	if (err == KHEO_OK && (err = final_findings(m)) < 0)
		serr(m, err);
	fill_stats(m, st);
	if (err < 0)
		return err;
	return m->st.errors ? KHEO_ECORRUPT : KHEO_OK;
}

/* Every record of the rebuilt state, as JSON with "_table". */
static int records_json(mirror *m, json_t *arr)
{
	kheo_db *s = m->scratch;
	sqlite3_stmt *st;
	int rc, err = KHEO_OK;

	rc = sqlite3_prepare_v2(s->sql, "SELECT rid, tbl FROM kheo_record"
		" ORDER BY tbl, rid", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return serr(m, kheo__sqlerr(s, rc, "replay"));
	while (err == KHEO_OK && sqlite3_step(st) == SQLITE_ROW) {
		json_t *r = kheo__record_json(s, sqlite3_column_blob(st, 0),
			&err);

		if (err == KHEO_ENOTFOUND) {
			err = KHEO_OK;
			continue;
		}
		if (!r)
			break;
		json_object_set_new(r, "_table", json_string(
			(const char *)sqlite3_column_text(st, 1)));
		json_array_append_new(arr, r);
	}
	sqlite3_finalize(st);
	return err < 0 ? serr(m, err) : KHEO_OK;
}

KHEO_EXTERN int kheo_audit_replay(kheo_audit *a, kheo_replay_mode mode,
	int64_t until_ms, const char *outdir, char **json_out,
	kheo_audit_stats *st)
{
	mirror *m = &a->m;
	uint8_t digest[32];
	audit_feed *feed = NULL;
	audit_item *it;
	int err = KHEO_OK;

	if (json_out)
		*json_out = NULL;
	if (!m->scratch || m->used)
		return merr(m, KHEO_EINVAL, "the mirror is not open, or was "
			"already read: open it again");
	if (mode != KHEO_REPLAY_CLOCK && mode != KHEO_REPLAY_RECEIVED)
		return merr(m, KHEO_EINVAL, "replay mode %d unknown",
			(int)mode);
	m->used = 1;
	m->trees = 0;
	m->errmsg[0] = '\0';
	/* replay reads the repository only through the feed: let go of
	 * this handle, so that the feed's reopening frees what libgit2
	 * caches per pack (a pack is freed only once no handle holds it) */
	git_odb_free(m->odb);
	m->odb = NULL;
	m->mempack = NULL;
	git_repository_free(m->repo);
	m->repo = NULL;
	if ((err = audit_feed_start(&feed, m->gitdir, m->commits,
		     m->ncommits, PACK_EVERY, NULL)) < 0)
		return merr(m, err, "%s: cannot read it ahead (%s)",
			m->gitdir, err == KHEO_ENOMEM ? "out of memory"
						       : "no thread");
	while (err == KHEO_OK && (it = audit_feed_next(feed))) {
		size_t i = it->i;
		char val[160];
		int64_t applied;
		step_out o;

		memset(&o, 0, sizeof(o));
		if (it->err < 0) {
			err = merr(m, it->err, "%s", it->errmsg);
			break;
		}
		if (!it->named ||
		    !kheo__audit_trailer(it->msg, "Kheo-Applied", val,
			    sizeof(val)) ||
		    kheo_audit_parse_time(&applied, val) < 0) {
			err = merr(m, KHEO_ECORRUPT, "commit %zu is not a "
				"mirror commit (its trailers): run kheo audit "
				"verify", i + 1);
		} else if (mode == KHEO_REPLAY_RECEIVED && applied > until_ms) {
			/* the node had applied nothing more by then */
			break;
		} else if (!it->found) {
			err = merr(m, KHEO_ECORRUPT, "commit %zu: %s "
				"missing: run kheo audit verify", i + 1,
				it->path);
		} else {
			const uint8_t *p = it->frame.p;
			size_t n = it->frame.len;
			int keep = 1;

			if (mode == KHEO_REPLAY_CLOCK) {
				kheo_changeset *cs;
				uint8_t sig[KHEO_SIG_SIZE];

				if (kheo_frame_read(m->plain, &m->buf, sig, p,
					    n, NULL) == 0 &&
				    kheo_changeset_decode(&cs, m->buf.p,
					    m->buf.len, NULL) == 0) {
					keep = strcmp(cs->unit, "_sys") == 0 ||
					       (int64_t)(cs->clock_max >>
						       16) <= until_ms;
					kheo_changeset_free(cs);
				}
			}
			if (keep) {
				m->pre = it;
				err = mirror_step(m, p, n, applied, i + 1, &o);
				m->pre = NULL;
				if (err == KHEO_EPROTO)
					err = merr(m, KHEO_ECORRUPT, "commit "
						"%zu: %s does not verify (%s): "
						"run kheo audit verify", i + 1,
						it->path, o.why);
				m->st.commits++;
			}
		}
		step_clear(&o);
	}
	audit_feed_free(feed);
	if (err == KHEO_OK && (err = kheo__commit_tx(m->scratch)) < 0)
		serr(m, err);
	if (err == KHEO_OK && (err = kheo_digest(m->scratch, digest,
				      NULL)) < 0)
		serr(m, err);
	if (err == KHEO_OK)
		kheo_hex(m->st.digest, digest, 32);
	/* the rebuild's own tables are not the replayed node's */
	if (err == KHEO_OK && outdir && ((err = kheo__exec(m->scratch,
		     "DROP TABLE audit_path; DROP TABLE audit_rcpt;"
		     " DROP TABLE audit_seq; DROP TABLE audit_meta")) < 0 ||
		     (err = kheo__db_scratch_save(m->scratch, outdir)) < 0))
		serr(m, err);
	if (err == KHEO_OK && json_out) {
		json_t *o = json_object(), *arr = json_array();
		char at[32];

		iso_ms(at, until_ms);
		json_object_set_new(o, "mode", json_string(
			mode == KHEO_REPLAY_CLOCK ? "until"
						  : "received-until"));
		json_object_set_new(o, "until", json_string(at));
		json_object_set_new(o, "unit", json_string(m->ident.unit));
		json_object_set_new(o, "changesets",
			json_integer((json_int_t)m->st.changesets));
		json_object_set_new(o, "digest", json_string(m->st.digest));
		json_object_set_new(o, "records", arr);
		if ((err = records_json(m, arr)) == KHEO_OK) {
			char *text = json_dumps(o, JSON_INDENT(2) |
				JSON_SORT_KEYS);

			if (!text || !(*json_out = kheo__malloc(
					       strlen(text) + 1)))
				err = KHEO_ENOMEM;
			else
				strcpy(*json_out, text);
			free(text);
		}
		json_decref(o);
	}
	fill_stats(m, st);
	return err;
}

/* -------------------------------------------------------------- export */

/* A folder that is missing or empty: where a new mirror may be made. */
static int fresh_dir(const char *path)
{
	struct stat sb;
	struct dirent *e;
	DIR *d;
	int empty = 1;

	if (stat(path, &sb) != 0)
		return errno == ENOENT;
	if (!S_ISDIR(sb.st_mode) || !(d = opendir(path)))
		return 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			empty = 0;
	closedir(d);
	return empty;
}

/*
 * The rebuild an export leaves beside the mirror (GITDIR/kheo-rebuild.db:
 * the scratch store, keyed by the head commit it is the state of), so
 * that the next export appends without re-verifying the history: a head
 * commit's id covers every commit before it, so a mirror whose head is
 * the one this node wrote last holds exactly what that export verified
 * or wrote.  Anything else (another head, another node, no file) and the
 * export verifies the whole history, as before.  While an export runs
 * the file is kheo-rebuild.work, and it is renamed back only once the
 * branch has moved: an export that fails or is interrupted leaves none,
 * and the next one verifies.  It is not part of the mirror (git ignores
 * it, a clone does not copy it).
 */
#define REBUILD_FILE "kheo-rebuild.db"
#define REBUILD_WORK "kheo-rebuild.work"

static int rebuild_paths(mirror *m, const char *gitdir, char *keep,
	size_t n)
{
	if ((size_t)snprintf(keep, n, "%s/%s", gitdir, REBUILD_FILE) >= n ||
	    (size_t)snprintf(m->scratch_file, sizeof(m->scratch_file),
		    "%s/%s", gitdir, REBUILD_WORK) >= sizeof(m->scratch_file))
		return merr(m, KHEO_EINVAL, "%s: path too long", gitdir);
	return KHEO_OK;
}

/* Take up the kept rebuild if it is the state of the mirror's head:
 * KHEO_OK with *tip the head, KHEO_ENOTFOUND when it is not (nothing
 * changed then), another error otherwise. */
static int mirror_resume(mirror *m, kheo_db *db, const char *gitdir,
	const char *keep, git_oid *tip)
{
	char want[GIT_OID_HEXSZ + 1], node[2 * KHEO_KEY_SIZE + 1];
	char head[GIT_OID_HEXSZ + 1] = "", who[2 * KHEO_KEY_SIZE + 1] = "";
	git_repository *r = NULL;
	git_commit *c = NULL;
	git_tree *t = NULL;
	sqlite3 *q = NULL;
	sqlite3_stmt *st = NULL;
	int64_t seq = -1, applied = 0;
	tent root;
	int rc, err;

	/* cheap checks first, touching nothing */
	if (git_repository_open_ext(&r, gitdir, GIT_REPOSITORY_OPEN_NO_SEARCH,
		    NULL) < 0 || git_reference_name_to_id(tip, r,
					 MIRROR_REF) < 0) {
		git_repository_free(r);
		return KHEO_ENOTFOUND;
	}
	git_repository_free(r);
	git_oid_tostr(want, sizeof(want), tip);
	kheo_hex(node, db->pk, KHEO_KEY_SIZE);
	if (sqlite3_open_v2(keep, &q, SQLITE_OPEN_READONLY, NULL) ==
		    SQLITE_OK &&
	    sqlite3_prepare_v2(q, "SELECT k, v FROM audit_meta", -1, &st,
		    NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW) {
			const char *k = (const char *)sqlite3_column_text(st, 0);
			const char *v = (const char *)sqlite3_column_text(st, 1);

			if (!k || !v)
				continue;
			if (strcmp(k, "head") == 0)
				snprintf(head, sizeof(head), "%s", v);
			else if (strcmp(k, "node") == 0)
				snprintf(who, sizeof(who), "%s", v);
			else if (strcmp(k, "seq") == 0)
				seq = sqlite3_column_int64(st, 1);
			else if (strcmp(k, "applied") == 0)
				applied = sqlite3_column_int64(st, 1);
		}
	}
	sqlite3_finalize(st);
	sqlite3_close(q);
	if (strcmp(head, want) != 0 || strcmp(who, node) != 0 || seq < 1)
		return KHEO_ENOTFOUND;
	if (rename(keep, m->scratch_file) != 0)
		return merr(m, KHEO_EIO, "%s: %s", keep, strerror(errno));
	/* the mirror as it is now: its head's facts and tree */
	if ((rc = git_repository_open_ext(&m->repo, gitdir,
		     GIT_REPOSITORY_OPEN_NO_SEARCH, NULL)) < 0)
		return gerr(m, rc, gitdir);
	if ((err = mirror_odb(m)) < 0)
		return err;
	if ((rc = git_commit_lookup(&c, m->repo, tip)) < 0 ||
	    (rc = git_commit_tree(&t, c)) < 0) {
		git_commit_free(c);
		return gerr(m, rc, "head");
	}
	memset(&root, 0, sizeof(root));
	root.name = "";
	git_oid_cpy(&root.oid, git_tree_id(t));
	err = read_facts(m, t, &m->ident, 1);
	git_tree_free(t);
	git_commit_free(c);
	if (err < 0 || (err = tent_open(m, &root)) < 0) {
		tdir_free(root.sub);
		return err;
	}
	tdir_free(m->tree);
	m->tree = root.sub;
	m->seq = (size_t)seq;
	m->last_applied = applied;
	return mirror_scratch(m);
}

/* Keep the rebuild for the next export (see above).  Failing to is no
 * error: that export verifies the whole history instead. */
static void rebuild_keep(mirror *m, const char *keep, const git_oid *tip)
{
	char hex[GIT_OID_HEXSZ + 1], node[2 * KHEO_KEY_SIZE + 1];
	sqlite3_stmt *st = NULL;
	kheo_db *s = m->scratch;
	int ok;

	git_oid_tostr(hex, sizeof(hex), tip);
	kheo_hex(node, m->ident.pk, KHEO_KEY_SIZE);
	ok = sqlite3_prepare_v2(s->sql, "INSERT OR REPLACE INTO audit_meta(k,"
		" v) VALUES('head', ?1), ('node', ?2), ('seq', ?3),"
		" ('applied', ?4)", -1, &st, NULL) == SQLITE_OK;
	if (ok) {
		sqlite3_bind_text(st, 1, hex, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, node, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (int64_t)m->seq);
		sqlite3_bind_int64(st, 4, m->last_applied);
		ok = sqlite3_step(st) == SQLITE_DONE;
	}
	sqlite3_finalize(st);
	ok = ok && kheo__commit_tx(s) == KHEO_OK;
	mprep_clear(m);
	kheo_db_close(s);
	m->scratch = NULL;
	if (ok && rename(m->scratch_file, keep) == 0)
		m->scratch_file[0] = '\0';
}

KHEO_EXTERN int kheo_audit_export(kheo_db *db, const char *gitdir,
	kheo_audit_stats *st)
{
	mirror mm, *m = &mm;
	sqlite3_stmt *q = NULL, *known = NULL;
	git_oid tip;
	int have_tip = 0, resumed = 0, rc, err;
	size_t since_pack = 0;
	git_signature *me = NULL;
	char keep[4096];

	kheo__clear(db);
	/* every commit is signed with the node's key (audit_sign.c) */
	if (!db->sk)
		return kheo__error(db, KHEO_EINVAL, "audit export signs the "
			"mirror with this node's key, and it has none here "
			"(a replayed or read-only data directory)");
	if ((err = mirror_init(m, db, NULL)) < 0 ||
	    (err = rebuild_paths(m, gitdir, keep, sizeof(keep))) < 0)
		goto done;
	/* what an interrupted export left */
	unlink(m->scratch_file);
	m->trees = 1;
	if (!fresh_dir(gitdir) &&
	    (err = mirror_resume(m, db, gitdir, keep, &tip)) != KHEO_ENOTFOUND) {
		if (err < 0)
			goto done;
		have_tip = resumed = 1;
	} else if (fresh_dir(gitdir)) {
		git_repository_init_options io;

		git_repository_init_options_init(&io,
			GIT_REPOSITORY_INIT_OPTIONS_VERSION);
		io.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH;
		io.initial_head = "main";
		io.description = "kheo audit mirror";
		if ((rc = git_repository_init_ext(&m->repo, gitdir, &io)) < 0) {
			err = gerr(m, rc, gitdir);
			goto done;
		}
		if ((err = mirror_odb(m)) < 0)
			goto done;
	} else {
		err = mirror_open_existing(m, gitdir, MIRROR_REF);
		if (err == KHEO_ENOTFOUND && m->repo) {
			/* a repository with no mirror commits yet */
			kheo__clear(db);
			err = m->odb ? KHEO_OK : mirror_odb(m);
		} else if (err == KHEO_OK) {
			have_tip = 1;
			tip = m->commits[m->ncommits - 1];
		}
		if (err < 0)
			goto done;
	}
	if (resumed) {
		if ((err = pack_start(m)) < 0)
			goto done;
	} else if (have_tip) {
		if (memcmp(m->ident.pk, db->pk, KHEO_KEY_SIZE) != 0) {
			char a[2 * KHEO_KEY_SIZE + 1], b[2 * KHEO_KEY_SIZE + 1];

			kheo_hex(a, m->ident.pk, KHEO_KEY_SIZE);
			kheo_hex(b, db->pk, KHEO_KEY_SIZE);
			err = merr(m, KHEO_EINVAL, "%s mirrors node %.16s..., "
				"not this node (%.16s...): give each node its "
				"own mirror", gitdir, a, b);
			goto done;
		}
		/* verify and rebuild what is there */
		err = check_history(m, 1);
		if (err == KHEO_OK && (err = final_findings(m)) < 0)
			serr(m, err);
		if (err == KHEO_OK && m->st.errors)
			err = KHEO_ECORRUPT;
		if (err < 0) {
			char first[512];

			snprintf(first, sizeof(first), "%s", db->errmsg);
			err = merr(m, err, "%s does not verify, nothing "
				"appended: %s", gitdir, first);
			goto done;
		}
		m->st.errors = m->st.warnings = 0;
		if ((err = pack_start(m)) < 0)
			goto done;
	} else {
		if ((err = pack_start(m)) < 0)
			goto done;
		memcpy(m->ident.pk, db->pk, KHEO_KEY_SIZE);
		m->ident.role = db->role;
		snprintf(m->ident.unit, sizeof(m->ident.unit), "%s", db->unit);
		m->ident.has_root = db->enforcing;
		memcpy(m->ident.root, db->root, KHEO_KEY_SIZE);
		m->schema_len = db->schema->json_len;
		if (!(m->schema = kheo__malloc(m->schema_len + 1))) {
			err = KHEO_ENOMEM;
			goto done;
		}
		memcpy(m->schema, db->schema->json, m->schema_len);
		m->schema[m->schema_len] = '\0';
		if ((err = mirror_scratch(m)) < 0 || (err = seed_facts(m)) < 0)
			goto done;
	}
	/* the node enrolled since the last export: the root joins the
	 * mirror's facts, and the rebuild learns it, before what follows */
	if (db->enforcing && !m->ident.has_root) {
		m->ident.has_root = 1;
		memcpy(m->ident.root, db->root, KHEO_KEY_SIZE);
		if ((err = kheo__authz_set_root(m->scratch, db->root)) < 0) {
			serr(m, err);
			goto done;
		}
		if ((err = seed_facts(m)) < 0)
			goto done;
	}
	/* what this node applied, in the order it applied it; a `_sys`
	 * changeset before others applied in the same ms (it may have
	 * released them), then chain order */
	rc = sqlite3_prepare_v2(db->sql, "SELECT frame, applied FROM kheo_cs"
		" WHERE state = 0 ORDER BY applied, unit != '_sys', author,"
		" unit, useq, n", -1, &q, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(m->scratch->sql, "SELECT 1 FROM"
			" kheo_cs WHERE id = ?1 UNION ALL SELECT 1 FROM"
			" kheo_quarantine WHERE id = ?1", -1, &known, NULL);
	if (rc != SQLITE_OK) {
		err = kheo__sqlerr(db, rc, "export");
		goto done;
	}
	while (err == KHEO_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		const uint8_t *frame = sqlite3_column_blob(q, 0);
		size_t len = (size_t)sqlite3_column_bytes(q, 0);
		int64_t applied = sqlite3_column_int64(q, 1);
		uint8_t sig[KHEO_SIG_SIZE], id[KHEO_ID_SIZE];
		git_oid commit;
		git_tree *tree = NULL;
		git_commit *pc = NULL;
		step_out o;

		if (kheo_frame_read(db->codec, &db->raw, sig, frame, len,
			    NULL) < 0) {
			err = kheo__error(db, KHEO_ECORRUPT, "a stored "
				"changeset does not read: run kheo verify");
			break;
		}
		kheo_changeset_id(id, db->raw.p, db->raw.len);
		sqlite3_reset(known);
		sqlite3_bind_blob(known, 1, id, KHEO_ID_SIZE, SQLITE_STATIC);
		if (sqlite3_step(known) == SQLITE_ROW)
			continue; /* mirrored already */
		/* a wall clock that stepped back: the mirror's received
		 * times never go backwards */
		if (applied < m->last_applied)
			applied = m->last_applied;
		memset(&o, 0, sizeof(o));
		err = mirror_step(m, frame, len, applied, m->seq + 1, &o);
		if (err == KHEO_EPROTO)
			err = kheo__error(db, KHEO_ECORRUPT, "a stored "
				"changeset does not verify (%s): run kheo "
				"verify", o.why);
		/* held at its turn is possible (what released it on the
		 * node comes later in this order); verify says so if it
		 * stays held.  Rejected means the rebuild disagrees. */
		if (err == KHEO_OK && o.verdict >= 2)
			err = kheo__error(db, KHEO_ECORRUPT, "changeset %s: "
				"this node applied it, but its rebuild rejects "
				"it (%s); run kheo verify", o.path, o.why);
		if (err == KHEO_OK) {
			git_signature_free(me);
			me = NULL;
			if (person(&me, node_role_name(db->role), db->pk,
				    db->unit, applied) < 0)
				err = gerr(m, -1, "committer");
		}
		if (err == KHEO_OK) {
			kheo_buf_put(&o.msg, "", 1);
			if ((rc = git_tree_lookup(&tree, m->repo, &o.tree)) < 0 ||
			    (have_tip && (rc = git_commit_lookup(&pc, m->repo,
						  &tip)) < 0) ||
			    (rc = kheo__commit_signed(&commit, m->repo,
				     o.author, me, (const char *)o.msg.p, tree,
				     pc, db->pk, db->sk)) < 0)
				err = gerr(m, rc, "commit");
		}
		git_tree_free(tree);
		git_commit_free(pc);
		step_clear(&o);
		if (err < 0)
			break;
		/* a commit: about a kilobyte of message and idents */
		if ((err = pack_note(m, &commit, NULL, 1024)) < 0)
			break;
		tip = commit;
		have_tip = 1;
		m->seq++;
		m->last_applied = applied;
		m->st.commits++;
		if (++since_pack >= PACK_EVERY || m->pack_bytes >= PACK_BYTES) {
			if ((err = mirror_flush_pack(m)) < 0)
				break;
			since_pack = 0;
		}
	}
	if (err == KHEO_OK && rc != SQLITE_DONE)
		err = kheo__sqlerr(db, rc, "export");
	if (err == KHEO_OK && since_pack)
		err = mirror_flush_pack(m);
	if (err == KHEO_OK && m->st.commits) {
		git_reference *ref = NULL;

		if ((rc = git_reference_create(&ref, m->repo, MIRROR_REF, &tip,
			     1, "kheo audit export")) < 0)
			err = gerr(m, rc, MIRROR_REF);
		git_reference_free(ref);
		if (err == KHEO_OK && (rc = git_repository_set_head(m->repo,
					       MIRROR_REF)) < 0)
			err = gerr(m, rc, "HEAD");
	}
	/* the rebuild is closed there: nothing may be left prepared on it */
	sqlite3_finalize(known);
	known = NULL;
	if (err == KHEO_OK && have_tip)
		rebuild_keep(m, keep, &tip);
	if (have_tip)
		git_oid_tostr(m->st.tip, sizeof(m->st.tip), &tip);
	if (st)
		*st = m->st;
done:
	git_signature_free(me);
	sqlite3_finalize(q);
	sqlite3_finalize(known);
	mirror_free(m);
	return err;
}

/* For audit_blobs.c, which checks a blob store against the mirror: the
 * state kheo_audit_verify rebuilt (the mirror's head; NULL before it
 * ran), and an error finding handed on as this file's are. */
kheo_db *kheo__audit_state(kheo_audit *a)
{
	return a->m.used ? a->m.scratch : NULL;
}

void kheo__audit_error(kheo_audit *a, const char *kind, const char *path,
	const char *msg)
{
	finding(&a->m, KHEO_AUDIT_ERROR, kind, 0, NULL, path, "%s", msg);
}

#else /* KHEO_NO_AUDIT: a build without libgit2 */

struct kheo_audit {
	int unused;
};

KHEO_EXTERN int kheo_audit_export(kheo_db *db, const char *gitdir,
	kheo_audit_stats *st)
{
	(void)gitdir;
	(void)st;
	return kheo__error(db, KHEO_EUNSUPPORTED, "this libkheo was built "
		"without the audit mirror (AUDIT=0)");
}

KHEO_EXTERN int kheo_audit_open(kheo_audit **out, const char *gitdir,
	const kheo_audit_options *opts)
{
	(void)gitdir;
	(void)opts;
	*out = NULL;
	return KHEO_EUNSUPPORTED;
}

KHEO_EXTERN void kheo_audit_free(kheo_audit *a)
{
	(void)a;
}

KHEO_EXTERN const char *kheo_audit_errmsg(const kheo_audit *a)
{
	(void)a;
	return "this libkheo was built without the audit mirror (AUDIT=0)";
}

KHEO_EXTERN int kheo_audit_verify(kheo_audit *a, kheo_audit_stats *st)
{
	(void)a;
	(void)st;
	return KHEO_EUNSUPPORTED;
}

KHEO_EXTERN int kheo_audit_replay(kheo_audit *a, kheo_replay_mode mode,
	int64_t until_ms, const char *outdir, char **json_out,
	kheo_audit_stats *st)
{
	(void)a;
	(void)mode;
	(void)until_ms;
	(void)outdir;
	(void)st;
	if (json_out)
		*json_out = NULL;
	return KHEO_EUNSUPPORTED;
}

#endif
