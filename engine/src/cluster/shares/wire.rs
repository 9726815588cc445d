//! What the driver and an executor's share service say to each other: Flight
//! actions whose bodies are a JSON request and a binary answer (numbers as
//! little-endian `f64`, exact both ways).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use datafusion::common::{DataFusionError, Result};
use ember_ml_ops::models::TrainRoundFunc;
use serde::{Deserialize, Serialize};

/// Action: one round over some of a training's partitions.
pub const ROUND: &str = "ember.round";
/// Action: the rows with the smallest seeded hash.
pub const SAMPLE: &str = "ember.sample";
/// Action: free a training's shares.
pub const RELEASE: &str = "ember.release";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundRequest {
    pub training: String,
    pub partitions: Vec<u32>,
    pub function: TrainRoundFunc,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleRequest {
    pub training: String,
    pub partitions: Vec<u32>,
    pub seed: u64,
    pub columns: Vec<String>,
    pub n: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub training: String,
}

pub fn to_json(value: &impl Serialize) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| DataFusionError::External(e.into()))
}

pub fn from_json<T: for<'a> Deserialize<'a>>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        DataFusionError::Execution(format!("a training request could not be read: {e}"))
    })
}

/// What an executor says of its work ahead of every round and sample answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkDone {
    /// Seconds the work took on the executor.
    pub seconds: f64,
    /// Rows whose kernels ran on the CPU, and on a GPU.
    pub cpu_rows: u64,
    pub gpu_rows: u64,
}

/// `[seconds f64][cpu_rows u64][gpu_rows u64]`, then `payload`.
pub fn with_work(work: WorkDone, payload: Bytes) -> Bytes {
    let mut out = BytesMut::with_capacity(24 + payload.len());
    out.put_f64_le(work.seconds);
    out.put_u64_le(work.cpu_rows);
    out.put_u64_le(work.gpu_rows);
    out.put(payload);
    out.freeze()
}

/// The work an answer reports, and the rest of the answer.
pub fn split_work(mut body: &[u8]) -> Result<(WorkDone, &[u8])> {
    if body.remaining() < 24 {
        return Err(truncated());
    }
    let work = WorkDone {
        seconds: body.get_f64_le(),
        cpu_rows: body.get_u64_le(),
        gpu_rows: body.get_u64_le(),
    };
    Ok((work, body))
}

/// One partition's statistics for a round.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionStats {
    pub partition: u32,
    pub stats: Vec<f64>,
}

/// `[partition u32][count u32][count × f64]` for each partition.
pub fn encode_stats(parts: &[PartitionStats]) -> Bytes {
    let mut out = BytesMut::new();
    for part in parts {
        out.put_u32_le(part.partition);
        put_floats(&mut out, &part.stats);
    }
    out.freeze()
}

pub fn decode_stats(mut body: &[u8]) -> Result<Vec<PartitionStats>> {
    let mut parts = Vec::new();
    while body.has_remaining() {
        let partition = get_u32(&mut body)?;
        let stats = get_floats(&mut body)?;
        parts.push(PartitionStats { partition, stats });
    }
    Ok(parts)
}

/// A sampled row: its hash and its flattened values.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledRow {
    pub hash: f64,
    pub values: Vec<f64>,
}

/// `[hash f64][count u32][count × f64]` for each row.
pub fn encode_rows(rows: &[SampledRow]) -> Bytes {
    let mut out = BytesMut::new();
    for row in rows {
        out.put_f64_le(row.hash);
        put_floats(&mut out, &row.values);
    }
    out.freeze()
}

pub fn decode_rows(mut body: &[u8]) -> Result<Vec<SampledRow>> {
    let mut rows = Vec::new();
    while body.has_remaining() {
        if body.remaining() < 8 {
            return Err(truncated());
        }
        let hash = body.get_f64_le();
        let values = get_floats(&mut body)?;
        rows.push(SampledRow { hash, values });
    }
    Ok(rows)
}

fn put_floats(out: &mut BytesMut, values: &[f64]) {
    out.put_u32_le(values.len() as u32);
    for v in values {
        out.put_f64_le(*v);
    }
}

fn get_u32(body: &mut &[u8]) -> Result<u32> {
    if body.remaining() < 4 {
        return Err(truncated());
    }
    Ok(body.get_u32_le())
}

fn get_floats(body: &mut &[u8]) -> Result<Vec<f64>> {
    let count = get_u32(body)? as usize;
    if body.remaining() < count * 8 {
        return Err(truncated());
    }
    Ok((0..count).map(|_| body.get_f64_le()).collect())
}

fn truncated() -> DataFusionError {
    DataFusionError::Execution("a training answer was cut short".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_and_rows_round_trip_exactly() {
        let parts = vec![
            PartitionStats {
                partition: 3,
                stats: vec![0.1 + 0.2, f64::MIN_POSITIVE, -1e300],
            },
            PartitionStats {
                partition: 0,
                stats: vec![],
            },
        ];
        assert_eq!(decode_stats(&encode_stats(&parts)).unwrap(), parts);
        let rows = vec![SampledRow {
            hash: 0.25,
            values: vec![1.0 / 3.0, 7.0],
        }];
        assert_eq!(decode_rows(&encode_rows(&rows)).unwrap(), rows);
        let cut = encode_stats(&parts);
        assert!(decode_stats(&cut[..cut.len() - 1]).is_err());
        let work = WorkDone {
            seconds: 0.125,
            cpu_rows: 7,
            gpu_rows: 1 << 40,
        };
        let answer = with_work(work, encode_stats(&parts));
        let (read, rest) = split_work(&answer).unwrap();
        assert_eq!(read, work);
        assert_eq!(decode_stats(rest).unwrap(), parts);
        assert!(split_work(&answer[..23]).is_err());
    }
}
