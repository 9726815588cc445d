//! `ember datagen`: test data sets as Parquet.

use std::time::Instant;

use datafusion::common::Result;
use ember_engine::datagen::{
    ClassificationOptions, TpchOptions, generate_classification, generate_tpch,
};

use crate::args::{ClassificationArgs, TpchArgs};
use crate::progress;

/// Runs `ember datagen tpch`.
pub fn tpch(args: TpchArgs) -> Result<()> {
    let options = TpchOptions {
        scale: args.scale,
        out: args.out.clone(),
        parts: args.parts,
    };
    let bar = progress::bar(
        ember_engine::datagen::estimated_tpch_rows(args.scale),
        "generating TPC-H",
    );
    let started = Instant::now();
    let summary = generate_tpch(&options, &|done, _total| bar.set_position(done))?;
    bar.finish_and_clear();
    let rows: u64 = summary.rows.iter().map(|(_, r)| r).sum();
    println!(
        "wrote TPC-H scale {} to {}: {} tables, {} files, {rows} rows in {:.1}s",
        args.scale,
        args.out.display(),
        summary.rows.len(),
        summary.files,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `ember datagen classification`.
pub fn classification(args: ClassificationArgs) -> Result<()> {
    let options = ClassificationOptions {
        rows: args.rows,
        features: args.features,
        out: args.out.clone(),
        parts: args.parts,
        seed: args.seed,
        kind: args.kind,
    };
    let bar = progress::bar(args.rows, "generating classification data");
    let started = Instant::now();
    let rows = generate_classification(&options, &|done, _total| bar.set_position(done))?;
    bar.finish_and_clear();
    println!(
        "wrote {rows} rows x {} features (label, target) to {} in {:.1}s",
        args.features,
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
