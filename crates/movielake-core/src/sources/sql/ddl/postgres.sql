-- The platform's users and subscriptions on PostgreSQL (Azure Database for PostgreSQL).
-- updated_at is set by the database (now() is the transaction's start time): the pulls'
-- ceiling stops at the oldest open transaction's start for that reason.
CREATE TABLE IF NOT EXISTS users (
    user_id       text PRIMARY KEY,
    email         text NOT NULL,
    display_name  text,
    country       char(2),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);
CREATE INDEX IF NOT EXISTS users_updated_at ON users (updated_at, user_id);

CREATE TABLE IF NOT EXISTS subscriptions (
    subscription_id text PRIMARY KEY,
    user_id         text NOT NULL REFERENCES users (user_id),
    plan            text NOT NULL CHECK (plan IN ('basic', 'standard', 'premium')),
    status          text NOT NULL CHECK (status IN ('trial', 'active', 'past_due', 'cancelled')),
    started_at      timestamptz NOT NULL,
    ends_at         timestamptz,
    monthly_price   numeric(8, 2) NOT NULL,
    currency        char(3) NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS subscriptions_updated_at ON subscriptions (updated_at, subscription_id);
