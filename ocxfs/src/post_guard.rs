//! What a POST must get past once a node has no valid URL: the document's
//! terms, the shared URL cache, the POST budget, in that order.
//!
//! Presign asks `before_post` at its one decision point and reports the
//! POST's outcome with `after_post`. A refusal is logged here, once per
//! refused open, and makes no POST.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::api::{Listing, ObjectId, ObjectKind};
use crate::error::{Error, Result};
use crate::post_budget::{BudgetStats, PostBudget};
use crate::shared_cache::{Found, Lease, SharedCache, SharedCacheStats};
use crate::terms::Terms;

/// What presign does instead of, or before, its POST.
#[derive(Debug)]
pub enum Decision {
    /// Another node's URL, usable `remaining` longer: no POST.
    Shared { url: Url, remaining: Duration },
    /// POST, then hand the permit back to `after_post`.
    Post(Permit),
}

/// Leave to POST once; carries the shared lease, if this node holds it.
#[derive(Debug)]
pub struct Permit {
    lease: Option<Lease>,
}

/// The guard's part of `ocxfs stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardStats {
    pub post_budget: Option<BudgetStats>,
    pub shared_cache: Option<SharedCacheStats>,
}

pub struct PostGuard {
    /// Documents with a limit, from the latest listing.
    terms: RwLock<HashMap<ObjectId, Terms>>,
    budget: Option<PostBudget>,
    shared: Option<SharedCache>,
    /// How long a failed POST's answer is shared.
    negative_ttl: Duration,
}

impl PostGuard {
    pub fn new(negative_ttl: Duration) -> PostGuard {
        PostGuard {
            terms: RwLock::new(HashMap::new()),
            budget: None,
            shared: None,
            negative_ttl,
        }
    }

    pub fn with_budget(mut self, budget: PostBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    pub fn with_shared_cache(mut self, shared: SharedCache) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Takes the terms of every listed document that has any.
    pub fn set_terms(&self, listing: &Listing) {
        let terms = listing
            .documents
            .iter()
            .map(|d| (d, Terms::of(d)))
            .filter(|(_, t)| *t != Terms::default())
            .map(|(d, t)| {
                let object = ObjectId {
                    kind: ObjectKind::Document,
                    id: d.id().to_owned(),
                };
                (object, t)
            })
            .collect();
        *self.terms.write().expect("terms poisoned") = terms;
    }

    fn refusal(&self, object: &ObjectId) -> Option<Error> {
        let terms = self.terms.read().expect("terms poisoned");
        let t = terms.get(object)?;
        t.check(&object.to_string(), chrono::Utc::now()).err()
    }

    /// `user.ocxfs.post_needed`: `no` (a URL is cached), `yes`, or
    /// `refused: …` saying why opening it fails without a POST. Never waits.
    pub fn post_needed(&self, object: &ObjectId, cached: bool) -> String {
        if cached {
            return "no".into();
        }
        if let Some(e) = self.refusal(object) {
            return format!("refused: {e}");
        }
        if self.budget.as_ref().is_some_and(PostBudget::is_spent) {
            let b = self.budget.as_ref().expect("checked");
            return format!("refused: the POST budget of {} is spent", b.spec());
        }
        "yes".into()
    }

    /// Called when this node has no valid URL for `object` (`stale`: the
    /// URL storage just called expired, if that is why).
    pub async fn before_post(&self, object: &ObjectId, stale: Option<&Url>) -> Result<Decision> {
        if let Some(e) = self.refusal(object) {
            tracing::warn!(%object, "not POSTing: {e}");
            return Err(e);
        }
        let name = object.to_string();
        let mut lease = None;
        if let Some(shared) = &self.shared {
            if let Some(stale) = stale {
                shared.expired(&name, stale.as_str()).await;
            }
            match shared.find(&name).await {
                Found::Url { url, remaining } => match Url::parse(&url) {
                    Ok(url) => return Ok(Decision::Shared { url, remaining }),
                    Err(_) => tracing::warn!(%object, "the shared cache holds a bad URL; POSTing"),
                },
                Found::Failed(e) => return Err(e),
                Found::Lease(l) => lease = Some(l),
                Found::Local => {}
            }
        }
        if let Err(e) = self.spend().await {
            tracing::error!(%object, "not POSTing: {e}");
            if let (Some(shared), Some(l)) = (&self.shared, lease) {
                shared.release(l).await;
            }
            return Err(e);
        }
        Ok(Decision::Post(Permit { lease }))
    }

    /// Counts one POST against the budget: the cluster's when the shared
    /// cache answers, else this mount's own.
    async fn spend(&self) -> Result<()> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        if let Some(shared) = &self.shared {
            let (window, _) = budget.window();
            let spec = budget.spec();
            match shared.spend(spec.period, window, spec.limit).await {
                Some(Ok(used)) => {
                    budget.note_shared(window, used);
                    return Ok(());
                }
                Some(Err(used)) => {
                    budget.note_shared(window, used);
                    return Err(budget.spent());
                }
                None => {}
            }
        }
        budget.spend_local()
    }

