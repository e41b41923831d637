//! Recurring market nights, their exceptions and the seller slots inside them.
//!
//! A market is defined the way an operator says it: "every Friday at 20:30, for 150 minutes,
//! Hanoi time, from this date". Nights are computed from that rule, never stored one by one, so
//! changing the rule changes every future night at once. The two things that do not follow the
//! rule are recorded as [`NightException`]s: a cancelled night (Tết) and a moved night (a public
//! holiday pushes Friday to Saturday).
//!
//! A night's identity is the local date it was originally scheduled on. A moved night keeps that
//! identity, so shows already scheduled into it follow it to its new time and the exception can
//! be changed again later without orphaning anything.
//!
//! Local times live in the market's time zone and are only a way to compute instants: every
//! night carries its start and end as UTC [`Millis`], which is what shows and the rest of the
//! system compare against. Converting a local time that does not exist (a DST gap) or exists
//! twice (a DST fold) uses jiff's "compatible" rule: a time in a gap is pushed forward by the
//! gap's length, a time in a fold takes the earlier of its two instants. The night always lasts
//! exactly its configured duration in real time, so a night across a DST change ends an hour
//! earlier or later on the wall clock.
//!
//! Nothing here reads a clock: `now` and `after` are parameters.

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::ids::ShowId;
use crate::ocop::{self, OcopError, Stars};

/// The market's time zone unless the operator says otherwise: Vietnam, UTC+7, no DST.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Ho_Chi_Minh";
/// The lowest OCOP rating admitted unless the operator says otherwise: the certification floor.
pub const DEFAULT_MIN_STARS: Stars = Stars::CERTIFIED;
/// Longest market night, in minutes. Twelve hours is far more than any evening session, and it
/// keeps two nights on consecutive days from ever overlapping, even across a DST change.
pub const MAX_DURATION_MINUTES: u32 = 12 * 60;
/// Most nights one [`Market::nights`] call returns, whatever `limit` asks for. A market without
/// a last date recurs until the year 9999; a caller pages with `after` instead.
pub const MAX_NIGHTS_LISTED: usize = 1_000;

const MINUTE_MS: i64 = 60_000;

