//! Seeded random SQL over the TPC-H tables: joins of LIMIT and ORDER BY
//! subqueries, inner joins of three to five tables listed in any order (what
//! ember's join reordering rewrites), aggregates, DISTINCT, windows, set operations, CASE, NULLs and
//! ember's functions in every clause.
//!
//! Every query is deterministic: a LIMIT is always under an ORDER BY that ends
//! with a unique key, windows that depend on row order order by one, and floats
//! are compared with a tolerance by the runner. So any difference between two
//! engines is a defect of one of them.

use std::fmt::Write;

/// SplitMix64: small, seedable, the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n ≥ 1).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Decimal,
    Text,
    Date,
}

struct Table {
    name: &'static str,
    key: &'static [&'static str],
    columns: &'static [(&'static str, Kind)],
}

use Kind::{Date, Decimal, Int, Text};

const TABLES: &[Table] = &[
    Table {
        name: "nation",
        key: &["n_nationkey"],
        columns: &[("n_nationkey", Int), ("n_name", Text), ("n_regionkey", Int)],
    },
    Table {
        name: "region",
        key: &["r_regionkey"],
        columns: &[("r_regionkey", Int), ("r_name", Text)],
    },
    Table {
        name: "customer",
        key: &["c_custkey"],
        columns: &[
            ("c_custkey", Int),
            ("c_nationkey", Int),
            ("c_acctbal", Decimal),
            ("c_mktsegment", Text),
        ],
    },
    Table {
        name: "orders",
        key: &["o_orderkey"],
        columns: &[
            ("o_orderkey", Int),
            ("o_custkey", Int),
            ("o_orderstatus", Text),
            ("o_totalprice", Decimal),
            ("o_orderdate", Date),
            ("o_orderpriority", Text),
        ],
    },
    Table {
        name: "lineitem",
        key: &["l_orderkey", "l_linenumber"],
        columns: &[
            ("l_orderkey", Int),
            ("l_linenumber", Int),
            ("l_partkey", Int),
            ("l_suppkey", Int),
            ("l_quantity", Decimal),
            ("l_extendedprice", Decimal),
            ("l_discount", Decimal),
            ("l_returnflag", Text),
            ("l_linestatus", Text),
            ("l_shipdate", Date),
            ("l_shipmode", Text),
        ],
    },
    Table {
        name: "part",
        key: &["p_partkey"],
        columns: &[
            ("p_partkey", Int),
            ("p_brand", Text),
            ("p_size", Int),
            ("p_retailprice", Decimal),
        ],
    },
    Table {
        name: "supplier",
        key: &["s_suppkey"],
        columns: &[
            ("s_suppkey", Int),
            ("s_nationkey", Int),
            ("s_acctbal", Decimal),
        ],
    },
    Table {
        name: "partsupp",
        key: &["ps_partkey", "ps_suppkey"],
        columns: &[
            ("ps_partkey", Int),
            ("ps_suppkey", Int),
            ("ps_availqty", Int),
            ("ps_supplycost", Decimal),
        ],
    },
];

/// Columns two tables join on.
const JOINS: &[(&str, &str, &str, &str)] = &[
    ("orders", "o_custkey", "customer", "c_custkey"),
    ("lineitem", "l_orderkey", "orders", "o_orderkey"),
    ("lineitem", "l_partkey", "part", "p_partkey"),
    ("lineitem", "l_suppkey", "supplier", "s_suppkey"),
    ("customer", "c_nationkey", "nation", "n_nationkey"),
    ("supplier", "s_nationkey", "nation", "n_nationkey"),
    ("nation", "n_regionkey", "region", "r_regionkey"),
    ("partsupp", "ps_partkey", "part", "p_partkey"),
    ("partsupp", "ps_suppkey", "supplier", "s_suppkey"),
    ("customer", "c_nationkey", "supplier", "s_nationkey"),
];

fn table(name: &str) -> &'static Table {
    TABLES.iter().find(|t| t.name == name).expect("known table")
}

/// A relation in FROM: its SQL and the columns it offers (as `alias.column`).
#[derive(Debug, Clone)]
struct Relation {
    sql: String,
    columns: Vec<(String, Kind)>,
}

