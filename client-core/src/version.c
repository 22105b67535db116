/*
 * version.c - the library's version and the names of its error codes.
 */
#include "kheo.h"

KHEO_EXTERN const char *kheo_version(void)
{
	return KHEO_VERSION_STRING;
}

KHEO_EXTERN int kheo_version_number(void)
{
	return KHEO_VERSION_NUMBER;
}

KHEO_EXTERN const char *kheo_error_name(int code)
{
	switch (code) {
	case KHEO_OK: return "KHEO_OK";
	case KHEO_ERROR: return "KHEO_ERROR";
	case KHEO_ENOMEM: return "KHEO_ENOMEM";
	case KHEO_EINVAL: return "KHEO_EINVAL";
	case KHEO_ENOTFOUND: return "KHEO_ENOTFOUND";
	case KHEO_EEXISTS: return "KHEO_EEXISTS";
	case KHEO_EAUTH: return "KHEO_EAUTH";
	case KHEO_EPROTO: return "KHEO_EPROTO";
	case KHEO_ECORRUPT: return "KHEO_ECORRUPT";
	case KHEO_ECONFLICT: return "KHEO_ECONFLICT";
	case KHEO_ELIMIT: return "KHEO_ELIMIT";
	case KHEO_EIO: return "KHEO_EIO";
	case KHEO_EUNSUPPORTED: return "KHEO_EUNSUPPORTED";
	}
	return "KHEO_E?";
}
