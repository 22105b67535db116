/*
 * frame.c - the frame a signed changeset is stored and sent in.
 *
 *   magic "KCS" 0x01 | flags | [dictionary id, 32 bytes] | raw length varint
 *   | signature, 64 bytes | payload
 *
 * The payload is the canonical changeset, either as is or as one zstd frame
 * (compressed with a bounded 128 KiB window and, optionally, a trained
 * dictionary named by its BLAKE2b-256).  Compression never touches what is
 * hashed or signed, so a node may recompress (another level, a newer
 * dictionary) without changing an id or a signature.
 *
 * The reader trusts nothing: the declared size is capped before anything is
 * allocated, the window is capped so a hostile frame cannot make zstd ask
 * for more memory, and the payload must decompress to exactly the declared
 * size with no byte to spare.
 */
#include "proto.h"
#include "alloc.h"

#include <sodium.h>
#include <string.h>
#include <zdict.h>
/* For ZSTD_getFrameHeader, exported by libzstd's shared library too. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

/* Below this, a zstd frame's own header outweighs what it saves. */
#define COMPRESS_MIN 64

struct kheo_dict {
	uint8_t id[KHEO_ID_SIZE];
	ZSTD_CDict *cdict;
	ZSTD_DDict *ddict;
};

struct kheo_codec {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	int level;
	const kheo_dict *use;        /* dictionary to compress with */
	const kheo_dict **known;     /* dictionaries the reader accepts */
	size_t nknown;
	kheo_buf scratch;            /* compressed payload before framing */
};

int kheo_dict_new(kheo_dict **out, const void *bytes, size_t len, int level)
{
	kheo_dict *d;

	*out = NULL;
	if (!(d = kheo__calloc(1, sizeof(*d))))
		return KHEO_ENOMEM;
	crypto_generichash(d->id, KHEO_ID_SIZE, bytes, len, NULL, 0);
	d->cdict = ZSTD_createCDict(bytes, len, level);
	d->ddict = ZSTD_createDDict(bytes, len);
	if (!d->cdict || !d->ddict) {
		kheo_dict_free(d);
		return KHEO_ENOMEM;
	}
	*out = d;
	return KHEO_OK;
}

void kheo_dict_free(kheo_dict *d)
{
	if (!d)
		return;
	ZSTD_freeCDict(d->cdict);
	ZSTD_freeDDict(d->ddict);
	kheo__free(d);
}

const uint8_t *kheo_dict_id(const kheo_dict *d)
{
	return d->id;
}

int kheo_dict_train(uint8_t **out, size_t *outlen, size_t capacity,
	const uint8_t *samples, const size_t *sizes, size_t nsamples)
{
	uint8_t *dict;
	size_t n;

	*out = NULL;
	*outlen = 0;
	if (nsamples > UINT32_MAX)
		return KHEO_EINVAL;
	if (!(dict = kheo__malloc(capacity)))
		return KHEO_ENOMEM;
	n = ZDICT_trainFromBuffer(dict, capacity, samples, sizes,
		(unsigned)nsamples);
	if (ZDICT_isError(n)) {
		kheo__free(dict);
		return KHEO_EINVAL;
	}
	*out = dict;
	*outlen = n;
	return KHEO_OK;
}

int kheo_codec_new(kheo_codec **out, int level)
{
	kheo_codec *c;

	*out = NULL;
	if (!(c = kheo__calloc(1, sizeof(*c))))
		return KHEO_ENOMEM;
	c->level = level;
	/* the decompression context (about 96 KB) is made on first use: a
	 * hub holds a codec per session, and most sessions never need it */
	if (!(c->cctx = ZSTD_createCCtx())) {
		kheo_codec_free(c);
		return KHEO_ENOMEM;
	}
	*out = c;
	return KHEO_OK;
}

static int need_dctx(kheo_codec *c)
{
	if (c->dctx)
		return KHEO_OK;
	if (!(c->dctx = ZSTD_createDCtx()))
		return KHEO_ENOMEM;
	if (ZSTD_isError(ZSTD_DCtx_setParameter(c->dctx, ZSTD_d_windowLogMax,
		    KHEO_ZSTD_WINDOW_LOG))) {
		ZSTD_freeDCtx(c->dctx);
		c->dctx = NULL;
		return KHEO_ENOMEM;
	}
	return KHEO_OK;
}

