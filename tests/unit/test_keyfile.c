/*
 * test_keyfile.c - the node key at rest (keyfile.c): node.key sealed
 * under a passphrase, the plaintext format 1, refusals that leave a node
 * readable but unable to sign (missing or wrong passphrase, a key file
 * others can read, a damaged file).
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

	reopen_with(&a, PASS " ");
	cannot_sign(&a, "node.key: wrong passphrase");
	assert_int_equal(kheo_get_json(a.db, &text, "model", id), KHEO_OK);
	kheo_free(text);
	assert_int_equal(kheo_commit(a.db, NULL), KHEO_EAUTH);

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
		cmocka_unit_test_teardown(key_file_others_can_read_is_refused,
			teardown),
		cmocka_unit_test_teardown(damaged_key_files_are_refused,
			teardown),
		cmocka_unit_test_teardown(backup_exclude_names_the_key,
			teardown),
	};

	return cmocka_run_group_tests_name("keyfile", tests, NULL, NULL);
}
