/*
 * helpers.h - shared fixtures for the unit tests: deterministic keys, a
 * changeset that uses every op kind and value type, and byte surgery.
 */
#ifndef KHEO_TEST_HELPERS_H
#define KHEO_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto.h"

typedef struct test_key {
	uint8_t pk[KHEO_KEY_SIZE];
	uint8_t sk[KHEO_SECRET_SIZE];
} test_key;

/* An Ed25519 key pair from a seed made of one repeated byte. */
void test_key_make(test_key *k, uint8_t seed_byte);

/*
 * The sample changeset: author key `a` (seed 1), a second key `b` (seed 2)
 * named in preds, unit "dak-nong/cu-jut/ea-po", useq 3, two parents, and
 * one op of each kind carrying every value type.  Storage is static: one
 * sample at a time.
 */
const kheo_changeset *test_sample(void);

/* Encode `cs` into a fresh buffer, failing the test on error. */
void test_encode(kheo_buf *out, const kheo_changeset *cs);

/* Sign raw bytes with key seed 1 (the sample's author) and frame them. */
void test_frame(kheo_codec *c, kheo_buf *out, const uint8_t *raw, size_t len);

/* Read a whole file; NULL if it cannot be read.  Caller frees. */
uint8_t *test_read_file(const char *path, size_t *len);

/* Path of a vectors file: $KHEO_VECTORS or tests/vectors, then name. */
const char *test_vector_path(const char *name);

#endif
