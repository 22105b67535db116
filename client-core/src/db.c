/*
 * db.c - a node's data directory: creating and opening it, the SQLite
 * store's tables, the node key file, errors and cached statements.
 *
 * The store (one SQLite database, WAL, synchronous=FULL so that an edit is
 * durable when its call returns) holds:
 *   kheo_meta        node facts: key, role, unit, install id, schema, clock
 *   kheo_cs          every changeset held (own and received), applied or
 *                    held, with its frame as received
 *   kheo_quarantine  rejected input, with the reason, never dropped
 *   kheo_flag        keys flagged (equivocation)
 *   kheo_record      each record's table and unit, fixed by its put
 *   kheo_op, kheo_pred, kheo_seen   the merge's input: op values, and the
 *                    op ids superseded (or seen by a delete)
 *   kheo_pending     local edits not yet sealed into a changeset
 *   kheo_peer_head   what this node knows other nodes hold
 * and one plain table per schema table (the materialised state).
 *
 * The secret key is not in the database: it lives in node.key (0600) with
 * the install id, so that a database restored from a backup, or copied to
 * another machine, cannot sign and fork its author's chains (keyfile.c).
 */
#include "internal.h"
#include "alloc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DB_FORMAT 2
#define KEY_FILE KHEO_KEY_FILE
#define DB_FILE "kheo.db"

static const char *const stmt_sql[ST_COUNT] = {
	[ST_META_GET] = "SELECT v FROM kheo_meta WHERE k = ?1",
	[ST_META_SET] = "INSERT OR REPLACE INTO kheo_meta(k, v) VALUES(?1, ?2)",
	[ST_CS_BY_ID] = "SELECT n, state FROM kheo_cs WHERE id = ?1",
	[ST_CS_INSERT] =
		"INSERT INTO kheo_cs(id, author, unit, useq, prev, clock_min,"
		" clock_max, nops, state, why, received, applied, frame, local,"
		" role) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
		" ?13, ?14, ?15)",
	[ST_CS_CHAIN] =
		"SELECT n, state, clock_max FROM kheo_cs WHERE author = ?1 AND"
		" unit = ?2 AND useq = ?3 AND id = ?4",
	[ST_CS_SAME_USEQ] =
		"SELECT id FROM kheo_cs WHERE author = ?1 AND unit = ?2 AND"
		" useq = ?3 AND id != ?4 LIMIT 1",
	[ST_CS_SET_APPLIED] =
		"UPDATE kheo_cs SET state = 0, why = NULL, applied = ?2,"
		" role = ?3 WHERE n = ?1",
	[ST_CS_HELD_NEXT] =
		"SELECT n, frame FROM kheo_cs WHERE state = 1 AND author = ?1"
		" AND unit = ?2 AND useq = ?3 AND prev = ?4",
	/* the head of this copy's own branch: a cloned device that has
	 * received its twin's changesets still continues its own chain */
	[ST_CS_MAX_USEQ] =
		"SELECT useq, id FROM kheo_cs WHERE author = ?1 AND unit = ?2"
		" AND local = 1 ORDER BY useq DESC, id LIMIT 1",
	[ST_QUARANTINE_INSERT] =
		"INSERT INTO kheo_quarantine(id, author, unit, useq, reason,"
		" detail, received, frame) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[ST_QUARANTINE_BY_ID] =
		"SELECT 1 FROM kheo_quarantine WHERE id = ?1 AND frame = ?2",
	[ST_FLAG_INSERT] =
		"INSERT OR IGNORE INTO kheo_flag(author, kind, detail, at)"
		" VALUES(?1, ?2, ?3, ?4)",
	[ST_RECORD_GET] =
		"SELECT tbl, unit, clock, author, pending FROM kheo_record"
		" WHERE rid = ?1",
	[ST_RECORD_PUT] =
		"INSERT OR REPLACE INTO kheo_record(rid, tbl, unit, clock,"
		" author, pending) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_OP_INSERT] =
		"INSERT OR IGNORE INTO kheo_op(rid, field, clock, author, cs,"
		" tbl, kind, unit, vtype, value) VALUES(?1, ?2, ?3, ?4, ?5, ?6,"
		" ?7, ?8, ?9, ?10)",
	[ST_PRED_INSERT] =
		"INSERT OR IGNORE INTO kheo_pred(rid, field, clock, author,"
		" cs, by_clock) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_SEEN_INSERT] =
		"INSERT OR IGNORE INTO kheo_seen(rid, clock, author, cs)"
		" VALUES(?1, ?2, ?3, ?4)",
#define LIVE_OPS(extra) \
	"SELECT field, kind, vtype, value, clock, author, unit" \
	" FROM kheo_op o WHERE rid = ?1" extra " AND NOT EXISTS (SELECT 1" \
	" FROM kheo_pred p WHERE p.rid = o.rid AND p.field = o.field AND" \
	" p.clock = o.clock AND p.author = o.author)" \
	" ORDER BY field, clock, author, cs"
	[ST_LIVE_OPS] = LIVE_OPS(""),
	[ST_LIVE_OPS_FIELD] = LIVE_OPS(" AND field = ?2"),
#undef LIVE_OPS
	/* The same where a record has lock intervals (temp.kheo_lock, from
	 * merge.c): a collector's op inside one is `locked` (never wins),
	 * and its pred rows supersede nothing.  ?3: this node's own role,
	 * for pending edits (cs 0, no kheo_cs row). */
#define LOCKED(role, clock) \
	"(coalesce(" role ", ?3) = 1 AND EXISTS (SELECT 1 FROM temp.kheo_lock" \
	" l WHERE " clock " >= l.lo AND " clock " < l.hi))"
#define LIVE_OPS_LOCKED(extra) \
	"SELECT o.field, o.kind, o.vtype, o.value, o.clock, o.author," \
	" o.unit, " LOCKED("c.role", "o.clock") " FROM kheo_op o LEFT JOIN" \
	" kheo_cs c ON c.n = o.cs WHERE o.rid = ?1" extra " AND NOT EXISTS" \
	" (SELECT 1 FROM kheo_pred p LEFT JOIN kheo_cs pc ON pc.n = p.cs" \
	" WHERE p.rid = o.rid AND p.field = o.field AND p.clock = o.clock" \
	" AND p.author = o.author AND NOT " LOCKED("pc.role", "p.by_clock") \
	") ORDER BY o.field, o.clock, o.author, o.cs"
	[ST_LIVE_OPS_LOCKED] = LIVE_OPS_LOCKED(""),
	[ST_LIVE_OPS_LOCKED_FIELD] = LIVE_OPS_LOCKED(" AND o.field = ?2"),
#undef LIVE_OPS_LOCKED
#undef LOCKED
	/* authz.c: asked for every changeset received while enforcing */
	[ST_AUTHZ_REVOKED] =
		"SELECT min(last_useq) FROM kheo_revoked WHERE key = ?1 AND"
		" unit IN (?2, '*') GROUP BY unit ORDER BY unit = '*' LIMIT 1",
	[ST_AUTHZ_CERTS] =
		"SELECT role, scope, not_after, status, why FROM kheo_cert"
		" WHERE subject = ?1 ORDER BY digest",
	[ST_AUTHZ_SUCCESSOR] =
		"SELECT successor FROM sys_unit WHERE slug = ?1 AND"
		" _deleted = 0 AND successor IS NOT NULL AND successor != ''"
		" ORDER BY id LIMIT 1",
	[ST_WORKFLOW_OPS] =
		"SELECT o.clock, o.vtype, o.value, coalesce(c.role, ?3)"
		" FROM kheo_op o LEFT JOIN kheo_cs c ON c.n = o.cs"
		" WHERE o.rid = ?1 AND o.field = ?2 ORDER BY o.clock, o.author",
	[ST_DIRTY_ADD] =
		"INSERT OR IGNORE INTO temp.kheo_dirty(rid) VALUES(?1)",
	[ST_PENDING_INSERT] =
		"INSERT INTO kheo_pending(unit, op) VALUES(?1, ?2)",
	[ST_SAVEPOINT] = "SAVEPOINT kheo_call",
	[ST_RELEASE] = "RELEASE kheo_call",
	[ST_ROLLBACK_TO] = "ROLLBACK TO kheo_call",
	[ST_DIRTY_LIST] = "SELECT rid FROM temp.kheo_dirty",
	[ST_DIRTY_CLEAR] = "DELETE FROM temp.kheo_dirty",
	/* only on the audit mirror's rebuild, which makes kheo_touched */
	[ST_TOUCHED_ADD] = "INSERT OR IGNORE INTO temp.kheo_touched"
		" SELECT rid FROM temp.kheo_dirty",
#define LIVE_IDS(extra) \
	"SELECT DISTINCT clock, author FROM kheo_op o WHERE rid = ?1" extra \
	" AND NOT EXISTS (SELECT 1 FROM kheo_pred p WHERE p.rid = o.rid AND" \
	" p.field = o.field AND p.clock = o.clock AND p.author = o.author)" \
	" ORDER BY clock, author"
	[ST_LIVE_IDS_ALL] = LIVE_IDS(""),
	[ST_LIVE_IDS_FIELD] = LIVE_IDS(" AND field = ?2"),
	[ST_LIVE_IDS_MEMBER] = LIVE_IDS(" AND field = ?2 AND kind = 3 AND"
		" vtype = ?3 AND value = ?4"),
#undef LIVE_IDS
	[ST_UNSEEN] =
		"SELECT count(*) FROM kheo_op o WHERE rid = ?1 AND"
		" field != '_deleted' AND NOT EXISTS (SELECT 1 FROM kheo_pred p"
		" WHERE p.rid = o.rid AND p.field = o.field AND p.clock ="
		" o.clock AND p.author = o.author) AND NOT EXISTS (SELECT 1"
		" FROM kheo_seen s WHERE s.rid = o.rid AND s.clock = o.clock"
		" AND s.author = o.author)",
};

