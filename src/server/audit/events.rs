//! The API server's audit events (`audit.k8s.io/v1` `EventList`), counted as they are parsed:
//! each event is decoded on its own, borrowing from the body, into the few fields it takes to
//! count an access (everything else is skipped unread), and the list is never held as a whole.
//! At most `max_events` of one list are counted; the rest are dropped, and counted as such.
//!
//! What counts: requests about Secrets (core group, no subresource) that read them (`get` and
//! `list` when complete, `watch` when its response starts) or that the API server refused
//! (403, whatever the verb). The identity is the impersonated user's when there is one; the
//! impersonating user is counted separately by kind.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::access::exposure::identity::Expected;
use crate::access::usage::{Access, Actor, Outcome, Usage};

/// What became of the events of one list: the `outcome` label of `mltenant_audit_events_total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub read: u64,
    pub denied: u64,
    pub unmanaged: u64,
    pub ignored: u64,
    pub dropped: u64,
}

impl Tally {
    pub const OUTCOMES: [&'static str; 5] = ["read", "denied", "unmanaged", "ignored", "dropped"];

    /// The counts, in the order of [`Tally::OUTCOMES`].
    pub fn counts(&self) -> [u64; 5] {
        [self.read, self.denied, self.unmanaged, self.ignored, self.dropped]
    }
}

#[derive(Deserialize, Default)]
struct User<'a> {
    #[serde(borrow, default)]
    username: Cow<'a, str>,
    #[serde(borrow, default)]
    groups: Vec<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ObjectRef<'a> {
    #[serde(borrow, default)]
    resource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    api_group: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    subresource: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct Status {
    #[serde(default)]
    code: Option<i32>,
}

/// The fields of an audit event this reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(borrow, default)]
    stage: Cow<'a, str>,
    #[serde(borrow, default)]
    verb: Cow<'a, str>,
    #[serde(borrow, default)]
    user: User<'a>,
    #[serde(borrow, default)]
    impersonated_user: Option<User<'a>>,
    #[serde(borrow, default)]
    object_ref: Option<ObjectRef<'a>>,
    #[serde(default)]
    response_status: Option<Status>,
    #[serde(borrow, default)]
    stage_timestamp: Option<Cow<'a, str>>,
}

/// Count the events of `body` into `usage`.
pub fn count(body: &[u8], max_events: usize, expected: &Expected, usage: &Usage) -> serde_json::Result<Tally> {
    let mut tally = Tally::default();
    let now = jiff::Timestamp::now().as_second();
    let mut each = |event: Event| match access(&event, expected, now) {
        None => tally.ignored += 1,
        Some(access) if usage.record(&access) => match access.outcome {
            Outcome::Read => tally.read += 1,
            Outcome::Denied => tally.denied += 1,
        },
        Some(_) => tally.unmanaged += 1,
    };
    let mut dropped = 0;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    List { each: &mut each, max: max_events, dropped: &mut dropped }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    tally.dropped = dropped;
    Ok(tally)
}

/// The access an event reports, none when it reports none that counts.
fn access<'a>(event: &'a Event<'a>, expected: &Expected, now: i64) -> Option<Access<'a>> {
    let object = event.object_ref.as_ref()?;
    let secrets = object.resource.as_deref() == Some("secrets")
        && object.api_group.as_deref().unwrap_or_default().is_empty()
        && object.subresource.is_none();
    if !secrets {
        return None;
    }
    let code = event.response_status.as_ref().and_then(|s| s.code).unwrap_or(0);
    let outcome = match (event.stage.as_ref(), event.verb.as_ref(), code) {
        ("ResponseComplete", _, 403) => Outcome::Denied,
        ("ResponseComplete", "get" | "list", 200..=299) | ("ResponseStarted", "watch", 200..=299) => Outcome::Read,
        _ => return None,
    };
    let groups = |user: &'a User<'a>| user.groups.iter().map(|g| g.as_ref());
    let identity = event.impersonated_user.as_ref().unwrap_or(&event.user);
    let kind = expected.classify(&identity.username, groups(identity));
    let impersonator =
        event.impersonated_user.as_ref().map(|_| expected.classify(&event.user.username, groups(&event.user)));
    // The API server's time of the request; never later than now (and now when unreadable).
    let at = event
        .stage_timestamp
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(now, |t| t.as_second().min(now));
    Some(Access {
        namespace: object.namespace.as_deref().filter(|n| !n.is_empty()),
        name: object.name.as_deref().filter(|n| !n.is_empty()),
        outcome,
        actor: Actor { user: &identity.username, kind, impersonator },
        at,
    })
}

/// The top-level object: only `items` is read, element by element.
struct List<'f, F> {
    each: &'f mut F,
    max: usize,
    dropped: &'f mut u64,
}

impl<'de, F: FnMut(Event<'de>)> DeserializeSeed<'de> for List<'_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, F: FnMut(Event<'de>)> Visitor<'de> for List<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an audit.k8s.io/v1 EventList")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let List { each, max, dropped } = self;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "items" {
                map.next_value_seed(Items { each: &mut *each, max, dropped: &mut *dropped })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct Items<'f, F> {
    each: &'f mut F,
    max: usize,
    dropped: &'f mut u64,
}

