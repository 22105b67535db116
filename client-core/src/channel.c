/*
 * channel.c - the secure channel under a sync session: bytes in and out,
 * records up (docs/protocol.md, "Secure channel").
 *
 *   server -> client   "KSY" 0x01 | server key          (36 bytes, clear)
 *   client -> server   SHS msg1 (64)
 *   server -> client   SHS msg2 (64)
 *   client -> server   SHS msg3 (112)
 *   server -> client   SHS msg4 (80)
 *   then each way      secretstream header, records
 *
 * Secret Handshake needs the client to know the server's key beforehand.
 * kheo does not pin keys (a hub restored on new hardware gets a new one),
 * so the server announces its key in the clear first; the client may
 * insist on one (expect), and in any case the session then checks that
 * the key holds a certificate chaining to the root.  A man in the middle
 * who substitutes its own key cannot present such a certificate.
 */
#include "internal.h"
#include "alloc.h"

#include <stdio.h>
#include <string.h>

#define ANNOUNCE_MAGIC "KSY\x01"
#define ANNOUNCE_SIZE (4 + KHEO_KEY_SIZE)

enum {
	WAIT_ANNOUNCE, /* client */
	WAIT_MSG1,     /* server */
	WAIT_MSG2,     /* client */
	WAIT_MSG3,     /* server */
	WAIT_MSG4,     /* client */
	RECORDS,
	BROKEN,
};

static int broken(kheo_channel *ch, const kheo_refusal *why, const char *what)
{
	snprintf(ch->err, sizeof(ch->err), "%s: %s (%s)", what, why->msg,
		kheo_reason_name(why->reason));
	ch->phase = BROKEN;
	if (ch->shs)
		kheo_shs_wipe(ch->shs);
	return why->reason ? kheo_reason_error(why->reason) : KHEO_EPROTO;
}

void kheo__channel_init(kheo_channel *ch, int initiator,
	const uint8_t netkey[32], const uint8_t *sk, const uint8_t *pk,
	const uint8_t *expect)
{
	memset(ch, 0, sizeof(*ch));
	ch->initiator = initiator;
	memcpy(ch->netkey, netkey, 32);
	ch->sk = sk;
	memcpy(ch->pk, pk, KHEO_KEY_SIZE);
	if (expect) {
		ch->have_expect = 1;
		memcpy(ch->expect, expect, KHEO_KEY_SIZE);
	}
	ch->shs = sodium_malloc(sizeof(*ch->shs));
	if (!ch->shs) {
		snprintf(ch->err, sizeof(ch->err), "out of memory");
		ch->phase = BROKEN;
		return;
	}
	if (initiator) {
		ch->phase = WAIT_ANNOUNCE;
		return;
	}
	kheo_shs_server_init(ch->shs, netkey, sk, NULL);
	kheo_buf_put(&ch->out, ANNOUNCE_MAGIC, 4);
	kheo_buf_put(&ch->out, pk, KHEO_KEY_SIZE);
	ch->phase = WAIT_MSG1;
}

/* Another copy of the same key (the session moved to another kheo_db of
 * the node), or NULL while the session is bound to none.  The handshake
 * state borrows the key too, from its init until it ends. */
void kheo__channel_rebind(kheo_channel *ch, const uint8_t *sk)
{
	ch->sk = sk;
	if (ch->shs && ch->phase > WAIT_ANNOUNCE && ch->phase < RECORDS)
		ch->shs->sk = sk;
}

void kheo__channel_free(kheo_channel *ch)
{
	if (ch->shs) {
		kheo_shs_wipe(ch->shs);
		sodium_free(ch->shs);
	}
	kheo_shs_keys_wipe(&ch->keys);
	kheo_stream_tx_wipe(&ch->tx);
	kheo_stream_rx_wipe(&ch->rx);
	kheo_buf_free(&ch->in);
	kheo_buf_free(&ch->out);
	kheo_buf_free(&ch->plain);
	memset(ch, 0, sizeof(*ch));
}

