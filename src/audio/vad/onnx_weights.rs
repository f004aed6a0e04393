//! Reads the f32 weight tensors (graph initializers) out of an ONNX model file, without
//! onnxruntime: just enough of the protobuf wire format to walk `ModelProto.graph` →
//! `GraphProto.initializer` → `TensorProto { dims, data_type, name, raw_data | float_data }`.
//!
//! Field numbers are those of `onnx.proto` (ModelProto.graph = 7, GraphProto.initializer = 5,
//! TensorProto.dims = 1, data_type = 2, float_data = 4, name = 8, raw_data = 9,
//! data_location = 14). Only float tensors stored inside the file are returned; other
//! initializers (the int64 constants of the graph) are skipped. Runs once per process at load.

use std::collections::HashMap;

/// One f32 initializer: its shape and values (row-major, as stored).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tensor {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

/// What went wrong while walking the file (the caller adds the path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum OnnxReadError {
    #[error("truncated or malformed protobuf at byte {0}")]
    Malformed(usize),
    #[error("no graph in the model")]
    NoGraph,
    #[error("tensor {name}: {len} data bytes for {values} values")]
    DataSize { name: String, len: usize, values: usize },
}

/// All float initializers of the model's top-level graph, by name.
pub(super) fn float_initializers(model: &[u8]) -> Result<HashMap<String, Tensor>, OnnxReadError> {
    let mut graph = None;
    for field in Fields::new(model, 0) {
        if let (7, Value::Bytes(body, at)) = field? {
            graph = Some((body, at));
        }
    }
    let (graph, graph_at) = graph.ok_or(OnnxReadError::NoGraph)?;
    let mut out = HashMap::new();
    for field in Fields::new(graph, graph_at) {
        if let (5, Value::Bytes(body, at)) = field? {
            if let Some((name, tensor)) = tensor(body, at)? {
                out.insert(name, tensor);
            }
        }
    }
    Ok(out)
}

/// One `TensorProto`; `None` unless it is FLOAT (data_type 1) with its data in the file.
fn tensor(body: &[u8], base: usize) -> Result<Option<(String, Tensor)>, OnnxReadError> {
    let (mut dims, mut data_type, mut name, mut raw, mut floats) =
        (Vec::new(), 0, String::new(), None, Vec::new());
    let mut external = false;
    for field in Fields::new(body, base) {
        match field? {
            (1, Value::Varint(d)) => dims.push(d as usize),
            (1, Value::Bytes(packed, at)) => {
                for v in Varints::new(packed, at) {
                    dims.push(v? as usize);
                }
            }
            (2, Value::Varint(t)) => data_type = t,
            (4, Value::Fixed32(bits)) => floats.push(f32::from_bits(bits)),
            (4, Value::Bytes(packed, _)) => {
                floats.extend(packed.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            (8, Value::Bytes(s, _)) => name = String::from_utf8_lossy(s).into_owned(),
            (9, Value::Bytes(bytes, _)) => raw = Some(bytes),
            (14, Value::Varint(location)) => external = location == 1,
            _ => {}
        }
    }
    if data_type != 1 || external {
        return Ok(None);
    }
    let values: usize = dims.iter().product();
    let data = match raw {
        Some(bytes) if bytes.len() == 4 * values => {
            bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        }
        Some(bytes) => return Err(OnnxReadError::DataSize { name, len: bytes.len(), values }),
        None if floats.len() == values => floats,
        None => return Err(OnnxReadError::DataSize { name, len: 4 * floats.len(), values }),
    };
    Ok(Some((name, Tensor { dims, data })))
}

/// A field's payload by wire type (groups, long deprecated, are rejected as malformed).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value<'a> {
    Varint(u64),
    /// 8 bytes, skipped (no field read here has this type).
    Fixed64,
    /// Length-delimited payload and its offset in the file (for error positions).
    Bytes(&'a [u8], usize),
    Fixed32(u32),
}

/// Iterator over the `(field number, value)` pairs of one message.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the file.
    base: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn field(&mut self) -> Result<(u32, Value<'a>), OnnxReadError> {
        let err = OnnxReadError::Malformed(self.base + self.pos);
        let key = varint(self.buf, &mut self.pos).ok_or(err.clone())?;
        let number = (key >> 3) as u32;
        let value = match key & 7 {
            0 => Value::Varint(varint(self.buf, &mut self.pos).ok_or(err.clone())?),
            1 => {
                self.take(8).ok_or(err.clone())?;
                Value::Fixed64
            }
            2 => {
                let len = varint(self.buf, &mut self.pos).ok_or(err.clone())? as usize;
                let at = self.base + self.pos;
                Value::Bytes(self.take(len).ok_or(err.clone())?, at)
            }
            5 => Value::Fixed32(u32::from_le_bytes(
                self.take(4).ok_or(err.clone())?.try_into().expect("4 bytes"),
            )),
            _ => return Err(err),
        };
        Ok((number, value))
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len())?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Some(out)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), OnnxReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let item = self.field();
        if item.is_err() {
            self.pos = self.buf.len();
        }
        Some(item)
    }
}

