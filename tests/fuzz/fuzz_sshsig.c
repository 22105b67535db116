/*
 * fuzz_sshsig.c - libFuzzer target for the SSH signature reader an
 * auditor's `kheo audit verify` runs on every mirror commit's gpgsig
 * header (audit_sign.c): the mirror is untrusted input.
 *
 * An input starting with '-' is the armoured text as a commit carries it;
 * any other is the binary SSHSIG after its first byte, armoured here, so
 * that the wire parser is reached without the fuzzer having to find
 * base64.  The key and the signed bytes are those of the vector in
 * tests/unit/test_audit.c (made by ssh-keygen -Y sign), so the seeds in
 * the corpus verify and the accepting path is covered too.
 */
#include "audit_sign.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char message[] =
	"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
	"author kat <kat@kheo> 1714559400 +0000\n"
	"committer kat <kat@kheo> 1714559400 +0000\n"
	"\n"
	"kheo sshsig vector\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char key_hex[] =
		"f82aae6f38a0e58eba868b3ff2c341303380bd93651ed3151b4408df3427bf46";
	uint8_t pk[KHEO_KEY_SIZE];
	char why[200], *text;
	size_t len;

	if (size == 0 || sodium_init() < 0 ||
	    kheo_unhex(pk, sizeof(pk), key_hex, sizeof(key_hex) - 1) < 0)
		return 0;
	if (data[0] == '-') {
		text = malloc(size);
		if (!text)
			return 0;
		memcpy(text, data, size);
		len = size;
	} else {
		size_t b64 = sodium_base64_ENCODED_LEN(size - 1,
			sodium_base64_VARIANT_ORIGINAL);
		static const char begin[] = "-----BEGIN SSH SIGNATURE-----\n";
		static const char end[] = "\n-----END SSH SIGNATURE-----";

		len = sizeof(begin) - 1 + b64 - 1 + sizeof(end) - 1;
		text = malloc(len + 1);
		if (!text)
			return 0;
		memcpy(text, begin, sizeof(begin) - 1);
		sodium_bin2base64(text + sizeof(begin) - 1, b64, data + 1,
			size - 1, sodium_base64_VARIANT_ORIGINAL);
		memcpy(text + sizeof(begin) - 1 + b64 - 1, end, sizeof(end));
	}
	(void)kheo__sshsig_check(text, len, (const uint8_t *)message,
		sizeof(message) - 1, pk, why, sizeof(why));
	free(text);
	return 0;
}