static const char store_sql[] =
	"CREATE TABLE kheo_meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID;"
	"CREATE TABLE kheo_cs("
	" n INTEGER PRIMARY KEY,"
	" id BLOB NOT NULL UNIQUE,"
	" author BLOB NOT NULL,"
	" unit TEXT NOT NULL,"
	" useq INTEGER NOT NULL,"
	" prev BLOB,"
	" clock_min INTEGER NOT NULL,"
	" clock_max INTEGER NOT NULL,"
	" nops INTEGER NOT NULL,"
	" state INTEGER NOT NULL,"      /* 0 applied, 1 held */
	" why TEXT,"                     /* held: what it waits for */
	" received INTEGER NOT NULL,"    /* wall ms */
	" applied INTEGER,"              /* wall ms */
	" local INTEGER NOT NULL,"       /* 1: sealed by this copy of the node */
	" role INTEGER NOT NULL DEFAULT 0," /* kheo_role it was applied under */
	" frame BLOB NOT NULL);"
	"CREATE INDEX kheo_cs_chain ON kheo_cs(author, unit, useq);"
	"CREATE INDEX kheo_cs_held ON kheo_cs(state) WHERE state = 1;"
	"CREATE TABLE kheo_quarantine("
	" n INTEGER PRIMARY KEY,"
	" id BLOB, author BLOB, unit TEXT, useq INTEGER,"
	" reason TEXT NOT NULL, detail TEXT NOT NULL,"
	" received INTEGER NOT NULL, frame BLOB NOT NULL);"
	"CREATE INDEX kheo_quarantine_id ON kheo_quarantine(id);"
	"CREATE TABLE kheo_flag(author BLOB NOT NULL, kind TEXT NOT NULL,"
	" detail TEXT, at INTEGER, PRIMARY KEY(author, kind)) WITHOUT ROWID;"
	"CREATE TABLE kheo_record(rid BLOB PRIMARY KEY, tbl TEXT NOT NULL,"
	" unit TEXT NOT NULL, clock INTEGER NOT NULL, author BLOB NOT NULL,"
	" pending INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX kheo_record_unit ON kheo_record(unit);"
	"CREATE TABLE kheo_op(rid BLOB NOT NULL, field TEXT NOT NULL,"
	" clock INTEGER NOT NULL, author BLOB NOT NULL, cs INTEGER NOT NULL,"
	" tbl TEXT NOT NULL, kind INTEGER NOT NULL, unit TEXT NOT NULL,"
	" vtype INTEGER NOT NULL, value,"
	" PRIMARY KEY(rid, field, clock, author, cs)) WITHOUT ROWID;"
	/* pred rows name the op id superseded and, by (cs, by_clock), the
	 * op that did it: a revoked changeset's rows can be taken out, and
	 * a locked op's do not count (merge.c).  cs 0: a pending edit. */
	"CREATE TABLE kheo_pred(rid BLOB NOT NULL, field TEXT NOT NULL,"
	" clock INTEGER NOT NULL, author BLOB NOT NULL, cs INTEGER NOT NULL,"
	" by_clock INTEGER NOT NULL,"
	" PRIMARY KEY(rid, field, clock, author, cs, by_clock)) WITHOUT ROWID;"
	"CREATE TABLE kheo_seen(rid BLOB NOT NULL, clock INTEGER NOT NULL,"
	" author BLOB NOT NULL, cs INTEGER NOT NULL,"
	" PRIMARY KEY(rid, clock, author, cs)) WITHOUT ROWID;"
	/* authorisation facts derived from applied `_sys` changesets
	 * (authz.c): every certificate seen, with whether it holds */
	"CREATE TABLE kheo_cert(digest BLOB PRIMARY KEY, subject BLOB NOT NULL,"
	" issuer BLOB NOT NULL, role INTEGER NOT NULL, scope TEXT NOT NULL,"
	" not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,"
	" status INTEGER NOT NULL, why TEXT, body BLOB NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX kheo_cert_subject ON kheo_cert(subject);"
	/* every peer this node synced with: what a hub shows of its devices */
	"CREATE TABLE kheo_peer(key BLOB PRIMARY KEY, node_role INTEGER,"
	" cert_role INTEGER, scope TEXT, last_contact INTEGER NOT NULL,"
	" clock_offset INTEGER, last_ok INTEGER, last_error TEXT,"
	" sent INTEGER NOT NULL DEFAULT 0, received INTEGER NOT NULL DEFAULT 0)"
	" WITHOUT ROWID;"
	/* the last useq accepted per (author, unit); unit '*': any other */
	"CREATE TABLE kheo_revoked(key BLOB NOT NULL, unit TEXT NOT NULL,"
	" last_useq INTEGER NOT NULL, PRIMARY KEY(key, unit)) WITHOUT ROWID;"
	"CREATE TABLE kheo_pending(n INTEGER PRIMARY KEY, unit TEXT NOT NULL,"
	" op BLOB NOT NULL);"
	"CREATE TABLE kheo_peer_head(peer BLOB NOT NULL, author BLOB NOT NULL,"
	" unit TEXT NOT NULL, useq INTEGER NOT NULL, id BLOB NOT NULL,"
	" PRIMARY KEY(peer, author, unit)) WITHOUT ROWID;";

