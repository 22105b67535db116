/*
 * blob.c - the blob store: attachments (photos, scanned decisions) named
 * by the BLAKE2b-256 of their bytes, kept outside SQLite.
 *
 *   DIR/blobs/ab/<64 hex>/<index>     one file per chunk
 *
 * A blob is cut into chunks of KHEO_BLOB_CHUNK bytes (the last shorter);
 * each chunk file holds the chunk zstd-compressed when that made it
 * smaller (flag `z`), else as it is: JPEG, PNG, WebP and most PDF scans
 * do not shrink, and compressing them again only costs a phone's battery.
 * What the store holds is what a session or a bundle sends, so a chunk
 * is never compressed twice.
 *
 * The database holds the facts: kheo_blob (size, chunks held, complete)
 * and kheo_blob_chunk (one row per chunk held: its stored length, flag,
 * and the BLAKE2b-256 of its raw bytes).  A chunk file is written and
 * fsync'd (file and folder) before its row commits, so a row always names
 * a whole file on disk, and a chunk received is durable once its call
 * returns: a cut resumes at the next chunk.  The row of the last chunk
 * commits only after the whole blob has been read back and hashes to its
 * name; if it does not, every chunk of it goes and the blob is refused.
 *
 * Not here: which blobs a session asks for and in what order (sync.c uses
 * kheo__blob_named), the wire format (proto/msg.c), file type policy
 * beyond the four formats by magic bytes.
 */
#include "internal.h"
#include "blob.h"
#include "alloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* zstd level for chunks this node stores from a local file: a phone
 * attaches, so a fast level; only text-like PDFs gain anything anyway */
#define BLOB_LEVEL 3

/* The store's tables, made on first use (every entry point below runs
 * ensure()): stores made before blobs existed gain them without a format
 * change, and a node that never attaches anything pays nothing. */
static const char blob_sql[] =
	"CREATE TABLE IF NOT EXISTS kheo_blob(hash BLOB PRIMARY KEY,"
	" size INTEGER NOT NULL, chunks INTEGER NOT NULL,"
	" have INTEGER NOT NULL DEFAULT 0, complete INTEGER NOT NULL DEFAULT 0,"
	" type TEXT, local INTEGER NOT NULL DEFAULT 0,"
	" added INTEGER NOT NULL, done_at INTEGER) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS kheo_blob_chunk(hash BLOB NOT NULL,"
	" idx INTEGER NOT NULL, zlen INTEGER NOT NULL, z INTEGER NOT NULL,"
	" chash BLOB NOT NULL, PRIMARY KEY(hash, idx)) WITHOUT ROWID;";

static int ensure(kheo_db *db)
{
	return kheo__exec(db, blob_sql);
}

static uint64_t nchunks(uint64_t size)
{
	return (size + KHEO_BLOB_CHUNK - 1) / KHEO_BLOB_CHUNK;
}

static size_t chunk_len(uint64_t size, uint64_t idx)
{
	uint64_t off = idx * KHEO_BLOB_CHUNK;

	return (size_t)(size - off < KHEO_BLOB_CHUNK ? size - off
						     : KHEO_BLOB_CHUNK);
}

/* "jpeg", "png", "pdf", "webp" by the first bytes, or NULL. */
static const char *sniff(const uint8_t *p, size_t n)
{
	if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		return "jpeg";
	if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
		return "png";
	if (n >= 5 && memcmp(p, "%PDF-", 5) == 0)
		return "pdf";
	if (n >= 12 && memcmp(p, "RIFF", 4) == 0 &&
	    memcmp(p + 8, "WEBP", 4) == 0)
		return "webp";
	return NULL;
}

static void blob_dir(const kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	char *out, size_t n)
{
	char hex[2 * KHEO_ID_SIZE + 1];

	kheo_hex(hex, h, KHEO_ID_SIZE);
	snprintf(out, n, "%s/blobs/%.2s/%s", db->dir, hex, hex);
}

static int mkdir_p(kheo_db *db, const char *path)
{
	char tmp[1024];
	size_t i, n = strlen(path);

	if (n >= sizeof(tmp))
		return kheo__error(db, KHEO_EIO, "%s: path too long", path);
	memcpy(tmp, path, n + 1);
	for (i = 1; i <= n; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return kheo__error(db, KHEO_EIO, "mkdir %s: %s", tmp,
				strerror(errno));
		tmp[i] = i == n ? '\0' : '/';
	}
	return KHEO_OK;
}

static int fsync_dir(kheo_db *db, const char *dir)
{
	int fd = open(dir, O_RDONLY), rc;

	if (fd < 0)
		return kheo__error(db, KHEO_EIO, "%s: %s", dir,
			strerror(errno));
	rc = fsync(fd);
	close(fd);
	return rc < 0 ? kheo__error(db, KHEO_EIO, "fsync %s: %s", dir,
				strerror(errno))
		      : KHEO_OK;
}

/* Write p[0..n) to dir/name through a temporary file, fsync'd and renamed,
 * the folder fsync'd too: once this returns the file survives a crash. */
static int write_durable(kheo_db *db, const char *dir, const char *name,
	const uint8_t *p, size_t n)
{
	char path[1100], tmp[1110];
	size_t done = 0;
	int fd, err;

	if ((err = mkdir_p(db, dir)) < 0)
		return err;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
		return kheo__error(db, KHEO_EIO, "%s: %s", tmp,
			strerror(errno));
	while (done < n) {
		ssize_t w = write(fd, p + done, n - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			err = kheo__error(db, KHEO_EIO, "write %s: %s", tmp,
				strerror(errno));
			close(fd);
			unlink(tmp);
			return err;
		}
		done += (size_t)w;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		err = kheo__error(db, KHEO_EIO, "fsync %s: %s", tmp,
			strerror(errno));
		unlink(tmp);
		return err;
	}
	if (rename(tmp, path) < 0) {
		err = kheo__error(db, KHEO_EIO, "rename %s: %s", tmp,
			strerror(errno));
		unlink(tmp);
		return err;
	}
	return fsync_dir(db, dir);
}

