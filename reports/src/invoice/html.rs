//! A readable, self-contained HTML invoice (no external assets).

use std::fmt::Write as _;

use super::model::Invoice;

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

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:60rem;color:#1d2433;padding:0 1rem}\
h1{font-size:1.4rem;margin-bottom:.2rem}.meta{color:#5b6475;margin-bottom:1.5rem}\
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{padding:.4rem .6rem;border-bottom:1px solid #e3e6ec;text-align:left}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tfoot td{font-weight:600;border-top:2px solid #1d2433}\
.warn{background:#fff4e5;border:1px solid #f0b75a;padding:.6rem 1rem;margin:1rem 0}.small{color:#5b6475;font-size:.8rem}";

/// The invoice as one HTML page.
pub fn invoice_page(inv: &Invoice) -> String {
    let e = |s: &str| escape(s);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Invoice {num}</title><style>{STYLE}</style></head><body>\n\
         <h1>Invoice {num}</h1>\n<div class=\"meta\">Tenant <b>{tenant}</b> · tier {tier} · period {period} · \
         currency {cur}<br>Price book {book} · tokens billed from the {source}</div>\n",
        num = e(&inv.invoice_number),
        tenant = e(inv.tenant_id.as_str()),
        tier = e(inv.tier.as_str()),
        period = e(&inv.period),
        cur = e(&inv.currency),
        book = e(&inv.price_book_version),
        source = match inv.usage_source {
            crate::prices::UsageSource::Logs => "usage logs",
            crate::prices::UsageSource::ChatSpans => "chat spans",
        },
    );
    if !inv.complete {
        let _ = writeln!(
            h,
            "<div class=\"warn\"><b>Incomplete:</b> some usage could not be billed.<ul>"
        );
        for p in &inv.problems {
            let model = p.model_id.as_ref().map(|m| format!("{}: ", m)).unwrap_or_default();
            let quantities = p.quantities(grouped);
            let quantities =
                if quantities.is_empty() { String::new() } else { format!(" ({quantities})") };
            let _ = writeln!(h, "<li>{}{}{}</li>", e(&model), e(&p.reason), e(&quantities));
        }
        let _ = writeln!(h, "</ul></div>");
    }
    if inv.provisional {
        let _ = writeln!(
            h,
            "<div class=\"warn\">Provisional: AWS costs for some days are estimates.</div>"
        );
    }
    let _ = writeln!(
        h,
        "<table><thead><tr><th>#</th><th>Item</th><th>Model</th><th class=\"n\">Quantity</th>\
         <th class=\"n\">Unit price</th><th class=\"n\">Amount</th><th>Price valid</th></tr></thead><tbody>"
    );
    for (i, l) in inv.lines.iter().enumerate() {
        let price_unit = if l.component.per_million() { " / 1M" } else { "" };
        let valid = match (l.price_effective_from, l.price_effective_to) {
            (Some(f), Some(t)) => {
                format!("{} – {}", f.format("%Y-%m-%d %H:%M"), t.format("%Y-%m-%d %H:%M"))
            }
            (Some(f), None) => format!("from {}", f.format("%Y-%m-%d %H:%M")),
            _ => String::new(),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{} {}</td><td class=\"n\">{}{}</td>\
             <td class=\"n\">{}</td><td class=\"small\">{}</td></tr>",
            i + 1,
            e(&match l.class.and_then(|c| c.describe()) {
                Some(c) => format!("{} ({c})", l.component.code()),
                None => l.component.code().to_owned(),
            }),
            e(l.model_id.as_ref().map(|m| m.as_str()).unwrap_or("")),
            grouped(l.quantity),
            e(l.unit),
            e(&l.unit_price.normalize().to_string()),
            price_unit,
            e(&l.amount.to_string()),
            e(&valid),
        );
    }
    let _ = writeln!(
        h,
        "</tbody><tfoot><tr><td colspan=\"5\">Total</td><td class=\"n\">{} {}</td><td></td></tr></tfoot></table>",
        e(&inv.total.to_string()),
        e(&inv.currency)
    );
    let _ = writeln!(
        h,
        "<p class=\"small\">Amounts are rounded to the cent per line (half away from zero); the total is the sum of the lines. \
         Token prices are per million tokens; tool call prices are per call.</p>\n</body></html>"
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_groups() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(-12), "-12");
        assert_eq!(grouped(0), "0");
    }
}