/* ---------------------------------------------------------------- errors */

int kheo__error(kheo_db *db, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(db->errmsg, sizeof(db->errmsg), fmt, ap);
	va_end(ap);
	return code;
}

int kheo__sqlerr(kheo_db *db, int rc, const char *what)
{
	int code;

	switch (rc & 0xff) {
	case SQLITE_NOMEM:
		code = KHEO_ENOMEM;
		break;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		code = KHEO_ECORRUPT;
		break;
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_CANTOPEN:
	case SQLITE_READONLY:
	case SQLITE_PERM:
		code = KHEO_EIO;
		break;
	case SQLITE_CONSTRAINT:
		code = KHEO_EEXISTS;
		break;
	default:
		code = KHEO_ERROR;
	}
	return kheo__error(db, code, "%s: %s", what,
		db->sql ? sqlite3_errmsg(db->sql) : sqlite3_errstr(rc));
}

void kheo__clear(kheo_db *db)
{
	db->errmsg[0] = '\0';
}

KHEO_EXTERN const char *kheo_errmsg(const kheo_db *db)
{
	return db ? db->errmsg : "out of memory";
}

KHEO_EXTERN void kheo_free(void *p)
{
	kheo__free(p);
}

int64_t kheo__now_ms(const kheo_db *db)
{
	struct timespec ts;

	if (db->opts.now_ms)
		return db->opts.now_ms(db->opts.now_payload);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kheo__log(kheo_db *db, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!db->opts.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	db->opts.log(level, msg, db->opts.log_payload);
}

/* ------------------------------------------------------------ statements */

sqlite3_stmt *kheo__stmt(kheo_db *db, kheo_stmt_id id)
{
	sqlite3_stmt *st = db->stmt[id];

	if (!st) {
		int rc = sqlite3_prepare_v3(db->sql, stmt_sql[id], -1,
			SQLITE_PREPARE_PERSISTENT, &db->stmt[id], NULL);

		if (rc != SQLITE_OK) {
			kheo__sqlerr(db, rc, "prepare");
			return NULL;
		}
		return db->stmt[id];
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

int kheo__exec(kheo_db *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db->sql, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		int code = kheo__sqlerr(db, rc, "sql");

		if (msg)
			kheo__error(db, code, "sql: %s", msg);
		sqlite3_free(msg);
		return code;
	}
	return KHEO_OK;
}

int kheo__step_done(kheo_db *db, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return kheo__sqlerr(db, rc, what);
	sqlite3_reset(st);
	return KHEO_OK;
}

/*
 * Transactions.  A public call opens one and commits it before returning
 * (durable: synchronous=FULL).  Inside a batch (import, which opens the
 * outer transaction itself) the same calls nest as savepoints, so that a
 * refused line undoes only itself and a batch costs one fsync.
 */
int kheo__begin(kheo_db *db)
{
	int err;

	if (db->in_tx) {
		sqlite3_stmt *st = kheo__stmt(db, ST_SAVEPOINT);

		if (!st || (err = kheo__step_done(db, st, "savepoint")) < 0)
			return st ? err : KHEO_ERROR;
		db->savepoints++;
		return KHEO_OK;
	}
	if ((err = kheo__exec(db, "BEGIN IMMEDIATE")) < 0)
		return err;
	db->in_tx = 1;
	/* Another process may have edited this node since we last looked
	 * (the CLI beside a daemon): holding the write lock, catch up with
	 * the clock it saved, so that no two ops get one clock. */
	{
		int64_t v;

		if (kheo__meta_get_int(db, "clock", &v) == KHEO_OK &&
		    (uint64_t)v > db->clock)
			db->clock = (uint64_t)v;
		kheo__clear(db);
	}
	return KHEO_OK;
}

int kheo__commit_tx(kheo_db *db)
{
	int err;

	if (db->savepoints) {
		sqlite3_stmt *st = kheo__stmt(db, ST_RELEASE);

		db->savepoints--;
		return st ? kheo__step_done(db, st, "release") : KHEO_ERROR;
	}
	/* the materialised tables catch up once per transaction, however
	 * many edits or changesets it holds */
	if ((err = kheo__flush_dirty(db)) < 0 ||
	    (err = kheo__clock_save(db)) < 0)
		return err;
	if ((err = kheo__exec(db, "COMMIT")) < 0)
		return err;
	db->in_tx = 0;
	return KHEO_OK;
}

void kheo__rollback(kheo_db *db)
{
	if (db->savepoints) {
		sqlite3_stmt *st;

		db->savepoints--;
		if ((st = kheo__stmt(db, ST_ROLLBACK_TO)))
			sqlite3_step(st);
		if ((st = kheo__stmt(db, ST_RELEASE)))
			sqlite3_step(st);
		return;
	}
	if (db->in_tx) {
		sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
		db->in_tx = 0;
	}
}

/* ------------------------------------------------------------------ meta */

/* Step the meta lookup of k: a statement on its row, or an error. */
static int meta_row(kheo_db *db, const char *k, sqlite3_stmt **out)
{
	sqlite3_stmt *st = kheo__stmt(db, ST_META_GET);
	int rc;

	*out = NULL;
	if (!st)
		return KHEO_ERROR;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = st;
		return KHEO_OK;
	}
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return kheo__error(db, KHEO_ENOTFOUND, "no %s in kheo_meta", k);
	return kheo__sqlerr(db, rc, "meta");
}

int kheo__meta_get_text(kheo_db *db, const char *k, char *out, size_t n)
{
	sqlite3_stmt *st;
	int err;

	if ((err = meta_row(db, k, &st)) < 0)
		return err;
	snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	return KHEO_OK;
}

int kheo__meta_get_int(kheo_db *db, const char *k, int64_t *out)
{
	sqlite3_stmt *st;
	int err;

	if ((err = meta_row(db, k, &st)) < 0)
		return err;
	*out = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return KHEO_OK;
}

int kheo__meta_set_text(kheo_db *db, const char *k, const char *v)
{
	sqlite3_stmt *st = kheo__stmt(db, ST_META_SET);

	if (!st)
		return KHEO_ERROR;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
	return kheo__step_done(db, st, "meta");
}

int kheo__meta_set_int(kheo_db *db, const char *k, int64_t v)
{
	sqlite3_stmt *st = kheo__stmt(db, ST_META_SET);

	if (!st)
		return KHEO_ERROR;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, v);
	return kheo__step_done(db, st, "meta");
}

