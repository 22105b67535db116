/*
 * ahead.c - a node whose wall clock runs ahead, for tests/integration/cli.sh.
 *
 *   ahead DIR MS UNIT
 *
 * Opens the node in DIR through the public API with a wall clock MS
 * milliseconds ahead of the real one (kheo_open_options.now_ms), puts one
 * model record in UNIT and seals it.  Prints the record id.  A node that
 * applies the resulting changeset moves its own clock past it (DESIGN.md:
 * a node's clock moves past every clock it applies), which is how a real
 * device comes to run ahead of its wall time.
 */
#include "kheo.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int64_t ahead_ms(void *payload)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
	       *(const int64_t *)payload;
}

int main(int argc, char **argv)
{
	kheo_open_options opts = KHEO_OPEN_OPTIONS_INIT;
	kheo_assign a[2] = { { "name", KHEO_ASSIGN_SET, "from the future" },
		{ "unit", KHEO_ASSIGN_SET, NULL } };
	char id[KHEO_RECORD_HEX + 1];
	kheo_db *db = NULL;
	int64_t offset;

	if (argc != 4) {
		fprintf(stderr, "usage: ahead DIR MS UNIT\n");
		return 2;
	}
	offset = strtoll(argv[2], NULL, 10);
	a[1].value = argv[3];
	opts.now_ms = ahead_ms;
	opts.now_payload = &offset;
	if (kheo_db_open(&db, argv[1], &opts) < 0 ||
	    kheo_put(db, id, "model", NULL, a, 2) < 0 ||
	    kheo_commit(db, NULL) < 0) {
		fprintf(stderr, "ahead: %s\n", kheo_errmsg(db));
		kheo_db_close(db);
		return 1;
	}
	printf("%s\n", id);
	kheo_db_close(db);
	return 0;
}
