//! Traces for operators: the library's spans of child starts and restarts
//! (`warden.start`), messages handled (`warden.handle`) and calls made from outside
//! (`warden.call`), exported over OTLP/HTTP (JSON) to a collector when the operator
//! asks: `--otlp URL`, or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`. Spans go out
//! in batches from a thread of the exporter's own; the end of the run sends what is
//! left, waiting at most [`FLUSH`].

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::time::Duration;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// How long the end of a run waits for the last spans to be sent.
pub(crate) const FLUSH: Duration = Duration::from_secs(5);

/// The exporter, to be shut down (flushed) at the end.
#[derive(Debug)]
pub(crate) struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Sends what is left.
    pub(crate) fn finish(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(FLUSH) {
            eprintln!("warden: the last traces were not all sent: {e}");
        }
    }
}

/// The collector to send to: `--otlp`, else the environment's; `None` for no traces.
pub(crate) fn endpoint(flag: Option<&str>) -> Option<String> {
    let base = match flag {
        Some(url) => url.to_owned(),
        None => std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|v| !v.is_empty())?,
    };
    Some(format!("{}/v1/traces", base.trim_end_matches('/')))
}

/// A layer exporting the `warden.*` spans to `endpoint` (a full `/v1/traces` URL).
pub(crate) fn layer<S>(endpoint: &str) -> Result<(impl Layer<S>, Traces), String>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| format!("cannot export traces to {endpoint}: {e}"))?;
    let resource = Resource::builder().with_service_name("warden").build();
    let provider =
        SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(exporter).build();
    let tracer = provider.tracer("warden");
    let only_ours = tracing_subscriber::filter::filter_fn(|meta| {
        meta.is_span() && meta.name().starts_with("warden.")
    });
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(only_ours);
    Ok((layer, Traces { provider }))
}
