//! Fault injection: specs (CLI `K:key=value,...` or JSON), the live list,
//! and deciding which faults fire for a request.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;

use super::stats::Counters;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    StorageStatus,
    Reset,
    ShortBody,
    Stall,
    Expire,
    Change,
    ApiStatus,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::StorageStatus,
        Kind::Reset,
        Kind::ShortBody,
        Kind::Stall,
        Kind::Expire,
        Kind::Change,
        Kind::ApiStatus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::StorageStatus => "storage_status",
            Kind::Reset => "reset",
            Kind::ShortBody => "short_body",
            Kind::Stall => "stall",
            Kind::Expire => "expire",
            Kind::Change => "change",
            Kind::ApiStatus => "api_status",
        }
    }

    /// Parameters this kind accepts besides probability/count/doc.
    fn params(self) -> &'static [&'static str] {
        match self {
            Kind::StorageStatus => &["status", "retry_after"],
            Kind::Stall => &["seconds"],
            Kind::ApiStatus => &["route", "status", "retry_after"],
            _ => &[],
        }
    }
}

/// API routes an `api_status` fault can target (`list`, `get`, `post`:
/// documents).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Route {
    List,
    Get,
    Post,
    Account,
    ListSamples,
    GetSample,
    PostSample,
    ListProjects,
    ListTags,
}

impl Route {
    const ALL: [(Route, &'static str); 9] = [
        (Route::List, "list"),
        (Route::Get, "get"),
        (Route::Post, "post"),
        (Route::Account, "account"),
        (Route::ListSamples, "list_samples"),
        (Route::GetSample, "get_sample"),
        (Route::PostSample, "post_sample"),
        (Route::ListProjects, "list_projects"),
        (Route::ListTags, "list_tags"),
    ];
}

/// A parsed fault. Without `probability` or `count` it fires on every match.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Fault {
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Remaining firings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

impl Fault {
    /// Parses the CLI form `kind:key=value,key=value` (or just `kind`).
    pub fn parse_cli(spec: &str) -> Result<Fault, String> {
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let mut pairs = Vec::new();
        for kv in rest.split(',').filter(|s| !s.trim().is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("{kv:?} is not key=value"))?;
            pairs.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        Fault::from_pairs(kind.trim(), pairs)
    }

    /// Parses the JSON form `{"kind": K, ...params}`.
    pub fn parse_json(v: &serde_json::Value) -> Result<Fault, String> {
        let obj = v.as_object().ok_or("a fault is a JSON object")?;
        let kind = obj
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or("\"kind\" (a string) is required")?;
        let mut pairs = Vec::new();
        for (k, v) in obj.iter().filter(|(k, _)| *k != "kind") {
            let v = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                other => return Err(format!("{k}: unexpected value {other}")),
            };
            pairs.push((k.clone(), v));
        }
        Fault::from_pairs(kind, pairs)
    }

    fn from_pairs(kind: &str, pairs: Vec<(String, String)>) -> Result<Fault, String> {
        let kind = *Kind::ALL.iter().find(|k| k.name() == kind).ok_or_else(|| {
            let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown fault kind {kind:?} (one of {})", names.join(", "))
        })?;
        let mut f = Fault {
            kind,
            probability: None,
            count: None,
            doc: None,
            status: None,
            retry_after: None,
            seconds: None,
            route: None,
        };
        for (k, v) in pairs {
            let num_err = format!("{k}: {v:?} is not a valid number");
            if !["probability", "count", "doc"].contains(&k.as_str())
                && !kind.params().contains(&k.as_str())
            {
                return Err(format!("{}: unknown parameter {k:?}", kind.name()));
            }
            match k.as_str() {
                "probability" => {
                    let p: f64 = v.parse().map_err(|_| num_err.clone())?;
                    if !(0.0..=1.0).contains(&p) {
                        return Err(format!("probability {p} is not within 0..1"));
                    }
                    f.probability = Some(p);
                }
                "count" => {
                    let n: u64 = v.parse().map_err(|_| num_err.clone())?;
                    if n == 0 {
                        return Err("count must be at least 1".into());
                    }
                    f.count = Some(n);
                }
                "doc" => f.doc = Some(v),
                "status" => f.status = Some(v.parse().map_err(|_| num_err.clone())?),
                "retry_after" => f.retry_after = Some(v.parse().map_err(|_| num_err.clone())?),
                "seconds" => {
                    let s: f64 = v.parse().map_err(|_| num_err.clone())?;
                    if !(0.0..=3600.0).contains(&s) {
                        return Err(format!("seconds {s} is not within 0..3600"));
                    }
                    f.seconds = Some(s);
                }
                "route" => {
                    let found = Route::ALL.iter().find(|(_, name)| *name == v);
                    let Some((route, _)) = found else {
                        let names: Vec<_> = Route::ALL.iter().map(|(_, n)| *n).collect();
                        return Err(format!("route {v:?} is not one of {}", names.join(", ")));
                    };
                    f.route = Some(*route);
                }
                _ => unreachable!("checked against the allowed keys"),
            }
        }
        if f.probability.is_some() && f.count.is_some() {
            return Err("give probability or count, not both".into());
        }
        match kind {
            Kind::StorageStatus => {
                let s = *f.status.get_or_insert(503);
                if ![500, 503, 429].contains(&s) {
                    return Err(format!("storage_status: status {s} is not 500, 503 or 429"));
                }
            }
            Kind::ApiStatus => {
                if f.route.is_none() {
                    return Err("api_status: route is required".into());
                }
                let s = *f.status.get_or_insert(500);
                if ![401, 402, 403, 404, 429, 500].contains(&s) {
                    return Err(format!(
                        "api_status: status {s} is not 401, 402, 403, 404, 429 or 500"
                    ));
                }
            }
            Kind::Stall if f.seconds.is_none() => return Err("stall: seconds is required".into()),
            _ => {}
        }
        Ok(f)
    }

