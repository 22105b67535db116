/*
 * alloc.h - the one door through which proto/ and libkheo allocate memory.
 *
 * Every allocation goes through these wrappers so that a test can make the
 * Nth one fail and prove that each failure path frees what it holds and
 * reports KHEO_ENOMEM.  The fault hook exists only in builds compiled with
 * KHEO_FAULT_INJECTION (the test build); a release build has no global state
 * here at all.
 */
#ifndef KHEO_PROTO_ALLOC_H
#define KHEO_PROTO_ALLOC_H

#include <stddef.h>

void *kheo__malloc(size_t n);
void *kheo__calloc(size_t count, size_t size);
void *kheo__realloc(void *p, size_t n);
void kheo__free(void *p);

#ifdef KHEO_FAULT_INJECTION
/*
 * Make the nth allocation from now on fail (1 = the next one), and every one
 * after it too when `sticky` is set.  0 turns injection off.  Per thread.
 */
void kheo__fault_set(long nth, int sticky);
#endif

#endif
