//! Admission of products to a market night: stars, documents, commitment, operator decision.
#![allow(clippy::unwrap_used)]

use jiff::civil::{Date, date};
use nightmarket_domain::admission::{
    AdmissionError, Decision, Document, DocumentKind, MAX_DOCUMENTS, ProductProof, Refusal,
    check_admission, expiry_warnings,
};
use nightmarket_domain::{OcopError, Stars};

const NIGHT: Date = date(2027, 1, 1);

fn stars(n: i64) -> Stars {
    Stars::parse(n).unwrap()
}

fn doc(kind: DocumentKind, from: Date, until: Date) -> Document {
    Document::new(kind, "QĐ 1234/QĐ-UBND", from, until).unwrap()
}

/// A four-star product with all three documents valid through 2027.
fn full_proof() -> ProductProof {
    ProductProof::new(
        stars(4),
        DocumentKind::ALL
            .into_iter()
            .map(|k| doc(k, date(2024, 1, 1), date(2027, 12, 31)))
            .collect(),
    )
    .unwrap()
}

fn approved() -> Decision {
    Decision::new(true, None, "op-hanoi", 1_767_225_600_000).unwrap()
}

fn rejected(reason: &str) -> Decision {
    Decision::new(false, Some(reason), "op-hanoi", 1_767_225_600_000).unwrap()
}

fn without(kind: DocumentKind) -> ProductProof {
    let mut p = full_proof();
    p.documents.retain(|d| d.kind != kind);
    p
}

/// The full proof, but its documents of `kind` are one per validity window (from, until).
fn with_only(kind: DocumentKind, windows: &[(Date, Date)]) -> ProductProof {
    let mut p = without(kind);
    p.documents
        .extend(windows.iter().map(|&(from, until)| doc(kind, from, until)));
    p
}

fn check(proof: &ProductProof) -> Result<(), Vec<Refusal>> {
    check_admission(proof, stars(3), NIGHT, Some(&approved()), true)
}

#[test]
fn a_complete_approved_product_is_admitted() {
    assert_eq!(check(&full_proof()), Ok(()));
    assert!(expiry_warnings(&full_proof(), NIGHT).is_empty());
}

#[test]
fn stars_below_the_market_minimum() {
    let mut p = full_proof();
    p.stars = stars(2);
    assert_eq!(
        check(&p),
        Err(vec![Refusal::StarsBelowMinimum {
            stars: stars(2),
            minimum: stars(3)
        }])
    );
    // A five-star market refuses a four-star product; a three-star one admits it.
    assert_eq!(
        check_admission(&full_proof(), stars(5), NIGHT, Some(&approved()), true),
        Err(vec![Refusal::StarsBelowMinimum {
            stars: stars(4),
            minimum: stars(5)
        }])
    );
    assert_eq!(
        check_admission(&full_proof(), stars(4), NIGHT, Some(&approved()), true),
        Ok(())
    );
}

#[test]
fn each_missing_document_kind() {
    for kind in DocumentKind::ALL {
        assert_eq!(
            check(&without(kind)),
            Err(vec![Refusal::DocumentMissing { kind }])
        );
    }
}

#[test]
fn document_not_yet_valid() {
    let p = with_only(
        DocumentKind::OriginProof,
        &[(date(2027, 1, 2), date(2030, 1, 1))],
    );
    assert_eq!(
        check(&p),
        Err(vec![Refusal::DocumentNotYetValid {
            kind: DocumentKind::OriginProof,
            valid_from: date(2027, 1, 2)
        }])
    );
}

#[test]
fn document_expired() {
    let p = with_only(
        DocumentKind::QualityLabel,
        &[(date(2024, 1, 1), date(2026, 12, 31))],
    );
    assert_eq!(
        check(&p),
        Err(vec![Refusal::DocumentExpired {
            kind: DocumentKind::QualityLabel,
            valid_until: date(2026, 12, 31)
        }])
    );
}

