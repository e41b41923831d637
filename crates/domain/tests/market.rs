//! Market nights: recurrence, time zones, exceptions, seller slots and show timing.
#![allow(clippy::unwrap_used)]

use jiff::civil::{Date, DateTime, Time, Weekday, date, time};
use jiff::tz::TimeZone;
use nightmarket_domain::market::{
    self, DEFAULT_MIN_STARS, DEFAULT_TIME_ZONE, MAX_NIGHTS_LISTED, Market, MarketError, MarketSpec,
    Night, NightException, NightStatus, ShowTiming, Slot, SlotError, check_slot,
};
use nightmarket_domain::{Millis, OcopError, ShowId, Stars};
use proptest::prelude::*;

const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;

/// The UTC instant of a UTC wall-clock time.
fn utc(d: Date, h: i8, m: i8) -> Millis {
    TimeZone::UTC
        .to_timestamp(d.at(h, m, 0, 0))
        .unwrap()
        .as_millisecond()
}

/// The Hanoi market: every Friday at 20:30 for 150 minutes.
fn friday_spec(first: Date) -> MarketSpec {
    MarketSpec::new(
        "Chợ đêm trên mây",
        vec![Weekday::Friday],
        time(20, 30, 0, 0),
        150,
        first,
    )
}

fn friday_market(first: Date) -> Market {
    friday_spec(first).validate().unwrap()
}

fn dates(nights: &[Night]) -> Vec<Date> {
    nights.iter().map(|n| n.date).collect()
}

fn cancelled(d: Date, reason: &str) -> NightException {
    NightException::Cancelled {
        date: d,
        reason: reason.into(),
    }
}

fn moved(d: Date, to: DateTime) -> NightException {
    NightException::Moved {
        date: d,
        to,
        reason: "Ngày Giải phóng miền Nam".into(),
    }
}

fn show(s: &str) -> ShowId {
    ShowId::parse(s).unwrap()
}

// ----- definition ----------------------------------------------------------------------------

#[test]
fn defaults_are_hanoi_and_three_stars() {
    let m = friday_market(date(2026, 12, 18));
    assert_eq!(m.time_zone_name(), DEFAULT_TIME_ZONE);
    assert_eq!(m.min_stars(), DEFAULT_MIN_STARS);
    assert_eq!(m.min_stars().get(), 3);
    assert_eq!(m.name(), "Chợ đêm trên mây");
    assert_eq!(m.to_spec().validate().unwrap(), m);
}

#[test]
fn validation_refuses_bad_definitions() {
    let base = friday_spec(date(2026, 12, 18));
    let err = |f: fn(&mut MarketSpec)| {
        let mut spec = base.clone();
        f(&mut spec);
        spec.validate().unwrap_err()
    };
    assert_eq!(
        err(|s| s.name = "  ".into()),
        MarketError::Text(OcopError::Empty {
            field: "market name"
        })
    );
    assert_eq!(
        err(|s| s.name = "x".repeat(201)),
        MarketError::Text(OcopError::TooLong {
            field: "market name"
        })
    );
    assert_eq!(err(|s| s.weekdays.clear()), MarketError::NoWeekdays);
    assert_eq!(
        err(|s| s.weekdays = vec![Weekday::Friday, Weekday::Monday, Weekday::Friday]),
        MarketError::DuplicateWeekday(Weekday::Friday)
    );
    assert_eq!(err(|s| s.duration_minutes = 0), MarketError::Duration(0));
    assert_eq!(
        err(|s| s.duration_minutes = 721),
        MarketError::Duration(721)
    );
    assert_eq!(
        err(|s| s.time_zone = "Asia/Hanoi_Old_Quarter".into()),
        MarketError::UnknownTimeZone("Asia/Hanoi_Old_Quarter".into())
    );
    assert_eq!(
        err(|s| s.time_zone = "+07:00".into()),
        MarketError::UnknownTimeZone("+07:00".into())
    );
    assert_eq!(
        err(|s| s.last_date = Some(date(2026, 12, 17))),
        MarketError::DateOrder {
            first: date(2026, 12, 18),
            last: date(2026, 12, 17)
        }
    );
    assert!(matches!(
        err(|s| s.start = time(20, 30, 15, 0)),
        MarketError::StartNotWholeMinute(_)
    ));

    let mut spec = base.clone();
    spec.duration_minutes = 720;
    spec.last_date = Some(spec.first_date);
    spec.time_zone = "asia/ho_chi_minh".into();
    let m = spec.validate().unwrap();
    assert_eq!(m.time_zone_name(), "Asia/Ho_Chi_Minh");
    assert_eq!(
        MarketError::DuplicateWeekday(Weekday::Friday).to_string(),
        "friday is listed twice in the market's weekdays"
    );
}

