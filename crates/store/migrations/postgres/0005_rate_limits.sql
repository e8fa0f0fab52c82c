-- Rate-limit state shared by every API node: one GCRA "theoretical arrival
-- time" per bucket, in microseconds since the epoch. UNLOGGED: losing it in a
-- crash only resets limits, and it saves a WAL write per request.
CREATE UNLOGGED TABLE rate_limits (
    bucket TEXT PRIMARY KEY,
    tat    BIGINT NOT NULL
);