/* The handshake is over: keys for each direction, headers out. */
static int open_streams(kheo_channel *ch)
{
	uint8_t tx[KHEO_STREAM_KEY_SIZE], rx[KHEO_STREAM_KEY_SIZE];
	int err;

	kheo_stream_keys(tx, rx, &ch->keys);
	memcpy(ch->peer, ch->keys.peer, KHEO_KEY_SIZE);
	err = kheo_stream_tx_init(&ch->tx, &ch->out, tx);
	kheo_stream_rx_init(&ch->rx, rx);
	sodium_memzero(tx, sizeof(tx));
	sodium_memzero(rx, sizeof(rx));
	kheo_shs_keys_wipe(&ch->keys);
	/* the handshake's guarded pages (a few KiB each, mlocked) are not
	 * kept for the session's life: a hub holds a thousand sessions */
	kheo_shs_wipe(ch->shs);
	sodium_free(ch->shs);
	ch->shs = NULL;
	if (err < 0) {
		snprintf(ch->err, sizeof(ch->err), "out of memory");
		ch->phase = BROKEN;
		return err;
	}
	ch->phase = RECORDS;
	ch->ready = 1;
	return KHEO_OK;
}

/* One handshake step from `p` (exactly its size); 0 or an error. */
static int handshake_step(kheo_channel *ch, const uint8_t *p)
{
	kheo_refusal why = { 0 };
	uint8_t out[KHEO_SHS_MSG3_SIZE];
	int err;

	switch (ch->phase) {
	case WAIT_ANNOUNCE: {
		char got[17], want[17];

		if (memcmp(p, ANNOUNCE_MAGIC, 4) != 0) {
			kheo__refuse(&why, KHEO_R_BAD_MAGIC, 0, "the peer "
				"does not speak kheo sync version 1");
			return broken(ch, &why, "handshake");
		}
		if (ch->have_expect &&
		    memcmp(p + 4, ch->expect, KHEO_KEY_SIZE) != 0) {
			kheo_hex(got, p + 4, 8);
			kheo_hex(want, ch->expect, 8);
			kheo__refuse(&why, KHEO_R_BAD_KEY, 4, "the server's "
				"key is %s…, not the %s… expected", got, want);
			return broken(ch, &why, "handshake");
		}
		if (kheo_shs_client_init(ch->shs, ch->netkey, ch->sk, p + 4,
			    NULL) < 0) {
			kheo__refuse(&why, KHEO_R_BAD_KEY, 4, "the server "
				"announced a key that is not an Ed25519 key");
			return broken(ch, &why, "handshake");
		}
		kheo_shs_write_msg1(ch->shs, out);
		kheo_buf_put(&ch->out, out, KHEO_SHS_MSG1_SIZE);
		ch->phase = WAIT_MSG2;
		break;
	}
	case WAIT_MSG1:
		if ((err = kheo_shs_read_msg1(ch->shs, p, KHEO_SHS_MSG1_SIZE,
			     &why)) < 0)
			return broken(ch, &why, "handshake");
		kheo_shs_write_msg2(ch->shs, out);
		kheo_buf_put(&ch->out, out, KHEO_SHS_MSG2_SIZE);
		ch->phase = WAIT_MSG3;
		break;
	case WAIT_MSG2:
		if ((err = kheo_shs_read_msg2(ch->shs, p, KHEO_SHS_MSG2_SIZE,
			     &why)) < 0)
			return broken(ch, &why, "handshake");
		kheo_shs_write_msg3(ch->shs, out);
		kheo_buf_put(&ch->out, out, KHEO_SHS_MSG3_SIZE);
		ch->phase = WAIT_MSG4;
		break;
	case WAIT_MSG3:
		if ((err = kheo_shs_read_msg3(ch->shs, p, KHEO_SHS_MSG3_SIZE,
			     &why)) < 0)
			return broken(ch, &why, "handshake");
		kheo_shs_write_msg4(ch->shs, out, &ch->keys);
		kheo_buf_put(&ch->out, out, KHEO_SHS_MSG4_SIZE);
		return open_streams(ch);
	case WAIT_MSG4:
		if ((err = kheo_shs_read_msg4(ch->shs, p, KHEO_SHS_MSG4_SIZE,
			     &ch->keys, &why)) < 0)
			return broken(ch, &why, "handshake");
		return open_streams(ch);
	}
	sodium_memzero(out, sizeof(out));
	return ch->out.oom ? KHEO_ENOMEM : KHEO_OK;
}