/* The whole file at path into b (reset first), at most max bytes. */
static int read_file(kheo_db *db, const char *path, kheo_buf *b,
	uint64_t max, int limit_code)
{
	struct stat sb;
	int fd = open(path, O_RDONLY), err = KHEO_OK;
	size_t done = 0;

	kheo_buf_reset(b);
	if (fd < 0)
		return kheo__error(db, errno == ENOENT ? KHEO_ENOTFOUND
						       : KHEO_EIO,
			"%s: %s", path, strerror(errno));
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return kheo__error(db, KHEO_EIO, "%s: not a regular file",
			path);
	}
	if ((uint64_t)sb.st_size > max) {
		close(fd);
		return kheo__error(db, limit_code, "%s is %llu bytes, above "
			"the limit of %llu", path,
			(unsigned long long)sb.st_size,
			(unsigned long long)max);
	}
	if (kheo_buf_reserve(b, (size_t)sb.st_size + 1) < 0) {
		close(fd);
		return kheo__error(db, KHEO_ENOMEM, "out of memory");
	}
	while (done < (size_t)sb.st_size) {
		ssize_t r = read(fd, b->p + done, (size_t)sb.st_size - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			err = kheo__error(db, KHEO_EIO, "read %s: %s", path,
				r < 0 ? strerror(errno) : "file shrank");
			break;
		}
		done += (size_t)r;
	}
	close(fd);
	b->len = done;
	return err;
}

/* ------------------------------------------------------------ the facts */

static int blob_row(kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	uint64_t *size, uint64_t *have, int *complete)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db->sql, "SELECT size, have, complete FROM"
		" kheo_blob WHERE hash = ?1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "blob");
	sqlite3_bind_blob(st, 1, h, KHEO_ID_SIZE, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (size)
			*size = (uint64_t)sqlite3_column_int64(st, 0);
		if (have)
			*have = (uint64_t)sqlite3_column_int64(st, 1);
		if (complete)
			*complete = sqlite3_column_int(st, 2);
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return KHEO_OK;
	return rc == SQLITE_DONE ? KHEO_ENOTFOUND : kheo__sqlerr(db, rc, "blob");
}

int kheo__blob_state(kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	uint64_t *size, uint64_t *have, int *complete)
{
	int err = ensure(db);

	return err < 0 ? err : blob_row(db, h, size, have, complete);
}

/* Unlink blob h's chunk files (the rows decide what is held: call this
 * once they are gone, or when they never were). */
static void unlink_files(kheo_db *db, const uint8_t h[KHEO_ID_SIZE])
{
	char dir[1024], path[1400];
	struct dirent *e;
	DIR *d;

	blob_dir(db, h, dir, sizeof(dir));
	if (!(d = opendir(dir)))
		return;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			unlink(path);
		}
	closedir(d);
	rmdir(dir);
}

/* Remove blob h's rows, in the caller's transaction. */
static int forget_rows(kheo_db *db, const uint8_t h[KHEO_ID_SIZE])
{
	static const char *const sql[] = {
		"DELETE FROM kheo_blob_chunk WHERE hash = ?1",
		"DELETE FROM kheo_blob WHERE hash = ?1",
	};
	sqlite3_stmt *st;
	size_t i;
	int rc;

	for (i = 0; i < 2; i++) {
		rc = sqlite3_prepare_v2(db->sql, sql[i], -1, &st, NULL);
		if (rc != SQLITE_OK)
			return kheo__sqlerr(db, rc, "blob");
		sqlite3_bind_blob(st, 1, h, KHEO_ID_SIZE, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			return kheo__sqlerr(db, rc, "blob");
	}
	return KHEO_OK;
}

/* Forget blob h now, rows then files. */
static int forget(kheo_db *db, const uint8_t h[KHEO_ID_SIZE])
{
	int err;

	if ((err = kheo__begin(db)) < 0)
		return err;
	if ((err = forget_rows(db, h)) < 0 ||
	    (err = kheo__commit_tx(db)) < 0) {
		kheo__rollback(db);
		return err;
	}
	unlink_files(db, h);
	return KHEO_OK;
}

/*
 * Read blob h's chunk idx as stored: data (reset first), flag, hash of the
 * raw bytes, and the blob's size.  KHEO_ENOTFOUND when that chunk is not
 * here, KHEO_ECORRUPT when its file is not the length its row says.
 */
int kheo__blob_chunk_read(kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	uint64_t idx, kheo_buf *data, int *z, uint8_t chash[KHEO_ID_SIZE],
	uint64_t *size)
{
	char dir[1024], path[1100], hex[2 * KHEO_ID_SIZE + 1];
	sqlite3_stmt *st;
	int64_t zlen = 0;
	int rc, err;

	if ((err = ensure(db)) < 0)
		return err;
	rc = sqlite3_prepare_v2(db->sql, "SELECT c.zlen, c.z, c.chash, b.size"
		" FROM kheo_blob_chunk c JOIN kheo_blob b USING (hash) WHERE"
		" c.hash = ?1 AND c.idx = ?2", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "blob chunk");
	sqlite3_bind_blob(st, 1, h, KHEO_ID_SIZE, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)idx);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		zlen = sqlite3_column_int64(st, 0);
		*z = sqlite3_column_int(st, 1);
		memcpy(chash, sqlite3_column_blob(st, 2), KHEO_ID_SIZE);
		*size = (uint64_t)sqlite3_column_int64(st, 3);
	}
	sqlite3_finalize(st);
	kheo_hex(hex, h, KHEO_ID_SIZE);
	if (rc == SQLITE_DONE)
		return kheo__error(db, KHEO_ENOTFOUND, "chunk %llu of blob %s "
			"is not here", (unsigned long long)idx, hex);
	if (rc != SQLITE_ROW)
		return kheo__sqlerr(db, rc, "blob chunk");
	blob_dir(db, h, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%llu", dir, (unsigned long long)idx);
	if ((err = read_file(db, path, data, KHEO_BLOB_CHUNK + 1024,
		     KHEO_ECORRUPT)) < 0)
		return err == KHEO_ENOTFOUND ? kheo__error(db, KHEO_ECORRUPT,
			"chunk %llu of blob %s: its file is gone",
			(unsigned long long)idx, hex) : err;
	if ((int64_t)data->len != zlen)
		return kheo__error(db, KHEO_ECORRUPT, "chunk %llu of blob %s: "
			"%zu bytes on disk, %lld expected: damaged",
			(unsigned long long)idx, hex, data->len,
			(long long)zlen);
	return KHEO_OK;
}

