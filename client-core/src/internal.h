/*
 * internal.h - what libkheo's source files share and nothing outside sees:
 * the kheo_db handle, error helpers, the statement cache, and the entry
 * points each file offers the others.
 *
 * Layering inside client-core: db.c (open, SQL, errors) is used by all;
 * keyfile.c keeps the secret key at rest; clock.c gives hybrid clock
 * values; merge.c turns ops into rows and rows into state; apply.c decides
 * receipt; edit.c makes local ops and seals them; read.c, bundle.c,
 * verify.c and import.c sit on top.
 */
#ifndef KHEO_INTERNAL_H
#define KHEO_INTERNAL_H

#include <sqlite3.h>
#include <stdarg.h>

#include "kheo.h"
#include "proto.h"
#include "schema.h"

/* Receipt states stored in kheo_cs.state. */
enum { KHEO_CS_APPLIED = 0, KHEO_CS_HELD = 1 };

/* Changesets further ahead of this node's wall time than this are held. */
#define KHEO_FUTURE_MS (24LL * 3600 * 1000)

/* Ops merged per transaction when receiving: bounded, so that a big sync
 * never blocks local edits for long. */
#define KHEO_APPLY_BATCH_OPS 20000

/* Prepared statements, made on first use and kept for the handle's life. */
typedef enum kheo_stmt_id {
	ST_META_GET, ST_META_SET,
	ST_CS_BY_ID, ST_CS_INSERT, ST_CS_CHAIN, ST_CS_SAME_USEQ,
	ST_CS_SET_APPLIED, ST_CS_HELD_NEXT, ST_CS_MAX_USEQ,
	ST_QUARANTINE_INSERT, ST_QUARANTINE_BY_ID,
	ST_FLAG_INSERT,
	ST_RECORD_GET, ST_RECORD_PUT,
	ST_OP_INSERT, ST_PRED_INSERT, ST_SEEN_INSERT,
	ST_LIVE_OPS, ST_LIVE_OPS_FIELD, ST_DIRTY_ADD,
	ST_LIVE_OPS_LOCKED, ST_LIVE_OPS_LOCKED_FIELD, ST_WORKFLOW_OPS,
	ST_AUTHZ_REVOKED, ST_AUTHZ_CERTS, ST_AUTHZ_SUCCESSOR,
	ST_PENDING_INSERT,
	ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO,
	ST_DIRTY_LIST, ST_DIRTY_CLEAR, ST_TOUCHED_ADD,
	ST_LIVE_IDS_ALL, ST_LIVE_IDS_FIELD, ST_LIVE_IDS_MEMBER,
	ST_UNSEEN,
	ST_COUNT
} kheo_stmt_id;

struct kheo_db {
	sqlite3 *sql;
	char *dir;
	char errmsg[512];
	kheo_open_options opts;
	kheo_schema *schema;

	uint8_t pk[KHEO_KEY_SIZE];
	uint8_t *sk;            /* sodium_malloc'd; NULL if this copy may not sign */
	char sign_refusal[384]; /* why it may not, for the message */
	char *passphrase;       /* sodium_malloc'd copy of the open option */
	int key_locked;         /* node.key is sealed and the passphrase given
				 * (none, or a wrong one) does not open it */
	kheo_node_role role;
	char unit[KHEO_UNIT_MAX + 1];

	/* Identity (authz.c).  Enforcing once a root is known: the province
	 * made it, or a certificate chaining to it was accepted. */
	int enforcing;
	uint8_t root[KHEO_KEY_SIZE];
	int cert_role;          /* own best certificate role; 0 if none */
	int authz_busy;         /* re-checking after new facts: no recursion */
	int lock_rows;          /* temp.kheo_lock holds rows (merge.c) */
	int64_t quarantine_mark; /* last quarantine row before this apply */

	uint64_t clock;         /* last hybrid clock issued or applied */
	int clock_dirty;        /* clock to be persisted in this transaction */

	kheo_codec *codec;
	kheo_buf raw, frame, scratch;
	sqlite3_stmt *stmt[ST_COUNT];
	sqlite3_stmt **upsert;  /* per schema table: materialise one record */
	int sealing;            /* receiving what this node just sealed */
	int track_touched;      /* flushes also note records in
				 * temp.kheo_touched (audit.c's rebuild) */
	const uint8_t *checked_id; /* audit.c: the frame being received
				 * was read and its signature verified, and
				 * this is its id: not verified twice */
	int in_tx;              /* a transaction is open */
	int savepoints;         /* calls nested inside it (import batches) */
};

/* ------------------------------------------------------------------ db.c */

