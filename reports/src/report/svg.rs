//! Chart primitives, and the number formats the charts and the page share.
//!
//! Charts are plain inline SVG (no script, no external reference), with axes, ticks,
//! `<title>` tooltips and `role="img"` labels.
//!
//! Coordinates are `f64` rounded to one decimal; they are geometry only. Every figure printed
//! as text comes from an integer or, for money, from a `Decimal` formatted by the caller.

use std::fmt::Write as _;

use chrono::{Datelike, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};

pub(crate) use crate::format::{figure, grouped, num, pct};
use crate::invoice::html::escape;

/// Series colours (after Tableau 10, red last so it does not meet the silo-migration line
/// early): distinguishable, and readable on white.
pub(crate) const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#c9a227", "#76b7b2", "#9c755f", "#ff9da7",
    "#2f4b7c", "#e15759",
];
/// The "rest" of a stacked chart.
pub(crate) const REST_COLOUR: &str = "#c9ced8";
/// The silo-migration line.
pub(crate) const SHARE_RULE_COLOUR: &str = "#c0392b";
/// The saturation line.
pub(crate) const SATURATION_RULE_COLOUR: &str = "#8e44ad";

/// Most points drawn per line: longer series keep the maximum of each bucket.
pub(crate) const MAX_POINTS: usize = 750;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;

/// A count with a k/M/B suffix for axis ticks (`1500000` → `1.5M`, `250000` → `250k`).
pub(crate) fn si(n: i64) -> String {
    let sign = if n < 0 { "-" } else { "" };
    let a = n.unsigned_abs();
    for (unit, suffix) in [(1_000_000_000u64, "B"), (1_000_000, "M"), (1_000, "k")] {
        if a >= unit {
            let tenths = (a * 10 + unit / 2) / unit;
            let (whole, frac) = (tenths / 10, tenths % 10);
            return if frac == 0 || whole >= 100 {
                format!("{sign}{}{suffix}", (a + unit / 2) / unit)
            } else {
                format!("{sign}{whole}.{frac}{suffix}")
            };
        }
    }
    format!("{sign}{a}")
}

/// Money for reading: rounded to the cent (half away from zero), digits grouped; from the
/// `Decimal`, never through a float.
pub(crate) fn money(d: Decimal) -> String {
    let s = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero).to_string();
    let (sign, s) = s.strip_prefix('-').map(|r| ("-", r)).unwrap_or(("", s.as_str()));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}.{frac:0<2}")
}

/// A threshold as a percentage without a needless decimal (`0.2` → `20%`).
pub(crate) fn threshold_pct(t: f64) -> String {
    format!("{}%", num(t * 100.0))
}

/// A y axis: the value at the top of the plot and the labelled ticks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct YScale {
    /// The value drawn at the top edge.
    pub top: f64,
    /// `(value, label)` from the bottom up.
    pub ticks: Vec<(f64, String)>,
    /// The axis title.
    pub title: String,
}

/// A percentage axis for shares (fractions): 0–50% in 10% steps when `max` fits, else 0–100%,
/// or higher in 25% steps to hold `max`.
pub(crate) fn percent_scale(max: f64, title: &str) -> YScale {
    let title = title.to_owned();
    if max.is_finite() && max <= 0.5 {
        let ticks = (0..=5).map(|i| (f64::from(i) / 10.0, format!("{}%", i * 10))).collect();
        return YScale { top: 0.5, ticks, title };
    }
    let quarters = if max.is_finite() && max > 1.0 { (max * 4.0).ceil() as i64 } else { 4 };
    let step = match quarters {
        ..=6 => 1,
        7..=12 => 2,
        _ => (quarters / 4).max(1),
    };
    let ticks = (0..=quarters)
        .step_by(step as usize)
        .map(|q| (q as f64 / 4.0, format!("{}%", q * 25)))
        .collect();
    YScale { top: quarters as f64 / 4.0, ticks, title }
}

/// A count axis with "nice" integer steps (1, 2, 2.5, 5 × 10ⁿ) and k/M labels.
pub(crate) fn count_scale(max: i64, title: &str) -> YScale {
    let max = max.max(1).unsigned_abs();
    let raw = max.div_ceil(4);
    let mut mag = 1u64;
    while mag.saturating_mul(10) <= raw {
        mag = mag.saturating_mul(10);
    }
    let mut step = mag.saturating_mul(10);
    for (num, den) in [(1, 1), (2, 1), (5, 2), (5, 1)] {
        let s = mag.saturating_mul(num) / den;
        if s >= raw && s.saturating_mul(den) == mag.saturating_mul(num) {
            step = s;
            break;
        }
    }
    let steps = max.div_ceil(step);
    let top = step.saturating_mul(steps);
    let label = |v: u64| si(i64::try_from(v).unwrap_or(i64::MAX));
    let ticks = (0..=steps).map(|i| (i as f64 * step as f64, label(i * step))).collect();
    YScale { top: top as f64, ticks, title: title.to_owned() }
}

