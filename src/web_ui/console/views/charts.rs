//! Charts drawn on the server as inline SVG: no script, no external asset, so the
//! console's strict Content-Security-Policy stays as it is. Colours come from classes
//! of the console's stylesheet.

use maud::{html, Markup};

use crate::cluster::ClusterStatus;
use crate::store::{FleetSample, Transition};
use crate::time::{human_duration, utc, Timestamp};

/// A chart's drawing size: about the size it is shown at in half of a 1400-pixel wide
/// page, so its text stays readable.
const W: f64 = 700.0;
const H: f64 = 200.0;
/// The timeline's width (the page's full width).
const TW: f64 = 1000.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// One line of a chart: its legend, its CSS class, and its (time, value) points, each
/// value holding until the next point (a step line).
pub(crate) struct Series<'a> {
    pub(crate) label: &'a str,
    pub(crate) class: &'a str,
    pub(crate) points: Vec<(f64, f64)>,
}

/// A round upper bound of the axis above `max` (1, 2 or 5 × a power of ten).
fn nice_max(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * p)
}

/// A time axis label: the hour within a day, the day beyond.
fn tick_label(t: f64, span: f64) -> String {
    let s = utc(Timestamp::from_secs_f64(t));
    // "2026-12-05 05:43:00 UTC"
    if span <= 2.0 * 86_400.0 {
        s.get(11..16).unwrap_or(&s).to_string()
    } else {
        s.get(5..10).unwrap_or(&s).to_string()
    }
}

/// The top of a count axis: a multiple of 4 (at least 4), so that each of its four grid
/// lines is a whole number.
fn count_max(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 4.0;
    }
    4.0 * (nice_max(max) / 4.0).ceil().max((max / 4.0).ceil())
}

/// A step-line chart of `series` from `from` to `to`, values printed by `fmt`; with
/// `counts` the axis holds whole numbers.
pub(crate) fn step_chart(
    id: &str,
    title: &str,
    series: &[Series<'_>],
    (from, to): (Timestamp, Timestamp),
    counts: bool,
    fmt: fn(f64) -> String,
) -> Markup {
    let (t0, t1) = (
        from.as_secs_f64(),
        to.as_secs_f64().max(from.as_secs_f64() + 1.0),
    );
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let top = if counts {
        count_max(max)
    } else {
        nice_max(max)
    };
    let x = |t: f64| LEFT + (t.clamp(t0, t1) - t0) / (t1 - t0) * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / top) * (H - TOP - BOTTOM);
    let path = |points: &[(f64, f64)]| -> String {
        let mut d = String::new();
        let mut started = false;
        for &(t, v) in points.iter().filter(|p| p.0 <= t1) {
            let (px, py) = (x(t), y(v));
            if started {
                d.push_str(&format!("H{px:.1}V{py:.1}"));
            } else {
                d.push_str(&format!("M{px:.1},{py:.1}"));
                started = true;
            }
        }
        if started {
            d.push_str(&format!("H{:.1}", x(t1)));
        }
        d
    };
    let ticks = 6;
    html! {
        figure.chart id=(id) {
            figcaption { (title) }
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
                title { (title) }
                @for i in 0..=4 {
                    @let v = top * f64::from(i) / 4.0;
                    line.grid x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", y(v))) y2=(format!("{:.1}", y(v))) {}
                    text.axis x=(LEFT - 6.0) y=(format!("{:.1}", y(v) + 4.0)) text-anchor="end" { (fmt(v)) }
                }
                @for i in 0..=ticks {
                    @let t = t0 + (t1 - t0) * f64::from(i) / f64::from(ticks);
                    // The end labels inside the chart, not cut at its edges.
                    @let anchor = if i == 0 { "start" } else if i == ticks { "end" } else { "middle" };
                    text.axis x=(format!("{:.1}", x(t))) y=(H - 8.0) text-anchor=(anchor) { (tick_label(t, t1 - t0)) }
                }
                @for s in series {
                    path class={ "line " (s.class) } d=(path(&s.points)) {}
                }
            }
            p.legend {
                @for s in series {
                    span class={ "key " (s.class) } { (s.label) }
                    " "
                    @if let Some(last) = s.points.last() { strong { (fmt(last.1)) } }
                    " · "
                }
                span.muted { (utc(from)) " – " (utc(to)) }
            }
        }
    }
}

/// The fleet's clusters by status over time.
pub(crate) fn fleet_counts(samples: &[FleetSample], from: Timestamp, to: Timestamp) -> Markup {
    let pts = |f: fn(&FleetSample) -> f64| -> Vec<(f64, f64)> {
        samples.iter().map(|s| (s.at.as_secs_f64(), f(s))).collect()
    };
    step_chart(
        "fleet-chart",
        "Clusters by status",
        &[
            Series {
                label: "UP",
                class: "s-up",
                points: pts(|s| s.up as f64),
            },
            Series {
                label: "INIT",
                class: "s-init",
                points: pts(|s| s.init as f64),
            },
            Series {
                label: "STOPPED",
                class: "s-stopped",
                points: pts(|s| s.stopped as f64),
            },
        ],
        (from, to),
        true,
        |v| format!("{v:.0}"),
    )
}

