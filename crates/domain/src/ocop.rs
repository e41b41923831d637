//! OCOP ("One Commune One Product", Mỗi xã một sản phẩm) facts about a product: its star rating
//! and product group, and the rules for the free texts that describe it (names, places, document
//! references). The product itself, with its proof documents, is [`crate::product`].

use serde::{Deserialize, Serialize};

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
    #[error("{field} must not contain control characters (found U+{code:04X})")]
    Control { field: &'static str, code: u32 },
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
}

checked_number!(Stars, u8, OcopError);

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

/// Trims and bounds a one-line free-text field (names, titles, districts, references, reasons).
/// Vietnamese text is kept as given (NFC from clients). Control characters are refused: NUL
/// truncates strings in C libraries and logs, line breaks and escapes forge lines in CSV
/// reports, logs and the claim feed, and bidirectional overrides make a name read as another.
pub fn text(field: &'static str, s: &str) -> Result<String, OcopError> {
    bounded(field, s, |_| false)
}

/// Like [`text`], for a field written in a text box (a seller's signed statement): line breaks
/// are kept (`\r\n` becomes `\n`); every other control character is refused.
pub fn paragraph(field: &'static str, s: &str) -> Result<String, OcopError> {
    bounded(field, &s.replace("\r\n", "\n"), |c| c == '\n')
}

fn bounded(field: &'static str, s: &str, allowed: fn(char) -> bool) -> Result<String, OcopError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(OcopError::Empty { field });
    }
    if t.chars().count() > MAX_TEXT_CHARS {
        return Err(OcopError::TooLong { field });
    }
    if let Some(c) = t.chars().find(|c| is_forbidden(*c) && !allowed(*c)) {
        return Err(OcopError::Control {
            field,
            code: u32::from(c),
        });
    }
    Ok(t.to_owned())
}

/// Characters no free text may hold: C0 and C1 controls (NUL included) and DEL, the line and
/// paragraph separators (they end a line in JavaScript), and the bidirectional embeddings,
/// overrides and isolates.
fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(
            text("name", "  Mật ong Ba Vì ").as_deref(),
            Ok("Mật ong Ba Vì")
        );
        assert_eq!(
            text("name", " \t "),
            Err(OcopError::Empty { field: "name" })
        );
        assert_eq!(
            text("name", &"ă".repeat(MAX_TEXT_CHARS + 1)),
            Err(OcopError::TooLong { field: "name" })
        );
        for (bad, code) in [
            ("Mật\0ong", 0),
            ("line\nbreak", 0x0A),
            ("esc\u{1b}[31m", 0x1B),
            ("del\u{7f}", 0x7F),
            ("c1\u{85}x", 0x85),
            ("sep\u{2028}x", 0x2028),
            ("bidi\u{202E}gnp.exe", 0x202E),
            ("iso\u{2066}x", 0x2066),
        ] {
            assert_eq!(
                text("title", bad),
                Err(OcopError::Control {
                    field: "title",
                    code
                }),
                "{bad:?}"
            );
        }
        // Outer whitespace (newlines included) is trimmed, not refused.
        assert_eq!(text("name", "\nChè Shan\n").as_deref(), Ok("Chè Shan"));
    }

    #[test]
    fn paragraphs_keep_line_breaks_only() {
        assert_eq!(
            paragraph("statement", "Tôi cam kết\r\nđúng chất lượng").as_deref(),
            Ok("Tôi cam kết\nđúng chất lượng")
        );
        assert!(matches!(
            paragraph("statement", "a\0b"),
            Err(OcopError::Control { code: 0, .. })
        ));
        assert!(matches!(
            paragraph("statement", "a\rb"),
            Err(OcopError::Control { code: 0x0D, .. })
        ));
    }
}
