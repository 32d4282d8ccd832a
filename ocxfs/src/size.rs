//! Byte sizes as people write them: `1.5G` read, `1.5 GiB` shown.

use bytesize::ByteSize;
use parse_size::Config;

/// `512M`, `1.5G`, `2GiB`, `1048576`: binary units whatever the spelling
/// (`K` is 1024, as `--max-memory` has always read it).
pub fn parse_size(s: &str) -> Result<u64, String> {
    Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| format!("not a size: {s:?} ({e}); write e.g. 512M, 1.5G, 20G"))
}

/// `512 B`, `3.0 MiB`, `1.5 GiB`: one decimal, binary units.
pub fn format_size(bytes: u64) -> String {
    ByteSize::b(bytes).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("2GB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size(" 1.5 GiB "), Ok(3 << 29));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("20000000000T").is_err(), "past u64");
    }

    #[test]
    fn sizes_format_with_one_decimal() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(3 << 20), "3.0 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(5 << 40), "5.0 TiB");
    }
}
