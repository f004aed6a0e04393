//! Embedded LLM costs (`cargo bench --bench llm`): SmolLM2-135M-Instruct Q4_1 on llama.cpp,
//! one context with all cores. Time to first token (TTFT: prefill + first sampled token) for a
//! ~50-token and a ~250-token prompt with a cold cache, the TTFT of a call's second turn that
//! reuses the first turn's KV cache (against the same prompt cold), decode tokens/s, and the
//! resident memory of loading the model and of each context. Results are recorded in
//! `benches/README.md` ("LLM").

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use switchboard::providers::llm::{ChatEvent, ChatMessage, ChatRequest, LlamaLlm, LlmEngine};

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/llm/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Resident set size of this process in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A fresh number per request: put first, it defeats prefix reuse (cold-cache measurements).
fn nonce() -> u64 {
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

const SHORT_SYSTEM: &str = "You are a friendly receptionist at an Italian restaurant. Keep answers short.";

const LONG_SYSTEM: &str = "You are Sofia, the phone receptionist of Trattoria Bella, an Italian restaurant \
    at 12 Harbour Street. Opening hours: Tuesday to Sunday, 12:00 to 14:30 and 18:00 to 22:30; closed on \
    Mondays. Tables seat two, four or six guests; larger groups must call the manager. Reservations are \
    taken up to thirty days ahead; a table is held for fifteen minutes. The menu has vegetarian and vegan \
    dishes, gluten-free pasta on request, and a children's menu. Parking is free after 18:00 in the \
    garage behind the restaurant. Dogs are welcome on the terrace only. For a booking, always ask for the \
    name, the number of guests, the date and the time, then repeat them back. Never invent availability. \
    Speak in short, warm sentences suitable for a phone call. If the caller asks about allergies, say the \
    kitchen will call back. If the caller is upset, apologise and offer the manager.";

fn messages(system: &str, user: &str) -> Vec<ChatMessage> {
    vec![ChatMessage::system(format!("Call {}. {system}", nonce())), ChatMessage::user(user)]
}

fn request(messages: Vec<ChatMessage>, max_tokens: u32, session: &str) -> ChatRequest {
    ChatRequest {
        messages,
        tools: vec![],
        model: String::new(),
        max_tokens,
        temperature: 0.0,
        session: Some(session.to_string()),
    }
}

/// Runs one reply to the end: (time to first delta, total time, prompt tokens, completion tokens, text).
fn run(llm: &LlamaLlm, req: ChatRequest) -> (Duration, Duration, u32, u32, String) {
    let t = Instant::now();
    let mut rx = llm.chat(req);
    let mut first = None;
    let mut text = String::new();
    while let Some(ev) = rx.blocking_recv() {
        match ev.expect("reply failed") {
            ChatEvent::Delta(d) => {
                first.get_or_insert_with(|| t.elapsed());
                text.push_str(&d);
            }
            ChatEvent::Done { prompt_tokens, completion_tokens, .. } => {
                return (first.unwrap_or_default(), t.elapsed(), prompt_tokens, completion_tokens, text);
            }
            ChatEvent::ToolCall(_) => {}
        }
    }
    panic!("no Done");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Memory: RSS delta of loading with `contexts` contexts, and after filling each with a
/// 250-token prompt (KV cache and compute buffers touched). In KiB.
fn memory(contexts: usize) -> (u64, u64) {
    let before = rss_kib();
    let llm = LlamaLlm::load(model_path(), contexts).unwrap();
    let loaded = rss_kib();
    let replies: Vec<_> = (0..contexts)
        .map(|i| llm.chat(request(messages(LONG_SYSTEM, "Hi there!"), 16, &format!("mem-{i}"))))
        .collect();
    for mut rx in replies {
        while rx.blocking_recv().is_some() {}
    }
    (loaded - before, rss_kib() - before)
}

/// Runs [`memory`] in a fresh process of this bench (`LLM_BENCH_MEMORY=n`) so that nothing
/// loaded before skews the figure.
fn memory_in_child(contexts: usize) -> (u64, u64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("LLM_BENCH_MEMORY", contexts.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().filter_map(|w| w.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn llm(c: &mut Criterion) {
    if !model_path().exists() {
        eprintln!("SKIP: {} missing (make models)", model_path().display());
        return;
    }
    if let Ok(n) = std::env::var("LLM_BENCH_MEMORY") {
        let (loaded, used) = memory(n.parse().unwrap());
        println!("{loaded} {used}");
        std::process::exit(0);
    }
    let mut used = Vec::new();
    for contexts in [1, 2, 4] {
        let (l, u) = memory_in_child(contexts);
        eprintln!(
            "memory, {contexts} context(s): load +{} MiB, after a 250-token reply in each +{} MiB",
            l / 1024,
            u / 1024
        );
        used.push(u);
    }
    eprintln!("memory: ≈{} MiB per extra context", (used[2] - used[0]) / 3 / 1024);

    let t = Instant::now();
    let llm = LlamaLlm::load(model_path(), 1).unwrap();
    eprintln!("load (1 context): {:?}", t.elapsed());

    let short_user = "Hello! Do you have a table for two tonight?";
    let long_user =
        "Hello, I would like to book a table for four people on Saturday at eight, is that possible?";
    for (name, system, user) in [("short", SHORT_SYSTEM, short_user), ("long", LONG_SYSTEM, long_user)] {
        let (ttft, _, prompt, _, text) = run(&llm, request(messages(system, user), 1, "probe"));
        eprintln!("{name} prompt: {prompt} tokens, cold TTFT {ttft:?}, first token {text:?}");
    }

    // Decode speed: time after the first delta over the tokens after the first.
    let mut rates = Vec::new();
    for _ in 0..5 {
        let req = request(
            messages(SHORT_SYSTEM, "Describe your three most popular dishes in detail."),
            128,
            "decode",
        );
        let (ttft, total, _, completion, _) = run(&llm, req);
        if completion > 16 {
            rates.push((completion - 1) as f64 / (total - ttft).as_secs_f64());
        }
    }
    eprintln!("decode: median {:.1} tokens/s over {:?}", median(rates.clone()), rates);

    let mut g = c.benchmark_group("llm");
    g.sample_size(15).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    g.bench_function("ttft_cold_50tok", |b| {
        b.iter(|| run(&llm, request(messages(SHORT_SYSTEM, short_user), 1, "cold")).0)
    });
    g.bench_function("ttft_cold_250tok", |b| {
        b.iter(|| run(&llm, request(messages(LONG_SYSTEM, long_user), 1, "cold")).0)
    });
    // Second turn of a call whose first turn (250-token prompt + reply) is in the cache, and the
    // very same second-turn prompt with a cold cache.
    let second_turn = |warm: bool| {
        let mut history = messages(LONG_SYSTEM, long_user);
        let session = format!("call-{}", nonce());
        let (_, _, _, _, reply) = run(&llm, request(history.clone(), 24, &session));
        history.push(ChatMessage::assistant(reply));
        history.push(ChatMessage::user("Yes please, the name is Rossi. Is there parking nearby?"));
        if !warm {
            // Another call takes the context in between.
            run(&llm, request(messages(SHORT_SYSTEM, short_user), 1, "other"));
        }
        let (ttft, _, prompt, _, _) = run(&llm, request(history, 1, &session));
        (ttft, prompt)
    };
    let (warm, prompt) = second_turn(true);
    let (cold, _) = second_turn(false);
    eprintln!("second turn ({prompt} prompt tokens): TTFT with reuse {warm:?}, cold {cold:?}");
    g.bench_function("ttft_turn2_reuse", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| second_turn(true).0).sum())
    });
    g.bench_function("ttft_turn2_cold", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| second_turn(false).0).sum())
    });
    g.finish();
}

criterion_group!(benches, llm);
criterion_main!(benches);
