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

#ifdef __cplusplus
}
#endif

#endif /* KHEO_H */
