// Nextflow reading its inputs straight from an ocxfs mount: the read count
// and SHA-256 of every FASTQ document, then one table of them all.
//
//   nextflow run scripts/examples/main.nf --mount /mnt/onecodex
//
// Inputs are staged into the work directory as symbolic links to the mount
// (Nextflow's default), so nothing is copied. Listing the documents costs no
// POST; each FASTQ costs one when first opened. The table is results/summary.tsv.

params.mount = '/mnt/onecodex'

process FASTQ_STATS {
    input:
    tuple val(name), path('reads.fastq')

    output:
    tuple val(name), stdout

    script:
    """
    printf '%s\\t%s' "\$(awk 'END { print NR / 4 }' reads.fastq)" "\$(sha256sum < reads.fastq | cut -d' ' -f1)"
    """
}

workflow {
    fastqs = channel.fromPath("${params.mount}/documents/*.fastq", checkIfExists: true)
        .map { f -> tuple(f.baseName, f) }
    FASTQ_STATS(fastqs)
        .map { name, stats -> "${name}\t${stats}\n" }
        .collectFile(name: 'summary.tsv', storeDir: 'results', sort: true, seed: "name\treads\tsha256\n")
}