impl<'de, F: FnMut(Event<'de>)> DeserializeSeed<'de> for Items<'_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Event<'de>)> Visitor<'de> for Items<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of audit events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut seen = 0;
        while seen < self.max {
            match seq.next_element::<Event<'de>>()? {
                Some(event) => (self.each)(event),
                None => return Ok(()),
            }
            seen += 1;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {
            *self.dropped += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::access::exposure::identity::{DEFAULT_ADMINS, DEFAULT_CONTROLLERS};
    use crate::access::usage::Published;

    fn expected() -> Expected {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Expected::parse(&owned(DEFAULT_ADMINS), &owned(DEFAULT_CONTROLLERS)).unwrap()
    }

    fn usage() -> Usage {
        let usage = Usage::new(Duration::from_secs(3600));
        let secrets = vec![("ml-platform".to_owned(), vec![("argowf/argo-workflow".to_owned(), None, None)])];
        usage.publish("fin", vec![Published { namespace: "fin-dev".into(), environment: "dev".into(), secrets }], 0);
        usage
    }

    fn event(
        verb: &str,
        stage: &str,
        code: i32,
        user: &str,
        groups: &[&str],
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> serde_json::Value {
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": "a",
            "stage": stage, "requestURI": "/api/v1/...", "verb": verb,
            "user": {"username": user, "uid": "u", "groups": groups, "extra": {"k": ["v"]}},
            "sourceIPs": ["10.0.0.1"], "userAgent": "kubectl",
            "objectRef": {"resource": "secrets", "namespace": namespace, "name": name, "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": "2026-12-06T10:00:00.000000Z", "stageTimestamp": "2026-12-06T10:00:00.100000Z",
            "annotations": {"authorization.k8s.io/decision": "allow"},
        })
    }

    fn list(items: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}),
        )
        .unwrap()
    }

    const ARGO: &str = "system:serviceaccount:argowf:argo-workflow";

    #[test]
    fn what_each_event_counts_as() {
        let u = usage();
        let mut impersonated =
            event("get", "ResponseComplete", 200, "admin", &["system:masters"], Some("fin-dev"), Some("ml-platform"));
        impersonated["impersonatedUser"] = json!({"username": ARGO, "groups": ["system:serviceaccounts"]});
        let mut configmap = event("get", "ResponseComplete", 200, ARGO, &[], Some("fin-dev"), Some("x"));
        configmap["objectRef"]["resource"] = json!("configmaps");
        let body = list(vec![
            event("get", "ResponseComplete", 200, ARGO, &[], Some("fin-dev"), Some("ml-platform")),
            event("watch", "ResponseStarted", 200, ARGO, &[], Some("fin-dev"), Some("ml-platform")),
            event("watch", "ResponseComplete", 200, ARGO, &[], Some("fin-dev"), Some("ml-platform")),
            event(
                "get",
                "ResponseComplete",
                403,
                "system:serviceaccount:other:bot",
                &[],
                Some("fin-dev"),
                Some("ml-platform"),
            ),
            event("create", "ResponseComplete", 403, "eve", &["system:authenticated"], Some("fin-dev"), None),
            event("get", "ResponseComplete", 404, ARGO, &[], Some("fin-dev"), Some("absent")),
            event("list", "ResponseComplete", 200, "admin", &["system:masters"], Some("elsewhere"), None),
            event("list", "ResponseComplete", 200, "system:kube-controller-manager", &[], None, None),
            impersonated,
            configmap,
        ]);
        let tally = count(&body, 100, &expected(), &u).unwrap();
        assert_eq!(tally, Tally { read: 4, denied: 2, unmanaged: 1, ignored: 3, dropped: 0 });
        let s = u.series();
        let key = ("fin".to_string(), "dev".to_string(), "ml-platform".to_string());
        assert_eq!(
            s.reads[&(key.clone(), "argowf/argo-workflow".into())],
            2,
            "the get and the watch, with its own token"
        );
        assert_eq!(
            s.others[&(key.clone(), crate::access::exposure::identity::Kind::Controller)],
            1,
            "a cluster-wide list"
        );
        assert_eq!(s.impersonated[&(key, crate::access::exposure::identity::Kind::Admin)], 1);
        assert_eq!(
            s.denied[&(("fin".into(), "dev".into()), crate::access::exposure::identity::Kind::ServiceAccount)],
            1
        );
        assert_eq!(s.denied[&(("fin".into(), "dev".into()), crate::access::exposure::identity::Kind::User)], 1);
    }

    #[test]
    fn events_past_the_cap_are_dropped_and_counted() {
        let u = usage();
        let items = (0..10)
            .map(|_| event("get", "ResponseComplete", 200, ARGO, &[], Some("fin-dev"), Some("ml-platform")))
            .collect();
        let tally = count(&list(items), 4, &expected(), &u).unwrap();
        assert_eq!((tally.read, tally.dropped), (4, 6));
    }

    #[test]
    fn what_is_not_an_event_list_is_refused_whole() {
        let u = usage();
        for body in [&b"{\"items\": 7}"[..], b"[1, 2]", b"{\"items\": [{\"verb\": 3}]}", b"{} trailing", b"\xff"] {
            assert!(count(body, 10, &expected(), &u).is_err(), "{}", String::from_utf8_lossy(body));
        }
        // Nesting in a field read is refused at the parser's depth; in a field skipped, it is
        // skipped without recursion (serde_json's skipping keeps its own stack): neither crashes.
        let nested = |field: &str| {
            format!("{{\"items\": [{{\"user\": {{\"{field}\": {}{}}}}}]}}", "[".repeat(5000), "]".repeat(5000))
        };
        assert!(count(nested("groups").as_bytes(), 10, &expected(), &u).is_err());
        assert_eq!(
            count(nested("extra").as_bytes(), 10, &expected(), &u).unwrap(),
            Tally { ignored: 1, ..Tally::default() }
        );
        assert_eq!(count(b"{\"kind\": \"EventList\"}", 10, &expected(), &u).unwrap(), Tally::default());
    }
}
