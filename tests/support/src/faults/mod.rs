//! A fault-injecting HTTP/1.1 proxy for tests: it sits on 127.0.0.1 in front of an upstream
//! on 127.0.0.1 (moto in server mode, a webhook receiver) and, by a seeded [`Plan`], answers
//! some requests with throttling errors or 5xx, delays their answers, drops the connection
//! before or after the upstream applied them, or cuts the answer short. The code under test
//! points its endpoint (`AWS_ENDPOINT_URL`, a webhook URL) at [`FaultProxy::endpoint`];
//! nothing else differs.
//!
//! Each request is named by its operation ([`operation`]: `GetRecords`,
//! `PutObject(If-None-Match)`, `ListObjectsV2`, `POST /hook`...), so a plan can aim at some
//! operations and a test can check that a fault really hit them ([`FaultProxy::injections`]).
//! Only faults actually applied are counted: a cut answer is one the client saw cut.
//!
//! Clients keep their connections alive (as the SDKs do); the proxy forwards each request to
//! the upstream on a connection of its own (`Connection: close`), so a dropped or cut answer
//! never leaves a half-read upstream stream behind. Request bodies framed by chunks are
//! forwarded with a length; `aws-chunked` content (a `Content-Encoding` with a length) passes
//! byte for byte; `Expect: 100-continue` is answered by the proxy.
//!
//! The draws follow the order requests arrive in: a sequential client sees the same faults
//! on every run; concurrent requests may take each other's draws, and the plan's totals stay
//! the same in expectation.
//!
//! The module is split by concern: `plan` (what to inject: faults, rules, plans and the
//! seeded draw, and what was applied), `http` (the HTTP/1.1 framing: reading requests and
//! answers, naming operations, the errors each protocol expects) and `proxy` (the listener
//! and the loop serving each client connection).

mod http;
mod plan;
mod proxy;
#[cfg(test)]
mod tests;

pub use http::operation;
pub use plan::{Fault, Injection, Plan, Rule, Schedule};
pub use proxy::FaultProxy;
