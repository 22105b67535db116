/*
 * test_audit.c - the audit mirror and record history through the public
 * API, in process, on real nodes (SQLite stores, libgit2 repositories in
 * a scratch folder): the dates people type, export then verify and
 * replay, an export that appends, and kheo_history_json's verdicts.  The
 * CLI and stock git are exercised by tests/integration/audit.sh and its
 * neighbours; this file pins the library's own contract.
 */
#include "nodes.h"
#include "audit_sign.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNIT "dak-nong/cu-jut/ea-po"

static int teardown(void **state)
{
	(void)state;
	test_cleanup();
	return 0;
}

/* ---------------------------------------------------- SSH signatures */

/* Made with OpenSSH: ssh-keygen -Y sign -n git over `kat_message`, by
 * the key whose public half is kat_key (tests/fuzz/fuzz_sshsig.c uses
 * the same).  Ed25519 is deterministic, so it is a fixed vector. */
static const char kat_message[] =
	"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
	"author kat <kat@kheo> 1714559400 +0000\n"
	"committer kat <kat@kheo> 1714559400 +0000\n"
	"\n"
	"kheo sshsig vector\n";
static const char kat_key[] =
	"f82aae6f38a0e58eba868b3ff2c341303380bd93651ed3151b4408df3427bf46";
static const char kat_sig[] =
	"-----BEGIN SSH SIGNATURE-----\n"
	"U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAg+Cqubzig5Y66hos/8sNBMDOAvZ\n"
	"NlHtMVG0QI3zQnv0YAAAADZ2l0AAAAAAAAAAZzaGE1MTIAAABTAAAAC3NzaC1lZDI1NTE5\n"
	"AAAAQKCCI4wCk3Ue2CvBKNFisL2cs2XVinc2HXli6BDbOqSTqSdsPVixrAnPF4NN+sey8V\n"
	"BEHRfO73AXzemvNYwrHQ4=\n"
	"-----END SSH SIGNATURE-----\n";

