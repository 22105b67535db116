/*
 * kheo.h - the public API of libkheo.
 *
 * libkheo is the offline-first core of kheo: changeset formats, the local
 * store, merge and sync sessions.  This header is the only API: anything not
 * declared here (or in a header it includes) is private and may change.
 *
 * Conventions, as in libgit2 and SQLite:
 *  - every function that can fail returns an int from the kheo_error enum:
 *    KHEO_OK (0) on success, a negative code otherwise;
 *  - out-parameters come first; what comes back through `**out` belongs to
 *    the caller and is freed with the matching _free function, which accepts
 *    NULL;
 *  - a pointer returned by value is borrowed, for as long as its comment says;
 *  - misuse of the API (a NULL where an object is required) aborts with a
 *    message; it is not an error code.
 */
#ifndef KHEO_H
#define KHEO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(KHEO_STATIC_ONLY)
#define KHEO_EXTERN __attribute__((visibility("default")))
#else
#define KHEO_EXTERN
#endif

/* Version of this header; kheo_version() gives the library's. */
#define KHEO_VERSION_MAJOR 0
#define KHEO_VERSION_MINOR 1
#define KHEO_VERSION_PATCH 0
#define KHEO_VERSION_STRING "0.1.0"
#define KHEO_VERSION_NUMBER \
	(KHEO_VERSION_MAJOR * 10000 + KHEO_VERSION_MINOR * 100 + KHEO_VERSION_PATCH)

/*
 * Error codes.  Their values are pinned: they cross process boundaries (exit
 * messages, JSON output) and language bindings, so a code is never renumbered
 * or reused.  The fine-grained reason of a refused input (which rule of the
 * canonical encoding it broke) is reported beside the code, see
 * kheo_refusal in proto.
 */
typedef enum kheo_error {
	KHEO_OK = 0,
	KHEO_ERROR = -1,      /* generic failure; the message says more */
	KHEO_ENOMEM = -2,     /* an allocation failed */
	KHEO_EINVAL = -3,     /* an argument or value was refused */
	KHEO_ENOTFOUND = -4,  /* the object asked for does not exist */
	KHEO_EEXISTS = -5,    /* the object to create exists already */
	KHEO_EAUTH = -6,      /* a signature or certificate check failed */
	KHEO_EPROTO = -7,     /* bytes do not follow the format */
	KHEO_ECORRUPT = -8,   /* stored data is damaged */
	KHEO_ECONFLICT = -9,  /* concurrent values or equivocation */
	KHEO_ELIMIT = -10,    /* a size or count is above a hard limit */
	KHEO_EIO = -11,       /* the operating system refused a file operation */
	KHEO_EUNSUPPORTED = -12, /* a newer format or a missing dictionary */
} kheo_error;

/* The library's version string, e.g. "0.1.0"; static storage. */
KHEO_EXTERN const char *kheo_version(void);

/* The library's version as KHEO_VERSION_NUMBER computes it. */
KHEO_EXTERN int kheo_version_number(void);

/* A short English name for an error code ("KHEO_EPROTO"); static storage. */
KHEO_EXTERN const char *kheo_error_name(int code);

/* ------------------------------------------------------------------ values */

typedef enum kheo_value_type {
	KHEO_VAL_NULL = 0,
	KHEO_VAL_INT = 1,
	KHEO_VAL_REAL = 2,
	KHEO_VAL_TEXT = 3,
	KHEO_VAL_BYTES = 4,
	KHEO_VAL_BOOL = 5,
	KHEO_VAL_HASH = 6,
} kheo_value_type;

/*
 * A typed value.  TEXT points to `len` bytes of UTF-8 (NUL-terminated when
 * it comes from the decoder), BYTES to `len` bytes, HASH to 32 bytes.
 * Pointers are borrowed from whoever built the value.
 */
typedef struct kheo_value {
	kheo_value_type type;
	int64_t i;          /* INT */
	double r;           /* REAL */
	int b;              /* BOOL: 0 or 1 */
	const uint8_t *p;   /* TEXT, BYTES, HASH */
	size_t len;         /* TEXT, BYTES; 32 for HASH */
} kheo_value;

/* ------------------------------------------------------------- the store */

/*
 * A node's data directory: one SQLite database (kheo.db) and the node's
 * secret key (node.key, mode 0600, sealed under a passphrase when one is
 * given, never copied: a restored or reinstalled node gets a new key, see
 * kheo_rekey).  DIR/.backup-exclude names the files backup tools must
 * leave out.  A kheo_db is not thread-safe: one per thread.
 */
typedef struct kheo_db kheo_db;

typedef enum kheo_node_role {
	KHEO_NODE_DEVICE = 1,
	KHEO_NODE_HUB = 2,
	KHEO_NODE_PROVINCE = 3,
} kheo_node_role;

/* Log levels handed to the application's log callback. */
enum { KHEO_LOG_DEBUG = 0, KHEO_LOG_INFO = 1, KHEO_LOG_WARN = 2 };

