-- Chat service. Natural keys throughout: the persister writes chats and
-- messages by (application token, chat number[, message number]) without
-- looking up surrogate ids, and a replayed job hits the same primary key.

CREATE TABLE IF NOT EXISTS applications (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, -- list order / cursor
  token       CHAR(22)     NOT NULL,
  name        VARCHAR(255) NOT NULL,
  chats_count INT UNSIGNED NOT NULL DEFAULT 0,  -- maintained by switchboard-counts
  created_at  DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at  DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  UNIQUE KEY uk_applications_token (token)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS chats (
  application_token CHAR(22)     NOT NULL,
  number            INT UNSIGNED NOT NULL,
  messages_count    INT UNSIGNED NOT NULL DEFAULT 0, -- maintained by switchboard-counts
  created_at        DATETIME(3)  NOT NULL,
  updated_at        DATETIME(3)  NOT NULL,
  PRIMARY KEY (application_token, number)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- body uses a case-insensitive collation: the MySQL search backend matches
-- with LIKE inside one chat's primary-key range.
CREATE TABLE IF NOT EXISTS messages (
  application_token CHAR(22)     NOT NULL,
  chat_number       INT UNSIGNED NOT NULL,
  number            INT UNSIGNED NOT NULL,
  body              TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
  created_at        DATETIME(3)  NOT NULL,
  updated_at        DATETIME(3)  NOT NULL,
  PRIMARY KEY (application_token, chat_number, number)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Durable ceilings of the number blocks handed to Redis (hi/lo). A number
-- is only ever issued from a block reserved here first, so after Redis
-- loses data allocation resumes above every number issued before.
-- scope: 'c:<token>' (chat numbers) or 'm:<token>:<chat>' (message numbers).
CREATE TABLE IF NOT EXISTS number_blocks (
  scope   VARCHAR(64)     NOT NULL PRIMARY KEY,
  ceiling BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin;

-- Count changes not yet rolled up. The persister adds the number of rows it
-- really inserted, in the same transaction; switchboard-counts folds them
-- into chats_count / messages_count and deletes them. Its work is the
-- number of rows here (what changed), not the size of the tables.
CREATE TABLE IF NOT EXISTS app_count_deltas (
  application_token CHAR(22) NOT NULL PRIMARY KEY,
  delta             INT      NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS chat_count_deltas (
  application_token CHAR(22)     NOT NULL,
  chat_number       INT UNSIGNED NOT NULL,
  delta             INT          NOT NULL,
  PRIMARY KEY (application_token, chat_number)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
