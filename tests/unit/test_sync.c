/*
 * test_sync.c - sync sessions, two real nodes in one process: the bytes
 * each session writes are carried to the other by the test, as a socket
 * would, so the test can count them, cut them, or alter them.
 *
 * What is not here: sockets and daemons (tests/integration/daemon.sh), the
 * handshake's published vectors (test_handshake.c).
 */
#include "nodes.h"
#include "proto.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROVINCE TEST_PROVINCE
#define DISTRICT TEST_DISTRICT
#define COMMUNE TEST_COMMUNE

static int teardown(void **state)
{
	(void)state;
	test_cleanup();
	return 0;
}

/*
 * Run a session between client c and server s until both are done, one
 * fails, or the link is cut.  Returns the client's final state.
 */
static kheo_session_state run(test_node *c, test_node *s, test_link *l,
	kheo_session_stats *cst, kheo_session_stats *sst, char *err,
	size_t errlen)
{
	kheo_session_options co = KHEO_SESSION_OPTIONS_INIT;
	kheo_session_options so = KHEO_SESSION_OPTIONS_INIT;
	kheo_session *a, *b;
	kheo_session_state sa;

	co.initiator = 1;
	co.chunk_bytes = 4096;
	so.chunk_bytes = 4096;
	if (kheo_session_new(&a, c->db, &co) < 0)
		fail_msg("client session: %s", kheo_errmsg(c->db));
	if (kheo_session_new(&b, s->db, &so) < 0)
		fail_msg("server session: %s", kheo_errmsg(s->db));
	session_pump(a, b, l);
	sa = kheo_session_status(a, cst);
	kheo_session_status(b, sst);
	if (err)
		snprintf(err, errlen, "%s%s", kheo_session_error(a),
			kheo_session_error(b));
	kheo_session_free(a);
	kheo_session_free(b);
	return sa;
}

static void model(test_node *n, char id[KHEO_RECORD_HEX + 1], int k)
{
	char name[64];

	snprintf(name, sizeof(name), "name=Mô hình %d", k);
	node_put(n, id, "model", name, "unit=" COMMUNE, "beneficiaries=3");
}

