//! Built-in demo documents (used without `--docs`): deterministic, small,
//! plus one ~64 MiB FASTQ computed by offset.

use std::fmt::Write as _;
use std::hash::Hasher;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fnv::FnvHasher;

use super::store::{Document, Project, SampleInfo, Source, Tag, domain, domain_id, fnv1a64};
use super::synthetic::{SyntheticFastq, splitmix64};

const README: &str = "\
ocxfs demo account
==================

You are looking at the built-in documents of the ocxfs emulator: a fake One
Codex account served from memory, so ocxfs can be tried without an account or
a network connection. Nothing here is real data.

What to look at:
- sample_R1.fastq / sample_R2.fastq: small synthetic paired reads.
- amplicons.fasta: a few made-up 16S-like sequences.
- classification_report.csv: a made-up abundance table.
- report.pdf (twice): two documents may share a filename; ocxfs gives each
  a distinct name.
- Röö's report.txt: filenames are arbitrary Unicode text.
- deep_run.fastq: about 64 MiB, generated on the fly, for read-ahead and
  throughput experiments.
- samples: three small synthetic FASTQ samples, two of them in the project
  demo_project, tagged paired-end and gut microbiome.

Start the emulator with `ocxfs emulator`, then mount with the printed URL and
the demo API key.
";

fn fasta() -> String {
    let mut s = String::new();
    let mut state = 0x0f_a5_7a;
    for (i, name) in [
        "Demoibacter ocxfsii",
        "Fusebacillus mountii",
        "Rangea partialis",
    ]
    .iter()
    .enumerate()
    {
        let _ = writeln!(s, ">demo_amplicon_{} {name} 16S rRNA (synthetic)", i + 1);
        let mut line = String::new();
        for _ in 0..1500 {
            line.push(char::from(b"ACGT"[(splitmix64(&mut state) & 3) as usize]));
            if line.len() == 70 {
                let _ = writeln!(s, "{line}");
                line.clear();
            }
        }
        if !line.is_empty() {
            let _ = writeln!(s, "{line}");
        }
    }
    s
}

fn csv_report() -> String {
    let taxa = [
        (816, "Bacteroides", "genus"),
        (1578, "Lactobacillus", "genus"),
        (1301, "Streptococcus", "genus"),
        (561, "Escherichia", "genus"),
        (1279, "Staphylococcus", "genus"),
        (838, "Prevotella", "genus"),
        (1350, "Enterococcus", "genus"),
        (1716, "Corynebacterium", "genus"),
    ];
    let mut s = String::from("tax_id,name,rank,readcount,abundance\n");
    let mut state = 0x0c57;
    let counts: Vec<u64> = taxa
        .iter()
        .map(|_| 1000 + splitmix64(&mut state) % 90_000)
        .collect();
    let total: u64 = counts.iter().sum();
    for ((id, name, rank), n) in taxa.iter().zip(&counts) {
        let _ = writeln!(s, "{id},{name},{rank},{n},{:.6}", *n as f64 / total as f64);
    }
    s
}

/// A minimal valid one-page PDF showing `lines`.
fn pdf(lines: &[&str]) -> Vec<u8> {
    let mut text = String::from("BT /F1 14 Tf 72 720 Td 18 TL\n");
    for l in lines {
        let _ = writeln!(text, "({l}) Tj T*");
    }
    text.push_str("ET\n");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{text}endstream", text.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut out = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        let _ = write!(out, "{} 0 obj\n{o}\nendobj\n", i + 1);
    }
    let xref = out.len();
    let _ = write!(out, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for off in offsets {
        let _ = writeln!(out, "{off:010} 00000 n ");
    }
    let _ = write!(
        out,
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    );
    out.into_bytes()
}

