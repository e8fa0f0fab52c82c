//! `GET /metrics` in the Prometheus text format. Counters and histograms are
//! recorded where things happen (the edge, the worker, uploads, the rate
//! limiter) through the `metrics` facade; queue figures are read at scrape time.

use std::sync::OnceLock;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use service::Services;

/// Seconds: from sub-millisecond API calls to multi-second image jobs.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide recorder (one per process, however many routers exist).
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("buckets are non-empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        // Histograms keep their samples until upkeep folds them; without a
        // scraper nothing would, so a thread of its own does it (not a task:
        // the recorder outlives any one runtime, as in tests).
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            })
            .expect("starting the metrics upkeep thread");
        handle
    })
}

pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(render))
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(super) async fn render(State(s): State<Services>) -> Response {
    let handle = recorder();
    match s.job_queue_stats().await {
        Ok((queued, oldest)) => {
            metrics::gauge!("image_jobs_queued").set(queued as f64);
            metrics::gauge!("image_jobs_oldest_age_seconds")
                .set(oldest.map(|d| d.as_secs_f64()).unwrap_or(0.0));
        }
        Err(e) => tracing::warn!(error = %e, "reading job queue figures for /metrics"),
    }
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