/// Why a market definition, a night exception or a wire value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarketError {
    #[error(transparent)]
    Text(#[from] OcopError),
    #[error("a market needs at least one weekday")]
    NoWeekdays,
    #[error("{} is listed twice in the market's weekdays", weekday_name(*.0))]
    DuplicateWeekday(Weekday),
    #[error("a market night lasts 1 to {MAX_DURATION_MINUTES} minutes, got {0}")]
    Duration(u32),
    #[error("a market night starts on a whole minute, got {0}")]
    StartNotWholeMinute(Time),
    #[error("unknown time zone {0:?}; expected an IANA name such as \"Asia/Ho_Chi_Minh\"")]
    UnknownTimeZone(String),
    #[error("last_date {last} is before first_date {first}")]
    DateOrder { first: Date, last: Date },
    #[error("{field}: unknown weekday {value:?}; expected monday, tuesday, ... or sunday")]
    BadWeekday { field: &'static str, value: String },
    #[error("{field}: expected a time HH:MM, got {value:?}")]
    BadTime { field: &'static str, value: String },
    #[error("{field}: expected a date YYYY-MM-DD, got {value:?}")]
    BadDate { field: &'static str, value: String },
    #[error("{field}: expected a local date and time YYYY-MM-DDTHH:MM, got {value:?}")]
    BadDateTime { field: &'static str, value: String },
    #[error("the market does not meet on {0}")]
    NotAMarketNight(Date),
    #[error("the night of {0} has more than one exception")]
    DuplicateException(Date),
    #[error("the night of {date} moved to {to} would overlap the night of {other}")]
    MoveCollides {
        date: Date,
        to: DateTime,
        other: Date,
    },
    #[error("the night of {0} falls outside the range of representable times")]
    OutOfRange(Date),
}

/// A market as the operator defines it. [`MarketSpec::validate`] turns it into a [`Market`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketSpec {
    pub name: String,
    pub weekdays: Vec<Weekday>,
    /// Local start time in `time_zone`.
    pub start: Time,
    pub duration_minutes: u32,
    /// IANA name, e.g. [`DEFAULT_TIME_ZONE`].
    pub time_zone: String,
    /// First date the market may meet (it meets on it only if it is one of `weekdays`).
    pub first_date: Date,
    /// Last date the market may meet, inclusive; `None` for a market that goes on.
    pub last_date: Option<Date>,
    /// Lowest OCOP rating a product needs to be admitted to this market.
    pub min_stars: Stars,
}

impl MarketSpec {
    /// A market in [`DEFAULT_TIME_ZONE`], admitting [`DEFAULT_MIN_STARS`], without a last date.
    pub fn new(
        name: impl Into<String>,
        weekdays: Vec<Weekday>,
        start: Time,
        duration_minutes: u32,
        first_date: Date,
    ) -> Self {
        Self {
            name: name.into(),
            weekdays,
            start,
            duration_minutes,
            time_zone: DEFAULT_TIME_ZONE.to_owned(),
            first_date,
            last_date: None,
            min_stars: DEFAULT_MIN_STARS,
        }
    }

    /// Checks every field and resolves the time zone.
    pub fn validate(self) -> Result<Market, MarketError> {
        let name = ocop::text("market name", &self.name)?;
        if self.weekdays.is_empty() {
            return Err(MarketError::NoWeekdays);
        }
        let mut weekdays = self.weekdays;
        weekdays.sort_by_key(|w| w.to_monday_zero_offset());
        if let Some(pair) = weekdays.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(MarketError::DuplicateWeekday(pair[0]));
        }
        if !(1..=MAX_DURATION_MINUTES).contains(&self.duration_minutes) {
            return Err(MarketError::Duration(self.duration_minutes));
        }
        if self.start.second() != 0 || self.start.subsec_nanosecond() != 0 {
            return Err(MarketError::StartNotWholeMinute(self.start));
        }
        let tz = TimeZone::get(self.time_zone.trim())
            .map_err(|_| MarketError::UnknownTimeZone(self.time_zone.clone()))?;
        // Keep the database's spelling, so "asia/ho_chi_minh" is stored as "Asia/Ho_Chi_Minh".
        let time_zone = tz
            .iana_name()
            .map_or_else(|| self.time_zone.trim().to_owned(), str::to_owned);
        if let Some(last) = self.last_date
            && last < self.first_date
        {
            return Err(MarketError::DateOrder {
                first: self.first_date,
                last,
            });
        }
        Ok(Market {
            name,
            weekdays,
            start: self.start,
            duration_minutes: self.duration_minutes,
            time_zone,
            tz,
            first_date: self.first_date,
            last_date: self.last_date,
            min_stars: self.min_stars,
        })
    }
}

/// A night that does not follow the market's rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NightException {
    /// The night does not take place. It is still listed, marked cancelled.
    Cancelled { date: Date, reason: String },
    /// The night takes place at another local start time, for the usual duration. `date` stays
    /// the originally scheduled date: the night's identity.
    Moved {
        date: Date,
        to: DateTime,
        reason: String,
    },
}

impl NightException {
    /// The identity of the night this exception applies to.
    pub fn date(&self) -> Date {
        match self {
            Self::Cancelled { date, .. } | Self::Moved { date, .. } => *date,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Self::Cancelled { reason, .. } | Self::Moved { reason, .. } => reason,
        }
    }
}

/// Whether a night follows the rule, was moved or was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NightStatus {
    Scheduled,
    /// Moved away from `from`, the local start the rule gave it.
    Moved {
        from: DateTime,
    },
    Cancelled {
        reason: String,
    },
}

/// One market night, with its local times for display and its UTC instants for everything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Night {
    /// Identity: the local date the rule scheduled this night on (kept when it is moved).
    pub date: Date,
    /// Local wall-clock start in the market's zone (after gap adjustment, see the module docs).
    pub local_start: DateTime,
    /// Local wall-clock end; may be on the next day.
    pub local_end: DateTime,
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub status: NightStatus,
}

impl Night {
    pub fn is_cancelled(&self) -> bool {
        matches!(self.status, NightStatus::Cancelled { .. })
    }

    /// Whether the night is running at `now` (start inclusive, end exclusive).
    pub fn is_on(&self, now: Millis) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    fn overlaps(&self, other: &Night) -> bool {
        self.starts_at < other.ends_at && other.starts_at < self.ends_at
    }
}

/// A validated market with its resolved time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Market {
    name: String,
    /// Sorted Monday first, no duplicates.
    weekdays: Vec<Weekday>,
    start: Time,
    duration_minutes: u32,
    time_zone: String,
    tz: TimeZone,
    first_date: Date,
    last_date: Option<Date>,
    min_stars: Stars,
}