#[test]
fn wire_forms_parse_and_name_the_field() {
    assert_eq!(
        market::parse_weekday("weekdays", "friday").unwrap(),
        Weekday::Friday
    );
    assert_eq!(
        market::parse_weekday("weekdays", "sunday").unwrap(),
        Weekday::Sunday
    );
    for bad in ["Friday", "fri", "", "thứ sáu"] {
        let e = market::parse_weekday("weekdays", bad).unwrap_err();
        assert!(e.to_string().starts_with("weekdays: "), "{e}");
    }
    // Every day of the week, Monday to Sunday.
    for w in Weekday::Monday.cycle_forward().take(7) {
        assert_eq!(
            market::parse_weekday("w", market::weekday_name(w)).unwrap(),
            w
        );
    }

    assert_eq!(
        market::parse_time("start", "20:30").unwrap(),
        time(20, 30, 0, 0)
    );
    assert_eq!(market::parse_time("start", "00:00").unwrap(), Time::MIN);
    for bad in [
        "24:00",
        "8:30",
        "20:60",
        "20:30:00",
        "2030",
        " 20:30",
        "２０:30",
    ] {
        assert_eq!(
            market::parse_time("start", bad),
            Err(MarketError::BadTime {
                field: "start",
                value: bad.into()
            })
        );
    }

    assert_eq!(
        market::parse_date("first_date", "2026-12-25").unwrap(),
        date(2026, 12, 25)
    );
    assert_eq!(
        market::parse_date("first_date", "2028-02-29").unwrap(),
        date(2028, 2, 29)
    );
    for bad in [
        "2027-02-29",
        "2026-13-01",
        "2026-1-01",
        "26-12-25",
        "2026/12/25",
        "",
    ] {
        let e = market::parse_date("first_date", bad).unwrap_err();
        assert!(e.to_string().starts_with("first_date: "), "{e}");
    }

    assert_eq!(
        market::parse_local_datetime("to", "2027-04-29T20:30").unwrap(),
        date(2027, 4, 29).at(20, 30, 0, 0)
    );
    for bad in [
        "2027-04-29 20:30",
        "2027-04-29T20:30:00",
        "2027-04-29",
        "T20:30",
    ] {
        assert!(matches!(
            market::parse_local_datetime("to", bad),
            Err(MarketError::BadDateTime { field: "to", .. })
        ));
    }
}

// ----- recurrence ----------------------------------------------------------------------------

#[test]
fn fridays_across_month_end_and_year_end() {
    let m = friday_market(date(2026, 12, 18));
    let nights = m.nights(&[], utc(date(2026, 12, 1), 0, 0), 4);
    assert_eq!(
        dates(&nights),
        [
            date(2026, 12, 18),
            date(2026, 12, 25),
            date(2027, 1, 1),
            date(2027, 1, 8)
        ]
    );
    for n in &nights {
        // 20:30 in Hanoi (UTC+7) is 13:30 UTC; 150 minutes later is 16:00 UTC.
        assert_eq!(n.starts_at, utc(n.date, 13, 30));
        assert_eq!(n.ends_at, utc(n.date, 16, 0));
        assert_eq!(n.local_start, n.date.at(20, 30, 0, 0));
        assert_eq!(n.local_end, n.date.at(23, 0, 0, 0));
        assert_eq!(n.status, NightStatus::Scheduled);
    }
    // The New Year's Day night, by its identity.
    assert_eq!(m.night(&[], date(2027, 1, 1)).unwrap(), nights[2]);
}

