//! The release binary as a benchmark's server: started on a free port, its
//! memory read from /proc.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncBufReadExt;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts `target/release/imagegram serve` on a free port with rate limits off
/// and `extra` flags; returns the child (killed when dropped) and its base URL.
pub async fn start_server(data_dir: &Path, extra: &[&str]) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(root().join("target/release/imagegram"))
        .args(["serve", "--listen", "127.0.0.1:0", "--rate-limit", "off"])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // The benchmark's server ends with it, even on a panic.
        .kill_on_drop(true)
        .spawn()
        .expect("build it first: cargo build --release");
    let mut line = String::new();
    tokio::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("imagegram listening on ")
        .unwrap()
        .to_owned();
    (child, base)
}

/// A process's resident memory now (`VmRSS`) or at its peak (`VmHWM`), in KiB.
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
