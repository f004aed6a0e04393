//! RNNoise's network: the model file `nnnoiseless` ships, parsed and packed once per process,
//! and the per-frame forward pass ([`RnnState::compute`]).
//!
//! # The model file
//! Six layers, concatenated, every value a signed byte: a layer is `nb_inputs`, `nb_neurons`,
//! `activation` (0 tanh, 1 sigmoid, 2 ReLU), then its weights, input-major (for input `k`,
//! the weights of every output in turn), then its biases. A dense layer has `nb_inputs ×
//! nb_neurons` weights and `nb_neurons` biases; a GRU has `nb_inputs × 3·nb_neurons` input
//! weights, `nb_neurons × 3·nb_neurons` recurrent weights and `3·nb_neurons` biases, the three
//! gates in the order update, reset, candidate. Real values are the bytes / 256.
//!
//! ```text
//! features[42] → input dense (24, tanh) → vad GRU (24, ReLU) → vad dense (1, sigmoid) = VAD
//! [input dense, vad GRU, features] (90) → noise GRU (48, ReLU)
//! [vad GRU, noise GRU, features] (114) → denoise GRU (96, ReLU) → gains dense (22, sigmoid)
//! ```
//!
//! # Packing
//! Weights stay bytes (87 KB, shared by every call in the process: the f32 weights would be
//! 350 KB, and streaming them from L2 took longer than the arithmetic), each gate's outputs
//! padded to a multiple of 8 lanes and every matrix [`Packed`] in the order the kernel reads it,
//! so every layer is one or two [`gemv_acc`] calls (about 87 k multiply-adds per frame), which
//! widens them to f32 as it loads them. Sums start from the integer bias and are scaled by
//! 1/256 just before the activation, as `nnnoiseless` does.
//!
//! The activations are RNNoise's own approximations (a 201-entry tanh table with a first-order
//! correction), reproduced exactly: the network is trained with them.

use super::simd::{gemv_acc, Kernel, Packed, LANES};
use super::{NB_BANDS, NB_FEATURES};

/// The model `nnnoiseless` ships, copied out of its crate source by `build.rs`.
static WEIGHTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rnnoise-weights.rnn"));

