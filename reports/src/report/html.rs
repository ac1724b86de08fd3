//! The report page: one self-contained HTML file (inline CSS and SVG, no script, no external
//! reference), deterministic for the same data.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use agentmeter_schemas::TenantId;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::data::{ReportData, TierUsage};
use super::svg::{
    self, Bar, HourlyChart, Line, PALETTE, REST_COLOUR, Rule, SATURATION_RULE_COLOUR,
    SHARE_RULE_COLOUR, Stack, figure, grouped, money, pct, threshold_pct,
};
use crate::flags::{Flag, FlagStatus, Severity};
use crate::invoice::export::MarginSummary;
use crate::invoice::html::escape;

/// The ids of the sections, in page order; `cost-revenue` is present only with a margin
/// summary. `scripts/check-report` looks for these.
pub const SECTION_IDS: [&str; 5] =
    ["summary", "pool-share", "daily-tokens", "cost-revenue", "flags"];

const STYLE: &str = "\
:root{--ink:#1d2433;--muted:#5b6475;--line:#e3e6ec;--bg:#f7f8fa}\
*{box-sizing:border-box}\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);margin:0;background:var(--bg)}\
main{max-width:1180px;margin:0 auto;padding:1.5rem 1.25rem 3rem}\
h1{font-size:1.6rem;margin:0 0 .25rem}h2{font-size:1.25rem;margin:0 0 .5rem}\
h3{font-size:1.05rem;margin:1.25rem 0 .4rem}\
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:1.1rem 1.25rem;margin:1.25rem 0}\
.meta,.lead,.note{color:var(--muted);font-size:.9rem;margin:.25rem 0 .75rem}\
.note{font-size:.85rem}\
.cards{display:flex;flex-wrap:wrap;gap:.75rem;margin:.75rem 0 1rem}\
.card{flex:1 1 10rem;border:1px solid var(--line);border-radius:6px;padding:.6rem .8rem;background:var(--bg)}\
.card b{display:block;font-size:1.35rem;font-variant-numeric:tabular-nums}\
.card span{color:var(--muted);font-size:.8rem}\
table{border-collapse:collapse;width:100%;font-size:.85rem;margin:.5rem 0}\
th,td{padding:.35rem .5rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}\
th{color:var(--muted);font-weight:600;background:var(--bg)}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}td.n,td.nw{white-space:nowrap}\
.scroll{overflow-x:auto}#flags table{font-size:.8rem}td.wrap{overflow-wrap:break-word;min-width:9rem}\
tfoot td{font-weight:600;border-top:2px solid var(--ink)}\
.sw{display:inline-block;width:.9rem;height:.9rem;border-radius:2px;vertical-align:-2px;margin-right:.35rem}\
.over{color:#c0392b;font-weight:600}\
.sev{display:inline-block;padding:0 .4rem;border-radius:3px;font-size:.75rem;font-weight:600}\
.sev-critical{background:#fde2e0;color:#a3261b}.sev-warning{background:#fff0d6;color:#8a5300}\
.sev-info{background:#e4edf7;color:#2c5282}\
.warn{background:#fff4e5;border:1px solid #f0b75a;border-radius:6px;padding:.5rem .8rem;font-size:.85rem}\
svg.chart{display:block;width:100%;height:auto;margin:.25rem 0}\
svg .grid{stroke:#e8ebf0;stroke-width:1}svg .day{stroke:#f1f3f6;stroke-width:1}\
svg .axis{stroke:#8a93a3;stroke-width:1}\
svg .tick{font-size:11px;fill:#5b6475}svg .axis-title{font-size:12px;fill:#5b6475}\
svg polyline{fill:none;stroke-width:1.4;stroke-linejoin:round;stroke-linecap:round}\
svg .rule-label{font-size:12px;font-weight:600;paint-order:stroke;stroke:#fff;stroke-width:4px;stroke-linejoin:round}\
svg .value{font-size:12px;fill:var(--ink);font-variant-numeric:tabular-nums}\
svg .group{font-size:13px;font-weight:600;fill:var(--ink)}svg .legend{font-size:12px;fill:var(--ink)}\
code{font-size:.85em;background:var(--bg);padding:0 .25rem;border-radius:3px;word-break:break-all}\
footer{color:var(--muted);font-size:.8rem;text-align:center}";

