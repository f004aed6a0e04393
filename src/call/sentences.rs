//! Cuts streamed reply text into speakable pieces: whole sentences, and for the first piece of
//! a reply something shorter, so speech can start before the model has finished a sentence:
//! a clause of at least [`MIN_CLAUSE_WORDS`] words, or else a phrase of at least
//! [`MIN_PHRASE_WORDS`] words cut before a conjunction or preposition ("I'd be happy | to help
//! you…"), or else the first [`MAX_FIRST_WORDS`] words. Speech synthesis time grows with the
//! length of the text (Piper: ≈ 40 ms + 60 ms per second of speech), and the model produces ~10
//! words a second, so a short first piece is worth ~200 ms on a long first sentence; the rest
//! of the sentence is synthesised while the first piece plays.
//!
//! A sentence ends at `.`, `!`, `?` or `…` (with closing quotes/brackets) followed by
//! whitespace, or at a line break. Not a sentence end: a full stop inside a number (`3.50`),
//! an e-mail address or URL (no whitespace follows), after a known abbreviation (`Dr.`,
//! `e.g.`, `a.m.` …), after a single capital initial (`J. Smith`), or before a lower-case word.
//! Because the next word decides some cases, a candidate end is only released once the first
//! character after the whitespace has arrived (or at [`SentenceChunker::finish`]).

/// Abbreviations that do not end a sentence (compared lower-case, without the final dot).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "no", "inc", "ltd",
    "co", "corp", "approx", "dept", "est", "fig", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun", "ave", "blvd", "rd", "apt",
    "ext", "tel", "a.m", "p.m", "u.s", "u.k",
];

/// A first clause is released early once it has at least this many words.
const MIN_CLAUSE_WORDS: usize = 3;
/// Without a clause mark, the first piece may end before a [`BREAK_BEFORE`] word once it has
/// this many words…
const MIN_PHRASE_WORDS: usize = 3;
/// … and ends after this many words in any case.
const MAX_FIRST_WORDS: usize = 7;
/// Words a phrase may be cut before (compared lower-case).
const BREAK_BEFORE: &[&str] = &[
    "and", "but", "or", "so", "because", "to", "for", "with", "at", "on", "in", "from", "which", "that",
    "who", "when", "if", "while", "until", "about", "by", "of",
];

/// Streaming sentence splitter for one reply.
#[derive(Debug, Default)]
pub struct SentenceChunker {
    buf: String,
    /// Pieces released so far (the first may be a clause).
    released: usize,
}

