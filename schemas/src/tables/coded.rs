//! Batches for the lake's writer whose repeated string columns come as Arrow dictionaries,
//! coded by the address of the shared text a record holds (an `Arc<str>` id, a static code):
//! the writer dictionary-encodes them from the codes instead of copying and hashing every
//! row's text (`agentmeter_aggregate`'s coded columns).

use std::sync::{Arc, LazyLock};

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, DictionaryArray, Int64Array, RecordBatch, UInt32Array};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use rustc_hash::FxHashMap;

use super::{token_values, usage_events_schema};
use crate::UsageEvent;

/// The `usage_events` columns a coded batch holds as dictionaries.
pub const USAGE_EVENTS_CODED: [&str; 6] =
    ["tier", "tenant_id", "user_id", "model_id", "source", "service_tier"];

static USAGE_EVENTS_CODED_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| coded_schema(&usage_events_schema(), &USAGE_EVENTS_CODED));

/// `schema` with the columns named in `coded` as `Dictionary(UInt32, Utf8)`.
pub fn coded_schema(schema: &Schema, coded: &[&str]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if coded.contains(&f.name().as_str()) {
                let dict =
                    DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8));
                Field::new(f.name(), dict, f.is_nullable())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// One column of a batch as a dictionary coded by the address of each row's text.
#[derive(Default)]
pub struct SliceDictionary {
    /// The row before's text and code: rows sorted by tenant and time repeat most values.
    last: Option<((usize, usize), u32)>,
    codes: FxHashMap<(usize, usize), u32>,
    values: StringBuilder,
    keys: Vec<u32>,
}

impl SliceDictionary {
    /// Room for `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        Self { keys: Vec::with_capacity(rows), ..Self::default() }
    }

    /// Appends a row. Equal texts at different addresses get different codes here (the
    /// writer merges them); text held once and shared is looked up by address alone.
    pub fn push(&mut self, value: &str) {
        let at = (value.as_ptr() as usize, value.len());
        let code = match self.last {
            Some((last, code)) if last == at => code,
            _ => {
                let next = self.codes.len() as u32;
                let code = *self.codes.entry(at).or_insert(next);
                if code == next {
                    self.values.append_value(value);
                }
                self.last = Some((at, code));
                code
            }
        };
        self.keys.push(code);
    }

    /// The column, as `Dictionary(UInt32, Utf8)`.
    ///
    /// # Errors
    ///
    /// None in practice: every key was made for a value.
    pub fn finish(mut self) -> Result<ArrayRef, ArrowError> {
        let values = self.values.finish();
        let keys = UInt32Array::from(self.keys);
        Ok(Arc::new(DictionaryArray::try_new(keys, Arc::new(values))?))
    }
}

/// `usage_events` rows as a batch of [`usage_events_coded_schema`]: the columns of
/// [`USAGE_EVENTS_CODED`] as dictionaries, the others as [`super::UsageEventBatchBuilder`]
/// makes them.
///
/// # Errors
///
/// Only if the columns disagree with the schema, which would be a bug here.
pub fn usage_events_coded_batch<'a>(
    rows: impl ExactSizeIterator<Item = &'a UsageEvent> + Clone,
) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let (mut id_bytes, mut session_bytes) = (0, 0);
    for e in rows.clone() {
        id_bytes += e.event_id.as_str().len();
        session_bytes += e.session_id.as_ref().map_or(0, |s| s.as_str().len());
    }
    let mut time = Vec::with_capacity(n);
    let mut ids = StringBuilder::with_capacity(n, id_bytes);
    let mut coded: [SliceDictionary; 6] =
        std::array::from_fn(|_| SliceDictionary::with_capacity(n));
    let mut tokens: [Vec<i64>; 6] = std::array::from_fn(|_| Vec::with_capacity(n));
    let mut session = StringBuilder::with_capacity(n, session_bytes);
    for e in rows {
        time.push(e.event_time_ms);
        ids.append_value(e.event_id.as_str());
        let [tier, tenant, user, model, source, service_tier] = &mut coded;
        tier.push(e.tier.as_str());
        tenant.push(e.tenant_id.as_str());
        user.push(e.user_id.as_str());
        model.push(e.model_id.as_str());
        source.push(e.source.as_str());
        service_tier.push(e.service_tier.code());
        for (column, v) in tokens.iter_mut().zip(token_values(&e.tokens)) {
            column.push(v);
        }
        session.append_option(e.session_id.as_ref().map(|s| s.as_str()));
    }
    let time = arrow_array::TimestampMillisecondArray::from(time).with_timezone("UTC");
    let [tier, tenant, user, model, source, service_tier] = coded;
    let mut columns: Vec<ArrayRef> = vec![Arc::new(time), Arc::new(ids.finish())];
    for c in [tier, tenant, user, model, source] {
        columns.push(c.finish()?);
    }
    columns.extend(tokens.map(|t| Arc::new(Int64Array::from(t)) as ArrayRef));
    columns.push(Arc::new(session.finish()));
    columns.push(service_tier.finish()?);
    RecordBatch::try_new(usage_events_coded_schema(), columns)
}

