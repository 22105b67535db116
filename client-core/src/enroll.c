/*
 * enroll.c - a node's identity in use: the province's root, offline
 * enrolment (request, sign, accept), revocation, and what `kheo id` says
 * about trust.  The rules themselves (who may issue what, what a
 * certificate covers) are authz.c's; this file makes and installs the
 * objects, and publishes them in `_sys` so that every node learns them.
 */
#include "internal.h"
#include "alloc.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS (24LL * 3600 * 1000)
#define ROOT_YEARS 100
#define CHAIN_MAX 8
/* Devices warn this long before their certificate ends. */
#define EXPIRY_WARN_MS (14 * DAY_MS)

/* Seal what the identity call just wrote, so it takes effect (a
 * certificate, a revocation) and travels with the next sync. */
static int seal_now(kheo_db *db)
{
	size_t sealed;

	return kheo_commit(db, &sealed);
}

/*
 * Put a certificate into `_sys` as a sys_cert record named by its digest
 * (the same certificate published by two nodes is one record).
 */
static int publish_cert(kheo_db *db, const uint8_t *body, size_t len)
{
	kheo_cert c;
	kheo_buf text = { 0 };
	kheo_assign a = { "text", KHEO_ASSIGN_SET, NULL };
	char rid[2 * KHEO_RECORD_SIZE + 1], out[KHEO_RECORD_HEX + 1];
	const uint8_t *items[1] = { body };
	size_t lens[1] = { len };
	sqlite3_stmt *st;
	int err, have;

	if ((err = kheo_cert_decode(&c, body, len, NULL)) < 0)
		return kheo__error(db, err, "certificate damaged");
	kheo_hex(rid, c.digest, KHEO_RECORD_SIZE);
	if (!(st = kheo__stmt(db, ST_RECORD_GET)))
		return KHEO_ERROR;
	sqlite3_bind_blob(st, 1, c.digest, KHEO_RECORD_SIZE, SQLITE_STATIC);
	have = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_reset(st);
	if (have)
		return KHEO_OK;
	if ((err = kheo_text_encode(&text, "kheo-cert1:", items, lens, 1)) < 0)
		return kheo__error(db, err, "out of memory");
	a.value = (const char *)text.p;
	err = kheo_put(db, out, "sys_cert", rid, &a, 1);
	kheo_buf_free(&text);
	return err;
}

int kheo__make_root(kheo_db *db)
{
	kheo_cert c;
	kheo_buf body = { 0 };
	uint64_t now = (uint64_t)kheo__now_ms(db);
	int err;

	memset(&c, 0, sizeof(c));
	memcpy(c.subject, db->pk, KHEO_KEY_SIZE);
	memcpy(c.issuer, db->pk, KHEO_KEY_SIZE);
	c.role = KHEO_ROLE_PROVINCE;
	snprintf(c.scope, sizeof(c.scope), "%s", db->unit);
	c.not_before = now;
	c.not_after = now + (uint64_t)ROOT_YEARS * 366 * DAY_MS;
	if ((err = kheo_cert_encode(&body, &c, db->sk)) < 0)
		return kheo__error(db, err, "root certificate");
	if ((err = kheo__begin(db)) < 0)
		goto done;
	if ((err = kheo__authz_add_cert(db, &c, body.p, body.len)) < 0 ||
	    (err = kheo__authz_set_root(db, db->pk)) < 0 ||
	    (err = publish_cert(db, body.p, body.len)) < 0 ||
	    (err = kheo__commit_tx(db)) < 0) {
		kheo__rollback(db);
		goto done;
	}
	err = seal_now(db);
done:
	kheo_buf_free(&body);
	return err;
}

/* ------------------------------------------------------------ request */

