-- Pipeline probes: each system.ping job the persister consumed, once.
-- request_id is the natural key, so replaying the job changes nothing.
CREATE TABLE IF NOT EXISTS pipeline_pings (
  request_id   VARCHAR(64)  NOT NULL PRIMARY KEY,
  note         VARCHAR(800) NOT NULL DEFAULT '',
  kafka_topic  VARCHAR(200) NOT NULL,
  kafka_partition INT       NOT NULL,
  kafka_offset BIGINT       NOT NULL,
  created_at_ms  BIGINT     NOT NULL,
  consumed_at_ms BIGINT     NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
