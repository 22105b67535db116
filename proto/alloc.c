/*
 * alloc.c - allocation wrappers with an optional failure hook for tests.
 *
 * Not an allocator: it forwards to the C library.  See alloc.h for why.
 */
#include "alloc.h"

#include <stdlib.h>

#ifdef KHEO_FAULT_INJECTION
/* Thread-local so parallel tests do not trip each other; test builds only. */
static _Thread_local long fault_countdown;
static _Thread_local int fault_sticky;

void kheo__fault_set(long nth, int sticky)
{
	fault_countdown = nth;
	fault_sticky = sticky;
}

static int fault_now(void)
{
	if (fault_countdown <= 0)
		return 0;
	if (--fault_countdown > 0)
		return 0;
	if (fault_sticky)
		fault_countdown = 1;
	return 1;
}
#else
static int fault_now(void)
{
	return 0;
}
#endif

void *kheo__malloc(size_t n)
{
	if (fault_now())
		return NULL;
	return malloc(n ? n : 1);
}

void *kheo__calloc(size_t count, size_t size)
{
	if (fault_now())
		return NULL;
	if (count == 0 || size == 0)
		count = size = 1;
	return calloc(count, size);
}

void *kheo__realloc(void *p, size_t n)
{
	if (fault_now())
		return NULL;
	return realloc(p, n ? n : 1);
}

void kheo__free(void *p)
{
	free(p);
}
