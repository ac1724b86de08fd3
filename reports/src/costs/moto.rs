//! AWS SDK clients on a test's moto server (see `agentmeter_testkit::moto`).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_costexplorer::config::Credentials;

pub(crate) use agentmeter_testkit::moto::MotoServer;

/// Clients built as production builds them, pointed at moto.
pub(crate) trait MotoClients {
    /// SDK configuration from `aws_config::defaults`, with this server as the endpoint,
    /// static test credentials and region us-east-1.
    async fn sdk_config(&self) -> SdkConfig;

    /// A Cost Explorer client on this server.
    async fn cost_explorer(&self) -> aws_sdk_costexplorer::Client {
        aws_sdk_costexplorer::Client::new(&self.sdk_config().await)
    }
}

impl MotoClients for MotoServer {
    async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .load()
            .await
    }
}
