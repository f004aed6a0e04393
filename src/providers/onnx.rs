//! Process-wide onnxruntime: loads `libonnxruntime.so` from the models directory once, keeps the
//! one ORT environment alive for the life of the process, and builds sessions with a chosen
//! number of intra-op threads.
//!
//! The library comes from the PyPI `onnxruntime` wheel (`scripts/fetch_models.py`, sha256-pinned)
//! and is loaded with `dlopen` (the `ort` crate's `load-dynamic` feature): nothing is linked or
//! downloaded at build time, and a server without the library still runs — the engines that
//! need it report [`OnnxError::LibraryMissing`] and their callers fall back (e.g. VAD to
//! webrtc-vad).
//!
//! Call [`runtime`] before [`session`]; without it `ort` would look for a system-wide
//! `libonnxruntime.so` and panic if there is none, so [`session`] refuses to run first.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

/// File name of the pinned onnxruntime build inside `<models_dir>/lib/`.
pub const LIBRARY_FILE: &str = "libonnxruntime.so.1.32.0";

/// onnxruntime set-up and session faults.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("onnxruntime library not found at {} (fetch it with `make models`)", path.display())]
    LibraryMissing { path: PathBuf },
    #[error("cannot load onnxruntime from {}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("onnxruntime is not set up: call providers::onnx::runtime(models_dir) first")]
    NotInitialised,
    #[error("model file not found at {}", path.display())]
    ModelMissing { path: PathBuf },
    #[error("onnxruntime: {context}: {source}")]
    Ort {
        context: &'static str,
        #[source]
        source: ort::Error,
    },
}

/// Result alias for this module.
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;

/// The loaded runtime, kept for the life of the process.
struct Runtime {
    /// Which library file was loaded (later calls naming another one get a warning).
    library: PathBuf,
    /// The one ORT environment; `ort` only holds a weak reference to it, so this keeps it alive.
    _environment: Environment,
}

/// Set once by the first successful [`runtime`] call.
static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Serialises first-time set-up so two threads never race `dlopen` + environment creation.
static INIT: Mutex<()> = Mutex::new(());

/// Where [`runtime`] looks for the library: `<models_dir>/lib/libonnxruntime.so.1.32.0`.
pub fn library_path(models_dir: &Path) -> PathBuf {
    models_dir.join("lib").join(LIBRARY_FILE)
}

/// Loads onnxruntime from `models_dir` and creates the process-wide environment, once.
///
/// Idempotent: later calls return `Ok(())` at once. A directory without the library is always
/// [`OnnxError::LibraryMissing`]. Only one onnxruntime can live in a process, so if a later call
/// names another directory that has one, the first library stays in use (logged as a warning).
/// A failed call leaves nothing behind and may be retried.
pub fn runtime(models_dir: &Path) -> Result<()> {
    let path = library_path(models_dir);
    // `ort` resolves a relative path against the executable's directory first; the models
    // directory is relative to the working directory, so it gets an absolute one.
    let path = std::path::absolute(&path).unwrap_or(path);
    // Checked even when a runtime is up, so a wrong directory fails the same way every time.
    if !path.is_file() {
        return Err(OnnxError::LibraryMissing { path });
    }
    if let Some(rt) = RUNTIME.get() {
        warn_if_other(rt, &path);
        return Ok(());
    }
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(rt) = RUNTIME.get() {
        warn_if_other(rt, &path);
        return Ok(());
    }
    let builder =
        ort::init_from(&path).map_err(|e| OnnxError::Load { path: path.clone(), message: e.to_string() })?;
    let environment = builder
        .with_name("switchboard")
        .with_telemetry(false)
        .build()
        .map_err(|source| OnnxError::Ort { context: "creating the environment", source })?;
    tracing::info!(library = %path.display(), "onnxruntime loaded");
    let _ = RUNTIME.set(Runtime { library: path, _environment: environment });
    Ok(())
}

fn warn_if_other(rt: &Runtime, requested: &Path) {
    if rt.library != requested {
        tracing::warn!(
            loaded = %rt.library.display(),
            requested = %requested.display(),
            "onnxruntime already loaded from another directory; keeping it"
        );
    }
}

/// Whether [`runtime`] has succeeded in this process.
pub fn is_loaded() -> bool {
    RUNTIME.get().is_some()
}

/// Builds an inference session for the ONNX model at `model_path`.
///
/// `intra_threads` is the number of threads one `run` may use (1 for small streaming models
/// such as VAD: no thread pool, no hand-off, and many calls already keep every core busy).
/// Runs are sequential (no inter-op pool), spinning is off (idle pool threads would otherwise
/// burn CPU between the short runs), and graph optimisation is at its highest level.
pub fn session(model_path: &Path, intra_threads: usize) -> Result<Session> {
    let Some(rt) = RUNTIME.get() else {
        return Err(OnnxError::NotInitialised);
    };
    if !model_path.is_file() {
        return Err(OnnxError::ModelMissing { path: model_path.to_path_buf() });
    }
    let ort = |context| move |source: ort::Error| OnnxError::Ort { context, source };
    let opts = |context| move |e: ort::Error<_>| OnnxError::Ort { context, source: e.into() };
    Session::builder(&rt._environment)
        .map_err(ort("creating a session builder"))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(opts("setting the optimisation level"))?
        .with_intra_threads(intra_threads.max(1))
        .map_err(opts("setting intra-op threads"))?
        .with_inter_threads(1)
        .map_err(opts("setting inter-op threads"))?
        .with_parallel_execution(false)
        .map_err(opts("setting sequential execution"))?
        .with_intra_op_spinning(false)
        .map_err(opts("disabling intra-op spinning"))?
        .commit_from_file(model_path)
        .map_err(ort("loading the model"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = runtime(dir.path()).unwrap_err();
        assert!(matches!(err, OnnxError::LibraryMissing { .. }), "{err}");
        assert!(err.to_string().contains("lib/libonnxruntime.so.1.32.0"), "{err}");
    }

    #[test]
    fn runtime_is_idempotent_and_sessions_need_a_model_file() {
        let models = std::env::var_os("SWITCHBOARD_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
        runtime(&models).unwrap_or_else(|e| panic!("{e} (run `make models`)"));
        runtime(&models).unwrap();
        assert!(is_loaded());
        let err = session(&models.join("no/such.onnx"), 1).unwrap_err();
        assert!(matches!(err, OnnxError::ModelMissing { .. }), "{err}");
        session(&models.join("vad/silero_vad_op18_ifless.onnx"), 1).unwrap();
    }
}