/* A chunk's raw bytes from its stored form, checked against chash. */
static int chunk_raw(kheo_db *db, kheo_buf *raw, const uint8_t *p,
	size_t n, int z, size_t expect, const uint8_t chash[KHEO_ID_SIZE],
	const char *hex, uint64_t idx)
{
	uint8_t got[KHEO_ID_SIZE];
	kheo_refusal why = { 0 };

	kheo_buf_reset(raw);
	if (z) {
		if (kheo_codec_unpack(db->codec, raw, p, n, expect, &why) < 0)
			return kheo__error(db, KHEO_ECORRUPT, "chunk %llu of "
				"blob %s does not decompress to %zu bytes: %s",
				(unsigned long long)idx, hex, expect, why.msg);
	} else {
		if (n != expect)
			return kheo__error(db, n > expect ? KHEO_ELIMIT
							  : KHEO_ECORRUPT,
				"chunk %llu of blob %s is %zu bytes, %zu "
				"expected", (unsigned long long)idx, hex, n,
				expect);
		kheo_buf_put(raw, p, n);
		if (raw->oom)
			return kheo__error(db, KHEO_ENOMEM, "out of memory");
	}
	crypto_generichash(got, KHEO_ID_SIZE, raw->p, raw->len, NULL, 0);
	if (sodium_memcmp(got, chash, KHEO_ID_SIZE) != 0)
		return kheo__error(db, KHEO_ECORRUPT, "chunk %llu of blob %s: "
			"its bytes do not match its hash (damaged)",
			(unsigned long long)idx, hex);
	return KHEO_OK;
}

/* Hash every chunk of h in order; KHEO_OK when the whole is h. */
static int verify_whole(kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	uint64_t size, int fd, char type[8])
{
	crypto_generichash_state hs;
	kheo_buf data = { 0 }, raw = { 0 };
	uint8_t got[KHEO_ID_SIZE], chash[KHEO_ID_SIZE];
	char hex[2 * KHEO_ID_SIZE + 1];
	uint64_t i, n = nchunks(size), sz;
	int z, err = KHEO_OK;

	kheo_hex(hex, h, KHEO_ID_SIZE);
	crypto_generichash_init(&hs, NULL, 0, KHEO_ID_SIZE);
	for (i = 0; i < n && err == KHEO_OK; i++) {
		if ((err = kheo__blob_chunk_read(db, h, i, &data, &z, chash,
			     &sz)) < 0 ||
		    (err = chunk_raw(db, &raw, data.p, data.len, z,
			     chunk_len(size, i), chash, hex, i)) < 0)
			break;
		if (i == 0 && type) {
			const char *t = sniff(raw.p, raw.len);

			snprintf(type, 8, "%s", t ? t : "");
		}
		crypto_generichash_update(&hs, raw.p, raw.len);
		if (fd >= 0) {
			size_t done = 0;

			while (done < raw.len) {
				ssize_t w = write(fd, raw.p + done,
					raw.len - done);

				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0) {
					err = kheo__error(db, KHEO_EIO,
						"write: %s", strerror(errno));
					break;
				}
				done += (size_t)w;
			}
		}
	}
	kheo_buf_free(&data);
	kheo_buf_free(&raw);
	if (err < 0)
		return err;
	crypto_generichash_final(&hs, got, KHEO_ID_SIZE);
	if (sodium_memcmp(got, h, KHEO_ID_SIZE) != 0)
		return kheo__error(db, KHEO_ECORRUPT, "blob %s: its %llu chunks "
			"do not hash to its name", hex,
			(unsigned long long)n);
	return KHEO_OK;
}

/*
 * Store chunk idx of blob h (size bytes in all) in its stored form, after
 * checking it: its length against the fixed chunk size, its raw bytes
 * against chash.  Durable when this returns.  When it is the last chunk
 * missing, the whole is read back and must hash to h, else every chunk of
 * h is dropped (KHEO_ECORRUPT).  A chunk already held, or any chunk of a
 * complete blob, is a no-op.  *completed (may be NULL) is 1 when this
 * call completed the blob.  `named` 1: refuse unless a live record names
 * h (what a peer sends); 0: the caller is about to name it (attach).
 */
