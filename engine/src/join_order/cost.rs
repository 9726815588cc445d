//! How many rows a join order makes, from the inputs' statistics, and the order
//! that makes the fewest.
//!
//! The model is the textbook one (Selinger et al.; what DataFusion's own join
//! statistics and most engines use): an equi-join of `A` and `B` on `a = b`
//! gives `|A| × |B| ÷ max(distinct(a), distinct(b))` rows, every other
//! condition keeps a third. Distinct values come from an integer or date
//! column's min/max range, or the file's count where that is more
//! (`crate::statistics::file_distinct`: a Parquet count is per row group), and
//! never exceed the rows of the table the input reads *before* its filters: a filter
//! on another column keeps the key's range, so joining a dimension filtered to
//! a fifth of its rows keeps about a fifth of the fact rows, as it does for a
//! foreign key (capping by the filtered rows instead made such a join look like
//! it kept them all). A filter on the key itself narrows its min/max, and so
//! its distinct values. An order costs the rows of all its intermediate
//! results: on one machine they are hash tables and probes, on a cluster also
//! shuffle files.

use datafusion::common::{ColumnStatistics, Statistics};
use datafusion::logical_expr::Expr;

use super::group::{Inputs, JoinGroup, Shape};
use crate::statistics::{OTHER_SELECTIVITY, file_distinct, join_estimate};

/// Rows and distinct values of one input.
pub(super) struct InputStats {
    pub rows: f64,
    /// Per column of the input's schema.
    pub distinct: Vec<f64>,
}

impl InputStats {
    /// From DataFusion's statistics of the input's physical plan and the rows
    /// of what it reads before filtering (`unfiltered`, when known); `None`
    /// when its row count is unknown.
    pub fn from_statistics(stats: &Statistics, unfiltered: Option<usize>) -> Option<InputStats> {
        let rows = *stats.num_rows.get_value()? as f64;
        let cap = unfiltered.map_or(rows, |n| rows.max(n as f64));
        let distinct = stats
            .column_statistics
            .iter()
            .map(|column| distinct_values(column, cap))
            .collect();
        Some(InputStats { rows, distinct })
    }
}

fn distinct_values(column: &ColumnStatistics, rows: f64) -> f64 {
    file_distinct(column)
        .unwrap_or(rows)
        .clamp(1.0, rows.max(1.0))
}

/// Estimates for a group whose inputs' statistics are known.
pub(super) struct CostModel<'a> {
    group: &'a JoinGroup,
    stats: Vec<InputStats>,
}

impl<'a> CostModel<'a> {
    pub fn new(group: &'a JoinGroup, stats: Vec<InputStats>) -> Self {
        Self { group, stats }
    }

    /// Rows of one input after the conditions on it alone.
    fn input_rows(&self, i: usize) -> f64 {
        let own = self
            .group
            .conditions
            .iter()
            .filter(|c| c.inputs == 1 << i)
            .count();
        (self.stats[i].rows * OTHER_SELECTIVITY.powi(own as i32)).max(1.0)
    }

    /// Rows of joining `left` (making `left_rows`) with `right`. Of several
    /// equalities in one join, only the most selective counts: the columns of
    /// a composite key are rarely independent (`lineitem JOIN partsupp ON
    /// (partkey, suppkey)` keeps every lineitem row), and multiplying their
    /// selectivities, or even capping the product at a side's rows, took that
    /// join for one that shrinks, put it first in TPC-H q9 and made q9 2.5x
    /// slower. An overestimate costs a less than best order; an underestimate
    /// can cost a join that explodes.
    fn join_rows(&self, left: Inputs, left_rows: f64, right: Inputs, right_rows: f64) -> f64 {
        let both = left | right;
        let mut key_values = 1.0_f64;
        let mut others = 0;
        for condition in &self.group.conditions {
            let new_here = condition.inputs & !both == 0
                && condition.inputs & left != 0
                && condition.inputs & right != 0;
            if !new_here {
                continue;
            }
            match condition.equi_sides(left, right) {
                Some((l, r)) => {
                    let values = self
                        .distinct(&l, left_rows)
                        .max(self.distinct(&r, right_rows));
                    key_values = key_values.max(values);
                }
                None => others += 1,
            }
        }
        join_estimate(left_rows, right_rows, key_values, others)
    }

    /// Distinct values of a join key: its column's; for any other expression,
    /// the `rows` of its side.
    fn distinct(&self, key: &Expr, rows: f64) -> f64 {
        let Expr::Column(column) = key else {
            return rows;
        };
        self.group
            .inputs
            .iter()
            .zip(&self.stats)
            .find_map(|(input, stats)| {
                let index = input.schema().maybe_index_of_column(column)?;
                stats.distinct.get(index).copied()
            })
            .unwrap_or(rows)
            .max(1.0)
    }

    /// (rows, cost) of a join tree: cost is the rows of every join in it.
    pub fn shape_cost(&self, shape: &Shape) -> (f64, f64) {
        match shape {
            Shape::Input(i) => (self.input_rows(*i), 0.0),
            Shape::Join(left, right) => {
                let (left_rows, left_cost) = self.shape_cost(left);
                let (right_rows, right_cost) = self.shape_cost(right);
                let rows = self.join_rows(left.inputs(), left_rows, right.inputs(), right_rows);
                (rows, left_cost + right_cost + rows)
            }
        }
    }