typedef struct kheo_open_options {
	unsigned int version;
	/* Wall clock in ms since the epoch; NULL for the system clock.
	 * Tests and simulations set it. */
	int64_t (*now_ms)(void *payload);
	void *now_payload;
	/* Messages for people; the library never prints.  May be NULL. */
	void (*log)(int level, const char *msg, void *payload);
	void *log_payload;
	/* The passphrase that seals node.key (NUL-terminated, 1 to
	 * KHEO_PASSPHRASE_MAX bytes); NULL for none.  Borrowed for the call
	 * only: the handle keeps its own copy, in guarded memory wiped at
	 * close, for kheo_rekey.  kheo_db_init seals the new key with it;
	 * kheo_db_open needs it to sign with a sealed key, and without it
	 * (or with a wrong one) the node opens for reading only. */
	const char *passphrase;
	/* SQLite's page cache for this handle, in KiB; 0: 16 MiB.  A
	 * process holding many nodes (a simulation, a bench) or a phone short
	 * of memory sets less: the data stays on disk, reads cost more. */
	unsigned int cache_kib;
} kheo_open_options;

#define KHEO_OPEN_OPTIONS_VERSION 1
#define KHEO_OPEN_OPTIONS_INIT \
	{ KHEO_OPEN_OPTIONS_VERSION, NULL, NULL, NULL, NULL, NULL, 0 }
#define KHEO_PASSPHRASE_MAX 1024

typedef struct kheo_init_options {
	unsigned int version;
	kheo_node_role role;
	const char *unit;        /* the node's unit, e.g. "dak-nong/cu-jut" */
	const char *schema_json; /* NULL: the built-in dvk v1 schema */
	size_t schema_len;
} kheo_init_options;

#define KHEO_INIT_OPTIONS_VERSION 1
#define KHEO_INIT_OPTIONS_INIT { KHEO_INIT_OPTIONS_VERSION, KHEO_NODE_DEVICE, NULL, NULL, 0 }

/*
 * Create a node in `dir` (created if missing; refused with KHEO_EEXISTS if
 * it already holds a node) and open it.  As with sqlite3_open, *out is set
 * even on failure when memory allows, so that kheo_errmsg can say why; the
 * caller closes it either way.
 */
KHEO_EXTERN int kheo_db_init(kheo_db **out, const char *dir,
	const kheo_init_options *init, const kheo_open_options *opts);

/* Open an existing node.  *out as for kheo_db_init. */
KHEO_EXTERN int kheo_db_open(kheo_db **out, const char *dir,
	const kheo_open_options *opts);

/*
 * Give this node a new key and a new install id, so that a restored or
 * copied node (which opens but refuses to sign) may sign again.  The old
 * key is never used again; pending edits are sealed by the new key, whose
 * chains start at useq 1.  The node must then be enrolled again: its
 * certificate named the old key.  The new key is sealed under the
 * handle's passphrase when it has one.  KHEO_EAUTH when the present
 * node.key is sealed and the handle's passphrase does not open it, or when
 * the node's key was sealed and the handle has no passphrase (so that a
 * restored node's new key is not left in the clear by mistake).  Refused
 * while a batch is open.
 */
KHEO_EXTERN int kheo_rekey(kheo_db *db);

/* Close, finishing nothing: unsealed edits are already durable. NULL ok. */
KHEO_EXTERN void kheo_db_close(kheo_db *db);

/* The message of the last error on this handle; borrowed until the next
 * call on it.  "" when the last call succeeded. */
KHEO_EXTERN const char *kheo_errmsg(const kheo_db *db);

/* ------------------------------------------------------------ local edits */

#define KHEO_RECORD_HEX 32 /* a record id in hex */
#define KHEO_KEY_HEX 64    /* a node id (public key) in hex */

/* One assignment, as a person types it: FIELD=VALUE, FIELD+=MEMBER,
 * FIELD-=MEMBER.  Values are text, parsed by the field's schema type. */
typedef enum kheo_assign_op {
	KHEO_ASSIGN_SET = '=',
	KHEO_ASSIGN_ADD = '+',
	KHEO_ASSIGN_REMOVE = '-',
} kheo_assign_op;

typedef struct kheo_assign {
	const char *field;
	kheo_assign_op op;
	const char *value;
} kheo_assign;

/*
 * Create a record.  Every value is checked against the schema (type, enum,
 * range, required fields, NFC) and refused with KHEO_EINVAL and a message
 * naming table, field and value, leaving the store unchanged.  The edit is
 * durable when the call returns and visible at once; it is sealed into a
 * signed changeset at the next kheo_commit, bundle or sync.  `id` may be
 * NULL (a random id is made) or 32 hex digits; id_out (may be NULL)
 * receives the id, NUL-terminated.
 */
KHEO_EXTERN int kheo_put(kheo_db *db, char id_out[KHEO_RECORD_HEX + 1],
	const char *table, const char *id, const kheo_assign *fields,
	size_t nfields);

/* Change fields and set members of an existing record, atomically. */
KHEO_EXTERN int kheo_set(kheo_db *db, const char *table, const char *id,
	const kheo_assign *fields, size_t nfields);

/* Delete a record (soft: an undelete is kheo_set of _deleted=false). */
KHEO_EXTERN int kheo_delete(kheo_db *db, const char *table, const char *id);

/*
 * Group edits into one transaction: one fsync for the lot, as when a form
 * of many fields is saved or a file is imported.  Inside a batch, each
 * edit still succeeds or fails whole; nothing is durable until
 * kheo_batch_commit returns.  kheo_batch_rollback drops the batch.
 */
KHEO_EXTERN int kheo_batch_begin(kheo_db *db);
KHEO_EXTERN int kheo_batch_commit(kheo_db *db);
KHEO_EXTERN void kheo_batch_rollback(kheo_db *db);