static size_t step_size(int phase)
{
	switch (phase) {
	case WAIT_ANNOUNCE:
		return ANNOUNCE_SIZE;
	case WAIT_MSG1:
		return KHEO_SHS_MSG1_SIZE;
	case WAIT_MSG2:
		return KHEO_SHS_MSG2_SIZE;
	case WAIT_MSG3:
		return KHEO_SHS_MSG3_SIZE;
	case WAIT_MSG4:
		return KHEO_SHS_MSG4_SIZE;
	}
	return 0;
}

int kheo__channel_input(kheo_channel *ch, const uint8_t *p, size_t n,
	int (*on_record)(void *arg, const uint8_t *p, size_t n), void *arg)
{
	size_t at = 0;
	int err = KHEO_OK;

	if (ch->phase == BROKEN)
		return KHEO_EPROTO;
	kheo_buf_put(&ch->in, p, n);
	if (ch->in.oom) {
		snprintf(ch->err, sizeof(ch->err), "out of memory");
		ch->phase = BROKEN;
		return KHEO_ENOMEM;
	}
	while (err == KHEO_OK && ch->phase < RECORDS) {
		size_t need = step_size(ch->phase);

		if (ch->in.len - at < need)
			break;
		err = handshake_step(ch, ch->in.p + at);
		at += need;
	}
	while (err == KHEO_OK && ch->phase == RECORDS && at < ch->in.len) {
		kheo_refusal why = { 0 };
		kheo_stream_event ev;
		size_t used = 0;

		if ((err = kheo_stream_rx_read(&ch->rx, &ch->plain, &ev, &used,
			     ch->in.p + at, ch->in.len - at, &why)) < 0) {
			err = broken(ch, &why, "stream");
			break;
		}
		at += used;
		if (ev == KHEO_STREAM_MORE)
			break;
		if (ev == KHEO_STREAM_RECORD || ch->plain.len)
			err = on_record(arg, ch->plain.p, ch->plain.len);
		if (ev == KHEO_STREAM_FINAL)
			ch->closed = 1;
	}
	/* keep what is not consumed yet */
	memmove(ch->in.p, ch->in.p + at, ch->in.len - at);
	ch->in.len -= at;
	return err;
}

int kheo__channel_send(kheo_channel *ch, const uint8_t *p, size_t n)
{
	int err;

	if (ch->phase != RECORDS) {
		snprintf(ch->err, sizeof(ch->err), "sending before the "
			"handshake ended");
		return KHEO_EPROTO;
	}
	if (n > KHEO_STREAM_RECORD_MAX) {
		snprintf(ch->err, sizeof(ch->err), "a message of %zu bytes, "
			"above the channel's record limit %u (a changeset "
			"this big travels in a bundle)", n,
			KHEO_STREAM_RECORD_MAX);
		return KHEO_ELIMIT;
	}
	if ((err = kheo_stream_tx_record(&ch->tx, &ch->out, p, n, 0)) < 0)
		snprintf(ch->err, sizeof(ch->err), "out of memory");
	return err;
}

int kheo__channel_ready(const kheo_channel *ch)
{
	return ch->ready;
}

const uint8_t *kheo__channel_peer(const kheo_channel *ch)
{
	return ch->peer;
}

const kheo_buf *kheo__channel_out(const kheo_channel *ch)
{
	return &ch->out;
}

void kheo__channel_consumed(kheo_channel *ch, size_t n)
{
	if (n > ch->out.len)
		n = ch->out.len;
	memmove(ch->out.p, ch->out.p + n, ch->out.len - n);
	ch->out.len -= n;
}

const char *kheo__channel_error(const kheo_channel *ch)
{
	return ch->err;
}
