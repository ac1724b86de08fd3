//! Figures as people read them, shared by the report, the alert summaries and the flags'
//! messages: counts grouped by thousands, shares as percentages.

/// A number with at most one decimal, without a trailing `.0` (SVG attributes, ratios).
pub(crate) fn num(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    let s = format!("{r:.1}");
    let s = s.strip_suffix(".0").unwrap_or(&s);
    if s == "-0" { "0".to_owned() } else { s.to_owned() }
}

/// Groups digits by thousands (`1234567` → `1,234,567`).
pub(crate) fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A share as a percentage with one decimal (`0.2345` → `23.5%`).
pub(crate) fn pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// A flag's value or threshold: shares and budget fractions as percentages, ratios as
/// `6.1×`, counts as integers.
pub(crate) fn figure(metric: &str, v: f64) -> String {
    if matches!(metric, "pool_share" | "pool_utilization" | "budget_tokens" | "budget_usd") {
        pct(v)
    } else if metric.ends_with("_ratio") {
        format!("{}×", num(v))
    } else if v.fract() == 0.0 && v.abs() < 9.0e15 {
        grouped(v as i64)
    } else {
        format!("{v:.3}")
    }
}
