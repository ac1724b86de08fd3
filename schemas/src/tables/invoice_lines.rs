//! `invoice_lines`: one row per invoice line, money as exact decimals.

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, SchemaRef};

use super::{utc_millis, with_version};
use crate::{ModelId, TenantId, Tier};

/// Scale of unit prices in the lake (USD per million tokens and per call).
pub const UNIT_PRICE_SCALE: i8 = 12;
/// Scale of amounts in the lake (cents).
pub const AMOUNT_SCALE: i8 = 2;

static INVOICE_LINES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let fields = vec![
        Field::new("invoice_number", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("tier", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
        Field::new("component", DataType::Utf8, false),
        Field::new("model_id", DataType::Utf8, true),
        Field::new("quantity", DataType::Int64, false),
        Field::new("unit", DataType::Utf8, false),
        Field::new("unit_price", DataType::Decimal128(38, UNIT_PRICE_SCALE), false),
        Field::new("amount", DataType::Decimal128(38, AMOUNT_SCALE), false),
        Field::new("currency", DataType::Utf8, false),
        Field::new("price_effective_from", utc_millis(), true),
        Field::new("price_effective_to", utc_millis(), true),
        Field::new("price_book_version", DataType::Utf8, false),
        Field::new("provisional", DataType::Boolean, false),
        // Version 2: the price class of usage lines (null on fee and credit lines).
        Field::new("service_tier", DataType::Utf8, true),
        Field::new("long_context", DataType::Boolean, true),
        // Version 3: late usage of a closed period billed in this one, and the document's
        // status (draft or issued).
        Field::new("adjusts_period", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
    ];
    with_version(fields, "3")
});

/// Schema of `invoice_lines`.
pub fn invoice_lines_schema() -> SchemaRef {
    INVOICE_LINES_SCHEMA.clone()
}

/// One row of `invoice_lines`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLineRow {
    /// Invoice number.
    pub invoice_number: String,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Tier the line was priced under.
    pub tier: Tier,
    /// 1-based line number within the invoice.
    pub line: i64,
    /// Component (`input_tokens`, `plan_fee`, ...).
    pub component: String,
    /// Model, for usage lines.
    pub model_id: Option<ModelId>,
    /// Quantity in `unit`s.
    pub quantity: i64,
    /// Unit of the quantity (`tokens`, `calls`, `month`, `usd`).
    pub unit: String,
    /// Unit price (per million for tokens).
    pub unit_price: rust_decimal::Decimal,
    /// Amount, in cents precision.
    pub amount: rust_decimal::Decimal,
    /// Currency code.
    pub currency: String,
    /// Start of the price's validity, milliseconds, if dated.
    pub price_effective_from_ms: Option<i64>,
    /// End of the price's validity, milliseconds, if it ends.
    pub price_effective_to_ms: Option<i64>,
    /// Price book version that priced the line.
    pub price_book_version: String,
    /// True if the invoice rests on estimated (not final) costs.
    pub provisional: bool,
    /// The service tier of a usage line's calls (`standard`, `priority`, ...).
    pub service_tier: Option<String>,
    /// Whether a usage line's calls were priced at long-context prices.
    pub long_context: Option<bool>,
    /// The closed period (`YYYY-MM`) whose late usage the line bills.
    pub adjusts_period: Option<String>,
    /// The document's status: `draft` or `issued`.
    pub status: String,
}

/// A decimal as the mantissa at `scale`, or an error if it does not fit exactly.
fn decimal_mantissa(d: rust_decimal::Decimal, scale: i8, what: &str) -> Result<i128, ArrowError> {
    let mut x = d;
    x.rescale(scale as u32);
    if x != d || x.scale() != scale as u32 {
        return Err(ArrowError::InvalidArgumentError(format!(
            "{what} {d} does not fit {scale} decimal places"
        )));
    }
    Ok(x.mantissa())
}

/// Builds an `invoice_lines` record batch.
///
/// # Errors
///
/// A price or amount with more decimal places than its column.
pub fn invoice_lines_batch(rows: &[InvoiceLineRow]) -> Result<RecordBatch, ArrowError> {
    use arrow_array::builder::{BooleanBuilder, Decimal128Builder};
    let n = rows.len();
    let mut text: [StringBuilder; 4] =
        std::array::from_fn(|_| StringBuilder::with_capacity(n, n * 16));
    let mut line = Int64Builder::with_capacity(n);
    let mut model = StringBuilder::with_capacity(n, n * 16);
    let mut quantity = Int64Builder::with_capacity(n);
    let mut unit = StringBuilder::with_capacity(n, n * 8);
    let mut unit_price =
        Decimal128Builder::with_capacity(n).with_precision_and_scale(38, UNIT_PRICE_SCALE)?;
    let mut amount =
        Decimal128Builder::with_capacity(n).with_precision_and_scale(38, AMOUNT_SCALE)?;
    let mut currency = StringBuilder::with_capacity(n, n * 3);
    let mut from = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut to = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut version = StringBuilder::with_capacity(n, n * 24);
    let mut provisional = BooleanBuilder::with_capacity(n);
    let mut service_tier = StringBuilder::with_capacity(n, n * 8);
    let mut long_context = BooleanBuilder::with_capacity(n);
    let mut adjusts = StringBuilder::with_capacity(n, n * 7);
    let mut status = StringBuilder::with_capacity(n, n * 6);
    for r in rows {
        text[0].append_value(&r.invoice_number);
        text[1].append_value(r.tenant_id.as_str());
        text[2].append_value(r.tier.as_str());
        line.append_value(r.line);
        text[3].append_value(&r.component);
        model.append_option(r.model_id.as_ref().map(ModelId::as_str));
        quantity.append_value(r.quantity);
        unit.append_value(&r.unit);
        unit_price.append_value(decimal_mantissa(r.unit_price, UNIT_PRICE_SCALE, "unit_price")?);
        amount.append_value(decimal_mantissa(r.amount, AMOUNT_SCALE, "amount")?);
        currency.append_value(&r.currency);
        from.append_option(r.price_effective_from_ms);
        to.append_option(r.price_effective_to_ms);
        version.append_value(&r.price_book_version);
        provisional.append_value(r.provisional);
        service_tier.append_option(r.service_tier.as_deref());
        long_context.append_option(r.long_context);
        adjusts.append_option(r.adjusts_period.as_deref());
        status.append_value(&r.status);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(text[0].finish()),
        Arc::new(text[1].finish()),
        Arc::new(text[2].finish()),
        Arc::new(line.finish()),
        Arc::new(text[3].finish()),
        Arc::new(model.finish()),
        Arc::new(quantity.finish()),
        Arc::new(unit.finish()),
        Arc::new(unit_price.finish()),
        Arc::new(amount.finish()),
        Arc::new(currency.finish()),
        Arc::new(from.finish()),
        Arc::new(to.finish()),
        Arc::new(version.finish()),
        Arc::new(provisional.finish()),
        Arc::new(service_tier.finish()),
        Arc::new(long_context.finish()),
        Arc::new(adjusts.finish()),
        Arc::new(status.finish()),
    ];
    RecordBatch::try_new(invoice_lines_schema(), columns)
}