/// The plot area of one chart.
struct Frame {
    height: f64,
    top: f64,
}

impl Frame {
    fn plot_w(&self) -> f64 {
        WIDTH - LEFT - RIGHT
    }
    fn bottom(&self) -> f64 {
        self.height - BOTTOM
    }
    fn plot_h(&self) -> f64 {
        self.bottom() - self.top
    }
    fn y(&self, scale: &YScale, v: f64) -> f64 {
        let f = if scale.top > 0.0 { (v / scale.top).clamp(0.0, 1.0) } else { 0.0 };
        self.bottom() - f * self.plot_h()
    }
}

fn open(out: &mut String, height: f64, label: &str, class: &str) {
    let _ = write!(
        out,
        "<svg class=\"chart {class}\" role=\"img\" aria-label=\"{l}\" viewBox=\"0 0 {w} {h}\" \
         preserveAspectRatio=\"xMidYMid meet\"><title>{l}</title>",
        l = escape(label),
        w = num(WIDTH),
        h = num(height),
    );
}

/// Horizontal grid lines, tick labels and the y title.
fn y_axis(out: &mut String, f: &Frame, scale: &YScale) {
    out.push_str("<g class=\"y-axis\">");
    for (v, label) in &scale.ticks {
        let y = num(f.y(scale, *v));
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{l}\" x2=\"{r}\" y1=\"{y}\" y2=\"{y}\"/>\
             <text class=\"tick\" x=\"{tx}\" y=\"{y}\" dy=\"4\" text-anchor=\"end\">{t}</text>",
            l = num(LEFT),
            r = num(WIDTH - RIGHT),
            tx = num(LEFT - 6.0),
            t = escape(label),
        );
    }
    let cy = num(f.top + f.plot_h() / 2.0);
    let _ = write!(
        out,
        "<text class=\"axis-title\" x=\"14\" y=\"{cy}\" text-anchor=\"middle\" \
         transform=\"rotate(-90 14 {cy})\">{}</text></g>",
        escape(&scale.title)
    );
}

/// Day ticks under the plot: a mark at each day boundary, the day of month centred in its
/// band, and the axis title.
fn day_axis(out: &mut String, f: &Frame, days: &[NaiveDate]) {
    let band = f.plot_w() / days.len().max(1) as f64;
    let bottom = f.bottom();
    out.push_str("<g class=\"x-axis\">");
    for (i, d) in days.iter().enumerate() {
        let x = LEFT + i as f64 * band;
        let _ = write!(
            out,
            "<line class=\"day\" x1=\"{x}\" x2=\"{x}\" y1=\"{t}\" y2=\"{b}\"/>\
             <text class=\"tick\" x=\"{c}\" y=\"{ty}\" text-anchor=\"middle\">{day}</text>",
            x = num(x),
            t = num(f.top),
            b = num(bottom + 4.0),
            c = num(x + band / 2.0),
            ty = num(bottom + 16.0),
            day = d.day(),
        );
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{l}\" x2=\"{r}\" y1=\"{b}\" y2=\"{b}\"/>\
         <text class=\"axis-title\" x=\"{c}\" y=\"{ty}\" text-anchor=\"middle\">Day of month (UTC)</text></g>",
        l = num(LEFT),
        r = num(WIDTH - RIGHT),
        b = num(bottom),
        c = num(LEFT + f.plot_w() / 2.0),
        ty = num(bottom + 36.0),
    );
}

/// The largest value of each bucket, at the bucket's centre (in hours), so a line keeps its
/// peaks with at most `max_points` points.
pub(crate) fn downsample_max(values: &[f64], max_points: usize) -> Vec<(f64, f64)> {
    let bucket = values.len().div_ceil(max_points.max(1)).max(1);
    values
        .chunks(bucket)
        .enumerate()
        .map(|(i, c)| {
            let centre = (i * bucket) as f64 + c.len() as f64 / 2.0;
            (centre, c.iter().copied().fold(0.0, f64::max))
        })
        .collect()
}

/// One line of an hourly chart.
pub(crate) struct Line<'a> {
    /// CSS class (`tenant`, `pool`).
    pub class: &'static str,
    /// Stroke colour.
    pub colour: &'a str,
    /// One value per hour.
    pub values: &'a [f64],
    /// Tooltip.
    pub title: String,
}

