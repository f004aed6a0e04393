//! Silero VAD v6 at 16 kHz in plain Rust: the forward pass of `silero_vad_op18_ifless.onnx`
//! (its `sr == 16000` branch), with the weights read from that same file's initializers.
//!
//! # The model, as read from the ONNX graph
//! One run maps `input` (576 samples: 64 of context + 512 new) and the LSTM state `(h, c)` to
//! a probability and the new state:
//!
//! ```text
//! reflect-pad right by 64          [576] → [640]          (x[576+j] = x[574−j])
//! STFT: Conv1d 1→258, k 256, s 128, no bias, weights = forward_basis_buffer
//!                                   [640] → [258 × 4 frames]
//! magnitude sqrt(re² + im²), re = rows 0..129, im = rows 129..258   → [129 × 4]
//! conv1 129→128, k 3, s 1, pad 1, ReLU                            → [128 × 4]
//! conv2 128→64,  k 3, s 2, pad 1, ReLU                            → [64 × 2]
//! conv3 64→64,   k 3, s 2, pad 1, ReLU                            → [64 × 1]
//! conv4 64→128,  k 3, s 1, pad 1, ReLU                            → [128 × 1]
//! LSTM cell 128→128: gates = W_ih·x + b_ih + W_hh·h + b_hh, split i, f, g, o;
//!   c' = σ(f)·c + σ(i)·tanh(g),  h' = σ(o)·tanh(c')
//! decoder: ReLU(h') → Conv1d 128→1, k 1 → sigmoid → mean over the one time step
//! state out = [h', c'] as [2, 1, 128]
//! ```
//!
//! The 1.2 MB `silero_vad_16k.safetensors` in the same wheel holds the same layer shapes but
//! *different* weights (every tensor but the STFT basis differs; probabilities differ by up to
//! 0.9 from the ONNX model on the speech fixtures), so this engine reads the ONNX file that
//! onnxruntime runs, and so gives the same probabilities.
//!
//! # Computation
//! Every layer is one [`Dense`] product over contiguous windows: features are kept time-major
//! (`frame × channel`) with a zero frame before and after, so a kernel-3 convolution's input
//! at output `t` is the contiguous slice of frames `s·t − 1 ..= s·t + 1`; its weights are
//! repacked from `[out][in][k]` to `[out][k][in]`. conv1's 129 channels are padded to 136 (a
//! multiple of 8 lanes) with zero weights. conv4 sees one frame between two zero pads, so only
//! its centre tap is kept. The LSTM's two products are one `[512 × 256]` product over `[x, h]`
//! with the two biases summed. The STFT basis is a periodic window times the DFT's rows, so at
//! load it is checked to be one and then computed as a windowed 256-point real FFT
//! ([`WindowedDft`]; any other basis keeps the product). About 0.4 M multiply-adds per run
//! (0.66 M with the basis product); the scratch buffers
//! (≈ 17 KiB) live on the stack, so a run allocates nothing and takes no lock.

use std::path::Path;
use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{RealFftPlanner, RealToComplex};

use super::dense::{Dense, Kernel};
use super::onnx_weights::{float_initializers, Tensor};
use super::{Result, VadError};

/// Samples in one run's input (64 context + 512 new).
const INPUT: usize = 576;
/// Right reflection padding before the STFT.
const REFLECT: usize = 64;
const PADDED: usize = INPUT + REFLECT;
const N_FFT: usize = 256;
const HOP: usize = 128;
/// STFT frames per run: (640 − 256) / 128 + 1.
const FRAMES: usize = (PADDED - N_FFT) / HOP + 1;
/// Frequency bins (n_fft / 2 + 1); the basis has a real and an imaginary row per bin.
const BINS: usize = N_FFT / 2 + 1;
/// conv1 input channels padded to a multiple of 8.
const BINS_PAD: usize = 136;
const C1: usize = 128;
const C2: usize = 64;
const C3: usize = 64;
const C4: usize = 128;
/// Frames after conv2 and conv3 (stride 2, pad 1, kernel 3).
const T2: usize = (FRAMES - 1) / 2 + 1;
const T3: usize = (T2 - 1) / 2 + 1;
const HIDDEN: usize = 128;
const GATES: usize = 4 * HIDDEN;
// conv4 keeps only its centre tap because it sees a single frame; conv1's padding is whole lanes.
const _: () = assert!(T3 == 1 && BINS_PAD >= BINS && BINS_PAD % super::dense::LANES == 0);

