-- Issue 26: the inbound texts acted on (STOP, START), by the provider's
-- MessageSid: the same one again (the provider retrying its webhook, or a
-- captured request played back later) changes nothing. Twilio's signature
-- has no time in it, so this is what stops a replay.
CREATE TABLE IF NOT EXISTS inbound_sms (
  message_sid  VARCHAR(64) NOT NULL PRIMARY KEY,
  received_ms  BIGINT      NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