/* Seal pending edits into signed changesets, one per unit.  *sealed (may
 * be NULL) receives how many were made. */
KHEO_EXTERN int kheo_commit(kheo_db *db, size_t *sealed);

/* ------------------------------------------------------------- receiving */

typedef struct kheo_apply_stats {
	size_t applied;    /* joined the merge */
	size_t held;       /* stored, waiting for what they lack */
	size_t rejected;   /* in quarantine with their reason */
	size_t duplicate;  /* already here */
	size_t released;   /* held ones applied because of these */
	size_t ops;        /* ops merged */
} kheo_apply_stats;

/*
 * Receive encoded changesets (frames) in any order, with duplicates and
 * gaps: each is verified, stored and applied, held or rejected as
 * DESIGN.md's Receipt section says.  Stats add up into *st (may be NULL).
 * Returns KHEO_OK even when some were rejected (st says how many); an error
 * only when the store itself failed.
 */
KHEO_EXTERN int kheo_apply(kheo_db *db, const uint8_t *const *frames,
	const size_t *lens, size_t n, kheo_apply_stats *st);

/* ------------------------------------------------------------------ reads */

/*
 * Reads return JSON text that the caller frees with kheo_free.  Records
 * carry "id", "_unit", "_deleted" and their fields by schema name; fields
 * in conflict list their competing values under "_conflicts".
 */
KHEO_EXTERN void kheo_free(void *p);

/* One record (deleted ones too); KHEO_ENOTFOUND if there is none. */
KHEO_EXTERN int kheo_get_json(kheo_db *db, char **out, const char *table,
	const char *id);

/* Live records of a table, where every `where` FIELD=VALUE holds (text
 * comparison after the field's parsing). Sorted by id. */
KHEO_EXTERN int kheo_list_json(kheo_db *db, char **out, const char *table,
	const kheo_assign *where, size_t nwhere);

/*
 * kheo_list_json, keeping only records where every word of `search` (NULL
 * or "": no filter) appears in one of their text fields, compared after
 * folding both: case, tones and other marks dropped, "đ" read as "d", so
 * "dak nong" finds "Đắk Nông".  KHEO_EINVAL for a search that is not
 * UTF-8.
 */
KHEO_EXTERN int kheo_search_json(kheo_db *db, char **out, const char *table,
	const kheo_assign *where, size_t nwhere, const char *search);

/*
 * Every write the record has seen, oldest first, and which of them hold:
 * a JSON object {"table", "id", "unit", "writes": [...]}.  Each write has
 * "time" (its clock, ISO 8601 UTC) and "clock" (the hybrid clock), "field",
 * "op" (put, set, add, remove, delete), "value", "author" (key, hex),
 * "changeset" (id, hex; null and "pending": true for an edit not yet
 * sealed), "useq", "cs_unit", "role" (the author's role when it was
 * applied), "applied", and "state": "holds" (what reads show, or a member
 * of the set shown), "competing" (in conflict with the holder), "foreign"
 * (never wins: another unit's changeset, or a collector's edit of a
 * recognised record), "superseded" (with "superseded_by": the time and
 * changeset of the first write that did), or "applied" (a remove).
 * Writes that lost the merge are here, which a mirror's git history, of
 * shown states only, cannot tell.  KHEO_ENOTFOUND when the node holds no
 * such record.
 */
KHEO_EXTERN int kheo_history_json(kheo_db *db, char **out, const char *table,
	const char *id);

/*
 * Reports: counts of live models grouped as asked, computed on the
 * materialised tables (DESIGN.md's schema: `model` and `visit`).
 *
 *   by            comma-separated dimensions, in order: unit, kind,
 *                 field, status, level, year; NULL or "": totals only
 *   unit          only models under this unit path (NULL: all held)
 *   unit_depth    `unit` groups by the first unit_depth segments of a
 *                 model's unit; 0: one level below `unit` (or below the
 *                 node's own unit when `unit` is NULL)
 *   from, to      the period, YYYY-MM-DD inclusive (NULL: open), which
 *                 the `registered` (registered_on) and `recognized`
 *                 (status recognized or replicated, recognized_on)
 *                 counts look at; `models` counts every live model
 *   overdue_months  > 0 adds `overdue`: models not withdrawn with no live
 *                 inspection or supervision visit in the months up to
 *                 as_of
 *   list_overdue  with overdue_months: also "overdue_models", each model
 *                 counted as overdue: id, unit, unit_name, name, status,
 *                 status_label and its last inspection or supervision
 *                 ("last_visit", null if none)
 *   as_of         YYYY-MM-DD (NULL: today, UTC, by the node's clock)
 *   lang          "vi" (NULL: the default) or "en": the labels' language
 *
 * *out is JSON: {"by", "measures", "rows": [{dimension: value, ...,
 * "models", "registered", "recognized"[, "overdue"]}], "total",
 * "labels": {"columns": {name: label}, "values": {dimension: {value:
 * label}}}, "unit", "from", "to", "as_of", "lang"}.  Keys and values are
 * the schema's names; only "labels" holds words for people (enum labels
 * from the schema, unit names from sys_unit).  KHEO_EINVAL, with a message
 * naming it, for an unknown dimension, a malformed date or unit, or a
 * schema without model and visit tables.
 */