/// The packed weights of the 16 kHz model. Immutable after load; shared by all calls.
#[derive(Debug)]
pub(super) struct NativeSilero {
    /// `[258][256]` STFT basis (real rows, then imaginary rows), no bias.
    stft: Dense,
    /// The same transform as a windowed real FFT, when the basis is one (checked at load).
    dft: Option<WindowedDft>,
    /// `[128][3 × 136]`, taps outer, channels inner.
    conv1: Dense,
    /// `[64][3 × 128]`.
    conv2: Dense,
    /// `[64][3 × 64]`.
    conv3: Dense,
    /// `[128][64]`: the centre tap only (see the module docs).
    conv4: Dense,
    /// `[512][W_ih | W_hh]`, bias `b_ih + b_hh`; rows in gate order i, f, g, o.
    lstm: Dense,
    /// Decoder conv 128 → 1.
    out_w: [f32; HIDDEN],
    out_b: f32,
    /// Chosen once at load from the CPU's features.
    kernel: Kernel,
}

/// The STFT basis recognised as a window times the DFT's cosine and sine rows: then a frame's
/// magnitudes are `|FFT(window · frame)|`: a few thousand operations per frame instead of the
/// basis product's 66 k multiply-adds (264 k for the 4 frames, 40 % of a run's work).
struct WindowedDft {
    window: [f32; N_FFT],
    fft: Arc<dyn RealToComplex<f32>>,
}

impl std::fmt::Debug for WindowedDft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedDft").finish_non_exhaustive()
    }
}

/// Scratch a 256-point real FFT may ask for (checked at load).
const FFT_SCRATCH: usize = N_FFT;

impl WindowedDft {
    /// `Some` when every basis entry is within 1e-5 (relative to the window's peak) of
    /// `w[k]·cos(2π·b·k/N)` (real rows) and `±w[k]·sin(2π·b·k/N)` (imaginary rows, one sign
    /// for all), with `w` read off the real row of bin 0.
    fn recognise(basis: &[f32]) -> Option<Self> {
        let window: [f32; N_FFT] = basis[..N_FFT].try_into().ok()?;
        let peak = window.iter().fold(0f32, |m, v| m.max(v.abs()));
        if peak == 0.0 {
            return None;
        }
        let tolerance = 1e-5 * f64::from(peak);
        let mut err = [0f64; 2]; // imaginary rows as +sin and as −sin
        let mut err_re = 0f64;
        for b in 0..BINS {
            for (k, &w) in window.iter().enumerate() {
                let phase = 2.0 * std::f64::consts::PI * ((b * k) % N_FFT) as f64 / N_FFT as f64;
                let (sin, cos) = phase.sin_cos();
                let w = f64::from(w);
                err_re = err_re.max((f64::from(basis[b * N_FFT + k]) - w * cos).abs());
                let im = f64::from(basis[(BINS + b) * N_FFT + k]);
                err[0] = err[0].max((im - w * sin).abs());
                err[1] = err[1].max((im + w * sin).abs());
            }
        }
        if err_re > tolerance || err[0].min(err[1]) > tolerance {
            return None;
        }
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        (fft.get_scratch_len() <= FFT_SCRATCH).then_some(Self { window, fft })
    }

    /// `out[b] = |Σ_k w[k]·x[k]·e^{−2πi·b·k/N}|` for the `BINS` bins.
    fn magnitudes(&self, x: &[f32], out: &mut [f32]) {
        let mut frame = [0f32; N_FFT];
        for ((f, v), w) in frame.iter_mut().zip(x).zip(&self.window) {
            *f = v * w;
        }
        let mut spectrum = [Complex32::default(); BINS];
        let mut scratch = [Complex32::default(); FFT_SCRATCH];
        let len = self.fft.get_scratch_len();
        self.fft
            .process_with_scratch(&mut frame, &mut spectrum, &mut scratch[..len])
            .expect("lengths fixed at load");
        for (m, c) in out.iter_mut().zip(&spectrum) {
            *m = c.norm();
        }
    }
}