static void ssh_keygen_signatures_check_and_ours_match_them(void **state)
{
	uint8_t pk[KHEO_KEY_SIZE], other[KHEO_KEY_SIZE], sk[64], seed[32];
	const uint8_t *msg = (const uint8_t *)kat_message;
	size_t n = sizeof(kat_message) - 1;
	char why[200], line[KHEO_SSH_KEY_MAX];
	kheo_buf ours = { 0 };

	(void)state;
	assert_int_equal(kheo_unhex(pk, sizeof(pk), kat_key,
				 sizeof(kat_key) - 1), 0);
	assert_int_equal(kheo__sshsig_check(kat_sig, sizeof(kat_sig) - 1,
				 msg, n, pk, why, sizeof(why)), KHEO_OK);
	/* one byte of the message changed */
	assert_int_equal(kheo__sshsig_check(kat_sig, sizeof(kat_sig) - 1,
				 msg, n - 1, pk, why, sizeof(why)),
		KHEO_ECORRUPT);
	assert_non_null(strstr(why, "does not match"));
	/* another key */
	memcpy(other, pk, sizeof(other));
	other[0] ^= 1;
	assert_int_equal(kheo__sshsig_check(kat_sig, sizeof(kat_sig) - 1,
				 msg, n, other, why, sizeof(why)),
		KHEO_ECORRUPT);
	assert_non_null(strstr(why, "signed by f82aae6f38a0e58e"));
	assert_int_equal(kheo__sshsig_check("-----BEGIN SSH SIGNATURE-----\n"
				 "AAAA\n-----END SSH SIGNATURE-----", 63, msg,
				 n, pk, why, sizeof(why)), KHEO_ECORRUPT);

	/* ours, by a key we hold, verify the same way; the public key reads
	 * as OpenSSH writes it */
	memset(seed, 7, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	assert_int_equal(kheo__sshsig_sign(&ours, msg, n, pk, sk), KHEO_OK);
	assert_int_equal(kheo__sshsig_check((const char *)ours.p,
				 ours.len - 1, msg, n, pk, why, sizeof(why)),
		KHEO_OK);
	assert_memory_equal(ours.p, "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH",
		38);
	kheo__ssh_key_line(line, pk);
	assert_memory_equal(line, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", 37);
	kheo_buf_free(&ours);
}

#ifndef KHEO_NO_AUDIT /* a build without libgit2 has no mirror */
static void dates_people_type_parse_to_utc_ms(void **state)
{
	/* 2024-05-01T10:30:00Z */
	const int64_t at = 1714559400000LL;
	static const char *const bad[] = { "", "yesterday", "2024-02-30",
		"2024-13-01", "2024-05-01T25:00", "2024-05-01T10:30+7",
		"@", "@12x" };
	int64_t t;
	size_t i;

	(void)state;
	assert_int_equal(kheo_audit_parse_time(&t, "2024-05-01T10:30"), 0);
	assert_true(t == at);
	assert_int_equal(kheo_audit_parse_time(&t, "2024-05-01T10:30Z"), 0);
	assert_true(t == at);
	/* RFC 3339 lets people write a space for the T */
	assert_int_equal(kheo_audit_parse_time(&t, "2024-05-01 10:30"), 0);
	assert_true(t == at);
	assert_int_equal(kheo_audit_parse_time(&t, "2024-05-01T17:30+07:00"),
		0);
	assert_true(t == at);
	assert_int_equal(kheo_audit_parse_time(&t,
				 "2024-05-01T10:30:15.250Z"), 0);
	assert_true(t == at + 15250);
	/* a day alone is its end: "up to 1 May" includes the 1st */
	assert_int_equal(kheo_audit_parse_time(&t, "2024-05-01"), 0);
	assert_true(t == 1714607999999LL);
	assert_int_equal(kheo_audit_parse_time(&t, "@1714559400000"), 0);
	assert_true(t == at);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(kheo_audit_parse_time(&t, bad[i]),
			KHEO_EINVAL);
}

/* A node with a model edited twice, each sealed: three changesets of its
 * own and the ones the node made at init. */
static void edited_node(test_node *n, char id[KHEO_RECORD_HEX + 1])
{
	node_make(n, "a", UNIT, KHEO_NODE_DEVICE);
	node_put(n, id, "model", "name=Mô hình", "unit=" UNIT,
		"status=registered");
	assert_int_equal(kheo_commit(n->db, NULL), 0);
	n->now += 1000;
	node_set(n, "model", id, "beneficiaries=12");
	assert_int_equal(kheo_commit(n->db, NULL), 0);
}

static void export_verifies_and_replays_to_the_nodes_digest(void **state)
{
	test_node a;
	char id[KHEO_RECORD_HEX + 1], git[600], *json = NULL;
	kheo_audit_stats ex, ve, re;
	kheo_audit *m = NULL;
	json_t *o;

	(void)state;
	edited_node(&a, id);
	snprintf(git, sizeof(git), "%s/m.git", test_scratch());
	assert_int_equal(kheo_audit_export(a.db, git, &ex), 0);
	assert_true(ex.commits >= 2);
	assert_int_equal(strlen(ex.tip), 40);

	assert_int_equal(kheo_audit_open(&m, git, NULL), 0);
	assert_int_equal(kheo_audit_verify(m, &ve), 0);
	assert_int_equal(ve.errors, 0);
	assert_int_equal(ve.commits, ex.commits);
	assert_string_equal(ve.tip, ex.tip);
	/* a handle reads once */
	assert_int_equal(kheo_audit_verify(m, &ve), KHEO_EINVAL);
	kheo_audit_free(m);

	assert_int_equal(kheo_audit_open(&m, git, NULL), 0);
	assert_int_equal(kheo_audit_replay(m, KHEO_REPLAY_RECEIVED,
				 INT64_MAX, NULL, &json, &re), 0);
	assert_string_equal(re.digest, node_digest(&a, UNIT));
	o = json_loads(json, 0, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "digest")),
		re.digest);
	json_decref(o);
	kheo_free(json);
	kheo_audit_free(m);
	node_close(&a);
}

static void a_second_export_appends_only_what_is_new(void **state)
{
	test_node a;
	char id[KHEO_RECORD_HEX + 1], git[600], tip[41];
	kheo_audit_stats st;

	(void)state;
	edited_node(&a, id);
	snprintf(git, sizeof(git), "%s/m.git", test_scratch());
	assert_int_equal(kheo_audit_export(a.db, git, &st), 0);
	memcpy(tip, st.tip, sizeof(tip));
	assert_int_equal(kheo_audit_export(a.db, git, &st), 0);
	assert_int_equal(st.commits, 0);
	assert_string_equal(st.tip, tip);

	a.now += 1000;
	node_set(&a, "model", id, "owner=Y Bhin");
	assert_int_equal(kheo_commit(a.db, NULL), 0);
	assert_int_equal(kheo_audit_export(a.db, git, &st), 0);
	assert_int_equal(st.commits, 1);
	assert_string_not_equal(st.tip, tip);
	node_close(&a);
}

