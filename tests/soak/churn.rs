//! Churn: one random change at a time to the fleet or to what the operator manages, the way
//! teams and hands change a cluster: tenants created, edited and deleted, bundles re-sealed,
//! managed Secrets, Roles and namespaces deleted or edited by hand.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::Role;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::fleet::{Fleet, Member, PLATFORM, READER_ROLE, namespace};

const ENVIRONMENTS: [&str; 4] = ["dev", "staging", "production", "qa"];

/// xorshift64*: reproducible from the seed the soak prints.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The actions and their weights.
const ACTIONS: [(&str, usize); 10] = [
    ("create tenant", 10),
    ("delete tenant", 8),
    ("edit tenant", 20),
    ("re-seal bundle", 25),
    ("re-seal shared bundle", 1),
    ("delete Secret by hand", 10),
    ("edit Secret by hand", 5),
    ("delete namespace by hand", 4),
    ("strip namespace labels by hand", 3),
    ("delete Role by hand", 5),
];

pub struct Churn {
    pub rng: Rng,
    /// Target fleet size: creations below it, deletions above 90 % of it.
    target: usize,
    pub counts: BTreeMap<&'static str, usize>,
}

impl Churn {
    pub fn new(seed: u64, target: usize) -> Self {
        Churn { rng: Rng::new(seed), target, counts: BTreeMap::new() }
    }

    /// A random member like a team would declare it.
    pub fn member(&mut self) -> Member {
        let count = 1 + self.rng.below(3);
        let mut envs: Vec<&str> = ENVIRONMENTS.to_vec();
        while envs.len() > count {
            envs.remove(self.rng.below(envs.len()));
        }
        let mut m = Member::new(&envs);
        m.shared = self.rng.chance(50);
        m.reader = self.rng.chance(30);
        m.delete_policy = self.rng.chance(40);
        m
    }

    /// Do one random action that applies; what it was.
    pub async fn step(&mut self, fleet: &mut Fleet) -> &'static str {
        loop {
            let total: usize = ACTIONS.iter().map(|(_, w)| w).sum();
            let mut roll = self.rng.below(total);
            let action = ACTIONS
                .iter()
                .find_map(|(action, weight)| {
                    if roll < *weight {
                        Some(*action)
                    } else {
                        roll -= weight;
                        None
                    }
                })
                .expect("a weighted action");
            if self.act(action, fleet).await {
                *self.counts.entry(action).or_default() += 1;
                return action;
            }
        }
    }

    /// Do `action` if it applies now; whether it did.
    async fn act(&mut self, action: &str, fleet: &mut Fleet) -> bool {
        let names: Vec<String> = fleet.members.keys().cloned().collect();
        if names.is_empty() && action != "create tenant" {
            return false;
        }
        let name = self.rng.pick(&names).clone();
        let admin = fleet.client.clone();
        match action {
            "create tenant" if fleet.members.len() < self.target => {
                let m = self.member();
                fleet.create(m).await;
            }
            "delete tenant" if fleet.members.len() > self.target * 9 / 10 => fleet.delete(&name).await,
            "edit tenant" => {
                self.edit(fleet.members.get_mut(&name).expect("a member"));
                fleet.update(&name).await;
            }
            "re-seal bundle" => fleet.reseal(&name).await,
            "re-seal shared bundle" => fleet.reseal_shared().await,
            "delete Secret by hand" => {
                let ns = self.environment_namespace(fleet, &name);
                ignore_missing(Api::<Secret>::namespaced(admin, &ns).delete(PLATFORM, &DeleteParams::default()).await);
            }
            "edit Secret by hand" => {
                let ns = self.environment_namespace(fleet, &name);
                let patch = json!({"data": {"AWS_ACCESS_KEY_ID": "aGFuZC1lZGl0ZWQ="}});
                let api = Api::<Secret>::namespaced(admin, &ns);
                fleet.tampered.insert(format!("Secret {ns}/{PLATFORM}"), std::time::Instant::now());
                ignore_missing(api.patch(PLATFORM, &PatchParams::default(), &Patch::Merge(&patch)).await);
            }
            "delete namespace by hand" => {
                let ns = self.environment_namespace(fleet, &name);
                ignore_missing(Api::<Namespace>::all(admin).delete(&ns, &DeleteParams::default()).await);
            }
            "strip namespace labels by hand" => {
                let ns = self.environment_namespace(fleet, &name);
                let strip =
                    json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null, "mltenant.io/tenant": null}}});
                let api = Api::<Namespace>::all(admin);
                ignore_missing(api.patch(&ns, &PatchParams::default(), &Patch::Merge(&strip)).await);
            }
            "delete Role by hand" if fleet.members[&name].reader => {
                let ns = self.environment_namespace(fleet, &name);
                ignore_missing(Api::<Role>::namespaced(admin, &ns).delete(READER_ROLE, &DeleteParams::default()).await);
            }
            _ => return false,
        }
        true
    }

    fn environment_namespace(&mut self, fleet: &Fleet, name: &str) -> String {
        let environments = &fleet.members[name].environments;
        namespace(name, self.rng.pick(environments).as_str())
    }

    /// Add an environment never used before, remove one, or toggle the shared Secret or the
    /// reader.
    fn edit(&mut self, m: &mut Member) {
        let unused: Vec<&str> =
            ENVIRONMENTS.iter().copied().filter(|e| !m.environments.iter().chain(&m.retired).any(|u| u == e)).collect();
        match self.rng.below(4) {
            0 if !unused.is_empty() => m.environments.push((*self.rng.pick(&unused)).to_owned()),
            1 if m.environments.len() > 1 => {
                let removed = m.environments.remove(self.rng.below(m.environments.len()));
                m.retired.push(removed);
            }
            2 => m.shared = !m.shared,
            _ => m.reader = !m.reader,
        }
    }
}

/// A hand-made change to an object that may just have gone (the operator recreates things,
/// namespaces terminate): a 404 or 409 is not a failure of the soak.
fn ignore_missing<T>(result: kube::Result<T>) {
    match result {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
        Err(error) => panic!("a hand-made change failed: {error}"),
    }
}
