//! The Whisper network on candle ops, loaded straight from a CTranslate2 `model.bin`: the audio
//! encoder, and a decoder step with a self-attention KV cache and cross-attention keys/values
//! computed once per utterance.
//!
//! Why not candle-transformers' `whisper::model`: it recomputes the decoder's self-attention over
//! the whole prefix at every token (~25 ms/token on this CPU) and the cross-attention K/V of every
//! layer at every step; a cached step costs a fraction of that. Weights are kept fused as CT2
//! stores them (one Q/K/V matmul per self-attention, one K/V matmul per cross-attention).
//!
//! Shapes: batch `B` (1 for greedy, the beam width for beam search), `h` heads of `dh`, model
//! width `d`; encoder output `[1, Ta, d]`.

use candle_core::{DType, Device, Tensor, D};
use candle_nn::ops::{layer_norm, softmax_last_dim};

use super::ct2::{Ct2Error, Ct2File};
use super::f16mm::{F16Matrix, I8Matrix};

type CResult<T> = candle_core::Result<T>;

/// Hyper-parameters, read from the tensor shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub n_mels: usize,
    pub d_model: usize,
    pub n_audio_ctx: usize,
    pub n_text_ctx: usize,
    pub n_vocab: usize,
    pub enc_heads: usize,
    pub dec_heads: usize,
    pub enc_layers: usize,
    pub dec_layers: usize,
}

const LN_EPS: f32 = 1e-5;

/// How a weight matrix is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// f32, multiplied by candle's gemm (best for many rows: the encoder, cross K/V).
    F32,
    /// f16 (lossless for CT2's fp16 weights), multiplied by [`F16Matrix`] (few rows: decoder).
    F16,
    /// int8 with a scale per 32 weights, multiplied by [`I8Matrix`] (few rows: decoder).
    I8,
}

/// `[out, in]` weight as a matmul operand.
#[derive(Debug, Clone)]
enum Weight {
    Gemm(Tensor),
    F16(F16Matrix),
    I8(I8Matrix),
}

impl Weight {
    fn new(w: Tensor, format: Format) -> CResult<Self> {
        Ok(match format {
            Format::F32 => Self::Gemm(w),
            Format::F16 => {
                let (rows, cols) = w.dims2()?;
                Self::F16(F16Matrix::from_f32(&w.flatten_all()?.to_vec1::<f32>()?, rows, cols))
            }
            Format::I8 => {
                let (rows, cols) = w.dims2()?;
                Self::I8(I8Matrix::from_f32(&w.flatten_all()?.to_vec1::<f32>()?, rows, cols))
            }
        })
    }

    /// `x [rows, in] → [rows, out]`.
    fn matmul_t(&self, x: &Tensor) -> CResult<Tensor> {
        match self {
            Self::Gemm(w) => x.matmul(&w.t()?),
            Self::F16(w) => {
                let rows = x.dim(0)?;
                let y = w.matmul_t(&x.flatten_all()?.to_vec1::<f32>()?, rows);
                Tensor::from_vec(y, (rows, w.rows()), x.device())
            }
            Self::I8(w) => {
                let rows = x.dim(0)?;
                let y = w.matmul_t(&x.flatten_all()?.to_vec1::<f32>()?, rows);
                Tensor::from_vec(y, (rows, w.rows()), x.device())
            }
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::Gemm(w) => w.elem_count() * 4,
            Self::F16(w) => w.bytes(),
            Self::I8(w) => w.bytes(),
        }
    }

