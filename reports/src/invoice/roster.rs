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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterFile {
    tenants: BTreeMap<String, String>,
}

/// Parses a roster.
///
/// # Errors
///
/// A message naming the entry at fault.
pub fn parse(text: &str) -> Result<BTreeMap<TenantId, Tier>, String> {
    let file: RosterFile = toml::from_str(text).map_err(|e| e.to_string())?;
    file.tenants
        .into_iter()
        .map(|(t, tier)| {
            let tenant = TenantId::new(&t).map_err(|e| format!("tenants: {e}"))?;
            let tier = Tier::new(&tier).map_err(|e| format!("tenants.{t}: {e}"))?;
            Ok((tenant, tier))
        })
        .collect()
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
}
