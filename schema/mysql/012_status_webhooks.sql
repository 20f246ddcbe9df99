-- Issue 26: a message's own webhook (statusCallback). Each move of its
-- status (notification_events) is POSTed there, in order: webhook_sent
-- counts the events delivered, webhook_next_ms is when the notifier's
-- webhook thread tries next (NULL: nothing to deliver), webhook_attempts
-- the failures of the event in hand (its backoff). webhook_key is the API
-- key that sent it (its principal): its secret signs the POSTs.
ALTER TABLE notifications
  ADD COLUMN callback_url VARCHAR(2048) NULL,
  ADD COLUMN webhook_key VARCHAR(40) NULL,
  ADD COLUMN webhook_sent INT NOT NULL DEFAULT 0,
  ADD COLUMN webhook_attempts INT NOT NULL DEFAULT 0,
  ADD COLUMN webhook_next_ms BIGINT NULL,
  ADD KEY ix_notifications_webhook (webhook_next_ms);
