//! CSV files as finance opens them: in a spreadsheet, which runs a cell starting with `=`,
//! `+`, `-`, `@`, a tab or a carriage return as a formula (CSV injection). A model id is the
//! tenants' own text and may start so (`=HYPERLINK("http://x","y")`). Every CSV file agentmeter
//! writes goes through [`Writer`], which writes each cell through [`cell`]: such a text cell
//! gets a leading `'` (OWASP's advice), so the spreadsheet shows it as text; a number
//! (`-1.50`, a credit note's amount) stays a number.

use std::borrow::Cow;

/// What a spreadsheet reads as the start of a formula.
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `value` as a cell no spreadsheet runs: with a leading `'` when it starts with `=`, `+`,
/// `-`, `@`, a tab or a carriage return and is not a number; otherwise as it is.
pub fn cell(value: &str) -> Cow<'_, str> {
    if value.starts_with(FORMULA_START) && !is_number(value) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// A decimal as agentmeter writes numbers: an optional `-`, digits, then optionally a `.` and
/// digits.
fn is_number(v: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = v.strip_prefix('-').unwrap_or(v);
    match unsigned.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(unsigned),
    }
}

/// A CSV file in memory, every cell written through [`cell`]: the one way agentmeter writes
/// CSV (clippy refuses `csv::Writer`'s constructors elsewhere).
pub struct Writer(csv::Writer<Vec<u8>>);

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    /// An empty file.
    pub fn new() -> Self {
        #[allow(clippy::disallowed_methods)]
        Self(csv::Writer::from_writer(Vec::new()))
    }

    /// Writes one record.
    ///
    /// # Errors
    ///
    /// Only if writing to memory fails, which would be a bug.
    pub fn row<I>(&mut self, cells: I) -> csv::Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        for c in cells {
            self.0.write_field(cell(c.as_ref()).as_bytes())?;
        }
        self.0.write_record(None::<&[u8]>)
    }

    /// The file's bytes.
    ///
    /// # Errors
    ///
    /// Only if writing to memory fails, which would be a bug.
    pub fn finish(self) -> csv::Result<Vec<u8>> {
        self.0.into_inner().map_err(|e| csv::Error::from(e.into_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_would_run_as_a_formula_gets_a_quote() {
        for (value, want) in [
            (r#"=HYPERLINK("http://x","y")"#, r#"'=HYPERLINK("http://x","y")"#),
            ("@SUM(1)", "'@SUM(1)"),
            ("+SUM(1)", "'+SUM(1)"),
            ("-2+3+cmd|'/C calc'!A0", "'-2+3+cmd|'/C calc'!A0"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("-", "'-"),
            ("-1.", "'-1."),
            ("-.5", "'-.5"),
            ("-1e5", "'-1e5"),
            ("-0x1", "'-0x1"),
        ] {
            assert_eq!(cell(value), want, "{value:?}");
        }
    }

    #[test]
    fn numbers_and_other_text_are_left_as_they_are() {
        for value in [
            "-1.50",
            "-0.0000003",
            "-12",
            "0",
            "1.25",
            "",
            "clinic-a",
            "mistral.ministral-3-8b-instruct",
            "a=b",
            " =1",
            "'=1",
            "2026-10-01T00:00:00Z",
            "{\"x_TenantId\":\"clinic-a\"}",
        ] {
            assert!(matches!(cell(value), Cow::Borrowed(v) if v == value), "{value:?}");
        }
    }

    #[test]
    fn a_file_holds_the_escaped_cells_exactly() {
        let mut w = Writer::new();
        w.row(["model_id", "amount"]).unwrap();
        w.row([r#"=HYPERLINK("http://x","y")"#, "-1.50"]).unwrap();
        w.row(["@SUM(1)", "-0.01"]).unwrap();
        w.row(["\r=1", "12"]).unwrap();
        w.row(["\t-1", "-3"]).unwrap();
        let want = "model_id,amount\n\
                    \"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",-1.50\n\
                    '@SUM(1),-0.01\n\
                    \"'\r=1\",12\n\
                    '\t-1,-3\n";
        assert_eq!(String::from_utf8(w.finish().unwrap()).unwrap(), want);
    }
}