static int put_chunk(kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	uint64_t size, uint64_t idx, int z, const uint8_t chash[KHEO_ID_SIZE],
	const uint8_t *data, size_t len, int named, int local, int *completed)
{
	char hex[2 * KHEO_ID_SIZE + 1], dir[1024], name[32], type[8] = "";
	uint64_t osize = 0, have = 0;
	kheo_buf raw = { 0 };
	sqlite3_stmt *st = NULL;
	int complete = 0, err, rc, exists;

	if (completed)
		*completed = 0;
	if ((err = ensure(db)) < 0)
		return err;
	kheo_hex(hex, h, KHEO_ID_SIZE);
	if (size == 0 || size > KHEO_BLOB_SIZE_MAX)
		return kheo__error(db, KHEO_ELIMIT, "blob %s: size %llu outside "
			"1 .. %u", hex, (unsigned long long)size,
			KHEO_BLOB_SIZE_MAX);
	if (idx >= nchunks(size))
		return kheo__error(db, KHEO_EINVAL, "blob %s has %llu chunks: "
			"no chunk %llu", hex,
			(unsigned long long)nchunks(size),
			(unsigned long long)idx);
	if (len > KHEO_BLOB_CHUNK + (z ? 1024 : 0))
		return kheo__error(db, KHEO_ELIMIT, "chunk %llu of blob %s is "
			"%zu bytes, above the limit of %u",
			(unsigned long long)idx, hex, len, KHEO_BLOB_CHUNK);
	err = blob_row(db, h, &osize, &have, &complete);
	if (err < 0 && err != KHEO_ENOTFOUND)
		return err;
	exists = err == KHEO_OK;
	if (exists && complete)
		return KHEO_OK;
	if (named && !exists && !kheo__blob_is_named(db, h))
		return kheo__error(db, KHEO_EINVAL, "blob %s: no record here "
			"names it; refused", hex);
	/* verify before anything touches the disk */
	err = chunk_raw(db, &raw, data, len, z, chunk_len(size, idx), chash,
		hex, idx);
	kheo_buf_free(&raw);
	if (err < 0)
		return err;
	if (exists && osize != size) {
		/* two peers disagree on its size: one of them lies, and the
		 * whole-hash check will tell; start again with this one */
		if ((err = forget(db, h)) < 0)
			return err;
		exists = 0;
	}
	if (exists) {
		rc = sqlite3_prepare_v2(db->sql, "SELECT 1 FROM kheo_blob_chunk"
			" WHERE hash = ?1 AND idx = ?2", -1, &st, NULL);
		if (rc != SQLITE_OK)
			return kheo__sqlerr(db, rc, "blob chunk");
		sqlite3_bind_blob(st, 1, h, KHEO_ID_SIZE, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (int64_t)idx);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc == SQLITE_ROW)
			return KHEO_OK;
	}
	blob_dir(db, h, dir, sizeof(dir));
	snprintf(name, sizeof(name), "%llu", (unsigned long long)idx);
	if ((err = write_durable(db, dir, name, data, len)) < 0)
		return err;
	if ((err = kheo__begin(db)) < 0)
		return err;
	rc = sqlite3_prepare_v2(db->sql, "INSERT INTO kheo_blob(hash, size,"
		" chunks, have, local, added) VALUES(?1, ?2, ?3, 0, ?4, ?5)"
		" ON CONFLICT(hash) DO NOTHING", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		err = kheo__sqlerr(db, rc, "blob");
		goto done;
	}
	sqlite3_bind_blob(st, 1, h, KHEO_ID_SIZE, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)size);
	sqlite3_bind_int64(st, 3, (int64_t)nchunks(size));
	sqlite3_bind_int(st, 4, local);
	sqlite3_bind_int64(st, 5, kheo__now_ms(db));
	err = kheo__step_done(db, st, "blob");
	sqlite3_finalize(st);
	st = NULL;
	if (err < 0)
		goto done;
	rc = sqlite3_prepare_v2(db->sql, "INSERT INTO kheo_blob_chunk(hash,"
		" idx, zlen, z, chash) VALUES(?1, ?2, ?3, ?4, ?5)", -1, &st,
		NULL);
	if (rc != SQLITE_OK) {
		err = kheo__sqlerr(db, rc, "blob chunk");
		goto done;
	}
	sqlite3_bind_blob(st, 1, h, KHEO_ID_SIZE, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)idx);
	sqlite3_bind_int64(st, 3, (int64_t)len);
	sqlite3_bind_int(st, 4, z);
	sqlite3_bind_blob(st, 5, chash, KHEO_ID_SIZE, SQLITE_STATIC);
	err = kheo__step_done(db, st, "blob chunk");
	sqlite3_finalize(st);
	st = NULL;
	if (err < 0)
		goto done;
	have = 0;
	if ((err = blob_row(db, h, NULL, &have, NULL)) < 0)
		goto done;
	have++;
	if (have == nchunks(size)) {
		err = verify_whole(db, h, size, -1, type);
		if (err < 0) {
			char msg[512];

			snprintf(msg, sizeof(msg), "%s", kheo_errmsg(db));
			kheo__rollback(db);
			forget(db, h);
			return kheo__error(db, KHEO_ECORRUPT, "%s: refused, "
				"nothing of it kept", msg);
		}
	}
	rc = sqlite3_prepare_v2(db->sql, "UPDATE kheo_blob SET have = ?2,"
		" complete = ?3, type = CASE WHEN ?3 THEN ?4 END, done_at ="
		" CASE WHEN ?3 THEN ?5 END, local = local OR ?6 WHERE hash = ?1",
		-1, &st, NULL);
	if (rc != SQLITE_OK) {
		err = kheo__sqlerr(db, rc, "blob");
		goto done;
	}
	sqlite3_bind_blob(st, 1, h, KHEO_ID_SIZE, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)have);
	sqlite3_bind_int(st, 3, have == nchunks(size));
	sqlite3_bind_text(st, 4, type, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 5, kheo__now_ms(db));
	sqlite3_bind_int(st, 6, local);
	err = kheo__step_done(db, st, "blob");
	sqlite3_finalize(st);
	st = NULL;
	if (err < 0)
		goto done;
	err = kheo__commit_tx(db);
	if (err == KHEO_OK && completed)
		*completed = have == nchunks(size);