    /// Consumes one firing if this fault triggers now.
    fn roll(&mut self) -> bool {
        match (self.count.as_mut(), self.probability) {
            (Some(n), _) => {
                *n -= 1;
                true
            }
            (None, Some(p)) => rand::rng().random::<f64>() < p,
            (None, None) => true,
        }
    }
}

/// What a storage request must do, decided by the faults that fired.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StorageAction {
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    Expire,
    Reset,
    ShortBody,
    Stall(Duration),
}

#[derive(Serialize)]
struct Entry {
    id: u64,
    #[serde(flatten)]
    fault: Fault,
}

#[derive(Default)]
pub(crate) struct Faults {
    inner: Mutex<(u64, Vec<Entry>)>,
}

impl Faults {
    pub fn add(&self, fault: Fault) -> u64 {
        let mut g = self.lock();
        g.0 += 1;
        let id = g.0;
        g.1.push(Entry { id, fault });
        id
    }

    pub fn clear(&self) {
        self.lock().1.clear();
    }

    pub fn list(&self) -> serde_json::Value {
        serde_json::to_value(&self.lock().1).unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Vec<Entry>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rolls every matching fault in order: `change` faults all apply (the
    /// returned count); of the others, the first that fires decides the action
    /// and later ones are not consumed.
    pub fn storage(&self, doc: &str, stats: &Counters) -> (u32, Option<StorageAction>) {
        let mut changes = 0;
        let mut action = None;
        let mut g = self.lock();
        for e in g.1.iter_mut() {
            let f = &mut e.fault;
            if f.kind == Kind::ApiStatus
                || f.doc.as_deref().is_some_and(|d| d != doc)
                || (action.is_some() && f.kind != Kind::Change)
                || !f.roll()
            {
                continue;
            }
            stats.fault(f.kind.name());
            action = match f.kind {
                Kind::Change => {
                    changes += 1;
                    continue;
                }
                Kind::StorageStatus => Some(StorageAction::Status {
                    status: f.status.unwrap_or(503),
                    retry_after: f.retry_after,
                }),
                Kind::Expire => Some(StorageAction::Expire),
                Kind::Reset => Some(StorageAction::Reset),
                Kind::ShortBody => Some(StorageAction::ShortBody),
                Kind::Stall => Some(StorageAction::Stall(Duration::from_secs_f64(
                    f.seconds.unwrap_or(0.0),
                ))),
                Kind::ApiStatus => unreachable!("filtered above"),
            };
        }
        g.1.retain(|e| e.fault.count != Some(0));
        (changes, action)
    }

    /// The error (status, retry_after) an `api_status` fault injects, if one fires.
    /// Faults restricted to a document only match routes that name one.
    pub fn api(
        &self,
        route: Route,
        doc: Option<&str>,
        stats: &Counters,
    ) -> Option<(u16, Option<u64>)> {
        let mut g = self.lock();
        let hit = g.1.iter_mut().find_map(|e| {
            let f = &mut e.fault;
            let matches = f.kind == Kind::ApiStatus
                && f.route == Some(route)
                && f.doc.as_deref().is_none_or(|d| Some(d) == doc);
            (matches && f.roll()).then(|| (f.status.unwrap_or(500), f.retry_after))
        });
        if hit.is_some() {
            stats.fault(Kind::ApiStatus.name());
            g.1.retain(|e| e.fault.count != Some(0));
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cli_specs() {
        let f = Fault::parse_cli("storage_status:status=503,probability=0.02").unwrap();
        assert_eq!(
            (f.kind, f.status, f.probability, f.count),
            (Kind::StorageStatus, Some(503), Some(0.02), None)
        );
        let f = Fault::parse_cli("stall:seconds=5,count=1").unwrap();
        assert_eq!(
            (f.kind, f.seconds, f.count),
            (Kind::Stall, Some(5.0), Some(1))
        );
        let f = Fault::parse_cli("api_status:route=post,status=402,count=1").unwrap();
        assert_eq!(
            (f.kind, f.route, f.status, f.count),
            (Kind::ApiStatus, Some(Route::Post), Some(402), Some(1))
        );
        for (name, route) in [
            ("list_samples", Route::ListSamples),
            ("get_sample", Route::GetSample),
            ("post_sample", Route::PostSample),
            ("list_projects", Route::ListProjects),
            ("list_tags", Route::ListTags),
            ("account", Route::Account),
        ] {
            let f = Fault::parse_cli(&format!("api_status:route={name}")).unwrap();
            assert_eq!(f.route, Some(route));
            let json = serde_json::to_value(&f).unwrap();
            assert_eq!(json["route"], name);
        }
        let f = Fault::parse_cli("reset").unwrap();
        assert_eq!((f.kind, f.count, f.probability), (Kind::Reset, None, None));
        let f = Fault::parse_cli("short_body: doc = 0123456789abcdef , count=2").unwrap();
        assert_eq!(f.doc.as_deref(), Some("0123456789abcdef"));
        assert_eq!(
            Fault::parse_cli("storage_status").unwrap().status,
            Some(503)
        );
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "",
            "nope",
            "storage_status:status=404",
            "storage_status:probability=1.5",
            "storage_status:probability=0.5,count=2",
            "reset:count=0",
            "reset:count=x",
            "reset:seconds=3",
            "stall",
            "stall:seconds=-1",
            "api_status:status=402",
            "api_status:route=upload,status=402",
            "api_status:route=post,status=418",
            "expire:count",
            "change:colour=red",
        ] {
            assert!(Fault::parse_cli(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_json_like_cli() {
        let v = serde_json::json!({"kind": "api_status", "route": "get", "status": 429, "retry_after": 7, "doc": "0000000000000001"});
        assert_eq!(
            Fault::parse_json(&v).unwrap(),
            Fault::parse_cli("api_status:route=get,status=429,retry_after=7,doc=0000000000000001")
                .unwrap()
        );
        assert!(Fault::parse_json(&serde_json::json!({"status": 500})).is_err());
        assert!(Fault::parse_json(&serde_json::json!({"kind": "reset", "count": true})).is_err());
    }

    #[test]
    fn counts_run_out_and_first_action_wins() {
        let faults = Faults::default();
        let stats = Counters::default();
        faults.add(Fault::parse_cli("change:count=1").unwrap());
        faults.add(Fault::parse_cli("short_body:count=1,doc=a").unwrap());
        faults.add(Fault::parse_cli("reset:count=2").unwrap());
        assert_eq!(faults.storage("b", &stats), (1, Some(StorageAction::Reset)));
        assert_eq!(
            faults.storage("a", &stats),
            (0, Some(StorageAction::ShortBody))
        );
        assert_eq!(faults.storage("a", &stats), (0, Some(StorageAction::Reset)));
        assert_eq!(faults.storage("a", &stats), (0, None));
        assert_eq!(faults.list(), serde_json::json!([]));
        let s = stats.snapshot().faults_injected;
        assert_eq!((s["change"], s["short_body"], s["reset"]), (1, 1, 2));
        faults.add(Fault::parse_cli("api_status:route=post,status=402,doc=a").unwrap());
        assert_eq!(faults.api(Route::Post, Some("b"), &stats), None);
        assert_eq!(faults.api(Route::List, None, &stats), None);
        assert_eq!(
            faults.api(Route::Post, Some("a"), &stats),
            Some((402, None))
        );
        assert_eq!(
            faults.api(Route::Post, Some("a"), &stats),
            Some((402, None))
        );
    }
}
