//! Generated accounts for scale tests (`--generate-documents N`,
//! `--generate-samples N`): deterministic ids, names, sizes, projects, tags and
//! statuses, with content computed from (seed, offset) so no object costs RAM.

use std::hash::Hasher;
use std::time::{Duration, SystemTime};

use fnv::FnvHasher;

use super::store::{Document, Project, SampleInfo, Source, Tag, domain, domain_id};
use super::synthetic::{Procedural, splitmix64};

const PROJECTS: usize = 10;
const TAG_NAMES: [&str; 20] = [
    "isolate",
    "WGS",
    "16S",
    "amplicon",
    "raw reads",
    "pathogen",
    "outbreak",
    "neg. control",
    "pos. control",
    "environmental",
    "microbiome",
    "clinical",
    "food",
    "facility",
    "E. coli",
    "S. enterica",
    "L. monocytogenes",
    "Röö's batch",
    "long-read",
    "novel",
];

/// 2023-01-01T00:00:00Z; generated objects are one minute apart from here.
const BASE_SECS: u64 = 1_672_531_200;

/// About 1 in 20 objects reuses the previous one's name number.
fn name_number(i: u64) -> u64 {
    if i % 20 == 19 { i - 1 } else { i }
}

fn object(dom: u64, kind: &str, i: u64, filename: String) -> Document {
    let id = domain_id(dom, format!("generated/{kind}/{i}").as_bytes());
    let mut h = FnvHasher::default();
    h.write(id.as_bytes());
    let mut state = h.finish();
    let size = 1024 + splitmix64(&mut state) % (1024 * 1024 - 1024 + 1);
    let seed = splitmix64(&mut state);
    let created = SystemTime::UNIX_EPOCH
        + Duration::from_secs(BASE_SECS + i * 60)
        + Duration::from_micros(i * 7919 % 1_000_000);
    Document::new(
        id,
        filename,
        size,
        created,
        Source::Generated(Procedural { seed, size }),
        seed ^ 0x0e7a,
    )
}

/// `n` synthetic documents: `report_00042.pdf`, `summary_00043.csv`, ...
pub(crate) fn documents(n: u64) -> Vec<Document> {
    (0..n)
        .map(|i| {
            let k = name_number(i);
            let name = match k % 4 {
                0 | 1 => format!("report_{k:05}.pdf"),
                2 => format!("summary_{k:05}.csv"),
                _ => format!("notes_{k:05}.txt"),
            };
            object(domain::GENERATED_DOCUMENT, "documents", i, name)
        })
        .collect()
}

/// The generated projects and tags (only present with generated samples).
pub(crate) fn projects_and_tags() -> (Vec<Project>, Vec<Tag>) {
    let projects = (0..PROJECTS)
        .map(|k| Project {
            id: domain_id(domain::PROJECT, format!("generated/{k}").as_bytes()),
            name: Some(format!("Generated project {k:02}")),
            project_name: Some(format!("gen_project_{k:02}")),
        })
        .collect();
    let tags = TAG_NAMES
        .iter()
        .map(|name| Tag {
            id: domain_id(domain::TAG, format!("generated/{name}").as_bytes()),
            name: (*name).to_owned(),
        })
        .collect();
    (projects, tags)
}

/// `n` synthetic samples (`sample_00042_R1.fastq.gz`, `_R2`...), round-robin
/// over the projects, 0-3 tags each, about 2% still `importing`.
pub(crate) fn samples(n: u64, projects: &[Project], tags: &[Tag]) -> Vec<Document> {
    (0..n)
        .map(|i| {
            let k = name_number(i);
            let name = format!("sample_{:05}_R{}.fastq.gz", k / 2, k % 2 + 1);
            let mut d = object(domain::GENERATED_SAMPLE, "samples", i, name);
            let mut state = i ^ 0x5a3b_1e5e;
            let mut info = SampleInfo::new();
            info.project = projects
                .get(i as usize % projects.len().max(1))
                .map(|p| p.id.clone());
            let want = (splitmix64(&mut state) % 4) as usize;
            while info.tags.len() < want.min(tags.len()) {
                let t = &tags[(splitmix64(&mut state) % tags.len() as u64) as usize];
                if !info.tags.contains(&t.id) {
                    info.tags.push(t.id.clone());
                }
            }
            if splitmix64(&mut state) % 50 == 0 {
                info.status = "importing".into();
            }
            d.sample = Some(info);
            d
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_objects_are_deterministic() {
        let (projects, tags) = projects_and_tags();
        let a = samples(500, &projects, &tags);
        let b = samples(500, &projects, &tags);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.id, &x.filename, x.size), (&y.id, &y.filename, y.size));
            assert!((1024..=1024 * 1024).contains(&x.size));
        }
        let importing = a
            .iter()
            .filter(|d| d.sample.as_ref().unwrap().status == "importing")
            .count();
        assert!((1..=30).contains(&importing), "{importing}");
        let mut names: Vec<&str> = a.iter().map(|d| d.filename.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 500 - 25);
        let docs = documents(40);
        assert_eq!(docs[0].filename, "report_00000.pdf");
        assert_eq!(docs[19].filename, docs[18].filename);
        assert!(docs.iter().all(|d| a.iter().all(|s| s.id != d.id)));
    }
}