done:
	sqlite3_finalize(st);
	if (err < 0)
		kheo__rollback(db);
	return err;
}

int kheo__blob_receive(kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	uint64_t size, uint64_t idx, int z, const uint8_t chash[KHEO_ID_SIZE],
	const uint8_t *data, size_t len, int *completed)
{
	return put_chunk(db, h, size, idx, z, chash, data, len, 1, 0,
		completed);
}

/* The first chunk of h (size bytes) not held here; a partial blob of
 * another size is dropped first.  *idx = chunks when complete. */
int kheo__blob_next_missing(kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	uint64_t size, uint64_t *idx)
{
	uint64_t osize, have;
	sqlite3_stmt *st;
	int complete, err, rc;

	*idx = 0;
	if ((err = ensure(db)) < 0)
		return err;
	err = blob_row(db, h, &osize, &have, &complete);
	if (err == KHEO_ENOTFOUND)
		return KHEO_OK;
	if (err < 0)
		return err;
	if (complete && osize == size) {
		*idx = nchunks(size);
		return KHEO_OK;
	}
	if (osize != size)
		return forget(db, h);
	/* the smallest index without a row */
	rc = sqlite3_prepare_v2(db->sql, "SELECT coalesce((SELECT min(idx + 1)"
		" FROM kheo_blob_chunk c WHERE hash = ?1 AND NOT EXISTS (SELECT"
		" 1 FROM kheo_blob_chunk d WHERE d.hash = ?1 AND d.idx ="
		" c.idx + 1)), 0), EXISTS (SELECT 1 FROM kheo_blob_chunk WHERE"
		" hash = ?1 AND idx = 0)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "blob chunks");
	sqlite3_bind_blob(st, 1, h, KHEO_ID_SIZE, SQLITE_STATIC);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		*idx = sqlite3_column_int(st, 1)
			       ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? KHEO_OK : kheo__sqlerr(db, rc, "blob chunks");
}

/* ------------------------------------------------------ what is named */

/* Hash fields of the schema's tables, as (table, field, single). */
static int each_hash_field(kheo_db *db,
	int (*fn)(kheo_db *db, const kheo_stable *t, const kheo_sfield *f,
		void *arg),
	void *arg)
{
	size_t i, j;
	int err;

	for (i = 0; i < db->schema->ntables; i++) {
		const kheo_stable *t = &db->schema->tables[i];

		/* `_sys` hashes are keys (receipts, revocations), not
		 * attachments */
		if (t->system)
			continue;
		for (j = 0; j < t->nfields; j++)
			if (t->fields[j].type == KHEO_F_HASH &&
			    (err = fn(db, t, &t->fields[j], arg)) != 0)
				return err;
	}
	return 0;
}

typedef struct named_ctx {
	int (*keep)(void *arg, const char *unit);
	void *arg;
	kheo_blob_ref *v;
	size_t n, cap;
	const uint8_t *only;  /* is_named: stop at this hash */
	int found;
} named_ctx;

static int collect_field(kheo_db *db, const kheo_stable *t,
	const kheo_sfield *f, void *arg)
{
	named_ctx *c = arg;
	char sql[512];
	sqlite3_stmt *st, *rec = NULL;
	int rc, err = 0;

	if (f->is_set)
		snprintf(sql, sizeof(sql), "SELECT t.id, t._unit, j.value FROM"
			" \"%s\" t, json_each(t.\"%s\") j WHERE t._deleted = 0"
			" AND (?1 IS NULL OR j.value = ?1)", t->name, f->name);
	else
		snprintf(sql, sizeof(sql), "SELECT id, _unit, \"%s\" FROM"
			" \"%s\" WHERE _deleted = 0 AND \"%s\" IS NOT NULL AND"
			" (?1 IS NULL OR \"%s\" = ?1)", f->name, t->name,
			f->name, f->name);
	rc = sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "blobs named");
	if (c->only) {
		char hex[2 * KHEO_ID_SIZE + 1];

		kheo_hex(hex, c->only, KHEO_ID_SIZE);
		sqlite3_bind_text(st, 1, hex, -1, SQLITE_TRANSIENT);
	} else if (sqlite3_prepare_v2(db->sql, "SELECT clock FROM kheo_record"
			   " WHERE rid = ?1", -1, &rec, NULL) != SQLITE_OK) {
		sqlite3_finalize(st);
		return kheo__sqlerr(db, rc, "blobs named");
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 0);
		const char *unit = (const char *)sqlite3_column_text(st, 1);
		const char *hx = (const char *)sqlite3_column_text(st, 2);
		uint8_t rid[KHEO_RECORD_SIZE];
		kheo_blob_ref *r;

		if (!id || !unit || !hx || strlen(hx) != 2 * KHEO_ID_SIZE)
			continue;
		if (c->keep && !c->keep(c->arg, unit))
			continue;
		if (c->only) {
			c->found = 1;
			break;
		}
		if (c->n == c->cap) {
			size_t ncap = c->cap ? 2 * c->cap : 64;
			kheo_blob_ref *nv = kheo__realloc(c->v,
				ncap * sizeof(*nv));

			if (!nv) {
				err = kheo__error(db, KHEO_ENOMEM,
					"out of memory");
				break;
			}
			c->v = nv;
			c->cap = ncap;
		}
		r = &c->v[c->n++];
		memset(r, 0, sizeof(*r));
		kheo_unhex(r->hash, KHEO_ID_SIZE, hx, strlen(hx));
		r->table = t->name;
		r->field = f->name;
		r->single = !f->is_set;
		snprintf(r->id, sizeof(r->id), "%s", id);
		snprintf(r->unit, sizeof(r->unit), "%s", unit);
		if (kheo_unhex(rid, sizeof(rid), id, strlen(id)) == KHEO_OK) {
			sqlite3_reset(rec);
			sqlite3_bind_blob(rec, 1, rid, sizeof(rid),
				SQLITE_STATIC);
			if (sqlite3_step(rec) == SQLITE_ROW)
				r->clock = (uint64_t)sqlite3_column_int64(rec,
					0);
		}
	}
	sqlite3_finalize(st);
	sqlite3_finalize(rec);
	if (err)
		return err;
	if (c->found)
		return 1;
	return rc == SQLITE_DONE || rc == SQLITE_ROW
		       ? 0 : kheo__sqlerr(db, rc, "blobs named");
}

