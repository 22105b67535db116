/*
 * cli.h - what the kheo command's files share: the parsed command line,
 * output helpers, and one entry point per command family.
 *
 * The CLI speaks only kheo.h: no SQL, no proto internals.  Exit status as
 * DESIGN.md's command-line contract says: 0 success, 1 refused input (a
 * message on stderr names what was wrong), 2 usage error.
 */
#ifndef KHEO_CLI_H
#define KHEO_CLI_H

#include "kheo.h"

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2 };

typedef struct cli {
	const char *dir;   /* -C DIR, $KHEO_HOME, or ./kheo-data */
	const char *passphrase; /* --passphrase-file or $KHEO_PASSPHRASE */
	int json;          /* --json anywhere on the line */
	int argc;          /* the command and its arguments, --json removed */
	char **argv;
} cli;

/* Print "kheo: <what>: <message>" for a library error; returns 1. */
int cli_fail(kheo_db *db, const char *what);
/* Print a usage line for the command; returns 2. */
int cli_usage(const char *line);
/* Open options carrying c->passphrase. */
kheo_open_options cli_options(const cli *c);
/* Open the node in c->dir, or print why not. */
int cli_open(const cli *c, kheo_db **db);
/* Print library JSON, or hand it to `plain` to print for people. */
int cli_output(const cli *c, char *json, void (*plain)(const char *json));
/* Parse FIELD=VALUE, FIELD+=MEMBER, FIELD-=MEMBER (in place). */
int cli_assign(char *arg, kheo_assign *out);

int cmd_init(cli *c);
int cmd_id(cli *c);
int cmd_rekey(cli *c);
int cmd_put(cli *c);
int cmd_set(cli *c);
int cmd_del(cli *c);
int cmd_commit(cli *c);
int cmd_import(cli *c);
int cmd_get(cli *c);
int cmd_ls(cli *c);
int cmd_log(cli *c);
int cmd_status(cli *c);
int cmd_conflicts(cli *c);
int cmd_quarantine(cli *c);
int cmd_verify(cli *c);
int cmd_digest(cli *c);
int cmd_bundle(cli *c);
int cmd_enroll(cli *c);
int cmd_revoke(cli *c);
int cmd_sync(cli *c);
int cmd_audit(cli *c);
int cmd_report(cli *c);
int cmd_attach(cli *c);
int cmd_blob(cli *c);
int cmd_history(cli *c);
/* kheo_history_json for people: every write (kheo history, kheo audit
 * log), or the writes that hold, field by field (--blame, audit blame). */
void history_plain(const char *json);
void blame_plain(const char *json);

#endif
