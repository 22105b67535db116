/*
 * keyfile.c - the node's secret key at rest: node.key, its passphrase, and
 * re-keying.
 *
 * node.key holds the Ed25519 secret key with the install id of the
 * database it belongs to, so that a database restored from a backup or
 * copied to another machine refuses to sign (its author's chains would
 * fork) until it is re-keyed.  Two formats, both short text:
 *
 *   kheo-node-key 1                 kheo-node-key 2
 *   secret HEX (64 bytes)           kdf argon2id13 OPS MEM SALTHEX
 *   install HEX (16 bytes)          nonce HEX (24 bytes)
 *                                   secret HEX (crypto_secretbox of the key)
 *                                   install HEX (16 bytes)
 *
 * Format 2 seals the key under a key that Argon2id derives from a
 * passphrase.  The costs are in the file, so that they can be raised later
 * without breaking the files already written; new files get libsodium's
 * INTERACTIVE costs, which a cheap phone pays in about a second.  A key
 * file that cannot be used (missing, wrong passphrase, readable by others,
 * damaged, another database's) does not stop the node from opening: it
 * may read, but not sign, and db->sign_refusal says why.
 *
 * What this is not: a keystore.  Phones keep keys in the platform's
 * Keystore or Keychain (later work).  Here the file is kept out of backups
 * by DIR/.backup-exclude, which backup tools must be told to honour; the
 * library cannot enforce that.
 */
#include "internal.h"
#include "alloc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_TEMP KHEO_KEY_FILE ".new"
#define EXCLUDE_FILE ".backup-exclude"
/* What backup tools are told to leave out (rsync and tar patterns). */
static const char exclude_text[] = KHEO_KEY_FILE "\n" KEY_TEMP "\n";

/* A format 2 file is about 430 bytes; anything longer is not ours. */
#define KEY_TEXT_MAX 1024
#define INSTALL_SIZE 16
#define BOX_SIZE (crypto_secretbox_MACBYTES + KHEO_SECRET_SIZE)

/* Bounds on the costs a file may ask for, checked before deriving: a
 * damaged or hostile file must not make the node allocate without limit.
 * Up to libsodium's SENSITIVE memory, and a few times its passes. */
#define KDF_OPS_MAX 16ULL
#define KDF_MEM_MAX ((size_t)crypto_pwhash_MEMLIMIT_SENSITIVE)

/* Everything secret while a key file is read or written: one
 * sodium_malloc'd block (guarded, locked), wiped when freed. */
typedef struct key_work {
	char text[KEY_TEXT_MAX + 1];
	char hex[2 * BOX_SIZE + 2]; /* one over, to see a longer one */
	uint8_t sk[KHEO_SECRET_SIZE];
	uint8_t kek[crypto_secretbox_KEYBYTES];
	uint8_t box[BOX_SIZE];
} key_work;

