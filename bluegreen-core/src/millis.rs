//! Measured durations in JSON (event times, step and gate times, a deploy's elapsed time):
//! human text rounded down to whole milliseconds (`205ms`, `1m 3s 20ms`), where humantime alone
//! writes `14ms 40us 133ns`. Read back by humantime, which also reads the unrounded form of
//! records written before.
//!
//! Used as `#[serde(with = "crate::millis")]`.

use std::time::Duration;

use serde::{Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    let whole = Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
    humantime_serde::serialize(&whole, serializer)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    humantime_serde::deserialize(deserializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Timed(#[serde(with = "super")] Duration);

    #[test]
    fn whole_milliseconds_out_and_any_humantime_in() {
        let text = serde_json::to_string(&Timed(Duration::new(63, 20_040_133))).unwrap();
        assert_eq!(text, "\"1m 3s 20ms\"");
        assert_eq!(serde_json::to_string(&Timed(Duration::from_nanos(14_040_133))).unwrap(), "\"14ms\"");
        let old: Timed = serde_json::from_str("\"14ms 40us 133ns\"").unwrap();
        assert_eq!(old, Timed(Duration::from_nanos(14_040_133)));
    }
}
