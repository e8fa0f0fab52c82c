-- Roles (PRODUCT.md §3 Safety): moderators act on reports, admins also grant roles.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'user'
    CHECK (role IN ('user', 'moderator', 'admin'));
