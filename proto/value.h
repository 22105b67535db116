/*
 * value.h - value encoding shared by the changeset codec (private to proto/).
 */
#ifndef KHEO_PROTO_VALUE_H
#define KHEO_PROTO_VALUE_H

#include "proto.h"

/* Refuse a value the decoder would refuse; `what` names it in messages. */
int kheo__value_check(const kheo_value *v, kheo_refusal *why,
	const char *what);
/* Check, then append the value's canonical bytes. */
int kheo__value_put(kheo_buf *b, const kheo_value *v, kheo_refusal *why,
	const char *what);
/* Read one value; TEXT/BYTES/HASH point into the reader's input. */
int kheo__value_read(kheo_reader *r, kheo_value *v, const char *what);

#endif
