/*
 * test_keyfile.c - the node key at rest (keyfile.c): node.key sealed
 * under a passphrase, the plaintext format 1, refusals that leave a node
 * readable but unable to sign (missing or wrong passphrase, a key file
 * others can read, a damaged file, another database's key), and kheo_rekey
 * giving a restored copy a new key that seals the edits left pending.
 */
#include "nodes.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UNIT "dak-nong/cu-jut/ea-po"
#define PASS "con bò vàng ăn cỏ non"

static int teardown(void **state)
{
	(void)state;
	test_cleanup();
	return 0;
}

static int64_t node_now(void *payload)
{
	return ((test_node *)payload)->now;
}

/* Make node `name` whose key is sealed under pass (NULL: in the clear). */
static void make_with(test_node *n, const char *name, const char *pass)
{
	kheo_init_options init = KHEO_INIT_OPTIONS_INIT;
	kheo_open_options o = KHEO_OPEN_OPTIONS_INIT;

	memset(n, 0, sizeof(*n));
	snprintf(n->dir, sizeof(n->dir), "%s/%s", test_scratch(), name);
	n->now = 1764000000000LL;
	init.unit = UNIT;
	o.now_ms = node_now;
	o.now_payload = n;
	o.passphrase = pass;
	if (kheo_db_init(&n->db, n->dir, &init, &o) < 0)
		fail_msg("init %s: %s", n->dir, kheo_errmsg(n->db));
}

/* Close (if open) and open again with pass; the open itself succeeds
 * whatever the key file says. */
static void reopen_with(test_node *n, const char *pass)
{
	kheo_open_options o = KHEO_OPEN_OPTIONS_INIT;

	node_close(n);
	o.now_ms = node_now;
	o.now_payload = n;
	o.passphrase = pass;
	if (kheo_db_open(&n->db, n->dir, &o) < 0)
		fail_msg("open %s: %s", n->dir, kheo_errmsg(n->db));
}

static char *key_path(const test_node *n)
{
	static char path[600];

	snprintf(path, sizeof(path), "%s/node.key", n->dir);
	return path;
}

static char *key_text(const test_node *n)
{
	size_t len;
	char *t = (char *)test_read_file(key_path(n), &len);

	assert_non_null(t);
	return t;
}