/// Renders the report as one self-contained HTML page.
///
/// The page uses inline `<style>` and `<svg>` only: no script, no external reference, so it
/// opens offline. Every string from the data is escaped. The same data gives the same bytes.
pub fn render(data: &ReportData) -> String {
    let colours = Colours::new(data);
    let mut charts = 0usize;
    let mut body = String::new();
    summary(&mut body, data);
    pool_share(&mut body, data, &colours, &mut charts);
    daily_tokens(&mut body, data, &colours, &mut charts);
    if let Some(m) = &data.margin {
        cost_revenue(&mut body, m, &mut charts);
    }
    flags(&mut body, &data.flags);

    let label = escape(&data.period.label());
    let mut h = String::with_capacity(body.len() + STYLE.len() + 512);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"agentmeter-charts\" content=\"{charts}\">\
         <title>agentmeter report {label}</title><style>{STYLE}</style></head>\n<body><main>\n\
         <header><h1>Usage report · {label}</h1>\
         <p class=\"meta\">Period {from} to {to} (UTC, end exclusive) · generated from the lake \
         <code>{lake}</code></p></header>\n{body}\
         <footer>agentmeter · {label} · hourly figures from usage_hourly; requests are inference \
         calls, tokens are the totals each call stated.</footer>\n</main></body></html>\n",
        from = data.period.start,
        to = data.period.end,
        lake = escape(&data.lake),
    );
    h
}

/// Colours per tenant, the same in every chart while the palette suffices.
struct Colours {
    by_tenant: BTreeMap<TenantId, &'static str>,
    distinct: bool,
}

impl Colours {
    fn new(data: &ReportData) -> Self {
        let mut by_tenant = BTreeMap::new();
        let order = data
            .tiers
            .iter()
            .flat_map(|t| t.top.iter().map(|s| &s.stats.tenant_id))
            .chain(data.daily.top.iter().map(|t| &t.tenant_id));
        for t in order {
            let next = PALETTE[by_tenant.len() % PALETTE.len()];
            by_tenant.entry(t.clone()).or_insert(next);
        }
        let distinct = by_tenant.len() <= PALETTE.len();
        Self { by_tenant, distinct }
    }

    /// The colours of one chart's tenants: the page-wide ones, or by rank when the palette
    /// ran out (so a chart never shows one colour twice while it has ten lines or fewer).
    fn of<'t>(&self, tenants: impl Iterator<Item = &'t TenantId>) -> Vec<&'static str> {
        tenants
            .enumerate()
            .map(|(i, t)| match self.by_tenant.get(t) {
                Some(c) if self.distinct => *c,
                _ => PALETTE[i % PALETTE.len()],
            })
            .collect()
    }
}

fn swatch(colour: &str) -> String {
    format!("<span class=\"sw\" style=\"background:{}\"></span>", escape(colour))
}

