//! `Range: bytes=...` parsing (single range only, like S3).

/// A syntactically valid single byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeSpec {
    /// `bytes=a-b` (inclusive)
    FromTo(u64, u64),
    /// `bytes=a-`
    From(u64),
    /// `bytes=-n` (the last n bytes)
    Suffix(u64),
}

/// Parses a `Range` header value. `None` means "ignore the header and send the
/// whole object" (RFC 9110 for invalid syntax; S3 does the same for multiple
/// ranges and other units).
pub(crate) fn parse(value: &str) -> Option<RangeSpec> {
    let (unit, set) = value.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return None;
    }
    let (first, last) = set.trim().split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (true, false) => Some(RangeSpec::Suffix(num(last)?)),
        (false, true) => Some(RangeSpec::From(num(first)?)),
        (false, false) => {
            let (a, b) = (num(first)?, num(last)?);
            (a <= b).then_some(RangeSpec::FromTo(a, b))
        }
    }
}

impl RangeSpec {
    /// The inclusive byte span for an object of `size` bytes, or `None` when
    /// unsatisfiable (answer 416).
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        if size == 0 {
            return None;
        }
        match self {
            RangeSpec::FromTo(a, b) => (a < size).then(|| (a, b.min(size - 1))),
            RangeSpec::From(a) => (a < size).then_some((a, size - 1)),
            RangeSpec::Suffix(0) => None,
            RangeSpec::Suffix(n) => Some((size.saturating_sub(n), size - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        assert_eq!(parse("bytes=0-99"), Some(RangeSpec::FromTo(0, 99)));
        assert_eq!(parse("bytes=5-5"), Some(RangeSpec::FromTo(5, 5)));
        assert_eq!(parse("bytes=100-"), Some(RangeSpec::From(100)));
        assert_eq!(parse("bytes=-20"), Some(RangeSpec::Suffix(20)));
        assert_eq!(parse(" Bytes = 1 - 2 "), Some(RangeSpec::FromTo(1, 2)));
        assert_eq!(
            parse("bytes=0-18446744073709551615"),
            Some(RangeSpec::FromTo(0, u64::MAX))
        );
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=5-4",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=0x10-",
            "bytes=1-2-3",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn resolves_against_size() {
        assert_eq!(RangeSpec::FromTo(0, 99).resolve(50), Some((0, 49)));
        assert_eq!(RangeSpec::FromTo(10, 19).resolve(50), Some((10, 19)));
        assert_eq!(RangeSpec::FromTo(50, 60).resolve(50), None);
        assert_eq!(RangeSpec::From(49).resolve(50), Some((49, 49)));
        assert_eq!(RangeSpec::From(50).resolve(50), None);
        assert_eq!(RangeSpec::Suffix(10).resolve(50), Some((40, 49)));
        assert_eq!(RangeSpec::Suffix(500).resolve(50), Some((0, 49)));
        assert_eq!(RangeSpec::Suffix(0).resolve(50), None);
        assert_eq!(RangeSpec::From(0).resolve(0), None);
        assert_eq!(RangeSpec::Suffix(5).resolve(0), None);
    }
}