/// Per-run buffers, time-major with a zero frame on each side where a convolution reads them.
struct Scratch {
    padded: [f32; PADDED],
    /// STFT output, `[frame][258]`.
    spec: [f32; FRAMES * 2 * BINS],
    /// Magnitudes, `[1 + FRAMES + 1][136]`.
    mag: [f32; (FRAMES + 2) * BINS_PAD],
    /// conv1 output, `[1 + 4 + 1][128]`.
    f1: [f32; (FRAMES + 2) * C1],
    /// conv2 output, `[1 + 2 + 1][64]`.
    f2: [f32; (T2 + 2) * C2],
    /// conv3 output, `[64]`.
    f3: [f32; T3 * C3],
    /// LSTM input `[conv4 output | h]`.
    xh: [f32; C4 + HIDDEN],
    gates: [f32; GATES],
}

impl NativeSilero {
    /// Reads and packs the 16 kHz weights from the ONNX model file.
    pub(super) fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|source| VadError::Io { path: path.to_path_buf(), source })?;
        let bad = |reason: String| VadError::Weights { path: path.to_path_buf(), reason };
        let mut tensors = float_initializers(&bytes).map_err(|e| bad(e.to_string()))?;
        let mut take = |name: &str, dims: &[usize]| -> Result<Vec<f32>> {
            match tensors.remove(name) {
                Some(Tensor { dims: d, data }) if d == dims => Ok(data),
                Some(t) => Err(bad(format!("{name} has shape {:?}, expected {dims:?}", t.dims))),
                None => Err(bad(format!("no initializer {name}"))),
            }
        };
        let stft = take("model.stft.forward_basis_buffer", &[2 * BINS, 1, N_FFT])?;
        let mut conv = |i: usize, out: usize, inp: usize| -> Result<(Vec<f32>, Vec<f32>)> {
            let w = take(&format!("model.encoder.{i}.reparam_conv.weight"), &[out, inp, 3])?;
            let b = take(&format!("model.encoder.{i}.reparam_conv.bias"), &[out])?;
            Ok((w, b))
        };
        let (w1, b1) = conv(0, C1, BINS)?;
        let (w2, b2) = conv(1, C2, C1)?;
        let (w3, b3) = conv(2, C3, C2)?;
        let (w4, b4) = conv(3, C4, C3)?;
        let w_ih = take("model.decoder.rnn.weight_ih", &[GATES, C4])?;
        let w_hh = take("model.decoder.rnn.weight_hh", &[GATES, HIDDEN])?;
        let b_ih = take("model.decoder.rnn.bias_ih", &[GATES])?;
        let b_hh = take("model.decoder.rnn.bias_hh", &[GATES])?;
        let out_w = take("model.decoder.decoder.2.weight", &[1, HIDDEN, 1])?;
        let out_b = take("model.decoder.decoder.2.bias", &[1])?;
        Ok(Self::from_weights(Weights {
            stft,
            convs: [(w1, b1), (w2, b2), (w3, b3), (w4, b4)],
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            out_w,
            out_b: out_b[0],
        }))
    }

    /// Packs PyTorch-layout weights (see [`Weights`]).
    fn from_weights(w: Weights) -> Self {
        let [(w1, b1), (w2, b2), (w3, b3), (w4, b4)] = w.convs;
        let conv4_centre: Vec<f32> = w4.chunks_exact(3).map(|taps| taps[1]).collect();
        let lstm: Vec<f32> = w
            .w_ih
            .chunks_exact(C4)
            .zip(w.w_hh.chunks_exact(HIDDEN))
            .flat_map(|(a, b)| a.iter().chain(b).copied())
            .collect();
        let lstm_bias = w.b_ih.iter().zip(&w.b_hh).map(|(a, b)| a + b).collect();
        Self {
            dft: WindowedDft::recognise(&w.stft),
            stft: Dense::new(2 * BINS, N_FFT, w.stft, vec![0.0; 2 * BINS]),
            conv1: Dense::new(C1, 3 * BINS_PAD, pack_conv3(&w1, C1, BINS, BINS_PAD), b1),
            conv2: Dense::new(C2, 3 * C1, pack_conv3(&w2, C2, C1, C1), b2),
            conv3: Dense::new(C3, 3 * C2, pack_conv3(&w3, C3, C2, C2), b3),
            conv4: Dense::new(C4, C3, conv4_centre, b4),
            lstm: Dense::new(GATES, C4 + HIDDEN, lstm, lstm_bias),
            out_w: w.out_w.try_into().expect("shape checked"),
            out_b: w.out_b,
            kernel: Kernel::detect(),
        }
    }

    /// One run (see the module docs). `input` is 576 samples, `state` 256 values `[h | c]`,
    /// replaced by the new state. Returns the speech probability.
    pub(super) fn run_chunk(&self, input: &[f32; INPUT], state: &mut [f32; 2 * HIDDEN]) -> f32 {
        let k = self.kernel;
        let mut s = Scratch {
            padded: [0.0; PADDED],
            spec: [0.0; FRAMES * 2 * BINS],
            mag: [0.0; (FRAMES + 2) * BINS_PAD],
            f1: [0.0; (FRAMES + 2) * C1],
            f2: [0.0; (T2 + 2) * C2],
            f3: [0.0; T3 * C3],
            xh: [0.0; C4 + HIDDEN],
            gates: [0.0; GATES],
        };
        s.padded[..INPUT].copy_from_slice(input);
        for j in 0..REFLECT {
            s.padded[INPUT + j] = input[INPUT - 2 - j];
        }

        if let Some(dft) = &self.dft {
            for t in 0..FRAMES {
                let out = &mut s.mag[(t + 1) * BINS_PAD..(t + 1) * BINS_PAD + BINS];
                dft.magnitudes(&s.padded[t * HOP..t * HOP + N_FFT], out);
            }
        } else {
            self.stft.apply::<FRAMES>(k, &s.padded, HOP, &mut s.spec, 2 * BINS);
            for t in 0..FRAMES {
                let spec = &s.spec[t * 2 * BINS..(t + 1) * 2 * BINS];
                let (re, im) = spec.split_at(BINS);
                let out = &mut s.mag[(t + 1) * BINS_PAD..(t + 1) * BINS_PAD + BINS];
                for ((m, r), i) in out.iter_mut().zip(re).zip(im) {
                    *m = (r * r + i * i).sqrt();
                }
            }
        }

        // Output frame t of a stride-s conv reads padded frames s·t .. s·t + 3.
        self.conv1.apply::<FRAMES>(k, &s.mag, BINS_PAD, &mut s.f1[C1..], C1);
        relu(&mut s.f1[C1..(FRAMES + 1) * C1]);
        self.conv2.apply::<T2>(k, &s.f1, 2 * C1, &mut s.f2[C2..], C2);
        relu(&mut s.f2[C2..(T2 + 1) * C2]);
        self.conv3.apply::<T3>(k, &s.f2, 2 * C2, &mut s.f3, C3);
        relu(&mut s.f3);
        self.conv4.apply::<1>(k, &s.f3, 0, &mut s.xh[..C4], 0);
        relu(&mut s.xh[..C4]);

        let (h, c) = state.split_at_mut(HIDDEN);
        s.xh[C4..].copy_from_slice(h);
        self.lstm.apply::<1>(k, &s.xh, 0, &mut s.gates, 0);
        let (i, rest) = s.gates.split_at(HIDDEN);
        let (f, rest) = rest.split_at(HIDDEN);
        let (g, o) = rest.split_at(HIDDEN);
        let mut logit = self.out_b;
        for j in 0..HIDDEN {
            let c_new = sigmoid(f[j]) * c[j] + sigmoid(i[j]) * tanh(g[j]);
            let h_new = sigmoid(o[j]) * tanh(c_new);
            c[j] = c_new;
            h[j] = h_new;
            logit += self.out_w[j] * h_new.max(0.0);
        }
        sigmoid(logit)
    }

    #[cfg(test)]
    fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }

    #[cfg(test)]
    fn without_fft(mut self) -> Self {
        self.dft = None;
        self
    }
}

