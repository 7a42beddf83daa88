//! Prometheus metrics: requests and latency by route template, database pool.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The metrics of one server.
pub struct Metrics {
    registry: Registry,
    /// Requests by method, route template and status.
    pub requests: IntCounterVec,
    /// Latency by method and route template.
    pub latency: HistogramVec,
    pool_size: IntGauge,
    pool_idle: IntGauge,
}

impl Metrics {
    /// Register the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("trellis_http_requests_total", "HTTP requests"),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "trellis_http_request_duration_seconds",
                "HTTP request latency",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["method", "route"],
        )?;
        let pool_size = IntGauge::new(
            "trellis_db_pool_connections",
            "Database connections open (read pool)",
        )?;
        let pool_idle = IntGauge::new(
            "trellis_db_pool_idle",
            "Idle database connections (read pool)",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool_size.clone()))?;
        registry.register(Box::new(pool_idle.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            pool_size,
            pool_idle,
        })
    }

    /// Render the text exposition format.
    pub fn render(&self, pool: (u32, usize), more: Vec<prometheus::proto::MetricFamily>) -> String {
        self.pool_size.set(i64::from(pool.0));
        self.pool_idle.set(i64::try_from(pool.1).unwrap_or(0));
        let mut buf = Vec::new();
        let mut all = self.registry.gather();
        all.extend(more);
        if TextEncoder::new().encode(&all, &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
