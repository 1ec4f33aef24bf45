//! Decoder of Prometheus' XOR chunks (`tsdb/chunkenc`, the Gorilla encoding adapted to
//! millisecond timestamps), as sent in streamed remote read responses.
//!
//! Layout: a 2-byte big-endian sample count, then a bit stream (most significant bit first):
//! - sample 0: timestamp as a zig-zag varint, value as its 64 raw bits;
//! - sample 1: timestamp delta as a uvarint, then the value (below);
//! - later samples: the delta of the timestamp delta, prefixed by a bucket code: `0` (zero),
//!   `10` + 14 bits, `110` + 17 bits, `1110` + 20 bits, `1111` + 64 bits; then the value.
//!
//! A value is XOR-ed with the previous one: `0` (same value), or `1` then either `0` (the
//! significant bits fit the previous leading/trailing zero window: read the window's width) or
//! `1` + 5 bits of leading zeros + 6 bits of significant bit count (0 meaning 64) + those bits.
//! Varints are read bytewise from the bit stream, which need not be byte-aligned.

use nevermore_promql::model::Sample;

/// Why a chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("xor chunk: {message}")]
pub struct XorError {
    pub message: String,
}

fn err(message: impl Into<String>) -> XorError {
    XorError {
        message: message.into(),
    }
}