typedef struct kheo_report_options {
	const char *by;
	const char *unit;
	int unit_depth;
	const char *from, *to;
	int overdue_months;
	int list_overdue;
	const char *as_of;
	const char *lang;
} kheo_report_options;

#define KHEO_REPORT_OPTIONS_INIT \
	{ NULL, NULL, 0, NULL, NULL, 0, 0, NULL, NULL }

KHEO_EXTERN int kheo_report_json(kheo_db *db, const kheo_report_options *o,
	char **out);

/* Changesets this node holds, newest first, with their state. */
KHEO_EXTERN int kheo_log_json(kheo_db *db, char **out);

/* Fields with more than one surviving value, and edits concurrent with a
 * delete. */
KHEO_EXTERN int kheo_conflicts_json(kheo_db *db, char **out);

/* Rejected changesets with their reasons. */
KHEO_EXTERN int kheo_quarantine_json(kheo_db *db, char **out);

/* The node: key, role, unit, schema, pending edits, counts. */
KHEO_EXTERN int kheo_id_json(kheo_db *db, char **out);

/*
 * BLAKE2b-256 of the canonical state under `prefix` (NULL: the node's
 * unit), as DESIGN.md's digest contract defines it.
 */
KHEO_EXTERN int kheo_digest(kheo_db *db, uint8_t out[32], const char *prefix);

/*
 * Re-verify every stored changeset (signature, chain) and rebuild the state
 * from them in a scratch store; KHEO_ECORRUPT, with the first difference
 * in kheo_errmsg, when anything disagrees.
 */
KHEO_EXTERN int kheo_verify(kheo_db *db);

/* ---------------------------------------------------------------- bundles */

typedef struct kheo_bundle_stats {
	size_t changesets;  /* written, or read */
	size_t bytes;       /* file size */
	kheo_apply_stats apply;
	/* blobs (attachments): written, or read and kept; refused on read
	 * (a chunk that does not verify, a whole that does not hash to its
	 * name, a blob no record names), the last reason in blob_error */
	size_t blobs, blob_chunks, blobs_completed, blobs_refused;
	char blob_error[256];
} kheo_bundle_stats;

/*
 * Write a bundle (the sneakernet path: a file carried on an SD card) with
 * the changesets the receiver may lack: with for_node (hex key or a unique
 * prefix of 8+ digits) what this node knows that node holds is left out;
 * with NULL, everything.  Pending edits are sealed first.  Blobs go too,
 * every chunk of each one held whole: with NULL, all that live records
 * name; with for_node, those named by the records the bundle's changesets
 * touch.
 */
KHEO_EXTERN int kheo_bundle_create(kheo_db *db, const char *path,
	const char *for_node, kheo_bundle_stats *st);

/* What kheo_bundle_create_ext writes. */
typedef struct kheo_bundle_options {
	unsigned version;
	const char *for_node;  /* as kheo_bundle_create's; borrowed */
	/* records only: no blob goes, and the bundle is written in format 1
	 * (docs/protocol.md, Bundles); the receiver lists what its records
	 * name as missing until a sync or another bundle brings it */
	int no_blobs;
} kheo_bundle_options;

#define KHEO_BUNDLE_OPTIONS_VERSION 1
#define KHEO_BUNDLE_OPTIONS_INIT { KHEO_BUNDLE_OPTIONS_VERSION, NULL, 0 }

/* kheo_bundle_create with options; KHEO_EINVAL for an unknown options
 * version. */
KHEO_EXTERN int kheo_bundle_create_ext(kheo_db *db, const char *path,
	const kheo_bundle_options *opts, kheo_bundle_stats *st);

/*
 * Read a bundle.  When the file cannot be read as a whole (truncated,
 * corrupt, unknown version, bad sender signature) nothing is applied and
 * KHEO_EPROTO (or KHEO_EUNSUPPORTED) is returned; otherwise each changeset
 * is applied, held or rejected as by kheo_apply, and then each blob chunk
 * is checked and kept as a sync session keeps it (refused blobs are
 * counted in st, not an error).
 */
KHEO_EXTERN int kheo_bundle_apply(kheo_db *db, const char *path,
	kheo_bundle_stats *st);

/* ------------------------------------------------------------ attachments
 * Blobs (DESIGN.md, What field users expect; docs/architecture.md,
 * "Attachments"): photos and scanned decisions, named by the BLAKE2b-256
 * of their bytes (64 hex digits), kept outside the database in DIR/blobs/
 * as fixed chunks of KHEO_BLOB_CHUNK bytes (the last one shorter), each
 * stored zstd-compressed only when that makes it smaller.  A record names
 * a blob by its hash in a field of type hash (a set of them for photos);
 * sync and bundles carry the blobs records name, chunk by chunk.  A blob
 * is complete (readable, offered to peers) only when every chunk is here
 * and the whole hashes to its name.
 */
#define KHEO_BLOB_CHUNK (64u * 1024)       /* bytes per chunk: a format rule */
#define KHEO_BLOB_SIZE_MAX (256u << 20)    /* a blob's size: a format rule */
#define KHEO_BLOB_DEFAULT_MAX (25u << 20)  /* kheo_attach's default cap */

typedef struct kheo_blob_info {
	char hash[KHEO_KEY_HEX + 1];  /* 64 hex digits */
	uint64_t size;                /* bytes */
	char type[8];                 /* "jpeg", "png", "pdf", "webp" */
	size_t chunks;                /* of KHEO_BLOB_CHUNK bytes */
	uint64_t stored;              /* bytes in DIR/blobs after compression */
} kheo_blob_info;

