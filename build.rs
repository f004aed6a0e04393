//! Build script: finds the RNNoise model that `nnnoiseless` ships (`src/weights.rnn` of its
//! crate source, which cargo has already fetched because `nnnoiseless` is a dependency) and
//! copies it to `OUT_DIR/rnnoise-weights.rnn` for `src/audio/rnnoise/model.rs` to
//! `include_bytes!`. The native RNNoise engine then runs exactly the model `nnnoiseless` runs,
//! without a copy of the weights in this repository.
//!
//! Where it looks, in order:
//! 1. `$SWITCHBOARD_RNNOISE_WEIGHTS`, if set (a path to a `weights.rnn`; for vendored or
//!    offline builds where the registry source directory does not exist);
//! 2. `<cargo home>/registry/src/*/nnnoiseless-<version>/src/weights.rnn`, with `<version>`
//!    the one `Cargo.lock` pins and `<cargo home>` `$CARGO_HOME` or `$HOME/.cargo`.
//!
//! If neither is found the build fails with a message naming every path it tried.

use std::path::{Path, PathBuf};

const CRATE: &str = "nnnoiseless";
const OVERRIDE_ENV: &str = "SWITCHBOARD_RNNOISE_WEIGHTS";

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-env-changed={OVERRIDE_ENV}");
    println!("cargo:rerun-if-env-changed=CARGO_HOME");

    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("rnnoise-weights.rnn");

    let source = match std::env::var_os(OVERRIDE_ENV) {
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.is_file() {
                fail(&format!("{OVERRIDE_ENV} is set to {}, which is not a file", path.display()));
            }
            path
        }
        None => find_in_registry(&manifest_dir),
    };
    println!("cargo:rerun-if-changed={}", source.display());
    if let Err(e) = std::fs::copy(&source, &out) {
        fail(&format!("cannot copy {} to {}: {e}", source.display(), out.display()));
    }
}

/// `weights.rnn` of the locked `nnnoiseless` version in cargo's registry sources.
fn find_in_registry(manifest_dir: &Path) -> PathBuf {
    let lock_path = manifest_dir.join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap_or_else(|e| {
        fail(&format!("cannot read {} to find the locked {CRATE} version: {e}", lock_path.display()))
    });
    let version = locked_version(&lock, CRATE)
        .unwrap_or_else(|| fail(&format!("{} has no [[package]] named {CRATE}", lock_path.display())));

    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| fail("neither CARGO_HOME nor HOME is set: cannot find cargo's registry"));
    let registry_src = cargo_home.join("registry").join("src");
    let relative = Path::new(&format!("{CRATE}-{version}")).join("src").join("weights.rnn");

    let mut tried = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&registry_src) {
        let mut indexes: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        indexes.sort();
        for index in indexes {
            let candidate = index.join(&relative);
            if candidate.is_file() {
                return candidate;
            }
            tried.push(candidate);
        }
    }
    if tried.is_empty() {
        tried.push(registry_src.join("*").join(&relative));
    }
    let tried: Vec<String> = tried.iter().map(|p| format!("  {}", p.display())).collect();
    fail(&format!(
        "the RNNoise model of {CRATE} {version} was not found; looked for\n{}\n\
         (run `cargo fetch` so cargo unpacks {CRATE}'s source, or set {OVERRIDE_ENV} to a weights.rnn)",
        tried.join("\n")
    ))
}

/// The `version` of the `[[package]]` named `name` in a `Cargo.lock`.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{name}\"") {
            let next = lines.next()?.trim();
            return next.strip_prefix("version = \"")?.strip_suffix('"').map(str::to_owned);
        }
    }
    None
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    panic!("switchboard build script: {message}");
}
