//! What the driver and an executor say to each other while growing trees on
//! the executor's kept rows: one Flight action whose JSON body names the
//! call, and an answer in JSON (small ones) or little-endian binary
//! (histograms, samples, margins: exact both ways).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use datafusion::common::{DataFusionError, Result};
use ember_ml_ops::kernels::histogram::{GradPair, GradScale};
use ember_ml_ops::models::trees::{
    Apply, GradientSpec, Margins, NodeSplit, RowSample, Tree, TreeBinning,
};
use serde::{Deserialize, Serialize};

/// Action: one call on a training's tree rows.
pub const TREE: &str = "ember.tree";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeRequest {
    pub training: String,
    pub partitions: Vec<u32>,
    pub call: TreeCall,
}

/// The calls, as [`ember_ml_ops::models::trees::RowHolder`] names them, and
/// the two that make an executor's shard from its kept rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TreeCall {
    /// Per feature, the values of the rows whose hash is below `fraction`.
    Sample {
        binning: TreeBinning,
        fraction: f64,
    },
    /// Bin the kept rows by `binning`'s cuts and hold them for trees.
    Init {
        binning: TreeBinning,
    },
    LabelStats {
        classes: usize,
    },
    LabelSum {
        exponent: i32,
    },
    Start {
        bases: Vec<f64>,
    },
    Gradients {
        spec: GradientSpec,
    },
    Root {
        output: usize,
        scale: GradScale,
        sample: RowSample,
        histogram: bool,
    },
    Split {
        splits: Vec<NodeSplit>,
        histograms: bool,
    },
    Finish {
        tree: Tree,
        output: usize,
        apply: Apply,
    },
    Margins,
}

/// A split's answer from one executor: which child it built, and that
/// child's histogram (the driver has the parent's: the other is the rest).
pub type BuiltChild = Option<(bool, Vec<GradPair>)>;

fn put_hist(out: &mut BytesMut, hist: &[GradPair]) {
    out.put_u32_le(hist.len() as u32);
    for [g, h] in hist {
        out.put_i64_le(*g);
        out.put_i64_le(*h);
    }
}

fn get_hist(body: &mut &[u8]) -> Result<Vec<GradPair>> {
    let slots = get_u32(body)? as usize;
    need(body, slots * 16)?;
    Ok((0..slots)
        .map(|_| [body.get_i64_le(), body.get_i64_le()])
        .collect())
}

/// `[features u32]`, then each feature's `[count u32][count × f64]`.
pub fn encode_samples(samples: &[Vec<f64>]) -> Bytes {
    let values: usize = samples.iter().map(Vec::len).sum();
    let mut out = BytesMut::with_capacity(4 + 4 * samples.len() + 8 * values);
    out.put_u32_le(samples.len() as u32);
    for sample in samples {
        out.put_u32_le(sample.len() as u32);
        sample.iter().for_each(|v| out.put_f64_le(*v));
    }
    out.freeze()
}

pub fn decode_samples(mut body: &[u8]) -> Result<Vec<Vec<f64>>> {
    let features = get_u32(&mut body)?;
    (0..features).map(|_| get_floats(&mut body)).collect()
}

/// `[g i64][h i64][has histogram u8]` then the histogram.
pub fn encode_root(sum: GradPair, hist: Option<&[GradPair]>) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i64_le(sum[0]);
    out.put_i64_le(sum[1]);
    out.put_u8(u8::from(hist.is_some()));
    if let Some(hist) = hist {
        put_hist(&mut out, hist);
    }
    out.freeze()
}

pub fn decode_root(mut body: &[u8]) -> Result<(GradPair, Option<Vec<GradPair>>)> {
    need(body, 17)?;
    let sum = [body.get_i64_le(), body.get_i64_le()];
    let hist = match body.get_u8() {
        0 => None,
        _ => Some(get_hist(&mut body)?),
    };
    Ok((sum, hist))
}

/// Per split `[0]`, or `[1][left built u8]` and the built child's histogram.
pub fn encode_split(children: &[BuiltChild]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u32_le(children.len() as u32);
    for child in children {
        match child {
            None => out.put_u8(0),
            Some((left_built, hist)) => {
                out.put_u8(1);
                out.put_u8(u8::from(*left_built));
                put_hist(&mut out, hist);
            }
        }
    }
    out.freeze()
}

pub fn decode_split(mut body: &[u8]) -> Result<Vec<BuiltChild>> {
    let count = get_u32(&mut body)?;
    (0..count)
        .map(|_| {
            need(body, 1)?;
            match body.get_u8() {
                0 => Ok(None),
                _ => {
                    need(body, 1)?;
                    let left_built = body.get_u8() == 1;
                    Ok(Some((left_built, get_hist(&mut body)?)))
                }
            }
        })
        .collect()
}

/// `[rows u32][outputs u32]`, the keys, the labels, then the margins.
pub fn encode_margins(margins: &Margins) -> Bytes {
    let rows = margins.keys.len();
    let outputs = margins.margins.len() / rows.max(1);
    let mut out = BytesMut::with_capacity(8 + rows * 16 + margins.margins.len() * 8);
    out.put_u32_le(rows as u32);
    out.put_u32_le(outputs as u32);
    margins.keys.iter().for_each(|k| out.put_u64_le(*k));
    margins.labels.iter().for_each(|y| out.put_f64_le(*y));
    margins.margins.iter().for_each(|m| out.put_f64_le(*m));
    out.freeze()
}

pub fn decode_margins(mut body: &[u8]) -> Result<Margins> {
    let rows = get_u32(&mut body)? as usize;
    let outputs = get_u32(&mut body)? as usize;
    need(body, rows * 16 + rows * outputs * 8)?;
    Ok(Margins {
        keys: (0..rows).map(|_| body.get_u64_le()).collect(),
        labels: (0..rows).map(|_| body.get_f64_le()).collect(),
        margins: (0..rows * outputs).map(|_| body.get_f64_le()).collect(),
    })
}

fn get_u32(body: &mut &[u8]) -> Result<u32> {
    need(body, 4)?;
    Ok(body.get_u32_le())
}

fn get_floats(body: &mut &[u8]) -> Result<Vec<f64>> {
    let count = get_u32(body)? as usize;
    need(body, count * 8)?;
    Ok((0..count).map(|_| body.get_f64_le()).collect())
}

fn need(body: &[u8], bytes: usize) -> Result<()> {
    if body.remaining() < bytes {
        return Err(DataFusionError::Execution(
            "a tree training answer was cut short".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_answers_round_trip_exactly() {
        let samples = vec![vec![0.1 + 0.2, -0.0, f64::MAX], vec![]];
        assert_eq!(decode_samples(&encode_samples(&samples)).unwrap(), samples);
        let hist = vec![[i64::MIN, 3], [-7, i64::MAX]];
        let root = encode_root([5, -6], Some(&hist));
        assert_eq!(decode_root(&root).unwrap(), ([5, -6], Some(hist.clone())));
        assert!(decode_root(&root[..root.len() - 1]).is_err());
        let children = vec![None, Some((false, hist.clone())), Some((true, vec![]))];
        assert_eq!(decode_split(&encode_split(&children)).unwrap(), children);
        let margins = Margins {
            keys: vec![3, 1],
            labels: vec![1.5, -2.0],
            margins: vec![0.25, 0.5, 0.75, 1.0],
        };
        assert_eq!(decode_margins(&encode_margins(&margins)).unwrap(), margins);
    }
}
