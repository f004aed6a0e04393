//! Cost of the voice-speed time-stretch: `TimeStretch::process` on one 20 ms frame of 16 kHz
//! speech (caller-hello, streamed frame after frame, wrapping at the end), per speed.
//!
//! Run: `cargo bench --bench stretch -- --warm-up-time 1 --measurement-time 3`.
//! Inputs are built outside the timed closures; every iteration is one 20 ms input frame (at
//! speed s it yields 20/s ms of output on average).

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use switchboard::audio::stretch::TimeStretch;

const RATE_HZ: u32 = 16_000;
const FRAME_SAMPLES: usize = RATE_HZ as usize / 50;

/// The samples of a 16-bit mono WAV fixture.
fn fixture(name: &str) -> Vec<i16> {
    let bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures").join(name)).unwrap();
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if &bytes[pos..pos + 4] == b"data" {
            return bytes[pos + 8..pos + 8 + len]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
        }
        pos += 8 + len + (len & 1);
    }
    panic!("{name}: no data chunk");
}

fn stretch(c: &mut Criterion) {
    let pcm = fixture("caller-hello.l16-16k.wav");
    let frames: Vec<&[i16]> = pcm.chunks_exact(FRAME_SAMPLES).collect();
    let mut group = c.benchmark_group("stretch");
    for speed in [0.5, 0.75, 1.0, 1.5, 2.0] {
        let mut ts = TimeStretch::new(RATE_HZ, speed);
        let mut out = Vec::with_capacity(ts.max_output_len(FRAME_SAMPLES));
        let mut i = 0;
        group.bench_function(BenchmarkId::new("frame_20ms_16k", speed), |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                out.clear();
                ts.process(black_box(frames[i]), &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, stretch);
criterion_main!(benches);
