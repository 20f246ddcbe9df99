-- What operators did with dead letters (GET/POST /ops/v1/dead-letters...):
-- one row per dead letter (its .dlq topic, partition, offset) once it was
-- redriven (produced back to its topic) or discarded, so that neither is
-- done twice and the list can tell the letters nobody has handled yet.
CREATE TABLE IF NOT EXISTS dead_letter_actions (
  dlq_topic     VARCHAR(249) NOT NULL,
  dlq_partition INT          NOT NULL,
  dlq_offset    BIGINT       NOT NULL,
  action        ENUM('redriven', 'discarded') NOT NULL,
  actor         VARCHAR(64)  NOT NULL,
  acted_at      DATETIME(3)  NOT NULL,
  PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