#[test]
fn several_weekdays_interleave_in_start_order() {
    let mut spec = friday_spec(date(2026, 12, 1));
    spec.weekdays = vec![Weekday::Friday, Weekday::Tuesday];
    let m = spec.validate().unwrap();
    assert_eq!(m.weekdays(), [Weekday::Tuesday, Weekday::Friday]);
    let nights = m.nights(&[], utc(date(2026, 12, 1), 0, 0), 5);
    assert_eq!(
        dates(&nights),
        [
            date(2026, 12, 1),
            date(2026, 12, 4),
            date(2026, 12, 8),
            date(2026, 12, 11),
            date(2026, 12, 15)
        ]
    );
}

#[test]
fn last_date_bounds_the_listing() {
    let mut spec = friday_spec(date(2026, 12, 18));
    // A Saturday: the last night is the Friday before it.
    spec.last_date = Some(date(2027, 1, 2));
    let m = spec.validate().unwrap();
    let nights = m.nights(&[], 0, 100);
    assert_eq!(
        dates(&nights),
        [date(2026, 12, 18), date(2026, 12, 25), date(2027, 1, 1)]
    );
    assert!(m.recurs_on(date(2027, 1, 1)));
    assert!(!m.recurs_on(date(2027, 1, 8)));
    assert_eq!(
        m.night(&[], date(2027, 1, 8)),
        Err(MarketError::NotAMarketNight(date(2027, 1, 8)))
    );
    assert!(m.nights(&[], utc(date(2027, 1, 2), 0, 0), 100).is_empty());
}

#[test]
fn first_date_off_the_weekday_starts_at_the_next_one() {
    // 2026-12-16 is a Wednesday.
    let m = friday_market(date(2026, 12, 16));
    assert!(!m.recurs_on(date(2026, 12, 16)));
    assert!(!m.recurs_on(date(2026, 12, 11)));
    assert_eq!(dates(&m.nights(&[], 0, 1)), [date(2026, 12, 18)]);
    assert_eq!(
        m.night(&[], date(2026, 12, 16)),
        Err(MarketError::NotAMarketNight(date(2026, 12, 16)))
    );
}

#[test]
fn a_night_may_cross_local_midnight() {
    let mut spec = friday_spec(date(2026, 12, 18));
    spec.start = time(23, 0, 0, 0);
    spec.duration_minutes = 180;
    let m = spec.validate().unwrap();
    let n = m.night(&[], date(2026, 12, 25)).unwrap();
    assert_eq!(n.local_start, date(2026, 12, 25).at(23, 0, 0, 0));
    assert_eq!(n.local_end, date(2026, 12, 26).at(2, 0, 0, 0));
    assert_eq!(n.starts_at, utc(date(2026, 12, 25), 16, 0));
    assert_eq!(n.ends_at - n.starts_at, 3 * HOUR);
    // At 01:00 on Saturday the Friday night is still on and is listed first, by its Friday date.
    let one_am_saturday = utc(date(2026, 12, 25), 18, 0);
    assert!(n.is_on(one_am_saturday));
    let listed = m.nights(&[], one_am_saturday, 2);
    assert_eq!(dates(&listed), [date(2026, 12, 25), date(2027, 1, 1)]);
}

#[test]
fn after_inside_a_night_lists_it_after_its_end_does_not() {
    let m = friday_market(date(2026, 12, 18));
    let n = m.night(&[], date(2026, 12, 25)).unwrap();
    for after in [
        n.starts_at - 1,
        n.starts_at,
        n.starts_at + HOUR,
        n.ends_at - 1,
    ] {
        assert_eq!(m.nights(&[], after, 1)[0].date, date(2026, 12, 25));
    }
    assert_eq!(m.nights(&[], n.ends_at, 1)[0].date, date(2027, 1, 1));
    assert!(m.nights(&[], n.starts_at, 0).is_empty());
    assert_eq!(m.nights(&[], 0, usize::MAX).len(), MAX_NIGHTS_LISTED);
    // Instants jiff cannot represent: before everything, after everything.
    assert_eq!(m.nights(&[], i64::MIN, 1)[0].date, date(2026, 12, 18));
    assert!(m.nights(&[], i64::MAX, 1).is_empty());
}