static void device_hub_province_agree(void **state)
{
	test_node p, h, d;
	kheo_session_stats cs, ss;
	test_link l = { 0 };
	char id[KHEO_RECORD_HEX + 1], err[800];
	int i;

	(void)state;
	node_tiers(&p, &h, &d);
	for (i = 0; i < 20; i++)
		model(&d, id, i);
	assert_int_equal(run(&d, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	assert_true(cs.sent > 0);
	assert_int_equal(ss.apply.rejected, 0);
	assert_string_equal(node_digest(&d, COMMUNE), node_digest(&h, COMMUNE));
	memset(&l, 0, sizeof(l));
	assert_int_equal(run(&h, &p, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	assert_string_equal(node_digest(&h, DISTRICT), node_digest(&p, DISTRICT));
	/* a receipt comes back down: the province sealed before it sent */
	memset(&l, 0, sizeof(l));
	assert_int_equal(run(&h, &p, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/* Nothing new: one round trip after the handshake, at most 2 KiB. */
static void in_sync_session_is_one_round_trip_under_2k(void **state)
{
	test_node p, h, d;
	kheo_session_stats cs, ss;
	test_link l = { 0 };
	char id[KHEO_RECORD_HEX + 1], err[800];

	(void)state;
	node_tiers(&p, &h, &d);
	model(&d, id, 1);
	assert_int_equal(run(&d, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	memset(&l, 0, sizeof(l));
	assert_int_equal(run(&d, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	print_message("# in-sync session: %llu bytes, %d flights\n",
		(unsigned long long)l.bytes, l.flights);
	assert_true(l.bytes <= 2048);
	/* announce, msg1..4 (5 flights), then HELLO, HELLO+DONE, DONE */
	assert_true(l.flights <= 8);
	assert_int_equal(cs.sent + ss.sent, 0);
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/* Cut anywhere, the next session completes; nothing lost or doubled. */
static void cut_session_resumes(void **state)
{
	test_node p, h, d;
	kheo_session_stats cs, ss;
	test_link full = { 0 };
	char id[KHEO_RECORD_HEX + 1], err[800], want[65];
	int i, trial;

	(void)state;
	node_tiers(&p, &h, &d);
	for (i = 0; i < 60; i++) {
		model(&d, id, i);
		if (i % 3 == 0)
			assert_int_equal(kheo_commit(d.db, NULL), KHEO_OK);
	}
	assert_int_equal(kheo_commit(d.db, NULL), KHEO_OK);
	snprintf(want, sizeof(want), "%s", node_digest(&d, COMMUNE));
	for (trial = 0; trial < 50; trial++) {
		test_link l = { 0 };

		/* anywhere from the handshake to the last chunk */
		l.cut_after = 100 + ((size_t)trial * 7919) % 30000;
		run(&d, &h, &l, &cs, &ss, err, sizeof(err));
		/* what the cut wastes is at most the chunk in flight (its
		 * last frame may run over the chunk size) */
		assert_true(cs.frame_bytes - cs.frame_bytes_acked <= 4096 + 2048);
	}
	assert_int_equal(run(&d, &h, &full, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	assert_string_equal(node_digest(&h, COMMUNE), want);
	assert_int_equal(kheo_verify(h.db), KHEO_OK);
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/*
 * A device offline for long seals many small changesets, not one big one:
 * 1.7 MB of edits that compress poorly would not fit the channel's 1 MiB
 * record as one changeset, and a cut would resend all of it.
 */
static void long_offline_work_travels_in_small_changesets(void **state)
{
	static const char letters[] =
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,";
	test_node p, h, d;
	kheo_session_stats cs, ss;
	test_link cut = { 0 }, full = { 0 };
	char id[KHEO_RECORD_HEX + 1], err[800], want[65];
	char desc[12 + 240 + 1], name[64];
	unsigned seed = 7;
	size_t sealed = 0;
	int i, k;

	(void)state;
	node_tiers(&p, &h, &d);
	for (i = 0; i < 7000; i++) {
		memcpy(desc, "description=", 12);
		for (k = 0; k < 240; k++) {
			seed = seed * 1103515245u + 12345u;
			desc[12 + k] = letters[(seed >> 16) % 64];
		}
		desc[12 + 240] = '\0';
		snprintf(name, sizeof(name), "name=Mô hình %d", i);
		node_put(&d, id, "model", name, desc, "unit=" COMMUNE);
	}
	assert_int_equal(kheo_commit(d.db, &sealed), KHEO_OK);
	print_message("# 7000 records sealed as %zu changesets\n", sealed);
	assert_true(sealed >= 7000 * 240 / (64 << 10));
	snprintf(want, sizeof(want), "%s", node_digest(&d, COMMUNE));
	/* cut half way: what was in flight is at most a chunk (4 KiB here)
	 * plus one changeset */
	cut.cut_after = 900000;
	run(&d, &h, &cut, &cs, &ss, err, sizeof(err));
	assert_true(cs.frame_bytes_acked > 0);
	assert_true(cs.frame_bytes - cs.frame_bytes_acked <= 4096 + (64 << 10));
	assert_int_equal(run(&d, &h, &full, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	assert_string_equal(node_digest(&h, COMMUNE), want);
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/* Another deployment cannot finish the handshake. */
static void other_network_is_refused(void **state)
{
	test_node p, h, d, p2, d2;
	kheo_session_stats cs, ss;
	test_link l = { 0 };
	char err[800];

	(void)state;
	node_tiers(&p, &h, &d);
	node_make(&p2, "p2", PROVINCE, KHEO_NODE_PROVINCE);
	node_make(&d2, "d2", COMMUNE, KHEO_NODE_DEVICE);
	node_enroll(&p2, &d2, "collector", COMMUNE);
	assert_int_equal(run(&d2, &h, &l, &cs, &ss, err, sizeof(err)) ==
			 KHEO_SESSION_DONE, 0);
	assert_non_null(strstr(err, "bad-hello"));
	node_close(&p);
	node_close(&h);
	node_close(&d);
	node_close(&p2);
	node_close(&d2);
}

/* A device whose clock is more than 10 minutes off is told to fix it
 * before anything moves; the hub remembers the offset it measured. */
static void device_with_a_wrong_clock_is_told_to_fix_it(void **state)
{
	test_node p, h, d;
	kheo_session_stats cs, ss;
	test_link l = { 0 };
	char id[KHEO_RECORD_HEX + 1], err[800];

	(void)state;
	node_tiers(&p, &h, &d);
	model(&d, id, 1);
	d.now += 20 * 60 * 1000;
	assert_int_equal(run(&d, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_FAILED);
	assert_non_null(strstr(err, "clock is 20 minutes ahead"));
	assert_int_equal(ss.received, 0);
	d.now -= 20 * 60 * 1000;
	memset(&l, 0, sizeof(l));
	assert_int_equal(run(&d, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/* A revoked device, and one never enrolled, are refused. */
static void revoked_and_unenrolled_devices_are_refused(void **state)
{
	test_node p, h, d, o;
	kheo_session_stats cs, ss;
	kheo_session_options so = KHEO_SESSION_OPTIONS_INIT;
	kheo_session *x;
	test_link l = { 0 };
	char id[KHEO_RECORD_HEX + 1], err[800], key[65];

	(void)state;
	node_tiers(&p, &h, &d);
	model(&d, id, 1);
	assert_int_equal(run(&d, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	node_id_hex(&d, "key", key);
	assert_int_equal(kheo_revoke(h.db, key, "mất máy"), KHEO_OK);
	memset(&l, 0, sizeof(l));
	assert_int_equal(run(&d, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_FAILED);
	assert_non_null(strstr(err, "is revoked"));
	/* a node in open mode cannot even start */
	node_make(&o, "o", COMMUNE, KHEO_NODE_DEVICE);
	so.initiator = 1;
	assert_int_equal(kheo_session_new(&x, o.db, &so), KHEO_EAUTH);
	assert_non_null(strstr(kheo_errmsg(o.db), "open mode"));
	node_close(&p);
	node_close(&h);
	node_close(&d);
	node_close(&o);
}

/* A device receives its own unit and `_sys`, nothing of a neighbour's. */
static void device_receives_only_its_scope(void **state)
{
	test_node p, h, d, e;
	kheo_session_stats cs, ss;
	test_link l = { 0 };
	char mine[KHEO_RECORD_HEX + 1], other[KHEO_RECORD_HEX + 1], err[800];
	char *text = NULL;

	(void)state;
	node_tiers(&p, &h, &d);
	node_make(&e, "e", DISTRICT "/nam-dong", KHEO_NODE_DEVICE);
	node_enroll(&h, &e, "collector", DISTRICT "/nam-dong");
	node_put(&e, other, "model", "name=Hàng xóm",
		"unit=" DISTRICT "/nam-dong", NULL);
	model(&d, mine, 1);
	assert_int_equal(run(&e, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	memset(&l, 0, sizeof(l));
	assert_int_equal(run(&d, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	assert_string_equal(cs.scope, COMMUNE);
	assert_int_equal(kheo_get_json(h.db, &text, "model", other), KHEO_OK);
	kheo_free(text);
	assert_int_equal(kheo_get_json(d.db, &text, "model", other),
		KHEO_ENOTFOUND);
	/* but the neighbour's certificate came, in `_sys` */
	assert_string_equal(node_digest(&d, "_sys"), node_digest(&h, "_sys"));
	node_close(&p);
	node_close(&h);
	node_close(&d);
	node_close(&e);
}

/* Only what the peer lacks moves, also when the peer is ahead on a chain
 * (it got newer changesets of it from elsewhere). */
static void only_what_is_missing_moves(void **state)
{
	test_node p, h, d, e;
	kheo_session_stats cs, ss;
	test_link l = { 0 };
	char id[KHEO_RECORD_HEX + 1], err[800];
	int i;

	(void)state;
	node_tiers(&p, &h, &d);
	node_make(&e, "e", COMMUNE, KHEO_NODE_DEVICE);
	node_enroll(&h, &e, "collector", COMMUNE);
	for (i = 0; i < 10; i++) {
		model(&d, id, i);
		assert_int_equal(kheo_commit(d.db, NULL), KHEO_OK);
	}
	assert_int_equal(run(&d, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	memset(&l, 0, sizeof(l));
	assert_int_equal(run(&e, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	model(&d, id, 99);
	memset(&l, 0, sizeof(l));
	assert_int_equal(run(&d, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	/* d's one new changeset went up, nothing came back down */
	assert_int_equal(ss.received, 1);
	/* e is behind on d's chain and on nothing else: one changeset */
	memset(&l, 0, sizeof(l));
	assert_int_equal(run(&e, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	assert_int_equal(cs.received, 1);
	assert_int_equal(cs.sent, 0);
	node_close(&p);
	node_close(&h);
	node_close(&d);
	node_close(&e);
}

static int64_t clock_of(void *payload)
{
	return ((test_node *)payload)->now;
}

/* A server session bound to a handle only while it runs, a new handle of
 * the node each time, closed after (as kheod's pool does, at its worst):
 * it syncs as one that keeps its handle.  A handle of another node, or
 * one that may not sign, is refused and leaves the binding as it was. */
static void session_moves_between_handles_of_its_node(void **state)
{
	test_node p, h, d;
	kheo_session_options co = KHEO_SESSION_OPTIONS_INIT;
	kheo_session_options so = KHEO_SESSION_OPTIONS_INIT;
	kheo_open_options ro = KHEO_OPEN_OPTIONS_INIT;
	kheo_open_options ho = KHEO_OPEN_OPTIONS_INIT;
	kheo_session *a, *b;
	kheo_db *other = NULL;
	char id[KHEO_RECORD_HEX + 1], path[2200];
	int i, rounds, moved;

	(void)state;
	node_tiers(&p, &h, &d);
	for (i = 0; i < 10; i++)
		model(&d, id, i);
	co.initiator = 1;
	co.chunk_bytes = so.chunk_bytes = 1024;
	ho.now_ms = clock_of;
	ho.now_payload = &h;
	assert_int_equal(kheo_session_new(&a, d.db, &co), KHEO_OK);
	assert_int_equal(kheo_session_new(&b, h.db, &so), KHEO_OK);
	assert_int_equal(kheo_session_bind(b, d.db), KHEO_EINVAL);
	assert_non_null(strstr(kheo_errmsg(d.db), "another node"));
	assert_int_equal(kheo_session_bind(b, NULL), KHEO_OK);
	/* a copy of the hub without node.key opens but may not sign */
	snprintf(path, sizeof(path), "rm -rf '%s-ro' && cp -r '%s' '%s-ro' && "
		"rm '%s-ro/node.key'", h.dir, h.dir, h.dir, h.dir);
	assert_int_equal(system(path), 0);
	snprintf(path, sizeof(path), "%s-ro", h.dir);
	assert_int_equal(kheo_db_open(&other, path, &ro), KHEO_OK);
	assert_int_equal(kheo_session_bind(b, other), KHEO_EAUTH);
	kheo_db_close(other);
	for (rounds = 0, moved = 1; moved && rounds < 10000; rounds++) {
		const uint8_t *q;
		size_t n;
		uint8_t *copy;

		moved = 0;
		kheo_session_output(a, &q, &n);
		if (n) {
			kheo_db *x = NULL;

			copy = malloc(n);
			memcpy(copy, q, n);
			kheo_session_sent(a, n);
			if (kheo_db_open(&x, h.dir, &ho) < 0)
				fail_msg("open: %s", kheo_errmsg(x));
			assert_int_equal(kheo_session_bind(b, x), KHEO_OK);
			kheo_session_input(b, copy, n);
			assert_int_equal(kheo_session_bind(b, NULL), KHEO_OK);
			kheo_db_close(x);
			free(copy);
			moved = 1;
		}
		/* the server's output, status and error need no handle */
		kheo_session_output(b, &q, &n);
		if (n) {
			copy = malloc(n);
			memcpy(copy, q, n);
			kheo_session_sent(b, n);
			kheo_session_input(a, copy, n);
			free(copy);
			moved = 1;
		}
	}
	if (kheo_session_status(b, NULL) != KHEO_SESSION_DONE)
		fail_msg("%s / %s", kheo_session_error(b),
			kheo_session_error(a));
	assert_string_equal(kheo_session_error(b), "");
	assert_int_equal(kheo_session_status(a, NULL), KHEO_SESSION_DONE);
	kheo_session_free(b); /* unbound */
	kheo_session_free(a);
	node_reopen(&h);
	snprintf(path, sizeof(path), "%s", node_digest(&h, COMMUNE));
	assert_string_equal(path, node_digest(&d, COMMUNE));
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

/* Two sessions of one device at once: the second brings the node in sync
 * while the first is between its HELLO and the server's; both sides of
 * the first still decide alike, from the summaries they exchanged. */
static void overlapping_sessions_of_one_node_agree(void **state)
{
	test_node p, h, d;
	kheo_session_options co = KHEO_SESSION_OPTIONS_INIT;
	kheo_session_options so = KHEO_SESSION_OPTIONS_INIT;
	kheo_session_stats cs, ss;
	kheo_session *a, *b;
	test_link l = { 0 };
	char id[KHEO_RECORD_HEX + 1], err[800];
	int round, side;

	(void)state;
	node_tiers(&p, &h, &d);
	model(&d, id, 1);
	assert_int_equal(kheo_commit(d.db, NULL), KHEO_OK);
	co.initiator = 1;
	assert_int_equal(kheo_session_new(&a, d.db, &co), KHEO_OK);
	assert_int_equal(kheo_session_new(&b, h.db, &so), KHEO_OK);
	/* the handshake, up to the client's HELLO written but not read:
	 * the server has sent its key, msg2, msg4 and its stream header */
	for (round = 0; round < 50; round++) {
		kheo_session_stats bs;

		kheo_session_status(b, &bs);
		if (bs.bytes_out >= 36 + 64 + 80 + 24)
			break;
		for (side = 0; side < 2; side++) {
			kheo_session *from = side ? b : a, *to = side ? a : b;
			const uint8_t *q;
			size_t n;

			kheo_session_output(from, &q, &n);
			if (n) {
				uint8_t *copy = malloc(n);

				memcpy(copy, q, n);
				kheo_session_sent(from, n);
				kheo_session_input(to, copy, n);
				free(copy);
			}
		}
	}
	assert_int_equal(kheo_session_status(b, NULL),
		KHEO_SESSION_HANDSHAKE);
	/* meanwhile another session brings d and h level */
	assert_int_equal(run(&d, &h, &l, &cs, &ss, err, sizeof(err)),
		KHEO_SESSION_DONE);
	/* the first one goes on to the end */
	for (round = 0; round < 1000; round++) {
		int moved = 0;

		for (side = 0; side < 2; side++) {
			kheo_session *from = side ? b : a, *to = side ? a : b;
			const uint8_t *q;
			size_t n;

			kheo_session_output(from, &q, &n);
			if (n) {
				uint8_t *copy = malloc(n);

				memcpy(copy, q, n);
				kheo_session_sent(from, n);
				kheo_session_input(to, copy, n);
				free(copy);
				moved = 1;
			}
		}
		if (!moved)
			break;
	}
	if (kheo_session_status(a, NULL) != KHEO_SESSION_DONE ||
	    kheo_session_status(b, NULL) != KHEO_SESSION_DONE)
		fail_msg("%s / %s", kheo_session_error(a),
			kheo_session_error(b));
	kheo_session_free(a);
	kheo_session_free(b);
	node_close(&p);
	node_close(&h);
	node_close(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(device_hub_province_agree, teardown),
		cmocka_unit_test_teardown(
			in_sync_session_is_one_round_trip_under_2k, teardown),
		cmocka_unit_test_teardown(cut_session_resumes, teardown),
		cmocka_unit_test_teardown(
			long_offline_work_travels_in_small_changesets,
			teardown),
		cmocka_unit_test_teardown(device_receives_only_its_scope,
			teardown),
		cmocka_unit_test_teardown(only_what_is_missing_moves,
			teardown),
		cmocka_unit_test_teardown(
			overlapping_sessions_of_one_node_agree, teardown),
		cmocka_unit_test_teardown(
			session_moves_between_handles_of_its_node, teardown),
		cmocka_unit_test_teardown(other_network_is_refused, teardown),
		cmocka_unit_test_teardown(
			device_with_a_wrong_clock_is_told_to_fix_it, teardown),
		cmocka_unit_test_teardown(
			revoked_and_unenrolled_devices_are_refused, teardown),
	};

	return cmocka_run_group_tests_name("sync", tests, NULL, NULL);
}
