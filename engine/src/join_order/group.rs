//! A tree of inner joins taken apart into its inputs and its conditions, and put
//! together again in another order.
//!
//! ```text
//!   Inner Join (a.x = c.x)             inputs: a, b, c
//!     Projection: a.x, b.y      ──>    conditions: a.x = c.x, a.y = b.y
//!       Inner Join (a.y = b.y)         shape: ((a b) c)
//!         a  b
//!     c
//! ```
//!
//! Only inner joins that compare with `=` (NULL equals nothing) belong to a
//! group; every other node under one is an input. The projections DataFusion puts
//! between joins only drop columns, so a group looks through them and ends with
//! one projection to the columns its top join gave, in the same order.

use std::sync::Arc;

use datafusion::common::tree_node::TreeNode;
use datafusion::common::{Column, NullEquality, Result, internal_datafusion_err};
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    BinaryExpr, Expr, Filter, Join, JoinConstraint, JoinType, LogicalPlan, Operator, Projection,
};

/// A set of a group's inputs, as bits.
pub(super) type Inputs = u64;

/// The most inputs one group reorders; larger groups keep their order.
pub(super) const MAX_INPUTS: usize = 64;

/// An inner-join tree taken apart.
pub(super) struct JoinGroup {
    /// The inputs, in the order the tree had them.
    pub inputs: Vec<LogicalPlan>,
    /// Every condition of every join, split at AND, each with the inputs it reads.
    pub conditions: Vec<Condition>,
    /// The tree as written, over input indexes.
    pub shape: Shape,
    /// The columns the top join gave, in order.
    pub output: Vec<Column>,
}

/// One conjunct of a join condition.
pub(super) struct Condition {
    pub expr: Expr,
    pub inputs: Inputs,
    /// For `l = r` with each side reading some inputs: both sides and the
    /// inputs each reads, resolved once.
    equality: Option<[(Expr, Inputs); 2]>,
}

impl Condition {
    /// The condition as a (left key, right key) pair where it is `l = r` with
    /// one side reading only `left` inputs and the other only `right` ones.
    pub fn equi_sides(&self, left: Inputs, right: Inputs) -> Option<(Expr, Expr)> {
        let [(l, lr), (r, rr)] = self.equality.as_ref()?;
        if lr & !left == 0 && rr & !right == 0 {
            Some((l.clone(), r.clone()))
        } else if rr & !left == 0 && lr & !right == 0 {
            Some((r.clone(), l.clone()))
        } else {
            None
        }
    }
}

/// A join tree over input indexes.
pub(super) enum Shape {
    Input(usize),
    Join(Box<Shape>, Box<Shape>),
}

impl Shape {
    /// The inputs under this node.
    pub fn inputs(&self) -> Inputs {
        match self {
            Shape::Input(i) => 1 << i,
            Shape::Join(left, right) => left.inputs() | right.inputs(),
        }
    }
}

/// Whether `plan` is the top of a group of at least three inputs.
pub(super) fn is_group_top(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Join(join) if groupable(join) => {
            is_group_node(&join.left) || is_group_node(&join.right)
        }
        _ => false,
    }
}

fn groupable(join: &Join) -> bool {
    join.join_type == JoinType::Inner
        && join.null_equality == NullEquality::NullEqualsNothing
        && !join.null_aware
}

/// Whether `plan` is a join of the group below its top (through a projection
/// that only drops columns).
fn is_group_node(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Join(join) => groupable(join),
        LogicalPlan::Projection(projection) => {
            only_columns(projection) && is_group_node(&projection.input)
        }
        _ => false,
    }
}

fn only_columns(projection: &Projection) -> bool {
    projection
        .expr
        .iter()
        .all(|expr| matches!(expr, Expr::Column(_)))
}

