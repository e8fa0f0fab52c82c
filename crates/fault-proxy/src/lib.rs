//! A loopback TCP proxy that behaves like a bad mobile network, for tests and
//! benchmarks: it resets connections after a number of uploaded bytes, drops
//! them silently (the server hears nothing more: no FIN, no RST, the way a phone
//! that lost coverage looks from the server), makes the client vanish right
//! after its request, stalls a body for good, adds latency, caps bandwidth and
//! drips, and counts the bytes clients sent so a test can tell how much was
//! sent twice. Put in front of PostgreSQL (`Faults::postgres`), it counts the
//! protocol messages the client sent, so a test can tell how many statements
//! and round trips a request costs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What goes wrong, per connection unless said otherwise.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Reset (TCP RST) a connection once the client has sent this many bytes on it.
    pub reset_after: Option<u64>,
    /// Delay added to every piece of data, in both directions.
    pub latency: Duration,
    /// Client-to-server bandwidth cap, in bytes per second.
    pub upload_bytes_per_sec: Option<u64>,
    /// Once, after this many client bytes in total, stop forwarding for a while.
    pub stall: Option<(u64, Duration)>,
    /// After this many client bytes on a connection, the client's side is reset
    /// and the server's side is left open and silent until the proxy is dropped.
    pub silent_drop_after: Option<u64>,
    /// After this many client bytes on a connection (a whole request, say), the
    /// client vanishes: its side is reset and the server's side closed, before
    /// any answer can reach it.
    pub vanish_after: Option<u64>,
    /// After this many client bytes on a connection, nothing more is forwarded
    /// either way, and both sides stay open (a body that stops mid-way).
    pub freeze_after: Option<u64>,
    /// Forward client bytes in pieces of at most this size (with
    /// `upload_bytes_per_sec`, a slow drip).
    pub max_piece: Option<usize>,
    /// The clients speak PostgreSQL's wire protocol (unencrypted: connect
    /// with `sslmode=disable`): count their messages by type.
    pub postgres: bool,
}

#[derive(Debug, Default)]
struct Counters {
    to_server: AtomicU64,
    resets: AtomicU64,
    silent_drops: AtomicU64,
    stalled: AtomicBool,
    /// HTTP responses seen going to clients, by status code.
    statuses: std::sync::Mutex<std::collections::HashMap<u16, u64>>,
    /// PostgreSQL frontend messages seen, by type byte.
    pg_messages: std::sync::Mutex<std::collections::HashMap<u8, u64>>,
    /// Sockets left open and quiet on purpose; closed when the proxy is dropped.
    held: std::sync::Mutex<Vec<Box<dyn std::any::Any + Send>>>,
    /// An armed `cut_postgres_statement`, until a connection takes it.
    pg_cut: std::sync::Mutex<Option<PgCutPlan>>,
    /// PostgreSQL connections cut by one.
    pg_cuts: AtomicU64,
}

