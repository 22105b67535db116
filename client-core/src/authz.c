/*
 * authz.c - who may write what: certificates, scopes, roles, revocations
 * (DESIGN.md, Identity and authorisation; docs/identity.md for people).
 *
 * Facts come from applied `_sys` changesets, which every node receives:
 *   sys_cert        certificates; each is checked on its own bytes (its
 *                   issuer's signature), then against the chain: it holds
 *                   if its issuer is the root, or holds a certificate that
 *                   holds, may issue that role and covers that scope.
 *                   Derived into kheo_cert with a status.
 *   sys_revocation  per (key, unit) the last useq accepted; kheo_revoked.
 *   sys_unit        the units table; scopes follow successor links.
 *
 * A node is *enforcing* once it knows its root (a province made it; a
 * certificate chaining to it was accepted with --root).  Until then it is
 * in open mode and accepts every well-signed changeset.
 *
 * The decision for a changeset, from its bytes and these facts alone:
 *   apply   the author holds a certificate that covers the unit, has not
 *           expired at the changeset's clock, and whose role may set every
 *           field and value in it; and the useq is within any revocation.
 *   hold    the facts are missing: no certificate for the author yet, or
 *           its issuer's; or every covering certificate has expired (held
 *           until renewed).
 *   reject  the facts say no: out of scope, role forbids, revoked,
 *           certified only by another root, a certificate that does not
 *           hold.
 * Facts only grow, so a rejection for lack of authority is looked at
 * again when new facts arrive (a later certificate, a unit merger), and a
 * revocation takes back what it excludes: every order of arrival gives the
 * same state.  Rules that depend on a record's state (the approval lock)
 * are merge rules, in merge.c.
 */
#include "internal.h"
#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { CERT_UNRESOLVED = 0, CERT_VALID = 1, CERT_INVALID = 2,
	CERT_FOREIGN = 3 };

enum { VERDICT_APPLY = 0, VERDICT_HOLD = 1, VERDICT_REJECT = 2 };

static void short_hex(char out[17], const uint8_t *key)
{
	kheo_hex(out, key, 8);
}

static void date_of(char out[32], uint64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (gmtime_r(&t, &tm))
		strftime(out, 32, "%Y-%m-%d %H:%M UTC", &tm);
	else
		snprintf(out, 32, "%llu ms", (unsigned long long)ms);
}

/* --------------------------------------------------------------- state */

int kheo__authz_load(kheo_db *db)
{
	char hex[2 * KHEO_KEY_SIZE + 1] = "";
	int err;

	db->enforcing = 0;
	db->cert_role = KHEO_ROLE_NONE;
	err = kheo__meta_get_text(db, "root", hex, sizeof(hex));
	if (err == KHEO_ENOTFOUND) {
		kheo__clear(db);
		return KHEO_OK;
	}
	if (err < 0)
		return err;
	if (kheo_unhex(db->root, KHEO_KEY_SIZE, hex, strlen(hex)) < 0)
		return kheo__error(db, KHEO_ECORRUPT, "kheo_meta root damaged");
	db->enforcing = 1;
	return kheo__authz_own_role(db);
}