typedef struct kheo_attach_options {
	unsigned int version;
	uint64_t max_bytes;           /* 0: KHEO_BLOB_DEFAULT_MAX */
} kheo_attach_options;

#define KHEO_ATTACH_OPTIONS_VERSION 1
#define KHEO_ATTACH_OPTIONS_INIT { KHEO_ATTACH_OPTIONS_VERSION, 0 }

/*
 * Store the file at `path` as a blob and name it in field `field` of
 * record `id` of `table`: added to the set when the field is a set of
 * hashes (photos), set otherwise (decision_scan).  The file must be a
 * JPEG, PNG, PDF or WebP by its first bytes, 1 byte .. max_bytes long.
 * `info` (may be NULL) is filled.  KHEO_EINVAL (not a hash field, a type
 * not accepted, an empty file), KHEO_ELIMIT (above the cap),
 * KHEO_ENOTFOUND (no such record), KHEO_EIO (the file or DIR/blobs);
 * the message says which.  A blob already held is not stored twice.
 * If the edit is refused the blob stays, unreferenced: kheo_blob_prune
 * removes it.
 */
KHEO_EXTERN int kheo_attach(kheo_db *db, const char *table, const char *id,
	const char *field, const char *path, const kheo_attach_options *o,
	kheo_blob_info *info);

/*
 * Write the blob named `hash` (64 hex digits) to `path` (replaced
 * atomically), after checking that its bytes hash to its name.
 * KHEO_ENOTFOUND when it is not complete here (the message says how many
 * chunks are), KHEO_ECORRUPT when the store's bytes do not verify.
 */
KHEO_EXTERN int kheo_blob_get(kheo_db *db, const char *hash,
	const char *path, kheo_blob_info *info);

/*
 * The blobs live records name (their current values, pending edits
 * included) that this node does not hold complete, as a JSON array
 * (kheo_free) of {"hash", "table", "id", "field", "unit", "chunks_held",
 * "chunks"} ("chunks" null when nothing of it is here), in the order a
 * sync fetches them: decision scans (single hash fields) before photos
 * (sets), newest records first.
 */
KHEO_EXTERN int kheo_blob_missing_json(kheo_db *db, char **out);

typedef struct kheo_prune_stats {
	size_t pruned;          /* blobs removed */
	uint64_t bytes;         /* their bytes in DIR/blobs */
	/* whole blobs no record names, old enough, kept: the province has
	 * not acknowledged them (no sys_blob_ack here names them) */
	size_t unacked;
} kheo_prune_stats;

/*
 * Remove the blobs that no live record names now, pending edits
 * included, and that arrived here more than `days` days ago; on any node
 * but the province, a blob held whole goes only once the province has
 * acknowledged it (a sys_blob_ack record, signed by the province, came
 * with the records that named it), so the last copy never leaves a
 * device or hub.  A partial blob goes on age alone: no record names it,
 * so nobody will complete it.  docs/architecture.md, "Attachments", says
 * why.  *out (may be NULL) says how many went, how much, and how many
 * wait for the province.
 */
KHEO_EXTERN int kheo_blob_prune(kheo_db *db, unsigned days,
	kheo_prune_stats *out);

/* ----------------------------------------------------------------- import */

typedef struct kheo_import_stats {
	size_t lines, puts, sets, deletes, skipped;
} kheo_import_stats;

/*
 * Import the op lines of a ../shared/bench trace (JSON lines: put, set,
 * del; topology, sync and end lines are skipped) as local edits of this
 * node, committed in batches; `updated_by` is dropped (the signature says
 * who).  A refused line stops the import with its line number.
 */
KHEO_EXTERN int kheo_import_jsonl(kheo_db *db, const char *path,
	kheo_import_stats *st);

/* ---------------------------------------------------------------------
 * Identity: enrolment and revocation (DESIGN.md, Identity and
 * authorisation; docs/identity.md).  A province node is its deployment's
 * root from kheo_db_init on.  Other nodes run in open mode (accepting any
 * validly signed changeset) until they accept a certificate that chains
 * to the root they were told out of band; from then on they enforce.
 */

/*
 * What needs the user's attention, as one JSON object (kheo_free): mode,
 * root and certificate (as kheo_id_json), "unacknowledged" (this node's
 * changesets no province receipt covers yet), pending edits, held and
 * quarantined counts, and "warnings": plain sentences (open mode, a
 * certificate expiring within 14 days, changesets waiting for the
 * province for more than 3 days).
 */
KHEO_EXTERN int kheo_status_json(kheo_db *db, char **out);

/* 1 when this node enforces certificates, 0 in open mode. */
KHEO_EXTERN int kheo_enforcing(const kheo_db *db);

/*
 * This node's enrolment request: one line of text ("kheo-req1:...") naming
 * its key, node role, unit and chain heads, signed by its key.  Pending
 * edits are sealed first, so the work done so far is covered by position.
 * *out is the caller's (kheo_free).
 */
KHEO_EXTERN int kheo_enroll_request(kheo_db *db, char **out);

/*
 * Issue a certificate for a request: `role` (collector, reviewer, auditor,
 * hub, province) over `unit`, valid `days` days from now.  Refused
 * (KHEO_EAUTH) unless this node may issue it: the province anything, a hub
 * roles below its own inside its scope.  The certificate is also published
 * in this node's `_sys`.  *out (kheo_free) is one line ("kheo-cert1:...")
 * holding the new certificate and this node's chain up to the root.
 */
