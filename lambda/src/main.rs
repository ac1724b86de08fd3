//! The Lambda entry point: the Kinesis event source mapping invokes it with a batch; it
//! answers with `batchItemFailures` (set `FunctionResponseTypes: ["ReportBatchItemFailures"]`
//! on the mapping). Settings come from the environment: see `Handler::from_env`.

use std::sync::Arc;

use agentmeter_lambda::Handler;
use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt().json().with_target(false).without_time().init();
    let handle = tokio::runtime::Handle::current();
    // The lake's requests block on the runtime: off its worker threads.
    let handler = tokio::task::spawn_blocking(move || Handler::from_env(&handle)).await?;
    let handler = Arc::new(handler.map_err(Error::from)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<KinesisEvent>| {
        let handler = Arc::clone(&handler);
        async move {
            let response =
                tokio::task::spawn_blocking(move || handler.handle(&event.payload)).await?;
            Ok::<_, Error>(response)
        }
    }))
    .await
}
