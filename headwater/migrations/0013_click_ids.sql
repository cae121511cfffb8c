-- The ad click ids of the page's URL (docs/schema.md), for joining the ad networks' cost and
-- conversion reports. An untagged gclid or msclkid also fills utm_source and utm_medium.
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS gclid String CODEC(ZSTD(3)),
    ADD COLUMN IF NOT EXISTS fbclid String CODEC(ZSTD(3)),
    ADD COLUMN IF NOT EXISTS msclkid String CODEC(ZSTD(3))
