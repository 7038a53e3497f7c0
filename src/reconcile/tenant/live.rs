//! The objects a decision is taken on, as they are now: from the label-selected caches, or,
//! where a cache cannot know (an object without our labels, a new name), from one GET; either
//! way trimmed alike (`trim`) and read through the guard (`guard`).

use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Resource};

use crate::reconcile::context::Context;
use crate::reconcile::guard::Guarded;
use crate::reconcile::index::{Cached, Child};
use crate::reconcile::trim::Trim;

/// The live object `name` in `namespace`: from the label-selected cache, or, when the cache has
/// nothing (a new name, or an object without our labels, which the cache never sees), from one
/// GET. Deciding on the cache alone would let an apply merge into a user's own object. In a
/// namespace this reconcile has just created (`fresh`) nothing can exist yet but what a
/// cluster-wide writer raced in within milliseconds, so no GET is spent there (a first converge
/// would otherwise read every object it writes).
pub async fn object<K>(
    ctx: &Context,
    cache: &Cached<K>,
    namespace: &str,
    name: &str,
    fresh: bool,
) -> kube::Result<Option<Arc<K>>>
where
    K: Child + Resource<Scope = NamespaceResourceScope> + Trim,
{
    if let Some(cached) = cache.get(Some(namespace), name) {
        return Ok(Some(cached));
    }
    if fresh {
        return Ok(None);
    }
    let read = Api::<Guarded<K>>::namespaced(ctx.client.clone(), namespace).get_opt(name).await?;
    // Decided on like a cached object, so trimmed like one.
    Ok(read.map(Guarded::into_result).transpose()?.map(|mut obj| {
        obj.trim();
        Arc::new(obj)
    }))
}

/// The live namespace `name`: from the cache, or from one GET (trimmed like a cached one).
pub async fn namespace(ctx: &Context, name: &str) -> kube::Result<Option<Arc<Namespace>>> {
    if let Some(cached) = ctx.namespaces.get(None, name) {
        return Ok(Some(cached));
    }
    read_namespace(ctx, name).await
}

/// Namespace `name` as the API server has it now (trimmed like a cached one).
pub async fn read_namespace(ctx: &Context, name: &str) -> kube::Result<Option<Arc<Namespace>>> {
    let read = Api::<Guarded<Namespace>>::all(ctx.client.clone()).get_opt(name).await?;
    Ok(read.map(Guarded::into_result).transpose()?.map(|mut ns| {
        ns.trim();
        Arc::new(ns)
    }))
}
