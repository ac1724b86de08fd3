//! The Cost Explorer API through `aws-sdk-costexplorer`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_sdk_costexplorer::Client;
use aws_sdk_costexplorer::config::Region;
use aws_sdk_costexplorer::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_costexplorer::operation::get_cost_and_usage::GetCostAndUsageOutput;
use aws_sdk_costexplorer::types::{
    DateInterval, Expression, Granularity, GroupDefinition, GroupDefinitionType, MetricValue,
    TagValues,
};

use super::error::{Location, quoted};
use super::parse::{
    Assembler, RawGroup, RawGroupDefinition, RawMetric, RawPage, RawPeriod, RawResult,
};
use super::{CostError, CostQuery, CostReport};

/// The region used when none is configured: Cost Explorer has one global endpoint, in
/// us-east-1.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The hint an [`CostError::Api`] carries when no AWS credentials could be found.
pub const CREDENTIALS_HINT: &str =
    "set AWS credentials (environment, profile or role) or use --costs FILE";

/// Pages fetched at most for one query: far more than a month of daily costs per tag value
/// needs, and a bound on a service (or emulator) that keeps answering with a next page.
pub const MAX_PAGES: usize = 1000;

/// A Cost Explorer client configured the standard way: `aws_config::defaults` with the
/// latest behaviour version, so the usual credential chain (environment, profile, SSO, web
/// identity, container and instance roles), `AWS_ENDPOINT_URL` (or
/// `AWS_ENDPOINT_URL_COST_EXPLORER`) and the configured region; [`DEFAULT_REGION`] when no
/// region is configured.
///
/// # Errors
///
/// No credentials can be found ([`agentmeter_aggregate::aws_credentials::check`]): said in
/// words, before any call.
pub async fn client_from_env() -> Result<Client, String> {
    let region = RegionProviderChain::default_provider().or_else(Region::new(DEFAULT_REGION));
    let config = aws_config::defaults(BehaviorVersion::latest()).region(region).load().await;
    agentmeter_aggregate::aws_credentials::check(&config).await?;
    Ok(Client::new(&config))
}

/// Fetches the daily costs of `query` from Cost Explorer, every page.
///
/// Sends `GetCostAndUsage` with `Granularity` `DAILY`, `Metrics` `[query.metric]`,
/// `GroupBy` `[{Type: TAG, Key: query.tag_key}]` and, when the query has a filter, `Filter`
/// `{Tags: {Key, Values}}` (one operator, as an `Expression` must have), then follows
/// `NextPageToken` until the last page. Each page costs $0.01 on AWS.
///
/// Reading the results:
/// - a group key `Tier$premium` is [`CostGroup::Tagged`](super::CostGroup::Tagged)`("premium")`
///   (split at the first `$`, so values may contain `$`); `Tier$` is
///   [`CostGroup::Untagged`](super::CostGroup::Untagged);
/// - a day with no groups but a non-zero `Total` is untagged cost (nothing carried the tag);
///   otherwise `Total` (empty with `GroupBy`) is ignored;
/// - amounts are read exactly from their decimal strings, sign kept (credits are negative);
/// - an `Estimated` day marks every row of that day estimated.
///
/// # Errors
///
/// [`CostError::Query`] for an invalid query (nothing is sent); [`CostError::Api`] when a
/// request fails, with [`CREDENTIALS_HINT`] when no credentials were found; a
/// [`CostError::Response`] when a page breaks a rule listed on [`parse_file`](super::parse_file),
/// repeats an earlier page's token, or there are more than [`MAX_PAGES`] pages.
pub async fn fetch(client: &Client, query: &CostQuery) -> Result<CostReport, CostError> {
    query.validate()?;
    let period = DateInterval::builder()
        .start(query.start.to_string())
        .end(query.end.to_string())
        .build()
        .map_err(|e| CostError::Query {
            field: "start",
            value: query.start.to_string(),
            reason: format!("cannot form a TimePeriod: {e}"),
        })?;
    let group_by =
        GroupDefinition::builder().r#type(GroupDefinitionType::Tag).key(&query.tag_key).build();
    let filter = query.filter.as_ref().map(|filter| {
        Expression::builder()
            .tags(
                TagValues::builder()
                    .key(&filter.key)
                    .set_values(Some(filter.values.clone()))
                    .build(),
            )
            .build()
    });

    let mut assembler = Assembler::new(query);
    let mut tokens_seen = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let page = assembler.pages + 1;
        if page > MAX_PAGES {
            return Err(CostError::at(
                &Location::page(page),
                format!("more than {MAX_PAGES} pages; stopped following NextPageToken"),
            ));
        }
        let output = client
            .get_cost_and_usage()
            .time_period(period.clone())
            .granularity(Granularity::Daily)
            .metrics(&query.metric)
            .group_by(group_by.clone())
            .set_filter(filter.clone())
            .set_next_page_token(token.clone())
            .send()
            .await
            .map_err(|error| api_error(page, &error))?;
        tracing::debug!(
            page,
            results = output.results_by_time().len(),
            more = output.next_page_token().is_some_and(|t| !t.is_empty()),
            "Cost Explorer page fetched."
        );
        match assembler.push(raw_page(output))? {
            None => break,
            Some(next) => {
                if !tokens_seen.insert(next.clone()) {
                    return Err(CostError::at(
                        &Location::page(page),
                        format!("NextPageToken {} repeats an earlier page's token", quoted(&next)),
                    ));
                }
                token = Some(next);
            }
        }
    }
    Ok(assembler.finish())
}

