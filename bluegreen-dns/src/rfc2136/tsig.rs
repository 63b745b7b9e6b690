//! TSIG keys (RFC 8945): a shared secret that signs each UPDATE message.

use std::fmt;

use bluegreen_core::{Error, Result};
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm as HickoryAlgorithm;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::rr::Name;

/// The HMAC algorithms a [`TsigKey`] can use (serde: by their usual names, `hmac-sha256`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[non_exhaustive]
pub enum TsigAlgorithm {
    /// `hmac-sha256` (the usual choice; `knotc` / `tsig-keygen` default).
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// `hmac-sha384`.
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    /// `hmac-sha512`.
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

impl TsigAlgorithm {
    fn to_hickory(self) -> HickoryAlgorithm {
        match self {
            Self::HmacSha256 => HickoryAlgorithm::HmacSha256,
            Self::HmacSha384 => HickoryAlgorithm::HmacSha384,
            Self::HmacSha512 => HickoryAlgorithm::HmacSha512,
        }
    }
}

/// A named TSIG key: the key name and secret must match the server's configuration.
///
/// The secret is never printed (`Debug` shows the name and algorithm only).
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    name: String,
    algorithm: TsigAlgorithm,
    secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey").field("name", &self.name).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl TsigKey {
    /// A key from its name, algorithm and base64 secret (as in a knot or BIND `key` block).
    ///
    /// # Errors
    /// [`Error::Invalid`] when the name is not a domain name or the secret is not base64.
    pub fn new(name: &str, algorithm: TsigAlgorithm, secret_base64: &str) -> Result<Self> {
        Name::from_ascii(name).map_err(|e| Error::invalid("tsig.name", format!("{name:?} is not a key name: {e}")))?;
        let secret = data_encoding::BASE64
            .decode(secret_base64.trim().as_bytes())
            .map_err(|e| Error::invalid("tsig.secret", format!("the secret of key {name} is not base64: {e}")))?;
        if secret.is_empty() {
            return Err(Error::invalid("tsig.secret", format!("the secret of key {name} is empty")));
        }
        Ok(Self { name: name.to_owned(), algorithm, secret })
    }

    /// An `hmac-sha256` key.
    ///
    /// # Errors
    /// As [`TsigKey::new`].
    pub fn hmac_sha256(name: &str, secret_base64: &str) -> Result<Self> {
        Self::new(name, TsigAlgorithm::HmacSha256, secret_base64)
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> TsigAlgorithm {
        self.algorithm
    }

    pub(crate) fn signer(&self) -> Result<TSigner> {
        let name = Name::from_ascii(&self.name)
            .map_err(|e| Error::invalid("tsig.name", format!("{:?} is not a key name: {e}", self.name)))?;
        TSigner::new(self.secret.clone(), self.algorithm.to_hickory(), name, 300)
            .map_err(|e| Error::invalid("tsig.algorithm", format!("{:?} cannot sign: {e}", self.algorithm)))
    }
}
