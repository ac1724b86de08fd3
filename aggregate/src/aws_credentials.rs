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
    let help = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (a profile in \
                ~/.aws/config, SSO included), or run with an IAM role (ECS, EKS, Lambda, an EC2 \
                instance profile)";
    let Some(provider) = config.credentials_provider() else {
        return Err(format!("{NO_CREDENTIALS}: {help}"));
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(e) => {
            // The chain of causes in words, without the SDK's debug dump.
            let mut last = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                last.push_str(": ");
                last.push_str(&s.to_string());
                source = s.source();
            }
            let last: String = last.chars().take(300).collect();
            Err(format!("{NO_CREDENTIALS}: {help} (the last provider tried said: {last})"))
        }
    }
}
