//! The backend-per-pool layout's split: a map of 100 entries, keys `0` … `99`, each naming a
//! pool's backend. The frontend draws `rand(100)` per request and looks it up
//! (`use_backend %[rand(100),map_int(<map>)]`), so a pool with `p` entries gets `p` % of the
//! requests, on average.
//!
//! A split is written as a new version of the whole map (`prepare map`, `add map @<ver>` with
//! the 100 entries as one payload, `commit map`): HAProxy switches to the new version
//! atomically, so no request ever sees a map that is half old, half new, and every version
//! names only existing pool backends. It is read back with `show map`.

use std::collections::BTreeMap;

use bluegreen_core::{PoolName, Result, Split};

use super::error::HaproxyError;
use super::router::{HaproxyRouter, Layout};

/// Entries of a split map: keys `0` … `ENTRIES - 1`, one percent each.
pub(crate) const ENTRIES: u32 = 100;

/// The entries of `show map <map>` (`<ref> <key> <value>` per line), as `(key, value)`.
pub(crate) fn parse_show_map(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (_reference, key) = (words.next()?, words.next()?);
            Some((key.to_owned(), words.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// The split `entries` make over `backends` (pool → backend): pool → number of entries.
/// Refuses, naming the map, entries whose key is not `0` … `99` or comes twice, keys that are
/// missing (their requests would go to the frontend's `default_backend`), and values that
/// name no pool's backend (their traffic could not be accounted for).
pub(crate) fn split_of(
    map: &str,
    backends: &BTreeMap<PoolName, String>,
    entries: &[(String, String)],
) -> Result<BTreeMap<PoolName, u32>, String> {
    let mut seen = vec![false; ENTRIES as usize];
    let mut counts: BTreeMap<PoolName, u32> = backends.keys().map(|p| (p.clone(), 0)).collect();
    let mut strangers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let known = || backends.iter().map(|(pool, backend)| format!("{pool}: {backend}")).collect::<Vec<_>>().join(", ");
    for (key, value) in entries {
        let index = key.parse::<u32>().ok().filter(|k| *k < ENTRIES).map(|k| k as usize);
        let Some(index) = index else {
            return Err(format!(
                "split map {map} has an entry {key:?} → {value}: its keys must be the numbers 0 … 99 that \
                 rand(100) draws"
            ));
        };
        if std::mem::replace(&mut seen[index], true) {
            return Err(format!("split map {map} has two entries for key {key}: each of 0 … 99 must appear once"));
        }
        match backends.iter().find(|(_, backend)| *backend == value) {
            Some((pool, _)) => *counts.entry(pool.clone()).or_default() += 1,
            None => strangers.entry(value.as_str()).or_default().push(key.as_str()),
        }
    }
    if let Some((value, keys)) = strangers.into_iter().next() {
        return Err(format!(
            "split map {map} sends {}% of the requests (keys {}) to {value:?}, which is none of the pools' backends \
             ({}): their traffic cannot be accounted for; point those entries at a pool's backend",
            keys.len(),
            list(&keys),
            known()
        ));
    }
    let missing: Vec<String> =
        seen.iter().enumerate().filter(|(_, seen)| !**seen).map(|(key, _)| key.to_string()).collect();
    if !missing.is_empty() {
        return Err(format!(
            "split map {map} has no entry for {} of the keys 0 … 99 ({}): requests drawing them go to the \
             frontend's default_backend; give every key one entry naming a pool's backend ({})",
            missing.len(),
            list(&missing),
            known()
        ));
    }
    Ok(counts)
}

/// The first keys of a list, for messages.
fn list<S: AsRef<str>>(keys: &[S]) -> String {
    let shown: Vec<&str> = keys.iter().take(8).map(AsRef::as_ref).collect();
    if keys.len() > shown.len() {
        format!("{}, …", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The entries that serve `wanted` (pool → percent, summing to 100), in `pools` order: the
/// first pool gets keys `0 … p₀-1`, the next the following ones, and so on.
pub(crate) fn entries_for(
    pools: &[PoolName],
    backends: &BTreeMap<PoolName, String>,
    wanted: &BTreeMap<PoolName, u32>,
) -> Vec<(u32, String)> {
    let mut entries = Vec::with_capacity(ENTRIES as usize);
    for pool in pools {
        let (Some(backend), Some(count)) = (backends.get(pool), wanted.get(pool)) else { continue };
        for _ in 0..*count {
            let key = u32::try_from(entries.len()).unwrap_or(ENTRIES);
            entries.push((key, backend.clone()));
        }
    }
    entries
}

/// The contents of a split map file serving `split` (pool → percent) over `backends`, for
/// haproxy.cfg's first start: `key backend` per line, with a comment.
pub(crate) fn file_for(
    pools: &[PoolName],
    backends: &BTreeMap<PoolName, String>,
    wanted: &BTreeMap<PoolName, u32>,
) -> String {
    let mut text = String::from(
        "# bluegreen split map: rand(100) -> backend; one entry per key 0..99, each 1% of the requests.\n",
    );
    for (key, backend) in entries_for(pools, backends, wanted) {
        text.push_str(&format!("{key} {backend}\n"));
    }
    text
}

/// Writes `text` to the map's file: a temporary file beside it, renamed over it.
async fn save_file(map: &str, text: &str) -> Result<()> {
    let temporary = format!("{map}.bluegreen-tmp");
    let written = async {
        tokio::fs::write(&temporary, text).await?;
        tokio::fs::rename(&temporary, map).await
    };
    written.await.map_err(|e| bluegreen_core::Error::Backend {
        backend: "haproxy".into(),
        message: format!(
            "HAProxy serves the new split, but saving it to the map file {map} failed ({e}): a reload would bring back \
             the split the file has"
        ),
        retryable: false,
        source: Some(Box::new(e)),
    })
}

impl HaproxyRouter {
    /// The contents of a split map file that serves `split`, for the backend-per-pool layout's
    /// first start of HAProxy (the map must exist when haproxy.cfg is loaded): `<key>
    /// <backend>` per line, keys 0 … 99, the first pool's entries first.
    ///
    /// ```
    /// use bluegreen_core::Split;
    /// use bluegreen_vm::{HaproxyEndpoint, HaproxyRouter};
    /// let router = HaproxyRouter::builder(HaproxyEndpoint::unix("/run/haproxy/admin.sock"), "web")
    ///     .backend_per_pool("/etc/haproxy/bluegreen-split.map")
    ///     .build()
    ///     .unwrap();
    /// let file = router.split_map_file(&Split::all_to(&"blue".into())).unwrap();
    /// assert!(file.contains("\n0 web_blue\n") && file.ends_with("\n99 web_blue\n"));
    /// ```
    ///
    /// # Errors
    /// [`Error::Invalid`](bluegreen_core::Error::Invalid) for a split that does not sum to 100
    /// or names a pool the router does not have, or a router of the default layout (`layout`).
    pub fn split_map_file(&self, split: &Split) -> Result<String> {
        split.validate("split")?;
        let Layout::PerPool { backends, .. } = &self.inner.layout else {
            return Err(bluegreen_core::Error::invalid(
                "layout",
                "the router drives one backend, whose split is server weights: it has no split map",
            ));
        };
        for (pool, _) in split.iter() {
            if !self.inner.pools.contains(pool) {
                return Err(bluegreen_core::Error::invalid("split", format!("pool {pool} is not one of the router's")));
            }
        }
        let wanted: BTreeMap<PoolName, u32> = self.inner.pools.iter().map(|p| (p.clone(), split.weight(p))).collect();
        Ok(file_for(&self.inner.pools, backends, &wanted))
    }

    /// The split map's entries as HAProxy serves them (`show map`). `NotFound` when HAProxy
    /// has no such map, naming the maps it has.
    pub(super) async fn map_entries(&self, map: &str) -> Result<Vec<(String, String)>, HaproxyError> {
        let answer = self.inner.cli.run(&format!("show map {map}")).await?;
        if answer.starts_with("Unknown map identifier") {
            let list = self.inner.cli.run("show map").await.unwrap_or_default();
            let known: Vec<String> =
                list.lines().filter_map(|l| Some(l.split_once('(')?.1.split_once(')')?.0.to_owned())).collect();
            return Err(HaproxyError::UnknownMap {
                map: map.to_owned(),
                known: if known.is_empty() { "none".to_owned() } else { known.join(", ") },
            });
        }
        Ok(parse_show_map(&answer))
    }

    /// The split the map serves: pool → percent. `Drift` when it has entries that are not
    /// one per key `0` … `99` naming a pool's backend.
    pub(super) async fn map_split(
        &self,
        map: &str,
        backends: &BTreeMap<PoolName, String>,
    ) -> Result<BTreeMap<PoolName, u32>, HaproxyError> {
        let entries = self.map_entries(map).await?;
        split_of(map, backends, &entries).map_err(|what| HaproxyError::Drift { what })
    }

    /// [`Router::set_split`](bluegreen_core::Router::set_split) in the backend-per-pool layout.
    pub(super) async fn apply_map_split(
        &self,
        split: &Split,
        map: &str,
        backends: &BTreeMap<PoolName, String>,
    ) -> Result<()> {
        split.validate("split")?;
        for (pool, _) in split.iter() {
            self.check_pool(pool)?;
        }
        let wanted: BTreeMap<PoolName, u32> = self.inner.pools.iter().map(|p| (p.clone(), split.weight(p))).collect();
        let _writes = self.inner.writes.lock().await;
        // Everything is checked before the first write: the map as it is, and a ready server
        // with weight in every pool that is to get traffic.
        let current = self.map_split(map, backends).await?;
        for (pool, percent) in wanted.iter().filter(|(_, p)| **p > 0) {
            let backend = &backends[pool];
            let servers = self.servers_in(backend).await?;
            if !servers.iter().any(|s| s.ready() && s.uweight > 0) {
                return Err(HaproxyError::Drift {
                    what: format!(
                        "pool {pool} has no ready server with weight in backend {backend}, so it cannot take \
                         {percent}% of the traffic"
                    ),
                }
                .into());
            }
        }
        if current != wanted {
            self.write_map(map, &entries_for(&self.inner.pools, backends, &wanted)).await?;
            let observed = self.map_split(map, backends).await?;
            if observed != wanted {
                return Err(bluegreen_core::Error::ReadBackMismatch {
                    what: format!("split map {map}"),
                    expected: Self::to_split(Some(&wanted)).to_string(),
                    observed: Self::to_split(Some(&observed)).to_string(),
                });
            }
        }
        if self.inner.save_map {
            save_file(map, &file_for(&self.inner.pools, backends, &wanted)).await?;
        }
        Ok(())
    }

    /// Replaces the map's entries at once: a new version filled with `entries`, committed.
    async fn write_map(&self, map: &str, entries: &[(u32, String)]) -> Result<(), HaproxyError> {
        let command = format!("prepare map {map}");
        let answer = self.inner.cli.run(&command).await?;
        let version = answer
            .trim()
            .strip_prefix("New version created:")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .ok_or_else(|| HaproxyError::Answer { command, answer: answer.trim().to_owned() })?;
        let mut payload = format!("add map @{version} {map} <<\n");
        for (key, backend) in entries {
            payload.push_str(&format!("{key} {backend}\n"));
        }
        // The CLI ends a payload at an empty line: `run` adds the newline that makes it.
        let answer = self.inner.cli.run(&payload).await?;
        if !answer.trim().is_empty() {
            return Err(HaproxyError::Answer {
                command: format!("add map @{version} {map} <<{} entries>>", entries.len()),
                answer: answer.trim().to_owned(),
            });
        }
        self.quiet(format!("commit map @{version} {map}")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends() -> BTreeMap<PoolName, String> {
        BTreeMap::from([("blue".into(), "web_blue".into()), ("green".into(), "web_green".into())])
    }

    fn pools() -> Vec<PoolName> {
        vec!["blue".into(), "green".into()]
    }

    fn entries(green: u32) -> Vec<(String, String)> {
        let wanted = BTreeMap::from([("blue".into(), 100 - green), ("green".into(), green)]);
        entries_for(&pools(), &backends(), &wanted).into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    #[test]
    fn every_split_reads_back() {
        for green in 0..=100 {
            let read = split_of("m", &backends(), &entries(green)).unwrap();
            assert_eq!(read[&PoolName::from("green")], green);
            assert_eq!(read[&PoolName::from("blue")], 100 - green);
        }
    }

    #[test]
    fn show_map_is_parsed() {
        let text = "0x560c4cbc0d10 0 web_blue\n0x560c4cbc0da0 1 web_green\n\n";
        assert_eq!(
            parse_show_map(text),
            [("0".to_owned(), "web_blue".to_owned()), ("1".to_owned(), "web_green".to_owned())]
        );
    }

    #[test]
    fn a_bad_map_is_refused_naming_what() {
        let mut unknown = entries(10);
        unknown[3].1 = "web_old".into();
        unknown[4].1 = "web_old".into();
        let e = split_of("/m.map", &backends(), &unknown).unwrap_err();
        assert!(e.contains("sends 2% of the requests (keys 3, 4) to \"web_old\""), "{e}");
        let mut missing = entries(10);
        missing.retain(|(k, _)| k != "42");
        let e = split_of("/m.map", &backends(), &missing).unwrap_err();
        assert!(e.contains("no entry for 1 of the keys 0 … 99 (42)"), "{e}");
        let mut twice = entries(10);
        twice.push(("7".into(), "web_blue".into()));
        assert!(split_of("/m.map", &backends(), &twice).unwrap_err().contains("two entries for key 7"));
        let mut range = entries(10);
        range[0].0 = "100".into();
        assert!(split_of("/m.map", &backends(), &range).unwrap_err().contains("\"100\""));
    }

    #[test]
    fn a_file_serves_its_split() {
        let wanted = BTreeMap::from([("blue".into(), 100), ("green".into(), 0)]);
        let text = file_for(&pools(), &backends(), &wanted);
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 100);
        assert!(text.contains("\n0 web_blue\n") && text.ends_with("99 web_blue\n"));
    }
}
