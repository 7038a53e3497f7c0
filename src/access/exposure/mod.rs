//! Who can read the Secrets the operator distributed: RBAC held compactly (`rbac`, `rules`),
//! the identities it names and the platform ones expected to read (`identity`), each Secret's
//! readers found from them (`assess`) and confirmed with SubjectAccessReviews (`confirm`).
//! Used by the tenant controller (condition `AccessIsolated`, metrics) and by
//! `mltenant access`, which needs nothing but RBAC.

pub mod assess;
pub mod confirm;
pub mod identity;
pub mod rbac;
pub mod rules;
