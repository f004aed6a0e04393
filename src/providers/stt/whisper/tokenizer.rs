//! Whisper token ids → text: GPT-2 byte-level BPE decoding over `tokenizer.json`'s vocabulary,
//! plus the special-token ids the decoder needs. Decode only: Whisper never needs to encode text
//! here (the prompt is special tokens).
//!
//! Language tokens (`<|en|>`, `<|es|>`, … — two or three lower-case letters between `<|` and
//! `|>`) are looked up by name, never by id: tiny.en and the multilingual models number their
//! special tokens differently (`<|startoftranscript|>` is 50257 in one, 50258 in the other).

use std::collections::HashMap;
use std::path::Path;

/// Tokenizer faults (at load time only).
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("bad tokenizer.json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("tokenizer.json has no {0}")]
    Missing(&'static str),
}

/// Ids of the special tokens Whisper decoding uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `<|endoftext|>`: the first special id; everything below is text.
    pub eot: u32,
    pub sot: u32,
    pub transcribe: u32,
    /// `<|nocaptions|>` / `<|nospeech|>`: its probability after `sot` says "no speech".
    pub no_speech: u32,
    pub no_timestamps: u32,
    /// Language token of English, `None` for English-only models.
    pub english: Option<u32>,
}

/// Byte-level BPE decoder.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// id → bytes of the token (byte-level alphabet already undone).
    pieces: Vec<Vec<u8>>,
    pub special: SpecialTokens,
    /// Whisper language code (`es`, `haw`) → id of its `<|code|>` token.
    languages: HashMap<String, u32>,
}

/// GPT-2's reversible byte ↔ printable character table: printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100.. in byte order.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut extra = 0u32;
    for b in 0u32..=255 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            extra += 1;
            255 + extra
        };
        if let Some(c) = char::from_u32(c) {
            map.insert(c, b as u8);
        }
    }
    map
}

impl Tokenizer {
    /// Reads `tokenizer.json` (HF `tokenizers` format: `model.vocab` + `added_tokens`).
    pub fn load(path: &Path) -> Result<Self, TokenizerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenizerError::Io { path: path.display().to_string(), source })?;
        Self::from_json(&text)
    }

    pub fn from_json(text: &str) -> Result<Self, TokenizerError> {
        #[derive(serde::Deserialize)]
        struct Added {
            id: u32,
            content: String,
        }
        #[derive(serde::Deserialize)]
        struct Model {
            vocab: HashMap<String, u32>,
        }
        #[derive(serde::Deserialize)]
        struct File {
            model: Model,
            #[serde(default)]
            added_tokens: Vec<Added>,
        }
        let file: File = serde_json::from_str(text)?;
        let to_byte = unicode_to_byte();
        let n = file
            .model
            .vocab
            .values()
            .chain(file.added_tokens.iter().map(|a| &a.id))
            .max()
            .map_or(0, |m| *m as usize + 1);
        let mut pieces = vec![Vec::new(); n];
        for (token, id) in &file.model.vocab {
            pieces[*id as usize] = token.chars().filter_map(|c| to_byte.get(&c).copied()).collect();
        }
        let mut by_name = HashMap::new();
        for a in &file.added_tokens {
            // Special tokens decode to nothing; keep their names for the id table.
            pieces[a.id as usize].clear();
            by_name.insert(a.content.as_str(), a.id);
        }
        let get = |name: &'static str| by_name.get(name).copied().ok_or(TokenizerError::Missing(name));
        let special = SpecialTokens {
            eot: get("<|endoftext|>")?,
            sot: get("<|startoftranscript|>")?,
            transcribe: get("<|transcribe|>")?,
            no_speech: get("<|nocaptions|>").or_else(|_| get("<|nospeech|>"))?,
            no_timestamps: get("<|notimestamps|>")?,
            english: by_name.get("<|en|>").copied(),
        };
        let languages = by_name
            .iter()
            .filter_map(|(name, &id)| {
                let code = name.strip_prefix("<|")?.strip_suffix("|>")?;
                let is_code = (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase());
                is_code.then(|| (code.to_string(), id))
            })
            .collect();
        Ok(Self { pieces, special, languages })
    }

    /// Id of the language token `<|code|>` (`code` as Whisper spells it: `es`, `zh`, `haw`).
    pub fn language(&self, code: &str) -> Option<u32> {
        self.languages.get(code).copied()
    }

    /// Number of language tokens.
    pub fn language_count(&self) -> usize {
        self.languages.len()
    }

    /// Forgets the language tokens (English-only models list them but were not trained on them).
    pub fn drop_languages(&mut self) {
        self.languages.clear();
        self.special.english = None;
    }

    /// Number of ids known (text + special).
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Whether `id` is a text token (not special, not a timestamp).
    pub fn is_text(&self, id: u32) -> bool {
        id < self.special.eot
    }

    /// Text of `ids`; special tokens are skipped, invalid UTF-8 replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids.iter().filter(|&&id| self.is_text(id)) {
            if let Some(p) = self.pieces.get(id as usize) {
                bytes.extend_from_slice(p);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{
        "model": {"type": "BPE", "vocab": {"Hello": 0, ",": 1, "Ġworld": 2, "Ċ": 3, "Ã©": 4, "!": 5}},
        "added_tokens": [
            {"id": 6, "content": "<|endoftext|>"}, {"id": 7, "content": "<|startoftranscript|>"},
            {"id": 8, "content": "<|transcribe|>"}, {"id": 9, "content": "<|nocaptions|>"},
            {"id": 10, "content": "<|notimestamps|>"}, {"id": 11, "content": "<|es|>"},
            {"id": 12, "content": "<|haw|>"}, {"id": 13, "content": "<|startoflm|>"}
        ]
    }"#;

    #[test]
    fn decodes_byte_level_pieces() {
        let t = Tokenizer::from_json(JSON).unwrap();
        assert_eq!(t.decode(&[0, 1, 2, 5]), "Hello, world!");
        // Ċ is the newline byte; "Ã©" is the two UTF-8 bytes of "é".
        assert_eq!(t.decode(&[3, 4]), "\né");
    }

    #[test]
    fn skips_special_tokens_and_finds_their_ids() {
        let t = Tokenizer::from_json(JSON).unwrap();
        assert_eq!(t.decode(&[7, 10, 0, 6]), "Hello");
        assert_eq!(t.special.eot, 6);
        assert_eq!(t.special.sot, 7);
        assert_eq!(t.special.no_speech, 9);
        assert_eq!(t.special.no_timestamps, 10);
        assert_eq!(t.special.english, None);
        assert!(t.is_text(5) && !t.is_text(6));
    }

    #[test]
    fn language_tokens_are_found_by_name() {
        let mut t = Tokenizer::from_json(JSON).unwrap();
        assert_eq!(t.language("es"), Some(11));
        assert_eq!(t.language("haw"), Some(12));
        assert_eq!(t.language("startoflm"), None, "not a language");
        assert_eq!(t.language("de"), None);
        assert_eq!(t.language_count(), 2);
        t.drop_languages();
        assert_eq!((t.language("es"), t.language_count()), (None, 0));
    }

    #[test]
    fn byte_table_is_a_bijection() {
        let m = unicode_to_byte();
        assert_eq!(m.len(), 256);
        let mut bytes: Vec<u8> = m.values().copied().collect();
        bytes.sort_unstable();
        bytes.dedup();
        assert_eq!(bytes.len(), 256);
        assert_eq!(m[&'Ġ'], b' ');
    }
}
