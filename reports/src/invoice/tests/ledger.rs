use std::str::FromStr;

use super::*;

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn line(component: Component, quantity: i64, price: &str, amount: &str) -> Line {
    Line {
        component,
        model_id: (component != Component::PlanFee && component != Component::IncludedUsage)
            .then(|| ModelId::new("m").unwrap()),
        model_name: None,
        tier: Tier::new("basic").unwrap(),
        quantity,
        unit: component.unit(),
        unit_price: d(price),
        amount: d(amount),
        adjusts_period: None,
        price_effective_from: None,
        price_effective_to: None,
        class: None,
    }
}

fn invoice(t: &str, lines: Vec<Line>) -> Invoice {
    let period = Period::parse("2026-10").unwrap();
    let mut inv = Invoice::empty(tenant(t), Tier::new("basic").unwrap(), &period, "USD", "v");
    inv.total = lines.iter().map(|l| l.amount).sum();
    inv.lines = lines;
    inv
}

fn run(period: &str, invoices: Vec<Invoice>) -> InvoiceRun {
    InvoiceRun {
        period: Period::parse(period).unwrap(),
        invoices,
        allocations: Vec::new(),
        unallocated: Vec::new(),
        usage_without_cost: Vec::new(),
        cost_total: Decimal::ZERO,
        cost_total_exact: Decimal::ZERO,
        notes: Vec::new(),
        list_cost: BTreeMap::new(),
    }
}

fn record(period: &str, status: PeriodStatus, invoices: &[Invoice]) -> PeriodRecord {
    let t = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
    PeriodRecord {
        period: period.into(),
        status,
        created: t,
        last_updated: t,
        closes: 1,
        issuer: None,
        currency: "USD".into(),
        inputs: Inputs::default(),
        documents: invoices
            .iter()
            .map(|i| document_record(i, "0".repeat(32), "1".repeat(32)))
            .collect(),
        outputs: BTreeMap::new(),
        billed: BTreeMap::new(),
        adjustments: Vec::new(),
    }
}

type Records = BTreeMap<NaiveDate, (PeriodRecord, String)>;

fn records(rs: Vec<PeriodRecord>) -> Records {
    rs.into_iter().map(|r| (Period::parse(&r.period).unwrap().start, (r, "e".into()))).collect()
}

#[test]
fn numbers_never_meet_across_tenants_or_revisions() {
    let p = Period::parse("2026-10").unwrap();
    assert_eq!(invoice_number(&p, &tenant("clinic-a"), 1), "AM-202610-clinic-a");
    assert_eq!(invoice_number(&p, &tenant("clinic-a"), 2), "AM-202610-clinic-a/2");
    assert_eq!(credit_note_number(&p, &tenant("clinic-a"), 1), "CN-202610-clinic-a/1");
    // A tenant named like another's revision still gets a number of its own.
    assert_ne!(
        invoice_number(&p, &tenant("clinic-a-2"), 1),
        invoice_number(&p, &tenant("clinic-a"), 2)
    );
}

#[test]
fn late_usage_goes_to_the_first_period_after_that_is_not_closed() {
    let oct = record("2026-10", PeriodStatus::Closed, &[]);
    let nov = record("2026-11", PeriodStatus::Closed, &[]);
    let start = |s: &str| Period::parse(s).unwrap().start;
    let rs = records(vec![oct.clone()]);
    assert_eq!(billing_period_of_late_usage(start("2026-10"), &rs), start("2026-11"));
    let rs = records(vec![oct.clone(), nov]);
    assert_eq!(billing_period_of_late_usage(start("2026-10"), &rs), start("2026-12"));
    let reopened = record("2026-11", PeriodStatus::Open, &[]);
    let rs = records(vec![oct, reopened]);
    assert_eq!(billing_period_of_late_usage(start("2026-10"), &rs), start("2026-11"));
}