impl SentenceChunker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `text`; returns the pieces now complete.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        while let Some(end) = self.next_end() {
            let piece: String = self.buf.drain(..end).collect();
            let piece = piece.trim();
            if !piece.is_empty() {
                out.push(piece.to_string());
                self.released += 1;
            }
        }
        out
    }

    /// Everything still buffered, as one piece (end of the reply, or a flushed line).
    pub fn finish(&mut self) -> Option<String> {
        let piece = std::mem::take(&mut self.buf);
        let piece = piece.trim();
        (!piece.is_empty()).then(|| {
            self.released += 1;
            piece.to_string()
        })
    }

    /// Byte index just past the first complete piece in `buf`, if any.
    fn next_end(&self) -> Option<usize> {
        let s = self.buf.as_str();
        let chars: Vec<(usize, char)> = s.char_indices().collect();
        for (k, &(i, c)) in chars.iter().enumerate() {
            if c == '\n' {
                return Some(i + 1);
            }
            let terminal = matches!(c, '.' | '!' | '?' | '…');
            let clause = self.released == 0 && matches!(c, ',' | ';' | ':');
            if !terminal && !clause {
                continue;
            }
            // Closing quotes or brackets stay with the sentence.
            let mut j = k + 1;
            while j < chars.len() && matches!(chars[j].1, '"' | '\'' | '”' | '’' | ')' | ']') {
                j += 1;
            }
            // Needs whitespace, then the next word's first character, to decide.
            if j >= chars.len() || !chars[j].1.is_whitespace() {
                continue;
            }
            let mut n = j;
            while n < chars.len() && chars[n].1.is_whitespace() {
                n += 1;
            }
            if n >= chars.len() {
                return None; // wait for the next word
            }
            let end = chars[j].0;
            let next = chars[n].1;
            if clause {
                if words(&s[..i]) >= MIN_CLAUSE_WORDS {
                    return Some(end);
                }
                continue;
            }
            if c == '.' && !self.ends_sentence(&s[..i], next) {
                continue;
            }
            return Some(end);
        }
        if self.released == 0 {
            return self.first_phrase_end();
        }
        None
    }

    /// Where the first piece ends when no clause mark has come: before a break word, or after
    /// [`MAX_FIRST_WORDS`] words. Only complete words (followed by white space) count.
    fn first_phrase_end(&self) -> Option<usize> {
        let mut words: Vec<(usize, usize)> = Vec::new();
        let mut start = None;
        for (i, c) in self.buf.char_indices() {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(i),
                (true, Some(b)) => {
                    words.push((b, i));
                    start = None;
                }
                _ => {}
            }
        }
        let word = |k: usize| &self.buf[words[k].0..words[k].1];
        for k in MIN_PHRASE_WORDS..words.len() {
            if BREAK_BEFORE.contains(&word(k).to_lowercase().as_str()) {
                return Some(words[k - 1].1);
            }
        }
        (words.len() >= MAX_FIRST_WORDS).then(|| words[MAX_FIRST_WORDS - 1].1)
    }

    /// Whether the full stop after `before`, followed by a word starting with `next`, ends a
    /// sentence.
    fn ends_sentence(&self, before: &str, next: char) -> bool {
        if next.is_lowercase() {
            return false;
        }
        let word = before.rsplit(|c: char| c.is_whitespace() || c == '(' || c == '"').next().unwrap_or("");
        let lower = word.to_lowercase();
        if ABBREVIATIONS.contains(&lower.as_str()) {
            return false;
        }
        // A single capital initial: "J. Smith".
        let mut letters = word.chars();
        if let (Some(first), None) = (letters.next(), letters.next()) {
            if first.is_uppercase() {
                return false;
            }
        }
        true
    }
}

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Splits a whole text into pieces (no early clause): for fixed lines such as `beginMessage`.
pub fn sentences(text: &str) -> Vec<String> {
    let mut c = SentenceChunker { released: 1, ..Default::default() };
    let mut out = c.push(text);
    out.extend(c.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(text: &str) -> Vec<String> {
        sentences(text)
    }

    #[test]
    fn splits_at_sentence_ends() {
        assert_eq!(
            whole("Hello! Thanks for calling. How can I help?"),
            ["Hello!", "Thanks for calling.", "How can I help?"]
        );
        assert_eq!(whole("  "), Vec::<String>::new());
        assert_eq!(whole("no punctuation"), ["no punctuation"]);
        assert_eq!(whole("Line one\nLine two"), ["Line one", "Line two"]);
        assert_eq!(whole("He said \"stop.\" Then left."), ["He said \"stop.\"", "Then left."]);
    }

    #[test]
    fn keeps_numbers_abbreviations_addresses_whole() {
        assert_eq!(whole("It costs 3.50 dollars. Okay?"), ["It costs 3.50 dollars.", "Okay?"]);
        assert_eq!(
            whole("Write to jane.doe@example.com. Thanks."),
            ["Write to jane.doe@example.com.", "Thanks."]
        );
        assert_eq!(whole("See www.example.com for more. Bye."), ["See www.example.com for more.", "Bye."]);
        assert_eq!(
            whole("Dr. Smith will see you at 3 p.m. Tomorrow works."),
            ["Dr. Smith will see you at 3 p.m. Tomorrow works."]
        );
        assert_eq!(whole("Ask J. Smith. He knows."), ["Ask J. Smith.", "He knows."]);
        assert_eq!(whole("Bring snacks, e.g. apples. Done."), ["Bring snacks, e.g. apples.", "Done."]);
        assert_eq!(whole("Call 555.123.4567 now. Thanks."), ["Call 555.123.4567 now.", "Thanks."]);
        assert_eq!(whole("version 2. and more"), ["version 2. and more"]);
    }

    #[test]
    fn streaming_waits_for_the_next_word() {
        let mut c = SentenceChunker::new();
        assert!(c.push("Sure").is_empty());
        assert!(c.push(".").is_empty());
        assert!(c.push(" ").is_empty(), "the next word decides");
        assert_eq!(c.push("I"), ["Sure."]);
        assert!(c.push(" can help with that").is_empty());
        assert_eq!(c.finish().as_deref(), Some("I can help with that"));
        assert_eq!(c.finish(), None);
    }

    #[test]
    fn token_by_token_equals_whole() {
        let text = "Our office opens at 9 a.m. on Mondays, and closes at 5.30 p.m. Dr. Lee is in. Email info@clinic.org. Bye!";
        let mut c = SentenceChunker { released: 1, ..Default::default() };
        let mut pieces = Vec::new();
        for ch in text.chars() {
            pieces.extend(c.push(&ch.to_string()));
        }
        pieces.extend(c.finish());
        assert_eq!(pieces, whole(text));
        assert_eq!(
            pieces,
            [
                "Our office opens at 9 a.m. on Mondays, and closes at 5.30 p.m. Dr. Lee is in.",
                "Email info@clinic.org.",
                "Bye!"
            ]
        );
    }

    #[test]
    fn first_clause_is_released_early() {
        let mut c = SentenceChunker::new();
        assert!(c.push("Yes, ").is_empty(), "a short first clause waits");
        let out = c.push("we are open, every day of the week, from nine until five. Anything else?");
        assert_eq!(out, ["Yes, we are open,", "every day of the week, from nine until five."]);
        assert_eq!(c.finish().as_deref(), Some("Anything else?"));
    }

    /// Token by token, as a model streams.
    fn stream(text: &str) -> Vec<String> {
        let mut c = SentenceChunker::new();
        let mut pieces = Vec::new();
        for token in text.split_inclusive(' ') {
            pieces.extend(c.push(token));
        }
        pieces.extend(c.finish());
        pieces
    }

    #[test]
    fn a_long_first_sentence_is_cut_before_a_break_word_or_after_seven_words() {
        assert_eq!(
            stream("I'd be happy to help you book a table for two. What time?"),
            ["I'd be happy", "to help you book a table for two.", "What time?"]
        );
        assert_eq!(
            stream("Our kitchen serves fresh pasta every single evening now. Come by!"),
            ["Our kitchen serves fresh pasta every single", "evening now.", "Come by!"]
        );
        // Short sentences and early marks are unaffected; only the first piece is cut.
        assert_eq!(
            stream("Sure! I can book that for you today."),
            ["Sure!", "I can book that for you today."]
        );
        assert_eq!(stream("We open at noon."), ["We open at noon."]);
        // "today" is not "to": a break word must be complete.
        let mut c = SentenceChunker::new();
        assert!(c.push("We can see you to").is_empty());
        assert!(c.push("day").is_empty());
        assert_eq!(c.push(" at noon"), ["We can see you today"]);
    }
}