#[test]
fn validity_boundaries_are_inclusive() {
    for (from, until) in [
        (NIGHT, NIGHT),
        (NIGHT, date(2027, 6, 1)),
        (date(2026, 1, 1), NIGHT),
    ] {
        let p = with_only(DocumentKind::OcopCertificate, &[(from, until)]);
        assert_eq!(check(&p), Ok(()), "{from}..={until}");
    }
}

#[test]
fn any_valid_document_of_a_kind_is_enough() {
    let p = with_only(
        DocumentKind::OcopCertificate,
        &[
            (date(2020, 1, 1), date(2023, 1, 1)),
            (date(2023, 1, 2), date(2027, 1, 1)),
            (date(2027, 1, 2), date(2030, 1, 1)),
        ],
    );
    assert_eq!(check(&p), Ok(()));
}

#[test]
fn the_most_actionable_lapsed_document_is_reported() {
    // An old certificate that expired and a renewal that starts after the night: the renewal
    // is what the seller needs to hear about.
    let p = with_only(
        DocumentKind::OcopCertificate,
        &[
            (date(2020, 1, 1), date(2023, 1, 1)),
            (date(2023, 1, 2), date(2026, 6, 30)),
            (date(2027, 3, 1), date(2030, 1, 1)),
            (date(2027, 2, 1), date(2030, 1, 1)),
        ],
    );
    assert_eq!(
        expiry_warnings(&p, NIGHT),
        [Refusal::DocumentNotYetValid {
            kind: DocumentKind::OcopCertificate,
            valid_from: date(2027, 2, 1)
        }]
    );
    // Only expired ones: the latest to end.
    let p = with_only(
        DocumentKind::OcopCertificate,
        &[
            (date(2023, 1, 2), date(2026, 6, 30)),
            (date(2020, 1, 1), date(2023, 1, 1)),
        ],
    );
    assert_eq!(
        expiry_warnings(&p, NIGHT),
        [Refusal::DocumentExpired {
            kind: DocumentKind::OcopCertificate,
            valid_until: date(2026, 6, 30)
        }]
    );
}

#[test]
fn commitment_missing() {
    assert_eq!(
        check_admission(&full_proof(), stars(3), NIGHT, Some(&approved()), false),
        Err(vec![Refusal::CommitmentMissing])
    );
}

#[test]
fn not_approved_yet() {
    assert_eq!(
        check_admission(&full_proof(), stars(3), NIGHT, None, true),
        Err(vec![Refusal::NotApproved])
    );
}

#[test]
fn rejected_with_its_reason() {
    let d = rejected("Nhãn chưa ghi hạn sử dụng");
    assert_eq!(
        check_admission(&full_proof(), stars(3), NIGHT, Some(&d), true),
        Err(vec![Refusal::Rejected {
            reason: "Nhãn chưa ghi hạn sử dụng".into()
        }])
    );
}

#[test]
fn every_reason_is_reported_at_once_in_a_stable_order() {
    let p = ProductProof::new(
        stars(2),
        vec![
            doc(
                DocumentKind::OriginProof,
                date(2027, 2, 1),
                date(2028, 1, 1),
            ),
            doc(
                DocumentKind::QualityLabel,
                date(2025, 1, 1),
                date(2026, 12, 31),
            ),
        ],
    )
    .unwrap();
    let refusals = check_admission(&p, stars(3), NIGHT, None, false).unwrap_err();
    assert_eq!(
        refusals,
        [
            Refusal::StarsBelowMinimum {
                stars: stars(2),
                minimum: stars(3)
            },
            Refusal::DocumentMissing {
                kind: DocumentKind::OcopCertificate
            },
            Refusal::DocumentNotYetValid {
                kind: DocumentKind::OriginProof,
                valid_from: date(2027, 2, 1)
            },
            Refusal::DocumentExpired {
                kind: DocumentKind::QualityLabel,
                valid_until: date(2026, 12, 31)
            },
            Refusal::CommitmentMissing,
            Refusal::NotApproved,
        ]
    );
    assert_eq!(
        refusals.iter().map(Refusal::code).collect::<Vec<_>>(),
        [
            "stars_below_minimum",
            "document_missing",
            "document_not_yet_valid",
            "document_expired",
            "commitment_missing",
            "not_approved"
        ]
    );
    // The expiry warnings are exactly the document refusals.
    let docs: Vec<Refusal> = refusals.into_iter().filter(Refusal::is_document).collect();
    assert_eq!(expiry_warnings(&p, NIGHT), docs);
}