impl Market {
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The weekdays the market meets on, Monday first.
    pub fn weekdays(&self) -> &[Weekday] {
        &self.weekdays
    }
    pub fn start(&self) -> Time {
        self.start
    }
    pub fn duration_minutes(&self) -> u32 {
        self.duration_minutes
    }
    /// The IANA name of the market's zone.
    pub fn time_zone_name(&self) -> &str {
        &self.time_zone
    }
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }
    pub fn first_date(&self) -> Date {
        self.first_date
    }
    pub fn last_date(&self) -> Option<Date> {
        self.last_date
    }
    pub fn min_stars(&self) -> Stars {
        self.min_stars
    }

    /// The definition back, e.g. to store it or to edit it and validate again.
    pub fn to_spec(&self) -> MarketSpec {
        MarketSpec {
            name: self.name.clone(),
            weekdays: self.weekdays.clone(),
            start: self.start,
            duration_minutes: self.duration_minutes,
            time_zone: self.time_zone.clone(),
            first_date: self.first_date,
            last_date: self.last_date,
            min_stars: self.min_stars,
        }
    }

    /// Whether the rule schedules a night on this local date.
    pub fn recurs_on(&self, date: Date) -> bool {
        date >= self.first_date
            && self.last_date.is_none_or(|last| date <= last)
            && self.weekdays.contains(&date.weekday())
    }

    /// Checks a market's whole set of exceptions: each names a night the rule schedules, at
    /// most one per night, reasons are present and bounded, and no moved night overlaps another
    /// night that takes place (a cancelled night frees its time). To add or change one exception,
    /// check the set as it would be afterwards.
    pub fn check_exceptions(&self, exceptions: &[NightException]) -> Result<(), MarketError> {
        for (i, ex) in exceptions.iter().enumerate() {
            let date = ex.date();
            if !self.recurs_on(date) {
                return Err(MarketError::NotAMarketNight(date));
            }
            ocop::text("reason", ex.reason())?;
            if exceptions[..i].iter().any(|e| e.date() == date) {
                return Err(MarketError::DuplicateException(date));
            }
        }
        let moved: Vec<Night> = exceptions
            .iter()
            .filter(|e| matches!(e, NightException::Moved { .. }))
            .map(|e| self.night_at(e.date(), Some(e)))
            .collect::<Result<_, _>>()?;
        for (i, night) in moved.iter().enumerate() {
            let to = night.local_start;
            // Other moved nights, wherever they came from.
            if let Some(other) = moved
                .iter()
                .enumerate()
                .find(|(j, other)| *j != i && night.overlaps(other))
            {
                return Err(MarketError::MoveCollides {
                    date: night.date,
                    to,
                    other: other.1.date,
                });
            }
            // Nights the rule schedules around the new time. A night lasts at most twelve hours,
            // so only nights starting within two local days of the new start can overlap it.
            let mut day = to.date().checked_sub(jiff::Span::new().days(2)).ok();
            for _ in 0..5 {
                let Some(d) = day else { break };
                day = d.tomorrow().ok();
                if d == night.date || !self.recurs_on(d) || exceptions.iter().any(|e| e.date() == d)
                {
                    continue;
                }
                let regular = self.night_at(d, None)?;
                if night.overlaps(&regular) {
                    return Err(MarketError::MoveCollides {
                        date: night.date,
                        to,
                        other: d,
                    });
                }
            }
        }
        Ok(())
    }

    /// The night whose identity is `date`, with its exception applied if there is one.
    pub fn night(&self, exceptions: &[NightException], date: Date) -> Result<Night, MarketError> {
        if !self.recurs_on(date) {
            return Err(MarketError::NotAMarketNight(date));
        }
        self.night_at(date, exceptions.iter().find(|e| e.date() == date))
    }

    /// Nights ending after `after`, in start order, at most `limit` (and at most
    /// [`MAX_NIGHTS_LISTED`]). A night running at `after` is included. Cancelled nights are
    /// listed, marked cancelled, at their scheduled time; moved nights at their new time.
    ///
    /// Exceptions are expected to have passed [`Market::check_exceptions`] when recorded. Here
    /// an exception for a date the market does not meet on is ignored, and the first exception
    /// for a date wins.
    pub fn nights(&self, exceptions: &[NightException], after: Millis, limit: usize) -> Vec<Night> {
        let limit = limit.min(MAX_NIGHTS_LISTED);
        if limit == 0 {
            return Vec::new();
        }
        let applies = |e: &NightException| {
            self.recurs_on(e.date())
                && exceptions
                    .iter()
                    .find(|x| x.date() == e.date())
                    .is_some_and(|first| std::ptr::eq(first, e))
        };
        // Moved nights are taken from the exceptions, wherever their new time falls.
        let mut out: Vec<Night> = exceptions
            .iter()
            .filter(|e| matches!(e, NightException::Moved { .. }) && applies(e))
            .filter_map(|e| self.night_at(e.date(), Some(e)).ok())
            .filter(|n| n.ends_at > after)
            .collect();
        // Then the nights in place: walk the calendar from just before `after`. A night lasts at
        // most twelve hours, so one that started two local days before `after` has ended.
        let from = match Timestamp::from_millisecond(after) {
            Ok(ts) => self
                .tz
                .to_datetime(ts)
                .date()
                .checked_sub(jiff::Span::new().days(2))
                .unwrap_or(self.first_date),
            Err(_) if after < 0 => self.first_date,
            Err(_) => return Vec::new(),
        };
        let mut day = Some(from.max(self.first_date));
        let mut in_place = 0;
        while let Some(d) = day {
            if in_place >= limit || self.last_date.is_some_and(|last| d > last) {
                break;
            }
            day = d.tomorrow().ok();
            if !self.recurs_on(d) {
                continue;
            }
            let ex = exceptions.iter().find(|e| e.date() == d);
            if matches!(ex, Some(NightException::Moved { .. })) {
                continue;
            }
            let Ok(night) = self.night_at(d, ex) else {
                break;
            };
            if night.ends_at > after {
                out.push(night);
                in_place += 1;
            }
        }
        out.sort_by_key(|n| (n.starts_at, n.date));
        out.truncate(limit);
        out
    }

    /// Computes the night of a date the rule schedules, with `exception` (for that date) applied.
    fn night_at(
        &self,
        date: Date,
        exception: Option<&NightException>,
    ) -> Result<Night, MarketError> {
        let scheduled = date.to_datetime(self.start);
        let (local, status) = match exception {
            None => (scheduled, NightStatus::Scheduled),
            Some(NightException::Cancelled { reason, .. }) => (
                scheduled,
                NightStatus::Cancelled {
                    reason: reason.clone(),
                },
            ),
            Some(NightException::Moved { to, .. }) => (*to, NightStatus::Moved { from: scheduled }),
        };
        let out_of_range = |_| MarketError::OutOfRange(date);
        let start = self.tz.to_timestamp(local).map_err(out_of_range)?;
        let length = SignedDuration::from_mins(i64::from(self.duration_minutes));
        let end = start.checked_add(length).map_err(out_of_range)?;
        Ok(Night {
            date,
            local_start: self.tz.to_datetime(start),
            local_end: self.tz.to_datetime(end),
            starts_at: start.as_millisecond(),
            ends_at: end.as_millisecond(),
            status,
        })
    }
}

