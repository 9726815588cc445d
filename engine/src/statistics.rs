//! Row estimates for physical plans: DataFusion's statistics registry with
//! ember's distinct values and join rows.
//!
//! DataFusion 55 estimates a join from its inputs' distinct values, but most
//! Parquet files carry none (and DuckDB's count per row group), and a join's
//! output keeps no column statistics, so after the first join of a chain every
//! estimate falls back to a side's rows and never shrinks: TPC-DS q72's nine-way join is estimated at 2.4 M rows where
//! it makes 61 K, and the cluster shuffled an 11.7 M-row table to join it
//! instead of broadcasting the 61 K (`cluster/join_fit.rs`). This registry
//! (DataFusion's `operator_statistics`, the hook it provides for this) keeps
//! distinct values flowing:
//!
//! - a scan's integer and date columns get `max - min + 1` distinct values, or
//!   the file's count where that is more, never more than its rows;
//! - an equi-join makes `|L| × |R| ÷ max(distinct)` rows, counting only the most
//!   selective key of a composite one (as `join_order/cost.rs` does, for the
//!   same reason) and a third of them for a join filter; its output keeps both
//!   sides' column statistics, distinct values thinned for the rows dropped;
//! - filters, projections, aggregates, limits and unions are DataFusion's own
//!   providers, which carry the distinct values on.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, JoinType, Result, ScalarValue, Statistics};
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::{HashJoinExec, SortMergeJoinExec};
use datafusion::physical_plan::operator_statistics::{
    ExtendedStatistics, StatisticsProvider, StatisticsRegistry, StatisticsResult,
    ndv_after_selectivity,
};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};

/// What a join filter (a condition other than the equalities) keeps of the
/// rows; the same guess as the join-order model's.
pub(crate) const OTHER_SELECTIVITY: f64 = 1.0 / 3.0;

/// DataFusion's built-in providers behind ember's scan and join estimates.
pub fn ember_statistics() -> StatisticsRegistry {
    let mut registry = StatisticsRegistry::default_with_builtin_providers();
    registry.register(Arc::new(JoinRows));
    registry.register(Arc::new(ScanDistinct));
    registry
}

/// Distinct values of a column from its statistics: their count, else the span
/// of an integer or date column's min and max. Not capped by rows. For
/// statistics this registry has carried along a plan, where a count is an
/// estimate of its own.
fn distinct_from_statistics(column: &ColumnStatistics) -> Option<f64> {
    match column.distinct_count.get_value() {
        Some(n) => Some(*n as f64),
        None => span(column),
    }
}

/// Distinct values of a column as a file's statistics tell them: the span of
/// its min and max, and never fewer than the file's count. A Parquet file
/// counts per row group and DataFusion keeps the largest count: DuckDB's
/// `catalog_sales` says 237 sale dates where there are 1 836. Not capped by
/// rows.
pub(crate) fn file_distinct(column: &ColumnStatistics) -> Option<f64> {
    let counted = column.distinct_count.get_value().map(|n| *n as f64);
    match (counted, span(column)) {
        (Some(counted), Some(spanned)) => Some(counted.max(spanned)),
        (counted, spanned) => counted.or(spanned),
    }
}

/// `max - min + 1` of an integer or date column.
fn span(column: &ColumnStatistics) -> Option<f64> {
    integer_range(column.min_value.get_value()?, column.max_value.get_value()?)
}

/// `max - min + 1` for integer and date values.
fn integer_range(min: &ScalarValue, max: &ScalarValue) -> Option<f64> {
    let data_type = min.data_type();
    if !(data_type.is_integer() || matches!(data_type, DataType::Date32 | DataType::Date64)) {
        return None;
    }
    let as_i64 = |v: &ScalarValue| match v.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(Some(v)) => Some(v),
        _ => None,
    };
    let (min, max) = (as_i64(min)?, as_i64(max)?);
    let span = max as f64 - min as f64 + 1.0;
    (span >= 1.0).then_some(span)
}

/// Distinct values of a scanned column ([`file_distinct`]), never more than its
/// rows.
fn scan_distinct(column: &ColumnStatistics, rows: usize) -> Precision<usize> {
    match file_distinct(column) {
        Some(n) => Precision::Inexact((n as usize).clamp(1, rows.max(1))),
        None => Precision::Absent,
    }
}

/// A scan's statistics with distinct values from min/max where its files'
/// counts are missing or low.
#[derive(Debug)]
struct ScanDistinct;