static void a_mirror_of_another_node_is_refused(void **state)
{
	test_node a, b;
	char id[KHEO_RECORD_HEX + 1], git[600];
	kheo_audit_stats st;

	(void)state;
	edited_node(&a, id);
	node_make(&b, "b", UNIT, KHEO_NODE_DEVICE);
	node_send(&a, &b, NULL);
	snprintf(git, sizeof(git), "%s/m.git", test_scratch());
	assert_int_equal(kheo_audit_export(a.db, git, &st), 0);
	assert_int_equal(kheo_audit_export(b.db, git, &st), KHEO_EINVAL);
	assert_non_null(strstr(kheo_errmsg(b.db), "not this node"));
	node_close(&a);
	node_close(&b);
}

#endif /* KHEO_NO_AUDIT */

/* The writes of `field` in a history, as "op:value:state" joined by
 * spaces (oldest first). */
static void writes_of(const char *json, const char *field, char *out,
	size_t n)
{
	json_t *o = json_loads(json, 0, NULL), *w;
	size_t i;

	out[0] = '\0';
	json_array_foreach(json_object_get(o, "writes"), i, w) {
		char *v;

		if (strcmp(json_string_value(json_object_get(w, "field")),
			    field) != 0)
			continue;
		v = json_dumps(json_object_get(w, "value"), JSON_ENCODE_ANY);
		snprintf(out + strlen(out), n - strlen(out), "%s%s:%s:%s",
			out[0] ? " " : "",
			json_string_value(json_object_get(w, "op")), v,
			json_string_value(json_object_get(w, "state")));
		free(v);
	}
	json_decref(o);
}

static void history_tells_which_writes_hold(void **state)
{
	test_node a, b;
	char id[KHEO_RECORD_HEX + 1], got[400], *json;

	(void)state;
	node_make(&a, "a", UNIT, KHEO_NODE_DEVICE);
	node_make(&b, "b", UNIT, KHEO_NODE_DEVICE);
	node_put(&a, id, "model", "name=Một", "unit=" UNIT,
		"status=registered");
	node_send(&a, &b, NULL);
	/* a renames twice in sequence; b, concurrently and later, once */
	a.now += 1000;
	node_set(&a, "model", id, "name=Hai");
	b.now += 5000;
	node_set(&b, "model", id, "name=Ba");
	node_send(&b, &a, NULL);
	/* a tag added, then removed */
	node_set(&a, "model", id, "tags+=x");
	node_set(&a, "model", id, "tags-=x");

	assert_int_equal(kheo_history_json(a.db, &json, "model", id), 0);
	writes_of(json, "name", got, sizeof(got));
	assert_string_equal(got, "put:\"Một\":superseded set:\"Hai\":competing "
		"set:\"Ba\":holds");
	writes_of(json, "tags", got, sizeof(got));
	assert_string_equal(got, "add:\"x\":superseded remove:\"x\":applied");
	kheo_free(json);

	assert_int_equal(kheo_history_json(a.db, &json, "visit", id),
		KHEO_ENOTFOUND);
	assert_int_equal(kheo_history_json(a.db, &json, "nosuch", id),
		KHEO_EINVAL);
	assert_int_equal(kheo_history_json(a.db, &json, "model", "12zz"),
		KHEO_EINVAL);
	node_close(&a);
	node_close(&b);
}

int main(void)
{
	const struct CMUnitTest history[] = {
		cmocka_unit_test_teardown(history_tells_which_writes_hold,
			teardown),
		cmocka_unit_test(
			ssh_keygen_signatures_check_and_ours_match_them),
	};
#ifndef KHEO_NO_AUDIT
	const struct CMUnitTest audit[] = {
		cmocka_unit_test(dates_people_type_parse_to_utc_ms),
		cmocka_unit_test_teardown(
			export_verifies_and_replays_to_the_nodes_digest,
			teardown),
		cmocka_unit_test_teardown(
			a_second_export_appends_only_what_is_new, teardown),
		cmocka_unit_test_teardown(a_mirror_of_another_node_is_refused,
			teardown),
	};

	return cmocka_run_group_tests_name("history", history, NULL, NULL) |
	       cmocka_run_group_tests_name("audit", audit, NULL, NULL);
#else
	/* a build without libgit2 (phones): the mirror calls fail with
	 * KHEO_EUNSUPPORTED; history is the node's own */
	return cmocka_run_group_tests_name("history", history, NULL, NULL);
#endif
}
