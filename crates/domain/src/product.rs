//! A catalog product with its OCOP proof: where and by whom it is made, its rating and group,
//! and the documents that prove origin and quality. A product is shown on screen with exactly
//! this proof, and admitted to a night on it ([`crate::admission`]).

use serde::{Deserialize, Serialize};

use crate::admission::Document;
use crate::ids::{ProductId, SellerId};
use crate::money::Dong;
use crate::ocop::{ProductGroup, Stars};

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
    pub documents: Vec<Document>,
}
