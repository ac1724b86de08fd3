//! A readable, self-contained HTML invoice (no external assets).

use std::fmt::Write as _;

use super::model::{Component, DocumentKind, DocumentStatus, Invoice, Line};

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Groups digits by thousands for reading (`1234567` → `1,234,567`).
fn grouped(n: i64) -> String {
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

/// Money for a customer: `$1,234.56` and `−$12.00` in USD, `1,234.56 EUR` otherwise.
pub fn money(amount: rust_decimal::Decimal, currency: &str) -> String {
    let mut a = amount.round_dp(2);
    a.rescale(2);
    let negative = a.is_sign_negative() && !a.is_zero();
    let text = a.abs().to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, "00"));
    let int: i64 = int.parse().unwrap_or(0);
    let body = format!("{}.{frac}", grouped(int));
    let sign = if negative { "−" } else { "" };
    if currency == "USD" { format!("{sign}${body}") } else { format!("{sign}{body} {currency}") }
}

/// A unit price for a customer: every significant digit (prices per million tokens go below a
/// cent), at least two decimals.
fn unit_price(p: rust_decimal::Decimal, currency: &str) -> String {
    let n = p.normalize();
    let mut text = n.abs().to_string();
    match text.split_once('.') {
        None => text.push_str(".00"),
        Some((_, f)) if f.len() == 1 => text.push('0'),
        _ => {}
    }
    let sign = if n.is_sign_negative() && !n.is_zero() { "−" } else { "" };
    let (int, frac) = text.split_once('.').unwrap_or((&text, "00"));
    let body = format!("{}.{frac}", grouped(int.parse().unwrap_or(0)));
    if currency == "USD" { format!("{sign}${body}") } else { format!("{sign}{body} {currency}") }
}

/// A model's name for a customer: the price book's, else its id without the routing prefix
/// and version suffix (`us.anthropic.claude-haiku-4-5-20251001-v1:0` → `anthropic
/// claude-haiku-4-5`).
pub fn model_display(id: &str, name: Option<&str>) -> String {
    if let Some(n) = name {
        return n.to_owned();
    }
    let mut parts: Vec<&str> = id.split('.').collect();
    if parts.len() > 2 && matches!(parts[0], "us" | "eu" | "apac" | "global" | "jp" | "au") {
        parts.remove(0);
    }
    let joined = parts.join(" ");
    // Version suffixes (`-v1:0`, `-1:0`, `-20251001`) say nothing to a customer.
    let mut out = joined.as_str();
    if let Some(i) = out.rfind(':') {
        out = &out[..i];
    }
    let trimmed: Vec<&str> = out
        .split('-')
        .filter(|seg| {
            let date = seg.len() == 8 && seg.bytes().all(|b| b.is_ascii_digit());
            let version = seg.len() > 1
                && seg.starts_with('v')
                && seg[1..].bytes().all(|b| b.is_ascii_digit());
            !(date || version)
        })
        .collect();
    let t = trimmed.join("-");
    t.trim_end_matches("-1").to_owned()
}

/// What a line bills, in words: `Input tokens · Mistral Ministral 3 8B (priority tier)`.
pub fn describe(l: &Line) -> String {
    let what = match l.component {
        Component::InputTokens => "Input tokens",
        Component::OutputTokens => "Output tokens",
        Component::CacheReadTokens => "Prompt cache reads",
        Component::CacheWriteTokens => "Prompt cache writes (5 minutes)",
        Component::CacheWrite1hTokens => "Prompt cache writes (1 hour)",
        Component::ToolCalls => "Tool calls",
        Component::PlanFee => return format!("Plan fee · {} plan", l.tier),
        Component::IncludedUsage => {
            return "Included usage credit (usage covered by the plan fee, up to its allowance)"
                .to_owned();
        }
    };
    let mut s = what.to_owned();
    if let Some(m) = &l.model_id {
        s.push_str(" · ");
        s.push_str(&model_display(m.as_str(), l.model_name.as_deref()));
    }
    if let Some(c) = l.class.and_then(|c| c.describe()) {
        s.push_str(&format!(" ({c})"));
    }
    s
}

