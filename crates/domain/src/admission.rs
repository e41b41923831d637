//! Admission of a product to a market night: the operator's check of OCOP documents.
//!
//! A product may be sold at a night only if, on that night's date, it has enough OCOP stars for
//! the market, a valid document of every required kind (OCOP certificate, proof of origin,
//! quality label), its seller has signed the commitment of legal responsibility for quality, and
//! an operator approved it. [`check_admission`] reports every reason that fails, not just the
//! first, because the operator sends the whole list back to the seller in one go.
//!
//! Documents are checked against the night's local date, not against today: a certificate
//! that expires next Thursday does not cover next Friday's night. [`expiry_warnings`] lists the
//! document problems alone, for shows already scheduled whose papers will have lapsed by then.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::ocop::{self, OcopError, Stars};

/// Most documents one product may carry. Real products have three to five; the bound keeps a
/// proof snapshot small wherever it is copied.
pub const MAX_DOCUMENTS: usize = 32;

/// Why a document, a proof or a decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error(transparent)]
    Text(#[from] OcopError),
    #[error(
        "unknown document kind {0:?}; expected ocop_certificate, origin_proof or quality_label"
    )]
    UnknownKind(String),
    #[error("{} {reference:?}: valid_from {valid_from} is after valid_until {valid_until}", .kind.label())]
    ValidityOrder {
        kind: DocumentKind,
        reference: String,
        valid_from: Date,
        valid_until: Date,
    },
    #[error("a product carries at most {MAX_DOCUMENTS} documents, got {0}")]
    TooManyDocuments(usize),
    #[error("a rejection needs a reason the seller can act on")]
    RejectionWithoutReason,
}

/// The kinds of document an OCOP product must hold to be sold at the market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// The OCOP certificate with the product's star rating.
    OcopCertificate,
    /// Proof of where and by whom the product is made.
    OriginProof,
    /// A quality label (VietGAP, organic, food-safety certification, ...).
    QualityLabel,
}

impl DocumentKind {
    /// Every kind, in the order refusals are reported. All of them are required.
    pub const ALL: [DocumentKind; 3] =
        [Self::OcopCertificate, Self::OriginProof, Self::QualityLabel];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OcopCertificate => "ocop_certificate",
            Self::OriginProof => "origin_proof",
            Self::QualityLabel => "quality_label",
        }
    }

    pub fn parse(s: &str) -> Result<Self, AdmissionError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| AdmissionError::UnknownKind(s.to_owned()))
    }

    /// How the kind is named in messages to people.
    pub fn label(self) -> &'static str {
        match self {
            Self::OcopCertificate => "OCOP certificate",
            Self::OriginProof => "proof of origin",
            Self::QualityLabel => "quality label",
        }
    }
}

/// One document, valid on every local date from `valid_from` to `valid_until` inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub kind: DocumentKind,
    /// The document's number or reference, as printed on it.
    pub reference: String,
    pub valid_from: Date,
    pub valid_until: Date,
}

impl Document {
    /// A checked document: the reference trimmed and bounded, the validity in order.
    pub fn new(
        kind: DocumentKind,
        reference: &str,
        valid_from: Date,
        valid_until: Date,
    ) -> Result<Self, AdmissionError> {
        let doc = Self {
            kind,
            reference: ocop::text("document reference", reference)?,
            valid_from,
            valid_until,
        };
        doc.validate()?;
        Ok(doc)
    }

    /// Checks a document read from elsewhere (storage, a request body).
    pub fn validate(&self) -> Result<(), AdmissionError> {
        ocop::text("document reference", &self.reference)?;
        if self.valid_from > self.valid_until {
            return Err(AdmissionError::ValidityOrder {
                kind: self.kind,
                reference: self.reference.clone(),
                valid_from: self.valid_from,
                valid_until: self.valid_until,
            });
        }
        Ok(())
    }

    /// Whether the document covers the local date `date` (both ends inclusive).
    pub fn is_valid_on(&self, date: Date) -> bool {
        self.valid_from <= date && date <= self.valid_until
    }
}

/// What a product was admitted with: its rating and documents, as the operator saw them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductProof {
    pub stars: Stars,
    pub documents: Vec<Document>,
}

impl ProductProof {
    pub fn new(stars: Stars, documents: Vec<Document>) -> Result<Self, AdmissionError> {
        let proof = Self { stars, documents };
        proof.validate()?;
        Ok(proof)
    }

    /// Checks the number of documents and each document.
    pub fn validate(&self) -> Result<(), AdmissionError> {
        if self.documents.len() > MAX_DOCUMENTS {
            return Err(AdmissionError::TooManyDocuments(self.documents.len()));
        }
        self.documents.iter().try_for_each(Document::validate)
    }
}

/// An operator's decision on a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub approved: bool,
    /// Why it was rejected (required), or a note on an approval (optional).
    pub reason: Option<String>,
    /// The operator who decided.
    pub decided_by: String,
    pub decided_at: Millis,
}