    /// The POST's outcome: a URL usable `remaining` longer, or its error.
    pub async fn after_post(
        &self,
        object: &ObjectId,
        permit: Permit,
        outcome: std::result::Result<(&Url, Duration), &Error>,
    ) {
        let (Some(shared), Some(lease)) = (&self.shared, permit.lease) else {
            return;
        };
        let name = object.to_string();
        match outcome {
            Ok((url, remaining)) => shared.publish(&name, lease, url.as_str(), remaining).await,
            Err(e) => {
                shared
                    .publish_failure(&name, lease, e, self.negative_ttl)
                    .await
            }
        }
    }

    pub fn stats(&self) -> GuardStats {
        GuardStats {
            post_budget: self.budget.as_ref().map(PostBudget::stats),
            shared_cache: self.shared.as_ref().map(SharedCache::stats),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::post_budget::parse_spec;

    fn listing(docs: serde_json::Value) -> Listing {
        Listing {
            documents: serde_json::from_value(docs).unwrap(),
            ..Listing::default()
        }
    }

    fn doc(id: &str) -> ObjectId {
        ObjectId {
            kind: ObjectKind::Document,
            id: id.into(),
        }
    }

    #[tokio::test]
    async fn refused_documents_and_a_spent_budget_never_reach_a_post() {
        let guard = PostGuard::new(Duration::from_secs(10))
            .with_budget(PostBudget::new(parse_spec("2/day").unwrap(), None));
        guard.set_terms(&listing(serde_json::json!([
            {"$uri": "/api/v1/documents/0000000000000001", "created_at": "2020-01-01T00:00:00Z",
             "downloads_remaining": 0},
            {"$uri": "/api/v1/documents/0000000000000002", "created_at": "2020-01-01T00:00:00Z",
             "valid_until": "2021-01-01T00:00:00Z"},
            {"$uri": "/api/v1/documents/0000000000000003", "created_at": "2020-01-01T00:00:00Z",
             "downloads_remaining": 4},
        ])));
        for id in ["0000000000000001", "0000000000000002"] {
            let e = guard.before_post(&doc(id), None).await.unwrap_err();
            assert_eq!(e.errno(), libc::EACCES, "{e}");
            assert!(guard.post_needed(&doc(id), false).starts_with("refused: "));
            // A URL this node holds is still served.
            assert_eq!(guard.post_needed(&doc(id), true), "no");
        }
        let ok = doc("0000000000000003");
        assert_eq!(guard.post_needed(&ok, false), "yes");
        for _ in 0..2 {
            let d = guard.before_post(&ok, None).await.unwrap();
            assert!(matches!(d, Decision::Post(Permit { lease: None })));
        }
        let e = guard.before_post(&ok, None).await.unwrap_err();
        assert_eq!(e.errno(), libc::EDQUOT);
        assert!(
            guard
                .post_needed(&ok, false)
                .contains("budget of 2/day is spent")
        );
        let s = guard.stats().post_budget.unwrap();
        assert_eq!((s.used, s.left), (2, 0));
    }
}