static void key_replace(const test_node *n, const char *text)
{
	FILE *f = fopen(key_path(n), "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(key_path(n), 0600), 0);
}

/* The node's key, from kheo_id_json, as hex. */
static void node_key(test_node *n, char out[KHEO_KEY_HEX + 1])
{
	char *text;
	json_t *o;

	assert_int_equal(kheo_id_json(n->db, &text), KHEO_OK);
	o = json_loads(text, 0, NULL);
	kheo_free(text);
	snprintf(out, KHEO_KEY_HEX + 1, "%s",
		json_string_value(json_object_get(o, "key")));
	json_decref(o);
}

/* Whether the file holds the node's secret key in the clear: a "secret"
 * line of 128 hex digits whose second half (libsodium's Ed25519 secret
 * key is seed || public key) is the node's key. */
static int holds_plain_secret(const char *text, const char *key_hex)
{
	const char *line = text;

	while ((line = strstr(line, "secret "))) {
		size_t n = strspn(line + 7, "0123456789abcdef");

		if (n == 128 && strncmp(line + 7 + 64, key_hex, 64) == 0)
			return 1;
		line += 7;
	}
	return 0;
}

static void can_sign(test_node *n)
{
	char id[KHEO_RECORD_HEX + 1];
	size_t sealed = 0;

	node_put(n, id, "model", "name=Mô hình", "unit=" UNIT, NULL);
	assert_int_equal(kheo_commit(n->db, &sealed), KHEO_OK);
	assert_int_equal(sealed, 1);
	assert_int_equal(kheo_verify(n->db), KHEO_OK);
}

/* A put is refused with KHEO_EAUTH and a message holding `why`. */
static void cannot_sign(test_node *n, const char *why)
{
	kheo_assign a[2] = { { "name", KHEO_ASSIGN_SET, "x" },
		{ "unit", KHEO_ASSIGN_SET, UNIT } };

	assert_int_equal(kheo_put(n->db, NULL, "model", NULL, a, 2),
		KHEO_EAUTH);
	if (!strstr(kheo_errmsg(n->db), why))
		fail_msg("\"%s\" does not say \"%s\"", kheo_errmsg(n->db), why);
}

static void sealed_key_round_trip(void **state)
{
	test_node a;
	char key[KHEO_KEY_HEX + 1], kdf[64], *text;

	(void)state;
	make_with(&a, "a", PASS);
	node_key(&a, key);
	text = key_text(&a);
	assert_true(strncmp(text, "kheo-node-key 2\n", 16) == 0);
	/* the costs are in the file, libsodium's INTERACTIVE for new files */
	snprintf(kdf, sizeof(kdf), "\nkdf argon2id13 %llu %zu ",
		(unsigned long long)crypto_pwhash_OPSLIMIT_INTERACTIVE,
		(size_t)crypto_pwhash_MEMLIMIT_INTERACTIVE);
	assert_non_null(strstr(text, kdf));
	assert_false(holds_plain_secret(text, key));
	assert_null(strstr(text, key)); /* not even the public half */
	free(text);
	can_sign(&a);
	reopen_with(&a, PASS);
	can_sign(&a);
	node_close(&a);

	/* the check above does see a key in the clear */
	make_with(&a, "plain", NULL);
	node_key(&a, key);
	text = key_text(&a);
	assert_true(strncmp(text, "kheo-node-key 1\n", 16) == 0);
	assert_true(holds_plain_secret(text, key));
	free(text);
	reopen_with(&a, NULL);
	can_sign(&a);
	node_close(&a);
}

static void missing_or_wrong_passphrase_reads_only(void **state)
{
	test_node a;
	char id[KHEO_RECORD_HEX + 1], *text;

	(void)state;
	make_with(&a, "a", PASS);
	node_put(&a, id, "model", "name=Mô hình", "unit=" UNIT, NULL);
	reopen_with(&a, NULL);
	cannot_sign(&a, "node.key is encrypted and no passphrase was given");
	assert_int_equal(kheo_get_json(a.db, &text, "model", id), KHEO_OK);
	kheo_free(text);
	assert_int_equal(kheo_commit(a.db, NULL), KHEO_EAUTH);
	assert_int_equal(kheo_rekey(a.db), KHEO_EAUTH);

	reopen_with(&a, PASS " ");
	cannot_sign(&a, "node.key: wrong passphrase");
	assert_int_equal(kheo_get_json(a.db, &text, "model", id), KHEO_OK);
	kheo_free(text);
	assert_int_equal(kheo_commit(a.db, NULL), KHEO_EAUTH);
	assert_int_equal(kheo_rekey(a.db), KHEO_EAUTH);
	assert_non_null(strstr(kheo_errmsg(a.db), "wrong passphrase"));

	/* a flipped byte of the sealed key reads as a wrong passphrase
	 * (the box's MAC cannot tell them apart) */
	text = key_text(&a);
	{
		char *s = strstr(text, "\nsecret ") + 8;

		*s = *s == '0' ? '1' : '0';
	}
	key_replace(&a, text);
	free(text);
	reopen_with(&a, PASS);
	cannot_sign(&a, "wrong passphrase");
	node_close(&a);
}

static void passphrase_is_borrowed_for_the_call(void **state)
{
	test_node a;
	char pass[64], before[KHEO_KEY_HEX + 1], after[KHEO_KEY_HEX + 1];

	(void)state;
	snprintf(pass, sizeof(pass), "%s", PASS);
	make_with(&a, "a", pass);
	memset(pass, 'x', sizeof(pass) - 1);
	node_close(&a);
	snprintf(pass, sizeof(pass), "%s", PASS);
	reopen_with(&a, pass);
	memset(pass, 0, sizeof(pass));
	/* the handle's own copy seals the new key */
	node_key(&a, before);
	assert_int_equal(kheo_rekey(a.db), KHEO_OK);
	node_key(&a, after);
	assert_string_not_equal(before, after);
	can_sign(&a);
	reopen_with(&a, PASS);
	can_sign(&a);
	node_close(&a);
}

static void key_file_others_can_read_is_refused(void **state)
{
	static const mode_t modes[] = { 0644, 0640, 0604, 0660 };
	test_node a;
	char want[64];
	size_t i;

	(void)state;
	make_with(&a, "a", NULL);
	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		assert_int_equal(chmod(key_path(&a), modes[i]), 0);
		reopen_with(&a, NULL);
		snprintf(want, sizeof(want), "mode %04o", (unsigned)modes[i]);
		cannot_sign(&a, want);
		cannot_sign(&a, "chmod 600");
	}
	assert_int_equal(chmod(key_path(&a), 0600), 0);
	reopen_with(&a, NULL);
	can_sign(&a);
	node_close(&a);
}

