//! OCOP ("One Commune One Product", Mỗi xã một sản phẩm) facts about a product: its star rating,
//! product group, where and by whom it is made, and the references of the documents that prove
//! origin and quality. A product is shown on screen with exactly this proof.

use serde::{Deserialize, Serialize};

use crate::ids::{ProductId, SellerId};
use crate::money::Dong;

/// Longest free-text field (names, districts, document references), in characters.
pub const MAX_TEXT_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcopError {
    #[error("OCOP stars must be 1 to 5, got {0}")]
    Stars(i64),
    #[error(
        "unknown product group {0:?}; expected food, beverages, herbs, handicrafts, fabric_garments or rural_tourism"
    )]
    Group(String),
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {MAX_TEXT_CHARS} characters")]
    TooLong { field: &'static str },
}

/// OCOP star rating. 3 is the floor for certification, 5 is national level; 1 and 2 exist in
/// the evaluation scale and are stored as given (admission rules decide what may be sold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct Stars(u8);

impl Stars {
    /// The certification floor: the lowest rating a certified OCOP product carries.
    pub const CERTIFIED: Stars = Stars(3);

    pub fn parse(n: i64) -> Result<Self, OcopError> {
        match n {
            1..=5 => Ok(Self(n as u8)),
            _ => Err(OcopError::Stars(n)),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for Stars {
    type Error = OcopError;
    fn try_from(n: i64) -> Result<Self, OcopError> {
        Self::parse(n)
    }
}

impl From<Stars> for u8 {
    fn from(s: Stars) -> u8 {
        s.0
    }
}

/// The six OCOP product groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductGroup {
    /// Thực phẩm
    Food,
    /// Đồ uống
    Beverages,
    /// Thảo dược
    Herbs,
    /// Thủ công mỹ nghệ, trang trí
    Handicrafts,
    /// Vải, may mặc
    FabricGarments,
    /// Dịch vụ du lịch nông thôn
    RuralTourism,
}

impl ProductGroup {
    pub const ALL: [ProductGroup; 6] = [
        Self::Food,
        Self::Beverages,
        Self::Herbs,
        Self::Handicrafts,
        Self::FabricGarments,
        Self::RuralTourism,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Food => "food",
            Self::Beverages => "beverages",
            Self::Herbs => "herbs",
            Self::Handicrafts => "handicrafts",
            Self::FabricGarments => "fabric_garments",
            Self::RuralTourism => "rural_tourism",
        }
    }

    pub fn parse(s: &str) -> Result<Self, OcopError> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| OcopError::Group(s.to_owned()))
    }
}

/// Trims and bounds a free-text field. Vietnamese text is kept as given (NFC from clients).
pub fn text(field: &'static str, s: &str) -> Result<String, OcopError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(OcopError::Empty { field });
    }
    if t.chars().count() > MAX_TEXT_CHARS {
        return Err(OcopError::TooLong { field });
    }
    Ok(t.to_owned())
}

/// A catalog product with its OCOP proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: ProductId,
    pub seller_id: SellerId,
    pub name: String,
    pub group: ProductGroup,
    pub stars: Stars,
    pub district: String,
    pub commune: String,
    pub producer: String,
    pub list_price: Dong,
    pub origin_document: String,
    pub quality_label: String,
    /// The documents behind the proof (OCOP certificate, origin proof, quality label) with
    /// their validity; admission to a night needs each valid on the night's date.
    #[serde(default)]
    pub documents: Vec<crate::admission::Document>,
}