impl Relation {
    fn of(&self, kind: Kind) -> Vec<String> {
        self.columns
            .iter()
            .filter(|(_, k)| *k == kind)
            .map(|(c, _)| c.clone())
            .collect()
    }

    fn numeric(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|(_, k)| matches!(k, Int | Decimal))
            .map(|(c, _)| c.clone())
            .collect()
    }
}

/// A generated query and what the runner needs to compare its answers.
#[derive(Debug, Clone)]
pub struct Query {
    pub sql: String,
    /// Leading output columns the rows are ordered by; 0 when unordered.
    pub ordered_by: usize,
}

/// Generates query number `n` of the run seeded `seed` (independent of the
/// others, so one query can be generated again alone).
pub fn query(seed: u64, n: u64) -> Query {
    let mut g = Generator {
        rng: Rng::new(seed ^ n.wrapping_mul(0x2545_f491_4f6c_dd1d)),
        next_alias: 0,
    };
    g.top()
}

struct Generator {
    rng: Rng,
    next_alias: usize,
}

impl Generator {
    fn alias(&mut self) -> String {
        self.next_alias += 1;
        format!("a{}", self.next_alias)
    }

    fn top(&mut self) -> Query {
        match self.rng.below(6) {
            0 => self.join_query(),
            1 => self.aggregate_query(),
            2 => self.window_query(),
            3 => self.set_query(),
            4 => self.many_join_query(),
            _ => self.select_query(),
        }
    }

    /// A FROM item over `t` keeping at least `keep`: the table, or a LIMIT,
    /// aggregate or DISTINCT subquery of it.
    fn relation(&mut self, t: &Table, keep: &str) -> Relation {
        let alias = self.alias();
        let kind = |c: &str| {
            t.columns
                .iter()
                .find(|(n, _)| *n == c)
                .map(|(_, k)| *k)
                .unwrap()
        };
        match self.rng.below(4) {
            0 => {
                let mut cols: Vec<&str> = vec![keep];
                for (c, _) in t.columns {
                    if *c != keep && self.rng.chance(0.5) {
                        cols.push(c);
                    }
                }
                for k in t.key {
                    if !cols.contains(k) {
                        cols.push(k);
                    }
                }
                let order = *self.rng.pick(t.columns);
                let mut order_by = vec![format!(
                    "{}{}",
                    order.0,
                    if self.rng.chance(0.3) { " DESC" } else { "" }
                )];
                order_by.extend(t.key.iter().map(|k| k.to_string()));
                let filter = self.filter_on(t);
                let limit = [5, 50, 500, 2000][self.rng.below(4)];
                Relation {
                    sql: format!(
                        "(SELECT {} FROM {}{filter} ORDER BY {} LIMIT {limit}) {alias}",
                        cols.join(", "),
                        t.name,
                        order_by.join(", ")
                    ),
                    columns: cols
                        .iter()
                        .map(|c| (format!("{alias}.{c}"), kind(c)))
                        .collect(),
                }
            }
            1 => {
                let measures: Vec<&str> = t
                    .columns
                    .iter()
                    .filter(|(c, k)| matches!(k, Int | Decimal) && *c != keep)
                    .map(|(c, _)| *c)
                    .collect();
                let mut columns = vec![(format!("{alias}.{keep}"), kind(keep))];
                let mut select = vec![keep.to_string(), "count(*) AS n".to_string()];
                columns.push((format!("{alias}.n"), Int));
                if !measures.is_empty() {
                    let m = *self.rng.pick(&measures);
                    let f = *self.rng.pick(&["sum", "min", "max"]);
                    select.push(format!("{f}({m}) AS m"));
                    columns.push((format!("{alias}.m"), kind(m)));
                }
                let having = if self.rng.chance(0.3) {
                    " HAVING count(*) > 1"
                } else {
                    ""
                };
                Relation {
                    sql: format!(
                        "(SELECT {} FROM {}{} GROUP BY {keep}{having}) {alias}",
                        select.join(", "),
                        t.name,
                        self.filter_on(t)
                    ),
                    columns,
                }
            }
            2 => {
                let other = t
                    .columns
                    .iter()
                    .filter(|(c, k)| *c != keep && matches!(k, Text | Int))
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>();
                let mut cols = vec![keep];
                if !other.is_empty() {
                    cols.push(*self.rng.pick(&other));
                }
                Relation {
                    sql: format!(
                        "(SELECT DISTINCT {} FROM {}) {alias}",
                        cols.join(", "),
                        t.name
                    ),
                    columns: cols
                        .iter()
                        .map(|c| (format!("{alias}.{c}"), kind(c)))
                        .collect(),
                }
            }
            _ => Relation {
                sql: format!("{} {alias}", t.name),
                columns: t
                    .columns
                    .iter()
                    .map(|(c, k)| (format!("{alias}.{c}"), *k))
                    .collect(),
            },
        }
    }