void kheo_codec_free(kheo_codec *c)
{
	if (!c)
		return;
	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	kheo__free(c->known);
	kheo_buf_free(&c->scratch);
	kheo__free(c);
}

void kheo_codec_use_dict(kheo_codec *c, const kheo_dict *d)
{
	c->use = d;
}

int kheo_codec_add_dict(kheo_codec *c, const kheo_dict *d)
{
	const kheo_dict **known;

	known = kheo__realloc(c->known, (c->nknown + 1) * sizeof(*known));
	if (!known)
		return KHEO_ENOMEM;
	known[c->nknown++] = d;
	c->known = known;
	return KHEO_OK;
}

static const kheo_dict *find_dict(const kheo_codec *c, const uint8_t *id)
{
	size_t i;

	for (i = 0; i < c->nknown; i++)
		if (memcmp(c->known[i]->id, id, KHEO_ID_SIZE) == 0)
			return c->known[i];
	return NULL;
}

/* Compress raw into c->scratch; 1 if that is smaller, 0 if not, or <0. */
static int compress_payload(kheo_codec *c, const uint8_t *raw, size_t len)
{
	ZSTD_CCtx *z = c->cctx;
	size_t bound = ZSTD_compressBound(len), n;
	int err;

	if (len < COMPRESS_MIN || c->level == 0)
		return 0;
	kheo_buf_reset(&c->scratch);
	if ((err = kheo_buf_reserve(&c->scratch, bound)) < 0)
		return err;
	ZSTD_CCtx_reset(z, ZSTD_reset_session_and_parameters);
	/* Size and checksum are ours (declared length, BLAKE2b id); a
	 * dictionary is named by our header, not zstd's 32-bit id. */
	ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, c->level);
	ZSTD_CCtx_setParameter(z, ZSTD_c_windowLog, KHEO_ZSTD_WINDOW_LOG);
	ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, 0);
	ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 0);
	ZSTD_CCtx_setParameter(z, ZSTD_c_dictIDFlag, 0);
	if (c->use)
		ZSTD_CCtx_refCDict(z, c->use->cdict);
	n = ZSTD_compress2(z, c->scratch.p, bound, raw, len);
	if (ZSTD_isError(n))
		return KHEO_ERROR;
	c->scratch.len = n;
	return n < len;
}

int kheo_frame_write(kheo_codec *c, kheo_buf *out, const uint8_t *raw,
	size_t rawlen, const uint8_t sig[KHEO_SIG_SIZE])
{
	uint8_t flags = 0;
	int packed;

	if (rawlen == 0 || rawlen > KHEO_CS_RAW_MAX)
		return KHEO_ELIMIT;
	if ((packed = compress_payload(c, raw, rawlen)) < 0)
		return packed;
	if (packed)
		flags = KHEO_FRAME_F_ZSTD | (c->use ? KHEO_FRAME_F_DICT : 0);
	kheo_buf_put(out, KHEO_FRAME_MAGIC, KHEO_FRAME_MAGIC_SIZE);
	kheo_buf_put_u8(out, flags);
	if (flags & KHEO_FRAME_F_DICT)
		kheo_buf_put(out, c->use->id, KHEO_ID_SIZE);
	kheo_buf_put_varint(out, rawlen);
	kheo_buf_put(out, sig, KHEO_SIG_SIZE);
	if (packed)
		kheo_buf_put(out, c->scratch.p, c->scratch.len);
	else
		kheo_buf_put(out, raw, rawlen);
	return out->oom ? KHEO_ENOMEM : KHEO_OK;
}

