/*
 * fuzz_schema.c - libFuzzer target for the schema file parser and, for
 * every schema it accepts, value parsing of the input's own bytes against
 * each field (the text a person types at the CLI).
 */
#include "schema.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kheo_schema *s;
	char err[256], *text;
	size_t i, j;

	if (kheo_schema_parse(&s, (const char *)data, size, err,
		    sizeof(err)) != KHEO_OK) {
		if (err[0] == '\0')
			abort(); /* every refusal says why */
		return 0;
	}
	/* the input as a NUL-terminated value, for each field */
	text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	for (i = 0; i < s->ntables; i++)
		for (j = 0; j < s->tables[i].nfields; j++) {
			kheo_buf scratch = { 0 };
			kheo_value v;

			kheo_schema_value_from_text(&v, &scratch, &s->tables[i],
				&s->tables[i].fields[j], text, err,
				sizeof(err));
			kheo_buf_free(&scratch);
		}
	free(text);
	kheo_schema_free(s);
	return 0;
}