#[test]
fn late_lines_are_the_differences_at_the_closed_periods_prices() {
    // Issued: 1M input tokens at 0.1875 and the plan fee, 0.19 of the 2.00 credit used.
    let issued = invoice(
        "clinic-a",
        vec![
            line(Component::PlanFee, 1, "49", "49.00"),
            line(Component::InputTokens, 1_000_000, "0.1875", "0.19"),
            line(Component::IncludedUsage, 1, "-0.19", "-0.19"),
        ],
    );
    let oct = record("2026-10", PeriodStatus::Closed, &[issued]);
    // Priced again with 500,001 late tokens: more credit is used.
    let now = run(
        "2026-10",
        vec![invoice(
            "clinic-a",
            vec![
                line(Component::PlanFee, 1, "49", "49.00"),
                line(Component::InputTokens, 1_500_001, "0.1875", "0.28"),
                line(Component::IncludedUsage, 1, "-0.28", "-0.28"),
            ],
        )],
    );
    let mut counts = BTreeMap::new();
    counts.insert(tenant("clinic-a"), Counts { calls: 7, tool_calls: 0 });
    let mut oct_billed = oct.clone();
    oct_billed.billed.insert(tenant("clinic-a"), Counts { calls: 5, tool_calls: 0 });
    let rs = records(vec![oct_billed.clone()]);
    let late = late(&oct_billed, &now, &counts, &rs);
    assert_eq!(late.total(), Counts { calls: 2, tool_calls: 0 });
    let lines = &late.lines[&tenant("clinic-a")];
    let got: Vec<(Component, i64, String, Option<&str>)> = lines
        .iter()
        .map(|l| (l.component, l.quantity, l.amount.to_string(), l.adjusts_period.as_deref()))
        .collect();
    // The plan fee did not change: no line. The rest: the exact differences, which net to 0
    // here because the credit covers them.
    assert_eq!(
        got,
        vec![
            (Component::InputTokens, 500_001, "0.09".into(), Some("2026-10")),
            (Component::IncludedUsage, 1, "-0.09".into(), Some("2026-10")),
        ]
    );

    // Once a later period billed them, nothing is late any more.
    let mut nov_inv = invoice("clinic-a", lines.clone());
    nov_inv.period = "2026-11".into();
    let mut nov = record("2026-11", PeriodStatus::Closed, &[nov_inv]);
    nov.adjustments.push(AdjustmentRecord {
        period: "2026-10".into(),
        tenant_id: tenant("clinic-a"),
        counts: Counts { calls: 2, tool_calls: 0 },
    });
    let rs = records(vec![oct_billed.clone(), nov.clone()]);
    assert!(super::late(&oct_billed, &now, &counts, &rs).is_empty());
    // ... and October cannot be reopened under November.
    assert_eq!(
        check_reopen(&oct_billed, &rs).unwrap_err(),
        "2026-10 cannot be reopened: the invoices of 2026-11 bill late usage of it; reopen 2026-11 first"
    );
    // A credited November no longer counts: the late usage is due again.
    for doc in &mut nov.documents {
        doc.status = LedgerStatus::Credited;
    }
    nov.status = PeriodStatus::Open;
    let rs = records(vec![oct_billed.clone(), nov]);
    assert_eq!(super::late(&oct_billed, &now, &counts, &rs).lines[&tenant("clinic-a")].len(), 2);
    assert!(check_reopen(&oct_billed, &rs).is_ok());
}

#[test]
fn a_tenant_with_only_late_usage_gets_an_invoice_of_adjustments() {
    let oct = record("2026-10", PeriodStatus::Closed, &[]);
    let now = run(
        "2026-10",
        vec![invoice("clinic-b", vec![line(Component::InputTokens, 2_000_000, "0.1875", "0.38")])],
    );
    let rs = records(vec![oct.clone()]);
    let late = late(&oct, &now, &BTreeMap::new(), &rs);
    let mut nov = run("2026-11", Vec::new());
    add_adjustments(&mut nov, &[late], "USD", "v");
    assert_eq!(nov.invoices.len(), 1);
    assert_eq!(nov.invoices[0].total, d("0.38"));
    assert_eq!(nov.invoices[0].lines[0].adjusts_period.as_deref(), Some("2026-10"));
}

#[test]
fn a_credit_note_negates_the_original() {
    let issued = invoice(
        "clinic-a",
        vec![
            line(Component::PlanFee, 1, "49", "49.00"),
            line(Component::ToolCalls, 12, "0.001", "0.01"),
        ],
    );
    let mut rec = document_record(&issued, "0".repeat(32), "1".repeat(32));
    rec.number = "AM-202610-clinic-a".into();
    let p = Period::parse("2026-10").unwrap();
    let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
    let cn = credit_note(&p, &rec, 1, rec.tier.clone(), day);
    assert_eq!(cn.invoice_number, "CN-202610-clinic-a/1");
    assert_eq!(cn.references.as_deref(), Some("AM-202610-clinic-a"));
    assert_eq!(cn.total, d("-49.01"));
    assert_eq!(cn.lines[1].quantity, -12);
    assert_eq!(cn.issue_date, Some(day));
}

#[test]
fn blobs_are_checked_against_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = agentmeter_aggregate::store::LocalStore::new(dir.path());
    let d = put_blob(&store, b"issued").unwrap();
    assert_eq!(get_blob(&store, &d).unwrap(), b"issued");
    std::fs::write(dir.path().join(layout::billing_blob(&d)), b"edited").unwrap();
    let err = get_blob(&store, &d).unwrap_err().to_string();
    assert!(err.ends_with("its bytes do not match its name"), "{err}");
    assert!(get_blob(&store, "../../etc").is_err());
}
