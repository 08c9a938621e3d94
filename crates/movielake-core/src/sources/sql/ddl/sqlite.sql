-- The platform's users and subscriptions on SQLite (the embedded default). Timestamps are
-- RFC 3339 text in UTC with milliseconds ('2024-05-01T10:00:00.000Z'), so text order is time order.
CREATE TABLE IF NOT EXISTS users (
    user_id       TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    display_name  TEXT,
    country       TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at    TEXT
);
CREATE INDEX IF NOT EXISTS users_updated_at ON users (updated_at, user_id);

CREATE TABLE IF NOT EXISTS subscriptions (
    subscription_id TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (user_id),
    plan            TEXT NOT NULL CHECK (plan IN ('basic', 'standard', 'premium')),
    status          TEXT NOT NULL CHECK (status IN ('trial', 'active', 'past_due', 'cancelled')),
    started_at      TEXT NOT NULL,
    ends_at         TEXT,
    monthly_price   NUMERIC NOT NULL,
    currency        TEXT NOT NULL,
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS subscriptions_updated_at ON subscriptions (updated_at, subscription_id);