    /// Rows `ids` as f32 `[ids.len(), in]` (embedding lookup).
    fn rows(&self, ids: &[u32], dev: &Device) -> CResult<Tensor> {
        match self {
            Self::Gemm(w) => w.index_select(&Tensor::new(ids, dev)?, 0),
            Self::F16(w) => {
                let mut out = Vec::with_capacity(ids.len() * w.cols());
                for &id in ids {
                    w.row_into(id as usize, &mut out);
                }
                Tensor::from_vec(out, (ids.len(), w.cols()), dev)
            }
            Self::I8(w) => {
                let mut out = Vec::with_capacity(ids.len() * w.cols());
                for &id in ids {
                    w.row_into(id as usize, &mut out);
                }
                Tensor::from_vec(out, (ids.len(), w.cols()), dev)
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Linear {
    /// `[out, in]`, as stored.
    w: Weight,
    b: Option<Tensor>,
    out: usize,
}

impl Linear {
    fn load(f: &Ct2File, prefix: &str, format: Format, dev: &Device) -> Result<Self, Ct2Error> {
        let w = f.tensor(&format!("{prefix}/weight"), dev)?;
        let out = w.dim(0)?;
        let b = match f.var(&format!("{prefix}/bias")) {
            Ok(_) => Some(f.tensor(&format!("{prefix}/bias"), dev)?),
            Err(_) => None,
        };
        Ok(Self { w: Weight::new(w, format)?, b, out })
    }

    /// `x [.., in] → [.., out]`.
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let dims = x.dims().to_vec();
        let (last, lead) = dims.split_last().expect("linear input has a dimension");
        let rows: usize = lead.iter().product();
        let y = self.w.matmul_t(&x.reshape((rows, *last))?)?;
        let y = match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = lead.to_vec();
        out.push(self.out);
        y.reshape(out)
    }
}

#[derive(Debug, Clone)]
struct Norm {
    gamma: Tensor,
    beta: Tensor,
}

impl Norm {
    fn load(f: &Ct2File, prefix: &str, dev: &Device) -> Result<Self, Ct2Error> {
        Ok(Self {
            gamma: f.tensor(&format!("{prefix}/gamma"), dev)?,
            beta: f.tensor(&format!("{prefix}/beta"), dev)?,
        })
    }

    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        layer_norm(&x.contiguous()?, &self.gamma, &self.beta, LN_EPS)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    norm: Norm,
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn load(f: &Ct2File, prefix: &str, format: Format, dev: &Device) -> Result<Self, Ct2Error> {
        Ok(Self {
            norm: Norm::load(f, &format!("{prefix}/ffn/layer_norm"), dev)?,
            fc1: Linear::load(f, &format!("{prefix}/ffn/linear_0"), format, dev)?,
            fc2: Linear::load(f, &format!("{prefix}/ffn/linear_1"), format, dev)?,
        })
    }

    /// Residual block: `x + fc2(gelu(fc1(ln(x))))`.
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let y = self.fc2.forward(&self.fc1.forward(&self.norm.forward(x)?)?.gelu_erf()?)?;
        x + y
    }
}

/// `[B, T, h·dh] → [B, h, T, dh]`.
fn split_heads(x: &Tensor, heads: usize) -> CResult<Tensor> {
    let (b, t, d) = x.dims3()?;
    x.reshape((b, t, heads, d / heads))?.transpose(1, 2)?.contiguous()
}

/// `[B, h, T, dh] → [B, T, h·dh]`.
fn merge_heads(x: &Tensor) -> CResult<Tensor> {
    let (b, h, t, dh) = x.dims4()?;
    x.transpose(1, 2)?.reshape((b, t, h * dh))
}

/// Scaled dot-product attention over the last two dims.
fn attend(q: &Tensor, k_t: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> CResult<Tensor> {
    let dh = q.dim(D::Minus1)?;
    let w = (q.matmul(k_t)? * (1.0 / (dh as f64).sqrt()))?;
    let w = match mask {
        Some(m) => w.broadcast_add(m)?,
        None => w,
    };
    softmax_last_dim(&w)?.matmul(v)
}

#[derive(Debug, Clone)]
struct SelfAttention {
    norm: Norm,
    /// Fused `[3d, d]` Q/K/V projection (the K bias is zero in Whisper).
    qkv: Linear,
    out: Linear,
    heads: usize,
}

impl SelfAttention {
    fn load(f: &Ct2File, prefix: &str, heads: usize, format: Format, dev: &Device) -> Result<Self, Ct2Error> {
        Ok(Self {
            norm: Norm::load(f, &format!("{prefix}/self_attention/layer_norm"), dev)?,
            qkv: Linear::load(f, &format!("{prefix}/self_attention/linear_0"), format, dev)?,
            out: Linear::load(f, &format!("{prefix}/self_attention/linear_1"), format, dev)?,
            heads,
        })
    }

    /// Projects `ln(x)` to per-head Q, K, V `[B, h, T, dh]`.
    fn qkv(&self, x: &Tensor) -> CResult<(Tensor, Tensor, Tensor)> {
        let qkv = self.qkv.forward(&self.norm.forward(x)?)?;
        let d = qkv.dim(D::Minus1)? / 3;
        let part = |i: usize| split_heads(&qkv.narrow(D::Minus1, i * d, d)?, self.heads);
        Ok((part(0)?, part(1)?, part(2)?))
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    attn: SelfAttention,
    mlp: Mlp,
}

#[derive(Debug, Clone)]
struct CrossAttention {
    norm: Norm,
    q: Linear,
    /// Fused `[2d, d]` K/V projection of the encoder output.
    kv: Linear,
    out: Linear,
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    attn: SelfAttention,
    cross: CrossAttention,
    mlp: Mlp,
}

/// Cross-attention keys (transposed) and values of one layer: `[h, dh, Ta]`, `[h, Ta, dh]`.
#[derive(Debug, Clone)]
pub struct CrossKv {
    k_t: Tensor,
    v: Tensor,
}

/// Per-sequence decoder state: self-attention keys/values of every layer so far.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer `(k, v)`, each `[B, h, L, dh]`; `None` before the first step.
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Tokens already in the cache (the position of the next token).
    pub len: usize,
}

impl KvCache {
    /// Keeps the rows in `parents` (beam search: row `i` continues beam `parents[i]`).
    pub fn reorder(&mut self, parents: &[u32]) -> CResult<()> {
        let idx = Tensor::new(parents, &Device::Cpu)?;
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(&idx, 0)?;
            *v = v.index_select(&idx, 0)?;
        }
        Ok(())
    }
}

/// Whisper encoder + decoder weights.
#[derive(Debug, Clone)]
pub struct Network {
    pub dims: Dims,
    conv1_w: Tensor,
    conv1_b: Tensor,
    conv2_w: Tensor,
    conv2_b: Tensor,
    enc_pos: Tensor,
    enc_layers: Vec<EncoderLayer>,
    enc_norm: Norm,
    /// Token embedding `[vocab, d]`, tied with the output projection.
    embed: Weight,
    dec_pos: Tensor,
    dec_layers: Vec<DecoderLayer>,
    dec_norm: Norm,
    device: Device,
}

/// Weight formats of the network's matmuls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precision {
    /// Encoder attention and MLP projections.
    pub encoder: Format,
    /// Decoder attention (self and cross) and MLP projections.
    pub decoder: Format,
    /// The tied embedding / output projection over the vocabulary.
    pub embed: Format,
}

impl Network {
    /// Builds the network from a parsed CT2 Whisper file (f16 widened to f32, then kept in the
    /// formats of `prec`).
    pub fn load(f: &Ct2File, prec: Precision, dev: &Device) -> Result<Self, Ct2Error> {
        let count = |prefix: &str| {
            (0..).take_while(|i| f.var(&format!("{prefix}/layer_{i}/ffn/linear_0/weight")).is_ok()).count()
        };
        let enc_layers = count("encoder");
        let dec_layers = count("decoder");
        let conv1 = f.var("encoder/conv1/weight")?;
        let embed = f.var("decoder/embeddings/weight")?;
        let enc_pos = f.var("encoder/position_encodings/encodings")?;
        let dec_pos = f.var("decoder/position_encodings/encodings")?;
        let dims = Dims {
            n_mels: conv1.dims[1],
            d_model: conv1.dims[0],
            n_audio_ctx: enc_pos.dims[0],
            n_text_ctx: dec_pos.dims[0],
            n_vocab: embed.dims[0],
            enc_heads: f.scalar_i64("encoder/num_heads").unwrap_or(6) as usize,
            dec_heads: f.scalar_i64("decoder/num_heads").unwrap_or(6) as usize,
            enc_layers,
            dec_layers,
        };
        let enc_layers = (0..enc_layers)
            .map(|i| {
                let p = format!("encoder/layer_{i}");
                Ok(EncoderLayer {
                    attn: SelfAttention::load(f, &p, dims.enc_heads, prec.encoder, dev)?,
                    mlp: Mlp::load(f, &p, prec.encoder, dev)?,
                })
            })
            .collect::<Result<_, Ct2Error>>()?;
        let dec_layers = (0..dec_layers)
            .map(|i| {
                let p = format!("decoder/layer_{i}");
                Ok(DecoderLayer {
                    attn: SelfAttention::load(f, &p, dims.dec_heads, prec.decoder, dev)?,
                    cross: CrossAttention {
                        norm: Norm::load(f, &format!("{p}/attention/layer_norm"), dev)?,
                        q: Linear::load(f, &format!("{p}/attention/linear_0"), prec.decoder, dev)?,
                        // Applied to every audio frame at once: many rows, like the encoder's.
                        kv: Linear::load(f, &format!("{p}/attention/linear_1"), prec.encoder, dev)?,
                        out: Linear::load(f, &format!("{p}/attention/linear_2"), prec.decoder, dev)?,
                    },
                    mlp: Mlp::load(f, &p, prec.decoder, dev)?,
                })
            })
            .collect::<Result<_, Ct2Error>>()?;
        Ok(Self {
            dims,
            conv1_w: f.tensor("encoder/conv1/weight", dev)?,
            conv1_b: f.tensor("encoder/conv1/bias", dev)?.reshape((1, dims.d_model, 1))?,
            conv2_w: f.tensor("encoder/conv2/weight", dev)?,
            conv2_b: f.tensor("encoder/conv2/bias", dev)?.reshape((1, dims.d_model, 1))?,
            enc_pos: f.tensor("encoder/position_encodings/encodings", dev)?,
            enc_layers,
            enc_norm: Norm::load(f, "encoder/layer_norm", dev)?,
            embed: Weight::new(f.tensor("decoder/embeddings/weight", dev)?, prec.embed)?,
            dec_pos: f.tensor("decoder/position_encodings/encodings", dev)?,
            dec_layers,
            dec_norm: Norm::load(f, "decoder/layer_norm", dev)?,
            device: dev.clone(),
        })
    }

