//! Money and quantities. Vietnamese đồng has no minor unit in practice, so amounts are integers.

use serde::{Deserialize, Serialize};

/// Largest unit price accepted: one billion đồng. Far above any OCOP product, low enough that a
/// quantity times a price can never overflow an `i64`.
pub const MAX_UNIT_PRICE: i64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("price must be a positive whole number of đồng, got {0}")]
    NotPositive(i64),
    #[error("price {0} is above the largest accepted unit price of {MAX_UNIT_PRICE} đồng")]
    TooLarge(i64),
    #[error("quantity must be at least 1, got {0}")]
    QuantityNotPositive(i64),
    #[error("quantity {got} is above the largest accepted quantity of {max}")]
    QuantityTooLarge { got: i64, max: u32 },
}

/// A unit price in Vietnamese đồng (VND), strictly positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Dong(i64);

impl Dong {
    pub fn parse(amount: i64) -> Result<Self, MoneyError> {
        if amount <= 0 {
            return Err(MoneyError::NotPositive(amount));
        }
        if amount > MAX_UNIT_PRICE {
            return Err(MoneyError::TooLarge(amount));
        }
        Ok(Self(amount))
    }
}

checked_number!(Dong, i64, MoneyError);

impl std::fmt::Display for Dong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // 125000 → "125.000 ₫", the way prices are written in Vietnam.
        let digits = self.0.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 4);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push('.');
            }
            out.push(c);
        }
        write!(f, "{out} ₫")
    }
}

/// A number of units in one claim: at least 1, at most the configured per-claim maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Quantity(u32);

impl Quantity {
    pub fn parse(q: i64, max: u32) -> Result<Self, MoneyError> {
        if q <= 0 {
            return Err(MoneyError::QuantityNotPositive(q));
        }
        if q > i64::from(max) {
            return Err(MoneyError::QuantityTooLarge { got: q, max });
        }
        // In range 1..=max, which fits u32.
        Ok(Self(q as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dong_bounds_and_display() {
        assert_eq!(Dong::parse(0), Err(MoneyError::NotPositive(0)));
        assert_eq!(Dong::parse(-5), Err(MoneyError::NotPositive(-5)));
        assert!(Dong::parse(MAX_UNIT_PRICE + 1).is_err());
        assert_eq!(
            Dong::parse(125_000).map(|d| d.to_string()),
            Ok("125.000 ₫".into())
        );
        assert_eq!(
            Dong::parse(1_250_000).map(|d| d.to_string()),
            Ok("1.250.000 ₫".into())
        );
        assert_eq!(Dong::parse(900).map(|d| d.to_string()), Ok("900 ₫".into()));
    }

    #[test]
    fn quantity_bounds() {
        assert!(Quantity::parse(0, 100).is_err());
        assert!(Quantity::parse(-1, 100).is_err());
        assert!(Quantity::parse(i64::MAX, 100).is_err());
        assert_eq!(Quantity::parse(100, 100).map(Quantity::get), Ok(100));
    }
}
