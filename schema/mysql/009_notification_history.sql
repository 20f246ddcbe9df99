-- Issue 26: a notification's status is a machine that never moves backwards
-- (jobs/notify.h), with its history. "failed" now means the provider's
-- final word (its callback); the wait for a retry, which it meant before,
-- is "retrying". provider_id is the provider's id of the message (Twilio's
-- MessageSid), kept once it took it. (Plain ADD COLUMN: MySQL 8 has no IF
-- NOT EXISTS here, and a migration runs once.)
ALTER TABLE notifications
  MODIFY status VARCHAR(12) NOT NULL,
  ADD COLUMN provider_id VARCHAR(64) NULL;
UPDATE notifications SET status = 'retrying' WHERE status = 'failed';

-- One row per move of a notification's status, in order (seq).
CREATE TABLE IF NOT EXISTS notification_events (
  seq     BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
  id      VARCHAR(64)  NOT NULL,
  status  VARCHAR(12)  NOT NULL,
  at_ms   BIGINT       NOT NULL,
  detail  VARCHAR(255) NOT NULL DEFAULT '',
  KEY ix_notification_events_id (id, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
