//! The split as server weights: a pool's share is the sum of its ready servers' weights over
//! the sum of all ready servers' weights in the backend.
//!
//! Writing a split of `p` percent for a pool with `n` ready servers gives the pool a total
//! weight of `p × k` spread as evenly as integers allow over its `n` servers (the first ones,
//! in name order, get one more). `k` is the same for every pool, as large as HAProxy's
//! per-server maximum of 256 allows, so the ratio between pools is exactly the ratio of their
//! percentages and reads back as written, at 1 % granularity, whatever the pool sizes.

use std::collections::BTreeMap;

use bluegreen_core::{PoolName, Split};

/// HAProxy's largest server weight.
pub(crate) const MAX_WEIGHT: u32 = 256;

/// One pool as the spread sees it.
#[derive(Debug, Clone)]
pub(crate) struct PoolShare<'a> {
    pub(crate) pool: &'a str,
    pub(crate) percent: u32,
    /// The ready servers of the pool, in name order.
    pub(crate) ready: Vec<&'a str>,
}

/// The weight of every ready server for `shares` (percentages summing to 100). Fails, naming
/// the pool, when a pool with a share has no ready server.
pub(crate) fn spread(shares: &[PoolShare<'_>]) -> Result<BTreeMap<String, u32>, String> {
    let mut k = u32::MAX;
    for share in shares.iter().filter(|s| s.percent > 0) {
        if share.ready.is_empty() {
            return Err(format!(
                "pool {} has no ready server in the backend, so it cannot take {}% of the traffic",
                share.pool, share.percent
            ));
        }
        let n = u32::try_from(share.ready.len()).unwrap_or(u32::MAX);
        k = k.min(MAX_WEIGHT.saturating_mul(n) / share.percent);
    }
    let k = if k == u32::MAX { 0 } else { k.max(1) };
    let mut weights = BTreeMap::new();
    for share in shares {
        let total = share.percent * k;
        let n = u32::try_from(share.ready.len()).unwrap_or(u32::MAX).max(1);
        let (base, extra) = (total / n, total % n);
        for (i, server) in share.ready.iter().enumerate() {
            let one_more = u32::from((i as u32) < extra);
            weights.insert((*server).to_owned(), (base + one_more).min(MAX_WEIGHT));
        }
    }
    Ok(weights)
}

/// Percentages from pool weights, by [`Split::from_weights`] (largest-remainder rounding,
/// summing to 100, ties to the earlier pool); `None` when no ready server has any weight
/// (HAProxy then serves nothing from this backend).
pub(crate) fn pool_percents<'a>(
    weights: impl IntoIterator<Item = (&'a PoolName, u64)>,
) -> Option<BTreeMap<PoolName, u32>> {
    let split = Split::from_weights(weights.into_iter().map(|(pool, w)| (pool.clone(), w)))?;
    Some(split.iter().map(|(pool, percent)| (pool.clone(), percent)).collect())
}

/// [`pool_percents`] over pool names, as `(pool, percent)` in pool-name order.
#[cfg(test)]
fn percentages(weights: &[(&str, u64)]) -> Option<Vec<(String, u32)>> {
    let pools: Vec<(PoolName, u64)> = weights.iter().map(|(pool, w)| (PoolName::from(*pool), *w)).collect();
    let percents = pool_percents(pools.iter().map(|(pool, w)| (pool, *w)))?;
    Some(percents.into_iter().map(|(pool, percent)| (pool.to_string(), percent)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i:02}")).collect()
    }

    /// Every split of two pools of any size from 1 to 12 reads back exactly.
    #[test]
    fn every_split_reads_back_exactly() {
        for a in 1..=12 {
            for b in 1..=12 {
                let (blue, green) = (names("blue.", a), names("green.", b));
                for percent in 0..=100 {
                    let shares = [
                        PoolShare {
                            pool: "blue",
                            percent: 100 - percent,
                            ready: blue.iter().map(String::as_str).collect(),
                        },
                        PoolShare { pool: "green", percent, ready: green.iter().map(String::as_str).collect() },
                    ];
                    let weights = spread(&shares).unwrap();
                    assert!(weights.values().all(|w| *w <= MAX_WEIGHT));
                    let sum = |servers: &[String]| servers.iter().map(|s| u64::from(weights[s])).sum::<u64>();
                    let read = percentages(&[("blue", sum(&blue)), ("green", sum(&green))]).unwrap();
                    assert_eq!(
                        read,
                        vec![("blue".into(), 100 - percent), ("green".into(), percent)],
                        "{a}+{b} servers"
                    );
                    // Within a pool, weights differ by at most one.
                    for servers in [&blue, &green] {
                        let ws: Vec<u32> = servers.iter().map(|s| weights[s]).collect();
                        assert!(ws.iter().max().unwrap() - ws.iter().min().unwrap() <= 1, "{ws:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_share_without_servers_is_refused() {
        let shares = [PoolShare { pool: "green", percent: 10, ready: vec![] }];
        assert!(spread(&shares).unwrap_err().contains("pool green has no ready server"));
    }

    #[test]
    fn rounding_sums_to_100() {
        let read = percentages(&[("a", 1), ("b", 1), ("c", 1)]).unwrap();
        assert_eq!(read.iter().map(|(_, p)| p).sum::<u32>(), 100);
        assert_eq!(percentages(&[("a", 0), ("b", 0)]), None);
    }
}
