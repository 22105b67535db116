/*
 * cmd_blob.c - kheo attach and kheo blob get|missing|prune: attachments
 * (photos, scanned decisions) in the blob store (kheo.h, "attachments").
 *
 * attach prints the hash, size and type of what it stored; the size cap is
 * --max-size or $KHEO_ATTACH_MAX (bytes), else KHEO_BLOB_DEFAULT_MAX.
 * blob missing lists, never hides, what records name and this node lacks:
 * exit 0 either way (a device synced with --no-blobs is fine as it is).
 */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

int cmd_attach(cli *c)
{
	static const char line[] = "attach TABLE ID FIELD FILE [--max-size BYTES]";
	kheo_attach_options o = KHEO_ATTACH_OPTIONS_INIT;
	kheo_blob_info info;
	const char *env = getenv("KHEO_ATTACH_MAX");
	kheo_db *db;
	int rc;

	if (c->argc == 7 && strcmp(c->argv[5], "--max-size") == 0) {
		if (parse_u64(c->argv[6], &o.max_bytes) < 0)
			return cli_usage(line);
	} else if (c->argc != 5) {
		return cli_usage(line);
	} else if (env && parse_u64(env, &o.max_bytes) < 0) {
		fprintf(stderr, "kheo: attach: KHEO_ATTACH_MAX=%s is not a "
			"number of bytes\n", env);
		return EXIT_USAGE;
	}
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (kheo_attach(db, c->argv[1], c->argv[2], c->argv[3], c->argv[4],
		    &o, &info) < 0) {
		rc = cli_fail(db, "attach");
	} else if (c->json) {
		printf("{\"hash\":\"%s\",\"size\":%llu,\"type\":\"%s\","
		       "\"chunks\":%zu,\"stored\":%llu}\n", info.hash,
			(unsigned long long)info.size, info.type, info.chunks,
			(unsigned long long)info.stored);
	} else {
		printf("%s %llu %s\n", info.hash,
			(unsigned long long)info.size, info.type);
	}
	kheo_db_close(db);
	return rc;
}

static void plain_missing(const char *text)
{
	json_t *a = json_loads(text, 0, NULL), *o;
	size_t i;

	json_array_foreach(a, i, o) {
		json_t *chunks = json_object_get(o, "chunks");

		printf("%s %s %s %s ", json_string_value(json_object_get(o,
			"hash")), json_string_value(json_object_get(o,
			"table")), json_string_value(json_object_get(o, "id")),
			json_string_value(json_object_get(o, "field")));
		if (json_is_null(chunks))
			printf("absent\n");
		else
			printf("partial %lld/%lld\n",
				(long long)json_integer_value(json_object_get(o,
					"chunks_held")),
				(long long)json_integer_value(chunks));
	}
	fprintf(stderr, "%zu blob%s named by records not here\n",
		json_array_size(a), json_array_size(a) == 1 ? "" : "s");
	json_decref(a);
}

int cmd_blob(cli *c)
{
	static const char line[] = "blob get HASH FILE | blob missing | blob "
				   "prune [--older-than DAYS]";
	kheo_db *db;
	int rc;

	if (c->argc < 2)
		return cli_usage(line);
	if (strcmp(c->argv[1], "get") == 0) {
		kheo_blob_info info;

		if (c->argc != 4)
			return cli_usage(line);
		if ((rc = cli_open(c, &db)) != EXIT_OK)
			return rc;
		if (kheo_blob_get(db, c->argv[2], c->argv[3], &info) < 0)
			rc = cli_fail(db, "blob get");
		else
			printf("%s %llu %s\n", info.hash,
				(unsigned long long)info.size, info.type);
		kheo_db_close(db);
		return rc;
	}
	if (strcmp(c->argv[1], "missing") == 0) {
		char *json;

		if (c->argc != 2)
			return cli_usage(line);
		if ((rc = cli_open(c, &db)) != EXIT_OK)
			return rc;
		if (kheo_blob_missing_json(db, &json) < 0)
			rc = cli_fail(db, "blob missing");
		else
			rc = cli_output(c, json, plain_missing);
		kheo_db_close(db);
		return rc;
	}
	if (strcmp(c->argv[1], "prune") == 0) {
		uint64_t days = 30;
		kheo_prune_stats st = { 0 };

		if (c->argc == 4 && strcmp(c->argv[2], "--older-than") == 0) {
			if (parse_u64(c->argv[3], &days) < 0 || days > 100000)
				return cli_usage(line);
		} else if (c->argc != 2) {
			return cli_usage(line);
		}
		if ((rc = cli_open(c, &db)) != EXIT_OK)
			return rc;
		if (kheo_blob_prune(db, (unsigned)days, &st) < 0) {
			rc = cli_fail(db, "blob prune");
		} else {
			printf("pruned %zu blob%s, %llu bytes\n", st.pruned,
				st.pruned == 1 ? "" : "s",
				(unsigned long long)st.bytes);
			if (st.unacked)
				printf("kept %zu blob%s no record names: the "
				       "province has not acknowledged %s yet "
				       "(sync, then prune again)\n",
					st.unacked, st.unacked == 1 ? "" : "s",
					st.unacked == 1 ? "it" : "them");
		}
		kheo_db_close(db);
		return rc;
	}
	return cli_usage(line);
}