#[test]
fn dst_zone_keeps_local_time_and_moves_the_utc_instant() {
    let mut spec = friday_spec(date(2026, 3, 21));
    spec.time_zone = "Europe/Berlin".into();
    spec.weekdays = vec![Weekday::Saturday];
    let m = spec.validate().unwrap();
    let nights = m.nights(&[], 0, 2);
    // Before 2026-03-29 Berlin is UTC+1, after it UTC+2: 20:30 local either way.
    assert_eq!(dates(&nights), [date(2026, 3, 21), date(2026, 3, 28)]);
    assert_eq!(nights[1].starts_at, utc(date(2026, 3, 28), 19, 30));
    let after_change = m.night(&[], date(2026, 4, 4)).unwrap();
    assert_eq!(after_change.local_start, date(2026, 4, 4).at(20, 30, 0, 0));
    assert_eq!(after_change.starts_at, utc(date(2026, 4, 4), 18, 30));
    // The same at the end of summer time (2026-10-25).
    assert_eq!(
        m.night(&[], date(2026, 10, 24)).unwrap().starts_at,
        utc(date(2026, 10, 24), 18, 30)
    );
    assert_eq!(
        m.night(&[], date(2026, 10, 31)).unwrap().starts_at,
        utc(date(2026, 10, 31), 19, 30)
    );
}

#[test]
fn dst_night_lasts_its_duration_in_real_time() {
    // Saturday 23:00 for four hours, across the spring-forward at 02:00 on Sunday 2026-03-29.
    let mut spec = friday_spec(date(2026, 3, 1));
    spec.time_zone = "Europe/Berlin".into();
    spec.weekdays = vec![Weekday::Saturday];
    spec.start = time(23, 0, 0, 0);
    spec.duration_minutes = 240;
    let m = spec.validate().unwrap();
    let n = m.night(&[], date(2026, 3, 28)).unwrap();
    assert_eq!(n.starts_at, utc(date(2026, 3, 28), 22, 0));
    assert_eq!(n.ends_at, utc(date(2026, 3, 29), 2, 0));
    // Four hours later on the clock would be 03:00; the clock jumped, so it reads 04:00.
    assert_eq!(n.local_end, date(2026, 3, 29).at(4, 0, 0, 0));
}

#[test]
fn dst_gap_and_fold_are_resolved_compatibly() {
    // Sundays at 02:30 Berlin: on 2026-03-29 that time does not exist, on 2026-10-25 twice.
    let mut spec = friday_spec(date(2026, 3, 1));
    spec.time_zone = "Europe/Berlin".into();
    spec.weekdays = vec![Weekday::Sunday];
    spec.start = time(2, 30, 0, 0);
    spec.duration_minutes = 60;
    let m = spec.validate().unwrap();
    let gap = m.night(&[], date(2026, 3, 29)).unwrap();
    // Pushed forward by the gap: 03:30 CEST, 01:30 UTC.
    assert_eq!(gap.starts_at, utc(date(2026, 3, 29), 1, 30));
    assert_eq!(gap.local_start, date(2026, 3, 29).at(3, 30, 0, 0));
    let fold = m.night(&[], date(2026, 10, 25)).unwrap();
    // The earlier of the two 02:30s: still CEST, 00:30 UTC.
    assert_eq!(fold.starts_at, utc(date(2026, 10, 25), 0, 30));
    assert_eq!(fold.local_start, date(2026, 10, 25).at(2, 30, 0, 0));
    assert_eq!(fold.ends_at - fold.starts_at, HOUR);
}

// ----- exceptions ----------------------------------------------------------------------------

#[test]
fn tet_cancellation_is_listed_as_cancelled() {
    let m = friday_market(date(2026, 12, 18));
    let tet = [cancelled(date(2027, 2, 5), "Tết Nguyên Đán")];
    m.check_exceptions(&tet).unwrap();
    let nights = m.nights(&tet, utc(date(2027, 1, 30), 0, 0), 3);
    assert_eq!(
        dates(&nights),
        [date(2027, 2, 5), date(2027, 2, 12), date(2027, 2, 19)]
    );
    assert!(nights[0].is_cancelled());
    assert_eq!(
        nights[0].status,
        NightStatus::Cancelled {
            reason: "Tết Nguyên Đán".into()
        }
    );
    // Listed at its scheduled time.
    assert_eq!(nights[0].starts_at, utc(date(2027, 2, 5), 13, 30));
    assert!(!nights[1].is_cancelled());
    assert_eq!(m.night(&tet, date(2027, 2, 5)).unwrap(), nights[0]);
}