    /// Encodes log-mel features `[n_mels][frames]` (frames even, ≤ 2 · n_audio_ctx) to
    /// `[1, frames / 2, d]`. Whisper was trained on 30 s windows; shorter inputs use the first
    /// positional encodings (whisper.cpp's `audio_ctx`).
    pub fn encode(&self, mel: &[f32], frames: usize) -> CResult<Tensor> {
        let x = Tensor::from_slice(mel, (1, self.dims.n_mels, frames), &self.device)?;
        let x = x.conv1d(&self.conv1_w, 1, 1, 1, 1)?.broadcast_add(&self.conv1_b)?.gelu_erf()?;
        let x = x.conv1d(&self.conv2_w, 1, 2, 1, 1)?.broadcast_add(&self.conv2_b)?.gelu_erf()?;
        let x = x.transpose(1, 2)?;
        let ta = x.dim(1)?;
        let mut x = x.broadcast_add(&self.enc_pos.narrow(0, 0, ta)?)?;
        for layer in &self.enc_layers {
            let (q, k, v) = layer.attn.qkv(&x)?;
            let a = attend(&q, &k.t()?, &v, None)?;
            x = (&x + layer.attn.out.forward(&merge_heads(&a)?)?)?;
            x = layer.mlp.forward(&x)?;
        }
        self.enc_norm.forward(&x)
    }