/// A dashed horizontal reference line with its label.
pub(crate) struct Rule {
    /// Where, on the y scale.
    pub value: f64,
    /// The label drawn above its right end.
    pub label: String,
    /// Colour.
    pub colour: &'static str,
}

/// A line chart over the hours of a period.
pub(crate) struct HourlyChart<'a> {
    /// `aria-label` and SVG title.
    pub label: String,
    /// CSS class of the `<svg>`.
    pub class: &'static str,
    /// The period's days (the x axis).
    pub days: &'a [NaiveDate],
    /// Hours in the period.
    pub hours: usize,
    /// The y axis.
    pub y: YScale,
    /// The lines, drawn in order.
    pub lines: Vec<Line<'a>>,
    /// Reference lines, drawn over the data.
    pub rules: Vec<Rule>,
    /// Total height.
    pub height: f64,
}

/// Draws an [`HourlyChart`].
pub(crate) fn hourly_chart(c: &HourlyChart<'_>) -> String {
    let f = Frame { height: c.height, top: TOP };
    let mut out = String::new();
    open(&mut out, c.height, &c.label, c.class);
    y_axis(&mut out, &f, &c.y);
    day_axis(&mut out, &f, c.days);
    let hours = c.hours.max(1) as f64;
    for line in &c.lines {
        let _ = write!(
            out,
            "<polyline class=\"{}\" stroke=\"{}\" points=\"",
            line.class,
            escape(line.colour)
        );
        for (i, (h, v)) in downsample_max(line.values, MAX_POINTS).into_iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let x = LEFT + h / hours * f.plot_w();
            let _ = write!(out, "{},{}", num(x), num(f.y(&c.y, v)));
        }
        let _ = write!(out, "\"><title>{}</title></polyline>", escape(&line.title));
    }
    for r in &c.rules {
        let y = num(f.y(&c.y, r.value));
        let _ = write!(
            out,
            "<g class=\"rule\"><title>{t}</title><line x1=\"{l}\" x2=\"{rx}\" y1=\"{y}\" y2=\"{y}\" \
             stroke=\"{c}\" stroke-width=\"1.5\" stroke-dasharray=\"7 4\"/>\
             <text class=\"rule-label\" x=\"{tx}\" y=\"{y}\" dy=\"-5\" text-anchor=\"end\" fill=\"{c}\">{t}</text></g>",
            t = escape(&r.label),
            l = num(LEFT),
            rx = num(WIDTH - RIGHT),
            tx = num(WIDTH - RIGHT - 4.0),
            c = r.colour,
        );
    }
    out.push_str("</svg>");
    out
}

/// One layer of a stacked bar chart.
pub(crate) struct Stack<'a> {
    /// Shown in tooltips.
    pub name: String,
    /// Fill.
    pub colour: &'a str,
    /// One value per day.
    pub values: &'a [i64],
}

