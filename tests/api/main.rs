//! Black-box tests: a real server on a random loopback port with a temporary
//! data directory, driven over HTTP. All in one binary so it links once.

mod account_deletion;
mod accounts;
mod admin;
mod blocks;
mod comments;
mod crash;
mod database_faults;
mod edits;
mod events;
mod exports;
mod faults;
mod feed;
mod helpers;
mod hostile;
mod idempotency;
mod images;
mod migrate;
mod multinode;
mod orphans;
mod platform;
mod posts;
mod rate_limits;
mod restart;
mod safety;
mod slow_clients;
mod statements;
mod tus_clients;
mod uploads;
mod web_client;
