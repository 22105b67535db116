/*
 * proto.h - kheo's wire and storage formats: pure functions over buffers.
 *
 * What is here: canonical varints and values, the changeset encoding and its
 * strict decoder, changeset ids (BLAKE2b-256) and signatures (Ed25519), and
 * the zstd frame a signed changeset is stored and sent in, bundles,
 * certificates, and the secure channel (Secret Handshake, then
 * crypto_secretstream records).  The byte layout is specified in
 * docs/protocol.md; this header is the C view of it.
 *
 * What is not here: storage, sockets, clocks, merge.  proto/ knows nothing of
 * SQLite or of the network, so it can be fuzzed and cross-tested alone.
 *
 * This header is private to libkheo (the public API is kheo.h); tests and
 * the benchmark use it directly.
 */
#ifndef KHEO_PROTO_H
#define KHEO_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "kheo.h"

/* ---------------------------------------------------------------- limits */

/*
 * Hard caps.  Every count and length read from bytes is checked against
 * these before anything is allocated.  They are part of the format: a
 * changeset one implementation accepts, every other must accept too.
 */
#define KHEO_CS_VERSION 1          /* changeset format version */
#define KHEO_CS_RAW_MAX (16u << 20) /* canonical changeset bytes */
#define KHEO_CS_OPS_MAX 262144u    /* ops in one changeset */
#define KHEO_CS_PARENTS_MAX 8u     /* other parents besides `previous` */
#define KHEO_CS_KEYS_MAX 4096u     /* interned keys besides the author */
#define KHEO_OP_FIELDS_MAX 256u    /* fields in one put */
#define KHEO_OP_PRED_MAX 1024u     /* op ids in one pred list */
#define KHEO_NAME_MAX 64u          /* bytes in a field name */
#define KHEO_UNIT_MAX 255u         /* bytes in a unit path */
#define KHEO_UNIT_DEPTH_MAX 16u    /* segments in a unit path */
#define KHEO_VALUE_MAX (1u << 20)  /* bytes in one text or bytes value */
#define KHEO_SCHEMA_VERSION_MAX 0xffffffffu

#define KHEO_KEY_SIZE 32   /* Ed25519 public key */
#define KHEO_SECRET_SIZE 64 /* libsodium's Ed25519 secret key (seed || pk) */
#define KHEO_SIG_SIZE 64   /* Ed25519 signature */
#define KHEO_ID_SIZE 32    /* BLAKE2b-256 content hash */
#define KHEO_RECORD_SIZE 16 /* random record id */

/* Signature contexts: one per kind of signed object, never shared. */
#define KHEO_CTX_CHANGESET "kheo/changeset/v1"
#define KHEO_CTX_CERT "kheo/cert/v1"
#define KHEO_CTX_ENROLL "kheo/enroll/v1"

/* --------------------------------------------------------------- refusals */

/*
 * Why bytes were refused.  Each rule of the format has its own reason, so a
 * test (or an operator reading a quarantine) can tell exactly what was wrong;
 * kheo_reason_error() maps a reason to the coarse kheo_error code.
 * Values are pinned: they are stored with quarantined changesets.
 */
typedef enum kheo_reason {
	KHEO_R_NONE = 0,
	KHEO_R_TRUNCATED = 1,        /* input ends inside an item */
	KHEO_R_OVERLONG_VARINT = 2,  /* varint not in its shortest form */
	KHEO_R_VARINT_OVERFLOW = 3,  /* varint above 2^64-1 or its field's range */
	KHEO_R_TRAILING_BYTES = 4,   /* bytes after the last item */
	KHEO_R_BAD_VERSION = 5,      /* unknown format version */
	KHEO_R_BAD_ENUM = 6,         /* op kind or value tag out of range */
	KHEO_R_UNSORTED = 7,         /* a list that must ascend does not */
	KHEO_R_DUPLICATE = 8,        /* a list that must be a set repeats */
	KHEO_R_BAD_UTF8 = 9,         /* text not valid UTF-8, or holds NUL */
	KHEO_R_BAD_NAME = 10,        /* field name outside [a-z_][a-z0-9_]* */
	KHEO_R_BAD_UNIT = 11,        /* unit not a slug path nor "_sys" */
	KHEO_R_BAD_REAL = 12,        /* real is NaN or infinite */
	KHEO_R_TOO_MANY = 13,        /* a count above its hard cap */
	KHEO_R_TOO_BIG = 14,         /* a length above its hard cap */
	KHEO_R_SIZE_MISMATCH = 15,   /* decompressed size is not the declared */
	KHEO_R_BAD_CLOCK = 16,       /* clocks not rising, pred not before op */
	KHEO_R_BAD_CHAIN = 17,       /* useq 0, or previous where none can be */
	KHEO_R_UNUSED_KEY = 18,      /* interned key that no pred names */
	KHEO_R_BAD_KEY_INDEX = 19,   /* pred names a key not in the table */
	KHEO_R_BAD_MAGIC = 20,       /* not a kheo frame */
	KHEO_R_BAD_FRAME = 21,       /* zstd refused the compressed payload */
	KHEO_R_UNKNOWN_DICT = 22,    /* frame names a dictionary we lack */
	KHEO_R_BAD_SIGNATURE = 23,   /* Ed25519 signature does not verify */
	KHEO_R_EMPTY = 24,           /* a changeset with no ops */
	KHEO_R_BAD_FLAGS = 25,       /* reserved frame flag bits set */
	/* Authorisation (client-core/src/authz.c): decided from the
	 * changeset and the `_sys` facts a node holds. */
	KHEO_R_BAD_CERT = 26,        /* a certificate that does not hold */
	KHEO_R_OUT_OF_SCOPE = 27,    /* unit outside every scope of the author */
	KHEO_R_ROLE_FORBIDS = 28,    /* a field or value the role may not set */
	KHEO_R_REVOKED = 29,         /* beyond the author's revocation */
	KHEO_R_NOT_ENROLLED = 30,    /* author certified only by another root */
	/* Secure channel (proto/handshake.c, proto/stream.c). */
	KHEO_R_BAD_HELLO = 31,       /* hello HMAC fails: another network key */
	KHEO_R_BAD_AUTH = 32,        /* handshake box does not open */
	KHEO_R_BAD_KEY = 33,         /* a peer key of low order, or not a key */
	KHEO_R_BAD_RECORD = 34,      /* stream record does not authenticate */
	KHEO_R_REASON_COUNT
} kheo_reason;

