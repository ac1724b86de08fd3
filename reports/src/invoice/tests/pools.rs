//! AgentCore cost pools: Runtime split by agent duration, Gateway by tool calls, each to the
//! cent, with cost that has no driver left unallocated.

use super::*;
use crate::invoice::export::margin;
use crate::invoice::model::CostPool;
use crate::invoice::usage::{DriverUse, Drivers};

fn drivers() -> Drivers {
    let day = |n| chrono::NaiveDate::from_ymd_opt(2026, 10, n).unwrap();
    let basic = Tier::new("basic").unwrap();
    let tenant = |t: &str, ms, calls| {
        (TenantId::new(t).unwrap(), DriverUse { agent_duration_ms: ms, tool_calls: calls })
    };
    [
        // Oct 1: a ran agents for 2 s with 1 tool call, b for 1 s with 2 calls; c only ran
        // agents without tools.
        (
            (day(1), basic.clone()),
            [tenant("clinic-a", 2000, 1), tenant("clinic-b", 1000, 2), tenant("clinic-c", 500, 0)]
                .into_iter()
                .collect(),
        ),
    ]
    .into_iter()
    .collect()
}

fn run_pools(pool_costs: &[(CostPool, CostReport)]) -> crate::invoice::InvoiceRun {
    let input = InvoiceInput {
        period: Period::parse("2026-10").unwrap(),
        pricing: &Book::default(),
        usage: &usage(),
        costs: None,
        pool_costs,
        drivers: &drivers(),
        roster: &BTreeMap::new(),
    };
    compute(&input).unwrap()
}

#[test]
fn runtime_by_agent_duration_gateway_by_tool_calls_to_the_cent() {
    let runtime = costs(&[(1, Some("basic"), "1.00", false), (2, Some("basic"), "0.50", false)]);
    let gateway = costs(&[(1, Some("basic"), "0.10", true), (1, None, "0.07", false)]);
    let r = run_pools(&[(CostPool::AgentRuntime, runtime), (CostPool::AgentGateway, gateway)]);
    let shares: Vec<(CostPool, &str, Decimal, i64)> =
        r.allocations.iter().map(|a| (a.pool, a.tenant_id.as_str(), a.amount, a.driver)).collect();
    // Runtime 1.00 over 2000 : 1000 : 500 ms = 0.5714… : 0.2857… : 0.1428… → 0.57 / 0.29 /
    // 0.14 (largest remainder); Gateway 0.10 over 1 : 2 calls → 0.03 / 0.07, c has none.
    assert_eq!(
        shares,
        [
            (CostPool::AgentRuntime, "clinic-a", d("0.57"), 2000),
            (CostPool::AgentRuntime, "clinic-b", d("0.29"), 1000),
            (CostPool::AgentRuntime, "clinic-c", d("0.14"), 500),
            (CostPool::AgentGateway, "clinic-a", d("0.03"), 1),
            (CostPool::AgentGateway, "clinic-b", d("0.07"), 2),
        ]
    );
    // Oct 2 had runtime cost and no agent ran; the untagged gateway cost has no tier.
    let rest: Vec<(CostPool, Decimal, &str)> =
        r.unallocated.iter().map(|u| (u.pool, u.amount, u.reason.as_str())).collect();
    assert_eq!(
        rest,
        [
            (
                CostPool::AgentRuntime,
                d("0.50"),
                "no agent duration of tier basic that day (no spans)"
            ),
            (CostPool::AgentGateway, d("0.07"), "untagged cost"),
        ]
    );
    // Every pool sums to the cent, the gateway shares are provisional (estimated day), and
    // the tenants' invoices carry their allocated cost.
    let m = margin(&r);
    let pools: Vec<(CostPool, Decimal, Decimal)> =
        m.pools.iter().map(|p| (p.pool, p.allocated, p.unallocated)).collect();
    assert_eq!(
        pools,
        [
            (CostPool::AgentRuntime, d("1.00"), d("0.50")),
            (CostPool::AgentGateway, d("0.10"), d("0.07"))
        ]
    );
    assert!(m.reconciliation.reconciled);
    assert_eq!(m.reconciliation.cost_explorer_total, d("1.67"));
    let a = r.invoices.iter().find(|i| i.tenant_id.as_str() == "clinic-a").unwrap();
    assert_eq!((a.allocated_cost, a.provisional), (d("0.60"), true));
}

#[test]
fn the_focus_rows_name_each_pools_service_and_driver() {
    let runtime = costs(&[(1, Some("basic"), "1.00", false)]);
    let r = run_pools(&[(CostPool::AgentRuntime, runtime)]);
    let rows = crate::invoice::focus::rows(&r, "123456789012");
    let row = rows.iter().find(|r| r.tenant == "clinic-b").unwrap();
    assert_eq!(
        row.description,
        "Amazon Bedrock AgentCore cost of tier basic allocated to tenant clinic-b by agent duration"
    );
    assert_eq!((row.tokens, row.pool.unit()), (Some(1000), "Milliseconds"));
    let csv = crate::invoice::focus::csv(std::path::Path::new("f.csv"), &rows).unwrap();
    let text = String::from_utf8(csv).unwrap();
    assert!(text.lines().next().unwrap().ends_with(",x_CostPool"));
    let b = text.lines().find(|l| l.contains(",clinic-b,")).unwrap();
    assert!(b.contains(",Amazon Bedrock AgentCore,"), "{b}");
    assert!(b.contains(",agentmeter-agent-duration-share,"), "{b}");
    assert!(b.ends_with(",agent_runtime"), "{b}");
}