#[test]
fn expiry_warnings_look_at_the_night_not_today() {
    // Valid today (2026-12-01, say) but expired by a night in February.
    let p = with_only(
        DocumentKind::QualityLabel,
        &[(date(2025, 1, 1), date(2027, 1, 31))],
    );
    assert!(expiry_warnings(&p, date(2026, 12, 1)).is_empty());
    assert_eq!(
        expiry_warnings(&p, date(2027, 2, 5)),
        [Refusal::DocumentExpired {
            kind: DocumentKind::QualityLabel,
            valid_until: date(2027, 1, 31)
        }]
    );
}

#[test]
fn messages_and_wire_form() {
    let r = Refusal::DocumentExpired {
        kind: DocumentKind::OcopCertificate,
        valid_until: date(2026, 12, 31),
    };
    assert_eq!(
        r.message(),
        "the OCOP certificate was valid until 2026-12-31"
    );
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        serde_json::json!({
            "reason": "document_expired",
            "kind": "ocop_certificate",
            "valid_until": "2026-12-31"
        })
    );
    let s = Refusal::StarsBelowMinimum {
        stars: stars(2),
        minimum: stars(3),
    };
    assert_eq!(
        s.message(),
        "the product has 2 OCOP stars; this market admits 3 stars or more"
    );
    assert_eq!(
        serde_json::to_value(&s).unwrap(),
        serde_json::json!({"reason": "stars_below_minimum", "stars": 2, "minimum": 3})
    );
    let rej = Refusal::Rejected {
        reason: "thiếu tem".into(),
    };
    assert_eq!(
        serde_json::to_value(&rej).unwrap(),
        serde_json::json!({"reason": "rejected", "detail": "thiếu tem"})
    );
    assert_eq!(rej.message(), "an operator rejected the product: thiếu tem");
    // Every refusal's serialized tag is its code, and it reads back the same.
    for r in [
        r,
        s,
        rej,
        Refusal::DocumentMissing {
            kind: DocumentKind::OriginProof,
        },
        Refusal::DocumentNotYetValid {
            kind: DocumentKind::QualityLabel,
            valid_from: NIGHT,
        },
        Refusal::CommitmentMissing,
        Refusal::NotApproved,
    ] {
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["reason"], r.code());
        assert_eq!(serde_json::from_value::<Refusal>(json).unwrap(), r);
        assert!(!r.message().is_empty());
    }
    for k in DocumentKind::ALL {
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        assert_eq!(DocumentKind::parse(k.as_str()).unwrap(), k);
    }
    assert_eq!(
        DocumentKind::parse("vietgap"),
        Err(AdmissionError::UnknownKind("vietgap".into()))
    );
}

#[test]
fn documents_are_validated() {
    assert_eq!(
        Document::new(DocumentKind::OriginProof, "  ", NIGHT, NIGHT),
        Err(AdmissionError::Text(OcopError::Empty {
            field: "document reference"
        }))
    );
    assert_eq!(
        Document::new(DocumentKind::OriginProof, &"x".repeat(201), NIGHT, NIGHT),
        Err(AdmissionError::Text(OcopError::TooLong {
            field: "document reference"
        }))
    );
    assert_eq!(
        Document::new(DocumentKind::OriginProof, "GCN-01", date(2027, 1, 2), NIGHT),
        Err(AdmissionError::ValidityOrder {
            kind: DocumentKind::OriginProof,
            reference: "GCN-01".into(),
            valid_from: date(2027, 1, 2),
            valid_until: NIGHT
        })
    );
    let d = Document::new(DocumentKind::OriginProof, " GCN-01 ", NIGHT, NIGHT).unwrap();
    assert_eq!(d.reference, "GCN-01");
    let too_many = vec![d.clone(); MAX_DOCUMENTS + 1];
    assert_eq!(
        ProductProof::new(stars(3), too_many),
        Err(AdmissionError::TooManyDocuments(MAX_DOCUMENTS + 1))
    );
    let mut bad = d;
    bad.valid_until = date(2026, 1, 1);
    assert!(matches!(
        ProductProof::new(stars(3), vec![bad]),
        Err(AdmissionError::ValidityOrder { .. })
    ));
}