KHEO_EXTERN int kheo_enroll_sign(kheo_db *db, const char *request,
	const char *role, const char *unit, unsigned days, char **out);

/*
 * Install a certificate chain for this node, only if it ends at `root_hex`
 * (the root key in hex, told out of band) and holds under the rules.  The
 * node then enforces.  KHEO_EAUTH with the reason otherwise.
 */
KHEO_EXTERN int kheo_enroll_accept(kheo_db *db, const char *chain,
	const char *root_hex);

/*
 * Revoke a node (hex key, or a unique prefix of 8+): every changeset of its
 * beyond what this node holds of each of its chains is rejected from now
 * on, wherever the revocation reaches, whatever its clock.  Only a hub (in
 * its scope) or the province.  `reason` may be NULL.
 */
KHEO_EXTERN int kheo_revoke(kheo_db *db, const char *node,
	const char *reason);

/* ---------------------------------------------------------------------
 * Sync sessions (DESIGN.md, Sync; docs/protocol.md, "Sync session").
 *
 * A session is a state machine over bytes, with no sockets and no threads:
 * the caller moves bytes between it and any transport (a TCP socket, a
 * phone's Bluetooth, a pipe).  It runs the secure channel (Secret
 * Handshake, then crypto_secretstream each way), checks the peer's
 * certificates, compares what the two nodes hold in the units they share
 * (and all of `_sys`), and streams what each lacks in chain order, in
 * chunks the receiver acknowledges once they are durable, so that a cut
 * session resumes where it stopped.  Database work happens inside
 * kheo_session_input: a daemon calls it off its event loop.  One thread at
 * a time per session; the kheo_db handle it is bound to must outlive the
 * binding and not be used by another thread meanwhile.  A server with many
 * sessions need not keep a handle for each: kheo_session_bind moves a
 * session to any handle of the node for the time of a call.
 *
 *   kheo_session_new(&s, db, &opts);
 *   loop:
 *     kheo_session_output(s, &p, &n); write p[0..n) to the transport;
 *     kheo_session_sent(s, n);
 *     read bytes; kheo_session_input(s, bytes, len);
 *   until kheo_session_status(s, &st) is KHEO_SESSION_DONE or _FAILED.
 */
typedef struct kheo_session kheo_session;

typedef enum kheo_session_state {
	KHEO_SESSION_HANDSHAKE = 0, /* secure channel and certificates */
	KHEO_SESSION_SYNCING = 1,   /* comparing and exchanging changesets */
	KHEO_SESSION_DONE = 2,      /* both sides have everything: close */
	KHEO_SESSION_FAILED = 3,    /* refused or broken: kheo_session_error */
} kheo_session_state;

typedef struct kheo_session_options {
	unsigned int version;
	int initiator;              /* 1: this side connected (the client) */
	/* The deployment's network key (32 bytes), without which a peer
	 * cannot even finish the handshake.  NULL: derived from the root
	 * (BLAKE2b-256 of "kheo/network/v1" || root key).  Borrowed. */
	const uint8_t *network_key;
	/* Client: the server's key it expects, hex (64 digits); NULL for any
	 * server whose certificate chains to the root.  Borrowed. */
	const char *expect_peer;
	size_t chunk_bytes;         /* frames per acknowledged chunk; 0: 64 KiB */
	uint64_t max_changesets;    /* received per session; 0: 1,000,000 */
	/* Blobs: with no_blobs this side asks for none (it still serves the
	 * peer's requests); blob_bytes_max caps the chunk bytes it fetches
	 * from the peer in this session (0: no cap), so a hub decides how
	 * much a device may push: the rest comes at the next session. */
	int no_blobs;
	uint64_t blob_bytes_max;
} kheo_session_options;

#define KHEO_SESSION_OPTIONS_VERSION 2
#define KHEO_SESSION_OPTIONS_INIT { KHEO_SESSION_OPTIONS_VERSION, 0, NULL, NULL, 0, 0, 0, 0 }

typedef struct kheo_session_stats {
	uint64_t bytes_in, bytes_out;   /* on the transport */
	size_t sent, received;          /* changesets, this session */
	/* frame bytes sent, and of those the ones the peer acknowledged:
	 * after a cut, the difference is what the next session sends again
	 * (at most one chunk) */
	uint64_t frame_bytes, frame_bytes_acked;
	size_t to_send, to_receive;     /* what is left, as far as known */
	kheo_apply_stats apply;         /* what receipt made of them */
	int64_t clock_offset_ms;        /* peer wall clock minus ours */
	char peer[KHEO_KEY_HEX + 1];    /* the peer's key, once known */
	char scope[256];                /* the units the session covers */
	/* blobs, this session: chunks and their bytes as sent (compressed or
	 * not) each way; blobs completed here; blobs refused here (a chunk
	 * that did not verify, a whole that did not hash to its name), the
	 * last reason in blob_error; blobs the peer named none of this side
	 * could fetch because of no_blobs or blob_bytes_max: still missing */
	size_t blob_chunks_in, blob_chunks_out;
	uint64_t blob_bytes_in, blob_bytes_out;
	size_t blobs_completed, blobs_refused, blobs_left;
	char blob_error[256];
	/* the sync version the peer's HELLO gave (docs/protocol.md 12.2);
	 * below 2 the peer knows no blobs, so none moved either way and
	 * blobs_left counts what this side still lacks */
	unsigned peer_version;
} kheo_session_stats;