    /// Cross-attention K/V of every decoder layer for one encoder output `[1, Ta, d]`.
    pub fn cross_kv(&self, audio: &Tensor) -> CResult<Vec<CrossKv>> {
        self.dec_layers
            .iter()
            .map(|layer| {
                let kv = layer.cross.kv.forward(audio)?;
                let d = self.dims.d_model;
                let heads = |i: usize| -> CResult<Tensor> {
                    split_heads(&kv.narrow(D::Minus1, i * d, d)?, self.dims.dec_heads)?.squeeze(0)
                };
                Ok(CrossKv { k_t: heads(0)?.t()?.contiguous()?, v: heads(1)? })
            })
            .collect()
    }

    /// Bytes of the matmul weights, embedding, convolutions and positional encodings held.
    pub fn weight_bytes(&self) -> usize {
        let lin = |l: &Linear| l.w.bytes() + l.b.as_ref().map_or(0, |b| b.elem_count() * 4);
        let enc: usize = self
            .enc_layers
            .iter()
            .map(|l| lin(&l.attn.qkv) + lin(&l.attn.out) + lin(&l.mlp.fc1) + lin(&l.mlp.fc2))
            .sum();
        let dec: usize = self
            .dec_layers
            .iter()
            .map(|l| {
                lin(&l.attn.qkv)
                    + lin(&l.attn.out)
                    + lin(&l.cross.q)
                    + lin(&l.cross.kv)
                    + lin(&l.cross.out)
                    + lin(&l.mlp.fc1)
                    + lin(&l.mlp.fc2)
            })
            .sum();
        let f32s = [&self.conv1_w, &self.conv2_w, &self.enc_pos, &self.dec_pos]
            .iter()
            .map(|t| t.elem_count() * 4)
            .sum::<usize>();
        enc + dec + self.embed.bytes() + f32s
    }