static int read_zstd_payload(kheo_codec *c, kheo_buf *raw,
	const uint8_t *p, size_t n, size_t rawlen, const kheo_dict *dict,
	size_t off, kheo_refusal *why)
{
	ZSTD_frameHeader header;
	unsigned long long declared;
	size_t framelen, got;
	int err;

	framelen = ZSTD_findFrameCompressedSize(p, n);
	if (ZSTD_isError(framelen))
		return kheo__refuse(why, KHEO_R_BAD_FRAME, off,
			"payload is not a zstd frame: %s",
			ZSTD_getErrorName(framelen));
	if (framelen != n)
		return kheo__refuse(why, KHEO_R_TRAILING_BYTES, off + framelen,
			"%zu bytes after the zstd frame", n - framelen);
	/* One-shot decompression is bounded by the declared size alone, but
	 * the format promises a 128 KiB window so that a streaming reader (a
	 * phone) never needs more: hold every writer to it. */
	if (ZSTD_getFrameHeader(&header, p, n) != 0)
		return kheo__refuse(why, KHEO_R_BAD_FRAME, off,
			"payload's zstd frame header is unreadable");
	if (header.frameType != ZSTD_frame ||
	    header.windowSize > (1ull << KHEO_ZSTD_WINDOW_LOG))
		return kheo__refuse(why, KHEO_R_BAD_FRAME, off,
			"zstd frame window of %llu bytes, above %u",
			header.windowSize, 1u << KHEO_ZSTD_WINDOW_LOG);
	declared = ZSTD_getFrameContentSize(p, n);
	if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != rawlen)
		return kheo__refuse(why, KHEO_R_SIZE_MISMATCH, off,
			"zstd frame holds %llu bytes, the frame declares %zu",
			declared, rawlen);
	if ((err = kheo_buf_reserve(raw, rawlen)) < 0 ||
	    (err = need_dctx(c)) < 0)
		return err;
	if (ZSTD_isError(ZSTD_DCtx_refDDict(c->dctx, dict ? dict->ddict
							   : NULL)))
		return KHEO_ERROR;
	/* Capacity is the declared size: a bomb stops there. */
	got = ZSTD_decompressDCtx(c->dctx, raw->p + raw->len, rawlen, p, n);
	if (ZSTD_isError(got)) {
		if (ZSTD_getErrorCode(got) == ZSTD_error_dstSize_tooSmall)
			return kheo__refuse(why, KHEO_R_SIZE_MISMATCH, off,
				"payload decompresses to more than the "
				"declared %zu bytes", rawlen);
		return kheo__refuse(why, KHEO_R_BAD_FRAME, off,
			"zstd refused the payload: %s",
			ZSTD_getErrorName(got));
	}
	if (got != rawlen)
		return kheo__refuse(why, KHEO_R_SIZE_MISMATCH, off,
			"payload decompresses to %zu bytes, the frame "
			"declares %zu", got, rawlen);
	raw->len += rawlen;
	return KHEO_OK;
}

int kheo_codec_pack(kheo_codec *c, kheo_buf *out, const uint8_t *p,
	size_t n, int level)
{
	ZSTD_CCtx *z = c->cctx;
	size_t bound = ZSTD_compressBound(n), got;
	int err;

	if ((err = kheo_buf_reserve(out, bound)) < 0)
		return err;
	ZSTD_CCtx_reset(z, ZSTD_reset_session_and_parameters);
	ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(z, ZSTD_c_windowLog, KHEO_ZSTD_WINDOW_LOG);
	ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, 0);
	ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 0);
	ZSTD_CCtx_setParameter(z, ZSTD_c_dictIDFlag, 0);
	got = ZSTD_compress2(z, out->p + out->len, bound, p, n);
	if (ZSTD_isError(got))
		return KHEO_ERROR;
	out->len += got;
	return KHEO_OK;
}

int kheo_codec_unpack(kheo_codec *c, kheo_buf *out, const uint8_t *p,
	size_t n, size_t rawlen, kheo_refusal *why)
{
	return read_zstd_payload(c, out, p, n, rawlen, NULL, 0, why);
}