impl StatisticsProvider for ScanDistinct {
    fn compute_statistics(
        &self,
        plan: &dyn ExecutionPlan,
        _child_stats: &[ExtendedStatistics],
    ) -> Result<StatisticsResult> {
        if !plan.children().is_empty() {
            return Ok(StatisticsResult::Delegate);
        }
        let mut stats =
            Arc::unwrap_or_clone(StatisticsContext::new().compute(plan, &StatisticsArgs::new())?);
        if let Some(&rows) = stats.num_rows.get_value() {
            for column in &mut stats.column_statistics {
                column.distinct_count = scan_distinct(column, rows);
            }
        }
        Ok(StatisticsResult::Computed(ExtendedStatistics::new(stats)))
    }
}

/// Equi-joins (hash and sort-merge) of the types whose output columns are both
/// sides' columns: see the module comment.
#[derive(Debug)]
struct JoinRows;

impl StatisticsProvider for JoinRows {
    fn compute_statistics(
        &self,
        plan: &dyn ExecutionPlan,
        child_stats: &[ExtendedStatistics],
    ) -> Result<StatisticsResult> {
        let (on, has_filter, join_type, projection) =
            if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
                (
                    join.on(),
                    join.filter().is_some(),
                    *join.join_type(),
                    join.projection.as_deref().map(<[usize]>::to_vec),
                )
            } else if let Some(join) = plan.downcast_ref::<SortMergeJoinExec>() {
                (join.on(), join.filter().is_some(), join.join_type(), None)
            } else {
                return Ok(StatisticsResult::Delegate);
            };
        // Semi, anti and mark joins output one side's columns: DataFusion's
        // provider estimates them.
        let both_sides = matches!(
            join_type,
            JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full
        );
        let [Some(left), Some(right)] = [0, 1].map(|i| child_stats.get(i).map(|s| s.base())) else {
            return Ok(StatisticsResult::Delegate);
        };
        let (true, Some(&left_rows), Some(&right_rows)) = (
            both_sides,
            left.num_rows.get_value(),
            right.num_rows.get_value(),
        ) else {
            return Ok(StatisticsResult::Delegate);
        };
        let (l, r) = (left_rows as f64, right_rows as f64);
        let inner = equi_join_rows(on, left, right, has_filter, l, r);
        let rows = match join_type {
            JoinType::Left => inner.max(l),
            JoinType::Right => inner.max(r),
            JoinType::Full => inner.max(l + r - inner),
            _ => inner,
        };
        let mut columns = thinned(&left.column_statistics, l, rows);
        columns.extend(thinned(&right.column_statistics, r, rows));
        let stats = Statistics {
            num_rows: Precision::Inexact(rows.round() as usize),
            total_byte_size: Precision::Absent,
            column_statistics: columns,
        };
        Ok(StatisticsResult::Computed(ExtendedStatistics::new(
            stats.project(projection.as_ref()),
        )))
    }
}

/// Rows of the inner equi-join of `left` and `right` on `on`.
fn equi_join_rows(
    on: &[(PhysicalExprRef, PhysicalExprRef)],
    left: &Statistics,
    right: &Statistics,
    has_filter: bool,
    left_rows: f64,
    right_rows: f64,
) -> f64 {
    let distinct = |key: &PhysicalExprRef, side: &Statistics, rows: f64| {
        key.downcast_ref::<Column>()
            .and_then(|c| side.column_statistics.get(c.index()))
            .and_then(distinct_from_statistics)
            .map_or(rows, |n| n.min(rows))
            .max(1.0)
    };
    let key_values = on
        .iter()
        .map(|(l, r)| distinct(l, left, left_rows).max(distinct(r, right, right_rows)))
        .fold(1.0_f64, f64::max);
    join_estimate(left_rows, right_rows, key_values, usize::from(has_filter))
}

/// Rows of an equi-join whose most selective key has `key_values` distinct
/// values and which has `others` further conditions; never under one. The one
/// formula of both the join-order model and this registry.
pub(crate) fn join_estimate(
    left_rows: f64,
    right_rows: f64,
    key_values: f64,
    others: usize,
) -> f64 {
    let kept = OTHER_SELECTIVITY.powi(others as i32);
    (left_rows * right_rows * kept / key_values).max(1.0)
}

