/*
 * cmd_bundle.c - kheo bundle create|apply: the sneakernet path.
 *
 * apply exits 1 and changes nothing when the file cannot be read as a
 * whole; otherwise it prints the counts and exits 1 if any changeset was
 * rejected (DESIGN.md's bundle contract).
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int cmd_bundle(cli *c)
{
	static const char line[] =
		"bundle create FILE [--for NODE_ID] [--no-blobs] | bundle "
		"apply FILE";
	kheo_bundle_stats st = { 0 };
	kheo_bundle_options o = KHEO_BUNDLE_OPTIONS_INIT;
	kheo_db *db;
	int rc, i;

	if (c->argc < 3)
		return cli_usage(line);
	if (strcmp(c->argv[1], "create") == 0) {
		for (i = 3; i < c->argc; i++) {
			if (strcmp(c->argv[i], "--for") == 0 &&
			    i + 1 < c->argc && !o.for_node)
				o.for_node = c->argv[++i];
			else if (strcmp(c->argv[i], "--no-blobs") == 0)
				o.no_blobs = 1;
			else
				return cli_usage(line);
		}
		if ((rc = cli_open(c, &db)) != EXIT_OK)
			return rc;
		if (kheo_bundle_create_ext(db, c->argv[2], &o, &st) < 0)
			rc = cli_fail(db, "bundle create");
		else
			printf("wrote %s: %zu changesets, %zu blobs (%zu "
			       "chunks), %zu bytes\n", c->argv[2],
				st.changesets, st.blobs, st.blob_chunks,
				st.bytes);
		kheo_db_close(db);
		return rc;
	}
	if (strcmp(c->argv[1], "apply") != 0 || c->argc != 3)
		return cli_usage(line);
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (!kheo_enforcing(db))
		fprintf(stderr, "kheo: bundle apply: open mode (this node is "
			"not enrolled): changesets are checked for signatures "
			"only, not certificates\n");
	if (kheo_bundle_apply(db, c->argv[2], &st) < 0) {
		rc = cli_fail(db, "bundle apply");
	} else {
		printf("%s: %zu changesets: %zu applied, %zu held, %zu "
		       "rejected, %zu already here, %zu released from hold\n",
			c->argv[2], st.changesets, st.apply.applied,
			st.apply.held, st.apply.rejected, st.apply.duplicate,
			st.apply.released);
		if (st.blobs)
			printf("%s: %zu blobs: %zu complete here, %zu "
			       "refused\n", c->argv[2], st.blobs,
				st.blobs_completed, st.blobs_refused);
		if (st.blobs_refused) {
			fprintf(stderr, "kheo: bundle apply: %zu blob%s "
				"refused: %s\n", st.blobs_refused,
				st.blobs_refused == 1 ? "" : "s",
				st.blob_error);
			rc = EXIT_REFUSED;
		}
		if (st.apply.rejected) {
			fprintf(stderr, "kheo: bundle apply: %zu changeset%s "
				"rejected (see kheo quarantine)\n",
				st.apply.rejected,
				st.apply.rejected == 1 ? "" : "s");
			rc = EXIT_REFUSED;
		}
	}
	kheo_db_close(db);
	return rc;
}
