//! The fault proxy as a program, for peers that are not Rust tests (the
//! browser suite): `fault-proxy --upstream 127.0.0.1:8080 [faults]`. It prints
//! `fault-proxy listening on http://ADDR` once it accepts connections, then
//! runs until its standard input closes, when it prints what it did and exits.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use fault_proxy::{FaultProxy, Faults};

#[derive(Parser)]
#[command(about = "A loopback TCP proxy that behaves like a bad mobile network")]
struct Args {
    /// Where to forward (the server under test).
    #[arg(long)]
    upstream: SocketAddr,
    /// Client-to-server bandwidth cap, bytes per second.
    #[arg(long)]
    upload_bytes_per_sec: Option<u64>,
    /// Forward client bytes in pieces of at most this size.
    #[arg(long)]
    max_piece: Option<usize>,
    /// After this many client bytes on a connection, reset the client's side
    /// and leave the server's open and silent (a phone losing coverage).
    #[arg(long)]
    silent_drop_after: Option<u64>,
    /// Delay added to every piece of data, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let faults = Faults {
        upload_bytes_per_sec: args.upload_bytes_per_sec,
        max_piece: args.max_piece,
        silent_drop_after: args.silent_drop_after,
        latency: Duration::from_millis(args.latency_ms),
        ..Faults::default()
    };
    let proxy = FaultProxy::start(args.upstream, faults).await?;
    println!("fault-proxy listening on http://{}", proxy.addr());
    // Runs until stdin closes (the test ends it by closing the pipe).
    let mut sink = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await?;
    println!(
        "fault-proxy: {} bytes to the server, {} silent drops",
        proxy.bytes_to_server(),
        proxy.silent_drops()
    );
    Ok(())
}