/// The lowercase English name of a weekday, as on the wire.
pub fn weekday_name(weekday: Weekday) -> &'static str {
    match weekday {
        Weekday::Monday => "monday",
        Weekday::Tuesday => "tuesday",
        Weekday::Wednesday => "wednesday",
        Weekday::Thursday => "thursday",
        Weekday::Friday => "friday",
        Weekday::Saturday => "saturday",
        Weekday::Sunday => "sunday",
    }
}

const WEEKDAYS: [Weekday; 7] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
    Weekday::Saturday,
    Weekday::Sunday,
];

/// Parses a weekday written `"monday"` … `"sunday"` (lowercase English, nothing else).
pub fn parse_weekday(field: &'static str, s: &str) -> Result<Weekday, MarketError> {
    WEEKDAYS
        .into_iter()
        .find(|w| weekday_name(*w) == s)
        .ok_or_else(|| MarketError::BadWeekday {
            field,
            value: s.to_owned(),
        })
}

/// Parses exactly two ASCII digits.
fn two_digits(b: &[u8]) -> Option<i8> {
    match b {
        [a @ b'0'..=b'9', c @ b'0'..=b'9'] => Some(((a - b'0') * 10 + (c - b'0')) as i8),
        _ => None,
    }
}

fn hh_mm(s: &str) -> Option<Time> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    Time::new(two_digits(&b[..2])?, two_digits(&b[3..])?, 0, 0).ok()
}