/* ----------------------------------------------------------- state tables */

static const char *column_type(const kheo_sfield *f)
{
	if (f->is_set)
		return "TEXT"; /* a JSON array of members */
	switch (f->type) {
	case KHEO_F_INT:
	case KHEO_F_BOOL:
		return "INTEGER";
	case KHEO_F_REAL:
		return "REAL";
	default:
		return "TEXT";
	}
}

/* Names the materialised tables reserve for themselves. */
static int reserved_column(const char *name)
{
	return strcmp(name, "id") == 0 || strcmp(name, "_unit") == 0 ||
	       strcmp(name, "_deleted") == 0 ||
	       strcmp(name, "_conflicts") == 0;
}

int kheo__store_create(kheo_db *db)
{
	kheo_buf sql = { 0 };
	size_t i, j;
	int err;

	if ((err = kheo__exec(db, store_sql)) < 0)
		return err;
	for (i = 0; i < db->schema->ntables; i++) {
		const kheo_stable *t = &db->schema->tables[i];
		char line[256];

		if (strncmp(t->name, "kheo_", 5) == 0 ||
		    strncmp(t->name, "sqlite_", 7) == 0)
			return kheo__error(db, KHEO_EINVAL,
				"schema table %s: the prefixes kheo_ and "
				"sqlite_ are reserved", t->name);
		kheo_buf_reset(&sql);
		snprintf(line, sizeof(line),
			"CREATE TABLE \"%s\"(id TEXT PRIMARY KEY, _unit TEXT "
			"NOT NULL, _deleted INTEGER NOT NULL DEFAULT 0, "
			"_conflicts INTEGER NOT NULL DEFAULT 0", t->name);
		kheo_buf_put(&sql, line, strlen(line));
		for (j = 0; j < t->nfields; j++) {
			if (reserved_column(t->fields[j].name)) {
				kheo_buf_free(&sql);
				return kheo__error(db, KHEO_EINVAL,
					"schema field %s.%s: the name is "
					"reserved", t->name, t->fields[j].name);
			}
			snprintf(line, sizeof(line), ", \"%s\" %s",
				t->fields[j].name, column_type(&t->fields[j]));
			kheo_buf_put(&sql, line, strlen(line));
		}
		snprintf(line, sizeof(line),
			");CREATE INDEX \"%s_unit\" ON \"%s\"(_unit);",
			t->name, t->name);
		kheo_buf_put(&sql, line, strlen(line) + 1);
		if (sql.oom) {
			kheo_buf_free(&sql);
			return KHEO_ENOMEM;
		}
		if ((err = kheo__exec(db, (const char *)sql.p)) < 0)
			break;
	}
	kheo_buf_free(&sql);
	return err;
}