#[test]
fn moved_night_appears_at_its_new_time_in_order() {
    let m = friday_market(date(2026, 12, 18));
    // Friday 30 April moved to the next Saturday morning, after the Friday of 7 May.
    let to = date(2027, 5, 8).at(10, 0, 0, 0);
    let ex = [moved(date(2027, 4, 30), to)];
    m.check_exceptions(&ex).unwrap();
    let nights = m.nights(&ex, utc(date(2027, 4, 20), 0, 0), 4);
    assert_eq!(
        dates(&nights),
        [
            date(2027, 4, 23),
            date(2027, 5, 7),
            date(2027, 4, 30),
            date(2027, 5, 14)
        ]
    );
    let n = &nights[2];
    assert_eq!(n.local_start, to);
    assert_eq!(n.local_end, date(2027, 5, 8).at(12, 30, 0, 0));
    assert_eq!(n.starts_at, utc(date(2027, 5, 8), 3, 0));
    assert_eq!(n.ends_at - n.starts_at, 150 * MINUTE);
    assert_eq!(
        n.status,
        NightStatus::Moved {
            from: date(2027, 4, 30).at(20, 30, 0, 0)
        }
    );
    assert_eq!(&m.night(&ex, date(2027, 4, 30)).unwrap(), n);
    // Listing from after the original time but before the new one still finds it.
    let later = m.nights(&ex, utc(date(2027, 5, 1), 0, 0), 2);
    assert_eq!(dates(&later), [date(2027, 5, 7), date(2027, 4, 30)]);
    // A night moved earlier than `after`'s window start is still found by its new time.
    let early = [moved(date(2027, 4, 30), date(2027, 4, 29).at(20, 30, 0, 0))];
    m.check_exceptions(&early).unwrap();
    let listed = m.nights(&early, utc(date(2027, 4, 29), 0, 0), 2);
    assert_eq!(dates(&listed), [date(2027, 4, 30), date(2027, 5, 7)]);
    assert_eq!(listed[0].starts_at, utc(date(2027, 4, 29), 13, 30));
}

#[test]
fn exceptions_for_dates_the_market_does_not_meet_are_refused() {
    let mut spec = friday_spec(date(2026, 12, 18));
    spec.last_date = Some(date(2027, 12, 31));
    let m = spec.validate().unwrap();
    for d in [date(2027, 2, 4), date(2026, 12, 11), date(2028, 1, 7)] {
        assert_eq!(
            m.check_exceptions(&[cancelled(d, "Tết")]),
            Err(MarketError::NotAMarketNight(d))
        );
        assert_eq!(
            m.check_exceptions(&[moved(d, d.at(20, 30, 0, 0))]),
            Err(MarketError::NotAMarketNight(d))
        );
    }
    assert_eq!(
        m.check_exceptions(&[
            cancelled(date(2027, 2, 5), "Tết"),
            moved(date(2027, 2, 5), date(2027, 2, 6).at(20, 30, 0, 0)),
        ]),
        Err(MarketError::DuplicateException(date(2027, 2, 5)))
    );
    assert_eq!(
        m.check_exceptions(&[cancelled(date(2027, 2, 5), " ")]),
        Err(MarketError::Text(OcopError::Empty { field: "reason" }))
    );
    // Listing ignores an exception that cannot apply.
    let stray = [cancelled(date(2027, 2, 4), "Tết")];
    assert!(
        m.nights(&stray, utc(date(2027, 2, 1), 0, 0), 3)
            .iter()
            .all(|n| !n.is_cancelled())
    );
}

