-- alias and group calls: the id an alias merges from and the group an event names, and a group
-- call's traits (the group's, not the user's); sessions keep their duration in milliseconds, and
-- whether their visitor is a bot (from the first event's user agent), which queries leave out.
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS previous_id String AFTER user_id,
    ADD COLUMN IF NOT EXISTS group_id String AFTER previous_id,
    ADD COLUMN IF NOT EXISTS group_traits String CODEC(ZSTD(3)) AFTER traits
;;
ALTER TABLE {db}.sessions
    ADD COLUMN IF NOT EXISTS duration_ms UInt64 DEFAULT duration_s * 1000 AFTER duration_s,
    ADD COLUMN IF NOT EXISTS is_bot Bool AFTER os
