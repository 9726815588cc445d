//! Model metrics over predictions held in memory, as EVALUATE MODEL defines
//! them (sql's `evaluate.rs` computes the same as distributed aggregates):
//! scikit-learn's definitions, in [`MetricsFamily::names`] order.
//!
//! [`MetricsFamily::names`]: crate::models::MetricsFamily::names

use crate::models::{ClassScores, argmax};

/// The classification metrics of rows a classifier scored `scores`, against
/// their class-index `labels`: binary or multiclass as the scores are.
pub fn of_class_scores(scores: &ClassScores, labels: &[f64]) -> Vec<Option<f64>> {
    match scores {
        ClassScores::Binary {
            probabilities,
            ones,
        } => {
            let classes: Vec<f64> = ones.iter().map(|o| f64::from(u8::from(*o))).collect();
            classification(&classes, probabilities, labels)
        }
        ClassScores::Multi {
            classes,
            probabilities,
        } => multiclass(*classes, probabilities, labels),
    }
}

/// `rmse`, `mae` and `r2` of `predictions` against `labels`.
pub fn regression(predictions: &[f64], labels: &[f64]) -> Vec<Option<f64>> {
    let n = labels.len() as f64;
    let (mut sse, mut sae) = (0.0, 0.0);
    for (p, y) in predictions.iter().zip(labels) {
        sse += (p - y) * (p - y);
        sae += (p - y).abs();
    }
    let mean = labels.iter().sum::<f64>() / n;
    let total: f64 = labels.iter().map(|y| (y - mean) * (y - mean)).sum();
    regression_of_sums(n, sse, sae, total)
}

/// `rmse`, `mae` and `r2` from their sums over `n` rows: squared and absolute
/// errors, and the labels' squared deviations from their mean.
pub fn regression_of_sums(n: f64, sse: f64, sae: f64, total: f64) -> Vec<Option<f64>> {
    // scikit-learn: a constant target scores 1 when fitted exactly, else 0.
    let r2 = if total == 0.0 {
        if sse == 0.0 { 1.0 } else { 0.0 }
    } else {
        1.0 - sse / total
    };
    vec![Some((sse / n).sqrt()), Some(sae / n), Some(r2)]
}

/// `accuracy`, `precision`, `recall`, `f1` (class 1 positive, 0 when
/// undefined), `log_loss` (probabilities clipped to [ε, 1−ε]) and `roc_auc`
/// of predicted `classes` (0/1) and `probabilities` of class 1 against 0/1
/// `labels`.
pub fn classification(classes: &[f64], probabilities: &[f64], labels: &[f64]) -> Vec<Option<f64>> {
    let n = labels.len() as f64;
    let (mut correct, mut tp, mut predicted, mut positive, mut log_loss) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    for ((c, p), y) in classes.iter().zip(probabilities).zip(labels) {
        correct += f64::from(u8::from(c == y));
        tp += c * y;
        predicted += c;
        positive += y;
        let q = p.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
        log_loss -= y * q.ln() + (1.0 - y) * (1.0 - q).ln();
    }
    let counts = ClassCounts {
        rows: n,
        correct,
        true_positive: tp,
        predicted,
        positive,
    };
    classification_of_sums(&counts, log_loss, roc_auc(probabilities, labels))
}

/// What a binary classifier got right over some rows.
pub struct ClassCounts {
    pub rows: f64,
    pub correct: f64,
    pub true_positive: f64,
    /// Rows predicted class 1.
    pub predicted: f64,
    /// Rows whose label is class 1.
    pub positive: f64,
}

/// The classification metrics from `counts`, the summed log-loss and the AUC.
pub fn classification_of_sums(
    counts: &ClassCounts,
    log_loss: f64,
    roc_auc: Option<f64>,
) -> Vec<Option<f64>> {
    let ratio = |num: f64, den: f64| if den == 0.0 { 0.0 } else { num / den };
    let c = counts;
    vec![
        Some(c.correct / c.rows),
        Some(ratio(c.true_positive, c.predicted)),
        Some(ratio(c.true_positive, c.positive)),
        Some(ratio(2.0 * c.true_positive, c.predicted + c.positive)),
        Some(log_loss / c.rows),
        roc_auc,
    ]
}

/// `accuracy`, macro `precision`, `recall` and `f1`, `log_loss` and
/// `roc_auc` (one class against the rest, macro) of `classes`-class
/// `probabilities` (row by row) against class-index `labels`, as
/// scikit-learn's. Each row's predicted class is its most probable.
pub fn multiclass(classes: usize, probabilities: &[f64], labels: &[f64]) -> Vec<Option<f64>> {
    let k = classes;
    let mut confusion = vec![0.0; k * k];
    let mut log_loss = 0.0;
    for (row, y) in probabilities.chunks(k).zip(labels) {
        let y = *y as usize;
        confusion[y * k + argmax(row)] += 1.0;
        log_loss -= row[y].clamp(f64::EPSILON, 1.0 - f64::EPSILON).ln();
    }
    let aucs: Option<Vec<f64>> = (0..k)
        .map(|c| {
            let scores: Vec<f64> = probabilities.chunks(k).map(|row| row[c]).collect();
            let ones: Vec<f64> = labels
                .iter()
                .map(|y| f64::from(u8::from(*y as usize == c)))
                .collect();
            roc_auc(&scores, &ones)
        })
        .collect();
    let auc = aucs.map(|a| a.iter().sum::<f64>() / k as f64);
    multiclass_of_confusion(k, &confusion, log_loss, auc)
}

