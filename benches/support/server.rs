//! The release `switchboard serve` as a separate process for the capacity benches: a fresh
//! SQLite file and recordings folder in a temporary directory, warn-level logs, killed on drop;
//! and what the benches read from it (CPU time, resident memory, `/metrics` values).
//!
//! `SERVER_BIN` runs another build (an A/B) or a wrapper (`exec taskset -c 1 … "$@"`) instead of
//! this build's binary.

// Each bench uses part of this.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub struct Server {
    child: Child,
    /// `127.0.0.1:port`.
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `serve` on a free port with `key` as the API key and `args` after the defaults.
    pub fn start(key: &str, max_calls: usize, args: &[&str]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let bin =
            std::env::var("SERVER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").to_string());
        let child = Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--database-url")
            .arg(format!("sqlite://{}/bench.db", dir.path().display()))
            .arg("--recordings-dir")
            .arg(dir.path().join("recordings"))
            .args(["--max-calls", &max_calls.to_string()])
            .args(args)
            .env("SWITCHBOARD_API_KEY", key)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("server starts");
        Server { child, addr: format!("127.0.0.1:{port}"), _dir: dir }
    }

    /// (user + system CPU seconds, resident set bytes) of the server process.
    pub fn usage(&self) -> (f64, u64) {
        let pid = self.child.id();
        let rss_kb = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0);
        (cpu_seconds(&format!("/proc/{pid}/stat")), rss_kb * 1024)
    }

    /// The sum of every series of `name` on `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.addr)).await.unwrap().text().await.unwrap();
        metric(&text, name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of every series of `name` in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// User + system CPU seconds from a `/proc/<pid>/stat` file (`/proc/self/stat`: this process).
pub fn cpu_seconds(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, r)| r.split(' ').collect()).unwrap_or_default();
    let num = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (num(11) + num(12)) / 100.0 // USER_HZ
}
