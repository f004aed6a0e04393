//! The `switchboard` binary as a subprocess: `keys create|list|revoke` and `serve` (key handling,
//! JSON logs without secrets, SIGTERM shutdown), each against its own SQLite file; `say`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

/// Bound on every wait for the subprocess (start-up, a printed key, exit after SIGTERM).
const WAIT: Duration = Duration::from_secs(20);

/// The binary with none of the caller's settings leaking in.
fn switchboard() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("SWITCHBOARD_") || name == "DATABASE_URL" || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn db_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("x.db").display())
}

/// Runs `switchboard keys …` to completion and asserts it succeeded; returns stdout.
fn keys(url: &str, args: &[&str]) -> String {
    let out = switchboard().arg("keys").args(args).arg("--database-url").arg(url).output().expect("run keys");
    assert!(out.status.success(), "keys {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// `keys create --name <name>`: the printed secret.
fn create_key(url: &str, name: &str) -> String {
    let out = keys(url, &["create", "--name", name]);
    let secret = out.trim().to_string();
    assert!(secret.starts_with("sb_live_") && secret.len() > "sb_live_".len() + 16, "stdout: {out:?}");
    assert!(!secret.contains(char::is_whitespace), "one key only: {out:?}");
    secret
}

/// The `keys list` line naming `name` (tab-separated: id, name, prefix, created, state).
fn key_line(url: &str, name: &str) -> Vec<String> {
    let out = keys(url, &["list"]);
    let lines: Vec<Vec<String>> = out
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .filter(|f: &Vec<String>| f.len() > 1 && f[1] == name)
        .collect();
    assert_eq!(lines.len(), 1, "one key named {name} in {out:?}");
    lines[0].clone()
}

/// All bytes SQLite keeps for this database: the file and its WAL/SHM companions.
fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["x.db", "x.db-wal", "x.db-shm", "x.db-journal"] {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

/// A running `switchboard serve` with its output collected off-thread.
struct Serve {
    child: Child,
    base: String,
    stdout: mpsc::Receiver<String>,
    stdout_seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Serve {
    fn start(url: &str, api_key: Option<&str>) -> Self {
        let port = free_port();
        let mut cmd = switchboard();
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            url,
            "--log-format",
            "json",
        ])
        .env("SWITCHBOARD_DRAIN_TIMEOUT_SECS", "5")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if let Some(k) = api_key {
            cmd.env("SWITCHBOARD_API_KEY", k);
        }
        let mut child = cmd.spawn().expect("spawn serve");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stdout: rx,
            stdout_seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Polls `/healthz` until it answers 200; fails if the process exits first or time runs out.
    async fn wait_healthy(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "serve exited early with {status}; stderr: {}",
                    self.stderr.take().unwrap().join().unwrap()
                );
            }
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "/healthz did not answer within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (bounded) for a stdout line containing `needle`.
    fn wait_stdout(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.stdout_seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no stdout line with {needle:?}; saw {:?}", self.stdout_seen),
            }
        }
    }

    /// SIGTERM, then a bounded wait for the exit; returns the status, all stdout and all stderr.
    fn terminate(mut self) -> (ExitStatus, String, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "serve did not exit within {WAIT:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = self.stderr.take().unwrap().join().expect("stderr reader");
        let mut stdout = std::mem::take(&mut self.stdout_seen);
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(5)) {
            stdout.push(line);
        }
        (status, stdout.join("\n"), stderr)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // Only on a failed test: the child is ours, ended by its handle.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

async fn agents_status(client: &reqwest::Client, base: &str, key: Option<&str>) -> StatusCode {
    let mut req = client.get(format!("{base}/v1/agents"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.expect("GET /v1/agents").status()
}

/// Each non-empty stderr line is a JSON object; returns them.
fn json_lines(stderr: &str) -> Vec<Value> {
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    assert!(!lines.is_empty(), "serve logged nothing");
    for l in &lines {
        assert!(l.is_object() && l.get("level").is_some(), "not a log object: {l}");
    }
    lines
}

#[test]
fn keys_create_list_revoke_and_the_secret_is_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let url = db_url(dir.path());
    let secret = create_key(&url, "ci");
    let other = create_key(&url, "other");
    assert_ne!(secret, other);

    let line = key_line(&url, "ci");
    let id = line[0].clone();
    assert!(!id.is_empty());
    assert_eq!(line.last().unwrap(), "active", "{line:?}");
    let listing = keys(&url, &["list"]);
    assert!(listing.contains(&id) && listing.contains("ci"), "{listing}");
    assert!(!listing.contains(&secret) && !listing.contains(&other), "list shows a secret: {listing}");

    let bytes = database_bytes(dir.path());
    assert!(contains(&bytes, &id), "the key row is not in the database files");
    assert!(!contains(&bytes, &secret), "the secret is stored in clear");
    assert!(!contains(&bytes, &secret["sb_live_".len()..]), "the secret's random part is stored in clear");

    let out = keys(&url, &["revoke", &id]);
    assert!(out.contains(&id), "{out}");
    assert!(key_line(&url, "ci").last().unwrap().starts_with("revoked"), "{:?}", key_line(&url, "ci"));
    assert_eq!(key_line(&url, "other").last().unwrap(), "active");

    // DATABASE_URL from the environment works as well as the flag; an unknown id fails.
    let out: Output =
        switchboard().args(["keys", "revoke", "key_nope"]).env("DATABASE_URL", &url).output().unwrap();
    assert!(!out.status.success(), "revoking an unknown key succeeded");
    let out = switchboard().args(["keys", "list"]).env("DATABASE_URL", &url).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    assert!(!contains(&database_bytes(dir.path()), &secret));
}

#[tokio::test]
async fn serve_with_a_configured_key_logs_json_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = db_url(dir.path());
    let revoked = create_key(&url, "old");
    let revoked_id = key_line(&url, "old")[0].clone();
    keys(&url, &["revoke", &revoked_id]);
    let known = format!("sb_live_test{}", ulid::Ulid::new());

    let mut serve = Serve::start(&url, Some(&known));
    let client = client();
    serve.wait_healthy(&client).await;
    assert_eq!(agents_status(&client, &serve.base, Some(&known)).await, StatusCode::OK);
    assert_eq!(agents_status(&client, &serve.base, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(agents_status(&client, &serve.base, Some(&revoked)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(agents_status(&client, &serve.base, Some("sb_live_wrong")).await, StatusCode::UNAUTHORIZED);

    let (status, stdout, stderr) = serve.terminate();
    assert!(status.success(), "serve exited with {status} after SIGTERM; stderr: {stderr}");
    assert!(!stdout.contains("sb_live_"), "a key was printed although one was configured: {stdout}");
    let lines = json_lines(&stderr);
    assert!(lines.len() >= 2, "expected start-up and request logs, got {stderr}");
    assert!(!stderr.contains(&known), "the API key reached the log");
    assert!(!stderr.contains(&revoked), "a revoked key reached the log");
    assert!(!contains(&database_bytes(dir.path()), &known), "SWITCHBOARD_API_KEY is stored in clear");
}

#[tokio::test]
async fn serve_on_a_fresh_database_prints_a_working_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = db_url(dir.path());
    let client = client();

    let mut serve = Serve::start(&url, None);
    let line = serve.wait_stdout("sb_live_");
    let key = line.split_whitespace().find(|w| w.starts_with("sb_live_")).unwrap().to_string();
    serve.wait_healthy(&client).await;
    assert_eq!(agents_status(&client, &serve.base, Some(&key)).await, StatusCode::OK);
    assert_eq!(agents_status(&client, &serve.base, None).await, StatusCode::UNAUTHORIZED);
    let (status, stdout, stderr) = serve.terminate();
    assert!(status.success(), "exit {status}; stderr: {stderr}");
    assert_eq!(stdout.matches("sb_live_").count(), 1, "the key is printed exactly once: {stdout}");
    json_lines(&stderr);
    assert!(!stderr.contains(&key), "the created key reached the log");
    assert!(!contains(&database_bytes(dir.path()), &key), "the created key is stored in clear");

    // A restart on the same database keeps that key and prints none.
    let mut again = Serve::start(&url, None);
    again.wait_healthy(&client).await;
    assert_eq!(agents_status(&client, &again.base, Some(&key)).await, StatusCode::OK);
    let (status, stdout, stderr) = again.terminate();
    assert!(status.success(), "exit {status}; stderr: {stderr}");
    assert!(!stdout.contains("sb_live_"), "a second key was printed: {stdout}");
}

/// Samples of a 16 kHz mono 16-bit WAV written by `say` (its 44-byte header checked).
fn say_wav(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).expect("say wrote the file");
    assert_eq!((&bytes[0..4], &bytes[8..16]), (&b"RIFF"[..], &b"WAVEfmt "[..]));
    assert_eq!(u32::from_le_bytes(bytes[24..28].try_into().unwrap()), 16_000, "16 kHz");
    assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 1, "mono");
    bytes[44..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

#[test]
fn say_speaks_a_catalogue_voice_into_a_wav_and_refuses_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let models = std::env::var_os("SWITCHBOARD_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    let say = |voice: &str, speed: &str, out: &Path| {
        switchboard()
            .args(["say", "--voice", voice, "--speed", speed, "--out"])
            .arg(out)
            .arg("Thank you for calling.")
            .env("SWITCHBOARD_MODELS_DIR", &models)
            .output()
            .expect("runs")
    };
    let mut voices = vec!["espeak-en-us"];
    if models.join(switchboard::voices::PIPER_JOE_MODEL).is_file() {
        voices.push("joe");
    } else {
        eprintln!("SKIP joe: Piper's weights are not in {} (`make models`)", models.display());
    }
    for voice in voices {
        let (slow, fast) =
            (dir.path().join(format!("{voice}-slow.wav")), dir.path().join(format!("{voice}-fast.wav")));
        for (out, speed) in [(&slow, "0.8"), (&fast, "1.6")] {
            let o = say(voice, speed, out);
            assert!(o.status.success(), "{voice}: {}", String::from_utf8_lossy(&o.stderr));
        }
        let (slow, fast) = (say_wav(&slow), say_wav(&fast));
        let peak = slow.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(slow.len() > 8_000 && peak > 3_000, "{voice}: {} samples, peak {peak}", slow.len());
        assert!(
            fast.len() * 10 < slow.len() * 8,
            "{voice}: speed 1.6 is shorter: {} vs {}",
            fast.len(),
            slow.len()
        );
    }
    let bad = dir.path().join("bad.wav");
    let o = say("nobody", "1.0", &bad);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--voice") && err.contains("espeak-en-us"), "{err}");
    let o = say("espeak-en-us", "3", &bad);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--speed"), "{err}");
    assert!(!bad.exists(), "nothing written on a refusal");
}
