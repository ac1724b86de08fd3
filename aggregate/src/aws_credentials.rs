//! One check of the AWS credentials before the first call, so that a machine without any
//! says so in words instead of the last provider's error (typically the instance metadata
//! service, unreachable off EC2).

use aws_config::SdkConfig;
use aws_sdk_s3::config::ProvideCredentials;

/// What every refusal starts with.
pub const NO_CREDENTIALS: &str = "no AWS credentials found";

/// Resolves the configuration's credentials once.
///
/// # Errors
///
/// A message starting with [`NO_CREDENTIALS`] that says where credentials are looked for,
/// ending with what the last provider said.
pub async fn check(config: &SdkConfig) -> Result<(), String> {
    let Some(provider) = config.credentials_provider() else {
        return Err(format!("{NO_CREDENTIALS}: {HELP}"));
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(e) => Err(refusal(&e)),
    }
}

/// Where credentials are looked for.
const HELP: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (a profile in \
                    ~/.aws/config, SSO included), or run with an IAM role (ECS, EKS, Lambda, an \
                    EC2 instance profile)";

/// The refusal when the last provider failed with `error`: its chain of causes in words
/// (without the SDK's debug dump), at most 300 characters of it.
fn refusal(error: &(dyn std::error::Error + 'static)) -> String {
    let last: String = agentmeter_schemas::error_chain(error, None).chars().take(300).collect();
    format!("{NO_CREDENTIALS}: {HELP} (the last provider tried said: {last})")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider's error, as the SDK's credentials error wraps it.
    #[derive(Debug, thiserror::Error)]
    #[error("an error occurred while loading credentials")]
    struct Loading(#[source] Imds);

    /// An error that repeats its cause in its own message.
    #[derive(Debug, thiserror::Error)]
    #[error("failed to load credentials from IMDS: timed out")]
    struct Imds(#[source] std::io::Error);

    #[test]
    fn the_refusal_names_the_last_providers_causes_once_and_at_most_300_characters() {
        // The IMDS error repeats its cause in its own message: the cause is named once.
        let e = Loading(Imds(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")));
        assert_eq!(
            refusal(&e),
            format!(
                "{NO_CREDENTIALS}: {HELP} (the last provider tried said: an error occurred while \
                 loading credentials: failed to load credentials from IMDS: timed out)"
            )
        );
        let long = std::io::Error::other("x".repeat(400));
        assert_eq!(
            refusal(&long),
            format!("{NO_CREDENTIALS}: {HELP} (the last provider tried said: {})", "x".repeat(300))
        );
    }
}
