/*
 * replay.c - runs a fuzz target over every file of its corpus folders,
 * without libFuzzer, so that `make test` (and the cross-architecture and
 * sanitizer runs) replay every input ever saved.  Prints TAP: one test per
 * input; a crash ends the run, which tests/run.sh counts as a failure.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f)
		return -1;
	do {
		if (len == cap) {
			cap = cap ? 2 * cap : 4096;
			buf = realloc(buf, cap);
			if (!buf)
				abort();
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	/* a private copy of exactly len bytes, so ASan sees overreads */
	{
		uint8_t *exact = malloc(len ? len : 1);

		memcpy(exact, buf, len);
		free(buf);
		LLVMFuzzerTestOneInput(exact, len);
		free(exact);
	}
	return 0;
}

int main(int argc, char **argv)
{
	int i, test = 0;

	for (i = 1; i < argc; i++) {
		DIR *dir = opendir(argv[i]);
		struct dirent *e;
		char **names = NULL;
		size_t n = 0, j;

		if (!dir) {
			printf("not ok %d - cannot open %s\n", ++test, argv[i]);
			continue;
		}
		errno = 0;
		while ((e = readdir(dir)))
			if (e->d_name[0] != '.') {
				names = realloc(names, (n + 1) * sizeof(*names));
				names[n++] = strdup(e->d_name);
			}
		/* an error must not pass for an empty corpus (32-bit readdir
		 * without large-file support fails with EOVERFLOW) */
		if (errno) {
			printf("not ok %d - reading %s: %s\n", ++test, argv[i],
				strerror(errno));
			closedir(dir);
			continue;
		}
		closedir(dir);
		if (n == 0)
			printf("not ok %d - %s holds no inputs\n", ++test,
				argv[i]);
		if (n)
			qsort(names, n, sizeof(*names), by_name);
		for (j = 0; j < n; j++) {
			char path[4096];

			snprintf(path, sizeof(path), "%s/%s", argv[i],
				names[j]);
			if (replay_file(path) < 0)
				printf("not ok %d - cannot read %s\n", ++test,
					path);
			else
				printf("ok %d - %s\n", ++test, path);
			free(names[j]);
		}
		free(names);
	}
	printf("1..%d\n", test);
	return 0;
}