    /// Empty cache for a new sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache { layers: vec![None; self.dims.dec_layers], len: 0 }
    }

    /// Runs `tokens` (`B` rows of `T` ids, row-major) through the decoder after what `cache`
    /// holds, appends their keys/values, and returns logits `[B, T, vocab]`.
    pub fn decode_step(
        &self,
        tokens: &[u32],
        batch: usize,
        cache: &mut KvCache,
        cross: &[CrossKv],
    ) -> CResult<Tensor> {
        let t = tokens.len() / batch;
        let d = self.dims.d_model;
        let pos = self.dec_pos.narrow(0, cache.len, t)?;
        let mut x = self.embed.rows(tokens, &self.device)?.reshape((batch, t, d))?.broadcast_add(&pos)?;
        // Causal mask for multi-token steps: query i (at cache.len + i) sees keys ≤ cache.len + i.
        let mask = if t > 1 {
            let past = cache.len;
            let total = past + t;
            let m: Vec<f32> = (0..t)
                .flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            Some(Tensor::from_vec(m, (t, total), &self.device)?)
        } else {
            None
        };
        for (layer, (slot, ckv)) in self.dec_layers.iter().zip(cache.layers.iter_mut().zip(cross)) {
            // Self-attention over cache + new tokens.
            let (q, k, v) = layer.attn.qkv(&x)?;
            let (k, v) = match slot.take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v),
            };
            let a = attend(&q, &k.t()?, &v, mask.as_ref())?;
            *slot = Some((k, v));
            x = (&x + layer.attn.out.forward(&merge_heads(&a)?)?)?;
            // Cross-attention: fold the batch into the query axis, so all rows share one K/V.
            let q =
                split_heads(&layer.cross.q.forward(&layer.cross.norm.forward(&x)?)?, self.dims.dec_heads)?;
            let (b, h, tq, dh) = q.dims4()?;
            let q = q.transpose(0, 1)?.reshape((h, b * tq, dh))?;
            let a = attend(&q, &ckv.k_t, &ckv.v, None)?.reshape((h, b, tq, dh))?.transpose(0, 1)?;
            x = (&x + layer.cross.out.forward(&merge_heads(&a)?)?)?;
            x = layer.mlp.forward(&x)?;
        }
        cache.len += t;
        let x = self.dec_norm.forward(&x)?.reshape((batch * t, d))?;
        let logits = self.embed.matmul_t(&x)?;
        logits.reshape((batch, t, self.dims.n_vocab))?.to_dtype(DType::F32)
    }
}
