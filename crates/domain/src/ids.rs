//! Identifiers. Each is a newtype so a product id can never be passed where a show id is meant,
//! and each is checked once, where it enters the system.

use serde::{Deserialize, Serialize};

/// Longest identifier accepted anywhere, in bytes. Ids end up in keys, logs and every claim
/// record, so they are kept short.
pub const MAX_ID_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {MAX_ID_BYTES} bytes")]
    TooLong { kind: &'static str },
    #[error("{kind} may contain only ASCII letters, digits, '-', '_', '.' and ':'")]
    BadCharacter { kind: &'static str },
    #[error("{kind} may not start with {prefix:?}: the server uses those")]
    Reserved {
        kind: &'static str,
        prefix: &'static str,
    },
}

fn check(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong { kind });
    }
    // A closed alphabet keeps ids safe inside Redis keys, SQL, CSV and log lines alike.
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(IdError::BadCharacter { kind });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses an id, refusing empty, over-long or oddly-charactered input.
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check($kind, &s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A show (one seller's livestream inside a market night).
    ShowId,
    "show id"
);
id_type!(
    /// A recurring market (e.g. "Night Market in the Clouds", every Friday).
    MarketId,
    "market id"
);
id_type!(
    /// A catalog product.
    ProductId,
    "product id"
);
id_type!(
    /// A seller (an OCOP producer: cooperative, enterprise or household business).
    SellerId,
    "seller id"
);
id_type!(
    /// A buyer; always the subject of the viewer's token, never taken from a message body.
    BuyerId,
    "buyer id"
);
id_type!(
    /// A client-generated claim id; the idempotency key of a claim.
    ClaimId,
    "claim id"
);

/// Claim ids of promotions from a waitlist are this prefix and the entry's number. Client claim
/// ids may not start with it ([`ClaimId::parse_client`]), so a promotion's id is never taken.
pub const PROMOTED_CLAIM_PREFIX: &str = "waitlist-";

impl ClaimId {
    /// Parses a claim id a client chose: as [`ClaimId::parse`], and not in the range of ids
    /// the server gives promotions from a waitlist ([`PROMOTED_CLAIM_PREFIX`]), so a client can
    /// never take a promotion's id first.
    pub fn parse_client(s: impl Into<String>) -> Result<Self, IdError> {
        let id = Self::parse(s)?;
        if id.0.starts_with(PROMOTED_CLAIM_PREFIX) {
            return Err(IdError::Reserved {
                kind: "claim id",
                prefix: PROMOTED_CLAIM_PREFIX,
            });
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert!(ShowId::parse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").is_ok());
        assert_eq!(ShowId::parse(""), Err(IdError::Empty { kind: "show id" }));
        assert!(matches!(
            ClaimId::parse("a".repeat(65)),
            Err(IdError::TooLong { .. })
        ));
        assert!(matches!(
            BuyerId::parse("mật-ong"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            BuyerId::parse("a b"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(ClaimId::parse("waitlist-7").is_ok());
        assert!(matches!(
            ClaimId::parse_client("waitlist-7"),
            Err(IdError::Reserved { .. })
        ));
        assert!(ClaimId::parse_client("c-waitlist-7").is_ok());
    }
}
