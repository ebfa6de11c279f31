//! A hub over a counter the tests move, shared by the hub's tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::{Frame, Hub, HubConfig, Loader, Snapshot};
use crate::metrics::GatewayMetrics;

/// Figures are a counter the test moves; each load counts.
fn counter_loader(value: Arc<AtomicI64>, loads: Arc<AtomicU64>) -> Loader {
    Arc::new(move |scope: String| {
        let value = value.load(Ordering::SeqCst);
        loads.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            Ok(Snapshot {
                json: format!(r#"{{"scope":"{scope}","pendingT3":{value}}}"#),
                fingerprint: value.to_string(),
            })
        })
    })
}

/// A hub with a 50 ms coalescing window, and the counter its figures show and its load count.
pub fn hub(buffer: usize, period_ms: u64) -> (Hub, Arc<AtomicI64>, Arc<AtomicU64>) {
    let value = Arc::new(AtomicI64::new(0));
    let loads = Arc::new(AtomicU64::new(0));
    let hub = Hub::new(
        HubConfig {
            period: Duration::from_millis(period_ms),
            coalesce: Duration::from_millis(50),
            client_buffer: buffer,
            heartbeat: Duration::from_secs(15),
        },
        counter_loader(value.clone(), loads.clone()),
        GatewayMetrics::new(),
    );
    (hub, value, loads)
}

/// The counter a frame carries.
pub fn pending_t3(frame: &Frame) -> i64 {
    let text = std::str::from_utf8(&frame.bytes).unwrap();
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    serde_json::from_str::<serde_json::Value>(data).unwrap()["pendingT3"]
        .as_i64()
        .unwrap()
}