/// Reads bits most significant first.
struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.data.len() * 8 - self.pos
    }

    fn bit(&mut self) -> Result<bool, XorError> {
        let byte = *self
            .data
            .get(self.pos / 8)
            .ok_or_else(|| err("truncated bit stream"))?;
        let bit = byte >> (7 - (self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// `n` bits (at most 64) as the low bits of the result.
    fn bits(&mut self, n: u32) -> Result<u64, XorError> {
        debug_assert!(n <= 64);
        if self.remaining() < n as usize {
            return Err(err("truncated bit stream"));
        }
        let mut out: u64 = 0;
        let mut left = n;
        while left > 0 {
            let byte = self.data[self.pos / 8];
            let used = (self.pos % 8) as u32;
            let avail = 8 - used;
            let take = avail.min(left);
            // The `take` bits after the `used` ones already consumed in this byte.
            let chunk = (byte >> (avail - take)) & (((1u16 << take) - 1) as u8);
            out = out << take | u64::from(chunk);
            left -= take;
            self.pos += take as usize;
        }
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, XorError> {
        // Eight bits always fit a u8.
        Ok(self.bits(8)? as u8)
    }

    fn uvarint(&mut self) -> Result<u64, XorError> {
        let mut out: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err(err("varint overflows 64 bits"));
            }
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(err("varint overflows 64 bits"))
    }

    fn varint(&mut self) -> Result<i64, XorError> {
        let u = self.uvarint()?;
        // Zig-zag: the low bit carries the sign.
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }
}

/// The number of samples a chunk declares.
pub fn sample_count(data: &[u8]) -> Result<usize, XorError> {
    match data {
        [a, b, ..] => Ok(usize::from(u16::from_be_bytes([*a, *b]))),
        _ => Err(err("shorter than its 2-byte header")),
    }
}

/// Appends the chunk's samples to `out`, in chunk order, values bit-exact (stale markers stay
/// stale markers).
pub fn decode(data: &[u8], out: &mut Vec<Sample>) -> Result<(), XorError> {
    let total = sample_count(data)?;
    let mut r = BitReader::new(&data[2..]);
    out.reserve(total);
    let mut t: i64 = 0;
    let mut t_delta: i64 = 0;
    let mut v_bits: u64 = 0;
    let mut leading: u32 = 0;
    let mut trailing: u32 = 0;
    for i in 0..total {
        let at = |e: XorError| err(format!("sample {i} of {total}: {}", e.message));
        match i {
            0 => {
                t = r.varint().map_err(at)?;
                v_bits = r.bits(64).map_err(at)?;
            }
            1 => {
                // Deltas are unsigned in the stream; wrapping mirrors Go's uint64 arithmetic.
                t_delta = r.uvarint().map_err(at)? as i64;
                t = t.wrapping_add(t_delta);
                read_value(&mut r, &mut v_bits, &mut leading, &mut trailing).map_err(at)?;
            }
            _ => {
                let dod = read_dod(&mut r).map_err(at)?;
                t_delta = t_delta.wrapping_add(dod);
                t = t.wrapping_add(t_delta);
                read_value(&mut r, &mut v_bits, &mut leading, &mut trailing).map_err(at)?;
            }
        }
        out.push(Sample {
            t,
            v: f64::from_bits(v_bits),
        });
    }
    Ok(())
}

/// A delta of timestamp deltas: the bucket code, then the value in the bucket's width.
fn read_dod(r: &mut BitReader<'_>) -> Result<i64, XorError> {
    let mut ones = 0;
    while ones < 4 && r.bit()? {
        ones += 1;
    }
    let width = match ones {
        0 => return Ok(0),
        1 => 14,
        2 => 17,
        3 => 20,
        _ => return Ok(r.bits(64)? as i64),
    };
    let raw = r.bits(width)?;
    // The buckets hold -(2^(w-1) - 1) ..= 2^(w-1): a raw value above 2^(w-1) is negative.
    Ok(if raw > 1 << (width - 1) {
        raw as i64 - (1i64 << width)
    } else {
        raw as i64
    })
}

fn read_value(
    r: &mut BitReader<'_>,
    v_bits: &mut u64,
    leading: &mut u32,
    trailing: &mut u32,
) -> Result<(), XorError> {
    if !r.bit()? {
        return Ok(());
    }
    if r.bit()? {
        *leading = r.bits(5)? as u32;
        let mut sig = r.bits(6)? as u32;
        if sig == 0 {
            sig = 64;
        }
        if *leading + sig > 64 {
            return Err(err(format!(
                "{leading} leading zeros and {sig} significant bits exceed 64",
                leading = *leading
            )));
        }
        *trailing = 64 - *leading - sig;
    }
    let sig = 64 - *leading - *trailing;
    let bits = r.bits(sig)?;
    *v_bits ^= bits << *trailing;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nevermore_promql::model::STALE_NAN_BITS;
    use proptest::prelude::*;

    /// Writes bits most significant first.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        bits: usize,
    }

    impl BitWriter {
        fn bit(&mut self, b: bool) {
            if self.bits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if b {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 1 << (7 - self.bits % 8);
            }
            self.bits += 1;
        }

        fn bits(&mut self, v: u64, n: u32) {
            for i in (0..n).rev() {
                self.bit(v >> i & 1 == 1);
            }
        }

        fn uvarint(&mut self, mut v: u64) {
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    self.bits(u64::from(b), 8);
                    return;
                }
                self.bits(u64::from(b | 0x80), 8);
            }
        }
    }

    fn fits(x: i64, n: u32) -> bool {
        -((1i64 << (n - 1)) - 1) <= x && x <= 1i64 << (n - 1)
    }

    /// An independent XOR chunk encoder (same format as Prometheus' appender), for round trips.
    pub(crate) fn encode(samples: &[Sample]) -> Vec<u8> {
        assert!(samples.len() <= usize::from(u16::MAX));
        let mut w = BitWriter::default();
        let (mut prev_t, mut prev_delta, mut prev_v) = (0i64, 0i64, 0u64);
        let (mut leading, mut trailing) = (u32::MAX, 0u32);
        for (i, s) in samples.iter().enumerate() {
            let v = s.v.to_bits();
            match i {
                0 => {
                    w.uvarint(((s.t << 1) ^ (s.t >> 63)) as u64);
                    w.bits(v, 64);
                }
                _ => {
                    let delta = s.t.wrapping_sub(prev_t);
                    if i == 1 {
                        w.uvarint(delta as u64);
                    } else {
                        let dod = delta.wrapping_sub(prev_delta);
                        if dod == 0 {
                            w.bit(false);
                        } else if fits(dod, 14) {
                            w.bits(0b10, 2);
                            w.bits(dod as u64 & ((1 << 14) - 1), 14);
                        } else if fits(dod, 17) {
                            w.bits(0b110, 3);
                            w.bits(dod as u64 & ((1 << 17) - 1), 17);
                        } else if fits(dod, 20) {
                            w.bits(0b1110, 4);
                            w.bits(dod as u64 & ((1 << 20) - 1), 20);
                        } else {
                            w.bits(0b1111, 4);
                            w.bits(dod as u64, 64);
                        }
                    }
                    prev_delta = delta;
                    let x = v ^ prev_v;
                    if x == 0 {
                        w.bit(false);
                    } else {
                        w.bit(true);
                        let l = x.leading_zeros().min(31);
                        let tr = x.trailing_zeros();
                        if leading != u32::MAX && l >= leading && tr >= trailing {
                            w.bit(false);
                            w.bits(x >> trailing, 64 - leading - trailing);
                        } else {
                            leading = l;
                            trailing = tr;
                            w.bit(true);
                            w.bits(u64::from(l), 5);
                            let sig = 64 - l - tr;
                            w.bits(u64::from(sig & 63), 6);
                            w.bits(x >> tr, sig);
                        }
                    }
                }
            }
            prev_t = s.t;
            prev_v = v;
        }
        let mut out = (samples.len() as u16).to_be_bytes().to_vec();
        out.extend(w.bytes);
        out
    }

    fn bits_of(s: &[Sample]) -> Vec<(i64, u64)> {
        s.iter().map(|s| (s.t, s.v.to_bits())).collect()
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => (-1000i64..1000).prop_map(|x| x as f64),
            2 => any::<f64>(),
            1 => Just(f64::NAN),
            1 => Just(f64::from_bits(STALE_NAN_BITS)),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
            1 => Just(0.0),
            1 => Just(-0.0),
            1 => any::<u64>().prop_map(f64::from_bits),
        ]
    }

    fn delta() -> impl Strategy<Value = i64> {
        prop_oneof![
            6 => Just(15_000i64),
            3 => 0i64..20_000,
            2 => 0i64..2_000_000,
            1 => 0i64..(1i64 << 40),
            1 => Just(8192i64 + 15_000),
        ]
    }

    fn series() -> impl Strategy<Value = Vec<Sample>> {
        (
            -(1i64 << 45)..(1i64 << 45),
            proptest::collection::vec((delta(), value()), 0..300),
        )
            .prop_map(|(start, steps)| {
                let mut t = start;
                steps
                    .into_iter()
                    .map(|(d, v)| {
                        t += d;
                        Sample { t, v }
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn round_trips(samples in series()) {
            let data = encode(&samples);
            let mut out = Vec::new();
            decode(&data, &mut out).unwrap();
            prop_assert_eq!(bits_of(&out), bits_of(&samples));
        }

        #[test]
        fn never_panics_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut out = Vec::new();
            let _ = decode(&data, &mut out);
        }

        #[test]
        fn truncation_is_an_error(samples in series(), cut in 1usize..64) {
            prop_assume!(samples.len() > 1);
            let data = encode(&samples);
            let keep = data.len().saturating_sub(cut).max(2);
            prop_assume!(keep < data.len());
            let mut out = Vec::new();
            // The last byte always holds a bit of the last sample.
            prop_assert!(decode(&data[..keep], &mut out).is_err());
        }
    }

    #[test]
    fn bucket_edges_round_trip() {
        // Each bucket's asymmetric edges: -(2^(w-1) - 1) and 2^(w-1), and one past them.
        let mut samples = vec![Sample { t: 0, v: 1.0 }, Sample { t: 100_000, v: 2.0 }];
        let mut delta = 100_000i64;
        for w in [14u32, 17, 20] {
            for dod in [
                1i64 << (w - 1),
                -((1i64 << (w - 1)) - 1),
                (1i64 << (w - 1)) + 1,
                -(1i64 << (w - 1)),
            ] {
                delta += dod;
                let t = samples[samples.len() - 1].t + delta;
                samples.push(Sample { t, v: 3.0 });
            }
        }
        let mut out = Vec::new();
        decode(&encode(&samples), &mut out).unwrap();
        assert_eq!(bits_of(&out), bits_of(&samples));
    }

    #[test]
    fn header_only() {
        let mut out = Vec::new();
        decode(&[0, 0], &mut out).unwrap();
        assert!(out.is_empty());
        assert!(decode(&[0], &mut out).is_err());
        assert!(decode(&[0, 1, 0], &mut out).is_err());
    }
}