int kheo__prepare_upserts(kheo_db *db)
{
	kheo_buf sql = { 0 };
	size_t i, j;
	int rc;

	db->upsert = kheo__calloc(db->schema->ntables, sizeof(*db->upsert));
	if (!db->upsert)
		return KHEO_ENOMEM;
	for (i = 0; i < db->schema->ntables; i++) {
		const kheo_stable *t = &db->schema->tables[i];
		char part[128];

		kheo_buf_reset(&sql);
		snprintf(part, sizeof(part),
			"INSERT INTO \"%s\"(id, _unit, _deleted, "
			"_conflicts", t->name);
		kheo_buf_put(&sql, part, strlen(part));
		for (j = 0; j < t->nfields; j++) {
			snprintf(part, sizeof(part), ", \"%s\"",
				t->fields[j].name);
			kheo_buf_put(&sql, part, strlen(part));
		}
		kheo_buf_put(&sql, ") VALUES(?, ?, ?, ?", 19);
		for (j = 0; j < t->nfields; j++)
			kheo_buf_put(&sql, ", ?", 3);
		/* an upsert rewrites the row in place: cheaper than the
		 * delete and insert of INSERT OR REPLACE */
		kheo_buf_put(&sql, ") ON CONFLICT(id) DO UPDATE SET "
			"_unit = excluded._unit, _deleted = excluded._deleted, "
			"_conflicts = excluded._conflicts", 118);
		for (j = 0; j < t->nfields; j++) {
			snprintf(part, sizeof(part),
				", \"%s\" = excluded.\"%s\"",
				t->fields[j].name, t->fields[j].name);
			kheo_buf_put(&sql, part, strlen(part));
		}
		kheo_buf_put(&sql, "", 1);
		if (sql.oom) {
			kheo_buf_free(&sql);
			return KHEO_ENOMEM;
		}
		rc = sqlite3_prepare_v3(db->sql, (const char *)sql.p, -1,
			SQLITE_PREPARE_PERSISTENT, &db->upsert[i], NULL);
		if (rc != SQLITE_OK) {
			kheo_buf_free(&sql);
			return kheo__sqlerr(db, rc, "prepare upsert");
		}
	}
	kheo_buf_free(&sql);
	return KHEO_OK;
}

/* ------------------------------------------------------------------ paths */

static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = kheo__malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/* ------------------------------------------------------------ open/close */

static int handle_new(kheo_db **out, const char *dir,
	const kheo_open_options *opts)
{
	kheo_db *db;
	int err;

	*out = NULL;
	if (sodium_init() < 0)
		return KHEO_ERROR;
	if (!(db = kheo__calloc(1, sizeof(*db))))
		return KHEO_ENOMEM;
	*out = db;
	if (opts) {
		if (opts->version != KHEO_OPEN_OPTIONS_VERSION)
			return kheo__error(db, KHEO_EINVAL,
				"open options version %u unknown",
				opts->version);
		db->opts = *opts;
	} else {
		db->opts = (kheo_open_options)KHEO_OPEN_OPTIONS_INIT;
	}
	if ((err = kheo__passphrase_keep(db)) < 0)
		return err;
	if (!(db->dir = kheo__malloc(strlen(dir) + 1)))
		return KHEO_ENOMEM;
	strcpy(db->dir, dir);
	if (kheo_codec_new(&db->codec, 3) < 0)
		return KHEO_ENOMEM;
	return KHEO_OK;
}