    /// ` WHERE ...` on a table's own columns, or nothing.
    fn filter_on(&mut self, t: &Table) -> String {
        if !self.rng.chance(0.4) {
            return String::new();
        }
        let (c, k) = *self.rng.pick(t.columns);
        format!(" WHERE {}", self.predicate(c, k))
    }

    fn predicate(&mut self, column: &str, kind: Kind) -> String {
        match kind {
            Int => match self.rng.below(3) {
                0 => format!("{column} % {} = 0", 2 + self.rng.below(5)),
                1 => format!(
                    "{column} < {}",
                    [5, 50, 500, 5000, 50000][self.rng.below(5)]
                ),
                _ => format!("{column} IS NOT NULL"),
            },
            Decimal => format!(
                "{column} > {}",
                [0, 10, 100, 1000, 10000][self.rng.below(5)]
            ),
            Text => match self.rng.below(3) {
                0 => format!(
                    "{column} LIKE '%{}%'",
                    self.rng.pick(&["A", "E", "O", "1", "R"])
                ),
                1 => format!("{column} < 'M'"),
                _ => format!("length({column}) > {}", self.rng.below(12)),
            },
            Date => format!("{column} < DATE '{}-01-01'", 1992 + self.rng.below(8)),
        }
    }

    /// An expression over `rel` of numeric type: a column, arithmetic, CASE,
    /// NULLs, or one of ember's functions.
    fn number(&mut self, rel: &Relation) -> String {
        let numeric = rel.numeric();
        let c = self.rng.pick(&numeric).clone();
        match self.rng.below(9) {
            0 => format!("sigmoid(CAST({c} AS DOUBLE) / 1000.0)"),
            1 => format!("standard_scale(CAST({c} AS DOUBLE), 10.0, 4.0)"),
            2 => format!("bucketize(CAST({c} AS DOUBLE), 1.0, 10.0, 100.0, 1000.0)"),
            3 => format!("CASE WHEN {c} > 10 THEN {c} ELSE NULL END"),
            4 => format!("COALESCE(NULLIF({c}, 1), -1)"),
            5 => format!("min_max_scale(CAST({c} AS DOUBLE), 0.0, 100.0)"),
            6 => format!("predict('fz', CAST({c} AS DOUBLE), 0.05)"),
            7 => format!("({c} * 2 + 1)"),
            _ => c,
        }
    }

    /// A text expression over `rel`, when it has a text column.
    fn text(&mut self, rel: &Relation) -> Option<String> {
        let texts = rel.of(Text);
        if texts.is_empty() {
            return None;
        }
        let c = self.rng.pick(&texts).clone();
        Some(match self.rng.below(4) {
            0 => format!("CASE WHEN {c} < 'M' THEN 'low' ELSE {c} END"),
            1 => format!("CAST(feature_hash({c}, 8) AS VARCHAR)"),
            2 => format!("upper(substr({c}, 1, 3))"),
            _ => c,
        })
    }

    /// Two joinable relations and the join condition.
    fn joined(&mut self) -> (Relation, Relation, String) {
        let (lt, lc, rt, rc) = *self.rng.pick(JOINS);
        let left = self.relation(table(lt), lc);
        let right = self.relation(table(rt), rc);
        let left_key = left
            .columns
            .iter()
            .find(|(c, _)| c.ends_with(&format!(".{lc}")))
            .unwrap()
            .0
            .clone();
        let right_key = right
            .columns
            .iter()
            .find(|(c, _)| c.ends_with(&format!(".{rc}")))
            .unwrap()
            .0
            .clone();
        (left, right, format!("{left_key} = {right_key}"))
    }