/// Maps an SDK failure on `page` to [`CostError::Api`].
fn api_error<E, R>(page: usize, error: &SdkError<E, R>) -> CostError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug + 'static,
{
    // The SDK's own error says little ("dispatch failure", "service error"); its causes say
    // what failed.
    let message = agentmeter_schemas::error_chain(error, None);
    let code = error.code().map(str::to_owned);
    let hint = is_missing_credentials(&message).then_some(CREDENTIALS_HINT);
    CostError::Api { page, code, message, hint }
}

/// Whether an SDK error's text says that no credentials could be loaded. The SDK reports this
/// as a dispatch failure whose cause is the credentials provider's error; matching the text
/// is the stable way to see it without depending on the credential crates' internals.
fn is_missing_credentials(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("no credentials")
        || lower.contains("credentials provider")
        || lower.contains("failed to load credentials")
        || lower.contains("could not find credentials")
        || lower.contains("the credential provider was not enabled")
        || lower.contains("no identity resolver")
}

/// The raw shape of one SDK response, for the [`Assembler`].
fn raw_page(output: GetCostAndUsageOutput) -> RawPage {
    let group_definitions = output
        .group_definitions()
        .iter()
        .map(|d| RawGroupDefinition {
            kind: d.r#type().map(|t| t.as_str().to_owned()),
            key: d.key().map(str::to_owned),
        })
        .collect();
    let results = output
        .results_by_time
        .unwrap_or_default()
        .into_iter()
        .map(|result| RawResult {
            period: result
                .time_period
                .map(|p| RawPeriod { start: p.start, end: p.end })
                .unwrap_or(RawPeriod { start: String::new(), end: String::new() }),
            total: raw_metrics(result.total),
            groups: result
                .groups
                .unwrap_or_default()
                .into_iter()
                .map(|g| RawGroup {
                    keys: g.keys.unwrap_or_default(),
                    metrics: raw_metrics(g.metrics),
                })
                .collect(),
            estimated: result.estimated,
        })
        .collect();
    RawPage { results, next_page_token: output.next_page_token, group_definitions }
}

fn raw_metrics(metrics: Option<HashMap<String, MetricValue>>) -> BTreeMap<String, RawMetric> {
    metrics
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (name, RawMetric { amount: value.amount, unit: value.unit }))
        .collect()
}