/* A refusal: reason, byte offset where it was found, and a message. */
typedef struct kheo_refusal {
	int reason;       /* kheo_reason */
	size_t offset;    /* offset in the input the reason refers to */
	char msg[200];    /* human-readable, names the item and the rule */
} kheo_refusal;

/* Stable identifier of a reason, e.g. "overlong-varint"; static storage. */
const char *kheo_reason_name(int reason);

/* The kheo_error code a reason maps to (KHEO_EPROTO, KHEO_ELIMIT, ...). */
int kheo_reason_error(int reason);

/* Fill `why` (if not NULL) and return kheo_reason_error(reason). */
int kheo__refuse(kheo_refusal *why, int reason, size_t offset,
	const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ------------------------------------------------------------------ buffer */

/* A growable byte buffer.  Zero-initialise; free with kheo_buf_free. */
typedef struct kheo_buf {
	uint8_t *p;
	size_t len;
	size_t cap;
	int oom;  /* set once an append failed; later appends do nothing */
} kheo_buf;

void kheo_buf_free(kheo_buf *b);
void kheo_buf_reset(kheo_buf *b);
/* Make room for n more bytes; KHEO_OK or KHEO_ENOMEM (and b->oom set). */
int kheo_buf_reserve(kheo_buf *b, size_t n);
void kheo_buf_put(kheo_buf *b, const void *p, size_t n);
void kheo_buf_put_u8(kheo_buf *b, uint8_t v);
void kheo_buf_put_varint(kheo_buf *b, uint64_t v);
/* Varint length, then the bytes. */
void kheo_buf_put_str(kheo_buf *b, const void *p, size_t n);

/* ------------------------------------------------------------------ reader */

/* A cursor over input bytes; every read is bounds-checked. */
typedef struct kheo_reader {
	const uint8_t *p;
	size_t len;
	size_t off;
	kheo_refusal *why;
} kheo_reader;

void kheo_reader_init(kheo_reader *r, const void *p, size_t len,
	kheo_refusal *why);
int kheo_read_u8(kheo_reader *r, uint8_t *out, const char *what);
int kheo_read_bytes(kheo_reader *r, const uint8_t **out, size_t n,
	const char *what);
/* A canonical varint no greater than max. */
int kheo_read_varint(kheo_reader *r, uint64_t *out, uint64_t max,
	const char *what);
/* KHEO_R_TRAILING_BYTES unless every byte was read. */
int kheo_read_end(kheo_reader *r, const char *what);

/* Encode v as a varint into out (at least 10 bytes); returns its length. */
size_t kheo_varint_encode(uint8_t out[10], uint64_t v);

/* ------------------------------------------------------------------ values */

/* kheo_value, a typed value, is public: see kheo.h. */

/* Append a value's canonical bytes (docs/protocol.md section 3). */
int kheo_value_encode(kheo_buf *b, const kheo_value *v);

/* Is [p, p+n) valid UTF-8 without NUL?  1 or 0. */
int kheo_utf8_valid(const uint8_t *p, size_t n);
/* Is this a valid field name?  1 or 0. */
int kheo_name_valid(const char *p, size_t n);
/* Is this a valid unit path ("_sys" or slug/slug/...)?  1 or 0. */
int kheo_unit_valid(const char *p, size_t n);

/* ------------------------------------------------------------------ ops */

typedef enum kheo_op_kind {
	KHEO_OP_PUT = 1,    /* create a record with fields */
	KHEO_OP_SET = 2,    /* set one field */
	KHEO_OP_ADD = 3,    /* add a member to a set field */
	KHEO_OP_REMOVE = 4, /* remove the adds named in pred from a set */
	KHEO_OP_DELETE = 5, /* set the hidden _deleted field */
} kheo_op_kind;

/* "put", "set", "add", "remove", "delete"; "unknown" otherwise. */
const char *kheo_op_name(int kind);

/* An op id: (hybrid clock, author key).  key points at 32 bytes. */
typedef struct kheo_opid {
	uint64_t clock;
	const uint8_t *key;
} kheo_opid;

/* A field name (NUL-terminated) and its value. */
typedef struct kheo_field {
	const char *name;
	kheo_value value;
} kheo_field;

/*
 * One op on record `record` of table `table`.  PUT carries nfields fields (ascending by name); SET, ADD and
 * REMOVE exactly one (for ADD/REMOVE the value is the member); DELETE none.
 * pred ascends by (clock, key bytes), every clock below the op's own.
 */
typedef struct kheo_op {
	kheo_op_kind kind;
	uint64_t clock;
	const char *table;                /* schema table, a field name */
	uint8_t record[KHEO_RECORD_SIZE];
	const kheo_field *fields;
	size_t nfields;
	const kheo_opid *pred;
	size_t npred;
} kheo_op;

/* Total order of op ids: by clock, then key bytes.  <0, 0, >0. */
int kheo_opid_cmp(const kheo_opid *a, const kheo_opid *b);

/* ------------------------------------------------------------ changesets */

/*
 * A changeset: a batch of ops by one author within one unit.
 *
 * For kheo_changeset_encode the caller fills every field but clock_min and
 * clock_max, which the encoder computes from the ops.  From
 * kheo_changeset_decode everything lives in one allocation owned by the
 * struct: free it with kheo_changeset_free.
 */
typedef struct kheo_changeset {
	uint32_t version;                 /* KHEO_CS_VERSION */
	uint8_t author[KHEO_KEY_SIZE];
	const char *unit;                 /* NUL-terminated */
	uint32_t schema_version;
	uint64_t useq;                    /* 1 for the first of a chain */
	uint8_t prev[KHEO_ID_SIZE];       /* meaningful when useq > 1 */
	uint8_t parents[KHEO_CS_PARENTS_MAX][KHEO_ID_SIZE];
	size_t nparents;                  /* ascending, none equal to prev */
	uint64_t clock_min, clock_max;
	const kheo_op *ops;               /* clocks strictly rising */
	size_t nops;
} kheo_changeset;

/*
 * Encode `cs` canonically, appending to `out`.  Refuses (with the reason the
 * decoder would give) anything the decoder would refuse, so every encoded
 * changeset decodes back to itself.
 */
int kheo_changeset_encode(kheo_buf *out, const kheo_changeset *cs,
	kheo_refusal *why);

/* Decode canonical bytes.  *out is the caller's (kheo_changeset_free). */
int kheo_changeset_decode(kheo_changeset **out, const uint8_t *raw,
	size_t len, kheo_refusal *why);

void kheo_changeset_free(kheo_changeset *cs);

/* The changeset id: BLAKE2b-256 of the canonical bytes. */
void kheo_changeset_id(uint8_t id[KHEO_ID_SIZE], const uint8_t *raw,
	size_t len);

/* Sign `"kheo/changeset/v1" || id` with an Ed25519 secret key. */
void kheo_changeset_sign(uint8_t sig[KHEO_SIG_SIZE],
	const uint8_t id[KHEO_ID_SIZE], const uint8_t sk[KHEO_SECRET_SIZE]);

/* KHEO_OK, or KHEO_EAUTH (reason BAD_SIGNATURE) when sig does not verify. */
int kheo_changeset_verify(const uint8_t sig[KHEO_SIG_SIZE],
	const uint8_t id[KHEO_ID_SIZE], const uint8_t author[KHEO_KEY_SIZE],
	kheo_refusal *why);

/* ------------------------------------------------------------------ frames */

#define KHEO_FRAME_MAGIC "KCS\x01"
#define KHEO_FRAME_MAGIC_SIZE 4
#define KHEO_FRAME_F_ZSTD 0x01  /* payload is one zstd frame */
#define KHEO_FRAME_F_DICT 0x02  /* ... compressed with the named dictionary */
#define KHEO_ZSTD_WINDOW_LOG 17 /* bounded window: 128 KiB per stream */

/*
 * A zstd dictionary, named by the BLAKE2b-256 of its bytes, so that it can
 * be replicated as a content-addressed artifact.  Opaque.
 */
typedef struct kheo_dict kheo_dict;

int kheo_dict_new(kheo_dict **out, const void *bytes, size_t len, int level);
void kheo_dict_free(kheo_dict *d);
/* The dictionary's name; borrowed for the dictionary's lifetime. */
const uint8_t *kheo_dict_id(const kheo_dict *d);

/*
 * Train a dictionary from samples (zstd's trainer).  *out receives the
 * dictionary bytes, owned by the caller (kheo__free).
 */
int kheo_dict_train(uint8_t **out, size_t *outlen, size_t capacity,
	const uint8_t *samples, const size_t *sizes, size_t nsamples);

/*
 * Compression state reused across frames (a zstd context each way) and the
 * dictionaries known to the reader.  Not thread-safe: one per thread.
 */
typedef struct kheo_codec kheo_codec;

/* level: zstd's level (1..19, negative for its fast modes), or 0 to store
 * every frame uncompressed. */
int kheo_codec_new(kheo_codec **out, int level);
void kheo_codec_free(kheo_codec *c);
/* Compress with `d` from now on (NULL: none).  Borrowed; keep it alive. */
void kheo_codec_use_dict(kheo_codec *c, const kheo_dict *d);
/* Let the reader decode frames that name `d`.  Borrowed; keep it alive. */
int kheo_codec_add_dict(kheo_codec *c, const kheo_dict *d);

/*
 * Append the frame of a signed changeset to `out`.  The payload is stored
 * compressed only when that makes it smaller.
 */
int kheo_frame_write(kheo_codec *c, kheo_buf *out, const uint8_t *raw,
	size_t rawlen, const uint8_t sig[KHEO_SIG_SIZE]);

/*
 * Read one frame occupying exactly [frame, frame+len).  The canonical bytes
 * go to `raw` (reset first), the signature to `sig`.  Refuses bad magic,
 * reserved flags, unknown dictionaries, sizes above KHEO_CS_RAW_MAX, payloads
 * that do not decompress to exactly the declared size, trailing bytes.
 */
int kheo_frame_read(kheo_codec *c, kheo_buf *raw, uint8_t sig[KHEO_SIG_SIZE],
	const uint8_t *frame, size_t len, kheo_refusal *why);

/*
 * One zstd frame of n bytes at `level`, with the format's 128 KiB window
 * and no dictionary, appended to out: a sync session's chunk of frames
 * (docs/protocol.md, "Sync session"), compressed as a whole.
 */
int kheo_codec_pack(kheo_codec *c, kheo_buf *out, const uint8_t *p,
	size_t n, int level);
/*
 * Its reverse: exactly rawlen bytes appended to out, or a refusal as for a
 * frame's payload (bad-frame, size-mismatch, trailing-bytes; a window
 * above 128 KiB).  Decompression stops at rawlen: a bomb goes no further.
 */
int kheo_codec_unpack(kheo_codec *c, kheo_buf *out, const uint8_t *p,
	size_t n, size_t rawlen, kheo_refusal *why);

/*
 * Everything a receiver does with a frame before trusting it: read the
 * frame, decode the changeset, compute its id, verify the signature.
 * On success *out is the caller's and `id` holds its id; `raw` keeps the
 * canonical bytes.
 */
int kheo_frame_open(kheo_codec *c, kheo_changeset **out,
	uint8_t id[KHEO_ID_SIZE], kheo_buf *raw, const uint8_t *frame,
	size_t len, kheo_refusal *why);

/* ----------------------------------------------------------------- bundles */

#define KHEO_BUNDLE_MAGIC "KHB\x01"

/* What a node holds of one (author, unit) chain: its highest useq, by id. */
typedef struct kheo_head {
	uint8_t author[KHEO_KEY_SIZE];
	char unit[KHEO_UNIT_MAX + 1];
	uint64_t useq;
	uint8_t id[KHEO_ID_SIZE];
} kheo_head;

/* One chunk of a blob as a CHUNK message and a bundle carry it
 * (docs/protocol.md, "Blobs"). */
typedef struct kheo_blob_chunk {
	uint8_t hash[KHEO_ID_SIZE];        /* the blob's name */
	uint64_t index;
	uint64_t size;                     /* the whole blob's */
	int z;                             /* data is zstd */
	uint8_t chash[KHEO_ID_SIZE];       /* of the raw chunk */
	const uint8_t *p;                  /* data, in the input */
	size_t n;
} kheo_blob_chunk;

/* hash | index | size | flags | chunk hash | data (str) */
void kheo_chunk_put(kheo_buf *b, const kheo_blob_chunk *c);
/* The same, read strictly: index within the blob, flags 0 or 1, raw data
 * exactly the chunk's length, compressed data at most 64 KiB + 1 KiB. */
int kheo_chunk_read(kheo_reader *r, kheo_blob_chunk *c);

/*
 * A bundle: the sender, what it held (heads, ascending by author then
 * unit), and frames in chain order.  From kheo_bundle_decode, frames point
 * into the decoded input, which must outlive the bundle.
 */
typedef struct kheo_bundle {
	uint8_t sender[KHEO_KEY_SIZE];
	uint64_t created_ms;
	kheo_head *heads;
	size_t nheads;
	const uint8_t **frames;
	size_t *lens;
	size_t nframes;
	/* blob chunks, ascending by (hash, index): format version 2, written
	 * only when there are any */
	kheo_blob_chunk *chunks;
	size_t nchunks;
} kheo_bundle;

/* Append the bundle, digested and signed with the sender's secret key. */
int kheo_bundle_encode(kheo_buf *out, const kheo_bundle *b,
	const uint8_t sk[KHEO_SECRET_SIZE]);
/* Check digest and signature, then parse; nothing is trusted before. */
int kheo_bundle_decode(kheo_bundle **out, const uint8_t *p, size_t n,
	kheo_refusal *why);
void kheo_bundle_free(kheo_bundle *b);

/* ------------------------------------------------------------ certificates */

/*
 * Roles a certificate can give (DESIGN.md, Identity and authorisation).
 * Values are pinned: they are in signed certificates.
 */
typedef enum kheo_role {
	KHEO_ROLE_NONE = 0,       /* not a certificate role: open mode */
	KHEO_ROLE_COLLECTOR = 1,  /* records models and visits in its unit */
	KHEO_ROLE_REVIEWER = 2,   /* also recognises, levels, sends back */
	KHEO_ROLE_AUDITOR = 3,    /* reads and replays; writes nothing */
	KHEO_ROLE_HUB = 4,        /* serves a district; issues below itself */
	KHEO_ROLE_PROVINCE = 5,   /* the province: issues anything */
} kheo_role;

/* "collector", ...; "none" for 0 and "unknown" out of range. */
const char *kheo_role_name(int role);
/* The role named, or KHEO_ROLE_NONE. */
int kheo_role_parse(const char *name);

#define KHEO_CERT_MAGIC "KCT\x01"
#define KHEO_REQ_MAGIC "KRQ\x01"
#define KHEO_CERT_HEADS_MAX 16u   /* chain heads named in one certificate */
#define KHEO_CERT_TEXT_MAX 8192u  /* one line of certificate chain text */

/* A chain head an enrolment request names: (unit, useq, id). */
typedef struct kheo_cert_head {
	char unit[KHEO_UNIT_MAX + 1];
	uint64_t useq;
	uint8_t id[KHEO_ID_SIZE];
} kheo_cert_head;

/*
 * A certificate: the issuer says that `subject` has `role` over the units
 * under `scope` from not_before to not_after (ms since the epoch), and that
 * it covers the subject's chains up to the heads named (work done before
 * enrolment), by chain position.  A root certificate is its own issuer.
 */
typedef struct kheo_cert {
	uint8_t subject[KHEO_KEY_SIZE];
	int role;                         /* kheo_role */
	char scope[KHEO_UNIT_MAX + 1];    /* a unit path */
	uint64_t not_before, not_after;   /* not_after > not_before */
	uint8_t issuer[KHEO_KEY_SIZE];
	kheo_cert_head heads[KHEO_CERT_HEADS_MAX]; /* ascending by unit */
	size_t nheads;
	uint8_t sig[KHEO_SIG_SIZE];
	uint8_t digest[KHEO_ID_SIZE];     /* BLAKE2b-256 of the signed part */
} kheo_cert;

/* Sign `c` with the issuer's secret key (filling sig and digest), and
 * append its canonical bytes. */
int kheo_cert_encode(kheo_buf *out, kheo_cert *c,
	const uint8_t sk[KHEO_SECRET_SIZE]);
/* Decode strictly and verify the issuer's signature. */
int kheo_cert_decode(kheo_cert *out, const uint8_t *p, size_t n,
	kheo_refusal *why);

/*
 * An enrolment request: a node's key, the role of node it is and the unit
 * it asks for, when it asked, and its chain heads; signed by its own key,
 * which proves it holds the secret.
 */
typedef struct kheo_enroll_req {
	uint8_t key[KHEO_KEY_SIZE];
	int node_role;                    /* kheo_node_role */
	char unit[KHEO_UNIT_MAX + 1];
	uint64_t created_ms;
	kheo_cert_head heads[KHEO_CERT_HEADS_MAX];
	size_t nheads;
	uint8_t sig[KHEO_SIG_SIZE];
} kheo_enroll_req;

int kheo_enroll_req_encode(kheo_buf *out, kheo_enroll_req *r,
	const uint8_t sk[KHEO_SECRET_SIZE]);
int kheo_enroll_req_decode(kheo_enroll_req *out, const uint8_t *p,
	size_t n, kheo_refusal *why);

/*
 * One line of text for people to pass around: `prefix` then each item in
 * URL-safe base64 without padding, items joined by '.'.  Used for
 * "kheo-req1:" (one request) and "kheo-cert1:" (a certificate, then its
 * issuer's, up to the root).
 */
int kheo_text_encode(kheo_buf *out, const char *prefix,
	const uint8_t *const *items, const size_t *lens, size_t n);
/*
 * Parse such a line (surrounding white space ignored) into `bytes`: the
 * items' bytes back to back, with each one's offset and length in off/lens
 * (up to max items).  KHEO_EPROTO with a message in why when malformed.
 */
int kheo_text_decode(kheo_buf *bytes, size_t *off, size_t *lens,
	size_t max, size_t *n, const char *prefix, const char *text,
	size_t len, kheo_refusal *why);

/* Is unit `u` equal to, or under, `scope`?  ("a/b" is under "a", not
 * under "a/bc".)  1 or 0. */
int kheo_unit_within(const char *u, const char *scope);

/* ------------------------------------------------------- sync messages */

/* The version a HELLO carries (docs/protocol.md 12.2): 2 adds the blob
 * phase (WANT ... END, messages 8-13).  A node reads HELLOs of versions
 * MIN to VERSION and runs a session at the lower of the two sides', so a
 * version 1 peer gets a session of records only, never a message it does
 * not know. */
#define KHEO_SYNC_VERSION 2
#define KHEO_SYNC_VERSION_MIN 1
#define KHEO_SYNC_VERSION_BLOBS 2
#define KHEO_SYNC_CERTS_MAX 8u         /* certificates in a HELLO */
#define KHEO_SYNC_HEADS_MAX 65536u     /* heads in one HEADS message */
#define KHEO_SYNC_CHUNK_FRAMES_MAX 65536u /* frames in one FRAMES message */

typedef enum kheo_msg_type {
	KHEO_MSG_HELLO = 1,   /* who I am, what I cover, a summary of it */
	KHEO_MSG_HEADS = 2,   /* my chain heads in the session's scope */
	KHEO_MSG_FRAMES = 3,  /* a chunk of changeset frames, in chain order */
	KHEO_MSG_ACK = 4,     /* that chunk is durable here */
	KHEO_MSG_DONE = 5,    /* I have sent all I have for you */
	KHEO_MSG_REFUSE = 6,  /* why I stop (then the channel closes) */
	KHEO_MSG_PACKED = 7,  /* another message, zstd-compressed */
	KHEO_MSG_WANT = 8,    /* which of these blobs do you hold whole? */
	KHEO_MSG_HAVE = 9,    /* these, of these sizes */
	KHEO_MSG_GET = 10,    /* send me chunk i of blob h */
	KHEO_MSG_CHUNK = 11,  /* chunk i of blob h, as stored */
	KHEO_MSG_LACK = 12,   /* I cannot send blob h after all */
	KHEO_MSG_END = 13,    /* I ask for no more blobs */
} kheo_msg_type;

/* Blobs in a session (docs/protocol.md, "Blobs"): the same numbers as
 * kheo.h's KHEO_BLOB_CHUNK and KHEO_BLOB_SIZE_MAX, repeated here because
 * proto/ does not include the public header. */
#define KHEO_SYNC_BLOB_CHUNK (64u * 1024)
#define KHEO_SYNC_BLOB_SIZE_MAX (256u << 20)
#define KHEO_SYNC_WANT_MAX 1024u          /* hashes in a WANT or HAVE */
/* a compressed chunk may exceed its raw size by a little (zstd's bound
 * for 64 KiB is 65,536 + 259 bytes), never by more than this */
#define KHEO_SYNC_CHUNK_SLACK 1024u

/* What a PACKED message may unpack to. */
#define KHEO_SYNC_UNPACKED_MAX (4u << 20)

/*
 * One message (docs/protocol.md, "Sync session").  From kheo_msg_decode,
 * pointers go into the input, which must outlive the message; the arrays
 * are the message's (kheo_msg_free).
 */
typedef struct kheo_msg {
	int type;
	struct {
		unsigned version;                /* 0 when encoding: ours */
		int node_role, cert_role;
		char scope[KHEO_UNIT_MAX + 1];   /* "": everything (the root) */
		uint8_t epoch[8];
		uint64_t wall_ms;
		uint8_t summary[KHEO_ID_SIZE];   /* of the heads in `scope` */
		const uint8_t **certs;           /* the sender's chain */
		size_t *cert_lens, ncerts;
	} hello;
	struct {
		int last;
		kheo_head *v;
		size_t n;
	} heads;
	struct {
		uint64_t chunk;
		const uint8_t **p;
		size_t *lens, n;
	} frames;
	struct {
		uint64_t chunk, applied, held, rejected;
	} ack;
	struct {
		uint64_t raw_len;              /* the inner message's size */
		const uint8_t *p;              /* one zstd frame */
		size_t n;
	} packed;
	char refuse[256];
	struct {                           /* WANT, HAVE */
		const uint8_t *hashes;         /* n × 32 bytes */
		uint8_t *owned;                /* decoded: hashes, the message's */
		uint64_t *sizes;               /* HAVE: n sizes */
		size_t n;
	} want;
	kheo_blob_chunk blob;              /* GET, LACK: hash (and index) */
} kheo_msg;

int kheo_msg_encode(kheo_buf *b, const kheo_msg *m);
int kheo_msg_decode(kheo_msg *m, const uint8_t *p, size_t n,
	kheo_refusal *why);
void kheo_msg_free(kheo_msg *m);

/* ---------------------------------------------------------- secure channel */

/*
 * Scuttlebutt's Secret Handshake, version 1 (docs/protocol.md, "Secure
 * channel"), as a state machine over fixed-size messages:
 *
 *   client                                   server
 *   kheo_shs_client_init                     kheo_shs_server_init
 *   kheo_shs_write_msg1   -- 64 bytes  -->   kheo_shs_read_msg1
 *   kheo_shs_read_msg2    <-- 64 bytes --    kheo_shs_write_msg2
 *   kheo_shs_write_msg3   -- 112 bytes -->   kheo_shs_read_msg3
 *   kheo_shs_read_msg4    <-- 80 bytes --    kheo_shs_write_msg4
 *
 * Each read either accepts the message or refuses it with a reason
 * (bad-hello, bad-auth, bad-signature, bad-key, truncated, trailing-bytes);
 * a refused handshake is wiped and over.  Calling a step out of order, or
 * one of the other role's, is a bug in the caller and aborts.  Nothing here
 * reads a socket or a clock: the ephemeral key comes from a seed the caller
 * gives (test vectors) or from randombytes.
 *
 * The state holds secrets (the ephemeral key, the shared secrets): keep it
 * in sodium_malloc memory when it lives on the heap, and kheo_shs_wipe it
 * when done.  A finished handshake keeps only public values.
 */
#define KHEO_SHS_NETKEY_SIZE 32  /* the network key (HMAC key of the hellos) */
#define KHEO_SHS_SEED_SIZE 32    /* seed of an ephemeral key */
#define KHEO_SHS_MSG1_SIZE 64    /* client hello */
#define KHEO_SHS_MSG2_SIZE 64    /* server hello */
#define KHEO_SHS_MSG3_SIZE 112   /* client authenticate */
#define KHEO_SHS_MSG4_SIZE 80    /* server accept */
#define KHEO_SHS_KEY_SIZE 32     /* a box-stream key */
#define KHEO_SHS_NONCE_SIZE 24   /* a box-stream starting nonce */

/*
 * What a finished handshake gives one side: the peer's long-term key and
 * the session secrets as SHS version 1 defines them (the box-stream key and
 * starting nonce for each direction; see the shs1-test suite).  kheo does
 * not run box-stream: kheo_stream_keys() derives its secretstream keys
 * from enc_key and dec_key.  Secret: kheo_shs_keys_wipe when done.
 */
typedef struct kheo_shs_keys {
	int client;                         /* 1 on the client's side */
	uint8_t peer[KHEO_KEY_SIZE];        /* the peer's Ed25519 key */
	uint8_t enc_key[KHEO_SHS_KEY_SIZE]; /* for what this side sends */
	uint8_t enc_nonce[KHEO_SHS_NONCE_SIZE];
	uint8_t dec_key[KHEO_SHS_KEY_SIZE]; /* for what this side receives */
	uint8_t dec_nonce[KHEO_SHS_NONCE_SIZE];
} kheo_shs_keys;

/*
 * One side of a handshake.  Fields are visible so that the state can live
 * on the stack and tests can compare intermediate values with published
 * vectors; only the functions below change them.  Names follow the paper:
 * a, b the client's and server's ephemeral keys, A, B their long-term
 * keys, so `aB` is the client's ephemeral key times the server's
 * long-term key (as Curve25519).
 */
typedef struct kheo_shs {
	int client;                   /* 1: client, 0: server */
	int step;                     /* messages handled; 4: done, -1: refused */
	uint8_t netkey[KHEO_SHS_NETKEY_SIZE];
	const uint8_t *sk;            /* own long-term secret key; borrowed
	                               * until the handshake ends */
	uint8_t pk[KHEO_KEY_SIZE];    /* own long-term public key */
	uint8_t peer[KHEO_KEY_SIZE];  /* client: the server it expects;
	                               * server: the client, from msg3 on */
	uint8_t eph_sk[32], eph_pk[32]; /* own ephemeral Curve25519 pair */
	uint8_t peer_eph[32];         /* the peer's ephemeral public key */
	uint8_t ab[32], aB[32], Ab[32]; /* the three shared secrets */
	uint8_t hello[96];            /* msg3's plaintext: signature, client key */
} kheo_shs;

/*
 * Start a client that will connect to the server whose long-term key is
 * `server_pk`.  `sk` is the client's libsodium Ed25519 secret key (64
 * bytes: seed, then public key), borrowed until the handshake ends.
 * `seed` (32 bytes) makes the ephemeral key (Ed25519 key pair from the
 * seed, converted to Curve25519, as the reference implementation does);
 * NULL draws it from randombytes, which is what anything but a test does.
 * KHEO_EINVAL if server_pk is not a usable Ed25519 public key.
 */
int kheo_shs_client_init(kheo_shs *st,
	const uint8_t netkey[KHEO_SHS_NETKEY_SIZE],
	const uint8_t sk[KHEO_SECRET_SIZE],
	const uint8_t server_pk[KHEO_KEY_SIZE], const uint8_t *seed);
/* Start a server with its long-term secret key; seed as above. */
void kheo_shs_server_init(kheo_shs *st,
	const uint8_t netkey[KHEO_SHS_NETKEY_SIZE],
	const uint8_t sk[KHEO_SECRET_SIZE], const uint8_t *seed);

/* Client: its hello, the ephemeral key under the network key's HMAC. */
void kheo_shs_write_msg1(kheo_shs *st, uint8_t out[KHEO_SHS_MSG1_SIZE]);
/* Server: check the client's hello (bad-hello under another network key). */
int kheo_shs_read_msg1(kheo_shs *st, const uint8_t *msg, size_t len,
	kheo_refusal *why);
/* Server: its hello. */
void kheo_shs_write_msg2(kheo_shs *st, uint8_t out[KHEO_SHS_MSG2_SIZE]);
/* Client: check the server's hello. */
int kheo_shs_read_msg2(kheo_shs *st, const uint8_t *msg, size_t len,
	kheo_refusal *why);
/* Client: prove its key, boxed for the server it expects. */
void kheo_shs_write_msg3(kheo_shs *st, uint8_t out[KHEO_SHS_MSG3_SIZE]);
/*
 * Server: open and check the client's proof.  On success st->peer holds
 * the client's key: the caller may refuse it (not enrolled, revoked)
 * before kheo_shs_write_msg4, and simply hang up, as SHS intends.
 * bad-auth means the box did not open: the client expects another server
 * key, or the bytes were altered or replayed from another session.
 */
int kheo_shs_read_msg3(kheo_shs *st, const uint8_t *msg, size_t len,
	kheo_refusal *why);
/* Server: accept; the handshake is done and `out` filled. */
void kheo_shs_write_msg4(kheo_shs *st, uint8_t out[KHEO_SHS_MSG4_SIZE],
	kheo_shs_keys *keys);
/* Client: check the server's acceptance; on success done, `keys` filled. */
int kheo_shs_read_msg4(kheo_shs *st, const uint8_t *msg, size_t len,
	kheo_shs_keys *keys, kheo_refusal *why);

/* Zero every secret (sodium_memzero); the state cannot be used again. */
void kheo_shs_wipe(kheo_shs *st);
void kheo_shs_keys_wipe(kheo_shs_keys *keys);

/*
 * After the handshake each direction is a crypto_secretstream
 * (XChaCha20-Poly1305) stream: its 24-byte header, then records of a
 * 4-byte big-endian ciphertext length and the ciphertext, the last one
 * tagged FINAL on a clean close.  Plaintext records are at most
 * KHEO_STREAM_RECORD_MAX bytes; a longer declared length is refused
 * before anything is allocated.
 */
#define KHEO_STREAM_KEY_SIZE 32
#define KHEO_STREAM_HEADER_SIZE 24       /* secretstream header */
#define KHEO_STREAM_LEN_SIZE 4           /* record length prefix */
#define KHEO_STREAM_TAG_SIZE 17          /* secretstream's ABYTES */
#define KHEO_STREAM_RECORD_MAX (1u << 20) /* plaintext bytes in a record */
#define KHEO_STREAM_CTX_C2S "kheo/stream/v1 client->server"
#define KHEO_STREAM_CTX_S2C "kheo/stream/v1 server->client"

/*
 * The secretstream keys of this side: `tx` for what it sends, `rx` for
 * what it receives.  Each is BLAKE2b-256 keyed with the SHS box-stream key
 * of that direction over the direction's context string.
 */
void kheo_stream_keys(uint8_t tx[KHEO_STREAM_KEY_SIZE],
	uint8_t rx[KHEO_STREAM_KEY_SIZE], const kheo_shs_keys *keys);

/* The sending half.  Holds a key: kheo_stream_tx_wipe when done. */
typedef struct kheo_stream_tx {
	crypto_secretstream_xchacha20poly1305_state ss;
	int closed;          /* the FINAL record went */
	uint64_t records;
} kheo_stream_tx;

/* The receiving half.  Holds a key: kheo_stream_rx_wipe when done. */
typedef struct kheo_stream_rx {
	crypto_secretstream_xchacha20poly1305_state ss;
	uint8_t key[KHEO_STREAM_KEY_SIZE]; /* until the header arrives */
	int phase;           /* 0: header next, 1: records, 2: closed,
	                      * -1: refused (and every later call too) */
	uint64_t records;    /* records read */
	uint64_t offset;     /* stream bytes consumed, for refusals */
	kheo_refusal refused; /* what the refusal was, to repeat it */
} kheo_stream_rx;

/* Start sending under `key`: appends the header to `out`. */
int kheo_stream_tx_init(kheo_stream_tx *tx, kheo_buf *out,
	const uint8_t key[KHEO_STREAM_KEY_SIZE]);
/*
 * Append one record of n plaintext bytes; `final`: tag it FINAL, the
 * last one.  KHEO_ELIMIT above KHEO_STREAM_RECORD_MAX, KHEO_ENOMEM.
 * Sending after the FINAL record is a caller bug and aborts.
 */
int kheo_stream_tx_record(kheo_stream_tx *tx, kheo_buf *out,
	const uint8_t *p, size_t n, int final);
void kheo_stream_tx_wipe(kheo_stream_tx *tx);

/* What kheo_stream_rx_read found. */
typedef enum kheo_stream_event {
	KHEO_STREAM_MORE = 0,   /* no whole record yet: read more bytes */
	KHEO_STREAM_RECORD = 1, /* a record is in `plain` */
	KHEO_STREAM_FINAL = 2,  /* the FINAL record is in `plain`; closed */
} kheo_stream_event;

void kheo_stream_rx_init(kheo_stream_rx *rx,
	const uint8_t key[KHEO_STREAM_KEY_SIZE]);
/*
 * Consume bytes from the front of [p, p+len): the header if it has not
 * come yet, then at most one record.  *used says how many bytes were
 * consumed (the caller drops them and calls again with the rest and what
 * arrives later); *event what came of it.  A cut record is
 * KHEO_STREAM_MORE, not an error: nothing of it is consumed.  Refusals:
 * too-big (a declared length above the cap, before any allocation),
 * bad-record (a record that does not authenticate: another key, altered,
 * reordered, dropped; or an unknown tag), trailing-bytes (bytes after the
 * FINAL record).  `plain` is reset and receives the record's plaintext.
 */
int kheo_stream_rx_read(kheo_stream_rx *rx, kheo_buf *plain,
	kheo_stream_event *event, size_t *used, const uint8_t *p, size_t len,
	kheo_refusal *why);
void kheo_stream_rx_wipe(kheo_stream_rx *rx);

/* ---------------------------------------------------------------- helpers */

/* Lowercase hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void kheo_hex(char *out, const uint8_t *p, size_t n);
/* Parse exactly 2n hex digits; KHEO_OK or KHEO_EINVAL. */
int kheo_unhex(uint8_t *out, size_t n, const char *hex, size_t hexlen);

#endif /* KHEO_PROTO_H */
