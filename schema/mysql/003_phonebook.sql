-- Phonebook: users and the phone numbers that can be reserved and assigned.
-- A number is assigned to at most one user (numbers.user_id, and the
-- unique users.phone_number), whatever the caches say.
CREATE TABLE IF NOT EXISTS users (
  user_id      BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  phone_number VARCHAR(16) NULL,
  UNIQUE KEY uk_users_phone (phone_number)
) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin;

CREATE TABLE IF NOT EXISTS numbers (
  phone_number VARCHAR(16) NOT NULL PRIMARY KEY,           -- E.164
  area_code    CHAR(3)     NOT NULL,
  status       ENUM('AVAILABLE','RESERVED','ASSIGNED') NOT NULL DEFAULT 'AVAILABLE',
  ref_id       CHAR(32)    NULL,                            -- the reservation
  reserved_at  DATETIME(3) NULL,
  user_id      BIGINT UNSIGNED NULL,
  KEY ix_numbers_area (area_code, status),
  KEY ix_numbers_ref (ref_id),
  KEY ix_numbers_reserved (status, reserved_at)
) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin;