/* A format 2 key file's text with its kdf costs replaced by `costs`. */
static char *with_costs(const char *good, const char *costs)
{
	const char *p = strstr(good, "\nkdf argon2id13 ");
	const char *salt;
	char *t;

	assert_non_null(p);
	p += 16;
	salt = strchr(p, '\n') - 2 * crypto_pwhash_SALTBYTES;
	t = malloc(strlen(good) + strlen(costs) + 2);
	assert_non_null(t);
	sprintf(t, "%.*s%s %s", (int)(p - good), good, costs, salt);
	return t;
}

static void damaged_key_files_are_refused(void **state)
{
	test_node a;
	char *good, *text;

	(void)state;
	make_with(&a, "a", PASS);
	good = key_text(&a);

	/* costs a file may not ask for: refused before anything is
	 * allocated or derived */
	text = with_costs(good, "2 999999999999999");
	key_replace(&a, text);
	free(text);
	reopen_with(&a, PASS);
	cannot_sign(&a, "out of range");

	/* raised costs (within bounds) are what the file says: deriving
	 * with them gives another key, which does not open the box */
	text = with_costs(good, "3 67108864");
	key_replace(&a, text);
	free(text);
	reopen_with(&a, PASS);
	cannot_sign(&a, "wrong passphrase");

	key_replace(&a, "kheo-node-key 3\nsomething new\n");
	reopen_with(&a, PASS);
	cannot_sign(&a, "format this version does not know");

	text = strdup(good);
	text[strlen(text) - 10] = '\0'; /* cut inside the install id */
	key_replace(&a, text);
	free(text);
	reopen_with(&a, PASS);
	cannot_sign(&a, "damaged");

	key_replace(&a, good);
	reopen_with(&a, PASS);
	can_sign(&a);
	free(good);
	node_close(&a);
}

/* Copy a's database alone into `name`: a backup restored elsewhere, made
 * as .backup-exclude says, without node.key. */
static void restore_db(test_node *copy, test_node *a, const char *name)
{
	char cmd[2048];

	snprintf(copy->dir, sizeof(copy->dir), "%s/%s", test_scratch(), name);
	snprintf(cmd, sizeof(cmd), "mkdir '%s' && cp '%s/kheo.db' '%s/'",
		copy->dir, a->dir, copy->dir);
	assert_int_equal(system(cmd), 0);
	copy->now = a->now;
	copy->db = NULL;
}

static char *get_text(test_node *n, const char *table, const char *id)
{
	char *t;

	assert_int_equal(kheo_get_json(n->db, &t, table, id), KHEO_OK);
	return t;
}