fn summary(h: &mut String, d: &ReportData) {
    let active = d.flags.iter().filter(|f| f.status == FlagStatus::Active).count();
    let _ = writeln!(
        h,
        "<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">\
         <div class=\"card\"><b>{}</b><span>requests</span></div>\
         <div class=\"card\"><b>{}</b><span>tokens</span></div>\
         <div class=\"card\"><b>{}</b><span>tenants</span></div>\
         <div class=\"card\"><b>{}</b><span>tiers</span></div>\
         <div class=\"card\"><b>{}</b><span>flags ({} active)</span></div></div>",
        grouped(d.requests),
        grouped(d.tokens),
        d.tenants,
        d.tiers.len(),
        d.flags.len(),
        active
    );
    let line = threshold_pct(d.share_threshold);
    let _ = write!(
        h,
        "<div class=\"scroll\"><table><thead><tr><th>Tier</th><th class=\"n\">Requests</th><th class=\"n\">Tokens</th>\
         <th class=\"n\">Tenants</th><th class=\"n\">Peak requests / h</th>\
         <th class=\"n\">Capacity / h</th><th class=\"n\">Hours above {sat} of capacity</th>\
         <th class=\"n\">Tenants above {line} (any hour)</th></tr></thead><tbody>",
        sat = threshold_pct(d.saturation_threshold),
    );
    for t in &d.tiers {
        let over = t.top.iter().filter(|s| s.stats.hours_over > 0).count() + t.others_over.len();
        let peak = t.pool_requests.iter().copied().max().unwrap_or(0);
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(t.tier.as_str()),
            grouped(t.requests),
            grouped(t.tokens),
            t.tenants,
            grouped(peak),
            t.capacity_per_hour.map(|c| grouped(c as i64)).unwrap_or_else(|| "—".into()),
            if t.capacity_per_hour.is_some() {
                t.hours_saturated.to_string()
            } else {
                "—".into()
            },
            over,
        );
    }
    let _ = writeln!(
        h,
        "</tbody><tfoot><tr><td>All tiers</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
         <td class=\"n\">{}</td><td colspan=\"4\"></td></tr></tfoot></table></div>",
        grouped(d.requests),
        grouped(d.tokens),
        d.tenants
    );
    if !d.models.is_empty() {
        h.push_str(
            "<h3>Models</h3><div class=\"scroll\"><table><thead><tr><th>Tier</th><th>Model</th><th class=\"n\">Requests</th>\
             <th class=\"n\">Tokens</th><th class=\"n\">Tenants</th></tr></thead><tbody>",
        );
        for m in &d.models {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td></tr>",
                escape(m.tier.as_str()),
                escape(m.model_id.as_str()),
                grouped(m.requests),
                grouped(m.tokens),
                m.tenants
            );
        }
        h.push_str("</tbody></table></div>\n");
    }
    for n in &d.notes {
        let _ = writeln!(h, "<p class=\"warn\">{}</p>", escape(n));
    }
    h.push_str("</section>\n");
}

fn pool_share(h: &mut String, d: &ReportData, colours: &Colours, charts: &mut usize) {
    let line = threshold_pct(d.share_threshold);
    let _ = writeln!(
        h,
        "<section id=\"pool-share\"><h2>Pool share over time</h2><p class=\"lead\">Each line is \
         one of a tier's busiest tenants (by requests): its requests in each hour as a share of \
         the pool (of the configured capacity, else of the pool's own requests that hour). A \
         tenant that stays above the dashed {line} line is a candidate to move to a silo.</p>"
    );
    for t in &d.tiers {
        tier_share(h, d, t, colours, charts);
    }
    h.push_str("</section>\n");
}