pub struct FaultProxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr, faults: Faults) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (faults, counters) = (faults.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, faults, counters).await;
                    }
                });
            }
        });
        Ok(FaultProxy {
            addr,
            counters,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes clients sent through the proxy (including what a reset cut off).
    pub fn bytes_to_server(&self) -> u64 {
        self.counters.to_server.load(Ordering::Relaxed)
    }

    pub fn resets(&self) -> u64 {
        self.counters.resets.load(Ordering::Relaxed)
    }

    /// How many HTTP responses with `status` went back to clients.
    pub fn responses_with_status(&self, status: u16) -> u64 {
        let statuses = self.counters.statuses.lock().expect("statuses");
        statuses.get(&status).copied().unwrap_or(0)
    }

    /// PostgreSQL statements the clients ran so far (with `Faults::postgres`):
    /// extended-protocol executions plus simple queries.
    pub fn pg_statements(&self) -> u64 {
        self.pg_messages(b'E') + self.pg_messages(b'Q')
    }

    /// PostgreSQL round trips so far (with `Faults::postgres`): each Sync or
    /// simple query is answered by a ReadyForQuery the client waits for.
    pub fn pg_round_trips(&self) -> u64 {
        self.pg_messages(b'S') + self.pg_messages(b'Q')
    }

    /// PostgreSQL frontend messages of type `kind` so far (`b'P'` Parse, ...).
    pub fn pg_messages(&self, kind: u8) -> u64 {
        let seen = self.counters.pg_messages.lock().expect("pg messages");
        seen.get(&kind).copied().unwrap_or(0)
    }

    /// Connections dropped silently (also counted in `resets`).
    pub fn silent_drops(&self) -> u64 {
        self.counters.silent_drops.load(Ordering::Relaxed)
    }

    /// Arms a cut (with `Faults::postgres`): the next connection to send a
    /// statement whose SQL contains `marker` is cut, `when` says where, as a
    /// database host that goes away mid-statement would cut it. The SQL is
    /// seen in Parse messages, so the client must not reuse prepared
    /// statements (sqlx: `statement-cache-capacity=0`). Once.
    pub fn cut_postgres_statement(&self, marker: &str, when: PgCut) {
        *self.counters.pg_cut.lock().expect("pg cut") = Some(PgCutPlan {
            marker: marker.as_bytes().to_vec(),
            when,
        });
    }

    /// PostgreSQL connections cut by `cut_postgres_statement` so far.
    pub fn postgres_cuts(&self) -> u64 {
        self.counters.pg_cuts.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.counters.held.lock().expect("held sockets").clear();
    }
}

/// Finds HTTP/1.1 status lines in a response stream cut into arbitrary pieces.
#[derive(Default)]
struct StatusLines {
    /// The end of the previous piece, where a status line may have begun.
    tail: Vec<u8>,
}

impl StatusLines {
    const MARK: &'static [u8] = b"HTTP/1.1 ";

    fn feed(&mut self, piece: &[u8]) -> Vec<u16> {
        let mut text = std::mem::take(&mut self.tail);
        text.extend_from_slice(piece);
        let mut found = Vec::new();
        let mut i = 0;
        while i + Self::MARK.len() + 3 <= text.len() {
            if text[i..].starts_with(Self::MARK) {
                let code = &text[i + Self::MARK.len()..i + Self::MARK.len() + 3];
                if let Some(status) = std::str::from_utf8(code).ok().and_then(|c| c.parse().ok()) {
                    found.push(status);
                }
                i += Self::MARK.len();
            } else {
                i += 1;
            }
        }
        let keep = (Self::MARK.len() + 2).min(text.len());
        self.tail = text[text.len() - keep..].to_vec();
        found
    }
}

/// Splits a PostgreSQL client's byte stream, cut into arbitrary pieces, into
/// its messages. The protocol is simple enough that a parser of our own is
/// shorter than adapting a client library to read the other side.
#[derive(Default)]
struct PgFrontend {
    /// Past the startup packet (untyped), so messages start with a type byte.
    started: bool,
    /// The header being read: type byte (once started) and 4-byte length.
    header: Vec<u8>,
    /// The current message's type, once its header is read.
    kind: Option<u8>,
    /// Bytes of the current message's body still to come.
    left: usize,
    /// The body of the current Parse or simple Query (their SQL text).
    text: Vec<u8>,
}

/// One whole client message, as `PgFrontend::feed` reports it.
struct PgMessage<'a> {
    kind: u8,
    /// Where it began and ended in the piece fed (a message that began in an
    /// earlier piece begins at 0).
    start: usize,
    end: usize,
    /// Its SQL text, for a Parse or a simple Query.
    text: &'a [u8],
}

impl PgFrontend {
    /// SSLRequest and GSSENCRequest: untyped like the startup packet, but the
    /// startup packet still follows.
    const NEGOTIATIONS: [u32; 2] = [80_877_103, 80_877_104];

