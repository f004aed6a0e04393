//! Per-20 ms-frame cost of the audio path: G.711, L16 and Opus codecs, the streaming
//! resampler, and the loopback path (μ-law in → 16 kHz pipeline rate → μ-law out).
//!
//! Run: `cargo bench --bench audio -- --warm-up-time 1 --measurement-time 3`.
//! Inputs are built outside the timed closures; every iteration is one 20 ms frame.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use switchboard::audio::codec::{self, Decoder, Encoder, MAX_DECODED_SAMPLES};
use switchboard::audio::resample::StreamResampler;
use switchboard::transport::{Encoding, WireFormat};

/// Frames of test signal cycled through by the benches (1 s).
const FRAMES: usize = 50;

/// A speech-like test signal: three partials with a slow amplitude wobble plus a little
/// deterministic noise, `FRAMES` × 20 ms at `rate_hz`.
fn signal(rate_hz: u32) -> Vec<i16> {
    let len = rate_hz as usize / 50 * FRAMES;
    let mut noise: u32 = 0x1234_5678;
    (0..len)
        .map(|n| {
            let t = n as f64 / rate_hz as f64;
            let tau = 2.0 * std::f64::consts::PI;
            let envelope = 0.6 + 0.4 * (tau * 3.0 * t).sin();
            let voiced =
                (tau * 180.0 * t).sin() + 0.5 * (tau * 720.0 * t).sin() + 0.25 * (tau * 2200.0 * t).sin();
            noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let hiss = (noise >> 16) as f64 / 65536.0 - 0.5;
            (9000.0 * envelope * voiced + 300.0 * hiss) as i16
        })
        .collect()
}

fn format(encoding: Encoding, rate_hz: u32) -> WireFormat {
    WireFormat { encoding, sample_rate_hz: rate_hz }
}

/// Encodes `pcm` frame by frame, returning the payloads (built once, outside the timing).
fn payloads(fmt: WireFormat, pcm: &[i16]) -> Vec<Vec<u8>> {
    let mut enc = Encoder::new(fmt).unwrap();
    let mut buf = vec![0u8; codec::max_frame_bytes(fmt)];
    pcm.chunks_exact(fmt.frame_samples())
        .map(|frame| {
            let n = enc.encode(frame, &mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect()
}

fn bench_codec(c: &mut Criterion, group_name: &str, formats: &[WireFormat]) {
    let mut group = c.benchmark_group(group_name);
    for &fmt in formats {
        let pcm = signal(fmt.sample_rate_hz);
        let frames: Vec<&[i16]> = pcm.chunks_exact(fmt.frame_samples()).collect();
        let packets = payloads(fmt, &pcm);
        let id = format!("{:?}/{}k", fmt.encoding, fmt.sample_rate_hz / 1000);

        let mut dec = Decoder::new(fmt).unwrap();
        let mut out = vec![0i16; MAX_DECODED_SAMPLES];
        let mut i = 0;
        group.bench_function(BenchmarkId::new("decode", &id), |b| {
            b.iter(|| {
                i = (i + 1) % packets.len();
                black_box(dec.decode(black_box(&packets[i]), &mut out).unwrap())
            })
        });

        let mut enc = Encoder::new(fmt).unwrap();
        let mut wire = vec![0u8; codec::max_frame_bytes(fmt)];
        let mut i = 0;
        group.bench_function(BenchmarkId::new("encode", &id), |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                black_box(enc.encode(black_box(frames[i]), &mut wire).unwrap())
            })
        });
    }
    group.finish();
}

fn g711(c: &mut Criterion) {
    bench_codec(c, "g711", &[format(Encoding::Pcmu, 8000), format(Encoding::Pcma, 8000)]);
}

fn l16(c: &mut Criterion) {
    let formats: Vec<WireFormat> = [Encoding::L16Le, Encoding::L16Be]
        .into_iter()
        .flat_map(|e| [format(e, 8000), format(e, 16000)])
        .collect();
    bench_codec(c, "l16", &formats);
}

fn opus(c: &mut Criterion) {
    let formats: Vec<WireFormat> = [8000, 16000, 48000].map(|r| format(Encoding::Opus, r)).to_vec();
    bench_codec(c, "opus", &formats);
}

fn resample(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample");
    for (in_hz, out_hz) in [(8000, 16000), (16000, 8000), (16000, 48000), (48000, 16000)] {
        let pcm = signal(in_hz);
        let frame = in_hz as usize / 50;
        let frames: Vec<&[i16]> = pcm.chunks_exact(frame).collect();
        let mut r = StreamResampler::new(in_hz, out_hz).unwrap();
        let mut out = Vec::with_capacity(r.output_len_hint(frame));
        let mut i = 0;
        let id = format!("{}k->{}k", in_hz / 1000, out_hz / 1000);
        group.bench_function(BenchmarkId::new("frame_20ms", id), |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                out.clear();
                r.process(black_box(frames[i]), &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// μ-law 160 bytes → decode → 8k→16k → 16k→8k → μ-law encode, one 20 ms frame per iteration.
fn loopback(c: &mut Criterion) {
    let fmt = WireFormat::PCMU_8K;
    let packets = payloads(fmt, &signal(8000));
    let mut dec = Decoder::new(fmt).unwrap();
    let mut enc = Encoder::new(fmt).unwrap();
    let mut up = StreamResampler::new(8000, 16000).unwrap();
    let mut down = StreamResampler::new(16000, 8000).unwrap();
    let mut pcm8 = vec![0i16; MAX_DECODED_SAMPLES];
    let mut pcm16 = Vec::with_capacity(up.output_len_hint(fmt.frame_samples()));
    let mut back8 = Vec::with_capacity(down.output_len_hint(pcm16.capacity()));
    let mut wire = vec![0u8; codec::max_frame_bytes(fmt)];
    let mut i = 0;
    let mut group = c.benchmark_group("loopback");
    group.bench_function("pcmu_8k_via_16k_frame_20ms", |b| {
        b.iter(|| {
            i = (i + 1) % packets.len();
            let n = dec.decode(black_box(&packets[i]), &mut pcm8).unwrap();
            pcm16.clear();
            up.process(&pcm8[..n], &mut pcm16);
            back8.clear();
            down.process(&pcm16, &mut back8);
            black_box(enc.encode(&back8, &mut wire).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, g711, l16, opus, resample, loopback);
criterion_main!(benches);
