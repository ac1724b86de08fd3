//! The real `aws-sdk-costexplorer` client against moto in server mode (the local AWS), with
//! results queued in advance.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_costexplorer::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_costexplorer::config::retry::RetryConfig;
use aws_sdk_costexplorer::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_costexplorer::error::BoxError;
use serde_json::{Value, json};

use super::moto::{MotoClients, MotoServer};
use super::tests::{PAGE1, PAGE2, both_pages, expected_rows, october};
use super::*;

/// Bound on any one fetch against moto (the SDK's own timeouts are longer).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Keeps what the client sent: the `X-Amz-Target` header and the JSON body of each request.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(String, Value)>>>);

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let target = request.headers().get("x-amz-target").unwrap_or_default().to_owned();
        let body = serde_json::from_slice(request.body().bytes().unwrap_or_default())?;
        self.0.lock().unwrap().push((target, body));
        Ok(())
    }
}

impl Recorder {
    fn requests(&self) -> Vec<(String, Value)> {
        self.0.lock().unwrap().clone()
    }
}

/// A client built as in production (`aws_config::defaults`) on moto, recording its requests.
async fn recording_client(moto: &MotoServer) -> (aws_sdk_costexplorer::Client, Recorder) {
    let recorder = Recorder::default();
    let config = aws_sdk_costexplorer::config::Builder::from(&moto.sdk_config().await)
        .interceptor(recorder.clone())
        .build();
    (aws_sdk_costexplorer::Client::from_conf(config), recorder)
}

async fn bounded_fetch(
    client: &aws_sdk_costexplorer::Client,
    query: &CostQuery,
) -> Result<CostReport, CostError> {
    tokio::time::timeout(FETCH_TIMEOUT, fetch(client, query)).await.expect("fetch timed out")
}