    fn join_query(&mut self) -> Query {
        let (left, right, on) = self.joined();
        let join = *self
            .rng
            .pick(&["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN", "JOIN"]);
        let mut all = left.clone();
        all.columns.extend(right.columns.clone());
        let group = self.rng.pick(&all.columns).0.clone();
        let mut sql = String::new();
        if self.rng.chance(0.6) {
            let measure = self.number(&all);
            let distinct = if self.rng.chance(0.2) {
                "DISTINCT "
            } else {
                ""
            };
            write!(
                sql,
                "SELECT {group} AS g, count(*) AS n, count({distinct}{measure}) AS c, \
                 sum(CAST({measure} AS DOUBLE)) AS s FROM {} {join} {} ON {on}",
                left.sql, right.sql
            )
            .unwrap();
            if self.rng.chance(0.3) {
                let (c, k) = self.rng.pick(&all.columns).clone();
                write!(sql, " WHERE {}", self.predicate(&c, k)).unwrap();
            }
            write!(sql, " GROUP BY {group}").unwrap();
            if self.rng.chance(0.2) {
                sql.push_str(" HAVING count(*) > 1");
            }
            self.finish(sql, 4)
        } else {
            let a = self.number(&all);
            let b = self.text(&all).unwrap_or_else(|| "'none'".into());
            write!(
                sql,
                "SELECT {group} AS g, {a} AS x, {b} AS t FROM {} {join} {} ON {on}",
                left.sql, right.sql
            )
            .unwrap();
            self.finish(sql, 3)
        }
    }

    /// Three to five tables joined by their keys, listed in a random order
    /// with the conditions in WHERE (sometimes a cycle: customer and supplier
    /// of one nation), filtered and aggregated.
    fn many_join_query(&mut self) -> Query {
        let size = 3 + self.rng.below(3);
        let first = self.rng.pick(JOINS).0;
        let mut tables: Vec<&str> = vec![first];
        let mut conditions: Vec<String> = Vec::new();
        let mut used = vec![false; JOINS.len()];
        while tables.len() < size || (self.rng.chance(0.2) && tables.len() < 6) {
            let candidates: Vec<usize> = (0..JOINS.len())
                .filter(|&i| {
                    let (l, _, r, _) = JOINS[i];
                    !used[i] && (tables.contains(&l) || tables.contains(&r))
                })
                .collect();
            if candidates.is_empty() {
                break;
            }
            let i = *self.rng.pick(&candidates);
            used[i] = true;
            let (l, lc, r, rc) = JOINS[i];
            for t in [l, r] {
                if !tables.contains(&t) {
                    tables.push(t);
                }
            }
            conditions.push(format!("{lc} = {rc}"));
        }
        let columns: Vec<(String, Kind)> = tables
            .iter()
            .flat_map(|t| table(t).columns.iter().map(|(c, k)| (c.to_string(), *k)))
            .collect();
        let all = Relation {
            sql: String::new(),
            columns,
        };
        for _ in 0..self.rng.below(3) {
            let (c, k) = self.rng.pick(&all.columns).clone();
            conditions.push(self.predicate(&c, k));
        }
        // The FROM list in a random order.
        let mut listed = tables.clone();
        for i in (1..listed.len()).rev() {
            listed.swap(i, self.rng.below(i + 1));
        }
        let group = self.rng.pick(&all.columns).0.clone();
        let measure = self.number(&all);
        let sql = format!(
            "SELECT {group} AS g, count(*) AS n, sum(CAST({measure} AS DOUBLE)) AS s \
             FROM {} WHERE {} GROUP BY {group}",
            listed.join(", "),
            conditions.join(" AND ")
        );
        self.finish(sql, 3)
    }