/// Why the model file did not parse (a build that found a different file than expected).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("model file ends inside layer {layer}")]
    Truncated { layer: &'static str },
    #[error("layer {layer}: bad header (inputs {inputs}, neurons {neurons}, activation {activation})")]
    BadHeader { layer: &'static str, inputs: i8, neurons: i8, activation: i8 },
    #[error("layer {layer} has {got} {what}, the network needs {want}")]
    Shape { layer: &'static str, what: &'static str, got: usize, want: usize },
    #[error("{extra} bytes after the last layer")]
    TrailingBytes { extra: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    Tanh,
    Sigmoid,
    Relu,
}

impl Activation {
    #[inline]
    fn apply(self, x: f32) -> f32 {
        match self {
            Self::Tanh => tansig(x),
            Self::Sigmoid => sigmoid(x),
            Self::Relu => x.max(0.0),
        }
    }

    /// [`apply`](Self::apply) to every value scaled by [`WEIGHT_SCALE`] (a power of two: exact),
    /// eight at a time on AVX2 (same operations in the same order: the same results).
    #[inline]
    fn apply_all(self, kernel: Kernel, v: &mut [f32]) {
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if kernel == Kernel::Avx2Fma {
            // SAFETY: `Avx2Fma` is only chosen when the CPU has AVX2 and FMA.
            done = unsafe { avx2::apply(self, v) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = kernel;
        for x in &mut v[done..] {
            *x = self.apply(*x * WEIGHT_SCALE);
        }
    }
}

const fn pad(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// A dense layer, `out = act(bias + W·x)`.
#[derive(Debug)]
struct Dense {
    inputs: usize,
    outputs: usize,
    activation: Activation,
    /// `[inputs][pad(outputs)]`, the file's bytes.
    w: Packed,
    /// `[pad(outputs)]`, the file's bytes as f32.
    bias: Box<[f32]>,
}

/// A GRU layer (RNNoise's variant: the reset gate multiplies the state before the recurrent
/// product of the candidate).
#[derive(Debug)]
struct Gru {
    inputs: usize,
    neurons: usize,
    activation: Activation,
    /// `[inputs][3 · pad(neurons)]`, gates z, r, h, the file's bytes.
    w_in: Packed,
    /// `[neurons][2 · pad(neurons)]`: the recurrent weights of gates z and r.
    w_rec_zr: Packed,
    /// `[neurons][pad(neurons)]`: the recurrent weights of the candidate h.
    w_rec_h: Packed,
    /// `[3 · pad(neurons)]`, as f32.
    bias: Box<[f32]>,
}

/// The whole network. Immutable after [`Model::shared`] builds it.
#[derive(Debug)]
pub(super) struct Model {
    input_dense: Dense,
    vad_gru: Gru,
    noise_gru: Gru,
    denoise_gru: Gru,
    denoise_output: Dense,
    vad_output: Dense,
}

/// Widest layer input ([vad GRU, noise GRU, features] into the denoise GRU).
const MAX_INPUT: usize = 128;
/// Widest padded GRU (`3 · pad(96)`).
const MAX_GATES: usize = 3 * 96;
/// Widest padded layer output.
const MAX_NEURONS: usize = 96;

/// One reader over the file's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, layer: &'static str) -> Result<&'a [u8], ModelError> {
        if self.bytes.len() < n {
            return Err(ModelError::Truncated { layer });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn header(&mut self, layer: &'static str) -> Result<(usize, usize, Activation), ModelError> {
        let h = self.take(3, layer)?;
        let [inputs, neurons, activation] = [h[0] as i8, h[1] as i8, h[2] as i8];
        let act = match activation {
            0 => Some(Activation::Tanh),
            1 => Some(Activation::Sigmoid),
            2 => Some(Activation::Relu),
            _ => None,
        };
        match act {
            Some(act) if inputs > 0 && neurons > 0 => Ok((inputs as usize, neurons as usize, act)),
            _ => Err(ModelError::BadHeader { layer, inputs, neurons, activation }),
        }
    }

    /// `rows × cols` bytes, row-major, into `[rows][stride]` at column `offset`.
    fn matrix<T: From<i8>>(
        &mut self,
        layer: &'static str,
        rows: usize,
        cols: usize,
        dst: &mut [T],
        stride: usize,
        offset: usize,
    ) -> Result<(), ModelError> {
        let src = self.take(rows * cols, layer)?;
        for (r, row) in src.chunks_exact(cols).enumerate() {
            for (d, &b) in dst[r * stride + offset..].iter_mut().zip(row) {
                *d = T::from(b as i8);
            }
        }
        Ok(())
    }

    fn dense(&mut self, layer: &'static str) -> Result<Dense, ModelError> {
        let (inputs, outputs, activation) = self.header(layer)?;
        let (wide, mut w, mut bias) = (pad(outputs), Vec::new(), Vec::new());
        w.resize(inputs * wide, 0i8);
        bias.resize(wide, 0f32);
        self.matrix(layer, inputs, outputs, &mut w, wide, 0)?;
        self.matrix(layer, 1, outputs, &mut bias, wide, 0)?;
        Ok(Dense {
            inputs,
            outputs,
            activation,
            w: Packed::new(&w, wide, 0, inputs, wide),
            bias: bias.into(),
        })
    }

    fn gru(&mut self, layer: &'static str) -> Result<Gru, ModelError> {
        let (inputs, neurons, activation) = self.header(layer)?;
        let wide = pad(neurons);
        let (mut w_in, mut w_rec, mut bias) = (Vec::new(), Vec::new(), Vec::new());
        w_in.resize(inputs * 3 * wide, 0i8);
        w_rec.resize(neurons * 3 * wide, 0i8);
        bias.resize(3 * wide, 0f32);
        // The file's rows are 3·neurons wide (gates back to back); ours put each gate at a
        // multiple of `wide`. Read a file row of 3 gates, scatter per gate.
        for (dst, rows) in [(&mut w_in, inputs), (&mut w_rec, neurons)] {
            let src = self.take(rows * 3 * neurons, layer)?;
            for (r, row) in src.chunks_exact(3 * neurons).enumerate() {
                for (g, gate) in row.chunks_exact(neurons).enumerate() {
                    let at = r * 3 * wide + g * wide;
                    for (d, &b) in dst[at..at + neurons].iter_mut().zip(gate) {
                        *d = b as i8;
                    }
                }
            }
        }
        for g in 0..3 {
            self.matrix(layer, 1, neurons, &mut bias, 0, g * wide)?;
        }
        Ok(Gru {
            inputs,
            neurons,
            activation,
            w_in: Packed::new(&w_in, 3 * wide, 0, inputs, 3 * wide),
            w_rec_zr: Packed::new(&w_rec, 3 * wide, 0, neurons, 2 * wide),
            w_rec_h: Packed::new(&w_rec, 3 * wide, 2 * wide, neurons, wide),
            bias: bias.into(),
        })
    }
}

/// Real value of one weight byte.
const WEIGHT_SCALE: f32 = 1.0 / 256.0;

impl Model {
    /// The model shipped with `nnnoiseless`, parsed once per process.
    pub(super) fn shared() -> &'static Model {
        static MODEL: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
        MODEL.get_or_init(|| {
            Model::parse(WEIGHTS).expect("the RNNoise model build.rs copied from nnnoiseless parses")
        })
    }

    /// Parses and packs a model file, checking that its shapes are RNNoise's.
    pub(super) fn parse(bytes: &[u8]) -> Result<Model, ModelError> {
        let mut r = Reader { bytes };
        let model = Model {
            input_dense: r.dense("input_dense")?,
            vad_gru: r.gru("vad_gru")?,
            noise_gru: r.gru("noise_gru")?,
            denoise_gru: r.gru("denoise_gru")?,
            denoise_output: r.dense("denoise_output")?,
            vad_output: r.dense("vad_output")?,
        };
        if !r.bytes.is_empty() {
            return Err(ModelError::TrailingBytes { extra: r.bytes.len() });
        }
        let shape = |layer, what, got, want| {
            if got == want {
                Ok(())
            } else {
                Err(ModelError::Shape { layer, what, got, want })
            }
        };
        let (m, dense_n, vad_n, noise_n) =
            (&model, model.input_dense.outputs, model.vad_gru.neurons, model.noise_gru.neurons);
        shape("input_dense", "inputs", m.input_dense.inputs, NB_FEATURES)?;
        shape("vad_gru", "inputs", m.vad_gru.inputs, dense_n)?;
        shape("vad_output", "inputs", m.vad_output.inputs, vad_n)?;
        shape("vad_output", "outputs", m.vad_output.outputs, 1)?;
        shape("noise_gru", "inputs", m.noise_gru.inputs, dense_n + vad_n + NB_FEATURES)?;
        shape("denoise_gru", "inputs", m.denoise_gru.inputs, vad_n + noise_n + NB_FEATURES)?;
        shape("denoise_output", "inputs", m.denoise_output.inputs, m.denoise_gru.neurons)?;
        shape("denoise_output", "outputs", m.denoise_output.outputs, NB_BANDS)?;
        // The per-frame scratch is sized for RNNoise's layers; the shapes above pin all but these.
        shape("denoise_gru", "neurons", m.denoise_gru.neurons, MAX_NEURONS)?;
        for (layer, got, max) in [
            ("input_dense", dense_n, MAX_NEURONS),
            ("vad_gru", vad_n, MAX_NEURONS),
            ("noise_gru", noise_n, MAX_NEURONS),
            ("denoise_gru", m.denoise_gru.inputs, MAX_INPUT),
        ] {
            if got > max {
                return Err(ModelError::Shape { layer, what: "units (at most)", got, want: max });
            }
        }
        Ok(model)
    }
}

impl Dense {
    /// `out[..outputs] = act(bias + W·x)`; `out[outputs..pad(outputs)]` is left 0 (zero padding).
    fn compute(&self, kernel: Kernel, x: &[f32], out: &mut [f32]) {
        let out = &mut out[..self.bias.len()];
        out.copy_from_slice(&self.bias);
        gemv_acc(kernel, &self.w, &x[..self.inputs], out);
        self.activation.apply_all(kernel, &mut out[..self.outputs]);
    }
}

impl Gru {
    /// One step: updates `state` (`neurons` long) from `x` (`inputs` long).
    fn compute(&self, kernel: Kernel, x: &[f32], state: &mut [f32]) {
        let (n, wide) = (self.neurons, pad(self.neurons));
        let stride = 3 * wide;
        let mut gates = [0f32; MAX_GATES];
        let gates = &mut gates[..stride];
        gates.copy_from_slice(&self.bias);
        // Input part of all three gates, then the recurrent part of z and r.
        gemv_acc(kernel, &self.w_in, &x[..self.inputs], gates);
        gemv_acc(kernel, &self.w_rec_zr, &state[..n], &mut gates[..2 * wide]);
        Activation::Sigmoid.apply_all(kernel, &mut gates[..2 * wide]);
        let mut reset_state = [0f32; MAX_NEURONS];
        for j in 0..n {
            reset_state[j] = state[j] * gates[wide + j];
        }
        // Recurrent part of the candidate, on the reset state.
        gemv_acc(kernel, &self.w_rec_h, &reset_state[..n], &mut gates[2 * wide..]);
        self.activation.apply_all(kernel, &mut gates[2 * wide..2 * wide + n]);
        for j in 0..n {
            let (z, h) = (gates[j], gates[2 * wide + j]);
            state[j] = z * state[j] + (1.0 - z) * h;
        }
    }
}

/// The network's recurrent state for one stream, and its scratch.
#[derive(Debug, Clone)]
pub(super) struct RnnState {
    vad: [f32; MAX_NEURONS],
    noise: [f32; MAX_NEURONS],
    denoise: [f32; MAX_NEURONS],
}

impl RnnState {
    pub(super) fn new() -> Self {
        Self { vad: [0.0; MAX_NEURONS], noise: [0.0; MAX_NEURONS], denoise: [0.0; MAX_NEURONS] }
    }

    /// One frame: `features` in; the 22 band gains out; returns the VAD probability.
    pub(super) fn compute(
        &mut self,
        model: &Model,
        kernel: Kernel,
        features: &[f32; NB_FEATURES],
        gains: &mut [f32; NB_BANDS],
    ) -> f32 {
        let (dense_n, vad_n, noise_n) =
            (model.input_dense.outputs, model.vad_gru.neurons, model.noise_gru.neurons);
        let mut dense = [0f32; MAX_NEURONS];
        model.input_dense.compute(kernel, features, &mut dense);
        model.vad_gru.compute(kernel, &dense, &mut self.vad);
        let mut vad = [0f32; LANES];
        model.vad_output.compute(kernel, &self.vad, &mut vad);

        let mut input = [0f32; MAX_INPUT];
        input[..dense_n].copy_from_slice(&dense[..dense_n]);
        input[dense_n..dense_n + vad_n].copy_from_slice(&self.vad[..vad_n]);
        input[dense_n + vad_n..dense_n + vad_n + NB_FEATURES].copy_from_slice(features);
        model.noise_gru.compute(kernel, &input, &mut self.noise);

        input[..vad_n].copy_from_slice(&self.vad[..vad_n]);
        input[vad_n..vad_n + noise_n].copy_from_slice(&self.noise[..noise_n]);
        input[vad_n + noise_n..vad_n + noise_n + NB_FEATURES].copy_from_slice(features);
        model.denoise_gru.compute(kernel, &input, &mut self.denoise);

        let mut out = [0f32; MAX_NEURONS];
        model.denoise_output.compute(kernel, &self.denoise, &mut out);
        gains.copy_from_slice(&out[..NB_BANDS]);
        vad[0]
    }
}

/// tanh(x / 25 steps) at 0, 0.04, …, 8.
const TANH_TABLE: [f32; 201] = {
    // RNNoise's table, to six decimals, as its C source prints it.
    [
        0.000000, 0.039979, 0.079830, 0.119427, 0.158649, 0.197375, 0.235496, 0.272905, 0.309507, 0.345214,
        0.379949, 0.413644, 0.446244, 0.477700, 0.507977, 0.537050, 0.564900, 0.591519, 0.616909, 0.641077,
        0.664037, 0.685809, 0.706419, 0.725897, 0.744277, 0.761594, 0.777888, 0.793199, 0.807569, 0.821040,
        0.833655, 0.845456, 0.856485, 0.866784, 0.876393, 0.885352, 0.893698, 0.901468, 0.908698, 0.915420,
        0.921669, 0.927473, 0.932862, 0.937863, 0.942503, 0.946806, 0.950795, 0.954492, 0.957917, 0.961090,
        0.964028, 0.966747, 0.969265, 0.971594, 0.973749, 0.975743, 0.977587, 0.979293, 0.980869, 0.982327,
        0.983675, 0.984921, 0.986072, 0.987136, 0.988119, 0.989027, 0.989867, 0.990642, 0.991359, 0.992020,
        0.992631, 0.993196, 0.993718, 0.994199, 0.994644, 0.995055, 0.995434, 0.995784, 0.996108, 0.996407,
        0.996682, 0.996937, 0.997172, 0.997389, 0.997590, 0.997775, 0.997946, 0.998104, 0.998249, 0.998384,
        0.998508, 0.998623, 0.998728, 0.998826, 0.998916, 0.999000, 0.999076, 0.999147, 0.999213, 0.999273,
        0.999329, 0.999381, 0.999428, 0.999472, 0.999513, 0.999550, 0.999585, 0.999617, 0.999646, 0.999673,
        0.999699, 0.999722, 0.999743, 0.999763, 0.999781, 0.999798, 0.999813, 0.999828, 0.999841, 0.999853,
        0.999865, 0.999875, 0.999885, 0.999893, 0.999902, 0.999909, 0.999916, 0.999923, 0.999929, 0.999934,
        0.999939, 0.999944, 0.999948, 0.999952, 0.999956, 0.999959, 0.999962, 0.999965, 0.999968, 0.999970,
        0.999973, 0.999975, 0.999977, 0.999978, 0.999980, 0.999982, 0.999983, 0.999984, 0.999986, 0.999987,
        0.999988, 0.999989, 0.999990, 0.999990, 0.999991, 0.999992, 0.999992, 0.999993, 0.999994, 0.999994,
        0.999994, 0.999995, 0.999995, 0.999996, 0.999996, 0.999996, 0.999997, 0.999997, 0.999997, 0.999997,
        0.999997, 0.999998, 0.999998, 0.999998, 0.999998, 0.999998, 0.999998, 0.999999, 0.999999, 0.999999,
        0.999999, 0.999999, 0.999999, 0.999999, 0.999999, 0.999999, 0.999999, 0.999999, 0.999999, 0.999999,
        1.000000, 1.000000, 1.000000, 1.000000, 1.000000, 1.000000, 1.000000, 1.000000, 1.000000, 1.000000,
        1.000000,
    ]
};

/// RNNoise's tanh: the nearest table entry `y` at `i / 25`, corrected to first order
/// (`y + d·(1 − y²)·(1 − y·d)`, `d` the distance to it). ±1 beyond ±8 and for NaN.
#[inline]
fn tansig(x: f32) -> f32 {
    // NaN (unordered) saturates to 1, as in RNNoise.
    if x.partial_cmp(&8.0) != Some(std::cmp::Ordering::Less) {
        return 1.0;
    }
    if x <= -8.0 {
        return -1.0;
    }
    let (a, sign) = if x < 0.0 { (-x, -1.0) } else { (x, 1.0) };
    let i = (0.5 + 25.0 * a).floor();
    let d = a - 0.04 * i;
    let y = TANH_TABLE[i as usize];
    let slope = 1.0 - y * y;
    sign * (y + d * slope * (1.0 - y * d))
}

/// RNNoise's sigmoid, through its tanh.
#[inline]
fn sigmoid(x: f32) -> f32 {
    0.5 + 0.5 * tansig(0.5 * x)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Activation, TANH_TABLE, WEIGHT_SCALE};

    /// Applies `act` to the leading multiple of 8 of `v`, scaled; returns how many it did.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn apply(act: Activation, v: &mut [f32]) -> usize {
        let mut chunks = v.chunks_exact_mut(8);
        let mut done = 0;
        for c in &mut chunks {
            let x = _mm256_mul_ps(_mm256_loadu_ps(c.as_ptr()), _mm256_set1_ps(WEIGHT_SCALE));
            let y = match act {
                Activation::Tanh => tansig(x),
                Activation::Sigmoid => {
                    let half = _mm256_set1_ps(0.5);
                    _mm256_add_ps(half, _mm256_mul_ps(half, tansig(_mm256_mul_ps(half, x))))
                }
                Activation::Relu => _mm256_max_ps(x, _mm256_setzero_ps()),
            };
            _mm256_storeu_ps(c.as_mut_ptr(), y);
            done += 8;
        }
        done
    }

    /// [`super::tansig`] on 8 lanes: |x| clamped to 8 (where the table's last entry, 1, and a
    /// zero distance give exactly 1), the entry gathered, the sign put back.
    #[inline(always)]
    unsafe fn tansig(x: __m256) -> __m256 {
        let sign_bit = _mm256_set1_ps(-0.0);
        let sign = _mm256_and_ps(x, sign_bit);
        let a = _mm256_min_ps(_mm256_andnot_ps(sign_bit, x), _mm256_set1_ps(8.0));
        let i = _mm256_floor_ps(_mm256_add_ps(_mm256_set1_ps(0.5), _mm256_mul_ps(_mm256_set1_ps(25.0), a)));
        let d = _mm256_sub_ps(a, _mm256_mul_ps(_mm256_set1_ps(0.04), i));
        let y = _mm256_i32gather_ps::<4>(TANH_TABLE.as_ptr(), _mm256_cvttps_epi32(i));
        let one = _mm256_set1_ps(1.0);
        let slope = _mm256_sub_ps(one, _mm256_mul_ps(y, y));
        let corr = _mm256_mul_ps(_mm256_mul_ps(d, slope), _mm256_sub_ps(one, _mm256_mul_ps(y, d)));
        _mm256_xor_ps(_mm256_add_ps(y, corr), sign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector activations give exactly the scalar ones (on the scaled sums), across the
    /// table, at its ends and beyond (saturation), for both signs.
    #[test]
    fn vector_activations_equal_scalar() {
        // Pre-scale values (×256) across the table, its ends and beyond.
        let xs: Vec<f32> =
            (-2200..2200).map(|k| k as f32 * 1.2).chain([2048.0, -2048.0, 2045.4, 1e8, -1e8]).collect();
        for act in [Activation::Tanh, Activation::Sigmoid, Activation::Relu] {
            let mut v = xs.clone();
            act.apply_all(Kernel::detect(), &mut v);
            for (x, got) in xs.iter().zip(&v) {
                assert_eq!(*got, act.apply(*x * WEIGHT_SCALE), "{act:?}({x})");
            }
        }
    }

    #[test]
    fn shipped_model_parses_with_rnnoise_shapes() {
        let m = Model::parse(WEIGHTS).unwrap();
        assert_eq!((m.input_dense.inputs, m.input_dense.outputs), (42, 24));
        assert_eq!((m.vad_gru.inputs, m.vad_gru.neurons), (24, 24));
        assert_eq!((m.noise_gru.inputs, m.noise_gru.neurons), (90, 48));
        assert_eq!((m.denoise_gru.inputs, m.denoise_gru.neurons), (114, 96));
        assert_eq!((m.denoise_output.inputs, m.denoise_output.outputs), (96, 22));
        assert_eq!((m.vad_output.inputs, m.vad_output.outputs), (24, 1));
        assert_eq!(m.vad_gru.activation, Activation::Relu);
        assert_eq!(m.denoise_output.activation, Activation::Sigmoid);
    }

    #[test]
    fn damaged_files_are_rejected() {
        assert_eq!(Model::parse(&WEIGHTS[..1100]).unwrap_err(), ModelError::Truncated { layer: "vad_gru" });
        let mut longer = WEIGHTS.to_vec();
        longer.push(0);
        assert_eq!(Model::parse(&longer).unwrap_err(), ModelError::TrailingBytes { extra: 1 });
        let mut bad = WEIGHTS.to_vec();
        bad[2] = 7;
        assert!(matches!(Model::parse(&bad), Err(ModelError::BadHeader { layer: "input_dense", .. })));
    }

    #[test]
    fn activations_follow_tanh_and_saturate() {
        for k in -100..=100 {
            let x = k as f32 * 0.09;
            assert!((tansig(x) - x.tanh()).abs() < 1e-4, "tanh({x}): {}", tansig(x));
            assert!((sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-4, "sigmoid({x})");
        }
        assert_eq!((tansig(9.0), tansig(-9.0), tansig(f32::NAN)), (1.0, -1.0, 1.0));
    }

    /// The packed layers compute what the file says: a GRU step against a direct f64 reading of
    /// the bytes.
    #[test]
    fn gru_step_matches_a_direct_reading_of_the_file() {
        let m = Model::parse(WEIGHTS).unwrap();
        // The vad GRU starts right after the input dense layer.
        let dense_len = 3 + 42 * 24 + 24;
        let f = &WEIGHTS[dense_len..];
        let (ni, n) = (f[0] as usize, f[1] as usize);
        let byte = |i: usize| f64::from(f[3 + i] as i8) / 256.0;
        let x: Vec<f32> = (0..ni).map(|k| ((k * 7 % 11) as f32 - 5.0) / 5.0).collect();
        let s0: Vec<f32> = (0..n).map(|k| ((k * 5 % 13) as f32 - 6.0) / 8.0).collect();
        let w_in = |k: usize, col: usize| byte(k * 3 * n + col);
        let w_rec = |k: usize, col: usize| byte(ni * 3 * n + k * 3 * n + col);
        let bias = |col: usize| byte(ni * 3 * n + n * 3 * n + col);
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let gate = |g: usize, j: usize, s: &[f64]| {
            bias(g * n + j)
                + (0..ni).map(|k| w_in(k, g * n + j) * f64::from(x[k])).sum::<f64>()
                + (0..n).map(|k| w_rec(k, g * n + j) * s[k]).sum::<f64>()
        };
        let s64: Vec<f64> = s0.iter().map(|&v| f64::from(v)).collect();
        let r: Vec<f64> = (0..n).map(|j| sig(gate(1, j, &s64)) * s64[j]).collect();
        for kernel in [Kernel::Portable, Kernel::detect()] {
            let mut state = [0f32; MAX_NEURONS];
            state[..n].copy_from_slice(&s0);
            m.vad_gru.compute(kernel, &x, &mut state);
            for j in 0..n {
                let z = sig(gate(0, j, &s64));
                let h = gate(2, j, &r).max(0.0);
                let want = z * s64[j] + (1.0 - z) * h;
                assert!(
                    (f64::from(state[j]) - want).abs() < 2e-3,
                    "{kernel:?} neuron {j}: {} vs {want}",
                    state[j]
                );
            }
        }
    }
}