fn tier_share(
    h: &mut String,
    d: &ReportData,
    t: &TierUsage,
    colours: &Colours,
    charts: &mut usize,
) {
    let tier = t.tier.as_str();
    let line = threshold_pct(d.share_threshold);
    let denominator = match t.capacity_per_hour {
        Some(c) => format!("of a capacity of {} requests per hour", grouped(c as i64)),
        None => "of the pool's requests in each hour (no capacity configured)".to_owned(),
    };
    let _ = write!(h, "<h3>Tier {}</h3>", escape(tier));
    let cols = colours.of(t.top.iter().map(|s| &s.stats.tenant_id));
    let peak = t.top.iter().map(|s| s.stats.peak_share).fold(0.0, f64::max);
    // The busiest tenant is drawn last, on top.
    let lines = t
        .top
        .iter()
        .zip(&cols)
        .rev()
        .map(|(s, c)| Line {
            class: "tenant",
            colour: c,
            values: &s.share,
            title: format!(
                "{}: peak {} of the pool; above {line} in {} of {} active hours",
                s.stats.tenant_id,
                pct(s.stats.peak_share),
                s.stats.hours_over,
                s.stats.hours_active
            ),
        })
        .collect();
    h.push_str(&svg::hourly_chart(&HourlyChart {
        label: format!(
            "Tier {tier}: hourly share of the pool for the top {} tenants by requests, with the \
             {line} silo-migration line",
            t.top.len()
        ),
        class: "share",
        days: &d.daily.days,
        hours: d.hours,
        y: svg::percent_scale(peak.max(d.share_threshold * 1.25), "share of pool"),
        lines,
        rules: vec![Rule {
            value: d.share_threshold,
            label: format!("{line} silo-migration line"),
            colour: SHARE_RULE_COLOUR,
        }],
        height: 320.0,
    }));
    *charts += 1;
    let _ = write!(
        h,
        "<p class=\"note\">Shares are {denominator}.</p><div class=\"scroll\"><table class=\"legend\"><thead><tr>\
         <th>Tenant</th><th class=\"n\">Requests</th><th class=\"n\">Share of tier requests</th>\
         <th class=\"n\">Tokens</th><th class=\"n\">Peak hourly share</th>\
         <th class=\"n\">Hours above {line} / active</th></tr></thead><tbody>"
    );
    for (s, c) in t.top.iter().zip(&cols) {
        let of_tier =
            if t.requests > 0 { s.stats.requests as f64 / t.requests as f64 } else { 0.0 };
        let over = if s.stats.hours_over > 0 { " class=\"n over\"" } else { " class=\"n\"" };
        let _ = write!(
            h,
            "<tr><td>{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td{over}>{} / {}</td></tr>",
            swatch(c),
            escape(s.stats.tenant_id.as_str()),
            grouped(s.stats.requests),
            pct(of_tier),
            grouped(s.tokens),
            pct(s.stats.peak_share),
            s.stats.hours_over,
            s.stats.hours_active,
        );
    }
    h.push_str("</tbody></table></div>\n");
    if !t.others_over.is_empty() {
        let list: Vec<String> = t
            .others_over
            .iter()
            .map(|s| {
                format!(
                    "{} ({} h, peak {})",
                    escape(s.tenant_id.as_str()),
                    s.hours_over,
                    pct(s.peak_share)
                )
            })
            .collect();
        let _ = writeln!(
            h,
            "<p class=\"note\">Outside the top {}, also above {line} in some hour: {}.</p>",
            t.top.len(),
            list.join(", ")
        );
    }
    pool_chart(h, d, t, charts);
}

/// Utilization against the saturation line when a capacity is configured, else the pool's
/// requests per hour (the scale behind the shares).
fn pool_chart(h: &mut String, d: &ReportData, t: &TierUsage, charts: &mut usize) {
    let tier = t.tier.as_str();
    let counts: Vec<f64>;
    let chart = match (&t.utilization, t.capacity_per_hour) {
        (Some(u), Some(cap)) => {
            let sat = threshold_pct(d.saturation_threshold);
            let peak = u.iter().copied().fold(0.0, f64::max);
            HourlyChart {
                label: format!(
                    "Tier {tier}: pool utilization per hour against a capacity of {} requests \
                     per hour, with the {sat} saturation line",
                    grouped(cap as i64)
                ),
                class: "utilization",
                days: &d.daily.days,
                hours: d.hours,
                y: svg::percent_scale(peak.max(d.saturation_threshold * 1.25), "utilization"),
                lines: vec![Line {
                    class: "pool",
                    colour: "#34495e",
                    values: u,
                    title: format!(
                        "Pool {tier}: peak {} of capacity; above {sat} in {} hours",
                        pct(peak),
                        t.hours_saturated
                    ),
                }],
                rules: vec![Rule {
                    value: d.saturation_threshold,
                    label: format!("{sat} saturation line"),
                    colour: SATURATION_RULE_COLOUR,
                }],
                height: 220.0,
            }
        }
        _ => {
            counts = t.pool_requests.iter().map(|&n| n as f64).collect();
            let peak = t.pool_requests.iter().copied().max().unwrap_or(0);
            HourlyChart {
                label: format!("Tier {tier}: the pool's requests per hour"),
                class: "pool-requests",
                days: &d.daily.days,
                hours: d.hours,
                y: svg::count_scale(peak, "requests / h"),
                lines: vec![Line {
                    class: "pool",
                    colour: "#34495e",
                    values: &counts,
                    title: format!("Pool {tier}: peak {} requests in an hour", grouped(peak)),
                }],
                rules: Vec::new(),
                height: 200.0,
            }
        }
    };
    let caption = if t.capacity_per_hour.is_some() {
        "Pool utilization: the tier's requests per hour over its capacity."
    } else {
        "The pool's requests per hour: hours with little traffic make shares jump."
    };
    let _ = write!(h, "<p class=\"note\">{caption}</p>");
    h.push_str(&svg::hourly_chart(&chart));
    *charts += 1;
}