static void rekey_seals_the_pending_edits_of_a_restored_copy(void **state)
{
	test_node a, copy, hub;
	char r[KHEO_RECORD_HEX + 1], s[KHEO_RECORD_HEX + 1];
	char t[KHEO_RECORD_HEX + 1];
	char old_key[KHEO_KEY_HEX + 1], new_key[KHEO_KEY_HEX + 1];
	char digest[65], *before[3], *after, *conflicts;
	const char *ids[3];
	size_t sealed = 0, i;
	json_t *log;

	(void)state;
	make_with(&a, "a", NULL);
	node_key(&a, old_key);
	/* sealed by the old key: t, later edited while pending */
	node_put(&a, t, "model", "name=Đã ký", "unit=" UNIT,
		"status=registered");
	assert_int_equal(kheo_commit(a.db, NULL), KHEO_OK);
	/* pending, naming each other: a status transition (kept, its pred
	 * the pending put), set members added then one removed, a record
	 * put and deleted, and a set whose pred is the sealed put */
	a.now += 1000;
	node_put(&a, r, "model", "name=Chờ ký", "unit=" UNIT,
		"status=registered");
	node_set(&a, "model", r, "status=building");
	node_set(&a, "model", r, "tags+=bò");
	node_set(&a, "model", r, "tags+=dê");
	node_set(&a, "model", r, "tags-=dê");
	node_set(&a, "model", r, "beneficiaries=3");
	node_set(&a, "model", r, "beneficiaries=4");
	node_put(&a, s, "model", "name=Xoá", "unit=" UNIT, NULL);
	assert_int_equal(kheo_delete(a.db, "model", s), KHEO_OK);
	node_set(&a, "model", t, "status=building");
	node_close(&a);

	restore_db(&copy, &a, "restored");
	reopen_with(&copy, NULL);
	cannot_sign(&copy, "node.key missing");
	ids[0] = r, ids[1] = s, ids[2] = t;
	for (i = 0; i < 3; i++)
		before[i] = get_text(&copy, "model", ids[i]);
	assert_int_equal(kheo_conflicts_json(copy.db, &conflicts), KHEO_OK);
	assert_string_equal(conflicts, "[]");
	kheo_free(conflicts);

	assert_int_equal(kheo_rekey(copy.db), KHEO_OK);
	node_key(&copy, new_key);
	assert_string_not_equal(old_key, new_key);
	/* the pending edits are the new key's, and show what they showed */
	for (i = 0; i < 3; i++) {
		after = get_text(&copy, "model", ids[i]);
		assert_string_equal(before[i], after);
		kheo_free(after);
	}
	assert_int_equal(kheo_conflicts_json(copy.db, &conflicts), KHEO_OK);
	assert_string_equal(conflicts, "[]");
	kheo_free(conflicts);
	assert_int_equal(kheo_verify(copy.db), KHEO_OK);
	snprintf(digest, sizeof(digest), "%s", node_digest(&copy, NULL));

	/* after a restart too: the new key file opens */
	reopen_with(&copy, NULL);
	assert_int_equal(kheo_commit(copy.db, &sealed), KHEO_OK);
	assert_int_equal(sealed, 1);
	/* the state before sealing is the state rebuilt from what the new
	 * key signed, and its chain starts at useq 1 */
	assert_string_equal(node_digest(&copy, NULL), digest);
	assert_int_equal(kheo_verify(copy.db), KHEO_OK);
	assert_int_equal(kheo_log_json(copy.db, &after), KHEO_OK);
	log = json_loads(after, 0, NULL);
	kheo_free(after);
	assert_int_equal(json_array_size(log), 2);
	assert_string_equal(json_string_value(json_object_get(
		json_array_get(log, 0), "author")), new_key);
	assert_int_equal(json_integer_value(json_object_get(
		json_array_get(log, 0), "useq")), 1);
	assert_string_equal(json_string_value(json_object_get(
		json_array_get(log, 1), "author")), old_key);
	json_decref(log);
	for (i = 0; i < 3; i++) {
		after = get_text(&copy, "model", ids[i]);
		assert_string_equal(before[i], after);
		kheo_free(after);
	}

	/* a hub that receives everything shows the same */
	node_make(&hub, "hub", "dak-nong", KHEO_NODE_HUB);
	node_send(&copy, &hub, NULL);
	assert_string_equal(node_digest(&hub, UNIT),
		node_digest(&copy, UNIT));
	assert_int_equal(kheo_conflicts_json(hub.db, &conflicts), KHEO_OK);
	assert_string_equal(conflicts, "[]");
	kheo_free(conflicts);
	assert_int_equal(kheo_verify(hub.db), KHEO_OK);
	for (i = 0; i < 3; i++)
		kheo_free(before[i]);
	node_close(&hub);
	node_close(&copy);
}

static void copy_with_another_install_id_refuses_until_rekeyed(void **state)
{
	test_node a, copy;
	char cmd[2048], *text, *inst;
	char old_key[KHEO_KEY_HEX + 1], new_key[KHEO_KEY_HEX + 1];

	(void)state;
	make_with(&a, "a", PASS);
	node_key(&a, old_key);
	node_close(&a);
	/* the key file of another install of the same node beside this
	 * database: same key, another install id */
	snprintf(copy.dir, sizeof(copy.dir), "%s/copy", test_scratch());
	snprintf(cmd, sizeof(cmd), "cp -R '%s' '%s'", a.dir, copy.dir);
	assert_int_equal(system(cmd), 0);
	copy.now = a.now;
	copy.db = NULL;
	text = key_text(&copy);
	inst = strstr(text, "\ninstall ") + 9;
	inst[0] = inst[0] == 'a' ? 'b' : 'a';
	key_replace(&copy, text);
	free(text);
	reopen_with(&copy, PASS);
	cannot_sign(&copy, "restored or copied");

	/* a node made with a passphrase is re-keyed with one */
	reopen_with(&copy, NULL);
	assert_int_equal(kheo_rekey(copy.db), KHEO_EAUTH);
	reopen_with(&copy, PASS);
	assert_int_equal(kheo_rekey(copy.db), KHEO_OK);
	node_key(&copy, new_key);
	assert_string_not_equal(old_key, new_key);
	text = key_text(&copy);
	assert_true(strncmp(text, "kheo-node-key 2\n", 16) == 0);
	assert_false(holds_plain_secret(text, new_key));
	free(text);
	reopen_with(&copy, PASS);
	can_sign(&copy);
	reopen_with(&copy, NULL);
	cannot_sign(&copy, "no passphrase");
	node_close(&copy);
}