/* Decision scans (single fields) first, then newest records, then by
 * hash and record so that the order is total. */
static int ref_cmp(const void *pa, const void *pb)
{
	const kheo_blob_ref *a = pa, *b = pb;
	int c;

	if (a->single != b->single)
		return b->single - a->single;
	if (a->clock != b->clock)
		return a->clock > b->clock ? -1 : 1;
	if ((c = memcmp(a->hash, b->hash, KHEO_ID_SIZE)) != 0)
		return c;
	return strcmp(a->id, b->id);
}

int kheo__blob_named(kheo_db *db,
	int (*keep)(void *arg, const char *unit), void *arg,
	kheo_blob_ref **out, size_t *n)
{
	named_ctx c = { keep, arg, NULL, 0, 0, NULL, 0 };
	int err;

	*out = NULL;
	*n = 0;
	if ((err = ensure(db)) < 0 ||
	    (db->in_tx && (err = kheo__flush_dirty(db)) < 0))
		return err;
	if ((err = each_hash_field(db, collect_field, &c)) < 0) {
		kheo__free(c.v);
		return err;
	}
	if (c.n)
		qsort(c.v, c.n, sizeof(*c.v), ref_cmp);
	*out = c.v;
	*n = c.n;
	return KHEO_OK;
}

int kheo__blob_is_named(kheo_db *db, const uint8_t h[KHEO_ID_SIZE])
{
	named_ctx c = { NULL, NULL, NULL, 0, 0, h, 0 };

	if (db->in_tx && kheo__flush_dirty(db) < 0)
		return 0;
	return each_hash_field(db, collect_field, &c) == 1;
}

/* ------------------------------------------------------------------ API */

static int parse_hash(kheo_db *db, const char *hex, uint8_t h[KHEO_ID_SIZE])
{
	if (!hex || strlen(hex) != 2 * KHEO_ID_SIZE ||
	    kheo_unhex(h, KHEO_ID_SIZE, hex, strlen(hex)) < 0)
		return kheo__error(db, KHEO_EINVAL, "\"%s\" is not a blob hash "
			"(64 hex digits)", hex ? hex : "");
	return KHEO_OK;
}

/* Store the bytes p[0..n) as a blob of this node. */
static int add_bytes(kheo_db *db, const uint8_t *p, size_t n,
	kheo_blob_info *info)
{
	uint8_t h[KHEO_ID_SIZE], chash[KHEO_ID_SIZE];
	kheo_buf z = { 0 };
	uint64_t i, k = nchunks(n), stored = 0;
	int complete = 0, err = KHEO_OK;

	crypto_generichash(h, KHEO_ID_SIZE, p, n, NULL, 0);
	if (info)
		kheo_hex(info->hash, h, KHEO_ID_SIZE);
	if ((err = ensure(db)) < 0)
		return err;
	err = blob_row(db, h, NULL, NULL, &complete);
	if (err < 0 && err != KHEO_ENOTFOUND)
		return err;
	for (i = 0; i < k && !complete; i++) {
		const uint8_t *c = p + i * KHEO_BLOB_CHUNK;
		size_t len = chunk_len(n, i);
		int zz = 0;

		crypto_generichash(chash, KHEO_ID_SIZE, c, len, NULL, 0);
		kheo_buf_reset(&z);
		/* compressed only when it saves at least 1/64 */
		if (kheo_codec_pack(db->codec, &z, c, len, BLOB_LEVEL) ==
			    KHEO_OK && z.len < len - len / 64)
			zz = 1;
		if ((err = put_chunk(db, h, n, i, zz, chash, zz ? z.p : c,
			     zz ? z.len : len, 0, 1, NULL)) < 0)
			break;
		stored += zz ? z.len : len;
	}
	kheo_buf_free(&z);
	if (err == KHEO_OK && info) {
		const char *t = sniff(p, n);
		sqlite3_stmt *st;

		info->size = n;
		info->chunks = (size_t)k;
		snprintf(info->type, sizeof(info->type), "%s", t ? t : "");
		info->stored = stored;
		if (complete && sqlite3_prepare_v2(db->sql, "SELECT sum(zlen)"
			    " FROM kheo_blob_chunk WHERE hash = ?1", -1, &st,
			    NULL) == SQLITE_OK) {
			sqlite3_bind_blob(st, 1, h, KHEO_ID_SIZE,
				SQLITE_STATIC);
			if (sqlite3_step(st) == SQLITE_ROW)
				info->stored = (uint64_t)sqlite3_column_int64(
					st, 0);
			sqlite3_finalize(st);
		}
	}
	return err;
}