int kheo__authz_own_role(kheo_db *db)
{
	sqlite3_stmt *st;
	int rc;

	if (db->enforcing && memcmp(db->pk, db->root, KHEO_KEY_SIZE) == 0) {
		db->cert_role = KHEO_ROLE_PROVINCE;
		return KHEO_OK;
	}
	rc = sqlite3_prepare_v2(db->sql,
		"SELECT max(role) FROM kheo_cert WHERE subject = ?1 AND"
		" status = 1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "certificates");
	sqlite3_bind_blob(st, 1, db->pk, KHEO_KEY_SIZE, SQLITE_STATIC);
	db->cert_role = sqlite3_step(st) == SQLITE_ROW
				? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	return KHEO_OK;
}

/* ------------------------------------------------------ unit coverage */

/* The successor of exactly this unit in the units table, if any. */
static int successor_of(kheo_db *db, const char *unit, char *out, size_t n)
{
	sqlite3_stmt *st = kheo__stmt(db, ST_AUTHZ_SUCCESSOR);
	int found = 0;

	if (!st)
		return 0;
	sqlite3_bind_text(st, 1, unit, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
		found = 1;
	}
	sqlite3_reset(st);
	return found;
}

/*
 * Does `scope` cover `unit`?  Directly (unit under scope), or through the
 * units table: when a prefix of the unit has a successor (communes merged,
 * a province renamed), the unit read under its successor's path counts
 * too.  `depth` bounds the walk, so a cycle in the table cannot loop.
 */
static int covers(kheo_db *db, const char *scope, const char *unit,
	int depth)
{
	char prefix[KHEO_UNIT_MAX + 1], succ[KHEO_UNIT_MAX + 1];
	char mapped[2 * KHEO_UNIT_MAX + 2];
	size_t n;

	if (kheo_unit_within(unit, scope))
		return 1;
	if (depth >= 8)
		return 0;
	snprintf(prefix, sizeof(prefix), "%s", unit);
	for (n = strlen(prefix); n > 0;) {
		prefix[n] = '\0';
		if (successor_of(db, prefix, succ, sizeof(succ))) {
			snprintf(mapped, sizeof(mapped), "%s%s", succ,
				unit + n);
			if (strlen(mapped) <= KHEO_UNIT_MAX &&
			    covers(db, scope, mapped, depth + 1))
				return 1;
		}
		while (n > 0 && prefix[n - 1] != '/')
			n--;
		if (n > 0)
			n--; /* drop the '/' */
	}
	return 0;
}

/* ------------------------------------------------------- certificates */

typedef struct certrow {
	uint8_t digest[KHEO_ID_SIZE];
	uint8_t subject[KHEO_KEY_SIZE], issuer[KHEO_KEY_SIZE];
	int role;
	char scope[KHEO_UNIT_MAX + 1];
	uint64_t not_before, not_after;
	int issuer_revoked;     /* the issuer's key is revoked */
	int status, old_status;
	char why[200];
} certrow;

static int may_issue(int issuer_role, int role)
{
	if (issuer_role == KHEO_ROLE_PROVINCE)
		return 1;
	return issuer_role == KHEO_ROLE_HUB &&
	       (role == KHEO_ROLE_COLLECTOR || role == KHEO_ROLE_REVIEWER ||
		       role == KHEO_ROLE_AUDITOR);
}

/* Decide one unresolved certificate from its issuer's; 1 if decided. */
static int resolve_one(kheo_db *db, certrow *c, const certrow *all, size_t n)
{
	char ih[17], sh[17];
	const certrow *why_not = NULL;
	int any_issuer = 0, pending = 0;
	size_t i;

	short_hex(ih, c->issuer);
	short_hex(sh, c->subject);
	/* a revoked key issues nothing that holds: its certificates cannot
	 * be dated, so none of them can be told from one minted after */
	if (c->issuer_revoked) {
		c->status = CERT_INVALID;
		snprintf(c->why, sizeof(c->why), "certificate of %s… issued by "
			"%s…, whose key is revoked: re-enrol under another "
			"issuer", sh, ih);
		return 1;
	}
	for (i = 0; i < n; i++) {
		const certrow *x = &all[i];

		if (memcmp(x->subject, c->issuer, KHEO_KEY_SIZE) != 0 || x == c)
			continue;
		any_issuer = 1;
		if (x->status == CERT_UNRESOLVED) {
			pending = 1;
			continue;
		}
		if (x->status != CERT_VALID) {
			if (!why_not)
				why_not = x;
			continue;
		}
		if (x->not_after < c->not_before) {
			snprintf(c->why, sizeof(c->why), "certificate of %s… "
				"issued by %s… after the issuer's own "
				"certificate ended", sh, ih);
			continue;
		}
		if (may_issue(x->role, c->role) &&
		    covers(db, x->scope, c->scope, 0)) {
			c->status = CERT_VALID;
			c->why[0] = '\0';
			return 1;
		}
		if (!may_issue(x->role, c->role))
			snprintf(c->why, sizeof(c->why),
				"certificate of %s… as %s issued by a %s "
				"(%s…), which may not issue that role", sh,
				kheo_role_name(c->role), kheo_role_name(x->role),
				ih);
		else
			snprintf(c->why, sizeof(c->why),
				"certificate of %s… for %s issued by %s… "
				"whose scope %s does not cover it", sh,
				c->scope, ih, x->scope);
	}
	if (!any_issuer || pending)
		return 0;
	if (c->why[0]) {
		c->status = CERT_INVALID;
		return 1;
	}
	/* every certificate of the issuer fails: so does this one */
	c->status = why_not->status;
	snprintf(c->why, sizeof(c->why), "issued by %s…, whose own "
		"certificate does not hold: %.120s", ih, why_not->why);
	return 1;
}

static int authority(kheo_db *db, const uint8_t *author, const char *unit,
	uint64_t ms, int *role, char *why, size_t whylen, kheo_refusal *ref);

/*
 * The role each applied changeset of `author` carries is the best its
 * certificates give it now, so that two nodes that hold the same
 * certificates lock the same ops, whatever order the certificates came in.
 * Records it touches whose role changed are shown again.
 */
static int reassess_roles(kheo_db *db, const uint8_t *author)
{
	sqlite3_stmt *q;
	int err = KHEO_OK;

	if (sqlite3_prepare_v2(db->sql, "SELECT n, role, frame FROM kheo_cs"
		    " WHERE author = ?1 AND state = 0", -1, &q, NULL) !=
	    SQLITE_OK)
		return kheo__sqlerr(db, sqlite3_errcode(db->sql), "roles");
	sqlite3_bind_blob(q, 1, author, KHEO_KEY_SIZE, SQLITE_STATIC);
	while (err == KHEO_OK && sqlite3_step(q) == SQLITE_ROW) {
		kheo_changeset *cs = NULL;
		uint8_t id[KHEO_ID_SIZE];
		kheo_refusal ref = { 0 };
		char why[160], sql[96];
		int role = 0;
		size_t i;

		if (kheo_frame_open(db->codec, &cs, id, &db->raw,
			    sqlite3_column_blob(q, 2),
			    (size_t)sqlite3_column_bytes(q, 2), NULL) < 0)
			continue;
		if (authority(db, cs->author, cs->unit, cs->clock_max >> 16,
			    &role, why, sizeof(why), &ref) == VERDICT_APPLY &&
		    role != sqlite3_column_int(q, 1)) {
			snprintf(sql, sizeof(sql), "UPDATE kheo_cs SET role ="
				" %d WHERE n = %lld", role,
				(long long)sqlite3_column_int64(q, 0));
			err = kheo__exec(db, sql);
			for (i = 0; err == KHEO_OK && i < cs->nops; i++) {
				sqlite3_stmt *d = kheo__stmt(db, ST_DIRTY_ADD);

				if (!d) {
					err = KHEO_ERROR;
					break;
				}
				sqlite3_bind_blob(d, 1, cs->ops[i].record,
					KHEO_RECORD_SIZE, SQLITE_STATIC);
				err = kheo__step_done(db, d, "dirty");
			}
		}
		kheo_changeset_free(cs);
	}
	sqlite3_finalize(q);
	return err;
}

/*
 * Recompute every certificate's status from the root down: a fixpoint over
 * the (small) set, so the result does not depend on the order they came.
 */
static int refresh_certs(kheo_db *db)
{
	certrow *all = NULL;
	sqlite3_stmt *st;
	size_t n = 0, cap = 0, i;
	int rc, changed, err = KHEO_OK;
	char rh[17];

	if (!db->enforcing)
		return KHEO_OK;
	short_hex(rh, db->root);
	rc = sqlite3_prepare_v2(db->sql, "SELECT digest, subject, issuer,"
		" role, scope, status, not_before, not_after, EXISTS (SELECT 1"
		" FROM kheo_revoked r WHERE r.key = c.issuer) FROM kheo_cert c",
		-1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "certificates");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		certrow *c;

		if (n == cap) {
			certrow *more = kheo__realloc(all,
				(cap = cap ? 2 * cap : 16) * sizeof(*all));

			if (!more) {
				err = KHEO_ENOMEM;
				break;
			}
			all = more;
		}
		c = &all[n++];
		memset(c, 0, sizeof(*c));
		memcpy(c->digest, sqlite3_column_blob(st, 0), KHEO_ID_SIZE);
		memcpy(c->subject, sqlite3_column_blob(st, 1), KHEO_KEY_SIZE);
		memcpy(c->issuer, sqlite3_column_blob(st, 2), KHEO_KEY_SIZE);
		c->role = sqlite3_column_int(st, 3);
		snprintf(c->scope, sizeof(c->scope), "%s",
			(const char *)sqlite3_column_text(st, 4));
		c->old_status = sqlite3_column_int(st, 5);
		c->not_before = (uint64_t)sqlite3_column_int64(st, 6);
		c->not_after = (uint64_t)sqlite3_column_int64(st, 7);
		c->issuer_revoked = sqlite3_column_int(st, 8) &&
			memcmp(c->issuer, db->root, KHEO_KEY_SIZE) != 0;
	}
	sqlite3_finalize(st);
	if (err < 0) {
		kheo__free(all);
		return err;
	}
	for (i = 0; i < n; i++) {
		certrow *c = &all[i];
		char sh[17];

		short_hex(sh, c->subject);
		c->status = CERT_UNRESOLVED;
		if (memcmp(c->issuer, db->root, KHEO_KEY_SIZE) == 0) {
			c->status = CERT_VALID;
		} else if (memcmp(c->issuer, c->subject, KHEO_KEY_SIZE) == 0) {
			c->status = CERT_FOREIGN;
			snprintf(c->why, sizeof(c->why), "%s… is the root of "
				"another deployment (this node's root is %s…)",
				sh, rh);
		}
	}
	do {
		changed = 0;
		for (i = 0; i < n; i++)
			if (all[i].status == CERT_UNRESOLVED &&
			    resolve_one(db, &all[i], all, n))
				changed = 1;
	} while (changed);
	for (i = 0; i < n && err == KHEO_OK; i++) {
		rc = sqlite3_prepare_v2(db->sql, "UPDATE kheo_cert SET"
			" status = ?2, why = ?3 WHERE digest = ?1", -1, &st,
			NULL);
		if (rc != SQLITE_OK) {
			err = kheo__sqlerr(db, rc, "certificates");
			break;
		}
		sqlite3_bind_blob(st, 1, all[i].digest, KHEO_ID_SIZE,
			SQLITE_STATIC);
		sqlite3_bind_int(st, 2, all[i].status);
		if (all[i].why[0])
			sqlite3_bind_text(st, 3, all[i].why, -1, SQLITE_STATIC);
		err = kheo__step_done(db, st, "certificates");
		sqlite3_finalize(st);
	}
	/* a certificate that changed changes the role its subject's
	 * applied changesets carry (the approval lock reads it) */
	for (i = 0; i < n && err == KHEO_OK; i++) {
		size_t j;

		if (all[i].status == all[i].old_status)
			continue;
		for (j = 0; j < i; j++)
			if (all[j].status != all[j].old_status &&
			    memcmp(all[j].subject, all[i].subject,
				    KHEO_KEY_SIZE) == 0)
				break;
		if (j == i)
			err = reassess_roles(db, all[i].subject);
	}
	kheo__free(all);
	return err < 0 ? err : kheo__authz_own_role(db);
}

