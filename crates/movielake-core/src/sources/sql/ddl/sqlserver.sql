-- The platform's users and subscriptions on SQL Server / Azure SQL Database. row_version is
-- the change signal: pulls read [last ceiling, MIN_ACTIVE_ROWVERSION()). Enable Change Tracking
-- on both tables to see deletes as well (ALTER TABLE … ENABLE CHANGE_TRACKING).
IF OBJECT_ID(N'dbo.users', N'U') IS NULL
CREATE TABLE dbo.users (
    user_id       nvarchar(64)  NOT NULL PRIMARY KEY,
    email         nvarchar(320) NOT NULL,
    display_name  nvarchar(200) NULL,
    country       char(2)       NULL,
    created_at    datetime2(6)  NOT NULL DEFAULT SYSUTCDATETIME(),
    updated_at    datetime2(6)  NOT NULL DEFAULT SYSUTCDATETIME(),
    deleted_at    datetime2(6)  NULL,
    row_version   rowversion    NOT NULL
);
IF OBJECT_ID(N'dbo.subscriptions', N'U') IS NULL
CREATE TABLE dbo.subscriptions (
    subscription_id nvarchar(64) NOT NULL PRIMARY KEY,
    user_id         nvarchar(64) NOT NULL REFERENCES dbo.users (user_id),
    plan            nvarchar(16) NOT NULL CHECK (plan IN (N'basic', N'standard', N'premium')),
    status          nvarchar(16) NOT NULL CHECK (status IN (N'trial', N'active', N'past_due', N'cancelled')),
    started_at      datetime2(6) NOT NULL,
    ends_at         datetime2(6) NULL,
    monthly_price   decimal(8, 2) NOT NULL,
    currency        char(3)      NOT NULL,
    updated_at      datetime2(6) NOT NULL DEFAULT SYSUTCDATETIME(),
    row_version     rowversion   NOT NULL
);
CREATE INDEX users_row_version ON dbo.users (row_version);
CREATE INDEX subscriptions_row_version ON dbo.subscriptions (row_version);