static void restored_sealed_node_is_rekeyed_with_a_passphrase(void **state)
{
	test_node a, copy;
	char *text;

	(void)state;
	make_with(&a, "a", PASS);
	node_close(&a);
	restore_db(&copy, &a, "restored");
	/* its key file is gone, but the database remembers it was sealed:
	 * a forgotten passphrase must not leave the new key in the clear */
	reopen_with(&copy, NULL);
	assert_int_equal(kheo_rekey(copy.db), KHEO_EAUTH);
	assert_non_null(strstr(kheo_errmsg(copy.db), "passphrase"));
	/* any passphrase will do: there is no key file to open */
	reopen_with(&copy, "a new one");
	assert_int_equal(kheo_rekey(copy.db), KHEO_OK);
	text = key_text(&copy);
	assert_true(strncmp(text, "kheo-node-key 2\n", 16) == 0);
	free(text);
	/* and once more, after the rekey: still a sealed node */
	reopen_with(&copy, NULL);
	cannot_sign(&copy, "no passphrase");
	assert_int_equal(kheo_rekey(copy.db), KHEO_EAUTH);
	reopen_with(&copy, "a new one");
	can_sign(&copy);
	node_close(&copy);

	/* a node made in the clear and re-keyed with a passphrase is a
	 * sealed node from then on */
	make_with(&a, "plain", NULL);
	node_close(&a);
	restore_db(&copy, &a, "plain-restored");
	reopen_with(&copy, "a new one");
	assert_int_equal(kheo_rekey(copy.db), KHEO_OK);
	node_close(&copy);
	restore_db(&a, &copy, "plain-restored-again");
	reopen_with(&a, NULL);
	assert_int_equal(kheo_rekey(a.db), KHEO_EAUTH);
	node_close(&a);
}

static void rekey_is_refused_inside_a_batch(void **state)
{
	test_node a;

	(void)state;
	make_with(&a, "a", NULL);
	assert_int_equal(kheo_batch_begin(a.db), KHEO_OK);
	assert_int_equal(kheo_rekey(a.db), KHEO_EINVAL);
	kheo_batch_rollback(a.db);
	node_close(&a);
}

static void backup_exclude_names_the_key(void **state)
{
	test_node a;
	char path[600], *text;
	size_t len;

	(void)state;
	make_with(&a, "a", NULL);
	snprintf(path, sizeof(path), "%s/.backup-exclude", a.dir);
	text = (char *)test_read_file(path, &len);
	assert_non_null(text);
	assert_non_null(strstr(text, "node.key\n"));
	free(text);
	node_close(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(sealed_key_round_trip, teardown),
		cmocka_unit_test_teardown(
			missing_or_wrong_passphrase_reads_only, teardown),
		cmocka_unit_test_teardown(passphrase_is_borrowed_for_the_call,
			teardown),
		cmocka_unit_test_teardown(key_file_others_can_read_is_refused,
			teardown),
		cmocka_unit_test_teardown(damaged_key_files_are_refused,
			teardown),
		cmocka_unit_test_teardown(
			rekey_seals_the_pending_edits_of_a_restored_copy,
			teardown),
		cmocka_unit_test_teardown(
			copy_with_another_install_id_refuses_until_rekeyed,
			teardown),
		cmocka_unit_test_teardown(
			restored_sealed_node_is_rekeyed_with_a_passphrase,
			teardown),
		cmocka_unit_test_teardown(rekey_is_refused_inside_a_batch,
			teardown),
		cmocka_unit_test_teardown(backup_exclude_names_the_key,
			teardown),
	};

	return cmocka_run_group_tests_name("keyfile", tests, NULL, NULL);
}