static int sql_open(kheo_db *db, int create)
{
	char *path = path_join(db->dir, DB_FILE);
	int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
	int rc, err;

	if (!path)
		return KHEO_ENOMEM;
	rc = sqlite3_open_v2(path, &db->sql, flags | SQLITE_OPEN_NOMUTEX,
		NULL);
	if (rc != SQLITE_OK) {
		err = kheo__error(db, rc == SQLITE_CANTOPEN ? KHEO_ENOTFOUND
							     : KHEO_EIO,
			"%s: %s", path, sqlite3_errstr(rc));
		kheo__free(path);
		return err;
	}
	kheo__free(path);
	sqlite3_busy_timeout(db->sql, 10000);
	sqlite3_extended_result_codes(db->sql, 1);
	if ((err = kheo__report_register(db)) < 0)
		return err;
	/* WAL for concurrent readers; FULL so an edit survives power loss
	 * the moment its call returns. */
	if ((err = kheo__exec(db, "PRAGMA journal_mode=WAL;"
				  "PRAGMA synchronous=FULL;"
				  "PRAGMA foreign_keys=OFF;"
				  "PRAGMA temp_store=MEMORY;"
				  "PRAGMA cache_size=-16384;"
				  "CREATE TEMP TABLE IF NOT EXISTS kheo_dirty("
				  "rid BLOB PRIMARY KEY) WITHOUT ROWID;"
				  "CREATE TEMP TABLE IF NOT EXISTS kheo_lock("
				  "lo INTEGER NOT NULL, hi INTEGER NOT NULL);")) < 0)
		return err;
	if (db->opts.cache_kib) {
		char pragma[64];

		snprintf(pragma, sizeof(pragma), "PRAGMA cache_size=-%u;",
			db->opts.cache_kib);
		if ((err = kheo__exec(db, pragma)) < 0)
			return err;
	}
	return KHEO_OK;
}

static int load_schema(kheo_db *db, const char *json, size_t len)
{
	char err[256];
	int rc = kheo_schema_parse(&db->schema, json, len, err, sizeof(err));

	if (rc == KHEO_OK)
		rc = kheo_schema_add_system(db->schema, err, sizeof(err));
	if (rc < 0)
		return kheo__error(db, rc, "schema: %s", err);
	return KHEO_OK;
}

KHEO_EXTERN int kheo_db_init(kheo_db **out, const char *dir,
	const kheo_init_options *init, const kheo_open_options *opts)
{
	uint8_t sk[KHEO_SECRET_SIZE], install[16], epoch[8];
	char hex[2 * KHEO_KEY_SIZE + 1];
	struct stat sb;
	kheo_db *db;
	char *path;
	int err, key_written = 0, committed = 0;

	if ((err = handle_new(out, dir, opts)) < 0)
		return err;
	db = *out;
	if (!init || init->version != KHEO_INIT_OPTIONS_VERSION)
		return kheo__error(db, KHEO_EINVAL, "init options missing");
	if (init->role < KHEO_NODE_DEVICE || init->role > KHEO_NODE_PROVINCE)
		return kheo__error(db, KHEO_EINVAL, "role %d unknown",
			(int)init->role);
	if (!init->unit || !kheo_unit_valid(init->unit, strlen(init->unit)) ||
	    strcmp(init->unit, "_sys") == 0)
		return kheo__error(db, KHEO_EINVAL,
			"unit \"%s\" is not a unit path (slugs such as "
			"dak-nong/cu-jut, separated by /)",
			init->unit ? init->unit : "");
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return kheo__error(db, KHEO_EIO, "%s: %s", dir,
			strerror(errno));
	if (!(path = path_join(dir, DB_FILE)))
		return KHEO_ENOMEM;
	err = stat(path, &sb) == 0;
	kheo__free(path);
	if (err)
		return kheo__error(db, KHEO_EEXISTS,
			"%s already holds a kheo node", dir);
	if (!(path = path_join(dir, KEY_FILE)))
		return KHEO_ENOMEM;
	err = stat(path, &sb) == 0;
	kheo__free(path);
	if (err)
		return kheo__error(db, KHEO_EEXISTS,
			"%s/%s exists without a database: refusing to reuse "
			"a key", dir, KEY_FILE);

	if ((err = load_schema(db,
		     init->schema_json ? init->schema_json
				       : kheo_schema_default_json,
		     init->schema_json ? init->schema_len
				       : kheo_schema_default_json_len)) < 0)
		return err;
	if ((err = sql_open(db, 1)) < 0)
		return err;

	crypto_sign_keypair(db->pk, sk);
	randombytes_buf(install, sizeof(install));
	db->role = init->role;
	snprintf(db->unit, sizeof(db->unit), "%s", init->unit);
	if ((err = kheo__begin(db)) < 0)
		goto done;
	if ((err = kheo__store_create(db)) < 0)
		goto done;
	kheo_hex(hex, db->pk, KHEO_KEY_SIZE);
	if ((err = kheo__meta_set_int(db, "format", DB_FORMAT)) < 0 ||
	    (err = kheo__meta_set_text(db, "key", hex)) < 0 ||
	    (err = kheo__meta_set_int(db, "role", db->role)) < 0 ||
	    (err = kheo__meta_set_text(db, "unit", db->unit)) < 0 ||
	    (err = kheo__meta_set_text(db, "schema", db->schema->json)) < 0 ||
	    (err = kheo__meta_set_int(db, "clock", 0)) < 0)
		goto done;
	kheo_hex(hex, install, sizeof(install));
	if ((err = kheo__meta_set_text(db, "install_id", hex)) < 0)
		goto done;
	/* The log epoch names this copy of the log for peers' checkpoints. */
	randombytes_buf(epoch, sizeof(epoch));
	kheo_hex(hex, epoch, sizeof(epoch));
	if ((err = kheo__meta_set_text(db, "epoch", hex)) < 0)
		goto done;
	/* The key file goes down before the database commits: a crash in
	 * between leaves a key without a node, which init refuses to reuse,
	 * never a node without its key. */
	if ((err = kheo__key_write(db, sk, install)) < 0)
		goto done;
	key_written = 1;
	if ((err = kheo__commit_tx(db)) < 0)
		goto done;
	committed = 1;
	if ((err = kheo__prepare_upserts(db)) < 0)
		goto done;
	if (!(db->sk = sodium_malloc(KHEO_SECRET_SIZE))) {
		err = KHEO_ENOMEM;
		goto done;
	}
	memcpy(db->sk, sk, KHEO_SECRET_SIZE);
	/* a province's key is its deployment's root of trust */
	if (db->role == KHEO_NODE_PROVINCE)
		err = kheo__make_root(db);
done:
	sodium_memzero(sk, sizeof(sk));
	if (err < 0 && !committed) {
		/* leave no half-made node behind: a retry must not find a
		 * database that "already holds a node", nor a key without one */
		static const char *const files[] = { DB_FILE, DB_FILE "-wal",
			DB_FILE "-shm", KEY_FILE };
		size_t i;

		kheo__rollback(db);
		for (i = 0; i < ST_COUNT; i++) {
			sqlite3_finalize(db->stmt[i]);
			db->stmt[i] = NULL;
		}
		sqlite3_close(db->sql);
		db->sql = NULL;
		for (i = 0; i < 3 + (size_t)key_written; i++) {
			char *p = path_join(dir, files[i]);

			if (p)
				unlink(p);
			kheo__free(p);
		}
	}
	return err;
}