/// The multiclass metrics from the confusion matrix (`confusion[true · k +
/// predicted]` rows), the summed log-loss and the macro AUC. Macro means are
/// over the classes that are a label or a prediction somewhere, as
/// scikit-learn's; a class's precision, recall or F1 is 0 when undefined.
pub fn multiclass_of_confusion(
    classes: usize,
    confusion: &[f64],
    log_loss: f64,
    roc_auc: Option<f64>,
) -> Vec<Option<f64>> {
    let k = classes;
    let ratio = |num: f64, den: f64| if den == 0.0 { 0.0 } else { num / den };
    let rows: f64 = confusion.iter().sum();
    let correct: f64 = (0..k).map(|c| confusion[c * k + c]).sum();
    let (mut precision, mut recall, mut f1, mut seen) = (0.0, 0.0, 0.0, 0.0);
    for c in 0..k {
        let tp = confusion[c * k + c];
        let actual: f64 = confusion[c * k..(c + 1) * k].iter().sum();
        let predicted: f64 = (0..k).map(|t| confusion[t * k + c]).sum();
        if actual + predicted == 0.0 {
            continue;
        }
        seen += 1.0;
        precision += ratio(tp, predicted);
        recall += ratio(tp, actual);
        f1 += ratio(2.0 * tp, predicted + actual);
    }
    vec![
        Some(correct / rows),
        Some(ratio(precision, seen)),
        Some(ratio(recall, seen)),
        Some(ratio(f1, seen)),
        Some(log_loss / rows),
        roc_auc,
    ]
}

/// The AUC of `scores` for binary `labels` (1 = positive), ties averaged.
pub fn roc_auc(scores: &[f64], labels: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels.iter().filter(|&&l| l == 1.0).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let rank = (i + j + 2) as f64 / 2.0;
        rank_sum += rank * order[i..=j].iter().filter(|&&k| labels[k] == 1.0).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_metrics_match_their_closed_forms() {
        let m = regression(&[1.0, 2.0, 4.0], &[1.0, 3.0, 5.0]);
        // Errors 0, 1, 1; labels' mean 3, total sum of squares 8.
        assert_eq!(m[0], Some((2.0f64 / 3.0).sqrt()));
        assert_eq!(m[1], Some(2.0 / 3.0));
        assert_eq!(m[2], Some(1.0 - 2.0 / 8.0));
    }

    #[test]
    fn classification_metrics_match_their_closed_forms() {
        let m = classification(
            &[1.0, 0.0, 1.0, 0.0],
            &[0.9, 0.2, 0.6, 0.4],
            &[1.0, 0.0, 0.0, 1.0],
        );
        assert_eq!(m[0], Some(0.5));
        assert_eq!(m[1], Some(0.5));
        assert_eq!(m[2], Some(0.5));
        assert_eq!(m[3], Some(0.5));
        let log_loss = -(0.9f64.ln() + 0.8f64.ln() + 0.4f64.ln() + 0.4f64.ln()) / 4.0;
        assert!((m[4].unwrap() - log_loss).abs() < 1e-15);
        // Positives 0.9, 0.4; negatives 0.2, 0.6: 3 of 4 pairs ordered.
        assert_eq!(m[5], Some(0.75));
    }

    #[test]
    fn multiclass_metrics_match_their_closed_forms() {
        // Rows: true 0 → 0, true 1 → 2, true 2 → 2, true 2 → 1.
        let p = [
            0.7, 0.2, 0.1, //
            0.1, 0.3, 0.6, //
            0.2, 0.2, 0.6, //
            0.1, 0.5, 0.4,
        ];
        let m = multiclass(3, &p, &[0.0, 1.0, 2.0, 2.0]);
        assert_eq!(m[0], Some(0.5));
        // Precision: 1, 0, 1/2; recall: 1, 0, 1/2; F1: 1, 0, 1/2.
        assert_eq!(m[1], Some(0.5));
        assert_eq!(m[2], Some(0.5));
        assert_eq!(m[3], Some(0.5));
        let log_loss = -(0.7f64.ln() + 0.3f64.ln() + 0.6f64.ln() + 0.4f64.ln()) / 4.0;
        assert!((m[4].unwrap() - log_loss).abs() < 1e-15);
        // Class 0: 0.7 above all 3 others; class 1: 0.3 above 0.2 and 0.2, below 0.5;
        // class 2: (0.6, 0.4) against (0.1, 0.6): 1 + 0.5 + 1 + 0 of 4.
        let auc = (1.0 + 2.0 / 3.0 + 2.5 / 4.0) / 3.0;
        assert!((m[5].unwrap() - auc).abs() < 1e-15);
    }

    #[test]
    fn roc_auc_matches_hand_computed_values() {
        // scikit-learn: roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0]),
            Some(0.75)
        );
        // A tie between a positive and a negative counts half.
        assert_eq!(roc_auc(&[0.5, 0.5], &[0.0, 1.0]), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.2], &[1.0, 1.0]), None);
    }
}