    fn aggregate_query(&mut self) -> Query {
        let t = self.rng.pick(TABLES);
        let keep = t.columns[0].0;
        let rel = self.relation(t, keep);
        let group = self.rng.pick(&rel.columns).0.clone();
        let measure = self.number(&rel);
        let f = *self.rng.pick(&["sum", "avg", "min", "max", "count"]);
        let sql = format!(
            "SELECT {group} AS g, {f}(CAST({measure} AS DOUBLE)) AS v, count(DISTINCT {measure}) AS d \
             FROM {} GROUP BY {group}",
            rel.sql
        );
        if self.rng.chance(0.3) {
            // Grouped again: an aggregate of an aggregate.
            let sql = format!(
                "SELECT count(*) AS groups, sum(v) AS total, max(d) AS most FROM ({sql}) q"
            );
            return Query { sql, ordered_by: 0 };
        }
        self.finish(sql, 3)
    }

    fn window_query(&mut self) -> Query {
        let t = self.rng.pick(TABLES);
        let keep = t.key[0];
        let rel = self.relation(t, keep);
        let part = self.rng.pick(&rel.columns).0.clone();
        let key = rel.columns[0].0.clone();
        let measure = self.number(&rel);
        let window = match self.rng.below(5) {
            0 => format!("rank() OVER (PARTITION BY {part} ORDER BY {measure})"),
            1 => format!("dense_rank() OVER (ORDER BY {part})"),
            2 => format!("sum(CAST({measure} AS DOUBLE)) OVER (PARTITION BY {part})"),
            3 => format!("count(*) OVER (PARTITION BY {part})"),
            _ => format!("rank() OVER (ORDER BY predict('fz', CAST({key} AS DOUBLE), 0.05) DESC)"),
        };
        let sql = format!(
            "SELECT {key} AS k, {part} AS p, {window} AS w FROM {}",
            rel.sql
        );
        self.finish(sql, 3)
    }

    fn set_query(&mut self) -> Query {
        let (lt, lc, rt, rc) = *self.rng.pick(JOINS);
        let left = self.relation(table(lt), lc);
        let right = self.relation(table(rt), rc);
        let lk = left
            .columns
            .iter()
            .find(|(c, _)| c.ends_with(&format!(".{lc}")))
            .unwrap()
            .0
            .clone();
        let rk = right
            .columns
            .iter()
            .find(|(c, _)| c.ends_with(&format!(".{rc}")))
            .unwrap()
            .0
            .clone();
        let op = *self
            .rng
            .pick(&["UNION ALL", "UNION", "INTERSECT", "EXCEPT", "UNION ALL"]);
        let sql = format!(
            "SELECT {lk} AS k FROM {} {op} SELECT {rk} AS k FROM {}",
            left.sql, right.sql
        );
        if self.rng.chance(0.5) {
            let sql = format!("SELECT k % 7 AS r, count(*) AS n FROM ({sql}) u GROUP BY k % 7");
            return self.finish(sql, 2);
        }
        self.finish(sql, 1)
    }

    fn select_query(&mut self) -> Query {
        let t = self.rng.pick(TABLES);
        let rel = self.relation(t, t.key[0]);
        let a = self.number(&rel);
        let b = self.text(&rel).unwrap_or_else(|| "'none'".into());
        let mut predicates = Vec::new();
        if self.rng.chance(0.4) {
            let (c, k) = self.rng.pick(&rel.columns).clone();
            predicates.push(self.predicate(&c, k));
        }
        if self.rng.chance(0.3) {
            predicates.push(format!(
                "predict('fz', CAST({} AS DOUBLE), 0.05) > 100",
                rel.numeric()[0]
            ));
        }
        let mut sql = format!("SELECT {a} AS x, {b} AS t FROM {}", rel.sql);
        if !predicates.is_empty() {
            write!(sql, " WHERE {}", predicates.join(" AND ")).unwrap();
        }
        self.finish(sql, 2)
    }

    /// Optionally orders the query by all its `width` output columns, and
    /// limits it (a limit needs the total order).
    fn finish(&mut self, sql: String, width: usize) -> Query {
        if !self.rng.chance(0.5) {
            return Query { sql, ordered_by: 0 };
        }
        let keys: Vec<String> = (1..=width).map(|i| i.to_string()).collect();
        let limit = if self.rng.chance(0.5) {
            format!(" LIMIT {}", [1, 10, 100][self.rng.below(3)])
        } else {
            String::new()
        };
        Query {
            sql: format!("{sql} ORDER BY {}{limit}", keys.join(", ")),
            ordered_by: width,
        }
    }
}
