//! A loopback TCP proxy that behaves like a bad mobile network, for tests and
//! benchmarks of resumable uploads: it resets connections after a number of
//! uploaded bytes, adds latency, caps bandwidth and stalls, and counts the bytes
//! clients sent so a test can tell how much was sent twice.

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
}

#[derive(Debug, Default)]
struct Counters {
    to_server: AtomicU64,
    resets: AtomicU64,
    stalled: AtomicBool,
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
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(client: TcpStream, server: TcpStream, faults: Faults, counters: Arc<Counters>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let down = tokio::spawn(pump_down(server_read, client_write, faults.latency));
    let reset = pump_up(client_read, server_write, &faults, &counters).await;
    if let Some((client_read, mut server_write)) = reset {
        // The client sees its connection reset. The server sees the stream end
        // after the last byte the network delivered: an RST towards it would make
        // its kernel discard data already received, which a dropped radio link
        // does not do.
        let _ = client_read.as_ref().set_zero_linger();
        let _ = server_write.shutdown().await;
        down.abort();
        counters.resets.fetch_add(1, Ordering::Relaxed);
    } else {
        let _ = down.await;
    }
}

/// Client to server. Returns the halves to reset if the connection is to be cut.
async fn pump_up(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    faults: &Faults,
    counters: &Counters,
) -> Option<(OwnedReadHalf, OwnedWriteHalf)> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent: u64 = 0;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return None;
            }
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        let mut cut = false;
        if let Some(limit) = faults.reset_after {
            let left = limit.saturating_sub(sent) as usize;
            if chunk.len() >= left {
                chunk = &chunk[..left];
                cut = true;
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
        if cut {
            let _ = to.flush().await;
            return Some((from, to));
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

async fn pump_down(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, latency: Duration) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
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
}
