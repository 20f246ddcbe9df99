-- Issue 26: scheduled sends. A notification with send_at is recorded as
-- scheduled with the job to produce when its time comes (job); the
-- notifier's scheduler finds the due ones by (status, send_at_ms). It may
-- be cancelled until then.
ALTER TABLE notifications
  ADD COLUMN send_at_ms BIGINT NULL,
  ADD COLUMN job MEDIUMTEXT NULL,
  ADD KEY ix_notifications_due (status, send_at_ms);