/* This node's chain heads (what it sealed), for an enrolment request. */
static int own_heads(kheo_db *db, kheo_cert_head *h, size_t *n)
{
	sqlite3_stmt *st;
	int rc;

	*n = 0;
	rc = sqlite3_prepare_v2(db->sql, "SELECT unit, useq, id FROM kheo_cs"
		" c WHERE author = ?1 AND local = 1 AND useq = (SELECT"
		" max(useq) FROM kheo_cs d WHERE d.author = c.author AND"
		" d.unit = c.unit AND d.local = 1) ORDER BY unit", -1, &st,
		NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "heads");
	sqlite3_bind_blob(st, 1, db->pk, KHEO_KEY_SIZE, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *unit = (const char *)sqlite3_column_text(st, 0);

		if (*n > 0 && strcmp(h[*n - 1].unit, unit) == 0)
			continue; /* two branches of one useq: name one */
		if (*n == KHEO_CERT_HEADS_MAX) {
			sqlite3_finalize(st);
			return kheo__error(db, KHEO_ELIMIT, "this node wrote in "
				"more than %u units: too many chains for one "
				"enrolment request", KHEO_CERT_HEADS_MAX);
		}
		snprintf(h[*n].unit, sizeof(h[*n].unit), "%s", unit);
		h[*n].useq = (uint64_t)sqlite3_column_int64(st, 1);
		memcpy(h[*n].id, sqlite3_column_blob(st, 2), KHEO_ID_SIZE);
		(*n)++;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? KHEO_OK : kheo__sqlerr(db, rc, "heads");
}

KHEO_EXTERN int kheo_enroll_request(kheo_db *db, char **out)
{
	kheo_enroll_req q;
	kheo_buf bytes = { 0 }, text = { 0 };
	const uint8_t *items[1];
	size_t lens[1];
	int err;

	kheo__clear(db);
	*out = NULL;
	if (!db->sk)
		return kheo__error(db, KHEO_EAUTH, "%s", db->sign_refusal);
	/* work sealed now is covered by position in its chain */
	if ((err = seal_now(db)) < 0)
		return err;
	memset(&q, 0, sizeof(q));
	memcpy(q.key, db->pk, KHEO_KEY_SIZE);
	q.node_role = db->role;
	snprintf(q.unit, sizeof(q.unit), "%s", db->unit);
	q.created_ms = (uint64_t)kheo__now_ms(db);
	if ((err = own_heads(db, q.heads, &q.nheads)) < 0)
		return err;
	if ((err = kheo_enroll_req_encode(&bytes, &q, db->sk)) < 0)
		goto done;
	items[0] = bytes.p;
	lens[0] = bytes.len;
	if ((err = kheo_text_encode(&text, "kheo-req1:", items, lens, 1)) < 0)
		goto done;
	*out = (char *)text.p; /* NUL-terminated; the caller's */
	text.p = NULL;
done:
	kheo_buf_free(&bytes);
	if (err < 0)
		return kheo__error(db, err, "cannot make the request");
	return KHEO_OK;
}

/* --------------------------------------------------------------- sign */

/*
 * This node's certificate chain up to the root, as bodies in `bytes`
 * (offsets and lengths in off/lens): first the certificate of its own
 * that lets it issue `role` for `unit` (0: any), then its issuer's, and
 * so on.  The root's self-signed certificate ends it when known.
 */
int kheo__own_chain(kheo_db *db, int role, const char *unit, kheo_buf *bytes,
	size_t *off, size_t *lens, size_t *n)
{
	uint8_t subject[KHEO_KEY_SIZE];
	int step;

	*n = 0;
	memcpy(subject, db->pk, KHEO_KEY_SIZE);
	for (step = 0; step < CHAIN_MAX; step++) {
		sqlite3_stmt *st;
		int rc, found = 0;

		rc = sqlite3_prepare_v2(db->sql, "SELECT body, issuer, role,"
			" scope FROM kheo_cert WHERE subject = ?1 AND status ="
			" 1 ORDER BY role DESC, not_after DESC", -1, &st, NULL);
		if (rc != SQLITE_OK)
			return kheo__sqlerr(db, rc, "chain");
		sqlite3_bind_blob(st, 1, subject, KHEO_KEY_SIZE, SQLITE_STATIC);
		while (!found && sqlite3_step(st) == SQLITE_ROW) {
			int r = sqlite3_column_int(st, 2);
			const char *scope = (const char *)sqlite3_column_text(st,
				3);

			if (step == 0 && role &&
			    memcmp(subject, db->root, KHEO_KEY_SIZE) != 0 &&
			    (!(r == KHEO_ROLE_PROVINCE ||
				      (r == KHEO_ROLE_HUB &&
					      role < KHEO_ROLE_HUB)) ||
				    !kheo_unit_within(unit, scope)))
				continue;
			found = 1;
			off[*n] = bytes->len;
			lens[*n] = (size_t)sqlite3_column_bytes(st, 0);
			kheo_buf_put(bytes, sqlite3_column_blob(st, 0),
				lens[*n]);
			(*n)++;
			if (memcmp(sqlite3_column_blob(st, 1), subject,
				    KHEO_KEY_SIZE) == 0)
				step = CHAIN_MAX; /* self-signed: the root */
			else
				memcpy(subject, sqlite3_column_blob(st, 1),
					KHEO_KEY_SIZE);
		}
		sqlite3_finalize(st);
		if (bytes->oom)
			return KHEO_ENOMEM;
		if (!found)
			break;
	}
	if (*n == 0 && !role)
		return kheo__error(db, KHEO_EAUTH, "no certificate of this "
			"node holds");
	if (*n == 0)
		return kheo__error(db, KHEO_EAUTH, "this node holds no "
			"certificate that lets it issue a %s certificate for "
			"%s", kheo_role_name(role), unit);
	return KHEO_OK;
}

static int chain_text(kheo_db *db, const kheo_buf *bytes, const size_t *off,
	const size_t *lens, size_t n, char **out)
{
	const uint8_t *items[CHAIN_MAX + 1];
	kheo_buf text = { 0 };
	size_t i;
	int err;

	for (i = 0; i < n; i++)
		items[i] = bytes->p + off[i];
	if ((err = kheo_text_encode(&text, "kheo-cert1:", items, lens, n)) < 0)
		return kheo__error(db, err, "out of memory");
	*out = (char *)text.p;
	return KHEO_OK;
}

KHEO_EXTERN int kheo_enroll_sign(kheo_db *db, const char *request,
	const char *role_name, const char *unit, unsigned days, char **out)
{
	kheo_enroll_req q;
	kheo_cert c;
	kheo_refusal why = { 0 };
	kheo_buf reqbytes = { 0 }, certbody = { 0 }, chain = { 0 };
	size_t off[CHAIN_MAX + 1], lens[CHAIN_MAX + 1], n, i;
	char kh[17];
	uint64_t now = (uint64_t)kheo__now_ms(db);
	int role = kheo_role_parse(role_name ? role_name : ""), err;

	kheo__clear(db);
	*out = NULL;
	if (!role)
		return kheo__error(db, KHEO_EINVAL, "role \"%s\" unknown (one "
			"of collector, reviewer, auditor, hub, province)",
			role_name ? role_name : "");
	if (!unit || !kheo_unit_valid(unit, strlen(unit)) ||
	    strcmp(unit, "_sys") == 0)
		return kheo__error(db, KHEO_EINVAL, "unit \"%s\" is not a unit "
			"path", unit ? unit : "");
	if (days == 0 || days > 3660)
		return kheo__error(db, KHEO_EINVAL, "validity of %u days: "
			"give 1 to 3660", days);
	if (!db->sk)
		return kheo__error(db, KHEO_EAUTH, "%s", db->sign_refusal);
	if (!db->enforcing)
		return kheo__error(db, KHEO_EAUTH, "this node is not enrolled "
			"(open mode): it cannot issue certificates");
	if ((err = kheo_text_decode(&reqbytes, off, lens, 1, &n, "kheo-req1:",
		     request, strlen(request), &why)) < 0 ||
	    (err = kheo_enroll_req_decode(&q, reqbytes.p + off[0], lens[0],
		     &why)) < 0) {
		kheo_buf_free(&reqbytes);
		return kheo__error(db, err, "enrolment request refused: %s",
			why.msg);
	}
	kheo_buf_free(&reqbytes);
	kheo_hex(kh, q.key, 8);
	if ((q.node_role == KHEO_NODE_DEVICE) != (role < KHEO_ROLE_HUB) ||
	    (q.node_role == KHEO_NODE_HUB && role != KHEO_ROLE_HUB))
		return kheo__error(db, KHEO_EINVAL, "%s… is a %s node: it "
			"cannot hold a %s certificate", kh,
			q.node_role == KHEO_NODE_DEVICE ? "device"
			: q.node_role == KHEO_NODE_HUB ? "hub" : "province",
			kheo_role_name(role));
	if (memcmp(q.key, db->pk, KHEO_KEY_SIZE) == 0)
		return kheo__error(db, KHEO_EINVAL, "a node does not certify "
			"itself");
	/* the same rule every receiver applies to the result */
	if (memcmp(db->pk, db->root, KHEO_KEY_SIZE) != 0 &&
	    (err = kheo__own_chain(db, role, unit, &chain, off + 1, lens + 1,
		     &n)) < 0) {
		kheo_buf_free(&chain);
		return kheo__error(db, KHEO_EAUTH, "refused: this node (a %s) "
			"may issue only roles below its own, inside its "
			"scope: %s for %s is not", kheo_role_name(db->cert_role),
			kheo_role_name(role), unit);
	}
	if (memcmp(db->pk, db->root, KHEO_KEY_SIZE) == 0 &&
	    (err = kheo__own_chain(db, 0, unit, &chain, off + 1, lens + 1, &n)) < 0) {
		kheo_buf_free(&chain);
		return err;
	}
	memset(&c, 0, sizeof(c));
	memcpy(c.subject, q.key, KHEO_KEY_SIZE);
	memcpy(c.issuer, db->pk, KHEO_KEY_SIZE);
	c.role = role;
	snprintf(c.scope, sizeof(c.scope), "%s", unit);
	c.not_before = now;
	c.not_after = now + (uint64_t)days * DAY_MS;
	memcpy(c.heads, q.heads, sizeof(q.heads));
	c.nheads = q.nheads;
	if ((err = kheo_cert_encode(&certbody, &c, db->sk)) < 0) {
		kheo_buf_free(&chain);
		return kheo__error(db, err, "certificate");
	}
	/* keep and publish it: the subject's changesets may reach other
	 * nodes before the subject itself publishes it */
	if ((err = kheo__begin(db)) < 0)
		goto done;
	if ((err = kheo__authz_add_cert(db, &c, certbody.p,
		     certbody.len)) < 0 ||
	    (err = kheo__authz_set_root(db, db->root)) < 0 ||
	    (err = publish_cert(db, certbody.p, certbody.len)) < 0 ||
	    (err = kheo__commit_tx(db)) < 0) {
		kheo__rollback(db);
		goto done;
	}
	if ((err = seal_now(db)) < 0)
		goto done;
	{
		/* the new certificate first, then this node's chain */
		kheo_buf all = { 0 };

		off[0] = 0;
		lens[0] = certbody.len;
		kheo_buf_put(&all, certbody.p, certbody.len);
		for (i = 1; i <= n; i++) {
			size_t o = off[i];

			off[i] = all.len;
			kheo_buf_put(&all, chain.p + o, lens[i]);
		}
		err = all.oom ? KHEO_ENOMEM
			      : chain_text(db, &all, off, lens, n + 1, out);
		kheo_buf_free(&all);
	}
done:
	kheo_buf_free(&certbody);
	kheo_buf_free(&chain);
	return err;
}

/* ------------------------------------------------------------- accept */

KHEO_EXTERN int kheo_enroll_accept(kheo_db *db, const char *text,
	const char *root_hex)
{
	kheo_cert certs[CHAIN_MAX];
	kheo_buf bytes = { 0 };
	kheo_refusal why = { 0 };
	uint8_t root[KHEO_KEY_SIZE];
	size_t off[CHAIN_MAX], lens[CHAIN_MAX], n, i;
	char a[17], b[17];
	sqlite3_stmt *st;
	int err, status = 0;

	kheo__clear(db);
	if (!root_hex || strlen(root_hex) != 2 * KHEO_KEY_SIZE ||
	    kheo_unhex(root, KHEO_KEY_SIZE, root_hex, strlen(root_hex)) < 0)
		return kheo__error(db, KHEO_EINVAL, "--root must be the root "
			"key in hex (64 digits), as the province gave it");
	if (db->enforcing && memcmp(root, db->root, KHEO_KEY_SIZE) != 0) {
		kheo_hex(a, db->root, 8);
		return kheo__error(db, KHEO_EAUTH, "this node already trusts "
			"the root %s…; it cannot change roots", a);
	}
	if ((err = kheo_text_decode(&bytes, off, lens, CHAIN_MAX, &n,
		     "kheo-cert1:", text, strlen(text), &why)) < 0) {
		kheo_buf_free(&bytes);
		return kheo__error(db, err, "certificate refused: %s", why.msg);
	}
	for (i = 0; i < n; i++)
		if ((err = kheo_cert_decode(&certs[i], bytes.p + off[i], lens[i],
			     &why)) < 0) {
			kheo_buf_free(&bytes);
			return kheo__error(db, err, "certificate %zu of the "
				"chain refused: %s", i + 1, why.msg);
		}
	if (memcmp(certs[0].subject, db->pk, KHEO_KEY_SIZE) != 0) {
		kheo_hex(a, certs[0].subject, 8);
		kheo_hex(b, db->pk, 8);
		kheo_buf_free(&bytes);
		return kheo__error(db, KHEO_EAUTH, "this certificate is for "
			"%s…, not for this node (%s…)", a, b);
	}
	for (i = 0; i + 1 < n; i++)
		if (memcmp(certs[i].issuer, certs[i + 1].subject,
			    KHEO_KEY_SIZE) != 0) {
			kheo_buf_free(&bytes);
			return kheo__error(db, KHEO_EAUTH, "certificate %zu "
				"was not issued by the holder of certificate "
				"%zu: the chain is broken", i + 1, i + 2);
		}
	if (memcmp(certs[n - 1].issuer, root, KHEO_KEY_SIZE) != 0) {
		kheo_hex(a, certs[n - 1].issuer, 8);
		kheo_hex(b, root, 8);
		kheo_buf_free(&bytes);
		return kheo__error(db, KHEO_EAUTH, "the chain ends at root "
			"%s…, not at the root %s… given with --root: refused",
			a, b);
	}
	if ((err = kheo__begin(db)) < 0)
		goto done;
	for (i = 0; i < n && err == KHEO_OK; i++)
		err = kheo__authz_add_cert(db, &certs[i], bytes.p + off[i],
			lens[i]);
	if (err == KHEO_OK)
		err = kheo__authz_set_root(db, root);
	if (err == KHEO_OK) {
		/* the province's rules, not just the signatures, must hold */
		err = sqlite3_prepare_v2(db->sql, "SELECT status, why FROM"
			" kheo_cert WHERE digest = ?1", -1, &st, NULL) ==
				      SQLITE_OK ? KHEO_OK : KHEO_ERROR;
		if (err == KHEO_OK) {
			sqlite3_bind_blob(st, 1, certs[0].digest, KHEO_ID_SIZE,
				SQLITE_STATIC);
			if (sqlite3_step(st) == SQLITE_ROW)
				status = sqlite3_column_int(st, 0);
			if (status != 1)
				err = kheo__error(db, KHEO_EAUTH, "certificate "
					"refused: %s", sqlite3_column_text(st,
						1) ? (const char *)
					sqlite3_column_text(st, 1) :
					"its chain does not reach the root");
			sqlite3_finalize(st);
		}
	}
	for (i = 0; i < n && err == KHEO_OK; i++)
		err = publish_cert(db, bytes.p + off[i], lens[i]);
	if (err == KHEO_OK)
		err = kheo__commit_tx(db);
	if (err < 0) {
		char msg[sizeof(db->errmsg)];

		snprintf(msg, sizeof(msg), "%s", db->errmsg);
		kheo__rollback(db);
		kheo__authz_load(db);
		snprintf(db->errmsg, sizeof(db->errmsg), "%s", msg);
		goto done;
	}
	err = seal_now(db);
done:
	kheo_buf_free(&bytes);
	return err;
}

/* ------------------------------------------------------------- revoke */

KHEO_EXTERN int kheo_revoke(kheo_db *db, const char *node,
	const char *reason)
{
	uint8_t key[KHEO_KEY_SIZE];
	char keyhex[2 * KHEO_KEY_SIZE + 1], out[KHEO_RECORD_HEX + 1];
	kheo_buf limits = { 0 };
	kheo_assign a[3];
	sqlite3_stmt *st;
	size_t na = 0;
	int rc, err;

	kheo__clear(db);
	if (!db->enforcing || (db->cert_role != KHEO_ROLE_HUB &&
				      db->cert_role != KHEO_ROLE_PROVINCE))
		return kheo__error(db, KHEO_EAUTH, "only an enrolled hub or "
			"the province may revoke (this node: %s)",
			db->enforcing ? kheo_role_name(db->cert_role)
				      : "open mode");
	if ((err = kheo__resolve_node(db, key, node)) < 0)
		return err;
	if (memcmp(key, db->pk, KHEO_KEY_SIZE) == 0)
		return kheo__error(db, KHEO_EINVAL, "a node does not revoke "
			"itself");
	/* what this node holds of each chain is what stays accepted */
	rc = sqlite3_prepare_v2(db->sql, "SELECT unit, max(useq) FROM kheo_cs"
		" WHERE author = ?1 AND state = 0 GROUP BY unit ORDER BY unit",
		-1, &st, NULL);
	if (rc != SQLITE_OK)
		return kheo__sqlerr(db, rc, "revoke");
	sqlite3_bind_blob(st, 1, key, KHEO_KEY_SIZE, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		char pair[KHEO_UNIT_MAX + 32];

		snprintf(pair, sizeof(pair), "%s%s=%lld", limits.len ? " " : "",
			(const char *)sqlite3_column_text(st, 0),
			(long long)sqlite3_column_int64(st, 1));
		kheo_buf_put(&limits, pair, strlen(pair));
	}
	sqlite3_finalize(st);
	kheo_buf_put_u8(&limits, '\0');
	if (limits.oom)
		return KHEO_ENOMEM;
	kheo_hex(keyhex, key, KHEO_KEY_SIZE);
	a[na++] = (kheo_assign){ "key", KHEO_ASSIGN_SET, keyhex };
	if (limits.len > 1)
		a[na++] = (kheo_assign){ "limits", KHEO_ASSIGN_SET,
			(const char *)limits.p };
	if (reason && *reason)
		a[na++] = (kheo_assign){ "reason", KHEO_ASSIGN_SET, reason };
	err = kheo_put(db, out, "sys_revocation", NULL, a, na);
	kheo_buf_free(&limits);
	if (err < 0)
		return err;
	return seal_now(db);
}

/* ------------------------------------------------------ kheo id says */

KHEO_EXTERN int kheo_enforcing(const kheo_db *db)
{
	return db->enforcing;
}

int kheo__identity_json(kheo_db *db, json_t *o)
{
	char hex[2 * KHEO_KEY_SIZE + 1];
	json_t *warnings = json_array();
	sqlite3_stmt *st;
	int64_t now = kheo__now_ms(db);

	json_object_set_new(o, "mode", json_string(db->enforcing ? "enforcing"
								 : "open"));
	if (!db->enforcing) {
		json_object_set_new(o, "root", json_null());
		json_object_set_new(o, "cert_role", json_null());
		json_array_append_new(warnings, json_string("open mode: this "
			"node has no root of trust yet and accepts every "
			"validly signed changeset; enrol it (kheo enroll "
			"request, then accept with --root)"));
		json_object_set_new(o, "warnings", warnings);
		return KHEO_OK;
	}
	kheo_hex(hex, db->root, KHEO_KEY_SIZE);
	json_object_set_new(o, "root", json_string(hex));
	json_object_set_new(o, "cert_role", db->cert_role
		? json_string(kheo_role_name(db->cert_role)) : json_null());
	if (sqlite3_prepare_v2(db->sql, "SELECT scope, not_after FROM"
		    " kheo_cert WHERE subject = ?1 AND status = 1 ORDER BY"
		    " role DESC, not_after DESC LIMIT 1", -1, &st, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_blob(st, 1, db->pk, KHEO_KEY_SIZE, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			int64_t until = sqlite3_column_int64(st, 1);

			json_object_set_new(o, "cert_scope", json_string(
				(const char *)sqlite3_column_text(st, 0)));
			json_object_set_new(o, "cert_expires_ms",
				json_integer(until));
			if (until < now)
				json_array_append_new(warnings, json_string(
					"certificate expired: new work is "
					"held by every other node until it "
					"is renewed"));
			else if (until - now < EXPIRY_WARN_MS)
				json_array_append_new(warnings, json_sprintf(
					"certificate expires in %lld days: "
					"ask the hub to renew it",
					(long long)((until - now + DAY_MS - 1) /
						DAY_MS)));
		} else {
			json_array_append_new(warnings, json_string("no "
				"certificate for this key holds: re-enrol"));
		}
		sqlite3_finalize(st);
	}
	json_object_set_new(o, "warnings", warnings);
	return KHEO_OK;
}
