-- Issue 26: who must not be messaged. An SMS recipient who texted STOP (or
-- STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT) to one of our numbers is
-- suppressed for that number (scope: our number) until START or UNSTOP; an
-- email address that bounced hard or complained is suppressed for every
-- sender (scope '*'); an operator adds and removes entries through the API.
-- Every send checks here first. Kept in MySQL whichever store holds the
-- notifications: MySQL is always there.
CREATE TABLE IF NOT EXISTS suppressions (
  channel     VARCHAR(8)   NOT NULL,   -- sms | email
  address     VARCHAR(320) NOT NULL,   -- the recipient: E.164 number or email address
  scope       VARCHAR(320) NOT NULL,   -- our sending number, or '*' for every sender
  reason      VARCHAR(255) NOT NULL,   -- STOP, bounce, complaint, operator, ...
  created_ms  BIGINT       NOT NULL,
  PRIMARY KEY (channel, address, scope)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
