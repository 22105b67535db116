/*
 * cmd_enroll.c - kheo enroll request|sign|accept and kheo revoke: offline
 * enrolment, as a device and its issuer do it with no network between
 * them (a line of text, or a QR code on the device's screen).
 */
#include "cli.h"

#include <qrencode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The request or certificate text: from FILE, or stdin for "-". */
static char *read_text(const char *path)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *p = NULL;
	size_t n = 0, cap = 0, got;

	if (!f)
		return NULL;
	do {
		if (n + 4096 + 1 > cap) {
			char *q = realloc(p, cap = 2 * cap + 8192);

			if (!q) {
				free(p);
				p = NULL;
				break;
			}
			p = q;
		}
		got = fread(p + n, 1, cap - n - 1, f);
		n += got;
	} while (got > 0 && n < (1u << 20));
	if (f != stdin)
		fclose(f);
	if (p)
		p[n] = '\0';
	return p;
}

/*
 * A QR code of `text` for a terminal, two modules per character cell with
 * Unicode half blocks: light modules (and the quiet zone) are drawn, dark
 * ones left blank, which reads correctly on the usual light-on-dark
 * terminal.
 */
static int print_qr(const char *text)
{
	enum { QUIET = 2 };
	QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_L, QR_MODE_8, 1);
	int x, y, w;

	if (!qr)
		return -1;
	w = qr->width;
	for (y = -QUIET; y < w + QUIET; y += 2) {
		for (x = -QUIET; x < w + QUIET; x++) {
			int top = y >= 0 && y < w && x >= 0 && x < w &&
				  (qr->data[y * w + x] & 1);
			int bot = y + 1 >= 0 && y + 1 < w && x >= 0 && x < w &&
				  (qr->data[(y + 1) * w + x] & 1);

			fputs(top ? (bot ? " " : "\u2584")
				  : (bot ? "\u2580" : "\u2588"), stdout);
		}
		putchar('\n');
	}
	QRcode_free(qr);
	return 0;
}

static int enroll_request(cli *c)
{
	kheo_db *db;
	char *text = NULL;
	int rc, qr = c->argc == 3 && strcmp(c->argv[2], "--qr") == 0;

	if (c->argc != 2 && !qr)
		return cli_usage("enroll request [--qr]");
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (kheo_enroll_request(db, &text) < 0) {
		rc = cli_fail(db, "enroll request");
	} else if (qr) {
		if (print_qr(text) < 0) {
			fprintf(stderr, "kheo: enroll request: the request is "
				"too long for a QR code; pass the text\n");
			rc = EXIT_REFUSED;
		}
		printf("%s\n", text);
	} else {
		printf("%s\n", text);
	}
	kheo_free(text);
	kheo_db_close(db);
	return rc;
}

static int enroll_sign(cli *c)
{
	static const char line[] =
		"enroll sign FILE|- --role ROLE --unit UNIT [--days N]";
	const char *role = NULL, *unit = NULL;
	unsigned days = 365;
	char *req, *cert = NULL;
	kheo_db *db;
	int i, rc;

	if (c->argc < 3)
		return cli_usage(line);
	for (i = 3; i < c->argc; i++) {
		if (i + 1 < c->argc && strcmp(c->argv[i], "--role") == 0)
			role = c->argv[++i];
		else if (i + 1 < c->argc && strcmp(c->argv[i], "--unit") == 0)
			unit = c->argv[++i];
		else if (i + 1 < c->argc && strcmp(c->argv[i], "--days") == 0)
			days = (unsigned)strtoul(c->argv[++i], NULL, 10);
		else
			return cli_usage(line);
	}
	if (!role || !unit)
		return cli_usage(line);
	if (!(req = read_text(c->argv[2]))) {
		fprintf(stderr, "kheo: enroll sign: cannot read %s\n",
			c->argv[2]);
		return EXIT_REFUSED;
	}
	if ((rc = cli_open(c, &db)) != EXIT_OK) {
		free(req);
		return rc;
	}
	if (kheo_enroll_sign(db, req, role, unit, days, &cert) < 0)
		rc = cli_fail(db, "enroll sign");
	else
		printf("%s\n", cert);
	kheo_free(cert);
	free(req);
	kheo_db_close(db);
	return rc;
}

static int enroll_accept(cli *c)
{
	static const char line[] = "enroll accept FILE|- --root FINGERPRINT";
	char *text;
	kheo_db *db;
	int rc;

	if (c->argc != 5 || strcmp(c->argv[3], "--root") != 0)
		return cli_usage(line);
	if (!(text = read_text(c->argv[2]))) {
		fprintf(stderr, "kheo: enroll accept: cannot read %s\n",
			c->argv[2]);
		return EXIT_REFUSED;
	}
	if ((rc = cli_open(c, &db)) != EXIT_OK) {
		free(text);
		return rc;
	}
	if (kheo_enroll_accept(db, text, c->argv[4]) < 0)
		rc = cli_fail(db, "enroll accept");
	else
		printf("enrolled: this node now trusts root %.16s… and "
		       "enforces its certificates\n", c->argv[4]);
	free(text);
	kheo_db_close(db);
	return rc;
}

int cmd_enroll(cli *c)
{
	if (c->argc >= 2 && strcmp(c->argv[1], "request") == 0)
		return enroll_request(c);
	if (c->argc >= 2 && strcmp(c->argv[1], "sign") == 0)
		return enroll_sign(c);
	if (c->argc >= 2 && strcmp(c->argv[1], "accept") == 0)
		return enroll_accept(c);
	return cli_usage("enroll request [--qr] | enroll sign FILE|- --role "
			 "ROLE --unit UNIT [--days N] | enroll accept FILE|- "
			 "--root FINGERPRINT");
}

int cmd_revoke(cli *c)
{
	static const char line[] = "revoke NODE_ID [--reason TEXT]";
	const char *reason = NULL;
	kheo_db *db;
	int rc;

	if (c->argc == 4 && strcmp(c->argv[2], "--reason") == 0)
		reason = c->argv[3];
	else if (c->argc != 2)
		return cli_usage(line);
	if ((rc = cli_open(c, &db)) != EXIT_OK)
		return rc;
	if (kheo_revoke(db, c->argv[1], reason) < 0)
		rc = cli_fail(db, "revoke");
	else
		printf("revoked %s: its later changesets are rejected "
		       "wherever this revocation reaches\n", c->argv[1]);
	kheo_db_close(db);
	return rc;
}