/// The fleet's burn rate over time.
pub(crate) fn burn_rate(samples: &[FleetSample], from: Timestamp, to: Timestamp) -> Markup {
    step_chart(
        "burn-chart",
        "Burn rate ($/h of UP clusters)",
        &[Series {
            label: "$/h",
            class: "s-burn",
            points: samples
                .iter()
                .map(|s| (s.at.as_secs_f64(), s.burn))
                .collect(),
        }],
        (from, to),
        false,
        |v| format!("${v:.2}"),
    )
}

/// One span of a cluster's life in one status.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Span {
    pub(crate) status: ClusterStatus,
    pub(crate) from: Timestamp,
    pub(crate) to: Timestamp,
}

/// A cluster's spans by status, from its transitions (oldest first) up to `now`.
pub(crate) fn spans(transitions: &[Transition], now: Timestamp) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for (i, t) in transitions.iter().enumerate() {
        let end = transitions.get(i + 1).map_or(now, |n| n.at);
        out.push(Span {
            status: t.to,
            from: t.at,
            to: if end < t.at { t.at } else { end },
        });
    }
    out
}

/// A cluster's status timeline as one bar.
pub(crate) fn timeline(spans: &[Span], now: Timestamp) -> Markup {
    let Some(first) = spans.first() else {
        return html! { p.muted { "No transitions recorded." } };
    };
    let (t0, t1) = (
        first.from.as_secs_f64(),
        now.as_secs_f64().max(first.from.as_secs_f64() + 1.0),
    );
    let width = TW - LEFT - RIGHT;
    let x = |t: Timestamp| LEFT + (t.as_secs_f64().clamp(t0, t1) - t0) / (t1 - t0) * width;
    html! {
        figure.chart id="timeline" {
            svg viewBox={ "0 0 " (TW) " 56" } role="img" aria-label="Status timeline" {
                title { "Status timeline" }
                @for s in spans {
                    @let (a, b) = (x(s.from), x(s.to));
                    rect class={ "bar s-" (s.status.as_str().to_ascii_lowercase()) }
                        x=(format!("{a:.1}")) y="6" width=(format!("{:.1}", (b - a).max(1.0))) height="22" {
                        title { (s.status.as_str()) " from " (utc(s.from)) " for " (human_duration(s.to.secs_since(s.from))) }
                    }
                }
                text.axis x=(LEFT) y="46" text-anchor="start" { (utc(first.from)) }
                text.axis x=(TW - RIGHT) y="46" text-anchor="end" { "now" }
            }
            p.legend {
                @for st in [ClusterStatus::Init, ClusterStatus::Up, ClusterStatus::Stopped, ClusterStatus::Gone] {
                    @let total: f64 = spans.iter().filter(|s| s.status == st).map(|s| s.to.secs_since(s.from)).sum();
                    @if total > 0.0 {
                        span class={ "key s-" (st.as_str().to_ascii_lowercase()) } { (st.as_str()) }
                        " " (human_duration(total)) " · "
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn count_axes_hold_whole_numbers() {
        for (max, top) in [
            (0.0, 4.0),
            (1.0, 4.0),
            (5.0, 8.0),
            (1000.0, 1000.0),
            (1004.0, 2000.0),
        ] {
            let t = count_max(max);
            assert_eq!(t, top, "{max}");
            assert_eq!((t / 4.0).fract(), 0.0, "{max}: {t}");
        }
    }

    use super::*;

    #[test]
    fn axis_bounds_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(1004.0), 2000.0);
        assert_eq!(nice_max(0.37), 0.5);
        assert_eq!(nice_max(f64::NAN), 1.0);
    }

    #[test]
    fn spans_follow_transitions_up_to_now() {
        let t = |s| Timestamp::from_secs(s);
        let tr = |at, to| Transition {
            cluster: "a".into(),
            from: None,
            to,
            at: t(at),
        };
        let s = spans(
            &[
                tr(100, ClusterStatus::Init),
                tr(160, ClusterStatus::Up),
                tr(1000, ClusterStatus::Stopped),
            ],
            t(2000),
        );
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[1].status, s[1].from, s[1].to),
            (ClusterStatus::Up, t(160), t(1000))
        );
        assert_eq!(s[2].to, t(2000));
        let svg = timeline(&s, t(2000)).into_string();
        assert!(
            svg.contains("s-up") && svg.contains("UP from 1970-01-01 00:02:40 UTC for 14m"),
            "{svg}"
        );
    }

    #[test]
    fn a_chart_draws_every_series_with_its_last_value() {
        let sample = |at, up, burn| FleetSample {
            at: Timestamp::from_secs(at),
            init: 0,
            up,
            stopped: 2,
            burn,
            unpriced: 0,
        };
        let samples = [sample(1000, 3, 0.3), sample(2000, 5, 0.5)];
        let svg = fleet_counts(
            &samples,
            Timestamp::from_secs(0),
            Timestamp::from_secs(3600),
        )
        .into_string();
        assert!(
            svg.contains("<svg") && svg.contains("line s-up") && svg.contains("line s-stopped"),
            "{svg}"
        );
        assert!(svg.contains("<strong>5</strong>"), "{svg}");
        let burn = burn_rate(
            &samples,
            Timestamp::from_secs(0),
            Timestamp::from_secs(3600),
        )
        .into_string();
        assert!(burn.contains("<strong>$0.50</strong>"), "{burn}");
        assert!(!burn.contains("$-"), "{burn}");
    }
}
