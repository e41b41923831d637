//! The targets a run is judged against, and how a measured figure is judged: met or not, and
//! by how much. Pure functions of the figures, so every verdict on the page is tested here.

/// Which way a figure should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// "**met**, 12% below the limit", "**not met**: 2.40× the limit; must fall by 58%", or
/// "not measured".
pub fn status(value: Option<f64>, limit: f64, better: Better) -> String {
    let Some(v) = value.filter(|v| v.is_finite()) else {
        return "not measured".into();
    };
    match better {
        Better::Lower if v <= limit => {
            if limit > 0.0 {
                format!("**met**, {:.0}% below the limit", (1.0 - v / limit) * 100.0)
            } else {
                "**met**".into()
            }
        }
        Better::Lower if limit > 0.0 => format!(
            "**not met**: {:.2}× the limit; must fall by {:.0}%",
            v / limit,
            (1.0 - limit / v) * 100.0
        ),
        Better::Lower => "**not met**".into(),
        Better::Higher if v >= limit => {
            format!(
                "**met**, {:.0}% above the target",
                (v / limit - 1.0) * 100.0
            )
        }
        Better::Higher if v > 0.0 => format!(
            "**not met**: {:.0}% short; must rise {:.0}%",
            (1.0 - v / limit) * 100.0,
            (limit / v - 1.0) * 100.0
        ),
        Better::Higher => "**not met**".into(),
    }
}

/// `a ÷ b`, when both are there and `b` is not zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// The worse of several figures that must all meet one limit (`None` if any is missing).
pub fn worst(values: &[Option<f64>], better: Better) -> Option<f64> {
    let all: Option<Vec<f64>> = values.iter().copied().collect();
    let all = all.filter(|v| !v.is_empty())?;
    let pick = |a: f64, b: f64| match better {
        Better::Lower => a.max(b),
        Better::Higher => a.min(b),
    };
    all.into_iter().reduce(pick)
}

/// How far, in percent, the figure furthest from the mean lies from it: "flat within ±15%"
/// holds when this is at most 15.
pub fn spread_percent(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    if mean <= 0.0 {
        return None;
    }
    values
        .iter()
        .map(|v| (v - mean).abs() / mean * 100.0)
        .reduce(f64::max)
}

/// Whether a run at `asked` events/s was below saturation on both sides: each reached the
/// rate (within [`RATE_SLACK`]) and its server was not busy all the time.
pub fn unsaturated(reached: Option<f64>, asked: f64, load: Option<f64>) -> bool {
    matches!((reached, load), (Some(r), Some(l)) if r >= asked * (1.0 - RATE_SLACK) && l < BUSY_CORE)
}

/// How far a publisher may fall short of its asked rate and still count as keeping it.
pub const RATE_SLACK: f64 = 0.05;
/// Share of a core above which a single-core server counts as saturated.
pub const BUSY_CORE: f64 = 0.9;

/// The cores that running `nodes` nodes at once "on enough cores" takes: one per node, one
/// for Redis and one for the load generators.
pub fn cores_for_nodes(nodes: usize) -> usize {
    nodes + 2
}

/// One row of the Goals table. `measure` is its stable first cell: a later partial run
/// finds the row by it and replaces it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub measure: String,
    pub target: String,
    pub measured: String,
    pub status: String,
}

impl Row {
    pub fn new(measure: &str, target: &str, measured: String, status: String) -> Self {
        Self {
            measure: measure.into(),
            target: target.into(),
            measured,
            status,
        }
    }

    /// The start of the row's line, which identifies it in the page.
    pub fn key(&self) -> String {
        format!("| {} |", self.measure)
    }

    pub fn line(&self) -> String {
        format!(
            "| {} | {} | {} | {} |",
            self.measure, self.target, self.measured, self.status
        )
    }
}