/// Iterator over a packed run of varints.
struct Varints<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Varints<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }
}

impl Iterator for Varints<'_> {
    type Item = Result<u64, OnnxReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let at = self.base + self.pos;
        let v = varint(self.buf, &mut self.pos).ok_or(OnnxReadError::Malformed(at));
        if v.is_err() {
            self.pos = self.buf.len();
        }
        Some(v)
    }
}

/// Decodes a base-128 varint at `*pos`, advancing it; `None` if truncated or over 10 bytes.
fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn put_bytes(out: &mut Vec<u8>, field: u32, body: &[u8]) {
        put_varint(out, u64::from(field) << 3 | 2);
        put_varint(out, body.len() as u64);
        out.extend_from_slice(body);
    }

    fn put_int(out: &mut Vec<u8>, field: u32, v: u64) {
        put_varint(out, u64::from(field) << 3);
        put_varint(out, v);
    }

    /// A model with one raw-data float tensor (packed dims), one float_data tensor (unpacked
    /// dims), and one int64 tensor that must be skipped.
    fn model() -> Vec<u8> {
        let mut a = Vec::new();
        let mut dims = Vec::new();
        put_varint(&mut dims, 2);
        put_varint(&mut dims, 3);
        put_bytes(&mut a, 1, &dims);
        put_int(&mut a, 2, 1);
        put_bytes(&mut a, 8, b"w");
        let raw: Vec<u8> = (0..6).flat_map(|i| (i as f32 * 0.5 - 1.0).to_le_bytes()).collect();
        put_bytes(&mut a, 9, &raw);

        let mut b = Vec::new();
        put_int(&mut b, 1, 2);
        put_int(&mut b, 2, 1);
        put_bytes(&mut b, 8, b"bias");
        let floats: Vec<u8> = [3.25f32, -7.0].iter().flat_map(|f| f.to_le_bytes()).collect();
        put_bytes(&mut b, 4, &floats);

        let mut c = Vec::new();
        put_int(&mut c, 2, 7);
        put_bytes(&mut c, 8, b"shape");
        put_bytes(&mut c, 9, &5i64.to_le_bytes());

        let mut graph = Vec::new();
        put_bytes(&mut graph, 2, b"g");
        for t in [&a, &b, &c] {
            put_bytes(&mut graph, 5, t);
        }
        let mut model = Vec::new();
        put_int(&mut model, 1, 8);
        put_bytes(&mut model, 2, b"test");
        put_bytes(&mut model, 7, &graph);
        model
    }

    #[test]
    fn reads_raw_and_float_data_tensors_and_skips_others() {
        let t = float_initializers(&model()).unwrap();
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(t["w"], Tensor { dims: vec![2, 3], data: vec![-1.0, -0.5, 0.0, 0.5, 1.0, 1.5] });
        assert_eq!(t["bias"], Tensor { dims: vec![2], data: vec![3.25, -7.0] });
    }

    #[test]
    fn truncated_or_graphless_files_are_errors() {
        let m = model();
        assert!(matches!(float_initializers(&m[..m.len() - 3]), Err(OnnxReadError::Malformed(_))));
        let mut no_graph = Vec::new();
        put_int(&mut no_graph, 1, 8);
        assert_eq!(float_initializers(&no_graph), Err(OnnxReadError::NoGraph));
    }

    #[test]
    fn varints_decode_multi_byte_and_reject_overlong() {
        let mut buf = Vec::new();
        put_varint(&mut buf, 300);
        put_varint(&mut buf, u64::MAX);
        let mut pos = 0;
        assert_eq!(varint(&buf, &mut pos), Some(300));
        assert_eq!(varint(&buf, &mut pos), Some(u64::MAX));
        assert_eq!(varint(&[0xff; 11], &mut 0), None);
    }
}