/* Set the handle's message and return code (never KHEO_OK). */
int kheo__error(kheo_db *db, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Translate a SQLite result code into a kheo error, copying its message. */
int kheo__sqlerr(kheo_db *db, int rc, const char *what);
/* Clear the message at the start of a public call. */
void kheo__clear(kheo_db *db);

/* A cached statement, reset and with bindings cleared. */
sqlite3_stmt *kheo__stmt(kheo_db *db, kheo_stmt_id id);
int kheo__exec(kheo_db *db, const char *sql);
/* Step a statement expected to finish (no rows); KHEO_OK or an error. */
int kheo__step_done(kheo_db *db, sqlite3_stmt *st, const char *what);

int kheo__begin(kheo_db *db);
int kheo__commit_tx(kheo_db *db);
void kheo__rollback(kheo_db *db);

int kheo__meta_get_text(kheo_db *db, const char *k, char *out, size_t n);
int kheo__meta_get_int(kheo_db *db, const char *k, int64_t *out);
int kheo__meta_set_text(kheo_db *db, const char *k, const char *v);
int kheo__meta_set_int(kheo_db *db, const char *k, int64_t v);

/* Create the store's tables in an empty database (also for verify's
 * scratch store) and prepare per-table upserts. */
int kheo__store_create(kheo_db *db);
int kheo__prepare_upserts(kheo_db *db);

/* An in-memory store with this node's schema and key (verify.c). */
int kheo__db_scratch(kheo_db *db, kheo_db **out);
/* The same for a node known only by its facts (audit.c rebuilds a mirrored
 * node from its git mirror): schema JSON, key, role and unit.  Not
 * enforcing until kheo__authz_set_root.  With `file`, the store lives
 * there, unjournalled, and its memory is a bounded page cache (in memory
 * otherwise); a file that holds such a store already is reopened as it
 * was, root and role included. */
int kheo__db_scratch_for(kheo_db **out, const kheo_open_options *opts,
	const char *schema_json, size_t schema_len,
	const uint8_t pk[KHEO_KEY_SIZE], kheo_node_role role,
	const char *unit, const char *file);
/* Write a scratch store out as the database of a new data directory
 * `dir` (created; refused if it holds a node): a node with the scratch's
 * key, role, unit and root, and no node.key, so it opens for reading. */
int kheo__db_scratch_save(kheo_db *scratch, const char *dir);

/* Wall time in ms, through the open options' clock. */
int64_t kheo__now_ms(const kheo_db *db);
void kheo__log(kheo_db *db, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Resolve a node id given in hex (64 digits, or a unique prefix of 8+)
 * against the keys this node knows. */
int kheo__resolve_node(kheo_db *db, uint8_t out[KHEO_KEY_SIZE],
	const char *hex);

/* ------------------------------------------------------------- keyfile.c */

#define KHEO_KEY_FILE "node.key"

/* Take a copy of opts.passphrase (borrowed for the call) into guarded
 * memory, and clear the borrowed pointer. */
int kheo__passphrase_keep(kheo_db *db);
/* Write a new node.key (sealed when the handle has a passphrase) and
 * DIR/.backup-exclude; atomically: a temporary file, synced, renamed.
 * Records in kheo_meta whether the key is sealed: call it inside the
 * transaction that makes the node. */
int kheo__key_write(kheo_db *db, const uint8_t *sk,
	const uint8_t install[16]);
/* Load node.key into db->sk if it opens and belongs to this database;
 * otherwise db->sk stays NULL and db->sign_refusal says why (the node
 * still opens, for reading). */
void kheo__key_load(kheo_db *db, const char *install_hex);

/* --------------------------------------------------------------- clock.c */

/* A new clock value for a local op: above every value issued or applied,
 * and at least the wall time. */
uint64_t kheo__clock_tick(kheo_db *db);
/* Move past a clock seen in an applied changeset. */
void kheo__clock_observe(kheo_db *db, uint64_t c);
/* Persist the clock if it moved (inside the caller's transaction). */
int kheo__clock_save(kheo_db *db);

/* --------------------------------------------------------------- merge.c */

/* Merge a changeset's ops into the op tables; cs_n is its kheo_cs row (0
 * for pending local ops, which also marks their pred rows pending). */
int kheo__merge_changeset(kheo_db *db, const kheo_changeset *cs,
	int64_t cs_n);
/* Take an applied changeset's ops back out of the state (a revocation
 * that arrived after it): its rows go, its records are re-materialised. */
int kheo__unmerge_changeset(kheo_db *db, const kheo_changeset *cs,
	int64_t cs_n);
/* Re-materialise every record touched since the last flush. */
int kheo__flush_dirty(kheo_db *db);

/* One live (unsuperseded) op of a register or set, as stored. */
typedef struct kheo_live {
	char field[KHEO_NAME_MAX + 1];
	int kind;
	kheo_value value;       /* TEXT/BYTES/HASH point into `bytes` */
	uint64_t clock;
	uint8_t author[KHEO_KEY_SIZE];
	int foreign;            /* never wins: from a changeset of another
				 * unit, or locked (a collector's op while the
				 * record was recognised) */
	uint8_t *bytes;
} kheo_live;

typedef struct kheo_live_set {
	kheo_live *v;
	size_t n, cap;
	char tbl[KHEO_NAME_MAX + 1];
	char unit[KHEO_UNIT_MAX + 1]; /* "" when the record's put is missing */
	int exists;
} kheo_live_set;

/*
 * Do the register values live->v[from..to) (one field) conflict?  Only
 * when they differ: two authors who set the same value (two nodes that
 * publish one certificate) agree.
 */
int kheo__register_conflict(const kheo_live_set *live, size_t from,
	size_t to);

/* Every live op of a record (of one field, or all when field is NULL),
 * sorted by field, then op id descending (the register's winner first). */
int kheo__live_ops(kheo_db *db, kheo_live_set *out, const uint8_t *rid,
	const char *field);
void kheo__live_free(kheo_live_set *s);

/* Ids of a record's live ops of `field` (NULL: every field), sorted
 * ascending by op id, into a malloc'd array.  `member` (may be NULL)
 * restricts to ADD ops of that value. */
int kheo__live_ids(kheo_db *db, kheo_opid **out, size_t *n,
	uint8_t (**keys)[KHEO_KEY_SIZE], const uint8_t *rid, const char *field,
	const kheo_value *member);

/* A record as kheo_get_json shows it (read.c), or NULL with *err set. */
struct json_t *kheo__record_json(kheo_db *db, const uint8_t *rid, int *err);

/* The value as JSON (jansson), for set columns and reads. */
struct json_t *kheo__value_json(const kheo_value *v);

/* The value as SQLite sees it, and back. */
void kheo__bind_value(sqlite3_stmt *st, int col, const kheo_value *v);
void kheo__column_value(sqlite3_stmt *st, int col, int vtype,
	kheo_value *v);

/* -------------------------------------------------------------- apply.c */

/* Receive one frame (inside the caller's transaction). */
int kheo__receive(kheo_db *db, const uint8_t *frame, size_t len,
	kheo_apply_stats *st);
/* Batches: begin, count ops, commit at the bound. */
int kheo__apply_frames(kheo_db *db, const uint8_t *const *frames,
	const size_t *lens, size_t n, kheo_apply_stats *st);

/* Keep refused bytes in quarantine with the reason (the very same bytes
 * refused twice are kept once). */
int kheo__quarantine(kheo_db *db, const uint8_t *frame, size_t len,
	const kheo_refusal *why, kheo_apply_stats *st);

/* --------------------------------------------------------------- authz.c */

/* Read the root (enforcing or open mode) and this node's own role. */
int kheo__authz_load(kheo_db *db);
int kheo__authz_own_role(kheo_db *db);
/* Trust `root` from now on (province init, enroll accept). */
int kheo__authz_set_root(kheo_db *db, const uint8_t root[KHEO_KEY_SIZE]);
/* Does `scope` cover `unit`, directly or through unit successors? */
int kheo__authz_covers(kheo_db *db, const char *scope, const char *unit);
/* Decide every certificate's status again (after adding some). */
int kheo__authz_refresh(kheo_db *db);
/* Record a decoded certificate as a fact (status decided later). */
int kheo__authz_add_cert(kheo_db *db, const kheo_cert *c,
	const uint8_t *body, size_t len);
/* Decide a changeset's authority: 0 apply (*role), 1 hold (why), 2 reject
 * (ref), or an error.  Open mode: 0 with role 0. */
int kheo__authorize(kheo_db *db, const kheo_changeset *cs, int *role,
	char *why, size_t whylen, kheo_refusal *ref);
/* Is this changeset beyond a revocation of its author?  1 (the reason in
 * ref) or 0.  Decided before its chain: a revoked key's later changesets
 * are rejected even when their predecessor never came. */
int kheo__authz_revoked(kheo_db *db, const kheo_changeset *cs,
	kheo_refusal *ref);
/* May `role` make this op?  1, or 0 with the reason in ref. */
int kheo__authz_op_allowed(kheo_db *db, int role, const kheo_op *op,
	kheo_refusal *ref);
/* After a changeset is applied: learn its `_sys` facts, take back what a
 * revocation excludes, re-check what the facts may now decide. */
int kheo__authz_learn(kheo_db *db, const kheo_changeset *cs,
	kheo_apply_stats *st);

/* -------------------------------------------------------------- enroll.c */

/* A new province node: its key becomes the root, with a self-signed
 * certificate published in `_sys`. */
int kheo__make_root(kheo_db *db);
/*
 * This node's certificate chain up to the root, bodies back to back in
 * `bytes` (offsets and lengths in off/lens, room for 8): first its best
 * certificate that lets it issue `role` for `unit` (role 0: its best
 * certificate), then its issuer's, and so on.  KHEO_EAUTH if none holds.
 */
int kheo__own_chain(kheo_db *db, int role, const char *unit, kheo_buf *bytes,
	size_t *off, size_t *lens, size_t *n);
/* mode, root, cert_role, cert_scope, cert_expires_ms, warnings. */
int kheo__identity_json(kheo_db *db, struct json_t *o);
/* ISO 8601 (UTC, ms) of a wall time in ms; JSON null for 0 or less. */
struct json_t *kheo__time_json(int64_t ms);
/* "device", "hub", "province" (kheo_node_role), or "unknown". */
const char *kheo__node_role_name(int role);

/* ---------------------------------------------------------------- read.c */

/* Hand JSON to a caller as text it frees with kheo_free (takes j). */
int kheo__json_out(kheo_db *db, char **out, struct json_t *j);

/* report.c: the SQL functions kheo_fold and kheo_unit_prefix on db->sql;
 * the search filter of kheo_search_json (*pattern, bound to ?param, is
 * the caller's to kheo__free). */
int kheo__report_register(kheo_db *db);
int kheo__search_sql(kheo_db *db, kheo_buf *sql, const kheo_stable *t,
	const char *query, int param, char **pattern);

/* ------------------------------------------------------------- receipt.c */

/* On the province, before sealing: move every chain's sys_receipt up to
 * what is applied here.  Elsewhere nothing. */
int kheo__write_receipts(kheo_db *db);

/* ------------------------------------------------------------- channel.c */

/* The secure channel under a sync session (server key announce, Secret
 * Handshake, crypto_secretstream each way). */
typedef struct kheo_channel {
	int initiator, phase, ready, closed;
	uint8_t netkey[32];
	const uint8_t *sk;            /* borrowed from the kheo_db */
	uint8_t pk[KHEO_KEY_SIZE];
	int have_expect;
	uint8_t expect[KHEO_KEY_SIZE];
	kheo_shs *shs;                /* sodium_malloc'd: holds secrets */
	kheo_shs_keys keys;
	kheo_stream_tx tx;
	kheo_stream_rx rx;
	uint8_t peer[KHEO_KEY_SIZE];  /* once ready */
	kheo_buf in, out, plain;
	char err[300];
} kheo_channel;

void kheo__channel_init(kheo_channel *ch, int initiator,
	const uint8_t netkey[32], const uint8_t *sk, const uint8_t *pk,
	const uint8_t *expect);
void kheo__channel_free(kheo_channel *ch);
/* The secret key moved (another handle of the node); NULL: none for now. */
void kheo__channel_rebind(kheo_channel *ch, const uint8_t *sk);
/* Bytes from the peer; each whole record goes to on_record. */
int kheo__channel_input(kheo_channel *ch, const uint8_t *p, size_t n,
	int (*on_record)(void *arg, const uint8_t *p, size_t n), void *arg);
/* One record to the peer (after the handshake). */
int kheo__channel_send(kheo_channel *ch, const uint8_t *p, size_t n);
int kheo__channel_ready(const kheo_channel *ch);
const uint8_t *kheo__channel_peer(const kheo_channel *ch);
const kheo_buf *kheo__channel_out(const kheo_channel *ch);
void kheo__channel_consumed(kheo_channel *ch, size_t n);
const char *kheo__channel_error(const kheo_channel *ch);

/* --------------------------------------------------------------- edit.c */

/* Seal pending edits (inside the caller's transaction). */
int kheo__seal(kheo_db *db, size_t *sealed);
/* After a re-key (db->pk already the new key): make the pending edits
 * the new key's, and the preds that name them (inside the caller's
 * transaction). */
int kheo__pending_rekey(kheo_db *db, const uint8_t old_pk[KHEO_KEY_SIZE]);

#ifdef KHEO_FAULT_INJECTION
/* Test builds only (sync.c): make session s speak an older sync version
 * (before its HELLO), or send message m from it as a broken peer would. */
void kheo__session_speak(kheo_session *s, unsigned version);
int kheo__session_inject(kheo_session *s, const kheo_msg *m);
/* fn sees each message s sends (but FRAMES) and may change it; it returns
 * 1 to drop it. */
void kheo__session_tamper(kheo_session *s,
	int (*fn)(void *arg, kheo_msg *m), void *arg);
#endif

#endif