fn daily_tokens(h: &mut String, d: &ReportData, colours: &Colours, charts: &mut usize) {
    let daily = &d.daily;
    let cols = colours.of(daily.top.iter().map(|t| &t.tenant_id));
    let mut stacks: Vec<Stack<'_>> = daily
        .top
        .iter()
        .zip(&cols)
        .map(|(t, c)| Stack { name: t.tenant_id.to_string(), colour: c, values: &t.tokens })
        .collect();
    let rest_name = format!("rest ({} tenants)", daily.rest_tenants);
    if daily.rest_tenants > 0 {
        stacks.push(Stack { name: rest_name.clone(), colour: REST_COLOUR, values: &daily.rest });
    }
    let _ = write!(
        h,
        "<section id=\"daily-tokens\"><h2>Daily tokens per tenant</h2><p class=\"lead\">Tokens per \
         UTC day, all tiers: the top {} tenants by tokens, and the rest together.</p>",
        daily.top.len()
    );
    h.push_str(&svg::stacked_days(
        &format!(
            "Daily tokens: stacked bars per day for the top {} tenants and the rest",
            daily.top.len()
        ),
        &daily.days,
        &stacks,
        "tokens",
    ));
    *charts += 1;
    h.push_str(
        "<div class=\"scroll\"><table class=\"legend\"><thead><tr><th>Tenant</th><th class=\"n\">Tokens</th>\
         <th class=\"n\">Share of tokens</th><th class=\"n\">Busiest day</th></tr></thead><tbody>",
    );
    let rest_total: i64 = daily.rest.iter().sum();
    let rows = daily
        .top
        .iter()
        .zip(&cols)
        .map(|(t, c)| (*c, t.tenant_id.to_string(), t.total, t.tokens.as_slice()))
        .chain((daily.rest_tenants > 0).then_some((
            REST_COLOUR,
            rest_name.clone(),
            rest_total,
            daily.rest.as_slice(),
        )));
    for (c, name, total, per_day) in rows {
        let share = if d.tokens > 0 { total as f64 / d.tokens as f64 } else { 0.0 };
        let busiest = per_day
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(&a.0)))
            .and_then(|(i, v)| daily.days.get(i).map(|day| format!("{day} ({})", grouped(*v))))
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td>{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            swatch(c),
            escape(&name),
            grouped(total),
            pct(share),
            escape(&busiest),
        );
    }
    h.push_str("</tbody></table></div></section>\n");
}

fn cost_revenue(h: &mut String, m: &MarginSummary, charts: &mut usize) {
    let cur = escape(&m.currency);
    let series = [
        ("Revenue", "#4e79a7"),
        ("Allocated AWS cost", "#f28e2b"),
        ("Unallocated cost", "#bab0ac"),
    ];
    let mut max = Decimal::ZERO;
    let groups: Vec<(String, Vec<Bar>)> = m
        .tiers
        .iter()
        .map(|t| {
            let figures = [t.revenue, t.allocated_cost, t.unallocated_cost];
            let bars = figures
                .iter()
                .zip(series)
                .map(|(v, (name, _))| {
                    max = max.max(*v);
                    Bar {
                        // Geometry only; the label is the exact figure.
                        value: v.to_f64().unwrap_or(0.0),
                        label: money(*v),
                        title: format!("{}: {name} {} {}", t.tier, money(*v), m.currency),
                    }
                })
                .collect();
            (format!("{} (margin {})", t.tier, money(t.margin)), bars)
        })
        .collect();
    let top = max.ceil().to_i64().unwrap_or(i64::MAX);
    let scale = svg::count_scale(top, &m.currency);
    let _ = write!(
        h,
        "<section id=\"cost-revenue\"><h2>Cost against revenue per tier</h2><p class=\"lead\">From \
         the invoice run of {}: revenue invoiced to each tier's tenants, the AWS cost allocated to \
         them, and the tier's cost no tenant carries ({cur}).</p>",
        escape(&m.period)
    );
    h.push_str(&svg::grouped_bars(
        "Cost against revenue per tier: revenue, allocated AWS cost and unallocated cost",
        &groups,
        &series,
        &scale,
    ));
    *charts += 1;
    let _ = write!(
        h,
        "<div class=\"scroll\"><table><thead><tr><th>Tier</th><th class=\"n\">Revenue</th><th class=\"n\">Allocated AWS cost</th>\
         <th class=\"n\">Unallocated cost</th><th class=\"n\">Margin</th></tr></thead><tbody>"
    );
    for t in &m.tiers {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&t.tier),
            money(t.revenue),
            money(t.allocated_cost),
            money(t.unallocated_cost),
            money(t.margin),
        );
    }
    let r = &m.reconciliation;
    let _ = writeln!(
        h,
        "</tbody></table></div><p class=\"note\">Cost with no tier: {} {cur}. Cost Explorer total {} {cur} \
         = allocated {} + unallocated {}: {}.</p></section>",
        money(m.untiered_cost),
        money(r.cost_explorer_total),
        money(r.allocated),
        money(r.unallocated),
        if r.reconciled { "reconciled" } else { "<b class=\"over\">does not reconcile</b>" },
    );
}