/// The model's tensors in PyTorch layout: conv weights `[out][in][3]`, LSTM `[512][128]`.
struct Weights {
    stft: Vec<f32>,
    convs: [(Vec<f32>, Vec<f32>); 4],
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b_ih: Vec<f32>,
    b_hh: Vec<f32>,
    out_w: Vec<f32>,
    out_b: f32,
}

/// `[out][inp][3]` → rows `[3][inp_pad]` (taps outer, channels inner, zero padded).
fn pack_conv3(w: &[f32], out: usize, inp: usize, inp_pad: usize) -> Vec<f32> {
    let mut packed = vec![0.0; out * 3 * inp_pad];
    for o in 0..out {
        for c in 0..inp {
            for t in 0..3 {
                packed[(o * 3 + t) * inp_pad + c] = w[(o * inp + c) * 3 + t];
            }
        }
    }
    packed
}

fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `tanh` through `exp` (`1 − 2 / (e^{2x} + 1)`; ±1 at the extremes, absolute error ≈ 1e-7):
/// glibc's `tanhf` (via `expm1f`) took a fifth of a run, `expf` a twentieth of that.
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / ((2.0 * x).exp() + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-scale, scale).
    fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                scale * ((s >> 8) as f32 / (1u32 << 23) as f32 - 1.0)
            })
            .collect()
    }

    fn random_weights(seed: u32) -> Weights {
        Weights {
            stft: values(2 * BINS * N_FFT, seed, 0.1),
            convs: [
                (values(C1 * BINS * 3, seed + 1, 0.1), values(C1, seed + 2, 0.1)),
                (values(C2 * C1 * 3, seed + 3, 0.1), values(C2, seed + 4, 0.1)),
                (values(C3 * C2 * 3, seed + 5, 0.2), values(C3, seed + 6, 0.1)),
                (values(C4 * C3 * 3, seed + 7, 0.2), values(C4, seed + 8, 0.1)),
            ],
            w_ih: values(GATES * C4, seed + 9, 0.2),
            w_hh: values(GATES * HIDDEN, seed + 10, 0.2),
            b_ih: values(GATES, seed + 11, 0.1),
            b_hh: values(GATES, seed + 12, 0.1),
            out_w: values(HIDDEN, seed + 13, 0.5),
            out_b: 0.1,
        }
    }

    /// The graph evaluated literally in f64 from PyTorch-layout weights: padded 1-D convs with
    /// all three taps, separate LSTM products. Independent of the packing and the kernels.
    fn reference(w: &Weights, input: &[f32], state: &mut [f64]) -> f64 {
        let x: Vec<f64> = input.iter().map(|&v| f64::from(v)).collect();
        let mut padded = x.clone();
        padded.extend((0..REFLECT).map(|j| x[INPUT - 2 - j]));
        let frames = (padded.len() - N_FFT) / HOP + 1;
        // [channel][time]
        let mut feat: Vec<Vec<f64>> = (0..BINS)
            .map(|b| {
                (0..frames)
                    .map(|t| {
                        let dot = |row: usize| {
                            (0..N_FFT)
                                .map(|k| f64::from(w.stft[row * N_FFT + k]) * padded[t * HOP + k])
                                .sum::<f64>()
                        };
                        dot(b).hypot(dot(b + BINS))
                    })
                    .collect()
            })
            .collect();
        for (i, (cw, cb)) in w.convs.iter().enumerate() {
            let stride = if i == 1 || i == 2 { 2 } else { 1 };
            let (inp, t_in) = (feat.len(), feat[0].len());
            let t_out = (t_in + 2 - 3) / stride + 1;
            feat = (0..cb.len())
                .map(|o| {
                    (0..t_out)
                        .map(|t| {
                            let mut acc = f64::from(cb[o]);
                            for c in 0..inp {
                                for k in 0..3 {
                                    let ti = (t * stride + k) as isize - 1;
                                    if ti >= 0 && (ti as usize) < t_in {
                                        acc += f64::from(cw[(o * inp + c) * 3 + k]) * feat[c][ti as usize];
                                    }
                                }
                            }
                            acc.max(0.0)
                        })
                        .collect()
                })
                .collect();
        }
        let xin: Vec<f64> = feat.iter().map(|ch| ch[0]).collect();
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let gate = |r: usize| {
            f64::from(w.b_ih[r])
                + f64::from(w.b_hh[r])
                + (0..C4).map(|k| f64::from(w.w_ih[r * C4 + k]) * xin[k]).sum::<f64>()
                + (0..HIDDEN).map(|k| f64::from(w.w_hh[r * HIDDEN + k]) * state[k]).sum::<f64>()
        };
        let gates: Vec<f64> = (0..GATES).map(gate).collect();
        let mut logit = f64::from(w.out_b);
        for j in 0..HIDDEN {
            let c = sig(gates[HIDDEN + j]) * state[HIDDEN + j] + sig(gates[j]) * gates[2 * HIDDEN + j].tanh();
            let h = sig(gates[3 * HIDDEN + j]) * c.tanh();
            state[j] = h;
            state[HIDDEN + j] = c;
            logit += f64::from(w.out_w[j]) * h.max(0.0);
        }
        sig(logit)
    }

    #[test]
    fn tanh_through_exp_is_close_to_std() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            assert!((tanh(x) - x.tanh()).abs() < 2e-7, "{x}: {} vs {}", tanh(x), x.tanh());
        }
        assert_eq!((tanh(100.0), tanh(-100.0)), (1.0, -1.0));
    }

    #[test]
    fn shapes_follow_from_the_graph() {
        assert_eq!((PADDED, FRAMES, T2, T3), (640, 4, 2, 1));
    }

    #[test]
    fn packing_puts_tap_t_channel_c_at_t_times_stride_plus_c() {
        // out 1, in 2: w[0][c][t] = 10c + t.
        let w = [0.0, 1.0, 2.0, 10.0, 11.0, 12.0];
        assert_eq!(
            pack_conv3(&w, 1, 2, 4),
            vec![0.0, 10.0, 0.0, 0.0, 1.0, 11.0, 0.0, 0.0, 2.0, 12.0, 0.0, 0.0]
        );
    }

    /// Packed model (both kernels) against the literal f64 graph, on random weights and
    /// inputs, with the state carried over several runs.
    #[test]
    fn forward_matches_literal_graph_on_random_weights() {
        let mut kernels = vec![Kernel::Portable];
        if Kernel::detect() == Kernel::Avx2Fma {
            kernels.push(Kernel::Avx2Fma);
        }
        for kernel in kernels {
            let model = NativeSilero::from_weights(random_weights(1)).with_kernel(kernel);
            let w = random_weights(1);
            let mut state = [0f32; 2 * HIDDEN];
            let mut ref_state = vec![0f64; 2 * HIDDEN];
            let mut max_dp = 0f64;
            for run in 0..6 {
                let input: [f32; INPUT] = values(INPUT, 100 + run, 0.5).try_into().unwrap();
                let p = model.run_chunk(&input, &mut state);
                let want = reference(&w, &input, &mut ref_state);
                max_dp = max_dp.max((f64::from(p) - want).abs());
                for (a, b) in state.iter().zip(&ref_state) {
                    assert!((f64::from(*a) - b).abs() < 1e-4, "{kernel:?} run {run}: state {a} vs {b}");
                }
            }
            assert!(max_dp < 1e-5, "{kernel:?}: max |Δp| {max_dp}");
        }
    }

    /// Runs two engines side by side over caller-hello, state carried, and asserts they give
    /// the same probabilities to within rounding (and that the fixture is speech).
    fn assert_same_on_speech(a: &NativeSilero, b: &NativeSilero) {
        let samples = crate::audio::testutil::fixture_l16("caller-hello.l16-16k.wav");
        let (mut input, mut sa, mut sb) = ([0f32; INPUT], [0f32; 2 * HIDDEN], [0f32; 2 * HIDDEN]);
        let (mut max, mut speech) = (0f32, 0);
        for chunk in samples.chunks_exact(INPUT - 64) {
            for (d, &v) in input[64..].iter_mut().zip(chunk) {
                *d = f32::from(v) / 32768.0;
            }
            let (pa, pb) = (a.run_chunk(&input, &mut sa), b.run_chunk(&input, &mut sb));
            max = max.max((pa - pb).abs());
            speech += usize::from(pa >= 0.5);
            input.copy_within(INPUT - 64.., 0);
        }
        assert!(speech > 50, "{speech} speech chunks");
        assert!(max < 1e-4, "max |Δp| {max}");
    }

    fn real_model() -> NativeSilero {
        let dir = std::env::var_os("SWITCHBOARD_MODELS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
        let path = dir.join(crate::audio::vad::SileroModel::MODEL_FILE);
        NativeSilero::load(&path).unwrap_or_else(|e| panic!("{e} (run `make models`)"))
    }

    /// The portable kernel (CPUs without AVX2/FMA) on the real weights and a speech fixture:
    /// the same probabilities as the default kernel to within rounding.
    #[test]
    fn portable_kernel_matches_default_on_the_real_model() {
        assert_same_on_speech(&real_model(), &real_model().with_kernel(Kernel::Portable));
    }

    /// The real model's STFT basis is a windowed DFT, so its runs take the FFT path; that path
    /// gives the basis product's probabilities to within rounding on a speech fixture.
    #[test]
    fn real_model_uses_the_fft_and_matches_the_basis_product() {
        let fft = real_model();
        assert!(fft.dft.is_some(), "the model's STFT basis is not recognised as a windowed DFT");
        assert_same_on_speech(&fft, &real_model().without_fft());
    }

    /// A basis that is not a windowed DFT (random, or a DFT with one entry off) keeps the
    /// product; a synthetic windowed DFT with either sine sign is recognised.
    #[test]
    fn only_a_windowed_dft_basis_is_recognised() {
        assert!(WindowedDft::recognise(&values(2 * BINS * N_FFT, 9, 0.1)).is_none());
        let hann = |k: usize| (std::f64::consts::PI * k as f64 / N_FFT as f64).sin().powi(2);
        let make = |sign: f64| -> Vec<f32> {
            let mut basis = vec![0f32; 2 * BINS * N_FFT];
            for b in 0..BINS {
                for k in 0..N_FFT {
                    let phase = 2.0 * std::f64::consts::PI * ((b * k) % N_FFT) as f64 / N_FFT as f64;
                    basis[b * N_FFT + k] = (hann(k) * phase.cos()) as f32;
                    basis[(BINS + b) * N_FFT + k] = (sign * hann(k) * phase.sin()) as f32;
                }
            }
            basis
        };
        assert!(WindowedDft::recognise(&make(1.0)).is_some());
        let mut basis = make(-1.0);
        assert!(WindowedDft::recognise(&basis).is_some());
        basis[(BINS + 7) * N_FFT + 30] += 0.01;
        assert!(WindowedDft::recognise(&basis).is_none());
    }

    #[test]
    fn a_run_changes_the_state_and_the_same_inputs_replay_identically() {
        let model = NativeSilero::from_weights(random_weights(2));
        let input: [f32; INPUT] = values(INPUT, 5, 0.3).try_into().unwrap();
        let mut a = [0f32; 2 * HIDDEN];
        let pa = model.run_chunk(&input, &mut a);
        assert!(a.iter().any(|&v| v != 0.0));
        let mut b = [0f32; 2 * HIDDEN];
        assert_eq!(model.run_chunk(&input, &mut b), pa);
        assert_eq!(a, b);
        assert!((0.0..=1.0).contains(&pa));
    }
}
