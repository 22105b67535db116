/*
 * forge.c - make a bundle that is whole and validly signed but holds one
 * forged changeset, for tests/integration/cli.sh.
 *
 *   forge IN OUT K
 *
 * Reads the bundle IN, flips one bit in the signature of frame number K
 * (0-based, in the bundle's order), and writes OUT: the same heads and
 * frames, re-signed as a bundle by a fresh Ed25519 key.  The file then
 * passes every whole-bundle check (digest, bundle signature, format), so
 * a receiver must judge the changesets one by one: K must be quarantined
 * as a bad signature, the others applied.  Prints the number of frames.
 *
 * Built by the test script against $BUILD/libkheo.a and proto/proto.h.
 */
#include "proto.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int slurp(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p = NULL;
	size_t n = 0, cap = 0, got;

	if (!f)
		return -1;
	for (;;) {
		if (n == cap) {
			uint8_t *q = realloc(p, cap ? 2 * cap : 65536);

			if (!q) {
				free(p);
				fclose(f);
				return -1;
			}
			p = q;
			cap = cap ? 2 * cap : 65536;
		}
		got = fread(p + n, 1, cap - n, f);
		if (got == 0)
			break;
		n += got;
	}
	fclose(f);
	*out = p;
	*len = n;
	return 0;
}

int main(int argc, char **argv)
{
	uint8_t *in = NULL, pk[KHEO_KEY_SIZE], sk[KHEO_SECRET_SIZE];
	uint8_t sig[KHEO_SIG_SIZE];
	kheo_buf raw = { 0 }, forged = { 0 }, out = { 0 };
	kheo_refusal why = { 0 };
	kheo_bundle *b = NULL, nb;
	kheo_codec *codec = NULL;
	const uint8_t **frames;
	size_t len, k, *lens;
	FILE *f;
	char *end;

	if (argc != 4) {
		fprintf(stderr, "usage: forge IN OUT K\n");
		return 2;
	}
	k = strtoul(argv[3], &end, 10);
	if (*end || sodium_init() < 0 || slurp(argv[1], &in, &len) < 0) {
		fprintf(stderr, "forge: cannot read %s\n", argv[1]);
		return 1;
	}
	if (kheo_bundle_decode(&b, in, len, &why) < 0) {
		fprintf(stderr, "forge: %s: %s\n", argv[1], why.msg);
		return 1;
	}
	if (k >= b->nframes) {
		fprintf(stderr, "forge: frame %zu of %zu\n", k, b->nframes);
		return 1;
	}
	if (kheo_codec_new(&codec, 3) < 0 ||
	    kheo_frame_read(codec, &raw, sig, b->frames[k], b->lens[k],
		    &why) < 0) {
		fprintf(stderr, "forge: frame %zu: %s\n", k, why.msg);
		return 1;
	}
	sig[17] ^= 0x04; /* one bit of the changeset's signature */
	if (kheo_frame_write(codec, &forged, raw.p, raw.len, sig) < 0) {
		fprintf(stderr, "forge: cannot write the frame\n");
		return 1;
	}
	frames = malloc(b->nframes * sizeof(*frames));
	lens = malloc(b->nframes * sizeof(*lens));
	if (!frames || !lens)
		return 1;
	memcpy(frames, b->frames, b->nframes * sizeof(*frames));
	memcpy(lens, b->lens, b->nframes * sizeof(*lens));
	frames[k] = forged.p;
	lens[k] = forged.len;

	crypto_sign_keypair(pk, sk);
	nb = *b;
	memcpy(nb.sender, pk, KHEO_KEY_SIZE);
	nb.frames = frames;
	nb.lens = lens;
	if (kheo_bundle_encode(&out, &nb, sk) < 0 ||
	    !(f = fopen(argv[2], "wb")) ||
	    fwrite(out.p, 1, out.len, f) != out.len || fclose(f) != 0) {
		fprintf(stderr, "forge: cannot write %s\n", argv[2]);
		return 1;
	}
	printf("%zu\n", b->nframes);
	free(frames);
	free(lens);
	kheo_buf_free(&raw);
	kheo_buf_free(&forged);
	kheo_buf_free(&out);
	kheo_codec_free(codec);
	kheo_bundle_free(b);
	free(in);
	return 0;
}