static char *key_path(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = kheo__malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/* ------------------------------------------------------------ passphrase */

int kheo__passphrase_keep(kheo_db *db)
{
	const char *p = db->opts.passphrase;
	size_t n;

	/* borrowed for the call only: the handle keeps its own copy, in
	 * guarded memory, for kheo_rekey, and never the caller's pointer */
	db->opts.passphrase = NULL;
	if (!p)
		return KHEO_OK;
	n = strnlen(p, KHEO_PASSPHRASE_MAX + 1);
	if (n == 0)
		return kheo__error(db, KHEO_EINVAL, "the passphrase is empty");
	if (n > KHEO_PASSPHRASE_MAX)
		return kheo__error(db, KHEO_EINVAL,
			"the passphrase is longer than %d bytes",
			KHEO_PASSPHRASE_MAX);
	if (!(db->passphrase = sodium_malloc(n + 1)))
		return KHEO_ENOMEM;
	memcpy(db->passphrase, p, n);
	db->passphrase[n] = '\0';
	return KHEO_OK;
}

static int derive(kheo_db *db, uint8_t kek[crypto_secretbox_KEYBYTES],
	const uint8_t salt[crypto_pwhash_SALTBYTES], unsigned long long ops,
	size_t mem)
{
	if (crypto_pwhash(kek, crypto_secretbox_KEYBYTES, db->passphrase,
		    strlen(db->passphrase), salt, ops, mem,
		    crypto_pwhash_ALG_ARGON2ID13) != 0)
		return kheo__error(db, KHEO_ENOMEM,
			"deriving the key file's key needs %zu bytes of "
			"memory, which the system refused", mem);
	return KHEO_OK;
}

/* --------------------------------------------------------------- writing */

/* The file's text for sk and install, sealed when there is a passphrase. */
static int key_text(kheo_db *db, key_work *w, const uint8_t *sk,
	const uint8_t install[INSTALL_SIZE], size_t *len)
{
	char inst[2 * INSTALL_SIZE + 1];
	int n, err;

	kheo_hex(inst, install, INSTALL_SIZE);
	if (!db->passphrase) {
		kheo_hex(w->hex, sk, KHEO_SECRET_SIZE);
		n = snprintf(w->text, sizeof(w->text),
			"kheo-node-key 1\nsecret %s\ninstall %s\n", w->hex,
			inst);
	} else {
		uint8_t salt[crypto_pwhash_SALTBYTES];
		uint8_t nonce[crypto_secretbox_NONCEBYTES];
		char salt_hex[2 * sizeof(salt) + 1];
		char nonce_hex[2 * sizeof(nonce) + 1];
		const unsigned long long ops =
			crypto_pwhash_OPSLIMIT_INTERACTIVE;
		const size_t mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;

		randombytes_buf(salt, sizeof(salt));
		randombytes_buf(nonce, sizeof(nonce));
		if ((err = derive(db, w->kek, salt, ops, mem)) < 0)
			return err;
		crypto_secretbox_easy(w->box, sk, KHEO_SECRET_SIZE, nonce,
			w->kek);
		kheo_hex(salt_hex, salt, sizeof(salt));
		kheo_hex(nonce_hex, nonce, sizeof(nonce));
		kheo_hex(w->hex, w->box, BOX_SIZE);
		n = snprintf(w->text, sizeof(w->text),
			"kheo-node-key 2\nkdf argon2id13 %llu %zu %s\n"
			"nonce %s\nsecret %s\ninstall %s\n", ops, mem,
			salt_hex, nonce_hex, w->hex, inst);
	}
	assert(n > 0 && (size_t)n < sizeof(w->text));
	*len = (size_t)n;
	return KHEO_OK;
}

static int sync_dir(kheo_db *db)
{
	int fd = open(db->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return kheo__error(db, KHEO_EIO, "%s: %s", db->dir,
			strerror(errno));
	/* some file systems cannot sync a directory: nothing to do there */
	if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP)
		err = errno;
	close(fd);
	if (err)
		return kheo__error(db, KHEO_EIO, "%s: %s", db->dir,
			strerror(err));
	return KHEO_OK;
}

/* Write the key file to node.key.new: 0600, synced.  A stale one (a
 * crash between staging and installing) never held a key that signed. */
static int key_stage(kheo_db *db, const uint8_t *sk,
	const uint8_t install[INSTALL_SIZE])
{
	char *tmp = key_path(db->dir, KEY_TEMP);
	key_work *w = sodium_malloc(sizeof(*w));
	size_t len = 0, off = 0;
	int fd = -1, err;

	if (!tmp || !w) {
		err = KHEO_ENOMEM;
		goto done;
	}
	if ((err = key_text(db, w, sk, install, &len)) < 0)
		goto done;
	if (unlink(tmp) != 0 && errno != ENOENT)
		goto io;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		     0600)) < 0)
		goto io;
	while (off < len) {
		ssize_t n = write(fd, w->text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto io;
		off += (size_t)n;
	}
	if (fsync(fd) != 0)
		goto io;
	if (close(fd) != 0) {
		fd = -1;
		goto io;
	}
	fd = -1;
	goto done;
io:
	err = kheo__error(db, KHEO_EIO, "%s: %s", tmp, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
done:
	if (w)
		sodium_free(w);
	kheo__free(tmp);
	return err;
}

/* Move node.key.new into place, atomically, and make the rename durable. */
static int key_install(kheo_db *db)
{
	char *tmp = key_path(db->dir, KEY_TEMP);
	char *path = key_path(db->dir, KHEO_KEY_FILE);
	int err = KHEO_OK;

	if (!tmp || !path)
		err = KHEO_ENOMEM;
	else if (rename(tmp, path) != 0)
		err = kheo__error(db, KHEO_EIO, "%s: %s", path,
			strerror(errno));
	else
		err = sync_dir(db);
	kheo__free(tmp);
	kheo__free(path);
	return err;
}

static void key_unstage(kheo_db *db)
{
	char *tmp = key_path(db->dir, KEY_TEMP);

	if (tmp)
		unlink(tmp);
	kheo__free(tmp);
}

/* DIR/.backup-exclude: the names backup tools must leave out. */
static int exclude_write(kheo_db *db)
{
	char *path = key_path(db->dir, EXCLUDE_FILE);
	size_t len = sizeof(exclude_text) - 1;
	int fd, err = KHEO_OK;

	if (!path)
		return KHEO_ENOMEM;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, exclude_text, len) != (ssize_t)len)
		err = kheo__error(db, KHEO_EIO, "%s: %s", path,
			strerror(errno));
	if (fd >= 0)
		close(fd);
	kheo__free(path);
	return err;
}