#[test]
fn a_move_onto_another_night_is_refused() {
    let m = friday_market(date(2026, 12, 18));
    let from = date(2027, 4, 30);
    // Overlapping the next Friday's night (20:30–23:00) by starting inside it or ending in it.
    for to in [
        date(2027, 5, 7).at(21, 0, 0, 0),
        date(2027, 5, 7).at(18, 1, 0, 0),
        date(2027, 5, 7).at(20, 30, 0, 0),
    ] {
        assert_eq!(
            m.check_exceptions(&[moved(from, to)]),
            Err(MarketError::MoveCollides {
                date: from,
                to,
                other: date(2027, 5, 7)
            })
        );
    }
    // Ending exactly when the next night starts, or starting when it ends, is fine.
    for to in [
        date(2027, 5, 7).at(18, 0, 0, 0),
        date(2027, 5, 7).at(23, 0, 0, 0),
    ] {
        m.check_exceptions(&[moved(from, to)]).unwrap();
    }
    // Moving within its own original time is fine; so is taking a cancelled night's time.
    m.check_exceptions(&[moved(from, from.at(21, 0, 0, 0))])
        .unwrap();
    m.check_exceptions(&[
        cancelled(date(2027, 5, 7), "bão"),
        moved(from, date(2027, 5, 7).at(20, 30, 0, 0)),
    ])
    .unwrap();
    // Two moved nights onto each other.
    let to = date(2027, 5, 5).at(20, 0, 0, 0);
    assert_eq!(
        m.check_exceptions(&[
            moved(from, to),
            moved(date(2027, 4, 23), date(2027, 5, 5).at(22, 0, 0, 0)),
        ]),
        Err(MarketError::MoveCollides {
            date: from,
            to,
            other: date(2027, 4, 23)
        })
    );
    // Onto a night that crosses midnight, from the following day.
    let mut spec = friday_spec(date(2026, 12, 18));
    spec.start = time(23, 0, 0, 0);
    spec.duration_minutes = 180;
    let late = spec.validate().unwrap();
    let to = date(2027, 5, 8).at(1, 0, 0, 0);
    assert_eq!(
        late.check_exceptions(&[moved(from, to)]),
        Err(MarketError::MoveCollides {
            date: from,
            to,
            other: date(2027, 5, 7)
        })
    );
}

#[test]
fn exceptions_round_trip_as_json() {
    let ex = moved(date(2027, 4, 30), date(2027, 4, 29).at(20, 30, 0, 0));
    let json = serde_json::to_value(&ex).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "kind": "moved",
            "date": "2027-04-30",
            "to": "2027-04-29T20:30:00",
            "reason": "Ngày Giải phóng miền Nam"
        })
    );
    assert_eq!(serde_json::from_value::<NightException>(json).unwrap(), ex);
    let m = friday_market(date(2026, 12, 18));
    let n = m.night(&[ex], date(2027, 4, 30)).unwrap();
    let back: Night = serde_json::from_value(serde_json::to_value(&n).unwrap()).unwrap();
    assert_eq!(back, n);
}

// ----- slots ---------------------------------------------------------------------------------

fn night() -> Night {
    friday_market(date(2026, 12, 18))
        .night(&[], date(2026, 12, 25))
        .unwrap()
}

fn slot(from_start_min: i64, minutes: i64) -> Slot {
    let n = night();
    Slot {
        starts_at: n.starts_at + from_start_min * MINUTE,
        ends_at: n.starts_at + (from_start_min + minutes) * MINUTE,
    }
}

#[test]
fn slot_must_fit_inside_the_night() {
    let n = night();
    check_slot(&n, slot(0, 150), &[]).unwrap();
    check_slot(&n, slot(30, 45), &[]).unwrap();
    for s in [slot(-1, 30), slot(130, 21), slot(-60, 300), slot(200, 10)] {
        assert_eq!(
            check_slot(&n, s, &[]),
            Err(SlotError::OutsideNight {
                date: n.date,
                night_starts_at: n.starts_at,
                night_ends_at: n.ends_at
            })
        );
    }
}

#[test]
fn slot_must_have_a_length() {
    let n = night();
    let s = slot(30, 0);
    assert_eq!(
        check_slot(&n, s, &[]),
        Err(SlotError::Empty {
            starts_at: s.starts_at,
            ends_at: s.ends_at
        })
    );
    assert!(matches!(
        check_slot(&n, slot(30, -10), &[]),
        Err(SlotError::Empty { .. })
    ));
}