int kheo__authz_covers(kheo_db *db, const char *scope, const char *unit)
{
	return covers(db, scope, unit, 0);
}

int kheo__authz_refresh(kheo_db *db)
{
	return refresh_certs(db);
}

int kheo__authz_add_cert(kheo_db *db, const kheo_cert *c,
	const uint8_t *body, size_t len)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db->sql,
		"INSERT OR IGNORE INTO kheo_cert(digest, subject, issuer, role,"
		" scope, not_before, not_after, status, body) VALUES(?1, ?2,"
		" ?3, ?4, ?5, ?6, ?7, 0, ?8)", -1, &st, NULL);

	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "certificate");
	sqlite3_bind_blob(st, 1, c->digest, KHEO_ID_SIZE, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, c->subject, KHEO_KEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, c->issuer, KHEO_KEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, c->role);
	sqlite3_bind_text(st, 5, c->scope, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, (int64_t)c->not_before);
	sqlite3_bind_int64(st, 7, (int64_t)c->not_after);
	sqlite3_bind_blob(st, 8, body, (int)len, SQLITE_STATIC);
	rc = kheo__step_done(db, st, "certificate");
	sqlite3_finalize(st);
	return rc;
}

static int relearn(kheo_db *db);

int kheo__authz_set_root(kheo_db *db, const uint8_t root[KHEO_KEY_SIZE])
{
	char hex[2 * KHEO_KEY_SIZE + 1];
	int err, was = db->enforcing;

	kheo_hex(hex, root, KHEO_KEY_SIZE);
	if ((err = kheo__meta_set_text(db, "root", hex)) < 0)
		return err;
	memcpy(db->root, root, KHEO_KEY_SIZE);
	db->enforcing = 1;
	if ((err = refresh_certs(db)) < 0)
		return err;
	return was ? KHEO_OK : relearn(db);
}

/* -------------------------------------------------- reading sys ops */

