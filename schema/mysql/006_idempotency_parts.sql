-- An idempotency key is up to 128 bytes from the client; the items of one
-- /sms/send/many request that share a key are the parts of one message and
-- are stored as "<key>#<part>" (clients may not use '#'), up to 8 bytes more.
ALTER TABLE notifications MODIFY idempotency_key VARCHAR(136) NULL;