KHEO_EXTERN int kheo_attach(kheo_db *db, const char *table, const char *id,
	const char *field, const char *path, const kheo_attach_options *o,
	kheo_blob_info *info)
{
	const kheo_stable *t;
	const kheo_sfield *f;
	kheo_blob_info mine;
	kheo_buf file = { 0 };
	kheo_assign a;
	uint64_t max;
	int err;

	kheo__clear(db);
	if (o && o->version != KHEO_ATTACH_OPTIONS_VERSION)
		return kheo__error(db, KHEO_EINVAL, "attach options version "
			"unknown");
	max = o && o->max_bytes ? o->max_bytes : KHEO_BLOB_DEFAULT_MAX;
	if (max > KHEO_BLOB_SIZE_MAX)
		max = KHEO_BLOB_SIZE_MAX;
	if (!info)
		info = &mine;
	memset(info, 0, sizeof(*info));
	if (!(t = kheo_schema_table(db->schema, table)))
		return kheo__error(db, KHEO_EINVAL, "no table %s", table);
	if (!(f = kheo_schema_field(t, field)))
		return kheo__error(db, KHEO_EINVAL, "%s: no field %s", table,
			field);
	if (f->type != KHEO_F_HASH)
		return kheo__error(db, KHEO_EINVAL, "%s.%s is not an attachment "
			"field (type hash)", table, field);
	if ((err = read_file(db, path, &file, max, KHEO_ELIMIT)) < 0)
		goto done;
	if (file.len == 0) {
		err = kheo__error(db, KHEO_EINVAL, "%s is empty", path);
		goto done;
	}
	if (!sniff(file.p, file.len)) {
		err = kheo__error(db, KHEO_EINVAL, "%s is not a JPEG, PNG, PDF "
			"or WebP file (by its first bytes)", path);
		goto done;
	}
	if ((err = add_bytes(db, file.p, file.len, info)) < 0)
		goto done;
	a.field = field;
	a.op = f->is_set ? KHEO_ASSIGN_ADD : KHEO_ASSIGN_SET;
	a.value = info->hash;
	err = kheo_set(db, table, id, &a, 1);
done:
	kheo_buf_free(&file);
	return err;
}

KHEO_EXTERN int kheo_blob_get(kheo_db *db, const char *hash,
	const char *path, kheo_blob_info *info)
{
	uint8_t h[KHEO_ID_SIZE];
	uint64_t size = 0, have = 0;
	char tmp[1100], type[8] = "";
	int complete = 0, err, fd;

	kheo__clear(db);
	if ((err = parse_hash(db, hash, h)) < 0 || (err = ensure(db)) < 0)
		return err;
	err = blob_row(db, h, &size, &have, &complete);
	if (err == KHEO_ENOTFOUND || (err == KHEO_OK && !complete))
		return kheo__error(db, KHEO_ENOTFOUND, "blob %s is not here (%s"
			"); kheo blob missing lists what records name and "
			"this node lacks", hash,
			err == KHEO_OK ? "partial" : "none of it");
	if (err < 0)
		return err;
	snprintf(tmp, sizeof(tmp), "%s.kheo-tmp", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
		return kheo__error(db, KHEO_EIO, "%s: %s", tmp,
			strerror(errno));
	err = verify_whole(db, h, size, fd, type);
	if (err == KHEO_OK && (fsync(fd) < 0))
		err = kheo__error(db, KHEO_EIO, "fsync %s: %s", tmp,
			strerror(errno));
	close(fd);
	if (err == KHEO_OK && rename(tmp, path) < 0)
		err = kheo__error(db, KHEO_EIO, "rename to %s: %s", path,
			strerror(errno));
	if (err < 0) {
		unlink(tmp);
		return err;
	}
	if (info) {
		memset(info, 0, sizeof(*info));
		kheo_hex(info->hash, h, KHEO_ID_SIZE);
		info->size = size;
		info->chunks = (size_t)nchunks(size);
		snprintf(info->type, sizeof(info->type), "%s", type);
	}
	return KHEO_OK;
}

int kheo__blob_verify(kheo_db *db, const uint8_t h[KHEO_ID_SIZE],
	uint64_t *size)
{
	char hex[2 * KHEO_ID_SIZE + 1];
	uint64_t sz = 0, have = 0;
	int complete = 0, err;

	kheo__clear(db);
	if ((err = ensure(db)) < 0)
		return err;
	kheo_hex(hex, h, KHEO_ID_SIZE);
	err = blob_row(db, h, &sz, &have, &complete);
	if (err == KHEO_ENOTFOUND || (err == KHEO_OK && !complete))
		return kheo__error(db, KHEO_ENOTFOUND, "blob %s is not here "
			"(%s)", hex, err == KHEO_OK ? "partial" : "none of it");
	if (err < 0)
		return err;
	if (size)
		*size = sz;
	err = verify_whole(db, h, sz, -1, NULL);
	/* a chunk file gone or unreadable is damage too: the row says the
	 * blob was here whole */
	if (err < 0 && err != KHEO_ENOMEM && err != KHEO_ECORRUPT)
		err = KHEO_ECORRUPT;
	return err;
}

KHEO_EXTERN int kheo_blob_missing_json(kheo_db *db, char **out)
{
	kheo_blob_ref *v;
	size_t n, i;
	json_t *a;
	int err = KHEO_OK;

	kheo__clear(db);
	*out = NULL;
	if ((err = kheo__blob_named(db, NULL, NULL, &v, &n)) < 0)
		return err;
	if (!(a = json_array())) {
		kheo__free(v);
		return kheo__error(db, KHEO_ENOMEM, "out of memory");
	}
	for (i = 0; i < n && err == KHEO_OK; i++) {
		char hex[2 * KHEO_ID_SIZE + 1];
		uint64_t size = 0, have = 0;
		int complete = 0, e;
		json_t *o;

		e = blob_row(db, v[i].hash, &size, &have, &complete);
		if (e < 0 && e != KHEO_ENOTFOUND) {
			err = e;
			break;
		}
		if (e == KHEO_OK && complete)
			continue;
		kheo_hex(hex, v[i].hash, KHEO_ID_SIZE);
		o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:o}", "hash",
			hex, "table", v[i].table, "id", v[i].id, "field",
			v[i].field, "unit", v[i].unit, "chunks_held",
			(json_int_t)(e == KHEO_OK ? have : 0), "chunks",
			e == KHEO_OK ? json_integer((json_int_t)nchunks(size))
				     : json_null());
		if (!o || json_array_append_new(a, o) < 0)
			err = kheo__error(db, KHEO_ENOMEM, "out of memory");
	}
	kheo__free(v);
	if (err == KHEO_OK && !(*out = json_dumps(a, JSON_COMPACT)))
		err = kheo__error(db, KHEO_ENOMEM, "out of memory");
	json_decref(a);
	return err;
}