/* A sys_cert put's text: exactly one certificate, named by its record id. */
static int cert_of_op(const kheo_op *op, kheo_cert *c, kheo_buf *bytes,
	kheo_refusal *why)
{
	size_t off[1], lens[1], n, i;
	const kheo_value *text = NULL;
	int err;

	for (i = 0; i < op->nfields; i++)
		if (strcmp(op->fields[i].name, "text") == 0)
			text = &op->fields[i].value;
	if (op->kind != KHEO_OP_PUT || !text || text->type != KHEO_VAL_TEXT)
		return kheo__refuse(why, KHEO_R_BAD_CERT, 0,
			"sys_cert: only puts of a certificate text; "
			"certificates are never changed or deleted");
	if ((err = kheo_text_decode(bytes, off, lens, 1, &n, "kheo-cert1:",
		     (const char *)text->p, text->len, why)) < 0 ||
	    (err = kheo_cert_decode(c, bytes->p + off[0], lens[0], why)) < 0) {
		char msg[sizeof(why->msg)];

		snprintf(msg, sizeof(msg), "%s", why->msg);
		return kheo__refuse(why, KHEO_R_BAD_CERT, 0,
			"sys_cert: %s", msg);
	}
	if (memcmp(c->digest, op->record, KHEO_RECORD_SIZE) != 0)
		return kheo__refuse(why, KHEO_R_BAD_CERT, 0,
			"sys_cert: record id is not its certificate's digest");
	return KHEO_OK;
}

static const kheo_value *op_field(const kheo_op *op, const char *name)
{
	size_t i;

	for (i = 0; i < op->nfields; i++)
		if (strcmp(op->fields[i].name, name) == 0)
			return &op->fields[i].value;
	return NULL;
}

/* ------------------------------------------------------- the decision */

