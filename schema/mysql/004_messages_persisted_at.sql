-- When the persister wrote the row (its statement time; the batch commits
-- a few milliseconds later). With created_at (when the dispatcher made the
-- job, just before it answered 201) this gives the end-to-end lag per
-- message: operators can watch it, scripts/bench reports it. (Plain ADD
-- COLUMN: MySQL 8 has no IF NOT EXISTS here, and a migration runs once.)
ALTER TABLE messages
  ADD COLUMN persisted_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3);
