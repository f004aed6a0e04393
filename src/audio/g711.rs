//! G.711 companding: μ-law (PCMU) and A-law (PCMA), table-driven and bit-exact with the ITU-T
//! G.191 reference implementation of G.711 (`g711.c`, `ulaw_compress`/`ulaw_expand`,
//! `alaw_compress`/`alaw_expand`).
//!
//! All four tables are built at compile time by `const fn` ports of the reference routines:
//! 256-entry decode tables and encode tables indexed by the bits the encoder actually looks at
//! (the top 14 bits of the sample for μ-law, the top 12 for A-law), so every conversion is one
//! shift, one mask and one load.
//!
//! Decoding is identical to the classic Sun `g711.c` (`ulaw2linear`/`alaw2linear`); A-law
//! encoding is identical to Sun's `linear2alaw`. μ-law encoding follows G.191, which folds a
//! negative sample with the one's complement (`!x`): Sun's `linear2ulaw` instead negates, which
//! rounds a few negative values (e.g. −4) one code further from zero; positive samples encode
//! identically.

/// Bias between the μ-law and A-law decision thresholds in the 14-bit domain (G.191's `33`).
const MULAW_BIAS_14: i32 = 33;

/// μ-law code → linear sample (16-bit scale, "14 bit left justified" in G.191 terms).
static MULAW_DECODE: [i16; 256] = build_mulaw_decode();
/// A-law code → linear sample (16-bit scale, "13 bit left justified").
static ALAW_DECODE: [i16; 256] = build_alaw_decode();
/// μ-law encode, indexed by the 14-bit two's-complement value `(x >> 2) & 0x3FFF`.
static MULAW_ENCODE: [u8; 1 << 14] = build_mulaw_encode();
/// A-law encode, indexed by the 12-bit two's-complement value `(x >> 4) & 0x0FFF`.
static ALAW_ENCODE: [u8; 1 << 12] = build_alaw_encode();

/// Encodes one linear sample to μ-law.
#[inline]
pub fn mulaw_encode(sample: i16) -> u8 {
    MULAW_ENCODE[((sample >> 2) as u16 & 0x3FFF) as usize]
}

/// Decodes one μ-law code to a linear sample.
#[inline]
pub fn mulaw_decode(code: u8) -> i16 {
    MULAW_DECODE[code as usize]
}

/// Encodes one linear sample to A-law.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    ALAW_ENCODE[((sample >> 4) as u16 & 0x0FFF) as usize]
}

/// Decodes one A-law code to a linear sample.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// G.191 `ulaw_expand` for one code.
const fn mulaw_expand(code: u8) -> i16 {
    let inverted = !code;
    let exponent = ((inverted >> 4) & 0x07) as i32;
    let mantissa = (inverted & 0x0F) as i32;
    let step = 4 << (exponent + 1);
    let magnitude = (0x80 << exponent) + step * mantissa + step / 2 - 4 * MULAW_BIAS_14;
    if code < 0x80 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// G.191 `ulaw_compress` for one sample already shifted to 14 bits (`x >> 2`).
const fn mulaw_compress14(value: i32) -> u8 {
    // One's complement folds -1..-4 (16-bit) onto the same magnitude as 0..3, as G.191 does.
    let mut absno = if value < 0 { !value + MULAW_BIAS_14 } else { value + MULAW_BIAS_14 };
    if absno > 0x1FFF {
        absno = 0x1FFF;
    }
    let mut i = absno >> 6;
    let mut segno = 1;
    while i != 0 {
        segno += 1;
        i >>= 1;
    }
    let high_nibble = 0x08 - segno;
    let low_nibble = 0x0F - ((absno >> segno) & 0x0F);
    let code = ((high_nibble << 4) | low_nibble) as u8;
    if value >= 0 {
        code | 0x80
    } else {
        code
    }
}

/// G.191 `alaw_expand` for one code.
const fn alaw_expand(code: u8) -> i16 {
    let ix = ((code ^ 0x55) & 0x7F) as i32;
    let exponent = ix >> 4;
    let mut mantissa = ix & 0x0F;
    if exponent > 0 {
        mantissa += 16;
    }
    mantissa = (mantissa << 4) + 0x08;
    if exponent > 1 {
        mantissa <<= exponent - 1;
    }
    if code > 127 {
        mantissa as i16
    } else {
        -mantissa as i16
    }
}

/// G.191 `alaw_compress` for one sample already shifted to 12 bits (`x >> 4`).
const fn alaw_compress12(value: i32) -> u8 {
    let mut ix = if value < 0 { !value } else { value };
    if ix > 15 {
        let mut exponent = 1;
        while ix > 16 + 15 {
            ix >>= 1;
            exponent += 1;
        }
        ix -= 16;
        ix += exponent << 4;
    }
    if value >= 0 {
        ix |= 0x80;
    }
    (ix ^ 0x55) as u8
}

const fn build_mulaw_decode() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = mulaw_expand(code as u8);
        code += 1;
    }
    table
}

