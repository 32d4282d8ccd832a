//! Object content computed from its offset, costing no memory.

const READ_LEN: usize = 150;
/// `@ocxfs_demo.000000001 length=150\n` + bases + `\n+\n` + qualities + `\n`.
const HEADER_LEN: usize = 33;
const RECORD_LEN: usize = HEADER_LEN + READ_LEN + 3 + READ_LEN + 1;

/// A FASTQ of fixed-size records, each generated from a PRNG seeded by its
/// index, so any byte range is computed directly from its offset.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SyntheticFastq {
    pub seed: u64,
    pub records: u64,
}

impl SyntheticFastq {
    pub fn size(&self) -> u64 {
        self.records * RECORD_LEN as u64
    }

    fn record(&self, n: u64, out: &mut [u8; RECORD_LEN]) {
        let header = format!("@ocxfs_demo.{:09} length={READ_LEN}\n", n + 1);
        debug_assert_eq!(header.len(), HEADER_LEN);
        out[..HEADER_LEN].copy_from_slice(header.as_bytes());
        let mut state = self.seed ^ n.wrapping_mul(0xd6e8_feb8_6659_fd93);
        let seq = HEADER_LEN;
        let qual = seq + READ_LEN + 3;
        let mut word = 0u64;
        for i in 0..READ_LEN {
            if i % 8 == 0 {
                word = splitmix64(&mut state);
            }
            let bits = (word >> ((i % 8) * 8)) as u8;
            // 2 bits of base, the rest decides quality; rare Ns with low quality.
            let (base, q) = if bits >= 0xfc {
                (b'N', b'#')
            } else {
                (
                    b"ACGT"[usize::from(bits & 3)],
                    b"FF:F,FFF"[usize::from(bits >> 5)],
                )
            };
            out[seq + i] = base;
            out[qual + i] = q;
        }
        out[seq + READ_LEN..qual].copy_from_slice(b"\n+\n");
        out[RECORD_LEN - 1] = b'\n';
    }

    /// `len` bytes at `offset` (must be within the file).
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut rec = [0u8; RECORD_LEN];
        let mut pos = offset;
        let end = (offset + len as u64).min(self.size());
        while pos < end {
            let n = pos / RECORD_LEN as u64;
            let within = (pos % RECORD_LEN as u64) as usize;
            self.record(n, &mut rec);
            let take = (RECORD_LEN - within).min((end - pos) as usize);
            out.extend_from_slice(&rec[within..within + take]);
            pos += take as u64;
        }
        out
    }
}

/// Procedural content: byte `i` is byte `i % 8` of a hash of (seed, i / 8).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Procedural {
    pub seed: u64,
    pub size: u64,
}

impl Procedural {
    fn word(&self, n: u64) -> u64 {
        let mut state = self.seed ^ n.wrapping_mul(0xd6e8_feb8_6659_fd93);
        splitmix64(&mut state)
    }

    /// `len` bytes at `offset`, cut at the end of the object.
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let end = offset.saturating_add(len as u64).min(self.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        while pos < end {
            let word = self.word(pos / 8).to_le_bytes();
            let within = (pos % 8) as usize;
            let take = (8 - within).min((end - pos) as usize);
            out.extend_from_slice(&word[within..within + take]);
            pos += take as u64;
        }
        out
    }
}

/// splitmix64: tiny, fast, and stable across crate versions (unlike `StdRng`).
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_fastq_reads_agree_at_any_offset() {
        let f = SyntheticFastq {
            seed: 7,
            records: 50,
        };
        let all = f.read(0, f.size() as usize);
        assert_eq!(all.len() as u64, f.size());
        assert!(all.starts_with(b"@ocxfs_demo.000000001 length=150\n"));
        for (off, len) in [(0, 1), (5, 1000), (RECORD_LEN as u64 - 1, 2), (1234, 5000)] {
            assert_eq!(f.read(off, len), all[off as usize..off as usize + len]);
        }
        let text = String::from_utf8(all).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 200);
        assert_eq!(lines[2], "+");
        assert_eq!(lines[1].len(), READ_LEN);
        assert_eq!(lines[3].len(), READ_LEN);
    }

    #[test]
    fn procedural_reads_agree_at_any_offset() {
        let p = Procedural {
            seed: 9,
            size: 1000,
        };
        let all = p.read(0, 1000);
        assert_eq!(all.len(), 1000);
        for (off, len) in [(0, 1), (3, 17), (7, 9), (999, 1), (990, 100)] {
            let got = p.read(off, len);
            let end = (off as usize + len).min(1000);
            assert_eq!(got, all[off as usize..end]);
        }
        assert_ne!(
            all,
            Procedural {
                seed: 10,
                size: 1000
            }
            .read(0, 1000)
        );
    }
}
