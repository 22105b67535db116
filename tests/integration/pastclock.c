/*
 * pastclock.c - make edits on a node whose wall clock is behind, for
 * tests/integration/audit.sh: a back-dated changeset, as a device with its
 * clock set weeks back (or a person who set it so) would seal one.
 *
 *   pastclock DIR DAYS TABLE FIELD=VALUE...
 *
 * Opens the node in DIR through libkheo's public API with a clock DAYS
 * days behind the real one, creates one record, seals it, and prints the
 * record id.  The node's hybrid clock never goes back, so this is
 * back-dated only on a node that has seen nothing newer.
 */
#include "kheo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t past(void *payload)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 -
	       *(int64_t *)payload;
}

int main(int argc, char **argv)
{
	kheo_open_options o = KHEO_OPEN_OPTIONS_INIT;
	kheo_assign a[16];
	char id[KHEO_RECORD_HEX + 1];
	int64_t behind;
	kheo_db *db = NULL;
	int i, n = 0;

	if (argc < 5 || argc - 4 > 16) {
		fprintf(stderr, "usage: pastclock DIR DAYS TABLE FIELD=VALUE...\n");
		return 2;
	}
	behind = (int64_t)(atof(argv[2]) * 86400000.0);
	for (i = 4; i < argc; i++) {
		char *eq = strchr(argv[i], '=');

		if (!eq)
			return 2;
		*eq = '\0';
		a[n].field = argv[i];
		a[n].op = KHEO_ASSIGN_SET;
		a[n++].value = eq + 1;
	}
	o.now_ms = past;
	o.now_payload = &behind;
	if (kheo_db_open(&db, argv[1], &o) < 0 ||
	    kheo_put(db, id, argv[3], NULL, a, (size_t)n) < 0 ||
	    kheo_commit(db, NULL) < 0) {
		fprintf(stderr, "pastclock: %s\n", kheo_errmsg(db));
		kheo_db_close(db);
		return 1;
	}
	printf("%s\n", id);
	kheo_db_close(db);
	return 0;
}
