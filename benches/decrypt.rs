//! Decrypt throughput on one core: how many sealed values per second the private-key path
//! (aws-lc-rs RSA-4096 OAEP + AES-256-GCM) opens, with the committed kubeseal vector.
//! Run with `cargo bench --bench decrypt` (part of `make bench`).

use std::time::Instant;

use mltenant_operator::api::BundleScope;
use mltenant_operator::crypto::{self, SealingKey};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/crypto/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn main() {
    let key = SealingKey::from_pem(&fixture("sealing-key.crt"), &fixture("sealing-key.key")).expect("fixture key");
    let sealed = fixture("tenant.kubeseal.b64");
    let label = crypto::label(BundleScope::Tenant, "financial-ml", "");
    let keys = [key];
    // Warm up, then measure.
    for _ in 0..20 {
        crypto::open(&keys, &label, sealed.trim()).expect("opens");
    }
    let rounds = 1000;
    let start = Instant::now();
    for _ in 0..rounds {
        crypto::open(&keys, &label, sealed.trim()).expect("opens");
    }
    let elapsed = start.elapsed();
    println!(
        "decrypt: {rounds} values in {:.2}s = {:.0} values/s on one core ({:.2} ms per value)",
        elapsed.as_secs_f64(),
        rounds as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / rounds as f64
    );
}
