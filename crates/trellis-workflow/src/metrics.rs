//! Prometheus metrics of the engine: runs by outcome, step latency, retries, dead letters.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The engine's metrics, in a registry of their own that the server serves with its own.
pub struct Metrics {
    registry: Registry,
    /// Runs that ended, by workflow and status.
    pub runs: IntCounterVec,
    /// Steps taken, by kind and outcome.
    pub steps: IntCounterVec,
    /// Step latency by kind.
    pub step_seconds: HistogramVec,
    /// Message attempts that failed and will be retried, by kind.
    pub retries: IntCounterVec,
    /// Messages given up on, by kind.
    pub dead: IntCounterVec,
    /// Messages sent, by kind.
    pub sent: IntCounterVec,
}

impl Metrics {
    /// Register the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let runs = IntCounterVec::new(
            Opts::new("trellis_workflow_runs_total", "Workflow runs that ended"),
            &["workflow", "status"],
        )?;
        let steps = IntCounterVec::new(
            Opts::new("trellis_workflow_steps_total", "Workflow steps taken"),
            &["kind", "outcome"],
        )?;
        let step_seconds = HistogramVec::new(
            HistogramOpts::new("trellis_workflow_step_seconds", "Workflow step latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
                ],
            ),
            &["kind"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "trellis_workflow_message_retries_total",
                "Failed message attempts that will be retried",
            ),
            &["kind"],
        )?;
        let dead = IntCounterVec::new(
            Opts::new(
                "trellis_workflow_dead_letters_total",
                "Messages given up on after their last attempt",
            ),
            &["kind"],
        )?;
        let sent = IntCounterVec::new(
            Opts::new("trellis_workflow_messages_sent_total", "Messages delivered"),
            &["kind"],
        )?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(steps.clone()))?;
        registry.register(Box::new(step_seconds.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(dead.clone()))?;
        registry.register(Box::new(sent.clone()))?;
        Ok(Self {
            registry,
            runs,
            steps,
            step_seconds,
            retries,
            dead,
            sent,
        })
    }

    /// Everything measured so far.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }
}