    fn feed(&mut self, piece: &[u8], mut seen: impl FnMut(PgMessage<'_>)) {
        let mut at = 0;
        let mut start = 0;
        while at < piece.len() {
            if self.left == 0 && self.kind.is_none() {
                if self.header.is_empty() {
                    start = at;
                }
                let header_len = if self.started { 5 } else { 8 };
                let n = (header_len - self.header.len()).min(piece.len() - at);
                self.header.extend_from_slice(&piece[at..at + n]);
                at += n;
                if self.header.len() < header_len {
                    return;
                }
                let header = std::mem::take(&mut self.header);
                if self.started {
                    let len = u32::from_be_bytes(header[1..5].try_into().expect("4 bytes"));
                    self.left = (len as usize).saturating_sub(4);
                    self.kind = Some(header[0]);
                } else {
                    let len = u32::from_be_bytes(header[0..4].try_into().expect("4 bytes"));
                    let code = u32::from_be_bytes(header[4..8].try_into().expect("4 bytes"));
                    self.left = (len as usize).saturating_sub(8);
                    self.started = !Self::NEGOTIATIONS.contains(&code);
                    if self.left == 0 {
                        continue;
                    }
                }
            }
            let n = self.left.min(piece.len() - at);
            if matches!(self.kind, Some(b'P' | b'Q')) {
                self.text.extend_from_slice(&piece[at..at + n]);
            }
            at += n;
            self.left -= n;
            if self.left == 0 {
                if let Some(kind) = self.kind.take() {
                    seen(PgMessage {
                        kind,
                        start,
                        end: at,
                        text: &self.text,
                    });
                }
                self.text.clear();
            }
        }
    }
}

/// When `FaultProxy::cut_postgres_statement` cuts the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgCut {
    /// The statement reaches PostgreSQL and runs, but what would commit it
    /// (its Sync, or the COMMIT of the transaction it is in) does not: the
    /// server sees the connection end and rolls back.
    BeforeCommit,
    /// The commit reaches PostgreSQL, which commits; the connection ends
    /// before the client hears so.
    AfterCommit,
}

/// An armed `cut_postgres_statement`, and the connection that took it.
#[derive(Debug)]
struct PgCutPlan {
    marker: Vec<u8>,
    when: PgCut,
}

/// A connection's part in a `PgCutPlan`.
#[derive(Default)]
struct PgCutWatch {
    /// Taken by this connection: it cuts where the statement commits.
    taken: Option<PgCut>,
    /// The statement ran (a client may Parse and Sync once first, to learn
    /// the types, before it Binds and Executes).
    executed: bool,
    /// Inside BEGIN … COMMIT, sent as simple queries: the commit is the
    /// COMMIT, not the statement's own Sync.
    in_block: bool,
}

impl PgCutWatch {
    /// Where in the piece to cut, if this message commits the targeted statement.
    fn watch(&mut self, message: &PgMessage<'_>, counters: &Counters) -> Option<usize> {
        let simple = |word: &[u8]| {
            message.kind == b'Q'
                && message.text.len() >= word.len()
                && message.text[..word.len()].eq_ignore_ascii_case(word)
        };
        let (begins, ends) = (simple(b"BEGIN"), simple(b"COMMIT") || simple(b"ROLLBACK"));
        if self.taken.is_none() && matches!(message.kind, b'P' | b'Q') {
            let mut plan = counters.pg_cut.lock().expect("pg cut");
            let hit = plan.as_ref().is_some_and(|p| {
                message
                    .text
                    .windows(p.marker.len())
                    .any(|w| w == p.marker.as_slice())
            });
            if hit {
                self.taken = plan.take().map(|p| p.when);
                self.executed = message.kind == b'Q';
            }
        } else if self.taken.is_some() && message.kind == b'E' {
            self.executed = true;
        }
        let commits = self.executed
            && if self.in_block {
                ends
            } else {
                matches!(message.kind, b'S' | b'Q')
            };
        self.in_block = (self.in_block || begins) && !ends;
        match self.taken {
            Some(when) if commits => {
                counters.pg_cuts.fetch_add(1, Ordering::Relaxed);
                Some(match when {
                    PgCut::BeforeCommit => message.start,
                    PgCut::AfterCommit => message.end,
                })
            }
            _ => None,
        }
    }
}

/// A task that ends when its handle is dropped (tokio's handles detach instead).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a connection ends when a byte budget runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Client reset; the server sees its stream end after the last byte.
    Reset,
    /// Client reset; the server sees nothing more at all.
    Silent,
    /// Client reset and server closed right after the request.
    Vanish,
    /// Nothing more either way; both stay open.
    Freeze,
}