/* Whether this node's key is sealed, in kheo_meta: a node made with a
 * passphrase is re-keyed with one, so that a forgotten KHEO_PASSPHRASE
 * does not leave a restored node's new key in the clear. */
static int sealed_set(kheo_db *db)
{
	return kheo__meta_set_int(db, "key_sealed", db->passphrase != NULL);
}

int kheo__key_write(kheo_db *db, const uint8_t *sk,
	const uint8_t install[INSTALL_SIZE])
{
	int err;

	if ((err = sealed_set(db)) < 0 || (err = exclude_write(db)) < 0 ||
	    (err = key_stage(db, sk, install)) < 0)
		return err;
	if ((err = key_install(db)) < 0)
		key_unstage(db);
	return err;
}

/* --------------------------------------------------------------- reading */

static void refuse(kheo_db *db, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void refuse(kheo_db *db, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(db->sign_refusal, sizeof(db->sign_refusal), fmt, ap);
	va_end(ap);
}

/* Read at most KEY_TEXT_MAX bytes of an open key file into w->text. */
static int read_text(int fd, key_work *w)
{
	size_t off = 0;

	for (;;) {
		ssize_t n = read(fd, w->text + off, KEY_TEXT_MAX - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		off += (size_t)n;
		if (off == KEY_TEXT_MAX)
			return -1;
	}
	w->text[off] = '\0';
	return 0;
}

/* Only blanks may follow what sscanf consumed. */
static int blank_from(const char *s)
{
	for (; *s; s++)
		if (*s != '\n' && *s != ' ' && *s != '\r' && *s != '\t')
			return 0;
	return 1;
}

/* The hex of an exact length, into out; KHEO_OK or KHEO_EINVAL. */
static int unhex_exact(uint8_t *out, size_t n, const char *hex)
{
	return kheo_unhex(out, n, hex, strlen(hex));
}

/*
 * Open format 2: derive the key from the passphrase and open the box into
 * w->sk.  Returns 0, or -1 with the refusal set (db->key_locked when it
 * is the passphrase that is missing or wrong).
 */
static int open_v2(kheo_db *db, key_work *w, const char *path,
	const char *ops_s, const char *mem_s, const char *salt_hex,
	const char *nonce_hex)
{
	uint8_t salt[crypto_pwhash_SALTBYTES];
	uint8_t nonce[crypto_secretbox_NONCEBYTES];
	unsigned long long ops = strtoull(ops_s, NULL, 10);
	unsigned long long mem = strtoull(mem_s, NULL, 10);

	if (unhex_exact(salt, sizeof(salt), salt_hex) < 0 ||
	    unhex_exact(nonce, sizeof(nonce), nonce_hex) < 0 ||
	    unhex_exact(w->box, BOX_SIZE, w->hex) < 0) {
		refuse(db, "%s is damaged: this node cannot sign", path);
		return -1;
	}
	if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > KDF_OPS_MAX ||
	    mem < crypto_pwhash_MEMLIMIT_MIN || mem > KDF_MEM_MAX) {
		refuse(db, "%s asks for key derivation costs out of range "
			"(%s passes, %s bytes; at most %llu and %zu): damaged? "
			"this node cannot sign", path, ops_s, mem_s,
			KDF_OPS_MAX, KDF_MEM_MAX);
		return -1;
	}
	if (!db->passphrase) {
		db->key_locked = 1;
		refuse(db, "%s is encrypted and no passphrase was given: this "
			"node cannot sign (it can read)", path);
		return -1;
	}
	if (derive(db, w->kek, salt, ops, (size_t)mem) < 0) {
		refuse(db, "%s: %s: this node cannot sign", path,
			db->errmsg);
		kheo__clear(db);
		return -1;
	}
	if (crypto_secretbox_open_easy(w->sk, w->box, BOX_SIZE, nonce,
		    w->kek) != 0) {
		db->key_locked = 1;
		refuse(db, "%s: wrong passphrase: this node cannot sign (it "
			"can read)", path);
		return -1;
	}
	return 0;
}

/* Parse w->text into w->sk and install; -1 with the refusal set. */
static int parse_key(kheo_db *db, key_work *w, const char *path,
	uint8_t install[INSTALL_SIZE])
{
	char inst_hex[2 * INSTALL_SIZE + 2];
	int end = -1;

	if (strncmp(w->text, "kheo-node-key 1\n", 16) == 0) {
		if (sscanf(w->text, "kheo-node-key 1 secret %128[0-9a-fA-F] "
			   "install %32[0-9a-fA-F]%n", w->hex, inst_hex,
			   &end) != 2 || end < 0 || !blank_from(w->text + end) ||
		    unhex_exact(w->sk, KHEO_SECRET_SIZE, w->hex) < 0 ||
		    unhex_exact(install, INSTALL_SIZE, inst_hex) < 0)
			goto damaged;
		if (db->passphrase)
			kheo__log(db, KHEO_LOG_WARN, "%s is not encrypted: "
				"the passphrase given is not used", path);
		return 0;
	}
	if (strncmp(w->text, "kheo-node-key 2\n", 16) == 0) {
		char ops_s[12], mem_s[22];
		char salt_hex[2 * crypto_pwhash_SALTBYTES + 2];
		char nonce_hex[2 * crypto_secretbox_NONCEBYTES + 2];

		if (sscanf(w->text, "kheo-node-key 2 kdf argon2id13 %10[0-9] "
			   "%20[0-9] %33[0-9a-fA-F] nonce %49[0-9a-fA-F] "
			   "secret %161[0-9a-fA-F] install %33[0-9a-fA-F]%n",
			   ops_s, mem_s, salt_hex, nonce_hex, w->hex,
			   inst_hex, &end) != 6 || end < 0 ||
		    !blank_from(w->text + end) ||
		    unhex_exact(install, INSTALL_SIZE, inst_hex) < 0)
			goto damaged;
		return open_v2(db, w, path, ops_s, mem_s, salt_hex,
			nonce_hex);
	}
	if (strncmp(w->text, "kheo-node-key ", 14) == 0) {
		refuse(db, "%s has a key file format this version does not "
			"know (%.20s): this node cannot sign", path,
			w->text + 14);
		return -1;
	}
damaged:
	refuse(db, "%s is damaged: this node cannot sign", path);
	return -1;
}

void kheo__key_load(kheo_db *db, const char *install_hex)
{
	char *path = key_path(db->dir, KHEO_KEY_FILE);
	uint8_t pk[KHEO_KEY_SIZE], install[INSTALL_SIZE], want[INSTALL_SIZE];
	key_work *w = NULL;
	struct stat sb;
	int fd = -1;

	db->key_locked = 0;
	if (!path) {
		refuse(db, "out of memory reading the key file: this node "
			"cannot sign");
		return;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			refuse(db, "%s missing: this node cannot sign (a "
				"restored node needs a new key)", path);
		else
			refuse(db, "%s: %s: this node cannot sign", path,
				strerror(errno));
		goto done;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		refuse(db, "%s is not a readable file: this node cannot sign",
			path);
		goto done;
	}
	if (sb.st_mode & 077) {
		/* as ssh does: a secret others can read is not used */
		refuse(db, "%s has mode %04o, so others can read it: this "
			"node will not sign with it until you run chmod 600 %s "
			"(and re-key if someone may have copied it)", path,
			(unsigned)(sb.st_mode & 07777), path);
		goto done;
	}
	if (!(w = sodium_malloc(sizeof(*w)))) {
		refuse(db, "out of memory reading %s: this node cannot sign",
			path);
		goto done;
	}
	if (read_text(fd, w) < 0) {
		refuse(db, "%s cannot be read whole (or is over %d bytes): "
			"this node cannot sign", path, KEY_TEXT_MAX);
		goto done;
	}
	if (parse_key(db, w, path, install) < 0)
		goto done;
	crypto_sign_ed25519_sk_to_pk(pk, w->sk);
	if (kheo_unhex(want, INSTALL_SIZE, install_hex,
		    strlen(install_hex)) < 0 ||
	    memcmp(pk, db->pk, KHEO_KEY_SIZE) != 0 ||
	    memcmp(install, want, INSTALL_SIZE) != 0) {
		refuse(db, "this database was restored or copied (its install "
			"id differs from %s): it will not sign, so that its "
			"author's chains cannot fork; re-key the node (kheo "
			"rekey)", path);
		goto done;
	}
	if (!(db->sk = sodium_malloc(KHEO_SECRET_SIZE))) {
		refuse(db, "out of memory reading %s: this node cannot sign",
			path);
		goto done;
	}
	memcpy(db->sk, w->sk, KHEO_SECRET_SIZE);
done:
	if (fd >= 0)
		close(fd);
	if (w)
		sodium_free(w);
	kheo__free(path);
}

/* -------------------------------------------------------------- re-keying */

/*
 * A new key and install id for this copy of the node.  Order: the new key
 * file is staged (written and synced beside the old one), the database
 * takes the new key in one transaction, then the file is renamed into
 * place.  A crash anywhere leaves a node that refuses to sign until
 * re-keyed again, never one that signs with a key the database does not
 * name, and the old key is never used again.
 */
KHEO_EXTERN int kheo_rekey(kheo_db *db)
{
	uint8_t old_pk[KHEO_KEY_SIZE], install[INSTALL_SIZE], epoch[8];
	char hex[2 * KHEO_KEY_SIZE + 1];
	int64_t was_sealed = 0;
	uint8_t *sk;
	int err;

	kheo__clear(db);
	if (db->in_tx)
		return kheo__error(db, KHEO_EINVAL, "a batch is open: commit "
			"or roll it back before re-keying");
	if (db->key_locked)
		/* the new key is sealed under this handle's passphrase: it
		 * must be the one that opens the present file */
		return kheo__error(db, KHEO_EAUTH, "%s; re-keying needs the "
			"passphrase of the present key file, so that the new "
			"one is sealed under a passphrase known to be right "
			"(if it is lost, remove %s and re-key with a new one)",
			db->sign_refusal, KHEO_KEY_FILE);
	if (!db->passphrase &&
	    kheo__meta_get_int(db, "key_sealed", &was_sealed) == KHEO_OK &&
	    was_sealed)
		return kheo__error(db, KHEO_EAUTH, "this node's key was sealed "
			"with a passphrase: give one, so that the new key is "
			"sealed too");
	if (db->enforcing && memcmp(db->pk, db->root, KHEO_KEY_SIZE) == 0)
		return kheo__error(db, KHEO_EINVAL, "this node's key is its "
			"deployment's root: every certificate chains to it, so "
			"it is never replaced (restore the province's own "
			"node.key instead)");
	kheo__clear(db);
	if (!(sk = sodium_malloc(KHEO_SECRET_SIZE)))
		return KHEO_ENOMEM;
	memcpy(old_pk, db->pk, KHEO_KEY_SIZE);
	crypto_sign_keypair(db->pk, sk);
	randombytes_buf(install, sizeof(install));
	if ((err = exclude_write(db)) < 0 ||
	    (err = key_stage(db, sk, install)) < 0)
		goto fail_early;
	if ((err = kheo__begin(db)) < 0)
		goto fail_staged;
	kheo_hex(hex, db->pk, KHEO_KEY_SIZE);
	if ((err = kheo__meta_set_text(db, "key", hex)) < 0)
		goto fail;
	kheo_hex(hex, install, sizeof(install));
	if ((err = kheo__meta_set_text(db, "install_id", hex)) < 0)
		goto fail;
	/* a new copy of the log: peers' checkpoints of the old one do not
	 * describe what this copy holds */
	randombytes_buf(epoch, sizeof(epoch));
	kheo_hex(hex, epoch, sizeof(epoch));
	if ((err = kheo__meta_set_text(db, "epoch", hex)) < 0 ||
	    (err = sealed_set(db)) < 0 ||
	    (err = kheo__pending_rekey(db, old_pk)) < 0 ||
	    (err = kheo__commit_tx(db)) < 0)
		goto fail;
	/* committed: the database names the new key from here on */
	if (db->sk)
		sodium_free(db->sk);
	db->sk = NULL;
	if ((err = key_install(db)) < 0) {
		refuse(db, "%s could not be replaced after re-keying (%s): "
			"re-key the node again", KHEO_KEY_FILE, db->errmsg);
		key_unstage(db);
		sodium_free(sk);
		return err;
	}
	db->sk = sk;
	db->sign_refusal[0] = '\0';
	/* no certificate names the new key yet */
	if ((err = kheo__authz_own_role(db)) < 0)
		return err;
	kheo__log(db, KHEO_LOG_INFO, "re-keyed: this node must be enrolled "
		"again (its certificate named the old key)");
	return KHEO_OK;
fail:
	kheo__rollback(db);
fail_staged:
	key_unstage(db);
fail_early:
	memcpy(db->pk, old_pk, KHEO_KEY_SIZE);
	sodium_free(sk);
	return err;
}
