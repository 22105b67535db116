/*
 * clock.c - the node's hybrid logical clock.
 *
 * A clock value is 64 bits: milliseconds since the epoch in the high 48,
 * a counter in the low 16.  Each local op takes a value above every value
 * this node issued or applied, and at least its wall time, so that op ids
 * (clock, author) are unique and an op's clock is above everything its
 * author had seen (which proto's pred rule relies on).  The clock is
 * persisted in kheo_meta in the transaction of the edit that moved it, so
 * it never goes back across a restart, even if the wall clock does.
 *
 * Held changesets do not move it (apply.c calls observe only on apply):
 * a device with a wrong clock cannot drag the province's clock forward
 * by sending a changeset from the future.
 */
#include "internal.h"

uint64_t kheo__clock_tick(kheo_db *db)
{
	int64_t now = kheo__now_ms(db);
	uint64_t wall = now > 0 ? (uint64_t)now << 16 : 0;

	db->clock = wall > db->clock ? wall : db->clock + 1;
	db->clock_dirty = 1;
	return db->clock;
}

void kheo__clock_observe(kheo_db *db, uint64_t c)
{
	if (c > db->clock) {
		db->clock = c;
		db->clock_dirty = 1;
	}
}

int kheo__clock_save(kheo_db *db)
{
	int err;

	if (!db->clock_dirty)
		return KHEO_OK;
	if ((err = kheo__meta_set_int(db, "clock", (int64_t)db->clock)) < 0)
		return err;
	db->clock_dirty = 0;
	return KHEO_OK;
}
