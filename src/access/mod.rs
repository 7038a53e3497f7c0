//! Who can read the distributed Secrets (`exposure`: RBAC held compactly, each Secret's
//! readers found and confirmed) and who did read them (`usage`: what the audit sink counted).

pub mod exposure;
pub mod usage;
