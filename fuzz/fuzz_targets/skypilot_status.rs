//! SkyPilot's record answers: `/status` (records, fingerprints, conversion to clusters,
//! and the one-call `parse_status`) and `/cost_report`.

use skypilot_host::skypilot::{
    parse_status,
    wire::{parse_records, CostRecord, StatusRecord},
};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(records) = parse_records::<StatusRecord>(text) {
            for r in records {
                let _ = r.fingerprint();
                let _ = r.into_cluster();
            }
        }
        let _ = parse_status(text);
        if let Ok(costs) = parse_records::<CostRecord>(text) {
            for c in &costs {
                let _ = c.hourly_cost();
            }
        }
    });
}
