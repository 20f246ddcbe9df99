-- The dead letter whose redrive (POST /ops/v1/dead-letters/redrive) last
-- queued a dead notification again, as "topic/partition/offset": a second
-- copy of that same redrive (a rewound batch) finds the notification
-- settled instead of queueing it once more. (Plain ADD COLUMN: MySQL 8 has
-- no IF NOT EXISTS here, and a migration runs once.)
ALTER TABLE notifications ADD COLUMN redrive_of VARCHAR(300) NULL;