KHEO_EXTERN int kheo_db_open(kheo_db **out, const char *dir,
	const kheo_open_options *opts)
{
	char hex[2 * KHEO_KEY_SIZE + 1], install[64];
	int64_t v;
	kheo_db *db;
	sqlite3_stmt *st;
	int err;

	if ((err = handle_new(out, dir, opts)) < 0)
		return err;
	db = *out;
	if ((err = sql_open(db, 0)) < 0) {
		if (err == KHEO_ENOTFOUND)
			kheo__error(db, err, "%s holds no kheo node (run kheo "
				"init there first)", dir);
		return err;
	}
	if ((err = kheo__meta_get_int(db, "format", &v)) < 0)
		return kheo__error(db, KHEO_ECORRUPT,
			"%s/%s is not a kheo database", dir, DB_FILE);
	if (v != DB_FORMAT)
		return kheo__error(db, KHEO_EUNSUPPORTED,
			"database format %lld unknown (this is %d)",
			(long long)v, DB_FORMAT);
	if ((err = kheo__meta_get_text(db, "key", hex, sizeof(hex))) < 0 ||
	    kheo_unhex(db->pk, KHEO_KEY_SIZE, hex, strlen(hex)) < 0 ||
	    (err = kheo__meta_get_int(db, "role", &v)) < 0)
		return kheo__error(db, KHEO_ECORRUPT, "node facts damaged");
	db->role = (kheo_node_role)v;
	if ((err = kheo__meta_get_text(db, "unit", db->unit,
		     sizeof(db->unit))) < 0 ||
	    (err = kheo__meta_get_int(db, "clock", &v)) < 0 ||
	    (err = kheo__meta_get_text(db, "install_id", install,
		     sizeof(install))) < 0)
		return kheo__error(db, KHEO_ECORRUPT, "node facts damaged");
	db->clock = (uint64_t)v;

	if (meta_row(db, "schema", &st) < 0)
		return kheo__error(db, KHEO_ECORRUPT, "schema missing");
	err = load_schema(db, (const char *)sqlite3_column_text(st, 0),
		(size_t)sqlite3_column_bytes(st, 0));
	sqlite3_reset(st);
	if (err < 0)
		return err;
	if ((err = kheo__prepare_upserts(db)) < 0 ||
	    (err = kheo__authz_load(db)) < 0)
		return err;
	kheo__key_load(db, install);
	return KHEO_OK;
}

KHEO_EXTERN void kheo_db_close(kheo_db *db)
{
	size_t i;

	if (!db)
		return;
	while (db->savepoints)
		kheo__rollback(db);
	kheo__rollback(db);
	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(db->stmt[i]);
	if (db->upsert && db->schema)
		for (i = 0; i < db->schema->ntables; i++)
			sqlite3_finalize(db->upsert[i]);
	kheo__free(db->upsert);
	if (db->sql) {
#ifdef KHEO_FAULT_INJECTION
		/* the tests' build: a statement left unfinalized keeps the
		 * connection open after sqlite3_close (a leak a long-running
		 * kheod would feel); say which, and fail */
		sqlite3_stmt *left = sqlite3_next_stmt(db->sql, NULL);

		if (left) {
			fprintf(stderr, "kheo_db_close: statement never "
				"finalized: %s\n", sqlite3_sql(left));
			abort();
		}
#endif
		sqlite3_close(db->sql);
	}
	if (db->sk)
		sodium_free(db->sk);
	if (db->passphrase)
		sodium_free(db->passphrase);
	kheo_schema_free(db->schema);
	kheo_codec_free(db->codec);
	kheo_buf_free(&db->raw);
	kheo_buf_free(&db->frame);
	kheo_buf_free(&db->scratch);
	kheo__free(db->dir);
	kheo__free(db);
}

int kheo__resolve_node(kheo_db *db, uint8_t out[KHEO_KEY_SIZE],
	const char *hex)
{
	size_t n = strlen(hex), i;
	sqlite3_stmt *st;
	int rc, found = 0;

	for (i = 0; i < n; i++)
		if (!strchr("0123456789abcdefABCDEF", hex[i]))
			n = 0;
	if (n < 8 || n > 2 * KHEO_KEY_SIZE)
		return kheo__error(db, KHEO_EINVAL,
			"node id \"%s\": give the key in hex, 64 digits or a "
			"unique prefix of 8 or more", hex);
	if (n == 2 * KHEO_KEY_SIZE)
		return kheo_unhex(out, KHEO_KEY_SIZE, hex, n);
	rc = sqlite3_prepare_v2(db->sql,
		"SELECT DISTINCT lower(hex(author)) AS k FROM kheo_cs UNION "
		"SELECT lower(hex(peer)) FROM kheo_peer_head",
		-1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "node lookup");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(st, 0);
		size_t j;

		for (j = 0; j < n; j++)
			if (k[j] != (hex[j] | 0x20))
				break;
		if (j == n) {
			if (found++ == 0)
				kheo_unhex(out, KHEO_KEY_SIZE, k, 64);
		}
	}
	sqlite3_finalize(st);
	if (found == 1)
		return KHEO_OK;
	return kheo__error(db, found ? KHEO_EINVAL : KHEO_ENOTFOUND,
		found ? "node id prefix \"%s\" is not unique" :
			"no node with id \"%s\" is known here", hex);
}