#[test]
fn same_seller_may_not_be_in_two_shows_at_once() {
    let n = night();
    let others = [
        (show("honey-1"), slot(0, 30)),
        (show("tea-2"), slot(60, 30)),
    ];
    assert_eq!(
        check_slot(&n, slot(20, 20), &others),
        Err(SlotError::SellerBusy(show("honey-1")))
    );
    assert_eq!(
        check_slot(&n, slot(70, 10), &others),
        Err(SlotError::SellerBusy(show("tea-2")))
    );
    assert_eq!(
        check_slot(&n, slot(0, 150), &others),
        Err(SlotError::SellerBusy(show("honey-1")))
    );
    let e = check_slot(&n, slot(50, 20), &others).unwrap_err();
    assert_eq!(e.to_string(), "the seller's show tea-2 overlaps this time");
    // Back to back is fine.
    check_slot(&n, slot(30, 30), &others).unwrap();
    check_slot(&n, slot(90, 60), &others).unwrap();
}

#[test]
fn no_slot_in_a_cancelled_night() {
    let m = friday_market(date(2026, 12, 18));
    let n = m
        .night(&[cancelled(date(2026, 12, 25), "bão")], date(2026, 12, 25))
        .unwrap();
    assert_eq!(
        check_slot(&n, slot(0, 30), &[]),
        Err(SlotError::NightCancelled(date(2026, 12, 25)))
    );
}

#[test]
fn slot_in_a_moved_night_follows_its_new_time() {
    let m = friday_market(date(2026, 12, 18));
    let ex = [moved(
        date(2026, 12, 25),
        date(2026, 12, 26).at(19, 0, 0, 0),
    )];
    let n = m.night(&ex, date(2026, 12, 25)).unwrap();
    let at_new_time = Slot {
        starts_at: utc(date(2026, 12, 26), 12, 0),
        ends_at: utc(date(2026, 12, 26), 13, 0),
    };
    check_slot(&n, at_new_time, &[]).unwrap();
    assert!(matches!(
        check_slot(&n, slot(0, 30), &[]),
        Err(SlotError::OutsideNight { .. })
    ));
}

#[test]
fn show_timing() {
    let t = ShowTiming {
        slot: slot(30, 60),
        live_grace_ms: ShowTiming::minutes(10),
        close_grace_ms: ShowTiming::minutes(15),
    };
    let start = t.slot.starts_at;
    let end = t.slot.ends_at;
    assert!(!t.may_go_live(start - 10 * MINUTE - 1));
    assert!(t.may_go_live(start - 10 * MINUTE));
    assert!(!t.should_go_live(start - 1));
    assert!(t.should_go_live(start));
    assert!(t.may_go_live(end + 15 * MINUTE - 1));
    assert!(!t.should_close(end));
    assert!(!t.should_close(end + 15 * MINUTE - 1));
    assert!(t.should_close(end + 15 * MINUTE));
    assert!(!t.may_go_live(end + 15 * MINUTE));
    // No grace: live exactly at the start, closed exactly at the end; negative graces count as 0.
    let strict = ShowTiming {
        slot: t.slot,
        live_grace_ms: -5,
        close_grace_ms: 0,
    };
    assert!(!strict.may_go_live(start - 1));
    assert!(strict.may_go_live(start));
    assert!(strict.should_close(end));
}

// ----- properties ----------------------------------------------------------------------------

const ZONES: [&str; 5] = [
    "Asia/Ho_Chi_Minh",
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
];

fn arb_spec() -> impl Strategy<Value = MarketSpec> {
    (
        proptest::sample::subsequence((0i8..7).collect::<Vec<_>>(), 1..=7),
        0i8..24,
        0i8..60,
        1u32..=720,
        0usize..ZONES.len(),
        0i32..9_000,
        proptest::option::of(0i32..400),
        1i64..=5,
    )
        .prop_map(|(days, h, mi, duration, zone, first, span, stars)| {
            let first = date(2020, 1, 1)
                .checked_add(jiff::Span::new().days(first))
                .unwrap();
            MarketSpec {
                name: "Chợ phiên".into(),
                weekdays: days
                    .into_iter()
                    .map(|d| Weekday::from_monday_zero_offset(d).unwrap())
                    .collect(),
                start: time(h, mi, 0, 0),
                duration_minutes: duration,
                time_zone: ZONES[zone].into(),
                first_date: first,
                last_date: span.map(|s| first.checked_add(jiff::Span::new().days(s)).unwrap()),
                min_stars: Stars::parse(stars).unwrap(),
            }
        })
}