const fn build_alaw_decode() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = alaw_expand(code as u8);
        code += 1;
    }
    table
}

const fn build_mulaw_encode() -> [u8; 1 << 14] {
    let mut table = [0u8; 1 << 14];
    let mut index = 0;
    while index < (1 << 14) {
        // Sign-extend the 14-bit index back to the shifted sample value.
        let value = if index >= (1 << 13) { index as i32 - (1 << 14) } else { index as i32 };
        table[index] = mulaw_compress14(value);
        index += 1;
    }
    table
}

const fn build_alaw_encode() -> [u8; 1 << 12] {
    let mut table = [0u8; 1 << 12];
    let mut index = 0;
    while index < (1 << 12) {
        let value = if index >= (1 << 11) { index as i32 - (1 << 12) } else { index as i32 };
        table[index] = alaw_compress12(value);
        index += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straight port of G.191 `ulaw_compress` on a 16-bit sample (the C code, line by line).
    fn itu_ulaw_compress(x: i16) -> u8 {
        let mut absno: i32 = if x < 0 { ((!x) >> 2) as i32 + 33 } else { (x >> 2) as i32 + 33 };
        if absno > 0x1FFF {
            absno = 0x1FFF;
        }
        let mut i = absno >> 6;
        let mut segno = 1;
        while i != 0 {
            segno += 1;
            i >>= 1;
        }
        let high = 0x08 - segno;
        let low = 0x0F - ((absno >> segno) & 0x0F);
        let mut out = (high << 4) | low;
        if x >= 0 {
            out |= 0x80;
        }
        out as u8
    }

    /// Straight port of G.191 `alaw_compress` on a 16-bit sample.
    fn itu_alaw_compress(x: i16) -> u8 {
        let mut ix: i32 = if x < 0 { ((!x) >> 4) as i32 } else { (x >> 4) as i32 };
        if ix > 15 {
            let mut iexp = 1;
            while ix > 16 + 15 {
                ix >>= 1;
                iexp += 1;
            }
            ix -= 16;
            ix += iexp << 4;
        }
        if x >= 0 {
            ix |= 0x80;
        }
        (ix ^ 0x55) as u8
    }

    /// Sun `g711.c` `ulaw2linear`.
    fn sun_ulaw2linear(code: u8) -> i16 {
        let u = !code;
        let mut t = (((u & 0x0F) as i32) << 3) + 0x84;
        t <<= (u & 0x70) >> 4;
        (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
    }

    /// Sun `g711.c` `alaw2linear`.
    fn sun_alaw2linear(code: u8) -> i16 {
        let a = code ^ 0x55;
        let mut t = ((a & 0x0F) as i32) << 4;
        let seg = (a & 0x70) >> 4;
        match seg {
            0 => t += 8,
            1 => t += 0x108,
            _ => {
                t += 0x108;
                t <<= seg - 1;
            }
        }
        (if a & 0x80 != 0 { t } else { -t }) as i16
    }

    /// Classic Sun `g711.c` `linear2ulaw` (16-bit range, BIAS 0x84).
    fn sun_linear2ulaw(x: i16) -> u8 {
        const SEG_END: [i32; 8] = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF];
        let (v, mask) = if x < 0 { (0x84 - x as i32, 0x7F) } else { (x as i32 + 0x84, 0xFF) };
        let seg = SEG_END.iter().position(|&end| v <= end).unwrap_or(8);
        if seg >= 8 {
            return (0x7F ^ mask) as u8;
        }
        ((((seg as i32) << 4) | ((v >> (seg + 3)) & 0x0F)) ^ mask) as u8
    }

    /// Sun `g711.c` `linear2alaw` (13-bit version used by SoX and most telephony stacks).
    fn sun_linear2alaw(x: i16) -> u8 {
        const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
        let mut v = (x >> 3) as i32;
        let mask = if v >= 0 {
            0xD5
        } else {
            v = -v - 1;
            0x55
        };
        let seg = SEG_AEND.iter().position(|&end| v <= end).unwrap_or(8);
        if seg >= 8 {
            return (0x7F ^ mask) as u8;
        }
        let mut aval = (seg as i32) << 4;
        aval |= if seg < 2 { (v >> 1) & 0x0F } else { (v >> seg) & 0x0F };
        (aval ^ mask) as u8
    }

    #[test]
    fn known_decode_values() {
        assert_eq!(mulaw_decode(0xFF), 0);
        assert_eq!(mulaw_decode(0x7F), 0);
        assert_eq!(mulaw_decode(0x00), -32124);
        assert_eq!(mulaw_decode(0x80), 32124);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
    }

    #[test]
    fn known_encode_values() {
        assert_eq!(mulaw_encode(0), 0xFF);
        assert_eq!(mulaw_encode(-1), 0x7F);
        assert_eq!(mulaw_encode(i16::MAX), 0x80);
        assert_eq!(mulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn decode_tables_match_sun_reference() {
        for code in 0..=255u8 {
            assert_eq!(mulaw_decode(code), sun_ulaw2linear(code), "μ-law code {code:#04x}");
            assert_eq!(alaw_decode(code), sun_alaw2linear(code), "A-law code {code:#04x}");
        }
    }

    #[test]
    fn encode_tables_match_itu_reference_for_every_sample() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(mulaw_encode(x), itu_ulaw_compress(x), "μ-law sample {x}");
            assert_eq!(alaw_encode(x), itu_alaw_compress(x), "A-law sample {x}");
        }
    }

    #[test]
    fn encode_matches_sun_reference() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(alaw_encode(x), sun_linear2alaw(x), "A-law sample {x}");
            if x >= 0 {
                assert_eq!(mulaw_encode(x), sun_linear2ulaw(x), "μ-law sample {x}");
            } else {
                // G.191 folds negatives with the one's complement; Sun negates. They may
                // differ by one code, never by more than one quantisation step.
                let itu = mulaw_decode(mulaw_encode(x)) as i32;
                let sun = mulaw_decode(sun_linear2ulaw(x)) as i32;
                let step = mulaw_step(mulaw_encode(x)).max(mulaw_step(sun_linear2ulaw(x)));
                assert!((itu - sun).abs() <= step, "μ-law sample {x}");
            }
        }
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            // μ-law 0x7F is "negative zero": it decodes to 0, which encodes as 0xFF.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(mulaw_encode(mulaw_decode(code)), expected, "μ-law code {code:#04x}");
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law code {code:#04x}");
        }
    }

    /// Quantisation step (16-bit scale) of the segment a μ-law code belongs to.
    fn mulaw_step(code: u8) -> i32 {
        8 << ((!code >> 4) & 0x07)
    }

    /// Quantisation step (16-bit scale) of the segment an A-law code belongs to.
    fn alaw_step(code: u8) -> i32 {
        let exponent = ((code ^ 0x55) >> 4) & 0x07;
        16 << exponent.saturating_sub(1)
    }

    #[test]
    fn round_trip_error_is_within_half_a_quantisation_step() {
        for x in i16::MIN..=i16::MAX {
            let x32 = x as i32;
            // μ-law: inputs beyond the largest reconstruction level clip.
            let code = mulaw_encode(x);
            let err = (mulaw_decode(code) as i32 - x32).abs();
            if x32.abs() <= 32124 {
                assert!(err <= mulaw_step(code) / 2, "μ-law {x}: error {err}");
            } else {
                assert_eq!(mulaw_decode(code) as i32, 32124 * x32.signum());
            }
            let code = alaw_encode(x);
            let err = (alaw_decode(code) as i32 - x32).abs();
            if x32.abs() <= 32256 {
                assert!(err <= alaw_step(code) / 2, "A-law {x}: error {err}");
            }
        }
    }

    #[test]
    fn encoding_is_monotonic_in_the_decoded_domain() {
        let mut last_mu = i16::MIN;
        let mut last_a = i16::MIN;
        for x in i16::MIN..=i16::MAX {
            let mu = mulaw_decode(mulaw_encode(x));
            let a = alaw_decode(alaw_encode(x));
            assert!(mu >= last_mu && a >= last_a, "not monotonic at {x}");
            last_mu = mu;
            last_a = a;
        }
    }
}
