-- alias and group calls: the id an alias merges from and the group an event names, and a group
-- call's traits (the group's, not the user's); sessions keep their duration in milliseconds (rows
-- written before compute it from their start and end), and whether their visitor is a bot (from
-- the first event's user agent), which queries leave out.
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS previous_id String AFTER user_id,
    ADD COLUMN IF NOT EXISTS group_id String AFTER previous_id,
    ADD COLUMN IF NOT EXISTS group_traits String CODEC(ZSTD(3))
;;
ALTER TABLE {db}.sessions
    ADD COLUMN IF NOT EXISTS duration_ms UInt64 DEFAULT toUInt64(greatest(0, dateDiff('millisecond', start_at, end_at)))
        AFTER duration_s,
    ADD COLUMN IF NOT EXISTS is_bot Bool AFTER os