#[test]
fn decisions_are_validated() {
    assert_eq!(
        Decision::new(false, None, "op-hanoi", 0),
        Err(AdmissionError::RejectionWithoutReason)
    );
    assert_eq!(
        Decision::new(false, Some("   "), "op-hanoi", 0),
        Err(AdmissionError::RejectionWithoutReason)
    );
    assert_eq!(
        Decision::new(true, Some("  "), "op-hanoi", 0)
            .unwrap()
            .reason,
        None
    );
    assert_eq!(
        Decision::new(true, Some(" ok, tem mới "), "op-hanoi", 0)
            .unwrap()
            .reason
            .as_deref(),
        Some("ok, tem mới")
    );
    assert_eq!(
        Decision::new(true, None, "", 0),
        Err(AdmissionError::Text(OcopError::Empty {
            field: "decided_by"
        }))
    );
    approved().validate().unwrap();
    rejected("thiếu tem").validate().unwrap();
    let stored = Decision {
        approved: false,
        reason: Some(String::new()),
        decided_by: "op-hanoi".into(),
        decided_at: 0,
    };
    assert_eq!(
        stored.validate(),
        Err(AdmissionError::RejectionWithoutReason)
    );
    let stored = Decision {
        reason: None,
        ..stored
    };
    assert_eq!(
        stored.validate(),
        Err(AdmissionError::RejectionWithoutReason)
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn day(offset: i32) -> Date {
        date(2026, 1, 1)
            .checked_add(jiff::Span::new().days(offset))
            .unwrap()
    }

    fn arb_doc() -> impl Strategy<Value = Document> {
        (0usize..3, 0i32..800, 0i32..400)
            .prop_map(|(k, from, len)| doc(DocumentKind::ALL[k], day(from), day(from + len)))
    }

    proptest! {
        /// A product is admitted exactly when every condition holds on its own, and a kind is
        /// reported exactly when no document of that kind covers the night.
        #[test]
        fn admitted_iff_every_condition_holds(
            s in 1i64..=5,
            min in 1i64..=5,
            docs in proptest::collection::vec(arb_doc(), 0..8),
            night in 0i32..1_000,
            decision in proptest::option::of(any::<bool>()),
            commitment in any::<bool>(),
        ) {
            let proof = ProductProof::new(stars(s), docs).unwrap();
            let night = day(night);
            let decision = decision.map(|ok| if ok { approved() } else { rejected("thiếu tem") });
            let covered = |k: DocumentKind| proof.documents.iter().any(|d| d.kind == k && d.is_valid_on(night));
            let result = check_admission(&proof, stars(min), night, decision.as_ref(), commitment);
            let all_ok = s >= min
                && DocumentKind::ALL.into_iter().all(covered)
                && commitment
                && decision.as_ref().is_some_and(|d| d.approved);
            prop_assert_eq!(result.is_ok(), all_ok);
            let warnings = expiry_warnings(&proof, night);
            for kind in DocumentKind::ALL {
                let reported = warnings.iter().any(|r| match r {
                    Refusal::DocumentMissing { kind: k }
                    | Refusal::DocumentNotYetValid { kind: k, .. }
                    | Refusal::DocumentExpired { kind: k, .. } => *k == kind,
                    _ => false,
                });
                prop_assert_eq!(reported, !covered(kind));
            }
            if let Err(refusals) = result {
                let docs: Vec<Refusal> = refusals.into_iter().filter(Refusal::is_document).collect();
                prop_assert_eq!(docs, warnings);
            }
        }
    }
}
