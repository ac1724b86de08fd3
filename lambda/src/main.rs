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
    let handler = Arc::new(Handler::from_env().map_err(Error::from)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<KinesisEvent>| {
        let handler = Arc::clone(&handler);
        async move {
            // The lake is a file system: the batch is written off the async threads.
            let response =
                tokio::task::spawn_blocking(move || handler.handle(&event.payload)).await?;
            Ok::<_, Error>(response)
        }
    }))
    .await
}