/* A session on `db`.  KHEO_EINVAL for bad options; KHEO_EAUTH when this
 * node cannot sync (open mode: not enrolled, or cannot sign). */
KHEO_EXTERN int kheo_session_new(kheo_session **out, kheo_db *db,
	const kheo_session_options *opts);
/* Needs no handle: a session may be freed while bound to none. */
KHEO_EXTERN void kheo_session_free(kheo_session *s);

/*
 * Bind the session to `db`, another handle of the same node (the same
 * data directory, opened so that it may sign), or to none with NULL.  A
 * session is bound to the handle it was made on; between calls it keeps
 * no statement, transaction or pointer into that handle but the binding,
 * so a server may hold a few handles for many sessions (one per worker
 * thread, say) and bind a session to one only while it runs
 * kheo_session_input.  The handle is borrowed, not owned: it must stay
 * open while bound, and the session never closes it.  kheo_session_input
 * needs a binding (calling it unbound is misuse: it aborts);
 * kheo_session_output, _sent, _status, _error and _free do not.
 * KHEO_EINVAL when `db` is a handle of another node, KHEO_EAUTH when it
 * may not sign (opened without the passphrase that seals node.key); the
 * message is on `db`, and the binding is left as it was.
 */
KHEO_EXTERN int kheo_session_bind(kheo_session *s, kheo_db *db);

/* Bytes that came from the peer, all consumed.  An error (the session is
 * then FAILED) when the peer is refused or breaks the protocol. */
KHEO_EXTERN int kheo_session_input(kheo_session *s, const uint8_t *p,
	size_t n);
/* Bytes waiting to go to the peer (borrowed until the next call on s);
 * *n == 0: nothing now.  kheo_session_sent() says how many went. */
KHEO_EXTERN void kheo_session_output(kheo_session *s, const uint8_t **p,
	size_t *n);
KHEO_EXTERN void kheo_session_sent(kheo_session *s, size_t n);

/* Where the session is; `st` (may be NULL) filled. */
KHEO_EXTERN kheo_session_state kheo_session_status(const kheo_session *s,
	kheo_session_stats *st);
/* Why it failed, for a log line naming the peer; "" if it did not. */
KHEO_EXTERN const char *kheo_session_error(const kheo_session *s);

/* ---------------------------------------------------------------------
 * The audit mirror (DESIGN.md, Audit; docs/auditor.md).
 *
 * A node's applied changesets, written as a git repository that auditors
 * read with stock git: one commit per applied changeset, in this node's
 * apply order, whose tree is the readable state (UNIT/TABLE/AB/ID.json,
 * AB the id's first two hex digits, one field per line) plus the signed
 * changesets (_changesets/ab/cd/ef....kcs)
 * and the mirror's facts (_kheo/mirror.json, _kheo/schema.json).  Git
 * author = the changeset's author, dated by its clock; committer = the
 * mirroring node, dated when it applied the changeset.  The byte layout
 * and the commit message's trailers are in docs/auditor.md.
 *
 * Built with libgit2; a build with AUDIT=0 (phones) has these calls, and
 * they fail with KHEO_EUNSUPPORTED.
 */

typedef struct kheo_audit_stats {
	size_t commits;      /* commits written (export) or read */
	size_t changesets;   /* changesets replayed into the rebuilt state */
	size_t ops;          /* their ops */
	size_t errors;       /* findings: the mirror is not what kheo wrote */
	size_t warnings;     /* findings about the history it records:
			      * equivocation, back-dating */
	char tip[41];        /* the mirror's head commit (hex), "" if none */
	char digest[65];     /* replay: kheo_digest of the rebuilt state
			      * under the mirrored node's unit, in hex */
} kheo_audit_stats;

/*
 * Append to the mirror in `gitdir` (a bare repository, made when the
 * folder is missing or empty) a commit for every changeset this node
 * applied since the last export, and move refs/heads/main to the last.
 * The history already there is verified first (as kheo_audit_verify
 * does) and rebuilt, unless the rebuild the last export kept in
 * GITDIR/kheo-rebuild.db is the state of the mirror's head: a mirror that
 * does not verify, or that mirrors another node, is refused
 * (KHEO_ECORRUPT, KHEO_EINVAL) and left as it was.  Pending (unsealed) edits are not exported.  Objects are written as
 * packs, and the branch moves only after they are on disk, so an
 * interrupted export leaves the mirror as it was before.  Errors on db
 * (kheo_errmsg).  st (may be NULL) is filled.
 */
KHEO_EXTERN int kheo_audit_export(kheo_db *db, const char *gitdir,
	kheo_audit_stats *st);

/* What kheo_audit_verify found, handed to the options' callback. */
typedef enum kheo_audit_severity {
	KHEO_AUDIT_ERROR = 1,   /* the mirror was altered: verify fails */
	KHEO_AUDIT_WARNING = 2, /* the history is genuine but says something
				 * an auditor must see */
} kheo_audit_severity;