/* The last useq of (author, unit) a revocation accepts; -1: none applies. */
static int64_t revoked_after(kheo_db *db, const uint8_t *author,
	const char *unit)
{
	sqlite3_stmt *st = kheo__stmt(db, ST_AUTHZ_REVOKED);
	int64_t last = -1;

	if (!st)
		return -1;
	sqlite3_bind_blob(st, 1, author, KHEO_KEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, unit, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		last = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return last;
}

/*
 * The author's authority over `unit` at clock `ms`: its best role among
 * the certificates that hold, cover the unit and have not expired; or why
 * not (hold or reject).
 */
static int authority(kheo_db *db, const uint8_t *author, const char *unit,
	uint64_t ms, int *role, char *why, size_t whylen, kheo_refusal *ref)
{
	sqlite3_stmt *st;
	char ah[17], scopes[200] = "", bad[200] = "", expired[32] = "";
	int rc, any = 0, unresolved = 0, valid = 0, foreign = 0, best = 0;
	size_t sl = 0;

	short_hex(ah, author);
	*role = KHEO_ROLE_NONE;
	if (memcmp(author, db->root, KHEO_KEY_SIZE) == 0) {
		*role = KHEO_ROLE_PROVINCE;
		return VERDICT_APPLY;
	}
	if (!(st = kheo__stmt(db, ST_AUTHZ_CERTS)))
		return KHEO_ERROR;
	sqlite3_bind_blob(st, 1, author, KHEO_KEY_SIZE, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int r = sqlite3_column_int(st, 0);
		const char *scope = (const char *)sqlite3_column_text(st, 1);
		uint64_t until = (uint64_t)sqlite3_column_int64(st, 2);
		int status = sqlite3_column_int(st, 3);

		any = 1;
		if (status == CERT_UNRESOLVED) {
			unresolved = 1;
			continue;
		}
		if (status != CERT_VALID) {
			foreign |= status == CERT_FOREIGN;
			if (!bad[0] && sqlite3_column_text(st, 4))
				snprintf(bad, sizeof(bad), "%s",
					(const char *)sqlite3_column_text(st,
						4));
			continue;
		}
		valid = 1;
		if (strcmp(unit, "_sys") != 0 && !covers(db, scope, unit, 0)) {
			if (sl < sizeof(scopes))
				sl += (size_t)snprintf(scopes + sl,
					sizeof(scopes) - sl, "%s%s",
					sl ? ", " : "", scope);
			continue;
		}
		if (until < ms) {
			date_of(expired, until);
			continue;
		}
		if (r > best)
			best = r;
	}
	sqlite3_reset(st);
	if (best) {
		*role = best;
		return VERDICT_APPLY;
	}
	if (expired[0]) {
		snprintf(why, whylen, "certificate of %s… expired on %s: held "
			"until it is renewed", ah, expired);
		return VERDICT_HOLD;
	}
	if (valid) {
		kheo__refuse(ref, KHEO_R_OUT_OF_SCOPE, 0, "unit %s is outside "
			"the scope of %s… (%s)", unit, ah, scopes);
		return VERDICT_REJECT;
	}
	if (!any) {
		snprintf(why, whylen, "no certificate for %s… yet", ah);
		return VERDICT_HOLD;
	}
	if (unresolved) {
		snprintf(why, whylen, "waiting for the certificate of the "
			"issuer of %s…'s certificate", ah);
		return VERDICT_HOLD;
	}
	kheo__refuse(ref, foreign ? KHEO_R_NOT_ENROLLED : KHEO_R_BAD_CERT, 0,
		"%s…: %s", ah, bad);
	return VERDICT_REJECT;
}

/* May `role` put or set this field to this value?  A message if not. */
static int field_allowed(kheo_db *db, int role, const kheo_op *op,
	const char *field, const kheo_value *v, kheo_refusal *ref)
{
	const char *table = op->table;
	const kheo_stable *t = kheo_schema_table(db->schema, table);
	const kheo_sfield *f = t ? kheo_schema_field(t, field) : NULL;
	size_t i;

	if (role != KHEO_ROLE_COLLECTOR || !f)
		return 1; /* reviewers and up; or a newer schema's field */
	/* a new record may leave it empty; clearing it is a change */
	if (v->type == KHEO_VAL_NULL && op->kind == KHEO_OP_PUT)
		return 1;
	if (f->reviewer_only) {
		kheo__refuse(ref, KHEO_R_ROLE_FORBIDS, 0, "%s.%s may be set "
			"only by a reviewer (the author is a collector)",
			table, field);
		return 0;
	}
	if (f->value_reviewer_only && v->type == KHEO_VAL_TEXT)
		for (i = 0; i < f->nvalues; i++)
			if (f->value_reviewer_only[i] &&
			    strlen(f->values[i]) == v->len &&
			    memcmp(f->values[i], v->p, v->len) == 0) {
				kheo__refuse(ref, KHEO_R_ROLE_FORBIDS, 0,
					"%s.%s = %s may be set only by a "
					"reviewer (the author is a collector)",
					table, field, f->values[i]);
				return 0;
			}
	return 1;
}

int kheo__authz_op_allowed(kheo_db *db, int role, const kheo_op *op,
	kheo_refusal *ref)
{
	size_t i;

	if (role == KHEO_ROLE_AUDITOR) {
		kheo__refuse(ref, KHEO_R_ROLE_FORBIDS, 0,
			"an auditor writes nothing (%s)", op->table);
		return 0;
	}
	for (i = 0; i < op->nfields; i++)
		if (op->kind != KHEO_OP_REMOVE &&
		    !field_allowed(db, role, op, op->fields[i].name,
			    &op->fields[i].value, ref))
			return 0;
	return 1;
}

/* A revocation's limits text: "UNIT=USEQ ..."; callback per pair. */
static int parse_limits(const kheo_value *v,
	int (*each)(void *, const char *, int64_t), void *arg)
{
	char buf[8193], *save = NULL, *tok;
	int err;

	if (!v || v->type != KHEO_VAL_TEXT)
		return KHEO_OK;
	if (v->len >= sizeof(buf))
		return KHEO_EINVAL;
	memcpy(buf, v->p, v->len);
	buf[v->len] = '\0';
	for (tok = strtok_r(buf, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save)) {
		char *eq = strrchr(tok, '='), *end;
		long long useq;

		if (!eq)
			return KHEO_EINVAL;
		*eq = '\0';
		useq = strtoll(eq + 1, &end, 10);
		if (*end || useq < 0 || !kheo_unit_valid(tok, strlen(tok)))
			return KHEO_EINVAL;
		if ((err = each(arg, tok, useq)) < 0)
			return err;
	}
	return KHEO_OK;
}

static int limit_ok(void *arg, const char *unit, int64_t useq)
{
	(void)arg;
	(void)unit;
	(void)useq;
	return KHEO_OK;
}

/* Every unit named in a hub's revocation must be in its scope; and the
 * revoked key's certificates too. */
typedef struct hubcheck {
	kheo_db *db;
	const char *scope;
	int ok;
} hubcheck;

static int limit_in_scope(void *arg, const char *unit, int64_t useq)
{
	hubcheck *h = arg;

	(void)useq;
	if (strcmp(unit, "_sys") != 0 && !covers(h->db, h->scope, unit, 0))
		h->ok = 0;
	return KHEO_OK;
}

/* The `_sys` ops: which table, and who may write it. */
static int decide_sys(kheo_db *db, const kheo_changeset *cs, int role,
	int verdict, const char *authwhy, char *why, size_t whylen,
	kheo_refusal *ref)
{
	kheo_buf bytes = { 0 };
	size_t i;
	int needs = 0; /* 0: anyone; else the role needed */

	for (i = 0; i < cs->nops; i++) {
		const kheo_op *op = &cs->ops[i];
		kheo_cert c;

		if (strcmp(op->table, "sys_cert") == 0) {
			/* self-authenticating: a fact anyone may relay */
			int err = cert_of_op(op, &c, &bytes, ref);

			if (err < 0) {
				kheo_buf_free(&bytes);
				return VERDICT_REJECT;
			}
			continue;
		}
		if (strcmp(op->table, "sys_revocation") == 0) {
			if (op->kind == KHEO_OP_PUT &&
			    parse_limits(op_field(op, "limits"), limit_ok,
				    NULL) < 0) {
				kheo_buf_free(&bytes);
				kheo__refuse(ref, KHEO_R_BAD_CERT, 0,
					"sys_revocation: limits are not "
					"UNIT=USEQ pairs");
				return VERDICT_REJECT;
			}
			if (needs < KHEO_ROLE_HUB)
				needs = KHEO_ROLE_HUB;
			continue;
		}
		needs = KHEO_ROLE_PROVINCE; /* units, receipts, the rest */
	}
	kheo_buf_free(&bytes);
	if (!needs)
		return VERDICT_APPLY;
	if (verdict != VERDICT_APPLY) {
		snprintf(why, whylen, "%s", authwhy);
		return verdict;
	}
	if (role < needs || role == KHEO_ROLE_AUDITOR) {
		kheo__refuse(ref, KHEO_R_ROLE_FORBIDS, 0, "%s may be written "
			"only by a %s (the author is a %s)",
			needs == KHEO_ROLE_HUB ? "sys_revocation"
					       : "this system table",
			needs == KHEO_ROLE_HUB ? "hub or the province"
					       : "province",
			kheo_role_name(role));
		return VERDICT_REJECT;
	}
	if (role == KHEO_ROLE_HUB) {
		/* a hub revokes only inside its own scope */
		for (i = 0; i < cs->nops; i++) {
			const kheo_op *op = &cs->ops[i];
			sqlite3_stmt *st;
			hubcheck h = { db, NULL, 1 };
			const kheo_value *key;

			if (strcmp(op->table, "sys_revocation") != 0 ||
			    op->kind != KHEO_OP_PUT)
				continue;
			if (sqlite3_prepare_v2(db->sql, "SELECT scope FROM"
				    " kheo_cert WHERE subject = ?1 AND status"
				    " = 1 AND role = 4", -1, &st, NULL) !=
			    SQLITE_OK)
				return KHEO_ERROR;
			sqlite3_bind_blob(st, 1, cs->author, KHEO_KEY_SIZE,
				SQLITE_STATIC);
			h.ok = 0;
			while (sqlite3_step(st) == SQLITE_ROW) {
				hubcheck one = { db, (const char *)
					sqlite3_column_text(st, 0), 1 };
				sqlite3_stmt *k;

				parse_limits(op_field(op, "limits"),
					limit_in_scope, &one);
				key = op_field(op, "key");
				if (one.ok && key && key->type ==
						KHEO_VAL_HASH &&
				    sqlite3_prepare_v2(db->sql, "SELECT scope"
					    " FROM kheo_cert WHERE subject ="
					    " ?1 AND status = 1", -1, &k,
					    NULL) == SQLITE_OK) {
					sqlite3_bind_blob(k, 1, key->p,
						KHEO_KEY_SIZE, SQLITE_STATIC);
					while (sqlite3_step(k) == SQLITE_ROW)
						if (!covers(db, one.scope,
							    (const char *)
							    sqlite3_column_text(
								    k, 0), 0))
							one.ok = 0;
					sqlite3_finalize(k);
				}
				if (one.ok)
					h.ok = 1;
			}
			sqlite3_finalize(st);
			if (!h.ok) {
				kheo__refuse(ref, KHEO_R_OUT_OF_SCOPE, 0,
					"a hub may revoke only keys and units "
					"inside its own scope");
				return VERDICT_REJECT;
			}
		}
	}
	return VERDICT_APPLY;
}

int kheo__authz_revoked(kheo_db *db, const kheo_changeset *cs,
	kheo_refusal *ref)
{
	int64_t last;
	char ah[17];

	if (!db->enforcing)
		return 0;
	last = revoked_after(db, cs->author, cs->unit);
	if (last < 0 || cs->useq <= (uint64_t)last)
		return 0;
	short_hex(ah, cs->author);
	kheo__refuse(ref, KHEO_R_REVOKED, 0, "%s… is revoked: %s accepts up "
		"to useq %lld, this is useq %llu", ah, cs->unit,
		(long long)last, (unsigned long long)cs->useq);
	return 1;
}

int kheo__authorize(kheo_db *db, const kheo_changeset *cs, int *role,
	char *why, size_t whylen, kheo_refusal *ref)
{
	int verdict;
	size_t i;

	*role = KHEO_ROLE_NONE;
	if (!db->enforcing)
		return VERDICT_APPLY;
	if (kheo__authz_revoked(db, cs, ref))
		return VERDICT_REJECT;
	verdict = authority(db, cs->author, cs->unit, cs->clock_max >> 16,
		role, why, whylen, ref);
	if (verdict < 0)
		return verdict;
	if (strcmp(cs->unit, "_sys") == 0) {
		char authwhy[160];

		snprintf(authwhy, sizeof(authwhy), "%s", why);
		if (verdict == VERDICT_REJECT) {
			/* a certificate fact stays welcome from anyone */
			kheo_refusal keep = *ref;
			int v = decide_sys(db, cs, KHEO_ROLE_NONE,
				VERDICT_REJECT, "", why, whylen, ref);

			if (v == VERDICT_APPLY)
				return VERDICT_APPLY;
			*ref = keep;
			return VERDICT_REJECT;
		}
		return decide_sys(db, cs, *role, verdict, authwhy, why,
			whylen, ref);
	}
	if (verdict != VERDICT_APPLY)
		return verdict;
	for (i = 0; i < cs->nops; i++) {
		const char *t = cs->ops[i].table;

		/* outside `_sys`, the one system table is the province's
		 * blob acknowledgement (blob_ack.c): a node trusts it to
		 * prune, so nobody else may write it */
		if (strncmp(t, "sys_", 4) == 0 &&
		    (strcmp(t, "sys_blob_ack") != 0 ||
			    *role != KHEO_ROLE_PROVINCE)) {
			kheo__refuse(ref, KHEO_R_ROLE_FORBIDS, 0, "%s",
				strcmp(t, "sys_blob_ack") == 0
					? "sys_blob_ack may be written only by "
					  "the province"
					: "a system table outside _sys");
			return VERDICT_REJECT;
		}
		if (!kheo__authz_op_allowed(db, *role, &cs->ops[i], ref))
			return VERDICT_REJECT;
	}
	return VERDICT_APPLY;
}

/* ------------------------------------------------ learning new facts */

typedef struct revoking {
	kheo_db *db;
	const uint8_t *key;
	int err;
} revoking;

static int store_limit(void *arg, const char *unit, int64_t useq)
{
	revoking *r = arg;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(r->db->sql,
		"INSERT INTO kheo_revoked(key, unit, last_useq) VALUES(?1, ?2,"
		" ?3) ON CONFLICT(key, unit) DO UPDATE SET last_useq ="
		" min(last_useq, excluded.last_useq)", -1, &st, NULL);

	if (rc != SQLITE_OK)
		return kheo__sqlerr(r->db, rc, "revocation");
	sqlite3_bind_blob(st, 1, r->key, KHEO_KEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, unit, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, useq);
	rc = kheo__step_done(r->db, st, "revocation");
	sqlite3_finalize(st);
	return rc;
}

/* Move out every changeset of `key` a revocation now excludes: applied
 * ones are taken out of the merge, all go to quarantine. */
static int take_back(kheo_db *db, const uint8_t *key, kheo_apply_stats *st)
{
	sqlite3_stmt *q;
	int rc, err = KHEO_OK;

	for (;;) {
		int64_t n;
		int state;
		kheo_buf frame = { 0 };
		kheo_changeset *cs = NULL;
		kheo_refusal why = { 0 };
		uint8_t id[KHEO_ID_SIZE];

		rc = sqlite3_prepare_v2(db->sql,
			"SELECT c.n, c.state, c.frame FROM kheo_cs c WHERE"
			" c.author = ?1 AND c.useq > coalesce((SELECT"
			" min(last_useq) FROM kheo_revoked r WHERE r.key ="
			" c.author AND r.unit = c.unit), (SELECT last_useq"
			" FROM kheo_revoked r WHERE r.key = c.author AND"
			" r.unit = '*'), c.useq) ORDER BY c.useq DESC LIMIT 1",
			-1, &q, NULL);
		if (rc != SQLITE_OK)
			return kheo__sqlerr(db, rc, "revocation");
		sqlite3_bind_blob(q, 1, key, KHEO_KEY_SIZE, SQLITE_STATIC);
		if (sqlite3_step(q) != SQLITE_ROW) {
			sqlite3_finalize(q);
			return KHEO_OK;
		}
		n = sqlite3_column_int64(q, 0);
		state = sqlite3_column_int(q, 1);
		kheo_buf_put(&frame, sqlite3_column_blob(q, 2),
			(size_t)sqlite3_column_bytes(q, 2));
		sqlite3_finalize(q);
		if (frame.oom)
			return KHEO_ENOMEM;
		err = kheo_frame_open(db->codec, &cs, id, &db->raw, frame.p,
			frame.len, &why);
		if (err == KHEO_OK && state == KHEO_CS_APPLIED)
			err = kheo__unmerge_changeset(db, cs, n);
		if (err == KHEO_OK) {
			char sql[64];

			snprintf(sql, sizeof(sql),
				"DELETE FROM kheo_cs WHERE n = %lld",
				(long long)n);
			err = kheo__exec(db, sql);
		}
		if (err == KHEO_OK) {
			int64_t last = revoked_after(db, key, cs->unit);
			char ah[17];

			short_hex(ah, key);
			kheo__refuse(&why, KHEO_R_REVOKED, 0, "%s… is revoked: "
				"%s accepts up to useq %lld, this is useq "
				"%llu (taken back after it was applied)", ah,
				cs->unit, (long long)last,
				(unsigned long long)cs->useq);
			err = kheo__quarantine(db, frame.p, frame.len, &why,
				st);
		}
		kheo_changeset_free(cs);
		kheo_buf_free(&frame);
		if (err < 0)
			return err;
	}
}

/* Held or quarantined for lack of authority: try again with new facts. */
static int recheck(kheo_db *db, kheo_apply_stats *st, int *progress)
{
	static const char *const sql[] = {
		"SELECT n, frame FROM kheo_cs WHERE state = 1 AND why LIKE"
		" '%certificate%' ORDER BY author, unit, useq",
		"SELECT n, frame FROM kheo_quarantine WHERE reason IN"
		" ('out-of-scope', 'role-forbids', 'bad-cert', 'not-enrolled')"
		" ORDER BY n",
	};
	static const char *const del[] = {
		"DELETE FROM kheo_cs WHERE n = ?1",
		"DELETE FROM kheo_quarantine WHERE n = ?1",
	};
	int k, rc, err = KHEO_OK;

	*progress = 0;
	for (k = 0; k < 2 && err == KHEO_OK; k++) {
		sqlite3_stmt *q;
		int64_t *ns = NULL;
		size_t count = 0, cap = 0, i;

		rc = sqlite3_prepare_v2(db->sql, sql[k], -1, &q, NULL);
		if (rc != SQLITE_OK)
			return kheo__sqlerr(db, rc, "recheck");
		while (sqlite3_step(q) == SQLITE_ROW) {
			kheo_changeset *cs = NULL;
			uint8_t id[KHEO_ID_SIZE];
			kheo_refusal ref = { 0 };
			char why[160];
			int role, v;

			if (kheo_frame_open(db->codec, &cs, id, &db->raw,
				    sqlite3_column_blob(q, 1),
				    (size_t)sqlite3_column_bytes(q, 1),
				    NULL) < 0)
				continue;
			v = kheo__authorize(db, cs, &role, why, sizeof(why),
				&ref);
			kheo_changeset_free(cs);
			/* held: only if now decided; quarantined: only if
			 * no longer rejected */
			if ((k == 0 && v == VERDICT_HOLD) ||
			    (k == 1 && v == VERDICT_REJECT) || v < 0)
				continue;
			if (count == cap) {
				int64_t *more = kheo__realloc(ns,
					(cap = cap ? 2 * cap : 16) *
						sizeof(*ns));

				if (!more) {
					err = KHEO_ENOMEM;
					break;
				}
				ns = more;
			}
			ns[count++] = sqlite3_column_int64(q, 0);
		}
		sqlite3_finalize(q);
		for (i = 0; i < count && err == KHEO_OK; i++) {
			kheo_buf frame = { 0 };
			sqlite3_stmt *d;
			char pick[64];

			snprintf(pick, sizeof(pick), "SELECT frame FROM %s"
				" WHERE n = ?1", k ? "kheo_quarantine"
						   : "kheo_cs");
			if (sqlite3_prepare_v2(db->sql, pick, -1, &d, NULL) !=
			    SQLITE_OK)
				break;
			sqlite3_bind_int64(d, 1, ns[i]);
			if (sqlite3_step(d) == SQLITE_ROW)
				kheo_buf_put(&frame, sqlite3_column_blob(d, 0),
					(size_t)sqlite3_column_bytes(d, 0));
			sqlite3_finalize(d);
			if (sqlite3_prepare_v2(db->sql, del[k], -1, &d, NULL) !=
			    SQLITE_OK)
				break;
			sqlite3_bind_int64(d, 1, ns[i]);
			err = kheo__step_done(db, d, "recheck");
			sqlite3_finalize(d);
			if (err == KHEO_OK && frame.len) {
				kheo_apply_stats tmp = { 0 };

				err = kheo__receive(db, frame.p, frame.len,
					&tmp);
				if (st) {
					st->released += tmp.applied +
							tmp.released;
					st->ops += tmp.ops;
					if (k == 1 && ns[i] > db->quarantine_mark &&
					    !tmp.rejected && st->rejected)
						st->rejected--;
				}
				*progress = 1;
			}
			kheo_buf_free(&frame);
		}
		kheo__free(ns);
	}
	return err;
}

/* Collect the units a revocation names, as "\nUNIT\n" entries. */
static int note_unit(void *arg, const char *unit, int64_t useq)
{
	kheo_buf *b = arg;

	(void)useq;
	kheo_buf_put(b, unit, strlen(unit));
	kheo_buf_put_u8(b, '\n');
	return b->oom ? KHEO_ENOMEM : KHEO_OK;
}

/*
 * One revocation: per unit it names, the last useq it accepts; every other
 * unit (including those an earlier revocation of the key named) accepts
 * none.  Limits only ever fall, so the order revocations arrive in does
 * not matter.  Then take back what they now exclude.
 */
static int learn_revocation(kheo_db *db, const kheo_op *op,
	kheo_apply_stats *st)
{
	const kheo_value *key = op_field(op, "key");
	revoking r = { db, NULL, 0 };
	kheo_buf named = { 0 };
	sqlite3_stmt *q;
	int err;

	if (!key || key->type != KHEO_VAL_HASH)
		return KHEO_OK;
	r.key = key->p;
	kheo_buf_put_u8(&named, '\n');
	if ((err = parse_limits(op_field(op, "limits"), note_unit,
		     &named)) < 0 ||
	    (err = parse_limits(op_field(op, "limits"), store_limit, &r)) < 0 ||
	    (err = store_limit(&r, "*", 0)) < 0)
		goto done;
	kheo_buf_put_u8(&named, '\0');
	if (named.oom) {
		err = KHEO_ENOMEM;
		goto done;
	}
	if (sqlite3_prepare_v2(db->sql, "SELECT unit FROM kheo_revoked WHERE"
		    " key = ?1 AND unit != '*'", -1, &q, NULL) != SQLITE_OK) {
		err = kheo__sqlerr(db, sqlite3_errcode(db->sql), "revocation");
		goto done;
	}
	sqlite3_bind_blob(q, 1, key->p, KHEO_KEY_SIZE, SQLITE_STATIC);
	while (err == KHEO_OK && sqlite3_step(q) == SQLITE_ROW) {
		char entry[KHEO_UNIT_MAX + 3];

		snprintf(entry, sizeof(entry), "\n%s\n",
			(const char *)sqlite3_column_text(q, 0));
		if (!strstr((const char *)named.p, entry))
			err = store_limit(&r, (const char *)
				sqlite3_column_text(q, 0), 0);
	}
	sqlite3_finalize(q);
	if (err == KHEO_OK)
		err = take_back(db, key->p, st);
done:
	kheo_buf_free(&named);
	return err;
}

/*
 * A node that enrols has applied changesets in open mode, with no roles
 * and no revocations.  Learn them now as if they had come in enforcing:
 * the revocations whose authors may revoke, and every applied changeset's
 * role (the approval lock depends on it); then show the state again.
 */
static int relearn(kheo_db *db)
{
	sqlite3_stmt *q;
	int err = KHEO_OK;

	if (sqlite3_prepare_v2(db->sql, "SELECT n, unit, frame FROM kheo_cs"
		    " WHERE state = 0 ORDER BY n", -1, &q, NULL) != SQLITE_OK)
		return kheo__sqlerr(db, sqlite3_errcode(db->sql), "relearn");
	while (err == KHEO_OK && sqlite3_step(q) == SQLITE_ROW) {
		kheo_changeset *cs = NULL;
		uint8_t id[KHEO_ID_SIZE];
		kheo_refusal ref = { 0 };
		char why[160], sql[96];
		int role = 0, v;
		size_t i;

		if (kheo_frame_open(db->codec, &cs, id, &db->raw,
			    sqlite3_column_blob(q, 2),
			    (size_t)sqlite3_column_bytes(q, 2), NULL) < 0)
			continue;
		v = kheo__authorize(db, cs, &role, why, sizeof(why), &ref);
		snprintf(sql, sizeof(sql), "UPDATE kheo_cs SET role = %d WHERE"
			" n = %lld", v == VERDICT_APPLY ? role : 0,
			(long long)sqlite3_column_int64(q, 0));
		err = kheo__exec(db, sql);
		for (i = 0; v == VERDICT_APPLY && err == KHEO_OK &&
		     strcmp(cs->unit, "_sys") == 0 && i < cs->nops; i++)
			if (strcmp(cs->ops[i].table, "sys_revocation") == 0 &&
			    cs->ops[i].kind == KHEO_OP_PUT)
				err = learn_revocation(db, &cs->ops[i], NULL);
		kheo_changeset_free(cs);
	}
	sqlite3_finalize(q);
	if (err == KHEO_OK)
		err = kheo__exec(db, "INSERT OR IGNORE INTO temp.kheo_dirty(rid)"
				     " SELECT rid FROM kheo_record");
	if (err == KHEO_OK)
		err = kheo__flush_dirty(db);
	return err < 0 ? err : refresh_certs(db);
}

int kheo__authz_learn(kheo_db *db, const kheo_changeset *cs,
	kheo_apply_stats *st)
{
	kheo_buf bytes = { 0 };
	size_t i;
	int err = KHEO_OK, certs = 0, progress;

	if (strcmp(cs->unit, "_sys") != 0)
		return KHEO_OK;
	for (i = 0; i < cs->nops && err == KHEO_OK; i++) {
		const kheo_op *op = &cs->ops[i];

		if (strcmp(op->table, "sys_cert") == 0) {
			kheo_cert c;
			kheo_refusal why = { 0 };

			if (cert_of_op(op, &c, &bytes, &why) < 0)
				continue; /* open mode took it as it was */
			err = kheo__authz_add_cert(db, &c, bytes.p, bytes.len);
			certs = 1;
		} else if (strcmp(op->table, "sys_revocation") == 0 &&
			   op->kind == KHEO_OP_PUT && db->enforcing) {
			/* in open mode nothing says who may revoke: the facts
			 * are learnt when the node enrols (relearn) */
			err = learn_revocation(db, op, st);
			certs = 1; /* an issuer may be revoked */
		}
	}
	kheo_buf_free(&bytes);
	if (err < 0)
		return err;
	/* units may have changed too: the materialised tables answer
	 * scope questions, so bring them up to date first */
	if ((err = kheo__flush_dirty(db)) < 0)
		return err;
	if (certs && (err = refresh_certs(db)) < 0)
		return err;
	if (!db->enforcing || db->authz_busy)
		return KHEO_OK;
	db->authz_busy = 1;
	do
		err = recheck(db, st, &progress);
	while (err == KHEO_OK && progress);
	db->authz_busy = 0;
	return err;
}