impl Decision {
    /// A checked decision: a rejection must say why; texts are trimmed and bounded, and a blank
    /// note on an approval is dropped.
    pub fn new(
        approved: bool,
        reason: Option<&str>,
        decided_by: &str,
        decided_at: Millis,
    ) -> Result<Self, AdmissionError> {
        let reason = match reason.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => Some(ocop::text("reason", r)?),
            None if approved => None,
            None => return Err(AdmissionError::RejectionWithoutReason),
        };
        Ok(Self {
            approved,
            reason,
            decided_by: ocop::text("decided_by", decided_by)?,
            decided_at,
        })
    }

    /// Checks a decision read from elsewhere.
    pub fn validate(&self) -> Result<(), AdmissionError> {
        ocop::text("decided_by", &self.decided_by)?;
        match &self.reason {
            Some(r) => ocop::text("reason", r).map(drop).map_err(|e| match e {
                OcopError::Empty { .. } if !self.approved => AdmissionError::RejectionWithoutReason,
                e => e.into(),
            }),
            None if self.approved => Ok(()),
            None => Err(AdmissionError::RejectionWithoutReason),
        }
    }
}

/// One reason a product may not be sold at a night. The serialized `reason` tag is [`Self::code`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    #[error(
        "the product has {} OCOP stars; this market admits {} stars or more",
        .stars.get(),
        .minimum.get()
    )]
    StarsBelowMinimum { stars: Stars, minimum: Stars },
    #[error("no {} is on file", .kind.label())]
    DocumentMissing { kind: DocumentKind },
    #[error("the {} is valid only from {valid_from}", .kind.label())]
    DocumentNotYetValid {
        kind: DocumentKind,
        valid_from: Date,
    },
    #[error("the {} was valid until {valid_until}", .kind.label())]
    DocumentExpired {
        kind: DocumentKind,
        valid_until: Date,
    },
    #[error("the seller has not signed the commitment of legal responsibility for quality")]
    CommitmentMissing,
    #[error("an operator has not approved the product yet")]
    NotApproved,
    /// The operator's reason travels as `detail`: `reason` is the tag.
    #[error("an operator rejected the product: {reason}")]
    Rejected {
        #[serde(rename = "detail")]
        reason: String,
    },
}

impl Refusal {
    /// A stable code for clients and logs; also the serialized `reason` tag.
    pub fn code(&self) -> &'static str {
        match self {
            Self::StarsBelowMinimum { .. } => "stars_below_minimum",
            Self::DocumentMissing { .. } => "document_missing",
            Self::DocumentNotYetValid { .. } => "document_not_yet_valid",
            Self::DocumentExpired { .. } => "document_expired",
            Self::CommitmentMissing => "commitment_missing",
            Self::NotApproved => "not_approved",
            Self::Rejected { .. } => "rejected",
        }
    }

    /// The explanation for people (the same as `Display`).
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// Whether the refusal is about documents (what [`expiry_warnings`] reports).
    pub fn is_document(&self) -> bool {
        matches!(
            self,
            Self::DocumentMissing { .. }
                | Self::DocumentNotYetValid { .. }
                | Self::DocumentExpired { .. }
        )
    }
}

/// Decides whether a product may be sold at the night of `night_date` (local date), returning
/// every reason it may not: stars, then documents in [`DocumentKind::ALL`] order, then the
/// commitment, then the operator's decision (`None`: not decided yet).
pub fn check_admission(
    proof: &ProductProof,
    min_stars: Stars,
    night_date: Date,
    decision: Option<&Decision>,
    commitment_signed: bool,
) -> Result<(), Vec<Refusal>> {
    let mut refusals = Vec::new();
    if proof.stars < min_stars {
        refusals.push(Refusal::StarsBelowMinimum {
            stars: proof.stars,
            minimum: min_stars,
        });
    }
    refusals.extend(expiry_warnings(proof, night_date));
    if !commitment_signed {
        refusals.push(Refusal::CommitmentMissing);
    }
    match decision {
        Some(d) if d.approved => {}
        Some(d) => refusals.push(Refusal::Rejected {
            reason: d.reason.clone().unwrap_or_default(),
        }),
        None => refusals.push(Refusal::NotApproved),
    }
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(refusals)
    }
}

/// The document refusals alone, in [`DocumentKind::ALL`] order: for each kind with no document
/// valid on `night_date`, why. When several documents of a kind exist and none is valid, the
/// most actionable one is reported: a renewal not valid yet (the earliest to start) before an
/// old one that expired (the latest to end).
pub fn expiry_warnings(proof: &ProductProof, night_date: Date) -> Vec<Refusal> {
    DocumentKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let of_kind = || proof.documents.iter().filter(move |d| d.kind == kind);
            if of_kind().any(|d| d.is_valid_on(night_date)) {
                return None;
            }
            let upcoming = of_kind()
                .filter(|d| d.valid_from > night_date)
                .map(|d| d.valid_from)
                .min();
            let lapsed = of_kind()
                .filter(|d| d.valid_until < night_date)
                .map(|d| d.valid_until)
                .max();
            Some(match (upcoming, lapsed) {
                (Some(valid_from), _) => Refusal::DocumentNotYetValid { kind, valid_from },
                (None, Some(valid_until)) => Refusal::DocumentExpired { kind, valid_until },
                (None, None) => Refusal::DocumentMissing { kind },
            })
        })
        .collect()
}