/// Stacked bars per day, first stack at the bottom; zero parts are not drawn.
pub(crate) fn stacked_days(
    label: &str,
    days: &[NaiveDate],
    stacks: &[Stack<'_>],
    unit: &str,
) -> String {
    let height = 340.0;
    let f = Frame { height, top: TOP };
    let totals: Vec<i64> = (0..days.len())
        .map(|d| stacks.iter().map(|s| s.values.get(d).copied().unwrap_or(0)).sum())
        .collect();
    let scale = count_scale(totals.iter().copied().max().unwrap_or(0), unit);
    let mut out = String::new();
    open(&mut out, height, label, "stacked");
    y_axis(&mut out, &f, &scale);
    day_axis(&mut out, &f, days);
    let band = f.plot_w() / days.len().max(1) as f64;
    let bar = band * 0.72;
    for (d, day) in days.iter().enumerate() {
        let x = num(LEFT + d as f64 * band + (band - bar) / 2.0);
        let mut base = 0i64;
        for s in stacks {
            let v = s.values.get(d).copied().unwrap_or(0);
            if v <= 0 {
                continue;
            }
            let (y0, y1) = (f.y(&scale, base as f64), f.y(&scale, (base + v) as f64));
            base += v;
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{c}\">\
                 <title>{day} · {n}: {v} {unit}</title></rect>",
                y = num(y1),
                w = num(bar),
                h = num(y0 - y1),
                c = escape(s.colour),
                n = escape(&s.name),
                v = grouped(v),
                unit = escape(unit),
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// One bar of a grouped bar chart.
pub(crate) struct Bar {
    /// Height on the scale (geometry only; negative values draw as zero).
    pub value: f64,
    /// The figure printed above the bar, exact.
    pub label: String,
    /// Tooltip.
    pub title: String,
}

/// Bars side by side per group (one colour per position), each labelled with its figure, and a
/// legend of the positions.
pub(crate) fn grouped_bars(
    label: &str,
    groups: &[(String, Vec<Bar>)],
    series: &[(&str, &str)],
    scale: &YScale,
) -> String {
    let height = 360.0;
    let f = Frame { height, top: TOP + 28.0 };
    let mut out = String::new();
    open(&mut out, height, label, "grouped");
    y_axis(&mut out, &f, scale);
    let band = f.plot_w() / groups.len().max(1) as f64;
    let per = series.len().max(1) as f64;
    let bar = (band * 0.8 / per).min(120.0);
    let bottom = f.bottom();
    for (g, (name, bars)) in groups.iter().enumerate() {
        let start = LEFT + g as f64 * band + (band - bar * per) / 2.0;
        for (i, b) in bars.iter().enumerate() {
            let colour = series.get(i).map(|s| s.1).unwrap_or(REST_COLOUR);
            let x = start + i as f64 * bar;
            let y = f.y(scale, b.value.max(0.0));
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{c}\"><title>{t}</title></rect>\
                 <text class=\"value\" x=\"{cx}\" y=\"{y}\" dy=\"-5\" text-anchor=\"middle\">{l}</text>",
                x = num(x + 3.0),
                y = num(y),
                w = num(bar - 6.0),
                h = num(bottom - y),
                c = colour,
                t = escape(&b.title),
                cx = num(x + bar / 2.0),
                l = escape(&b.label),
            );
        }
        let _ = write!(
            out,
            "<text class=\"group\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            num(LEFT + g as f64 * band + band / 2.0),
            num(bottom + 20.0),
            escape(name)
        );
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{l}\" x2=\"{r}\" y1=\"{b}\" y2=\"{b}\"/>",
        l = num(LEFT),
        r = num(WIDTH - RIGHT),
        b = num(bottom)
    );
    let mut x = LEFT + 8.0;
    for (name, colour) in series {
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text class=\"legend\" x=\"{}\" y=\"{}\">{}</text>",
            num(x),
            num(TOP - 6.0),
            num(x + 17.0),
            num(TOP + 4.0),
            escape(name)
        );
        x += 26.0 + 7.5 * name.chars().count() as f64;
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn money_is_rounded_half_away_and_grouped() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(money(d("1234567.005")), "1,234,567.01");
        assert_eq!(money(d("-0.125")), "-0.13");
        assert_eq!(money(d("12")), "12.00");
        assert_eq!(money(d("0.5")), "0.50");
    }

    #[test]
    fn coordinates_and_tick_labels() {
        assert_eq!(
            (num(12.34), num(-0.04), num(5.0), num(2.25)),
            ("12.3".into(), "0".into(), "5".into(), "2.3".into())
        );
        let labels: Vec<String> =
            [0, 999, 1_000, 1_500, 250_000, 1_500_000, 2_500_000_000].into_iter().map(si).collect();
        assert_eq!(labels, ["0", "999", "1k", "1.5k", "250k", "1.5M", "2.5B"]);
        assert_eq!(grouped(-1_234_567), "-1,234,567");
    }

    #[test]
    fn scales_have_nice_steps() {
        let ticks = |s: YScale| (s.top, s.ticks.into_iter().map(|t| t.1).collect::<Vec<_>>());
        assert_eq!(ticks(count_scale(0, "")), (1.0, vec!["0".into(), "1".into()]));
        assert_eq!(
            ticks(count_scale(87, "")),
            (100.0, vec!["0", "25", "50", "75", "100"].into_iter().map(String::from).collect())
        );
        assert_eq!(ticks(count_scale(14_400_000, "")).1, ["0", "5M", "10M", "15M"]);
        assert_eq!(ticks(percent_scale(0.3, "")).1, ["0%", "10%", "20%", "30%", "40%", "50%"]);
        assert_eq!(ticks(percent_scale(0.77, "")).1, ["0%", "25%", "50%", "75%", "100%"]);
        assert_eq!(ticks(percent_scale(1.3, "")).0, 1.5);
    }

    #[test]
    fn long_series_keep_their_peaks_in_at_most_750_points() {
        let month: Vec<f64> = (0..744).map(f64::from).collect();
        assert_eq!(downsample_max(&month, MAX_POINTS).len(), 744);
        let mut long = vec![0.0; 1500];
        long[7] = 0.9;
        let points = downsample_max(&long, MAX_POINTS);
        assert_eq!(points.len(), 750);
        assert_eq!(points[3], (7.0, 0.9));
    }
}