/// The stable first cells of the Goals rows, in the page's order.
pub mod measure {
    pub const USER_CPU: &str =
        "fan-out: our process's CPU per delivery ÷ nchan's (user time), 2k and 10k viewers";
    pub const TOTAL_CPU: &str = "fan-out: total CPU per delivery ÷ nchan's, 2k and 10k viewers";
    pub const P99: &str =
        "fan-out: p99 latency ÷ nchan's at a rate neither saturates, 2k and 10k viewers";
    pub const SCALE: &str = "fan-out: CPU per delivery from 1k to 18k viewers (the cost of scale)";
    pub const IDLE: &str = "idle RSS per viewer";
    pub const FRIDAY: &str = "a Friday night: 50 shows × 40 viewers vs 1 show × 2,000, 2 events/s per show, CPU per delivery ratio";
    pub const JOIN: &str = "join storm: 10k viewers joining at once, server CPU per join ÷ nchan's";
    pub const REDIS_CPU: &str = "Redis mode: server CPU per claim";
    pub const REDIS_RATE: &str = "Redis mode: accepted claims/s ÷ raw single-claim script rate";
    pub const EMBEDDED_RATE: &str = "embedded: accepted claims/s";
    pub const EMBEDDED_ACK: &str = "embedded: claim ack p99";
    pub const OVERSELL: &str = "one show: oversell";
    pub const NODES_SMALL: &str = "cross-node: 3 nodes × 1,000 viewers at 20 events/s, p99 on relay nodes − p99 on the seller's node";
    pub const NODES_LARGE: &str =
        "cross-node: the same at 3 nodes × 6,000 viewers, on enough cores";
    pub const OVERLOAD: &str = "overload: 10k viewers, seller at 20 events/s on one core";
    pub const SETTLEMENT: &str = "settlement of 1,000,000 claims";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn met_and_not_met_say_by_how_much() {
        assert_eq!(
            status(Some(0.4), 0.5, Better::Lower),
            "**met**, 20% below the limit"
        );
        assert_eq!(
            status(Some(1.2), 0.5, Better::Lower),
            "**not met**: 2.40× the limit; must fall by 58%"
        );
        assert_eq!(
            status(Some(0.66), 1.5, Better::Higher),
            "**not met**: 56% short; must rise 127%"
        );
        assert_eq!(
            status(Some(3.0), 1.5, Better::Higher),
            "**met**, 100% above the target"
        );
        assert_eq!(status(None, 1.0, Better::Lower), "not measured");
        assert_eq!(status(Some(f64::NAN), 1.0, Better::Lower), "not measured");
        assert_eq!(status(Some(0.0), 0.0, Better::Lower), "**met**");
        assert_eq!(status(Some(2.0), 0.0, Better::Lower), "**not met**");
    }

    #[test]
    fn both_sizes_must_meet_the_limit() {
        assert_eq!(worst(&[Some(0.4), Some(0.7)], Better::Lower), Some(0.7));
        assert_eq!(worst(&[Some(2.0), Some(1.6)], Better::Higher), Some(1.6));
        assert_eq!(worst(&[Some(0.4), None], Better::Lower), None);
        assert_eq!(worst(&[], Better::Lower), None);
    }

    #[test]
    fn ratios_need_both_figures() {
        assert_eq!(
            ratio(Some(8.16), Some(6.8)).map(|r| (r * 100.0).round()),
            Some(120.0)
        );
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
    }

    #[test]
    fn flatness_is_the_furthest_point_from_the_mean() {
        // Mean 10: 8.5 is 15% below it.
        let s = spread_percent(&[8.5, 10.0, 11.5]).unwrap();
        assert!((s - 15.0).abs() < 1e-9, "{s}");
        assert_eq!(spread_percent(&[5.0]), None);
        assert_eq!(spread_percent(&[0.0, 0.0]), None);
    }

    #[test]
    fn saturation_is_a_missed_rate_or_a_busy_core() {
        assert!(unsaturated(Some(20.1), 20.0, Some(0.3)));
        assert!(unsaturated(Some(19.1), 20.0, Some(0.3)));
        assert!(!unsaturated(Some(12.1), 20.0, Some(0.8)));
        assert!(!unsaturated(Some(20.0), 20.0, Some(0.95)));
        assert!(!unsaturated(None, 20.0, Some(0.1)));
    }

    #[test]
    fn rows_are_found_by_their_first_cell() {
        let r = Row::new(measure::IDLE, "≤ 4 KiB", "5.35 KiB".into(), "x".into());
        assert!(r.line().starts_with(&r.key()));
        assert_eq!(r.line(), "| idle RSS per viewer | ≤ 4 KiB | 5.35 KiB | x |");
    }
}
