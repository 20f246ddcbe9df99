-- When the persister wrote the row (its statement time; the batch commits
-- a few milliseconds later). With created_at (when the dispatcher made the
-- job, just before it answered 201) this gives the end-to-end lag per
-- message: operators can watch it, scripts/bench reports it.
ALTER TABLE messages
  ADD COLUMN IF NOT EXISTS persisted_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3);