async fn relay(client: TcpStream, server: TcpStream, faults: Faults, counters: Arc<Counters>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let (frozen_tx, frozen_rx) = tokio::sync::watch::channel(false);
    let down = tokio::spawn(pump_down(
        server_read,
        client_write,
        faults.latency,
        frozen_rx,
        counters.clone(),
    ));
    let cut = pump_up(client_read, server_write, &faults, &counters).await;
    let Some((cut, client_read, mut server_write)) = cut else {
        let _ = down.await;
        return;
    };
    match cut {
        Cut::Reset | Cut::Vanish => {
            // The client sees its connection reset. The server sees the stream
            // end after the last byte the network delivered: an RST towards it
            // would make its kernel discard data already received, which a
            // dropped radio link does not do.
            let _ = client_read.as_ref().set_zero_linger();
            let _ = server_write.shutdown().await;
            down.abort();
            counters.resets.fetch_add(1, Ordering::Relaxed);
        }
        Cut::Silent => {
            let _ = client_read.as_ref().set_zero_linger();
            down.abort();
            drop(client_read);
            // Kept open, never written to or read from again: the server's side
            // of a link that simply went quiet.
            counters
                .held
                .lock()
                .expect("held sockets")
                .push(Box::new(server_write));
            counters.resets.fetch_add(1, Ordering::Relaxed);
            counters.silent_drops.fetch_add(1, Ordering::Relaxed);
        }
        Cut::Freeze => {
            let _ = frozen_tx.send(true);
            let mut held = counters.held.lock().expect("held sockets");
            held.push(Box::new(client_read));
            held.push(Box::new(server_write));
            held.push(Box::new(AbortOnDrop(down)));
        }
    }
}

/// Client to server. Returns how the connection is to be cut, if it is, with
/// the halves to cut.
async fn pump_up(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    faults: &Faults,
    counters: &Counters,
) -> Option<(Cut, OwnedReadHalf, OwnedWriteHalf)> {
    let mut buf = vec![0u8; faults.max_piece.unwrap_or(16 * 1024).clamp(1, 16 * 1024)];
    let budgets = [
        (faults.reset_after, Cut::Reset),
        (faults.silent_drop_after, Cut::Silent),
        (faults.vanish_after, Cut::Vanish),
        (faults.freeze_after, Cut::Freeze),
    ];
    let mut sent: u64 = 0;
    let mut postgres = faults.postgres.then(PgFrontend::default);
    let mut statement_cut = PgCutWatch::default();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return None;
            }
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        let mut cut = None;
        for (limit, kind) in budgets {
            if let Some(limit) = limit {
                let left = limit.saturating_sub(sent) as usize;
                if chunk.len() >= left && cut.is_none() {
                    chunk = &chunk[..left];
                    cut = Some(kind);
                }
            }
        }
        if let Some(parser) = postgres.as_mut() {
            let mut seen = counters.pg_messages.lock().expect("pg messages");
            let mut cut_at = None;
            parser.feed(chunk, |m| {
                if cut_at.is_none() {
                    *seen.entry(m.kind).or_default() += 1;
                    cut_at = statement_cut.watch(&m, counters);
                }
            });
            if let Some(at) = cut_at.filter(|_| cut.is_none()) {
                chunk = &chunk[..at];
                cut = Some(Cut::Reset);
            }
        }
        delay(faults, chunk.len()).await;
        if let Some((after, pause)) = faults.stall {
            let total = counters.to_server.load(Ordering::Relaxed);
            if total >= after && !counters.stalled.swap(true, Ordering::Relaxed) {
                tokio::time::sleep(pause).await;
            }
        }
        if to.write_all(chunk).await.is_err() {
            return None;
        }
        sent += chunk.len() as u64;
        counters
            .to_server
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if let Some(kind) = cut {
            let _ = to.flush().await;
            return Some((kind, from, to));
        }
    }
}