typedef struct kheo_audit_finding {
	kheo_audit_severity severity;
	const char *kind;   /* "edited", "added", "removed", "changeset",
			     * "history", "dates", "message", "chain-gap",
			     * "rejected", "equivocation", "back-dated",
			     * "taken-back" (a revocation took back a
			     * changeset mirrored before it) */
	size_t seq;         /* the commit's place in the history (1 is the
			     * first), 0 when it concerns no one commit */
	const char *commit; /* its id (hex), "" when none */
	const char *path;   /* the file concerned, "" when none */
	const char *msg;    /* a sentence for people */
} kheo_audit_finding;

#define KHEO_AUDIT_BACKDATE_MS (7LL * 24 * 3600 * 1000)

typedef struct kheo_audit_options {
	unsigned int version;
	/* A changeset is back-dated when its clock lies more than this before
	 * the first province receipt that covers it; 0: 7 days. */
	int64_t backdate_ms;
	/* Every finding, as it is found (the pointers are borrowed for the
	 * call); NULL to only count them. */
	void (*finding)(const kheo_audit_finding *f, void *payload);
	void *payload;
} kheo_audit_options;

#define KHEO_AUDIT_OPTIONS_VERSION 1
#define KHEO_AUDIT_OPTIONS_INIT { KHEO_AUDIT_OPTIONS_VERSION, 0, NULL, NULL }

/* A mirror opened for reading: no node needed, only the git repository
 * (bare, or a clone with a work tree). */
typedef struct kheo_audit kheo_audit;

/*
 * Open the mirror in `gitdir`: its history from HEAD down to the first
 * commit, and the mirrored node's facts.  As for kheo_db_open, *out is
 * set even on failure when memory allows, for kheo_audit_errmsg; free it
 * with kheo_audit_free either way.  KHEO_ENOTFOUND when it is not a git
 * repository or has no commits, KHEO_ECORRUPT when it is not a mirror.
 */
KHEO_EXTERN int kheo_audit_open(kheo_audit **out, const char *gitdir,
	const kheo_audit_options *opts);
KHEO_EXTERN void kheo_audit_free(kheo_audit *a);
/* The last error's message; borrowed until the next call on a. */
KHEO_EXTERN const char *kheo_audit_errmsg(const kheo_audit *a);

/*
 * Re-verify every changeset (signature, id, chain), rebuild the state
 * from them commit by commit with the merge code every node runs, and
 * compare every commit (its tree, message, author and committer) with
 * what kheo would have written.  Chain gaps and equivocation, back-dated
 * changesets: findings.  KHEO_ECORRUPT when any finding is an error
 * (the first one's sentence in kheo_audit_errmsg); KHEO_OK otherwise,
 * warnings or not.  Can be called once per handle.
 */
KHEO_EXTERN int kheo_audit_verify(kheo_audit *a, kheo_audit_stats *st);

typedef struct kheo_audit_blob_stats {
	size_t blobs;     /* distinct blobs live records of the head name */
	size_t intact;    /* in the store whole, hashing to their names */
	size_t missing;   /* none of it, or only part, in the store */
	size_t damaged;   /* a chunk file gone or altered, or the whole
			   * does not hash to its name */
} kheo_audit_blob_stats;

/*
 * After kheo_audit_verify: check a blob store against the mirror.  The
 * mirror records attachments by hash only; `datadir` is a data directory
 * holding their bytes (the node's, or a copy of its kheo.db and blobs/).
 * Every blob a live record of the mirror's head names must be there whole
 * and hash to its name; each record naming one that is not is an error
 * finding (kind "blob-missing" or "blob-damaged", path the record's file
 * in the mirror, the message naming the field and the blob).
 * KHEO_ECORRUPT when a blob is missing or damaged; KHEO_EINVAL before
 * kheo_audit_verify; the open's error when datadir is not a data
 * directory (the message in kheo_audit_errmsg).  st (may be NULL) is
 * filled.
 */
KHEO_EXTERN int kheo_audit_verify_blobs(kheo_audit *a, const char *datadir,
	kheo_audit_blob_stats *st);

typedef enum kheo_replay_mode {
	/* the changesets clocked up to the date (and every _sys changeset:
	 * the certificates and units every decision rests on) */
	KHEO_REPLAY_CLOCK = 1,
	/* the changesets the mirrored node had applied by the date: the
	 * state it held then */
	KHEO_REPLAY_RECEIVED = 2,
} kheo_replay_mode;

/*
 * Rebuild the state up to `until_ms` (ms since the epoch, UTC).  With
 * `outdir`, write it as a new data directory there (refused if it holds a
 * node): the mirrored node's key, unit and root, no secret key, so it
 * opens for reading with the CLI, and its kheo.db with sqlite3.  With
 * json_out (may be NULL), a JSON object (kheo_free) of the mode, the date,
 * counts, the digest and every record ("_table" added).  Signatures are
 * checked as for verify, trees are not.  Can be called once per handle.
 */
KHEO_EXTERN int kheo_audit_replay(kheo_audit *a, kheo_replay_mode mode,
	int64_t until_ms, const char *outdir, char **json_out,
	kheo_audit_stats *st);

/*
 * A date as people and scripts write it, to ms since the epoch (UTC):
 * 2024-05-01 (the end of that day), 2024-05-01T10:30[:15[.250]] with an
 * optional Z or +07:00 (UTC without one), or @MS.  KHEO_EINVAL otherwise.
 */
KHEO_EXTERN int kheo_audit_parse_time(int64_t *out, const char *text);

#ifdef __cplusplus
}
#endif

#endif /* KHEO_H */