/*
 * A scratch store in memory with this node's schema and identity (but no
 * signing key): where kheo_verify rebuilds the state from the changesets.
 */
int kheo__db_scratch_for(kheo_db **out, const kheo_open_options *opts,
	const char *schema_json, size_t schema_len,
	const uint8_t pk[KHEO_KEY_SIZE], kheo_node_role role,
	const char *unit, const char *file)
{
	kheo_db *s;
	int rc, err;

	if ((err = handle_new(out, file ? file : ":memory:", opts)) < 0)
		return err;
	s = *out;
	memcpy(s->pk, pk, KHEO_KEY_SIZE);
	s->role = role;
	snprintf(s->unit, sizeof(s->unit), "%s", unit);
	if ((err = load_schema(s, schema_json, schema_len)) < 0)
		return err;
	rc = sqlite3_open_v2(file ? file : ":memory:", &s->sql,
		SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(s, rc, "scratch store");
	/* in a file, a rebuild's memory is the page cache, whatever the
	 * history; nothing in it needs to survive a crash */
	if (file && (err = kheo__exec(s, "PRAGMA journal_mode=OFF;"
				  "PRAGMA temp_store=MEMORY;"
				  "PRAGMA synchronous=OFF;"
				  "PRAGMA cache_size=-16384;")) < 0)
		return err;
	if ((err = kheo__exec(s, "CREATE TEMP TABLE kheo_dirty(rid BLOB "
				 "PRIMARY KEY) WITHOUT ROWID;"
				 "CREATE TEMP TABLE kheo_lock(lo INTEGER NOT "
				 "NULL, hi INTEGER NOT NULL);")) < 0)
		return err;
	/* a file that holds a store already (audit.c keeps its rebuild
	 * between exports) is taken up where it was */
	if (file) {
		sqlite3_stmt *st;

		rc = sqlite3_prepare_v2(s->sql, "SELECT 1 FROM sqlite_master"
			" WHERE name = 'kheo_meta'", -1, &st, NULL);
		if (rc != SQLITE_OK)
			return kheo__sqlerr(s, rc, "scratch store");
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc == SQLITE_ROW)
			return (err = kheo__prepare_upserts(s)) < 0
				       ? err : kheo__authz_load(s);
	}
	if ((err = kheo__store_create(s)) < 0 ||
	    (err = kheo__prepare_upserts(s)) < 0)
		return err;
	return KHEO_OK;
}

int kheo__db_scratch(kheo_db *db, kheo_db **out)
{
	kheo_db *s;
	int err;

	if ((err = kheo__db_scratch_for(out, &db->opts, db->schema->json,
		     db->schema->json_len, db->pk, db->role, db->unit,
		     NULL)) < 0)
		return err;
	s = *out;
	/* the same trust, so it decides every changeset as this node did */
	s->enforcing = db->enforcing;
	memcpy(s->root, db->root, KHEO_KEY_SIZE);
	s->cert_role = db->cert_role;
	return KHEO_OK;
}

int kheo__db_scratch_save(kheo_db *s, const char *dir)
{
	uint8_t install[16], epoch[8];
	char hex[2 * KHEO_KEY_SIZE + 1], *path;
	struct stat sb;
	sqlite3_stmt *st;
	int rc, err;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return kheo__error(s, KHEO_EIO, "%s: %s", dir, strerror(errno));
	if (!(path = path_join(dir, DB_FILE)))
		return KHEO_ENOMEM;
	if (stat(path, &sb) == 0) {
		err = kheo__error(s, KHEO_EEXISTS, "%s already holds a kheo "
			"node", dir);
		kheo__free(path);
		return err;
	}
	kheo_hex(hex, s->pk, KHEO_KEY_SIZE);
	if ((err = kheo__meta_set_int(s, "format", DB_FORMAT)) < 0 ||
	    (err = kheo__meta_set_text(s, "key", hex)) < 0 ||
	    (err = kheo__meta_set_int(s, "role", s->role)) < 0 ||
	    (err = kheo__meta_set_text(s, "unit", s->unit)) < 0 ||
	    (err = kheo__meta_set_text(s, "schema", s->schema->json)) < 0 ||
	    (err = kheo__meta_set_int(s, "clock", (int64_t)s->clock)) < 0)
		goto done;
	/* a new install id and no node.key: the copy opens for reading */
	randombytes_buf(install, sizeof(install));
	kheo_hex(hex, install, sizeof(install));
	if ((err = kheo__meta_set_text(s, "install_id", hex)) < 0)
		goto done;
	randombytes_buf(epoch, sizeof(epoch));
	kheo_hex(hex, epoch, sizeof(epoch));
	if ((err = kheo__meta_set_text(s, "epoch", hex)) < 0)
		goto done;
	if (s->enforcing) {
		kheo_hex(hex, s->root, KHEO_KEY_SIZE);
		if ((err = kheo__meta_set_text(s, "root", hex)) < 0)
			goto done;
	}
	rc = sqlite3_prepare_v2(s->sql, "VACUUM INTO ?1", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		err = kheo__sqlerr(s, rc, "save");
		goto done;
	}
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	err = kheo__step_done(s, st, path);
	sqlite3_finalize(st);
done:
	kheo__free(path);
	return err;
}