/// The quantity with its unit: `1,234,567 tokens`, `12 calls`, `1 month`.
fn quantity(l: &Line) -> String {
    match l.component {
        Component::PlanFee => format!("{} month", grouped(l.quantity)),
        Component::IncludedUsage => String::new(),
        Component::ToolCalls => format!("{} calls", grouped(l.quantity)),
        _ => format!("{} tokens", grouped(l.quantity)),
    }
}

fn price_unit(c: Component) -> &'static str {
    match c {
        Component::ToolCalls => "per call",
        Component::PlanFee => "per month",
        Component::IncludedUsage => "",
        _ => "per 1M tokens",
    }
}

/// `1–31 October 2026`.
fn period_words(period: &str) -> String {
    match super::model::Period::parse(period) {
        Ok(p) => {
            let last = p.end.pred_opt().unwrap_or(p.end);
            format!("{}–{} {}", p.start.format("%-d"), last.format("%-d"), p.start.format("%B %Y"))
        }
        Err(_) => period.to_owned(),
    }
}

fn month_words(period: &str) -> String {
    super::model::Period::parse(period)
        .map(|p| p.start.format("%B %Y").to_string())
        .unwrap_or_else(|_| period.to_owned())
}

const STYLE: &str = "*{box-sizing:border-box}body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:52rem;color:#1d2433;padding:0 1.5rem;font-size:14px;line-height:1.45}\
header{display:flex;justify-content:space-between;gap:2rem;align-items:flex-start;margin-bottom:2rem}\
h1{font-size:1.7rem;margin:0 0 .3rem}.muted{color:#5b6475}.parties{display:flex;gap:2rem;margin-bottom:1.5rem}.parties>div{flex:1}\
.label{text-transform:uppercase;letter-spacing:.06em;font-size:.72rem;color:#5b6475;margin-bottom:.2rem}\
dl.facts{display:grid;grid-template-columns:auto auto;gap:.15rem 1rem;margin:0}dl.facts dt{color:#5b6475}dl.facts dd{margin:0;text-align:right}\
table{border-collapse:collapse;width:100%}th,td{padding:.45rem .5rem;border-bottom:1px solid #e3e6ec;text-align:left;vertical-align:top}\
th{font-size:.75rem;text-transform:uppercase;letter-spacing:.04em;color:#5b6475}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
tr.group td{background:#f5f6f8;font-weight:600}tfoot td{border-bottom:none}tfoot tr.total td{font-weight:700;font-size:1.1rem;border-top:2px solid #1d2433}\
.stamp{display:inline-block;border:2px solid #b5472f;color:#b5472f;padding:.1rem .6rem;font-weight:700;letter-spacing:.1em;margin-left:.5rem;vertical-align:middle;font-size:.9rem}\
.warn{background:#fff4e5;border:1px solid #f0b75a;padding:.6rem 1rem;margin:1rem 0}.small{color:#5b6475;font-size:.8rem}footer{margin-top:2rem}\
@page{margin:15mm}@media print{body{margin:0;max-width:none;padding:0;font-size:11pt}tr{break-inside:avoid}thead{display:table-header-group}tfoot{display:table-row-group}}";

fn party(h: &mut String, label: &str, name: &str, lines: &[String]) {
    let _ = write!(h, "<div><div class=\"label\">{}</div><b>{}</b>", escape(label), escape(name));
    for l in lines {
        let _ = write!(h, "<br>{}", escape(l));
    }
    let _ = write!(h, "</div>");
}

/// The invoice (or credit note) as one self-contained, print-ready page for the customer: no
/// AWS cost, margin or price validity, which are internal.
pub fn invoice_page(inv: &Invoice) -> String {
    let e = |s: &str| escape(s);
    let cur = inv.currency.as_str();
    let title = match inv.document {
        DocumentKind::Invoice => "Invoice",
        DocumentKind::CreditNote => "Credit note",
    };
    let stamp = match inv.status {
        DocumentStatus::Issued => String::new(),
        DocumentStatus::Draft => "<span class=\"stamp\">DRAFT</span>".to_owned(),
        DocumentStatus::Preview => "<span class=\"stamp\">PREVIEW</span>".to_owned(),
    };
    let mut h = String::new();
    let number = if inv.invoice_number.is_empty() { "(not numbered)" } else { &inv.invoice_number };
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title} {num}</title><style>{STYLE}</style></head><body>\n<header><div>\
         <h1>{title}{stamp}</h1><div class=\"muted\">{num}</div></div><dl class=\"facts\">",
        num = e(number),
    );
    let mut fact = |k: &str, v: String| {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", e(k), e(&v));
    };
    if let Some(d) = inv.issue_date {
        fact("Issue date", d.format("%-d %B %Y").to_string());
    }
    if let Some(d) = inv.due_date {
        fact("Due date", d.format("%-d %B %Y").to_string());
    }
    fact("Billing period", period_words(&inv.period));
    if let Some(r) = &inv.references {
        let what = match inv.document {
            DocumentKind::CreditNote => "Credits",
            DocumentKind::Invoice => "Replaces",
        };
        fact(what, r.clone());
    }
    let _ = writeln!(h, "</dl></header>\n<div class=\"parties\">");
    match &inv.issuer {
        Some(i) => {
            let mut lines = i.address.clone();
            lines.extend(i.email.clone());
            lines.extend(i.tax_id.as_ref().map(|t| format!("Tax ID {t}")));
            party(&mut h, "From", &i.name, &lines);
        }
        None => party(&mut h, "From", "(issuer not configured)", &[]),
    }
    match &inv.bill_to {
        Some(b) => {
            let mut lines = b.address.clone();
            lines.extend(b.email.clone());
            lines.extend(b.customer_ids.iter().map(|(k, v)| format!("{k} customer {v}")));
            lines.push(format!("Account {}", inv.tenant_id));
            party(&mut h, "Bill to", &b.name, &lines);
        }
        None => party(&mut h, "Bill to", inv.tenant_id.as_str(), &[]),
    }
    let _ = writeln!(h, "</div>");
    match inv.status {
        DocumentStatus::Draft => {
            let _ = writeln!(
                h,
                "<div class=\"warn\">Draft: not yet issued; amounts may change until the period \
                 is closed.</div>"
            );
        }
        DocumentStatus::Preview => {
            let _ = writeln!(
                h,
                "<div class=\"warn\">Preview of the period to date: not an invoice.</div>"
            );
        }
        DocumentStatus::Issued => {}
    }
    if !inv.complete {
        let _ = writeln!(
            h,
            "<div class=\"warn\"><b>Incomplete:</b> some usage could not be priced yet and is not \
             on this document.<ul>"
        );
        for p in &inv.problems {
            let model = p
                .model_id
                .as_ref()
                .map(|m| format!("{}: ", model_display(m.as_str(), None)))
                .unwrap_or_default();
            let quantities = p.quantities(grouped);
            let quantities =
                if quantities.is_empty() { String::new() } else { format!(" ({quantities})") };
            let _ = writeln!(h, "<li>{}{}{}</li>", e(&model), e(&p.reason), e(&quantities));
        }
        let _ = writeln!(h, "</ul></div>");
    }
    let _ = writeln!(
        h,
        "<table><thead><tr><th>Description</th><th class=\"n\">Quantity</th>\
         <th class=\"n\">Unit price</th><th class=\"n\">Amount</th></tr></thead><tbody>"
    );
    let mut group: Option<Option<&str>> = None;
    let mut order: Vec<&Line> = inv.lines.iter().collect();
    // Late usage of earlier periods after the period's own lines, by period.
    order.sort_by_key(|l| l.adjusts_period.is_some());
    for l in order {
        let g = l.adjusts_period.as_deref();
        if group != Some(g) {
            if let Some(p) = g {
                let _ = writeln!(
                    h,
                    "<tr class=\"group\"><td colspan=\"4\">Late usage from {}, at that period's \
                     prices</td></tr>",
                    e(&month_words(p))
                );
            }
            group = Some(g);
        }
        let price = if l.component == Component::IncludedUsage {
            String::new()
        } else {
            format!("{} {}", unit_price(l.unit_price, cur), price_unit(l.component))
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            e(&describe(l)),
            e(&quantity(l)),
            e(&price),
            e(&money(l.amount, cur)),
        );
    }
    let subtotal: rust_decimal::Decimal = inv
        .lines
        .iter()
        .filter(|l| l.component != Component::IncludedUsage)
        .map(|l| l.amount)
        .sum();
    let credit: rust_decimal::Decimal = inv
        .lines
        .iter()
        .filter(|l| l.component == Component::IncludedUsage)
        .map(|l| l.amount)
        .sum();
    let _ = writeln!(
        h,
        "</tbody><tfoot><tr><td colspan=\"3\">Subtotal</td><td class=\"n\">{}</td></tr>",
        e(&money(subtotal, cur))
    );
    if !credit.is_zero() {
        let _ = writeln!(
            h,
            "<tr><td colspan=\"3\">Included usage credit</td><td class=\"n\">{}</td></tr>",
            e(&money(credit, cur))
        );
    }
    let _ = writeln!(
        h,
        "<tr class=\"total\"><td colspan=\"3\">{} ({})</td><td class=\"n\">{}</td></tr></tfoot></table>",
        if inv.document == DocumentKind::CreditNote { "Total credited" } else { "Total due" },
        e(cur),
        e(&money(inv.total, cur))
    );
    let _ = writeln!(h, "<footer>");
    if let Some(p) = inv.issuer.as_ref().and_then(|i| i.payment_instructions.as_deref()) {
        let _ = writeln!(h, "<p><b>Payment:</b> {}</p>", e(p));
    }
    let _ = writeln!(
        h,
        "<p class=\"small\">Token prices are per million tokens, tool call prices per call. Each \
         line is rounded to the cent; the total is the sum of the lines. Usage included in the plan \
         fee is credited up to the plan's allowance.</p>\n<p class=\"small\">{}Tokens billed from \
         the {}.</p>\n</footer>\n</body></html>",
        if inv.price_book_version.is_empty() {
            String::new()
        } else {
            format!("Price book {}. ", e(&inv.price_book_version))
        },
        match inv.usage_source {
            crate::prices::UsageSource::Logs => "usage logs",
            crate::prices::UsageSource::ChatSpans => "chat spans",
        }
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_prices_and_names_read_as_a_customer_expects() {
        use std::str::FromStr;
        let d = |s: &str| rust_decimal::Decimal::from_str(s).unwrap();
        assert_eq!(money(d("1234.5"), "USD"), "$1,234.50");
        assert_eq!(money(d("-12"), "USD"), "−$12.00");
        assert_eq!(money(d("0"), "USD"), "$0.00");
        assert_eq!(money(d("1234.56"), "EUR"), "1,234.56 EUR");
        assert_eq!(unit_price(d("0.1875"), "USD"), "$0.1875");
        assert_eq!(unit_price(d("49"), "USD"), "$49.00");
        assert_eq!(
            model_display("us.anthropic.claude-haiku-4-5-20251001-v1:0", None),
            "anthropic claude-haiku-4-5"
        );
        assert_eq!(model_display("openai.gpt-oss-120b-1:0", None), "openai gpt-oss-120b");
        assert_eq!(model_display("m", Some("Mistral Ministral 3 8B")), "Mistral Ministral 3 8B");
        assert_eq!(period_words("2026-10"), "1–31 October 2026");
    }

    #[test]
    fn escapes_and_groups() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(-12), "-12");
        assert_eq!(grouped(0), "0");
    }
}