impl JoinGroup {
    /// Takes apart the group whose top is `top`; `None` where its conditions
    /// cannot be placed freely (a column no input or two inputs give, a volatile
    /// expression, a subquery) or it has more than [`MAX_INPUTS`] inputs.
    pub fn take_apart(top: &LogicalPlan) -> Option<JoinGroup> {
        let mut inputs = Vec::new();
        let mut exprs = Vec::new();
        let shape = collect(top, &mut inputs, &mut exprs);
        if inputs.len() > MAX_INPUTS {
            return None;
        }
        let mut conditions = Vec::with_capacity(exprs.len());
        for expr in exprs {
            if expr.is_volatile() || has_subquery(&expr) {
                return None;
            }
            let equality = match &expr {
                Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Eq,
                    right,
                }) => {
                    let (l, r) = (reads(&inputs, left)?, reads(&inputs, right)?);
                    (l != 0 && r != 0)
                        .then(|| [(left.as_ref().clone(), l), (right.as_ref().clone(), r)])
                }
                _ => None,
            };
            conditions.push(Condition {
                inputs: reads(&inputs, &expr)?,
                expr,
                equality,
            });
        }
        let output = top.schema().columns();
        Some(JoinGroup {
            inputs,
            conditions,
            shape,
            output,
        })
    }

    /// The group joined in `order` (left-deep: the first input, joined with the
    /// second, that with the third...), each condition at the first join where
    /// all the columns it reads are there, ending with the group's output
    /// columns.
    pub fn rebuild(&self, order: &[usize]) -> Result<LogicalPlan> {
        let mut placed = vec![false; self.conditions.len()];
        let input = |i: usize, placed: &mut [bool]| -> Result<LogicalPlan> {
            // A condition on one input alone (DataFusion pushes those down, so
            // rarely) filters that input.
            let own = self.take(placed, |reads| reads & !(1 << i) == 0);
            let plan = self.inputs[i].clone();
            match conjunction(own.into_iter().map(|c| c.expr.clone())) {
                Some(predicate) => Ok(LogicalPlan::Filter(Filter::try_new(
                    predicate,
                    Arc::new(plan),
                )?)),
                None => Ok(plan),
            }
        };
        let mut plan = input(order[0], &mut placed)?;
        let mut have: Inputs = 1 << order[0];
        for &next in &order[1..] {
            let right = input(next, &mut placed)?;
            let adding: Inputs = 1 << next;
            let mut on = Vec::new();
            let mut rest = Vec::new();
            let here = self.take(&mut placed, |reads| {
                reads & !(have | adding) == 0 && reads & adding != 0
            });
            for condition in here {
                match condition.equi_sides(have, adding) {
                    Some(pair) => on.push(pair),
                    None => rest.push(condition.expr.clone()),
                }
            }
            plan = LogicalPlan::Join(Join::try_new(
                Arc::new(plan),
                Arc::new(right),
                on,
                conjunction(rest),
                JoinType::Inner,
                JoinConstraint::On,
                NullEquality::NullEqualsNothing,
                false,
            )?);
            have |= adding;
        }
        // Conditions that read no column at all.
        let constant = self.take(&mut placed, |reads| reads == 0);
        if let Some(predicate) = conjunction(constant.into_iter().map(|c| c.expr.clone())) {
            plan = LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(plan))?);
        }
        let columns = self.output.iter().cloned().map(Expr::Column).collect();
        Ok(LogicalPlan::Projection(Projection::try_new(
            columns,
            Arc::new(plan),
        )?))
    }

    /// The tree `top` as written, with this group's (possibly changed) inputs in
    /// place of its own.
    pub fn substitute_inputs(&self, top: &LogicalPlan) -> Result<LogicalPlan> {
        let mut inputs = self.inputs.iter();
        substitute(top, &mut inputs)
    }

    /// The conditions not yet placed whose inputs pass `fits`; marked placed.
    fn take(&self, placed: &mut [bool], fits: impl Fn(Inputs) -> bool) -> Vec<&Condition> {
        let mut taken = Vec::new();
        for (condition, placed) in self.conditions.iter().zip(placed.iter_mut()) {
            if !*placed && fits(condition.inputs) {
                *placed = true;
                taken.push(condition);
            }
        }
        taken
    }
}

/// Walks the group under `plan`, collecting its inputs and conditions.
fn collect(plan: &LogicalPlan, inputs: &mut Vec<LogicalPlan>, conditions: &mut Vec<Expr>) -> Shape {
    match plan {
        LogicalPlan::Join(join) if groupable(join) => {
            let left = collect(&join.left, inputs, conditions);
            let right = collect(&join.right, inputs, conditions);
            for (l, r) in &join.on {
                conditions.push(l.clone().eq(r.clone()));
            }
            if let Some(filter) = &join.filter {
                conditions.extend(split_conjunction_owned(filter.clone()));
            }
            Shape::Join(Box::new(left), Box::new(right))
        }
        LogicalPlan::Projection(projection)
            if only_columns(projection) && is_group_node(&projection.input) =>
        {
            collect(&projection.input, inputs, conditions)
        }
        other => {
            inputs.push(other.clone());
            Shape::Input(inputs.len() - 1)
        }
    }
}