    /// Whether `condition`s join `input` to `have` with an equality.
    fn connected(&self, have: Inputs, input: usize) -> bool {
        self.group.conditions.iter().any(|condition| {
            condition.inputs & (1 << input) != 0
                && condition.inputs & have != 0
                && condition.equi_sides(have, 1 << input).is_some()
        })
    }

    /// The cheapest left-deep order found greedily from each input in turn (at
    /// every step, the input joined by an equality that makes the fewest rows),
    /// with its cost; `None` when the inputs are not all joined by equalities.
    pub fn best_order(&self) -> Option<(Vec<usize>, f64)> {
        let n = self.group.inputs.len();
        let mut best: Option<(Vec<usize>, f64)> = None;
        for start in 0..n {
            let Some((order, cost)) = self.greedy_from(start) else {
                continue;
            };
            if best.as_ref().is_none_or(|(_, c)| cost < *c) {
                best = Some((order, cost));
            }
        }
        best
    }

    fn greedy_from(&self, start: usize) -> Option<(Vec<usize>, f64)> {
        let n = self.group.inputs.len();
        let mut order = vec![start];
        let mut have: Inputs = 1 << start;
        let mut rows = self.input_rows(start);
        let mut cost = 0.0;
        while order.len() < n {
            let (next, next_rows) = (0..n)
                .filter(|&i| have & (1 << i) == 0 && self.connected(have, i))
                .map(|i| (i, self.join_rows(have, rows, 1 << i, self.input_rows(i))))
                .min_by(|a, b| a.1.total_cmp(&b.1))?;
            order.push(next);
            have |= 1 << next;
            rows = next_rows;
            cost += rows;
        }
        Some((order, cost))
    }
}

#[cfg(test)]
mod tests {
    use super::super::group::tests::table;
    use super::*;
    use datafusion::common::ScalarValue;
    use datafusion::common::stats::Precision;
    use datafusion::logical_expr::{JoinType, LogicalPlanBuilder, col};

    fn stats(rows: f64, distinct: &[f64]) -> InputStats {
        InputStats {
            rows,
            distinct: distinct.to_vec(),
        }
    }

    /// fact(p, s, d) joined with pair(p, s) on both columns, then with dim(d).
    fn star() -> JoinGroup {
        let plan = LogicalPlanBuilder::from(table("fact", &["p", "s", "d"]))
            .join_on(
                table("pair", &["p", "s"]),
                JoinType::Inner,
                [
                    col("fact.p").eq(col("pair.p")),
                    col("fact.s").eq(col("pair.s")),
                ],
            )
            .unwrap()
            .join_on(
                table("dim", &["d"]),
                JoinType::Inner,
                [col("fact.d").eq(col("dim.d"))],
            )
            .unwrap()
            .build()
            .unwrap();
        JoinGroup::take_apart(&plan).unwrap()
    }

    #[test]
    fn a_composite_key_counts_its_most_selective_column_and_a_filtered_dimension_its_fraction() {
        let group = star();
        let model = CostModel::new(
            &group,
            vec![
                // 6 M fact rows over 200 K p and 10 K s values; 800 K pairs.
                stats(6e6, &[2e5, 1e4, 2e6]),
                stats(8e5, &[2e5, 1e4]),
                // A dimension filtered to a fifth of its 2 M rows: its key
                // keeps its range.
                stats(4e5, &[2e6]),
            ],
        );
        // Every fact row has its pair: not 6e6 * 8e5 / (2e5 * 1e4).
        assert_eq!(model.join_rows(0b001, 6e6, 0b010, 8e5), 6e6 * 8e5 / 2e5);
        // A fifth of the fact rows find their dimension row.
        assert_eq!(model.join_rows(0b001, 6e6, 0b100, 4e5), 6e6 / 5.0);
        // The best order joins the filtered dimension before the pairs.
        let (order, _) = model.best_order().unwrap();
        assert_eq!(order[2], 1, "{order:?}");
    }

    #[test]
    fn distinct_values_come_from_ranges_or_larger_counts_then_rows() {
        let counted = ColumnStatistics {
            distinct_count: Precision::Inexact(40),
            ..Default::default()
        };
        assert_eq!(distinct_values(&counted, 1000.0), 40.0);
        // A count under the range is one row group's: the range is taken.
        let low_count = ColumnStatistics {
            distinct_count: Precision::Inexact(4),
            min_value: Precision::Exact(ScalarValue::Int32(Some(11))),
            max_value: Precision::Exact(ScalarValue::Int32(Some(20))),
            ..Default::default()
        };
        assert_eq!(distinct_values(&low_count, 1000.0), 10.0);
        let ranged = ColumnStatistics {
            min_value: Precision::Exact(ScalarValue::Int32(Some(11))),
            max_value: Precision::Exact(ScalarValue::Int32(Some(20))),
            ..Default::default()
        };
        assert_eq!(distinct_values(&ranged, 1000.0), 10.0);
        // Never more than the rows.
        assert_eq!(distinct_values(&ranged, 4.0), 4.0);
        let text = ColumnStatistics {
            min_value: Precision::Exact(ScalarValue::from("a")),
            max_value: Precision::Exact(ScalarValue::from("z")),
            ..Default::default()
        };
        assert_eq!(distinct_values(&text, 1000.0), 1000.0);
        assert_eq!(distinct_values(&ColumnStatistics::default(), 7.0), 7.0);
    }
}