fn date_in(spec: &MarketSpec, offset: i32) -> Date {
    spec.first_date
        .checked_add(jiff::Span::new().days(offset))
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Nights come in strictly increasing start order, each ends after `after`, lasts exactly
    /// the market's duration, falls on a weekday of the market within its dates, and starts at
    /// the configured local time (or, in a DST gap, at the instant jiff's compatible rule gives).
    #[test]
    fn nights_follow_the_rule(
        spec in arb_spec(),
        after_offset in -30i32..3_000,
        after_minute in 0i64..1_440,
        limit in 0usize..40,
    ) {
        let m = spec.clone().validate().unwrap();
        let after = utc(date_in(&spec, after_offset), 0, 0) + after_minute * MINUTE;
        let nights = m.nights(&[], after, limit);
        prop_assert!(nights.len() <= limit);
        if spec.last_date.is_none() {
            prop_assert_eq!(nights.len(), limit);
        }
        for pair in nights.windows(2) {
            prop_assert!(pair[0].starts_at < pair[1].starts_at);
            prop_assert!(pair[0].ends_at <= pair[1].starts_at);
        }
        for n in &nights {
            prop_assert!(n.ends_at > after);
            prop_assert_eq!(n.ends_at - n.starts_at, i64::from(spec.duration_minutes) * MINUTE);
            prop_assert!(m.recurs_on(n.date));
            prop_assert!(spec.weekdays.contains(&n.date.weekday()));
            prop_assert_eq!(&n.status, &NightStatus::Scheduled);
            let expected = m
                .time_zone()
                .to_timestamp(n.date.to_datetime(spec.start))
                .unwrap()
                .as_millisecond();
            prop_assert_eq!(n.starts_at, expected);
            let zone = spec.time_zone.as_str();
            if zone == "Asia/Ho_Chi_Minh" || zone == "UTC" {
                prop_assert_eq!(n.local_start, n.date.to_datetime(spec.start));
                prop_assert_eq!(n.local_start.date().weekday(), n.date.weekday());
            }
            prop_assert_eq!(&m.night(&[], n.date).unwrap(), n);
        }
        // Nothing was skipped: the night before the first listed one has ended by `after`.
        if let Some(first) = nights.first() {
            let mut d = first.date.yesterday().unwrap();
            for _ in 0..8 {
                if m.recurs_on(d) {
                    prop_assert!(m.night(&[], d).unwrap().ends_at <= after);
                    break;
                }
                d = d.yesterday().unwrap();
            }
        }
    }

    /// Whatever exceptions pass validation, the nights that take place never overlap, come in
    /// start order, and every night is listed exactly once under its identity.
    #[test]
    fn valid_exceptions_keep_nights_apart(
        spec in arb_spec(),
        raw in proptest::collection::vec((0i32..60, any::<bool>(), -3i32..4, 0i8..24, 0i8..60), 0..6),
    ) {
        let m = spec.clone().validate().unwrap();
        let scheduled = m.nights(&[], i64::MIN, 60);
        prop_assume!(!scheduled.is_empty());
        let exceptions: Vec<NightException> = raw
            .into_iter()
            .map(|(pick, cancel, shift, h, mi)| {
                let d = scheduled[pick as usize % scheduled.len()].date;
                if cancel {
                    cancelled(d, "nghỉ")
                } else {
                    let to = d.checked_add(jiff::Span::new().days(shift)).unwrap().at(h, mi, 0, 0);
                    moved(d, to)
                }
            })
            .collect();
        prop_assume!(m.check_exceptions(&exceptions).is_ok());
        let after = utc(spec.first_date, 0, 0) - 7 * 24 * HOUR;
        let nights = m.nights(&exceptions, after, 20);
        let taking_place: Vec<&Night> = nights.iter().filter(|n| !n.is_cancelled()).collect();
        for pair in taking_place.windows(2) {
            prop_assert!(pair[0].ends_at <= pair[1].starts_at);
        }
        for pair in nights.windows(2) {
            prop_assert!(pair[0].starts_at <= pair[1].starts_at);
        }
        let mut ids = dates(&nights);
        ids.sort();
        ids.dedup();
        prop_assert_eq!(ids.len(), nights.len());
        for n in &nights {
            prop_assert_eq!(n.ends_at - n.starts_at, i64::from(spec.duration_minutes) * MINUTE);
            prop_assert_eq!(&m.night(&exceptions, n.date).unwrap(), n);
        }
    }
}