/// [`collect`]'s walk again, putting `inputs` where it found inputs.
fn substitute<'a>(
    plan: &LogicalPlan,
    inputs: &mut impl Iterator<Item = &'a LogicalPlan>,
) -> Result<LogicalPlan> {
    let within = match plan {
        LogicalPlan::Join(join) => groupable(join),
        LogicalPlan::Projection(projection) => {
            only_columns(projection) && is_group_node(&projection.input)
        }
        _ => false,
    };
    if !within {
        return inputs
            .next()
            .cloned()
            .ok_or_else(|| internal_datafusion_err!("a join group lost an input"));
    }
    let children = plan
        .inputs()
        .into_iter()
        .map(|child| substitute(child, inputs))
        .collect::<Result<Vec<_>>>()?;
    plan.with_new_exprs(plan.expressions(), children)
}

/// The inputs `expr` reads; `None` if one of its columns is given by no input
/// or by several.
fn reads(inputs: &[LogicalPlan], expr: &Expr) -> Option<Inputs> {
    let mut read = 0;
    for column in expr.column_refs() {
        read |= 1 << input_of(inputs, column)?;
    }
    Some(read)
}

/// The one input that gives `column`; `None` if none or several do.
fn input_of(inputs: &[LogicalPlan], column: &Column) -> Option<usize> {
    let mut found = inputs
        .iter()
        .enumerate()
        .filter(|(_, input)| input.schema().has_column(column))
        .map(|(i, _)| i);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

fn has_subquery(expr: &Expr) -> bool {
    expr.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::OuterReferenceColumn(..)
        ))
    })
    .unwrap_or(true)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::functions::math::expr_fn::random;
    use datafusion::logical_expr::{LogicalPlanBuilder, col, table_scan};

    /// An empty table of Int64 columns.
    pub(in crate::join_order) fn table(name: &str, columns: &[&str]) -> LogicalPlan {
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(*c, DataType::Int64, true))
            .collect();
        table_scan(Some(name), &Schema::new(fields), None)
            .unwrap()
            .build()
            .unwrap()
    }

    fn three_way(last: Expr) -> LogicalPlan {
        LogicalPlanBuilder::from(table("a", &["x", "y"]))
            .join_on(
                table("b", &["y", "z"]),
                JoinType::Inner,
                [col("a.y").eq(col("b.y"))],
            )
            .unwrap()
            .join_on(
                table("c", &["z", "w"]),
                JoinType::Inner,
                [col("b.z").eq(col("c.z")), last],
            )
            .unwrap()
            .build()
            .unwrap()
    }

    #[test]
    fn a_group_rebuilt_in_another_order_keeps_its_columns_and_places_each_condition_once() {
        let plan = three_way(col("a.x").lt(col("c.w")));
        assert!(is_group_top(&plan));
        let group = JoinGroup::take_apart(&plan).unwrap();
        assert_eq!(group.inputs.len(), 3);
        assert_eq!(group.conditions.len(), 3);
        let rebuilt = group.rebuild(&[2, 1, 0]).unwrap();
        assert_eq!(rebuilt.schema().columns(), plan.schema().columns());
        let text = rebuilt.display_indent().to_string();
        // c with b on z first (an equality: a hash join key), then a, with its
        // key and the comparison that needs both a and c.
        assert!(text.contains("Inner Join: c.z = b.z\n"), "{text}");
        assert!(
            text.contains("Inner Join: b.y = a.y Filter: a.x < c.w"),
            "{text}"
        );
        // As written, the substitution gives back the same tree.
        assert_eq!(group.substitute_inputs(&plan).unwrap(), plan);
    }

    #[test]
    fn a_group_with_a_volatile_condition_keeps_its_order() {
        let plan = three_way(col("a.x").lt(random()));
        assert!(JoinGroup::take_apart(&plan).is_none());
    }
}