/// The demo documents. Ids hash a stable key, so they never change.
pub(crate) fn documents() -> Vec<Document> {
    // 2024-05-01T09:00:00Z, then one hour apart, with fixed microseconds.
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_554_000);
    let fastq = |seed, records| SyntheticFastq { seed, records };
    let memory = |b: Vec<u8>| Source::Memory(Bytes::from(b));
    let specs: Vec<(&str, &str, Source)> = vec![
        (
            "README.txt",
            "README.txt",
            memory(README.as_bytes().to_vec()),
        ),
        (
            "sample_R1.fastq",
            "sample_R1.fastq",
            Source::Fastq(fastq(1, 2000)),
        ),
        (
            "sample_R2.fastq",
            "sample_R2.fastq",
            Source::Fastq(fastq(2, 2000)),
        ),
        (
            "amplicons.fasta",
            "amplicons.fasta",
            memory(fasta().into_bytes()),
        ),
        (
            "classification_report.csv",
            "classification_report.csv",
            memory(csv_report().into_bytes()),
        ),
        (
            "2024-05/report.pdf",
            "report.pdf",
            memory(pdf(&["ocxfs demo report", "Run 1 of 2 (May)"])),
        ),
        (
            "2024-06/report.pdf",
            "report.pdf",
            memory(pdf(&["ocxfs demo report", "Run 2 of 2 (June)"])),
        ),
        (
            "roo.txt",
            "Röö's report.txt",
            memory(
                "Röö's report\n\nNon-ASCII names, apostrophes and spaces are all valid \
                 One Codex filenames.\n"
                    .as_bytes()
                    .to_vec(),
            ),
        ),
        (
            "deep_run.fastq",
            "deep_run.fastq",
            Source::Fastq(fastq(0x0cf5, 200_000)),
        ),
    ];
    specs
        .into_iter()
        .enumerate()
        .map(|(i, (key, filename, source))| {
            let size = match &source {
                Source::Memory(b) => b.len() as u64,
                Source::Fastq(f) => f.size(),
                Source::File(_) | Source::Generated(_) => {
                    unreachable!("demo documents are memory or FASTQ")
                }
            };
            let created = base + Duration::from_micros(i as u64 * 3_600_000_000 + 123_456);
            let mut seed = FnvHasher::default();
            seed.write(b"demo/");
            seed.write(key.as_bytes());
            seed.write(&size.to_le_bytes());
            let id = format!("{:016x}", fnv1a64(format!("demo/{key}").as_bytes()));
            Document::new(
                id,
                filename.to_owned(),
                size,
                created,
                source,
                seed.finish(),
            )
        })
        .collect()
}

/// (key, filename, seed, records, in the project, tag indexes)
type DemoSample = (&'static str, &'static str, u64, u64, bool, &'static [usize]);

/// The demo samples: small synthetic FASTQs, one project, two tags.
pub(crate) fn samples() -> (Vec<Document>, Vec<Project>, Vec<Tag>) {
    let project = Project {
        id: domain_id(domain::PROJECT, b"demo/demo_project"),
        name: Some("Demo project".into()),
        project_name: Some("demo_project".into()),
    };
    let tag = |name: &str| Tag {
        id: domain_id(domain::TAG, format!("demo/{name}").as_bytes()),
        name: name.into(),
    };
    let tags = vec![tag("paired-end"), tag("gut microbiome")];
    let specs: [DemoSample; 3] = [
        ("gut_R1", "gut_sample_R1.fastq", 11, 1500, true, &[0, 1]),
        ("gut_R2", "gut_sample_R2.fastq", 12, 1500, true, &[0, 1]),
        ("soil", "soil_sample.fastq", 13, 800, false, &[1]),
    ];
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_640_400);
    let samples = specs
        .iter()
        .enumerate()
        .map(|(i, (key, filename, seed, records, in_project, tag_ix))| {
            let fastq = SyntheticFastq {
                seed: *seed,
                records: *records,
            };
            let id = domain_id(domain::DEMO_SAMPLE, format!("demo/{key}").as_bytes());
            let created = base + Duration::from_micros(i as u64 * 600_000_000 + 654_321);
            let mut d = Document::new(
                id,
                (*filename).to_owned(),
                fastq.size(),
                created,
                Source::Fastq(fastq),
                fnv1a64(format!("demo-sample/{key}").as_bytes()),
            );
            let mut info = SampleInfo::new();
            info.project = in_project.then(|| project.id.clone());
            info.tags = tag_ix.iter().map(|&t| tags[t].id.clone()).collect();
            d.sample = Some(info);
            d
        })
        .collect();
    (samples, vec![project], tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_documents_are_deterministic() {
        let a = documents();
        let b = documents();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (&x.id, x.size, x.version().etag),
                (&y.id, y.size, y.version().etag)
            );
        }
        assert_eq!(a.iter().filter(|d| d.filename == "report.pdf").count(), 2);
        let total: u64 = a.iter().map(|d| d.size).sum();
        assert!(total > 64 << 20 && total < 72 << 20, "{total}");
    }
}