async fn delay(faults: &Faults, len: usize) {
    let mut wait = faults.latency;
    if let Some(rate) = faults.upload_bytes_per_sec.filter(|r| *r > 0) {
        wait += Duration::from_secs_f64(len as f64 / rate as f64);
    }
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

async fn pump_down(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    latency: Duration,
    frozen: tokio::sync::watch::Receiver<bool>,
    counters: Arc<Counters>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut seen = StatusLines::default();
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        for status in seen.feed(&buf[..n]) {
            *counters
                .statuses
                .lock()
                .expect("statuses")
                .entry(status)
                .or_default() += 1;
        }
        if *frozen.borrow() {
            // Frozen links deliver nothing; keep both ends open until dropped.
            std::future::pending::<()>().await;
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_found_across_pieces() {
        let mut seen = StatusLines::default();
        let mut all = Vec::new();
        for piece in [
            &b"HTTP/1.1 2"[..],
            b"04 No Content\r\n\r\nHTTP/1",
            b".1 409 Conflict\r\n",
        ] {
            all.extend(seen.feed(piece));
        }
        assert_eq!(all, [204, 409]);
    }

    #[test]
    fn postgres_messages_are_split_across_pieces() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&8u32.to_be_bytes());
        stream.extend_from_slice(&80_877_103u32.to_be_bytes()); // SSLRequest
        stream.extend_from_slice(&12u32.to_be_bytes());
        stream.extend_from_slice(&196_608u32.to_be_bytes()); // startup, protocol 3.0
        stream.extend_from_slice(b"u\0x\0");
        for (kind, body) in [
            (b'Q', &b"SELECT 1\0"[..]),
            (b'B', b"..."),
            (b'E', b""),
            (b'S', b""),
        ] {
            stream.push(kind);
            stream.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
            stream.extend_from_slice(body);
        }
        for piece_len in [1, 3, 7, stream.len()] {
            let mut parser = PgFrontend::default();
            let mut kinds = Vec::new();
            for piece in stream.chunks(piece_len) {
                parser.feed(piece, |m| kinds.push(m.kind));
            }
            assert_eq!(kinds, b"QBES", "pieces of {piece_len}");
        }
    }

    #[tokio::test]
    async fn resets_after_the_byte_budget_and_counts() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut sink = vec![0u8; 4096];
                    while let Ok(n) = s.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = FaultProxy::start(
            upstream,
            Faults {
                reset_after: Some(1000),
                ..Faults::default()
            },
        )
        .await
        .unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        let _ = c.write_all(&[7u8; 5000]).await;
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "the connection was cut");
        assert_eq!(proxy.bytes_to_server(), 1000);
        assert_eq!(proxy.resets(), 1);
    }

    /// A client that prepares first (Parse, Describe, Sync), then runs the
    /// statement (Bind, Execute, Sync): the cut falls on the second Sync.
    #[test]
    fn a_statement_cut_falls_on_the_sync_after_its_execute() {
        let message = |kind: u8, body: &[u8]| {
            let mut m = vec![kind];
            m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
            m.extend_from_slice(body);
            m
        };
        let mut stream = message(b'P', b"\0SELECT 1 -- other\0\0\0");
        stream.extend(message(b'S', b""));
        stream.extend(message(b'P', b"\0WITH marked AS (SELECT 1)\0\0\0"));
        stream.extend(message(b'D', b"S\0"));
        stream.extend(message(b'S', b""));
        stream.extend(message(b'B', b"\0\0\0\0\0\0"));
        stream.extend(message(b'E', b"\0\0\0\0\0"));
        let sync_at = stream.len();
        stream.extend(message(b'S', b""));
        // Where a connection sending `stream` is cut, armed for "marked".
        let cut_in = |stream: &[u8], when: PgCut| {
            let counters = Counters::default();
            *counters.pg_cut.lock().unwrap() = Some(PgCutPlan {
                marker: b"marked".to_vec(),
                when,
            });
            let (mut parser, mut watch) = (PgFrontend::default(), PgCutWatch::default());
            parser.started = true;
            let mut cut = None;
            parser.feed(stream, |m| {
                cut = cut.or_else(|| watch.watch(&m, &counters));
            });
            assert_eq!(counters.pg_cuts.load(Ordering::Relaxed), 1);
            assert!(counters.pg_cut.lock().unwrap().is_none(), "taken once");
            cut
        };
        assert_eq!(cut_in(&stream, PgCut::BeforeCommit), Some(sync_at));
        assert_eq!(cut_in(&stream, PgCut::AfterCommit), Some(sync_at + 5));
        // In BEGIN … COMMIT, the COMMIT is where it commits.
        let mut block = message(b'Q', b"BEGIN\0");
        block.extend(message(b'P', b"\0WITH marked AS (SELECT 1)\0\0\0"));
        block.extend(message(b'B', b"\0\0\0\0\0\0"));
        block.extend(message(b'E', b"\0\0\0\0\0"));
        block.extend(message(b'S', b""));
        let commit_at = block.len();
        block.extend(message(b'Q', b"COMMIT\0"));
        assert_eq!(cut_in(&block, PgCut::BeforeCommit), Some(commit_at));
        assert_eq!(cut_in(&block, PgCut::AfterCommit), Some(block.len()));
    }
}
