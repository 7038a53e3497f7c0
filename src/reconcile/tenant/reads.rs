//! Who did read the tenant's Secrets: its managed namespaces, Secrets and declared readers go to
//! what the audit sink counts (`usage`), and each declared reader's last read comes back into
//! the tenant's status (`environments[].secrets[].readers[].lastReadAt`), at most once per
//! `--usage-record-period` for a reader that reads all the time.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::access::exposure::assess::Place;
use crate::access::exposure::identity::Subject;
use crate::access::usage::{Published, Usage};
use crate::api::{MLTenant, ReaderStatus};

/// The reader statuses of each Secret, by (namespace, Secret).
pub type Readers = BTreeMap<(String, String), Vec<ReaderStatus>>;

/// Publish `places` to `usage` (the status's last reads seed a replica that starts leading) and
/// read back what the status should say.
pub fn record(tenant: &MLTenant, places: &[Place], usage: &Usage, now: jiff::Timestamp) -> Readers {
    let recorded = recorded(tenant);
    let seconds = |t: &Option<Time>| t.as_ref().map(|t| t.0.as_second());
    let published = places
        .iter()
        .map(|place| Published {
            namespace: place.namespace.clone(),
            environment: place.environment.clone(),
            secrets: place
                .secrets
                .iter()
                .map(|wanted| {
                    let readers = wanted.readers.iter().filter_map(account).map(|account| {
                        let status = recorded.get(&(place.environment.clone(), wanted.name.clone(), account.clone()));
                        let (last, since) =
                            status.map_or((None, None), |r| (seconds(&r.last_read_at), seconds(&r.since)));
                        (account, last, since)
                    });
                    (wanted.name.clone(), readers.collect())
                })
                .collect(),
        })
        .collect();
    usage.publish(&tenant.name_any(), published, now.as_second());
    let time = |secs: i64| jiff::Timestamp::from_second(secs).ok().map(Time);
    let mut readers = Readers::new();
    for place in places {
        for wanted in &place.secrets {
            let statuses = usage
                .readers(&place.namespace, &wanted.name)
                .into_iter()
                .map(|(account, last, since)| ReaderStatus {
                    service_account: account,
                    last_read_at: last.and_then(time),
                    since: time(since),
                })
                .collect();
            readers.insert((place.namespace.clone(), wanted.name.clone()), statuses);
        }
    }
    readers
}

/// `namespace/name` of a declared reader.
fn account(subject: &Subject) -> Option<String> {
    match subject {
        Subject::ServiceAccount { namespace, name } => Some(format!("{namespace}/{name}")),
        _ => None,
    }
}

/// The reader statuses the tenant's status has, by (environment, Secret, account).
fn recorded(tenant: &MLTenant) -> BTreeMap<(String, String, String), ReaderStatus> {
    let environments = tenant.status.iter().flat_map(|s| &s.environments);
    environments
        .flat_map(|env| {
            env.secrets.iter().flat_map(move |secret| {
                secret
                    .readers
                    .iter()
                    .map(move |r| ((env.name.clone(), secret.name.clone(), r.service_account.clone()), r.clone()))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::access::exposure::assess::Wanted;
    use crate::access::exposure::identity::Kind;
    use crate::access::usage::{Access, Actor, Outcome};
    use crate::api::{EnvironmentStatus, MLTenantSpec, MLTenantStatus, SecretStatus};

    #[test]
    fn the_last_read_goes_into_the_status_and_a_new_replica_starts_from_it() {
        let argo = Subject::service_account("argowf", "argo-workflow");
        let places = vec![Place {
            environment: "dev".into(),
            namespace: "fin-dev".into(),
            secrets: vec![Wanted { name: "ml-platform".into(), readers: vec![argo] }],
        }];
        let mut tenant = MLTenant::new("fin", MLTenantSpec::with_environments(&["dev"]));
        let at = |secs| jiff::Timestamp::from_second(secs).unwrap();
        let usage = Usage::new(Duration::from_secs(60));
        let first = record(&tenant, &places, &usage, at(1_000));
        let key = ("fin-dev".to_string(), "ml-platform".to_string());
        assert_eq!(
            first[&key],
            [ReaderStatus {
                service_account: "argowf/argo-workflow".into(),
                last_read_at: None,
                since: Some(Time(at(1_000)))
            }]
        );
        let actor = Actor {
            user: "system:serviceaccount:argowf:argo-workflow",
            kind: Kind::ServiceAccount,
            impersonator: None,
        };
        let read =
            Access { namespace: Some("fin-dev"), name: Some("ml-platform"), outcome: Outcome::Read, actor, at: 1_500 };
        assert!(usage.record(&read));
        let second = record(&tenant, &places, &usage, at(2_000));
        assert_eq!(second[&key][0].last_read_at, Some(Time(at(1_500))));
        assert_eq!(second[&key][0].since, Some(Time(at(1_000))), "since stays");
        // Another replica, leading later, starts from what the status says.
        tenant.status = Some(MLTenantStatus {
            environments: vec![EnvironmentStatus {
                name: "dev".into(),
                namespace: "fin-dev".into(),
                secrets: vec![SecretStatus {
                    name: "ml-platform".into(),
                    readers: second[&key].clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        let fresh = Usage::new(Duration::from_secs(60));
        assert_eq!(record(&tenant, &places, &fresh, at(9_000))[&key], second[&key]);
    }
}