/// The schema of [`usage_events_coded_batch`].
pub fn usage_events_coded_schema() -> SchemaRef {
    USAGE_EVENTS_CODED_SCHEMA.clone()
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::UInt32Type;
    use arrow_array::{Array, StringArray};

    use super::*;
    use crate::tables::UsageEventBatchBuilder;
    use crate::{EventId, ModelId, ServiceTier, SessionId, SourceUri, TenantId, Tier, UserId};

    /// A coded batch holds the rows of the plain one, its shared texts coded once by address
    /// (the text repeated at another address coded apart), the others as they are.
    #[test]
    fn a_coded_batch_holds_the_rows_of_the_plain_batch() {
        let first = UsageEvent {
            event_time_ms: 1_760_000_000_000,
            event_id: EventId::new("e0").unwrap(),
            tier: Tier::new("basic").unwrap(),
            tenant_id: TenantId::new("clinic-a").unwrap(),
            user_id: UserId::new("dr.lee@clinic-a.example").unwrap(),
            model_id: ModelId::new("mistral.ministral-3-8b-instruct").unwrap(),
            source: SourceUri::new("file:///tmp/in.ndjson"),
            tokens: crate::Tokens { input: 812, output: 97, total: 909, ..Default::default() },
            session_id: None,
            service_tier: ServiceTier::Standard,
        };
        let mut events = Vec::new();
        for i in 0..40 {
            // Clones share their ids' text, as a decoder's cached ids do.
            let mut e = first.clone();
            e.event_id = EventId::new(format!("e{i}")).unwrap();
            e.tokens.input = i;
            if i % 3 == 0 {
                e.user_id = UserId::new(format!("user-{}", i % 4)).unwrap();
                e.session_id = Some(SessionId::new(format!("s{i}")).unwrap());
            }
            if i % 5 == 0 {
                e.service_tier = ServiceTier::Priority;
            }
            events.push(e);
        }
        // The same tenant's text made again: equal, at another address.
        events[7].tenant_id = TenantId::new("clinic-a").unwrap();
        let coded = usage_events_coded_batch(events.iter()).unwrap();
        let mut plain = UsageEventBatchBuilder::with_capacity(events.len());
        plain.extend(&events);
        let plain = plain.finish().unwrap();
        assert_eq!(coded.schema(), usage_events_coded_schema());
        assert_eq!(coded.num_columns(), plain.num_columns());
        for (i, field) in plain.schema().fields().iter().enumerate() {
            let (ours, theirs) = (coded.column(i), plain.column(i));
            if !USAGE_EVENTS_CODED.contains(&field.name().as_str()) {
                assert_eq!(ours, theirs, "{}", field.name());
                continue;
            }
            let dict = ours.as_dictionary::<UInt32Type>();
            let values: &StringArray = dict.values().as_string();
            let rows: Vec<&str> =
                dict.keys().values().iter().map(|&k| values.value(k as usize)).collect();
            let want: Vec<&str> = theirs.as_string::<i32>().iter().map(Option::unwrap).collect();
            assert_eq!(rows, want, "{}", field.name());
            let distinct = match field.name().as_str() {
                // Two addresses of "clinic-a".
                "tenant_id" => 2,
                // The shared user and the 14 made one a row.
                "user_id" => 15,
                "service_tier" => 2,
                _ => 1,
            };
            assert_eq!(values.len(), distinct, "{}", field.name());
        }
    }
}