int kheo_frame_read(kheo_codec *c, kheo_buf *raw, uint8_t sig[KHEO_SIG_SIZE],
	const uint8_t *frame, size_t len, kheo_refusal *why)
{
	const kheo_dict *dict = NULL;
	const uint8_t *p;
	uint64_t rawlen;
	size_t start;
	uint8_t flags;
	kheo_reader r;
	int err;

	kheo_buf_reset(raw);
	kheo_reader_init(&r, frame, len, why);
	if (len < 3 || memcmp(frame, KHEO_FRAME_MAGIC, 3) != 0)
		return kheo__refuse(why, KHEO_R_BAD_MAGIC, 0,
			"not a kheo changeset frame (magic \"KCS\" missing)");
	if ((err = kheo_read_bytes(&r, &p, KHEO_FRAME_MAGIC_SIZE,
		     "frame magic")) < 0)
		return err;
	if (p[3] != (uint8_t)KHEO_FRAME_MAGIC[3])
		return kheo__refuse(why, KHEO_R_BAD_VERSION, 3,
			"frame format version %u unknown (this is %u)", p[3],
			(uint8_t)KHEO_FRAME_MAGIC[3]);
	if ((err = kheo_read_u8(&r, &flags, "frame flags")) < 0)
		return err;
	if ((flags & ~(KHEO_FRAME_F_ZSTD | KHEO_FRAME_F_DICT)) ||
	    ((flags & KHEO_FRAME_F_DICT) && !(flags & KHEO_FRAME_F_ZSTD)))
		return kheo__refuse(why, KHEO_R_BAD_FLAGS, r.off - 1,
			"frame flags 0x%02x: reserved bits or a dictionary "
			"without compression", flags);
	if (flags & KHEO_FRAME_F_DICT) {
		char hex[2 * KHEO_ID_SIZE + 1];

		start = r.off;
		if ((err = kheo_read_bytes(&r, &p, KHEO_ID_SIZE,
			     "dictionary id")) < 0)
			return err;
		if (!(dict = find_dict(c, p))) {
			kheo_hex(hex, p, KHEO_ID_SIZE);
			return kheo__refuse(why, KHEO_R_UNKNOWN_DICT, start,
				"frame needs dictionary %s, not known here",
				hex);
		}
	}
	start = r.off;
	if ((err = kheo_read_varint(&r, &rawlen, UINT64_MAX,
		     "declared size")) < 0)
		return err;
	if (rawlen == 0 || rawlen > KHEO_CS_RAW_MAX)
		return kheo__refuse(why,
			rawlen ? KHEO_R_TOO_BIG : KHEO_R_SIZE_MISMATCH, start,
			"declared size %llu outside 1..%u",
			(unsigned long long)rawlen, KHEO_CS_RAW_MAX);
	if ((err = kheo_read_bytes(&r, &p, KHEO_SIG_SIZE, "signature")) < 0)
		return err;
	memcpy(sig, p, KHEO_SIG_SIZE);

	start = r.off;
	p = frame + r.off;
	if (!(flags & KHEO_FRAME_F_ZSTD)) {
		if (len - r.off != rawlen)
			return kheo__refuse(why,
				len - r.off < rawlen ? KHEO_R_TRUNCATED
						     : KHEO_R_TRAILING_BYTES,
				start, "payload of %zu bytes, declared %llu",
				len - r.off, (unsigned long long)rawlen);
		kheo_buf_put(raw, p, (size_t)rawlen);
		return raw->oom ? KHEO_ENOMEM : KHEO_OK;
	}
	return read_zstd_payload(c, raw, p, len - r.off, (size_t)rawlen,
		dict, start, why);
}

int kheo_frame_open(kheo_codec *c, kheo_changeset **out,
	uint8_t id[KHEO_ID_SIZE], kheo_buf *raw, const uint8_t *frame,
	size_t len, kheo_refusal *why)
{
	uint8_t sig[KHEO_SIG_SIZE];
	kheo_changeset *cs;
	int err;

	*out = NULL;
	if ((err = kheo_frame_read(c, raw, sig, frame, len, why)) < 0)
		return err;
	if ((err = kheo_changeset_decode(&cs, raw->p, raw->len, why)) < 0)
		return err;
	kheo_changeset_id(id, raw->p, raw->len);
	if ((err = kheo_changeset_verify(sig, id, cs->author, why)) < 0) {
		kheo_changeset_free(cs);
		return err;
	}
	*out = cs;
	return KHEO_OK;
}
