//! Application inference profiles read from Amazon Bedrock through `aws-sdk-bedrock`
//! (`ListInferenceProfiles`, type `APPLICATION`), written in the JSON shape of
//! `aws bedrock list-inference-profiles`, so that one parser checks both.

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_sdk_bedrock::Client;
use aws_sdk_bedrock::config::Region;
use aws_sdk_bedrock::operation::list_inference_profiles::ListInferenceProfilesOutput;
use aws_sdk_bedrock::types::InferenceProfileType;
use serde_json::{Value, json};

/// The region used when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Pages fetched at most: far more than any account's profiles need, and a bound on a service
/// (or emulator) that keeps answering with a next page.
pub const MAX_PAGES: usize = 1000;

/// Why the profiles could not be listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// A request failed.
    #[error("bedrock:ListInferenceProfiles (page {page}) failed: {message}")]
    Api {
        /// 1-based page.
        page: usize,
        /// The service's `Code: message`, or the transport error with its causes.
        message: String,
    },
    /// The service kept answering with a next page.
    #[error("bedrock:ListInferenceProfiles returned more than {MAX_PAGES} pages")]
    TooManyPages,
}

/// A Bedrock client configured the standard way (`aws_config::defaults`): the usual
/// credential chain, `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_BEDROCK`) and the configured
/// region, [`DEFAULT_REGION`] when none is.
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

/// Every application inference profile of the client's account and Region, as the JSON text
/// of a `list-inference-profiles` page array.
///
/// # Errors
///
/// A request fails, or the listing does not end within [`MAX_PAGES`] pages.
pub async fn list_application_profiles(client: &Client) -> Result<String, ListError> {
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        if pages.len() == MAX_PAGES {
            return Err(ListError::TooManyPages);
        }
        let out = client
            .list_inference_profiles()
            .type_equals(InferenceProfileType::Application)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| ListError::Api {
                page: pages.len() + 1,
                message: agentmeter_aggregate::aws_error::describe(&e),
            })?;
        let next = out.next_token().map(str::to_owned);
        pages.push(page_json(&out));
        // An empty or repeated token ends the listing (the last page then carries none).
        if next.as_deref().is_none_or(str::is_empty) || next == token {
            break;
        }
        token = next;
    }
    Ok(Value::Array(pages).to_string())
}

/// One response as the CLI prints it (the fields the profiles parser reads).
pub(crate) fn page_json(out: &ListInferenceProfilesOutput) -> Value {
    let summaries: Vec<Value> = out
        .inference_profile_summaries()
        .iter()
        .map(|p| {
            let models: Vec<Value> = p
                .models()
                .iter()
                .filter_map(|m| m.model_arn())
                .map(|arn| json!({ "modelArn": arn }))
                .collect();
            json!({
                "inferenceProfileName": p.inference_profile_name(),
                "inferenceProfileArn": p.inference_profile_arn(),
                "inferenceProfileId": p.inference_profile_id(),
                "type": p.r#type().as_str(),
                "status": p.status().as_str(),
                "models": models,
            })
        })
        .collect();
    json!({ "inferenceProfileSummaries": summaries })
}

#[cfg(test)]
mod tests {
    use aws_sdk_bedrock::primitives::DateTime;
    use aws_sdk_bedrock::types::{
        InferenceProfileModel, InferenceProfileStatus, InferenceProfileSummary,
    };

    use super::*;
    use crate::prices::InferenceProfiles;

    #[test]
    fn a_response_reads_as_the_clis_listing() {
        let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3";
        let model = "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0";
        let summary = InferenceProfileSummary::builder()
            .inference_profile_name("clinic-a")
            .inference_profile_arn(arn)
            .inference_profile_id("a1b2c3")
            .r#type(InferenceProfileType::Application)
            .status(InferenceProfileStatus::Active)
            .created_at(DateTime::from_secs(0))
            .models(InferenceProfileModel::builder().model_arn(model).build())
            .build()
            .unwrap();
        let out =
            ListInferenceProfilesOutput::builder().inference_profile_summaries(summary).build();
        let text = Value::Array(vec![page_json(&out)]).to_string();
        let profiles = InferenceProfiles::from_json_str(&text).unwrap();
        assert_eq!(profiles.len(), 1);
        let p = profiles.get(arn).unwrap();
        assert_eq!(p.route, crate::prices::Route::Model("amazon.nova-lite-v1:0".into()));
        assert_eq!(p.name.as_deref(), Some("clinic-a"));
    }
}
