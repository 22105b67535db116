/*
 * blob.h - the blob store as the rest of libkheo sees it (blob.c): what
 * records name, what is held, chunks read and received.  Private to
 * libkheo (and its tests); the public calls are kheo.h's "attachments".
 */
#ifndef KHEO_BLOB_H
#define KHEO_BLOB_H

#include "internal.h"

/* A blob a live record names: what sync fetches, in priority order. */
typedef struct kheo_blob_ref {
	uint8_t hash[KHEO_ID_SIZE];
	const char *table, *field;   /* the schema's */
	char id[KHEO_RECORD_HEX + 1];
	char unit[KHEO_UNIT_MAX + 1];
	uint64_t clock;              /* the record's creation */
	int single;                  /* a single hash field (a decision scan) */
} kheo_blob_ref;

/* Every (blob, record, field) naming one, records in units `keep` accepts
 * (NULL: all): single fields first, then newest records.  *out is the
 * caller's (kheo__free). */
int kheo__blob_named(kheo_db *db, int (*keep)(void *arg, const char *unit),
	void *arg, kheo_blob_ref **out, size_t *n);
/* How many distinct blobs live records name that are not complete here. */
int kheo__blob_missing_count(kheo_db *db, size_t *n);
/* 1 when a live record names blob h. */
int kheo__blob_is_named(kheo_db *db, const uint8_t h[KHEO_ID_SIZE]);
/* What is held of blob h; KHEO_ENOTFOUND when nothing. */
int kheo__blob_state(kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	uint64_t *size, uint64_t *have, int *complete);
/* The first chunk of h (of `size` bytes) not held; chunks when complete. */
int kheo__blob_next_missing(kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	uint64_t size, uint64_t *idx);
/* A chunk as stored (what a session or bundle sends). */
int kheo__blob_chunk_read(kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	uint64_t idx, kheo_buf *data, int *z, uint8_t chash[KHEO_ID_SIZE],
	uint64_t *size);
/* A chunk from a peer, checked and made durable (blob.c, put_chunk). */
int kheo__blob_receive(kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	uint64_t size, uint64_t idx, int z, const uint8_t chash[KHEO_ID_SIZE],
	const uint8_t *data, size_t len, int *completed);

/* Read blob h back whole and hash it: KHEO_OK when it is here and hashes
 * to its name (*size, may be NULL, its size); KHEO_ENOTFOUND when none or
 * only part of it is here; KHEO_ECORRUPT when a chunk file is gone or its
 * bytes are not what was stored.  The message says which. */
int kheo__blob_verify(kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	uint64_t *size);

/* blob_ack.c: the province, when it seals, acknowledges each blob it
 * holds whole that a live record names (one sys_blob_ack per unit of such
 * records); elsewhere nothing. */
int kheo__write_blob_acks(kheo_db *db);
/* 1 when an applied sys_blob_ack names blob h (the province holds it
 * whole), 0 when none does, or a negative error. */
int kheo__blob_acked(kheo_db *db, const uint8_t h[KHEO_ID_SIZE]);

#endif
