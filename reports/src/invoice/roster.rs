//! The roster: the tenants to bill and their contracted tiers, so that a tenant without
//! usage in a period still gets its base-fee invoice.
//!
//! ```toml
//! [tenants]
//! clinic-a = "basic"
//! hospital-a = "premium"
//! ```

use std::collections::BTreeMap;

use agentmeter_schemas::{TenantId, Tier};
use serde::Deserialize;

use super::model::{BillTo, Issuer};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterFile {
    #[serde(default)]
    issuer: Option<Issuer>,
    #[serde(default)]
    tenants: BTreeMap<String, Entry>,
}

/// A tenant: its tier alone, or a table with its tier and bill-to.
#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Tier(String),
    Table(TenantTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantTable {
    tier: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    address: Vec<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    customer_ids: BTreeMap<String, String>,
}

/// Who is billed and who bills.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    /// Each listed tenant's tier.
    pub tiers: BTreeMap<TenantId, Tier>,
    /// Bill-to details of the tenants that have them.
    pub bill_to: BTreeMap<TenantId, BillTo>,
    /// The issuer printed on every invoice.
    pub issuer: Option<Issuer>,
}

/// An email address as far as a roster can check it: one `@` with text on both sides and a
/// dot in the domain, no spaces.
fn plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
}

/// Parses a roster with its issuer and bill-to tables.
///
/// # Errors
///
/// A message naming the entry at fault.
pub fn parse_roster(text: &str) -> Result<Roster, String> {
    let file: RosterFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Roster::default();
    if let Some(issuer) = file.issuer {
        if issuer.name.trim().is_empty() {
            return Err("issuer.name: must not be empty".into());
        }
        if let Some(e) = issuer.email.as_deref().filter(|e| !plausible_email(e)) {
            return Err(format!("issuer.email: {e:?} is not an email address"));
        }
        out.issuer = Some(issuer);
    }
    for (t, entry) in file.tenants {
        let tenant = TenantId::new(&t).map_err(|e| format!("tenants: {e}"))?;
        let (tier, table) = match entry {
            Entry::Tier(tier) => (tier, None),
            Entry::Table(table) => (table.tier.clone(), Some(table)),
        };
        let tier = Tier::new(&tier).map_err(|e| format!("tenants.{t}: {e}"))?;
        if let Some(table) = table {
            if let Some(e) = table.email.as_deref().filter(|e| !plausible_email(e)) {
                return Err(format!("tenants.{t}.email: {e:?} is not an email address"));
            }
            let name = table.name.unwrap_or_else(|| tenant.to_string());
            if name.trim().is_empty() {
                return Err(format!("tenants.{t}.name: must not be empty"));
            }
            out.bill_to.insert(
                tenant.clone(),
                BillTo {
                    name,
                    address: table.address,
                    email: table.email,
                    customer_ids: table.customer_ids,
                },
            );
        }
        out.tiers.insert(tenant, tier);
    }
    Ok(out)
}

/// Parses a roster: each tenant's tier.
///
/// # Errors
///
/// A message naming the entry at fault.
pub fn parse(text: &str) -> Result<BTreeMap<TenantId, Tier>, String> {
    parse_roster(text).map(|r| r.tiers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_bad_entries() {
        let r = parse("[tenants]\nclinic-a = \"basic\"\n").unwrap();
        assert_eq!(r[&TenantId::new("clinic-a").unwrap()].as_str(), "basic");
        assert_eq!(
            parse("[tenants]\n\"../x\" = \"basic\"\n").unwrap_err(),
            "tenants: invalid tenant_id \"../x\": starts with a character that is not allowed"
        );
        assert!(
            parse("[tenants]\nclinic-a = \"gold tier\"\n")
                .unwrap_err()
                .starts_with("tenants.clinic-a: invalid tier")
        );
        assert!(parse("[people]\n").is_err());
    }

    #[test]
    fn reads_the_issuer_and_bill_to_tables_and_names_bad_ones() {
        let r = parse_roster(
            "[issuer]\nname = \"Acme Ltd\"\nemail = \"billing@acme.example\"\n\
             [tenants]\nclinic-a = \"basic\"\n\
             [tenants.hospital-a]\ntier = \"premium\"\nname = \"Hospital A\"\n\
             address = [\"1 Road\", \"Cork\"]\ncustomer_ids = { stripe = \"cus_1\" }\n",
        )
        .unwrap();
        let issuer = r.issuer.unwrap();
        assert_eq!((issuer.name.as_str(), issuer.payment_terms_days), ("Acme Ltd", 30));
        let h = TenantId::new("hospital-a").unwrap();
        assert_eq!(r.tiers[&h].as_str(), "premium");
        assert_eq!(r.bill_to[&h].address, ["1 Road", "Cork"]);
        assert_eq!(r.bill_to[&h].customer_ids["stripe"], "cus_1");
        assert!(!r.bill_to.contains_key(&TenantId::new("clinic-a").unwrap()));
        assert_eq!(
            parse_roster("[issuer]\nname = \" \"\n[tenants]\n").unwrap_err(),
            "issuer.name: must not be empty"
        );
        assert_eq!(
            parse_roster("[tenants.a]\ntier = \"basic\"\nemail = \"nobody\"\n").unwrap_err(),
            "tenants.a.email: \"nobody\" is not an email address"
        );
        assert!(
            parse_roster("[tenants.a]\ntier = \"basic\"\nphone = \"1\"\n").is_err(),
            "unknown keys are refused"
        );
    }
}