int kheo__blob_missing_count(kheo_db *db, size_t *out)
{
	kheo_blob_ref *v;
	size_t n, i, j, k = 0;
	int err;

	*out = 0;
	if ((err = kheo__blob_named(db, NULL, NULL, &v, &n)) < 0)
		return err;
	for (i = 0; i < n; i++) {
		int complete = 0;

		/* one hash once: v is sorted by priority, not by hash */
		for (j = 0; j < i; j++)
			if (memcmp(v[j].hash, v[i].hash, KHEO_ID_SIZE) == 0)
				break;
		if (j < i)
			continue;
		if (blob_row(db, v[i].hash, NULL, NULL, &complete) < 0 ||
		    !complete)
			k++;
	}
	kheo__free(v);
	kheo__clear(db);
	*out = k;
	return KHEO_OK;
}

static int hash_cmp(const void *a, const void *b)
{
	return memcmp(a, b, KHEO_ID_SIZE);
}

KHEO_EXTERN int kheo_blob_prune(kheo_db *db, unsigned days,
	kheo_prune_stats *out)
{
	/* the province is where blobs are acknowledged: it prunes by age;
	 * any other node keeps a whole blob until the province vouched for
	 * it (blob_ack.c) */
	int province = db->role == KHEO_NODE_PROVINCE;
	size_t unacked = 0;
	kheo_blob_ref *v;
	uint8_t (*named)[KHEO_ID_SIZE] = NULL, (*gone)[KHEO_ID_SIZE] = NULL;
	size_t n, i, ngone = 0, capgone = 0, count = 0;
	uint64_t total = 0;
	sqlite3_stmt *st;
	int64_t before = kheo__now_ms(db) - (int64_t)days * 86400000;
	int err, rc;

	kheo__clear(db);
	if ((err = kheo__blob_named(db, NULL, NULL, &v, &n)) < 0)
		return err;
	if (n && !(named = kheo__calloc(n, KHEO_ID_SIZE))) {
		kheo__free(v);
		return kheo__error(db, KHEO_ENOMEM, "out of memory");
	}
	for (i = 0; i < n; i++)
		memcpy(named[i], v[i].hash, KHEO_ID_SIZE);
	kheo__free(v);
	if (n)
		qsort(named, n, KHEO_ID_SIZE, hash_cmp);
	rc = sqlite3_prepare_v2(db->sql, "SELECT b.hash, (SELECT"
		" coalesce(sum(zlen), 0) FROM kheo_blob_chunk c WHERE c.hash ="
		" b.hash), b.done_at IS NOT NULL FROM kheo_blob b WHERE"
		" coalesce(b.done_at, b.added) < ?1", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		kheo__free(named);
		return kheo__sqlerr(db, rc, "blobs");
	}
	sqlite3_bind_int64(st, 1, before);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const uint8_t *h = sqlite3_column_blob(st, 0);

		if (n && bsearch(h, named, n, KHEO_ID_SIZE, hash_cmp))
			continue;
		/* a partial blob no record names can be neither served nor
		 * completed: age is enough */
		if (!province && sqlite3_column_int(st, 2)) {
			int acked = kheo__blob_acked(db, h);

			if (acked < 0) {
				rc = SQLITE_ERROR;
				break;
			}
			if (!acked) {
				unacked++;
				continue;
			}
		}
		if (ngone == capgone) {
			void *ng = kheo__realloc(gone,
				(capgone = capgone ? 2 * capgone : 16) *
					KHEO_ID_SIZE);

			if (!ng) {
				rc = SQLITE_NOMEM;
				break;
			}
			gone = ng;
		}
		memcpy(gone[ngone++], h, KHEO_ID_SIZE);
		total += (uint64_t)sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	kheo__free(named);
	if (rc != SQLITE_DONE) {
		kheo__free(gone);
		if (rc == SQLITE_ERROR) /* kheo__blob_acked said why */
			return KHEO_ERROR;
		return rc == SQLITE_NOMEM
			       ? kheo__error(db, KHEO_ENOMEM, "out of memory")
			       : kheo__sqlerr(db, rc, "blobs");
	}
	/* the rows go first, one transaction: a crash leaves orphan files,
	 * never a row naming a file that is gone */
	if ((err = kheo__begin(db)) < 0) {
		kheo__free(gone);
		return err;
	}
	for (i = 0; i < ngone && err == KHEO_OK; i++)
		err = forget_rows(db, gone[i]);
	if (err == KHEO_OK)
		err = kheo__commit_tx(db);
	else
		kheo__rollback(db);
	if (err == KHEO_OK)
		for (count = 0; count < ngone; count++)
			unlink_files(db, gone[count]);
	kheo__free(gone);
	if (err < 0)
		return err;
	if (out) {
		out->pruned = count;
		out->bytes = total;
		out->unacked = unacked;
	}
	return KHEO_OK;
}
