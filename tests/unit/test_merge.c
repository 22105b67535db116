/*
 * test_merge.c - the merge rules of DESIGN.md on real nodes (SQLite stores
 * in a scratch folder) exchanging real bundle files: registers and their
 * conflicts, add-wins sets, delete and undelete, an edit concurrent with a
 * delete, sealing, equivocation, held and rejected changesets, the clock.
 */
#include "nodes.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UNIT "dak-nong/cu-jut/ea-po"

static int teardown(void **state)
{
	(void)state;
	test_cleanup();
	return 0;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* A model in UNIT made on n. */
static void model(test_node *n, char id[KHEO_RECORD_HEX + 1])
{
	node_put(n, id, "model", "name=Mô hình nuôi bò", "unit=" UNIT,
		"status=registered");
}

static void concurrent_sets_conflict_until_resolved(void **state)
{
	test_node a, b;
	char id[KHEO_RECORD_HEX + 1];
	json_t *ra, *rb;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	node_make(&b, "b", UNIT, KHEO_NODE_DEVICE);
	model(&a, id);
	node_send(&a, &b, NULL);

	/* both change status without seeing the other; b's is later */
	node_set(&a, "model", id, "status=building");
	b.now += 1000;
	node_set(&b, "model", id, "status=review");
	node_send(&a, &b, NULL);
	node_send(&b, &a, NULL);
	ra = node_get(&a, "model", id);
	rb = node_get(&b, "model", id);
	assert_string_equal(str(ra, "status"), "review");
	assert_string_equal(str(rb, "status"), "review");
	assert_int_equal(json_array_size(json_object_get(
		json_object_get(ra, "_conflicts"), "status")), 2);
	assert_string_equal(node_digest(&a, NULL), node_digest(&b, NULL));
	json_decref(ra);
	json_decref(rb);

	/* a set that has seen both values resolves the conflict */
	node_set(&a, "model", id, "status=building");
	node_send(&a, &b, NULL);
	rb = node_get(&b, "model", id);
	assert_string_equal(str(rb, "status"), "building");
	assert_null(json_object_get(rb, "_conflicts"));
	json_decref(rb);
	assert_string_equal(node_digest(&a, NULL), node_digest(&b, NULL));
	node_close(&a);
	node_close(&b);
}

static int has_member(json_t *rec, const char *field, const char *m)
{
	json_t *arr = json_object_get(rec, field), *v;
	size_t i;

	json_array_foreach(arr, i, v)
		if (strcmp(json_string_value(v), m) == 0)
			return 1;
	return 0;
}

static void sets_are_add_wins(void **state)
{
	test_node a, b;
	char id[KHEO_RECORD_HEX + 1];
	json_t *r;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	node_make(&b, "b", UNIT, KHEO_NODE_DEVICE);
	model(&a, id);
	node_set(&a, "model", id, "tags+=cà phê");
	node_set(&a, "model", id, "tags+=bò");
	node_send(&a, &b, NULL);

	/* b removes "cà phê" while a, unaware, adds it again */
	node_set(&b, "model", id, "tags-=cà phê");
	node_set(&a, "model", id, "tags+=cà phê");
	/* and b removes "bò", which nobody re-adds */
	node_set(&b, "model", id, "tags-=bò");
	node_send(&a, &b, NULL);
	node_send(&b, &a, NULL);
	r = node_get(&a, "model", id);
	assert_true(has_member(r, "tags", "cà phê"));
	assert_false(has_member(r, "tags", "bò"));
	json_decref(r);
	assert_string_equal(node_digest(&a, NULL), node_digest(&b, NULL));

	/* removing what is not a member is refused, naming it */
	{
		kheo_assign rm = { "tags", KHEO_ASSIGN_REMOVE, "lúa" };

		assert_int_equal(kheo_set(a.db, "model", id, &rm, 1),
			KHEO_ENOTFOUND);
		assert_non_null(strstr(kheo_errmsg(a.db), "lúa"));
	}
	node_close(&a);
	node_close(&b);
}

static size_t count_live(test_node *n)
{
	char *json;
	json_t *arr;
	size_t k;

	assert_int_equal(kheo_list_json(n->db, &json, "model", NULL, 0),
		KHEO_OK);
	arr = json_loads(json, 0, NULL);
	kheo_free(json);
	k = json_array_size(arr);
	json_decref(arr);
	return k;
}

static void delete_and_undelete(void **state)
{
	test_node a, b;
	char id[KHEO_RECORD_HEX + 1];
	json_t *r;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	node_make(&b, "b", UNIT, KHEO_NODE_DEVICE);
	model(&a, id);
	node_send(&a, &b, NULL);
	assert_int_equal(kheo_delete(a.db, "model", id), KHEO_OK);
	assert_int_equal(count_live(&a), 0);
	node_send(&a, &b, NULL);
	assert_int_equal(count_live(&b), 0);
	r = node_get(&b, "model", id);
	assert_true(json_is_true(json_object_get(r, "_deleted")));
	/* nothing is erased: the fields are still there */
	assert_string_equal(str(r, "name"), "Mô hình nuôi bò");
	json_decref(r);

	/* editing a deleted record is refused; undelete is a set back */
	{
		kheo_assign s = { "status", KHEO_ASSIGN_SET, "building" };

		assert_int_equal(kheo_set(b.db, "model", id, &s, 1),
			KHEO_EINVAL);
	}
	node_set(&b, "model", id, "_deleted=false");
	node_send(&b, &a, NULL);
	assert_int_equal(count_live(&a), 1);
	assert_string_equal(node_digest(&a, NULL), node_digest(&b, NULL));
	node_close(&a);
	node_close(&b);
}

static void edit_concurrent_with_delete_is_shown(void **state)
{
	test_node a, b;
	char id[KHEO_RECORD_HEX + 1], *json;
	json_t *arr;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	node_make(&b, "b", UNIT, KHEO_NODE_DEVICE);
	model(&a, id);
	node_send(&a, &b, NULL);
	assert_int_equal(kheo_delete(a.db, "model", id), KHEO_OK);
	node_set(&b, "model", id, "beneficiaries=40");
	node_send(&a, &b, NULL);
	node_send(&b, &a, NULL);

	assert_int_equal(kheo_conflicts_json(a.db, &json), KHEO_OK);
	arr = json_loads(json, 0, NULL);
	kheo_free(json);
	assert_int_equal(json_array_size(arr), 1);
	assert_string_equal(str(json_array_get(arr, 0), "field"), "_deleted");
	assert_non_null(strstr(str(json_array_get(arr, 0), "kind"),
		"delete"));
	json_decref(arr);
	/* the edit is kept, not lost */
	arr = node_get(&a, "model", id);
	assert_int_equal(json_integer_value(json_object_get(arr,
				 "beneficiaries")), 40);
	json_decref(arr);
	assert_string_equal(node_digest(&a, NULL), node_digest(&b, NULL));
	node_close(&a);
	node_close(&b);
}

static void sealing_keeps_the_state_and_collapses_edits(void **state)
{
	test_node a;
	char id[KHEO_RECORD_HEX + 1], before[65], *json;
	json_t *log;
	size_t sealed = 0;
	int i;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	model(&a, id);
	for (i = 0; i < 10; i++) {
		char s[32];

		snprintf(s, sizeof(s), "beneficiaries=%d", i);
		node_set(&a, "model", id, s);
	}
	node_set(&a, "model", id, "name=Mô hình nuôi bò sinh sản");
	node_set(&a, "model", id, "status=building");
	node_set(&a, "model", id, "status=review");
	node_set(&a, "model", id, "tags+=bò");
	snprintf(before, sizeof(before), "%s", node_digest(&a, NULL));
	assert_int_equal(kheo_verify(a.db), KHEO_OK);
	assert_int_equal(kheo_commit(a.db, &sealed), KHEO_OK);
	assert_int_equal(sealed, 1);
	assert_string_equal(node_digest(&a, NULL), before);
	assert_int_equal(kheo_verify(a.db), KHEO_OK);

	/* ten sets of beneficiaries leave one; the later name replaces the
	 * put's; both status transitions stay (workflow); put, beneficiaries,
	 * name, two statuses and the add: 6 ops of the 15 edits */
	assert_int_equal(kheo_log_json(a.db, &json), KHEO_OK);
	log = json_loads(json, 0, NULL);
	kheo_free(json);
	assert_int_equal(json_array_size(log), 1);
	assert_int_equal(json_integer_value(json_object_get(
		json_array_get(log, 0), "ops")), 6);
	json_decref(log);

	/* a receiver rebuilds the same state from the sealed changeset */
	{
		test_node b;

		node_make(&b, "b", UNIT, KHEO_NODE_DEVICE);
		node_send(&a, &b, NULL);
		assert_string_equal(node_digest(&b, NULL), before);
		node_close(&b);
	}
	node_close(&a);
}

static void sealing_collapses_sets_but_keeps_their_preds(void **state)
{
	test_node a, b;
	char id[KHEO_RECORD_HEX + 1], want[65];
	json_t *r;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	node_make(&b, "b", UNIT, KHEO_NODE_DEVICE);
	model(&a, id);
	assert_int_equal(kheo_commit(a.db, NULL), KHEO_OK);
	node_send(&a, &b, NULL);
	/* b writes beneficiaries; a sees it, then sets twice more */
	node_set(&b, "model", id, "beneficiaries=5");
	node_send(&b, &a, NULL);
	node_set(&a, "model", id, "beneficiaries=6");
	node_set(&a, "model", id, "beneficiaries=7");
	snprintf(want, sizeof(want), "%s", node_digest(&a, NULL));
	node_send(&a, &b, NULL); /* seals: 6 is replaced by 7 */
	assert_string_equal(node_digest(&a, NULL), want);
	assert_string_equal(node_digest(&b, NULL), want);
	/* 7 superseded b's 5 (inherited from the replaced 6): no conflict */
	r = node_get(&b, "model", id);
	assert_int_equal(json_integer_value(json_object_get(r,
				 "beneficiaries")), 7);
	assert_null(json_object_get(r, "_conflicts"));
	json_decref(r);
	node_close(&a);
	node_close(&b);
}

static void sealing_a_large_batch_of_puts(void **state)
{
	test_node a, b;
	kheo_assign f[] = {
		{ "name", KHEO_ASSIGN_SET, "Mô hình" },
		{ "unit", KHEO_ASSIGN_SET, UNIT },
		{ "kind", KHEO_ASSIGN_SET, "collective" },
		{ "field", KHEO_ASSIGN_SET, "economy" },
		{ "level", KHEO_ASSIGN_SET, "commune" },
		{ "status", KHEO_ASSIGN_SET, "registered" },
		{ "year", KHEO_ASSIGN_SET, "2024" },
		{ "beneficiaries", KHEO_ASSIGN_SET, "12" },
		{ "lat", KHEO_ASSIGN_SET, "12.5" },
		{ "lon", KHEO_ASSIGN_SET, "107.7" },
	};
	size_t sealed = 0;
	int i;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	node_make(&b, "b", UNIT, KHEO_NODE_DEVICE);
	/* many fields written in one batch: the sealer's map of written
	 * registers must hold them all (it once filled up and spun) */
	assert_int_equal(kheo_batch_begin(a.db), KHEO_OK);
	for (i = 0; i < 300; i++)
		assert_int_equal(kheo_put(a.db, NULL, "model", NULL, f, 10),
			KHEO_OK);
	assert_int_equal(kheo_batch_commit(a.db), KHEO_OK);
	assert_int_equal(kheo_commit(a.db, &sealed), KHEO_OK);
	/* about 75 KiB of ops: split once at the sealer's 64 KiB bound */
	assert_int_equal(sealed, 2);
	node_send(&a, &b, NULL);
	assert_int_equal(count_live(&b), 300);
	assert_string_equal(node_digest(&a, NULL), node_digest(&b, NULL));
	node_close(&a);
	node_close(&b);
}

static void equivocation_applies_both_and_flags_the_key(void **state)
{
	test_node a, clone, hub;
	char id[KHEO_RECORD_HEX + 1], cmd[2048], *json;
	json_t *o;
	kheo_bundle_stats st = { 0 };

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	node_make(&hub, "hub", "dak-nong/cu-jut", KHEO_NODE_HUB);
	node_close(&a);
	/* a device cloned with its key: both will sign useq 1 */
	snprintf(clone.dir, sizeof(clone.dir), "%s/clone", test_scratch());
	snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s'", a.dir, clone.dir);
	assert_int_equal(system(cmd), 0);
	clone.now = a.now;
	node_reopen(&a);
	clone.db = NULL;
	node_reopen(&clone);
	model(&a, id);
	model(&clone, id);
	node_send(&a, &hub, &st);
	node_send(&clone, &hub, &st);
	assert_int_equal(st.apply.applied, 2); /* one from each bundle */
	assert_int_equal(count_live(&hub), 2);
	assert_int_equal(kheo_id_json(hub.db, &json), KHEO_OK);
	o = json_loads(json, 0, NULL);
	kheo_free(json);
	assert_int_equal(json_integer_value(json_object_get(o,
				 "flagged_keys")), 1);
	json_decref(o);
	assert_int_equal(kheo_verify(hub.db), KHEO_OK);
	node_close(&a);
	node_close(&clone);
	node_close(&hub);
}

/* Frames of a node's full bundle, via proto's reader. */
static kheo_bundle *frames_of(test_node *n, kheo_buf *file)
{
	char path[600];
	kheo_bundle *b;
	uint8_t *p;
	size_t len;

	snprintf(path, sizeof(path), "%s/frames.bundle", test_scratch());
	assert_int_equal(kheo_bundle_create(n->db, path, NULL, NULL), KHEO_OK);
	p = test_read_file(path, &len);
	assert_non_null(p);
	kheo_buf_reset(file);
	kheo_buf_put(file, p, len);
	free(p);
	assert_int_equal(kheo_bundle_decode(&b, file->p, file->len, NULL),
		KHEO_OK);
	return b;
}

static void gap_is_held_until_filled(void **state)
{
	test_node a, b;
	char id[KHEO_RECORD_HEX + 1];
	kheo_buf file = { 0 };
	kheo_apply_stats st = { 0 };
	kheo_bundle *bun;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	node_make(&b, "b", UNIT, KHEO_NODE_DEVICE);
	model(&a, id);
	assert_int_equal(kheo_commit(a.db, NULL), KHEO_OK);
	node_set(&a, "model", id, "status=building");
	bun = frames_of(&a, &file); /* useq 1, then useq 2 */
	assert_int_equal(bun->nframes, 2);
	assert_int_equal(kheo_apply(b.db, &bun->frames[1], &bun->lens[1], 1,
				 &st), KHEO_OK);
	assert_int_equal(st.held, 1);
	assert_int_equal(count_live(&b), 0);
	/* a held changeset is acknowledged as stored: not a duplicate gap */
	assert_int_equal(kheo_apply(b.db, &bun->frames[1], &bun->lens[1], 1,
				 &st), KHEO_OK);
	assert_int_equal(st.duplicate, 1);
	assert_int_equal(kheo_apply(b.db, &bun->frames[0], &bun->lens[0], 1,
				 &st), KHEO_OK);
	assert_int_equal(st.applied, 1);
	assert_int_equal(st.released, 1);
	assert_string_equal(node_digest(&a, NULL), node_digest(&b, NULL));
	kheo_bundle_free(bun);
	kheo_buf_free(&file);
	node_close(&a);
	node_close(&b);
}

static void both_branches_held_on_one_predecessor_are_released(void **state)
{
	test_node a, clone, c;
	char id[KHEO_RECORD_HEX + 1], cmd[2048];
	kheo_buf fa = { 0 }, fc = { 0 };
	kheo_apply_stats st = { 0 };
	kheo_bundle *ba, *bc;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	node_make(&c, "c", UNIT, KHEO_NODE_DEVICE);
	model(&a, id);
	assert_int_equal(kheo_commit(a.db, NULL), KHEO_OK); /* useq 1 */
	node_close(&a);
	snprintf(clone.dir, sizeof(clone.dir), "%s/clone", test_scratch());
	snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s'", a.dir, clone.dir);
	assert_int_equal(system(cmd), 0);
	clone.now = a.now;
	clone.db = NULL;
	node_reopen(&a);
	node_reopen(&clone);
	/* both copies write their own useq 2 on the same useq 1 */
	node_set(&a, "model", id, "beneficiaries=1");
	node_set(&clone, "model", id, "beneficiaries=2");
	ba = frames_of(&a, &fa);
	bc = frames_of(&clone, &fc);
	assert_int_equal(ba->nframes, 2);
	assert_int_equal(bc->nframes, 2);
	/* c gets both useq 2 first: both held */
	assert_int_equal(kheo_apply(c.db, &ba->frames[1], &ba->lens[1], 1,
				 &st), KHEO_OK);
	assert_int_equal(kheo_apply(c.db, &bc->frames[1], &bc->lens[1], 1,
				 &st), KHEO_OK);
	assert_int_equal(st.held, 2);
	/* useq 1 arrives: both branches go, not only the first found */
	assert_int_equal(kheo_apply(c.db, &ba->frames[0], &ba->lens[0], 1,
				 &st), KHEO_OK);
	assert_int_equal(st.released, 2);
	{
		char *json;
		json_t *o;

		assert_int_equal(kheo_id_json(c.db, &json), KHEO_OK);
		o = json_loads(json, 0, NULL);
		kheo_free(json);
		assert_int_equal(json_integer_value(json_object_get(o,
					 "held")), 0);
		assert_int_equal(json_integer_value(json_object_get(o,
					 "changesets")), 3);
		json_decref(o);
	}
	kheo_bundle_free(ba);
	kheo_bundle_free(bc);
	kheo_buf_free(&fa);
	kheo_buf_free(&fc);
	node_close(&a);
	node_close(&clone);
	node_close(&c);
}

static void future_clock_is_held_not_applied(void **state)
{
	test_node a, b;
	char id[KHEO_RECORD_HEX + 1];
	kheo_bundle_stats st = { 0 };

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	node_make(&b, "b", UNIT, KHEO_NODE_DEVICE);
	a.now += 3LL * 24 * 3600 * 1000; /* a's clock is 3 days fast */
	model(&a, id);
	node_send(&a, &b, &st);
	assert_int_equal(st.apply.held, 1);
	assert_int_equal(count_live(&b), 0);
	/* time passes at b; the next receipt releases it */
	b.now += 3LL * 24 * 3600 * 1000;
	memset(&st, 0, sizeof(st));
	node_send(&a, &b, &st);
	assert_int_equal(count_live(&b), 1);
	assert_string_equal(node_digest(&a, NULL), node_digest(&b, NULL));
	node_close(&a);
	node_close(&b);
}

static void forged_changeset_goes_to_quarantine(void **state)
{
	test_node a, b;
	char id[KHEO_RECORD_HEX + 1], *json;
	kheo_buf file = { 0 }, forged = { 0 };
	kheo_apply_stats st = { 0 };
	kheo_bundle *bun;
	const uint8_t *frames[2];
	size_t lens[2];
	json_t *q;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	node_make(&b, "b", "dak-nong/cu-jut/nam-dong", KHEO_NODE_DEVICE);
	model(&a, id);
	node_put(&b, NULL, "model", "name=Một mô hình khác",
		"unit=dak-nong/cu-jut/nam-dong", NULL);
	bun = frames_of(&a, &file);
	kheo_buf_put(&forged, bun->frames[0], bun->lens[0]);
	forged.p[10] ^= 0x40; /* inside the signature */
	frames[0] = forged.p;
	lens[0] = forged.len;
	assert_int_equal(kheo_apply(b.db, frames, lens, 1, &st), KHEO_OK);
	assert_int_equal(st.rejected, 1);
	assert_int_equal(kheo_quarantine_json(b.db, &json), KHEO_OK);
	q = json_loads(json, 0, NULL);
	kheo_free(json);
	assert_int_equal(json_array_size(q), 1);
	assert_string_equal(str(json_array_get(q, 0), "reason"),
		"bad-signature");
	assert_non_null(str(json_array_get(q, 0), "id"));
	json_decref(q);
	/* the genuine one still applies */
	frames[1] = bun->frames[0];
	lens[1] = bun->lens[0];
	assert_int_equal(kheo_apply(b.db, &frames[1], &lens[1], 1, &st),
		KHEO_OK);
	assert_int_equal(st.applied, 1);
	kheo_bundle_free(bun);
	kheo_buf_free(&file);
	kheo_buf_free(&forged);
	node_close(&a);
	node_close(&b);
}

static void clock_never_goes_back_across_restarts(void **state)
{
	test_node a;
	char id[KHEO_RECORD_HEX + 1];

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	model(&a, id);
	assert_int_equal(kheo_commit(a.db, NULL), KHEO_OK);
	/* the wall clock jumps back an hour across a restart */
	a.now -= 3600 * 1000;
	node_reopen(&a);
	node_set(&a, "model", id, "status=building");
	/* the new changeset's clock is above its predecessor's, or its own
	 * receipt would refuse it */
	assert_int_equal(kheo_commit(a.db, NULL), KHEO_OK);
	assert_int_equal(kheo_verify(a.db), KHEO_OK);
	{
		json_t *r = node_get(&a, "model", id);

		assert_string_equal(str(r, "status"), "building");
		json_decref(r);
	}
	node_close(&a);
}

static void clock_moves_past_what_it_applies(void **state)
{
	test_node a, b;
	char id[KHEO_RECORD_HEX + 1];
	json_t *r;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	node_make(&b, "b", UNIT, KHEO_NODE_DEVICE);
	a.now += 3600 * 1000; /* a is an hour ahead (within 24 h: applied) */
	model(&a, id);
	node_set(&a, "model", id, "beneficiaries=1");
	node_send(&a, &b, NULL);
	/* b's wall clock is behind a's value, yet b's edit supersedes it:
	 * its clock moved past what it applied (else the pred rule, pred
	 * older than op, would refuse to seal it) */
	node_set(&b, "model", id, "beneficiaries=2");
	assert_int_equal(kheo_commit(b.db, NULL), KHEO_OK);
	node_send(&b, &a, NULL);
	r = node_get(&a, "model", id);
	assert_int_equal(json_integer_value(json_object_get(r,
				 "beneficiaries")), 2);
	assert_null(json_object_get(r, "_conflicts"));
	json_decref(r);
	node_close(&a);
	node_close(&b);
}

static void clock_counts_within_one_millisecond(void **state)
{
	test_node a;
	char id[KHEO_RECORD_HEX + 1];
	int i;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	/* the wall clock stands still: every op still gets its own clock
	 * (the counter), or sealing would refuse clocks that do not rise */
	model(&a, id);
	for (i = 0; i < 50; i++)
		node_set(&a, "model", id, i % 2 ? "status=building"
						  : "status=review");
	assert_int_equal(kheo_commit(a.db, NULL), KHEO_OK);
	assert_int_equal(kheo_verify(a.db), KHEO_OK);
	node_close(&a);
}

static void restored_copy_refuses_to_sign(void **state)
{
	test_node a, copy;
	char id[KHEO_RECORD_HEX + 1], cmd[2048];
	kheo_assign s = { "status", KHEO_ASSIGN_SET, "building" };

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	model(&a, id);
	node_close(&a);
	/* a backup restored elsewhere: the database without its key file */
	snprintf(copy.dir, sizeof(copy.dir), "%s/restored", test_scratch());
	snprintf(cmd, sizeof(cmd), "mkdir '%s' && cp '%s/kheo.db' '%s/'",
		copy.dir, a.dir, copy.dir);
	assert_int_equal(system(cmd), 0);
	copy.now = a.now;
	copy.db = NULL;
	node_reopen(&copy);
	assert_int_equal(kheo_set(copy.db, "model", id, &s, 1), KHEO_EAUTH);
	assert_non_null(strstr(kheo_errmsg(copy.db), "cannot sign"));
	/* reading still works */
	{
		json_t *r = node_get(&copy, "model", id);

		json_decref(r);
	}
	node_close(&copy);
}

static void bad_values_are_refused_and_change_nothing(void **state)
{
	test_node a;
	char id[KHEO_RECORD_HEX + 1], before[65];
	kheo_assign bad[] = {
		{ "kind", KHEO_ASSIGN_SET, "collectiv" },
		{ "beneficiaries", KHEO_ASSIGN_SET, "-3" },
		{ "nosuchfield", KHEO_ASSIGN_SET, "1" },
		{ "name", KHEO_ASSIGN_SET, "\xc3\x28" },
	};
	const char *names[] = { "collectiv", "beneficiaries", "nosuchfield",
		"name" };
	size_t i;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	model(&a, id);
	snprintf(before, sizeof(before), "%s", node_digest(&a, NULL));
	for (i = 0; i < 4; i++) {
		assert_int_equal(kheo_set(a.db, "model", id, &bad[i], 1),
			KHEO_EINVAL);
		assert_non_null(strstr(kheo_errmsg(a.db), names[i]));
		assert_string_equal(node_digest(&a, NULL), before);
	}
	/* a put missing a required field */
	{
		kheo_assign only = { "unit", KHEO_ASSIGN_SET, UNIT };

		assert_int_equal(kheo_put(a.db, NULL, "model", NULL, &only, 1),
			KHEO_EINVAL);
		assert_non_null(strstr(kheo_errmsg(a.db), "name"));
	}
	assert_string_equal(node_digest(&a, NULL), before);
	node_close(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(concurrent_sets_conflict_until_resolved,
			teardown),
		cmocka_unit_test_teardown(sets_are_add_wins, teardown),
		cmocka_unit_test_teardown(delete_and_undelete, teardown),
		cmocka_unit_test_teardown(edit_concurrent_with_delete_is_shown,
			teardown),
		cmocka_unit_test_teardown(
			sealing_keeps_the_state_and_collapses_edits, teardown),
		cmocka_unit_test_teardown(
			sealing_collapses_sets_but_keeps_their_preds, teardown),
		cmocka_unit_test_teardown(sealing_a_large_batch_of_puts,
			teardown),
		cmocka_unit_test_teardown(
			equivocation_applies_both_and_flags_the_key, teardown),
		cmocka_unit_test_teardown(gap_is_held_until_filled, teardown),
		cmocka_unit_test_teardown(
			both_branches_held_on_one_predecessor_are_released,
			teardown),
		cmocka_unit_test_teardown(future_clock_is_held_not_applied,
			teardown),
		cmocka_unit_test_teardown(forged_changeset_goes_to_quarantine,
			teardown),
		cmocka_unit_test_teardown(clock_never_goes_back_across_restarts,
			teardown),
		cmocka_unit_test_teardown(clock_moves_past_what_it_applies,
			teardown),
		cmocka_unit_test_teardown(clock_counts_within_one_millisecond,
			teardown),
		cmocka_unit_test_teardown(restored_copy_refuses_to_sign,
			teardown),
		cmocka_unit_test_teardown(
			bad_values_are_refused_and_change_nothing, teardown),
	};

	return cmocka_run_group_tests_name("merge", tests, NULL, NULL);
}