fn yyyy_mm_dd(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !b[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let year = b[..4]
        .iter()
        .fold(0i16, |y, d| y * 10 + i16::from(d - b'0'));
    Date::new(year, two_digits(&b[5..7])?, two_digits(&b[8..])?).ok()
}

/// Parses a local time written `"HH:MM"` (24-hour, two digits each).
pub fn parse_time(field: &'static str, s: &str) -> Result<Time, MarketError> {
    hh_mm(s).ok_or_else(|| MarketError::BadTime {
        field,
        value: s.to_owned(),
    })
}

/// Parses a date written `"YYYY-MM-DD"`; impossible dates such as 2027-02-29 are refused.
pub fn parse_date(field: &'static str, s: &str) -> Result<Date, MarketError> {
    yyyy_mm_dd(s).ok_or_else(|| MarketError::BadDate {
        field,
        value: s.to_owned(),
    })
}

/// Parses a local date and time written `"YYYY-MM-DDTHH:MM"` (a moved night's new start).
pub fn parse_local_datetime(field: &'static str, s: &str) -> Result<DateTime, MarketError> {
    s.split_once('T')
        .and_then(|(d, t)| Some(yyyy_mm_dd(d)?.to_datetime(hh_mm(t)?)))
        .ok_or_else(|| MarketError::BadDateTime {
            field,
            value: s.to_owned(),
        })
}

/// A show's time inside a night, in UTC. Start inclusive, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub starts_at: Millis,
    pub ends_at: Millis,
}

impl Slot {
    /// Whether two slots share any instant; one ending exactly when the other starts does not.
    pub fn overlaps(&self, other: &Slot) -> bool {
        self.starts_at < other.ends_at && other.starts_at < self.ends_at
    }
}

/// Why a show cannot be scheduled into a slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("a show must end after it starts (starts_at {starts_at}, ends_at {ends_at})")]
    Empty { starts_at: Millis, ends_at: Millis },
    #[error("the market night of {0} is cancelled")]
    NightCancelled(Date),
    #[error(
        "the show must fit inside the market night of {date} ({night_starts_at} to {night_ends_at})"
    )]
    OutsideNight {
        date: Date,
        night_starts_at: Millis,
        night_ends_at: Millis,
    },
    #[error("the seller's show {0} overlaps this time")]
    SellerBusy(ShowId),
}

/// Checks that a show may take `slot` in `night`: a real interval, inside a night that takes
/// place, not overlapping the same seller's other shows. `same_seller` holds that seller's other
/// shows (leave out the show being rescheduled); different sellers' shows may overlap freely,
/// since each streams on its own channel.
pub fn check_slot(
    night: &Night,
    slot: Slot,
    same_seller: &[(ShowId, Slot)],
) -> Result<(), SlotError> {
    if slot.starts_at >= slot.ends_at {
        return Err(SlotError::Empty {
            starts_at: slot.starts_at,
            ends_at: slot.ends_at,
        });
    }
    if night.is_cancelled() {
        return Err(SlotError::NightCancelled(night.date));
    }
    if slot.starts_at < night.starts_at || slot.ends_at > night.ends_at {
        return Err(SlotError::OutsideNight {
            date: night.date,
            night_starts_at: night.starts_at,
            night_ends_at: night.ends_at,
        });
    }
    if let Some((show, _)) = same_seller.iter().find(|(_, other)| slot.overlaps(other)) {
        return Err(SlotError::SellerBusy(show.clone()));
    }
    Ok(())
}

/// When a scheduled show opens and closes around its slot. A seller may go live up to
/// `live_grace_ms` early (to check the stream before viewers crowd in); the market opens the
/// show itself at the slot start; a show still open `close_grace_ms` after its slot ends is
/// closed for the seller, so a forgotten stream does not keep taking claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShowTiming {
    pub slot: Slot,
    pub live_grace_ms: i64,
    pub close_grace_ms: i64,
}

impl ShowTiming {
    /// Minutes to milliseconds, for building graces from configuration.
    pub fn minutes(m: i64) -> i64 {
        m.saturating_mul(MINUTE_MS)
    }

    /// A scheduled show should be live by now: its slot has started.
    pub fn should_go_live(&self, now: Millis) -> bool {
        now >= self.slot.starts_at
    }

    /// The seller may take the show live now: within the early grace before the slot, or later,
    /// but not once the show is due to close.
    pub fn may_go_live(&self, now: Millis) -> bool {
        now >= self
            .slot
            .starts_at
            .saturating_sub(self.live_grace_ms.max(0))
            && !self.should_close(now)
    }

    /// An open show should be closed now: its slot and the close grace are over.
    pub fn should_close(&self, now: Millis) -> bool {
        now >= self.slot.ends_at.saturating_add(self.close_grace_ms.max(0))
    }
}