/// Escaped, with a line-break opportunity after each `_` (for snake_case codes in narrow
/// columns).
fn breakable(s: &str) -> String {
    escape(s).replace('_', "_<wbr>")
}

/// Escaped, with a line-break opportunity after each `:` and `_` (trace and span ids, figure
/// names), so that long tokens wrap at a boundary instead of widening the table.
fn breakable_long(s: &str) -> String {
    escape(s).replace(':', ":<wbr>").replace('_', "_<wbr>")
}

fn instant(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

fn flags(h: &mut String, flags: &[Flag]) {
    h.push_str("<section id=\"flags\"><h2>Flags</h2>");
    if flags.is_empty() {
        h.push_str("<p class=\"lead\">No flags for this period.</p></section>\n");
        return;
    }
    let _ = write!(
        h,
        "<p class=\"lead\">{} flags whose window meets the period, active first.</p>\
         <div class=\"scroll\"><table><thead><tr><th>Kind</th><th>Tier / tenant</th><th>Window (UTC)</th>\
         <th>Measured</th><th>Evidence</th><th>Recommended action</th><th>Severity</th></tr></thead><tbody>",
        flags.len()
    );
    for f in flags {
        let e = &f.evidence;
        let mut ev = Vec::new();
        if let (Some(o), Some(a)) = (e.hours_over, e.hours_active) {
            ev.push(format!("{o} / {a} h over"));
        } else if let Some(o) = e.hours_over {
            ev.push(format!("{o} h over"));
        }
        if let Some(days) = e.days_over {
            ev.push(format!("{days} days over"));
        }
        for (k, v) in &e.figures {
            ev.push(format!("{k} {}", figure(k, *v)));
        }
        for (k, v) in &e.amounts {
            ev.push(format!("{k} {v}"));
        }
        if let Some(i) = &e.invocation {
            ev.push(format!("invocation {i}"));
        }
        let (sev, class) = match f.severity {
            Severity::Critical => ("critical", "sev-critical"),
            Severity::Warning => ("warning", "sev-warning"),
            Severity::Info => ("info", "sev-info"),
        };
        let status = match f.status {
            FlagStatus::Active => "active",
            FlagStatus::Resolved => "resolved",
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}<br>{}</td><td class=\"nw\">{}<br>→ {}</td><td>{}<br>\
             <b>{}</b> (line {})</td><td class=\"wrap\">{}</td><td class=\"wrap\">{}</td>\
             <td><span class=\"sev {class}\">{sev}</span><br>{status}</td></tr>",
            breakable(f.kind.code()),
            escape(f.tier.as_str()),
            escape(f.tenant_id.as_ref().map(|t| t.as_str()).unwrap_or("(pool)")),
            instant(f.window_start),
            instant(f.window_end),
            breakable(&f.metric),
            escape(&figure(&f.metric, f.value)),
            escape(&figure(&f.metric, f.threshold)),
            breakable_long(&ev.join("; ")),
            breakable_long(&f.recommended_action),
        );
    }
    h.push_str("</tbody></table></div></section>\n");
}