fn page(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_follows_next_page_token_through_moto() {
    let moto = MotoServer::start();
    moto.queue_cost_and_usage(&[page(PAGE1), page(PAGE2)]);
    let (client, recorder) = recording_client(&moto).await;

    let report = bounded_fetch(&client, &october()).await.unwrap();

    assert_eq!(report.pages, 2);
    assert_eq!(report.days, expected_rows());
    assert_eq!(report, parse_file(&both_pages(), &october()).unwrap());

    let requests = recorder.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let first = json!({
        "TimePeriod": {"Start": "2026-10-01", "End": "2026-11-01"},
        "Granularity": "DAILY",
        "Metrics": ["UnblendedCost"],
        "GroupBy": [{"Type": "TAG", "Key": "Tier"}],
    });
    let mut second = first.clone();
    second["NextPageToken"] = json!("AAMA-EFRSURBSGl6Y2FsaXR5");
    assert_eq!(requests[0], ("AWSInsightsIndexService.GetCostAndUsage".into(), first));
    assert_eq!(requests[1], ("AWSInsightsIndexService.GetCostAndUsage".into(), second));
    // moto served both over HTTP (werkzeug logs each request, read from its stderr by a thread).
    let served = |moto: &MotoServer| {
        moto.log().iter().filter(|line| line.contains("\"POST / HTTP/1.1\" 200")).count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while served(&moto) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(served(&moto), 2, "{:?}", moto.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filtered_query_sends_one_tags_expression() {
    let moto = MotoServer::start();
    moto.queue_cost_and_usage(&[page(&PAGE2.replace("UnblendedCost", "NetAmortizedCost"))]);
    let (client, recorder) = recording_client(&moto).await;
    let query = CostQuery {
        metric: "NetAmortizedCost".into(),
        ..october().with_filter("CostCenter", ["research", "ops"])
    };

    let report = bounded_fetch(&client, &query).await.unwrap();
    assert_eq!(report.metric, "NetAmortizedCost");
    assert_eq!(report.days, expected_rows()[6..]);

    let requests = recorder.requests();
    assert_eq!(
        requests[0].1,
        json!({
            "TimePeriod": {"Start": "2026-10-01", "End": "2026-11-01"},
            "Granularity": "DAILY",
            "Filter": {"Tags": {"Key": "CostCenter", "Values": ["research", "ops"]}},
            "Metrics": ["NetAmortizedCost"],
            "GroupBy": [{"Type": "TAG", "Key": "Tier"}],
        })
    );

    // moto keys its answers by request body: the same query gets the same answer again, while
    // the query without the filter is a different request and gets moto's empty default.
    let again = bounded_fetch(&client, &query).await.unwrap();
    assert_eq!(again.days, report.days);
    let unfiltered = CostQuery { filter: None, ..query.clone() };
    let empty = bounded_fetch(&client, &unfiltered).await.unwrap();
    assert!(empty.days.is_empty());
    assert_eq!(recorder.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_page_from_the_api_is_named_like_a_bad_file() {
    let moto = MotoServer::start();
    let bad = PAGE2.replace("\"4.10\"", "\"4,10\"");
    moto.queue_cost_and_usage(&[page(PAGE1), page(&bad)]);
    let client = moto.cost_explorer().await;
    let err = bounded_fetch(&client, &october()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"page 2, ResultsByTime[0] (2026-10-03), group Tier$basic: Amount "4,10" is not a decimal"#
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_token_that_comes_back_again_stops_the_loop() {
    let moto = MotoServer::start();
    // Page 2 hands out page 1's token again: following it would ask for page 2 forever.
    let token = json!("AAMA-EFRSURBSGl6Y2FsaXR5");
    let empty_page = json!({"ResultsByTime": [], "NextPageToken": token});
    moto.queue_cost_and_usage(&[empty_page.clone(), empty_page]);
    let client = moto.cost_explorer().await;
    let err = bounded_fetch(&client, &october()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"page 2: NextPageToken "AAMA-EFRSURBSGl6Y2FsaXR5" repeats an earlier page's token"#
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_endpoint_is_an_api_error_with_the_sdk_text() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_costexplorer::config::Credentials::for_tests())
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    let client = aws_sdk_costexplorer::Client::new(&config);
    match bounded_fetch(&client, &october()).await.unwrap_err() {
        CostError::Api { page, code, message, hint } => {
            assert_eq!((page, code, hint), (1, None, None));
            assert!(message.contains("dispatch failure"), "{message}");
            assert!(message.to_lowercase().contains("connect"), "{message}");
        }
        other => panic!("not an API error: {other}"),
    }
    // An invalid query is refused before anything is sent.
    let err = bounded_fetch(&client, &CostQuery { metric: "Cost".into(), ..october() }).await;
    assert!(matches!(err, Err(CostError::Query { field: "metric", .. })));
}

#[test]
fn api_errors_show_code_and_hint() {
    let err = CostError::Api {
        page: 2,
        code: Some("AccessDeniedException".into()),
        message: "service error: not authorized".into(),
        hint: None,
    };
    assert_eq!(
        err.to_string(),
        "Cost Explorer GetCostAndUsage failed on page 2 (AccessDeniedException): service error: \
         not authorized"
    );
    let err = CostError::Api {
        page: 1,
        code: None,
        message: "dispatch failure".into(),
        hint: Some(CREDENTIALS_HINT),
    };
    assert_eq!(
        err.to_string(),
        "Cost Explorer GetCostAndUsage failed on page 1: dispatch failure; set AWS credentials \
         (environment, profile or role) or use --costs FILE"
    );
}

/// Marks the environment of a child test process (see [`client_from_env_child`]).
const CHILD_ENV: &str = "AGENTMETER_COSTS_CLIENT_FROM_ENV_CHILD";
const CHILD_MARK: &str = "CHILD-RESULT:";

/// Runs [`client_from_env_child`] in a new process of this test binary whose environment holds
/// only `vars` (plus a private HOME and no instance metadata), and returns what it printed.
fn run_child(vars: &[(&str, &str)]) -> Value {
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "costs::ce_tests::client_from_env_child", "--ignored", "--nocapture"])
        .env_clear()
        .env(CHILD_ENV, "1")
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", home.path().join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the child test process did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|line| line.strip_prefix(CHILD_MARK)).unwrap_or_else(|| {
        panic!("no result from the child:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr))
    });
    serde_json::from_str(line).unwrap()
}

/// Not a test of its own: the body of the child processes of
/// [`client_from_env_uses_the_standard_environment`], which set its environment.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "runs only as a child process of client_from_env_uses_the_standard_environment"]
async fn client_from_env_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let client = match client_from_env().await {
        Ok(client) => client,
        Err(credentials) => {
            println!("{CHILD_MARK}{}", json!({ "credentials": credentials }));
            return;
        }
    };
    let region = client.config().region().map(ToString::to_string);
    let result = match bounded_fetch(&client, &october()).await {
        Ok(report) => json!({"region": region, "days": report.days.len(), "pages": report.pages}),
        Err(CostError::Api { message, hint, .. }) => {
            json!({"region": region, "message": message, "hint": hint})
        }
        Err(other) => json!({"region": region, "other": other.to_string()}),
    };
    println!("{CHILD_MARK}{result}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_from_env_uses_the_standard_environment() {
    let moto = MotoServer::start();
    moto.queue_cost_and_usage(&[page(PAGE1), page(PAGE2)]);
    let endpoint = moto.endpoint();

    // Credentials from the environment, the endpoint from AWS_ENDPOINT_URL, no region set.
    let found = run_child(&[
        ("AWS_ENDPOINT_URL", &endpoint),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]);
    assert_eq!(found, json!({"region": "us-east-1", "days": 9, "pages": 2}));

    // A configured region is kept.
    let found = run_child(&[
        ("AWS_ENDPOINT_URL", &endpoint),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "eu-west-1"),
    ]);
    assert_eq!(found["region"], "eu-west-1");
    assert_eq!(found["pages"], 2);

    // No credentials anywhere: the client is refused before any call, in words.
    let missing = run_child(&[("AWS_ENDPOINT_URL", &endpoint)]);
    let said = missing["credentials"].as_str().unwrap_or_default();
    assert!(
        said.starts_with(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        ),
        "{missing}"
    );
}