/// A side's column statistics in a join output of `rows` rows: distinct values
/// thinned as a filter keeping that fraction would thin them; sums and null
/// counts unknown.
fn thinned(columns: &[ColumnStatistics], side_rows: f64, rows: f64) -> Vec<ColumnStatistics> {
    let kept = if side_rows > 0.0 {
        rows / side_rows
    } else {
        1.0
    };
    columns
        .iter()
        .map(|column| ColumnStatistics {
            null_count: Precision::Absent,
            max_value: column.max_value.clone().to_inexact(),
            min_value: column.min_value.clone().to_inexact(),
            sum_value: Precision::Absent,
            distinct_count: match distinct_from_statistics(column) {
                Some(n) if kept < 1.0 => Precision::Inexact(ndv_after_selectivity(
                    n.min(side_rows) as usize,
                    side_rows as usize,
                    kept,
                )),
                Some(n) => Precision::Inexact(n.min(side_rows) as usize),
                None => Precision::Absent,
            },
            byte_size: Precision::Absent,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::physical_expr::PhysicalExprRef;

    use super::*;

    fn ranged(min: i64, max: i64, count: Option<usize>) -> ColumnStatistics {
        ColumnStatistics {
            min_value: Precision::Exact(ScalarValue::Int64(Some(min))),
            max_value: Precision::Exact(ScalarValue::Int64(Some(max))),
            distinct_count: count.map_or(Precision::Absent, Precision::Exact),
            ..Default::default()
        }
    }

    fn stats(rows: usize, columns: Vec<ColumnStatistics>) -> Statistics {
        Statistics {
            num_rows: Precision::Exact(rows),
            total_byte_size: Precision::Absent,
            column_statistics: columns,
        }
    }

    fn key(name: &str, index: usize) -> PhysicalExprRef {
        Arc::new(Column::new(name, index))
    }

    #[test]
    fn a_scanned_column_counts_its_range_unless_the_file_counts_more_and_never_its_rows() {
        // DuckDB's per-row-group count under the range: the range.
        assert_eq!(
            scan_distinct(&ranged(2450815, 2452650, Some(237)), 1_441_548),
            Precision::Inexact(1836)
        );
        assert_eq!(
            scan_distinct(&ranged(1, 10, Some(40)), 1000),
            Precision::Inexact(40)
        );
        assert_eq!(
            scan_distinct(&ranged(1, 1_000_000, None), 500),
            Precision::Inexact(500)
        );
        let text = ColumnStatistics {
            min_value: Precision::Exact(ScalarValue::from("a")),
            max_value: Precision::Exact(ScalarValue::from("z")),
            ..Default::default()
        };
        assert_eq!(scan_distinct(&text, 500), Precision::Absent);
    }

    #[test]
    fn a_join_divides_by_its_most_selective_key_and_a_filter_keeps_a_third() {
        // fact(p, s): 6 M rows over 200 K and 10 K values; pair(p, s): 800 K.
        let fact = stats(
            6_000_000,
            vec![ranged(1, 200_000, None), ranged(1, 10_000, None)],
        );
        let pair = stats(
            800_000,
            vec![ranged(1, 200_000, None), ranged(1, 10_000, None)],
        );
        let on = [(key("p", 0), key("p", 0)), (key("s", 1), key("s", 1))];
        let rows = equi_join_rows(&on, &fact, &pair, false, 6e6, 8e5);
        assert_eq!(rows, 6e6 * 8e5 / 2e5);
        let filtered = equi_join_rows(&on, &fact, &pair, true, 6e6, 8e5);
        assert_eq!(filtered, rows * OTHER_SELECTIVITY);
    }

    #[test]
    fn a_join_output_thins_the_distinct_values_of_the_rows_it_drops() {
        let side = [ranged(1, 1000, None), ranged(1, 10, None)];
        // Keeping a tenth of 1000 rows of 1000 keys keeps about 100 of them;
        // 10 keys of 100 rows each all survive.
        let kept = thinned(&side, 1000.0, 100.0);
        assert_eq!(kept[0].distinct_count, Precision::Inexact(100));
        assert_eq!(kept[1].distinct_count, Precision::Inexact(10));
        assert!(!kept[0].min_value.is_exact().unwrap());
        // A join that multiplies rows keeps every value.
        let grown = thinned(&side, 1000.0, 5000.0);
        assert_eq!(grown[0].distinct_count, Precision::Inexact(1000));
    }
}
