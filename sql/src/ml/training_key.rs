//! The key of a training's checkpoint: everything that decides the model it
//! will give, so that only the same CREATE MODEL over the same data goes on
//! from an interrupted run.

use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::ViewTable;
use datafusion::datasource::listing::{ListingTable, ListingTableUrl};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use ember_ml_ops::hashing::StableHasher;
use futures::TryStreamExt;
use object_store::ObjectStore;

/// A hex key over `parts` (the statement's model, query, options and
/// TRANSFORM as text), the training plan, and the name, size and modification
/// time of every file the plan's tables read.
pub async fn training_key(
    ctx: &SessionContext,
    parts: &[&str],
    plan: &LogicalPlan,
) -> Result<String> {
    let mut key = StableHasher::new(0x6b6579);
    for part in parts {
        key.write(part.as_bytes());
        key.write(&[0]);
    }
    key.write(plan.display_indent().to_string().as_bytes());
    for file in input_files(ctx, plan).await? {
        key.write(file.as_bytes());
        key.write(&[0]);
    }
    Ok(format!("{:016x}", key.finish()))
}

/// `path size modified` of every file under the listing tables `plan` scans
/// (through views too).
async fn input_files(ctx: &SessionContext, plan: &LogicalPlan) -> Result<Vec<String>> {
    let mut urls = Vec::new();
    listing_urls(plan, &mut urls)?;
    let mut files = Vec::new();
    for url in urls {
        let store = ctx.runtime_env().object_store(&url)?;
        let listed: Vec<_> = store.list(Some(url.prefix())).try_collect().await?;
        files.extend(listed.into_iter().map(|meta| {
            format!(
                "{} {} {}",
                meta.location,
                meta.size,
                meta.last_modified.timestamp_nanos_opt().unwrap_or_default()
            )
        }));
    }
    files.sort();
    Ok(files)
}

fn listing_urls(plan: &LogicalPlan, urls: &mut Vec<ListingTableUrl>) -> Result<()> {
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
        {
            if let Some(listing) = provider.downcast_ref::<ListingTable>() {
                urls.extend(listing.table_paths().iter().cloned());
            } else if let Some(view) = provider.downcast_ref::<ViewTable>() {
                listing_urls(view.logical_plan(), urls)?;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(())
}
