/*
 * nodes.h - fixtures for tests that run real nodes: data directories in a
 * scratch folder (on tmpfs when there is one, so fsync is cheap), a clock
 * the test controls, and moving changesets between nodes by bundle files.
 */
#ifndef KHEO_TEST_NODES_H
#define KHEO_TEST_NODES_H

#include "helpers.h"

typedef struct test_node {
	kheo_db *db;
	char dir[512];
	int64_t now;    /* the node's wall clock, ms; advanced by the test */
} test_node;

/* A fresh scratch folder for this test process; removed by test_cleanup. */
const char *test_scratch(void);
void test_cleanup(void);

/* Make a device node `name` with `unit` in the scratch folder. */
void node_make(test_node *n, const char *name, const char *unit,
	kheo_node_role role);
/* Close and reopen (a restart). */
void node_reopen(test_node *n);
void node_close(test_node *n);

/* Everything `from` holds, into `to`, by a bundle file. */
void node_send(test_node *from, test_node *to, kheo_bundle_stats *st);

/* The wire between two sessions of one process (session_pump). */
typedef struct test_link {
	uint64_t bytes;        /* that crossed, both ways */
	int flights;           /* times the turn passed from one side */
	uint64_t cut_after;    /* 0: never; else drop the link after this
	                        * many bytes have crossed */
	int cut;               /* it was dropped */
	/* called before each round (may be NULL): a test breaking the
	 * protocol injects there */
	void (*each_round)(void *arg);
	void *arg;
} test_link;

/*
 * Move bytes between client a and server b, each side's output in turn,
 * until neither has anything to send or the link is cut (at exactly
 * l->cut_after bytes: what is left of the piece in flight is lost).
 */
void session_pump(kheo_session *a, kheo_session *b, test_link *l);

/* Digest under prefix as hex (static buffer, one at a time). */
const char *node_digest(test_node *n, const char *prefix);

/* The units node_tiers makes: a province, a district under it, a commune
 * under that. */
#define TEST_PROVINCE "dak-nong"
#define TEST_DISTRICT "dak-nong/cu-jut"
#define TEST_COMMUNE "dak-nong/cu-jut/ea-po"

/* A field of `kheo_id_json` ("key", "root", ...) as 64 hex digits. */
void node_id_hex(test_node *n, const char *what, char out[65]);
/* Enrol n offline: its request signed by `issuer` as `role` over `unit`
 * for a year, accepted with the issuer's root; fail the test on error. */
void node_enroll(test_node *issuer, test_node *n, const char *role,
	const char *unit);
/* A province of TEST_PROVINCE, a hub of TEST_DISTRICT enrolled by it and
 * a collector device of TEST_COMMUNE enrolled by the hub. */
void node_tiers(test_node *p, test_node *h, test_node *d);

/* put / set with "field=value" strings; fail the test on error. */
void node_put(test_node *n, char id[KHEO_RECORD_HEX + 1], const char *table,
	const char *a1, const char *a2, const char *a3);
void node_set(test_node *n, const char *table, const char *id,
	const char *assign);
/* The JSON of a record, parsed; caller json_decref's (jansson). */
struct json_t *node_get(test_node *n, const char *table, const char *id);

#endif
