//! The operator's sealing keys: the key ring in memory (`ring`: what opens and seals, the
//! cache of what was opened, the RSA pool) and the key Secrets it is loaded from (`lifecycle`:
//! watched, created, renewed, retired).

pub mod lifecycle;
pub mod ring;
