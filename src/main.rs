//! The `switchboard` binary: parses the command line and hands over to the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard::config::RawConfig;
use switchboard::loadtest::LoadtestArgs;
use switchboard::server::{shutdown_signal, Server};
use switchboard::store::Store;

#[derive(Parser)]
#[command(name = "switchboard", version, about = "Voice agent runtime for telephony media websockets")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once at start-up: the size of the `serve` settings does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the server (REST API, operator endpoints, media websockets).
    Serve(RawConfig),
    /// Manage API keys (stored hashed; a new key is printed once).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        /// Database URL [default: sqlite://switchboard.db].
        #[arg(long, env = "DATABASE_URL", global = true)]
        database_url: Option<String>,
    },
    /// Load-test a media-websocket server: simulated gateway callers play recorded calls and
    /// measure response latency, barge-in reaction, egress jitter and protocol faults.
    Loadtest(LoadtestArgs),
    /// Speak a text with a catalogue voice into a WAV file (16 kHz, 16-bit mono), offline: to
    /// hear a voice, or to make recorded-call fixtures (audio-fixtures/generate-calls.sh).
    Say(SayArgs),
}

#[derive(clap::Args)]
struct SayArgs {
    /// The words to speak.
    text: String,
    /// Catalogue voice id (`joe` = Piper, the others espeak-ng; see `GET /v1/voices`).
    #[arg(long, default_value = "joe")]
    voice: String,
    /// Speaking rate, 0.5 … 2.0 (1 = the voice's natural rate).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Where the model weights are [default: models].
    #[arg(long, env = "SWITCHBOARD_MODELS_DIR", default_value = "models")]
    models_dir: std::path::PathBuf,
    /// The WAV file to write.
    #[arg(long, short)]
    out: std::path::PathBuf,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key and print it (only this once).
    Create {
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys: id, name, visible prefix, created, revoked.
    List,
    /// Revoke a key by id; requests with it are refused from then on.
    Revoke { id: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(raw) => serve(raw).await,
        Command::Keys { action, database_url } => keys(action, database_url).await,
        Command::Loadtest(args) => loadtest(args).await,
        Command::Say(args) => say(args).await,
    }
}

/// Runs the load test, prints the table, writes the report and plot; exits 1 if a call failed.
async fn loadtest(args: LoadtestArgs) -> anyhow::Result<()> {
    let options = args.resolve()?;
    let report = switchboard::loadtest::run(options).await?;
    print!("{}", report.table());
    if let Some(out) = &args.out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(out, json + "\n").with_context(|| format!("cannot write {}", out.display()))?;
        println!("report     {}", out.display());
    }
    if let Some(plot) = args.plot_path() {
        let svg = switchboard::loadtest::plot::svg(&report);
        std::fs::write(&plot, svg).with_context(|| format!("cannot write {}", plot.display()))?;
        println!("plot       {}", plot.display());
    }
    if report.totals.failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// Synthesizes `args.text` with the voice's own engine (Piper for Piper's voices, which then
/// must be installed; espeak-ng for the others) and writes it as a 16 kHz WAV.
async fn say(args: SayArgs) -> anyhow::Result<()> {
    use switchboard::providers::tts::{espeak::EspeakTts, piper::PiperTts, TtsEngine, TtsRequest};
    use switchboard::voices::VoiceCatalogue;
    anyhow::ensure!(
        (0.5..=2.0).contains(&args.speed),
        "--speed must be within 0.5 … 2.0, not {}",
        args.speed
    );
    let catalogue = VoiceCatalogue::for_engines(&args.models_dir, false);
    let Some(voice) = catalogue.get(&args.voice) else {
        let ids: Vec<&str> = catalogue.all().iter().map(|v| v.voice_id).collect();
        let piper = args.models_dir.join(switchboard::voices::PIPER_JOE_MODEL);
        let hint = if piper.is_file() {
            String::new()
        } else {
            format!(" (Piper's voice joe needs {}: run `make models`)", piper.display())
        };
        anyhow::bail!("unknown --voice {:?}; installed voices: {}{hint}", args.voice, ids.join(", "));
    };
    let req = TtsRequest {
        text: args.text.clone(),
        engine_voice: voice.engine_voice.to_string(),
        speed: args.speed,
    };
    let pcm = if voice.provider == "piper" {
        let piper = PiperTts::load(&args.models_dir)
            .with_context(|| format!("voice {} needs Piper (run `make models`)", args.voice))?;
        piper.synthesize(req).await?
    } else {
        EspeakTts::new().synthesize(req).await?
    };
    let samples: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32_768.0).collect();
    let wav = switchboard::providers::stt::remote::wav_bytes(&samples, 16_000);
    std::fs::write(&args.out, wav).with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "{}: {:.2} s of {} ({})",
        args.out.display(),
        pcm.len() as f64 / 16_000.0,
        args.voice,
        voice.provider
    );
    Ok(())
}

async fn serve(raw: RawConfig) -> anyhow::Result<()> {
    let config = raw.resolve()?;
    switchboard::logging::init(config.log_format);
    // Installed first, so a SIGTERM during start-up is not the default "die at once".
    let shutdown = shutdown_signal();
    let listen = config.listen;
    let (server, created) = Server::prepare(config).await.context("start-up failed")?;
    if let Some(new) = created {
        // Printed to stdout once, on purpose; it is never logged.
        println!("No API key existed, so one was created. It is shown only this once:\n\n  {}\n", new.secret);
    }
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    server.run(listener, shutdown).await?;
    Ok(())
}

async fn keys(action: KeysAction, database_url: Option<String>) -> anyhow::Result<()> {
    let url = database_url.unwrap_or_else(|| switchboard::config::Config::default().database_url);
    let store = Store::connect(&url).await?;
    match action {
        KeysAction::Create { name } => {
            let new = store.create_key(name.as_deref()).await?;
            eprintln!("created key {} — store it now, it is not shown again:", new.key.id);
            println!("{}", new.secret);
        }
        KeysAction::List => {
            for k in store.list_keys().await? {
                println!(
                    "{}\t{}\t{}…\t{}\t{}",
                    k.id,
                    k.name.as_deref().unwrap_or("-"),
                    k.prefix,
                    k.created_at,
                    k.revoked_at.as_deref().map_or("active".to_string(), |t| format!("revoked {t}"))
                );
            }
        }
        KeysAction::Revoke { id } => {
            store.revoke_key(&id).await?;
            println!("revoked {id}");
        }
    }
    store.close().await;
    Ok(())
}
