//! File names for One Codex objects: unique, stable whatever the listing
//! order, and safe for every POSIX tool.
//!
//! Rules: `/`, NUL and control characters become `_`; an empty name, `.` or
//! `..` becomes the id; a name longer than 255 bytes is cut (keeping its
//! extension) and made unique by inserting the id; names shared by several
//! objects (or reserved by the filesystem) all get their id inserted before
//! the extension: `report.0ee172af60e84f61.pdf`.

use std::collections::HashMap;

/// Linux's NAME_MAX: longer names fail with ENAMETOOLONG in every tool.
pub const NAME_MAX: usize = 255;
/// Compression suffixes that keep the format extension before them, so
/// that `reads.fastq.gz` becomes `reads.<id>.fastq.gz`.
const COMPRESSION: &[&str] = &["gz", "bz2", "xz", "zst", "bgz", "lz4", "zip"];
/// Longest extension kept apart from the stem; longer tails are not
/// extensions (`run all and save.final version for review`).
const MAX_EXT_SEGMENT: usize = 10;

/// One object to name.
pub struct Named<'a> {
    pub id: &'a str,
    pub raw: &'a str,
}

/// Names for `items`, in the same order. `reserved` names are never handed
/// out as they are (the filesystem uses them itself). Items must have
/// distinct ids.
pub fn assign(items: &[Named<'_>], reserved: &[&str]) -> Vec<String> {
    let clean: Vec<String> = items.iter().map(|i| sanitize(i.raw)).collect();
    // Escalation level per item: 0 natural name, 1 id inserted, 2 bare id.
    let mut level: Vec<u8> = clean
        .iter()
        .map(|c| u8::from(c.is_empty() || c == "." || c == ".." || c.len() > NAME_MAX))
        .collect();
    loop {
        let names: Vec<String> = items
            .iter()
            .zip(&clean)
            .zip(&level)
            .map(|((item, c), &l)| render(c, item.id, l))
            .collect();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for n in &names {
            *count.entry(n.as_str()).or_default() += 1;
        }
        let mut changed = false;
        for (i, n) in names.iter().enumerate() {
            let clash = count[n.as_str()] > 1 || reserved.contains(&n.as_str());
            if clash && level[i] < 2 {
                level[i] += 1;
                changed = true;
            }
        }
        if !changed {
            return names;
        }
    }
}

fn render(clean: &str, id: &str, level: u8) -> String {
    match level {
        0 => clean.to_owned(),
        1 => with_id(clean, id),
        _ => id.to_owned(),
    }
}

/// Replace what a path component cannot hold, or what breaks shells and
/// terminals: `/`, NUL, and control characters.
pub fn sanitize(raw: &str) -> String {
    raw.chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect()
}

/// `stem.ext` -> `stem.<id>.ext`, cutting the stem so the result fits in
/// NAME_MAX bytes.
fn with_id(clean: &str, id: &str) -> String {
    if clean.is_empty() || clean == "." || clean == ".." {
        return id.to_owned();
    }
    let (stem, ext) = split_extension(clean);
    let room = NAME_MAX.saturating_sub(id.len() + 1 + ext.len());
    let stem = truncate_at_char(stem, room);
    if stem.is_empty() {
        format!("{id}{ext}")
    } else {
        format!("{stem}.{id}{ext}")
    }
}

/// Split off the extension, including a format extension before a
/// compression suffix (`.fastq.gz`). Dotfiles have no extension.
pub fn split_extension(name: &str) -> (&str, &str) {
    let ext_start = |s: &str| -> Option<usize> {
        let dot = s.rfind('.')?;
        let seg = &s[dot + 1..];
        let ok = dot > 0
            && !seg.is_empty()
            && seg.len() <= MAX_EXT_SEGMENT
            && seg.chars().all(|c| c.is_ascii_alphanumeric());
        ok.then_some(dot)
    };
    let Some(dot) = ext_start(name) else {
        return (name, "");
    };
    let last = &name[dot + 1..];
    if COMPRESSION.contains(&last.to_ascii_lowercase().as_str()) {
        if let Some(inner) = ext_start(&name[..dot]) {
            return (&name[..inner], &name[inner..]);
        }
    }
    (&name[..dot], &name[dot..])
}

fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(items: &[(&str, &str)]) -> Vec<String> {
        let named: Vec<Named> = items.iter().map(|(id, raw)| Named { id, raw }).collect();
        assign(&named, &[".by-id"])
    }

    #[test]
    fn unique_names_are_kept() {
        assert_eq!(
            names(&[("a1", "andy's report.pdf"), ("a2", "Röö's report.pdf")]),
            ["andy's report.pdf", "Röö's report.pdf"]
        );
    }

    #[test]
    fn shared_names_all_get_their_id() {
        assert_eq!(
            names(&[
                ("0ee172af60e84f61", "report.pdf"),
                ("1111222233334444", "report.pdf"),
                ("c", "x")
            ]),
            [
                "report.0ee172af60e84f61.pdf",
                "report.1111222233334444.pdf",
                "x"
            ]
        );
        assert_eq!(
            names(&[("aa", "reads.fastq.gz"), ("bb", "reads.fastq.gz")]),
            ["reads.aa.fastq.gz", "reads.bb.fastq.gz"]
        );
    }

    #[test]
    fn unsafe_names_are_made_safe() {
        assert_eq!(names(&[("i1", "a/b\0c\nd")]), ["a_b_c_d"]);
        assert_eq!(
            names(&[("i1", ""), ("i2", "."), ("i3", "..")]),
            ["i1", "i2", "i3"]
        );
        assert_eq!(names(&[("i1", ".by-id")]), [".by-id.i1"]);
        assert_eq!(names(&[("i1", ".bashrc")]), [".bashrc"]);
    }

    #[test]
    fn long_names_are_cut_keeping_the_extension() {
        let long = format!("{}.fastq.gz", "é".repeat(200));
        let got = &names(&[("0123456789abcdef", &long)])[0];
        assert!(got.len() <= NAME_MAX, "{}", got.len());
        assert!(got.ends_with(".0123456789abcdef.fastq.gz"), "{got}");
        assert!(got.starts_with("éé"));
    }

    #[test]
    fn a_name_equal_to_an_id_form_still_ends_unique() {
        let got = names(&[("aa", "r.pdf"), ("bb", "r.pdf"), ("cc", "r.aa.pdf")]);
        let mut sorted = got.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 3, "{got:?}");
    }

    #[test]
    fn extensions() {
        assert_eq!(split_extension("report.pdf"), ("report", ".pdf"));
        assert_eq!(split_extension("x.fastq.gz"), ("x", ".fastq.gz"));
        assert_eq!(split_extension("archive.zip"), ("archive", ".zip"));
        assert_eq!(split_extension("noext"), ("noext", ""));
        assert_eq!(split_extension(".hidden"), (".hidden", ""));
        assert_eq!(split_extension("a.b c"), ("a.b c", ""));
    }

    proptest! {
        #[test]
        fn names_are_always_safe_unique_and_order_independent(
            raw in proptest::collection::vec(("[0-9a-f]{16}", "\\PC{0,300}|[a./]{0,4}|report\\.pdf"), 1..12)
        ) {
            let mut seen = std::collections::HashSet::new();
            let items: Vec<(String, String)> =
                raw.into_iter().filter(|(id, _)| seen.insert(id.clone())).collect();
            let refs: Vec<(&str, &str)> = items.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let got = names(&refs);
            let mut uniq = std::collections::HashSet::new();
            for n in &got {
                prop_assert!(!n.is_empty() && n.len() <= NAME_MAX);
                prop_assert!(n != "." && n != ".." && n != ".by-id");
                prop_assert!(!n.contains('/') && !n.contains('\0'));
                prop_assert!(uniq.insert(n.clone()));
            }
            let mut reversed = refs.clone();
            reversed.reverse();
            let mut back = names(&reversed);
            back.reverse();
            prop_assert_eq!(got, back);
        }
    }
}
