-- Notifications and SMS (used when MONGO_URI is not set; schema/mongo/
-- holds the same indexes for MongoDB). Times are Unix milliseconds, as in
-- the jobs, so both stores keep identical values.
CREATE TABLE IF NOT EXISTS notifications (
  id              VARCHAR(64)  NOT NULL PRIMARY KEY,
  channel         VARCHAR(8)   NOT NULL,
  recipient       VARCHAR(320) NOT NULL,
  idempotency_key VARCHAR(128) NULL,      -- unique: the durable half of "send once"
  fingerprint     CHAR(16)     NOT NULL,  -- of the content, to tell a repeat from a reuse
  tracking_id     VARCHAR(64)  NULL,      -- the /sms/send/many request it came in
  item            INT          NOT NULL DEFAULT 0,
  status          VARCHAR(8)   NOT NULL,
  attempts        INT          NOT NULL DEFAULT 0,
  last_error      VARCHAR(255) NOT NULL DEFAULT '',
  created_ms      BIGINT       NOT NULL,
  updated_ms      BIGINT       NOT NULL,
  UNIQUE KEY uk_notifications_idem (idempotency_key),
  KEY ix_notifications_tracking (tracking_id, status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sms_requests (
  tracking_id VARCHAR(64) NOT NULL PRIMARY KEY,
  total       INT         NOT NULL,
  errors      MEDIUMTEXT  NOT NULL,  -- JSON array of the items refused up front
  created_ms  BIGINT      NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
