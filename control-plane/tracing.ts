// OTLP trace export for the control plane, when the standard OTEL_* variables ask for it
// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER).
// Without them no SDK is loaded and the tracer is undefined: callers skip span work entirely.
import type { Span, Tracer } from '@opentelemetry/api';

export interface ControlPlaneTracing {
  tracer: Tracer | undefined;
  shutdown(): Promise<void>;
}

export async function tracingFromEnv(env: NodeJS.ProcessEnv, serviceName = 'meshlet-control-plane'): Promise<ControlPlaneTracing> {
  const wants = env['OTEL_EXPORTER_OTLP_ENDPOINT'] || env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] || (env['OTEL_TRACES_EXPORTER'] && env['OTEL_TRACES_EXPORTER'] !== 'none');
  if (!wants || env['OTEL_SDK_DISABLED'] === 'true') return { tracer: undefined, shutdown: async () => {} };
  const api = await import('@opentelemetry/api');
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  if (!env['OTEL_SERVICE_NAME']) env['OTEL_SERVICE_NAME'] = serviceName;
  const sdk = new NodeSDK({ instrumentations: [] });
  sdk.start();
  return { tracer: api.trace.getTracer('meshlet-control-plane'), shutdown: () => sdk.shutdown() };
}

/** SpanStatusCode.ERROR without loading the API when not tracing. */
export const SPAN_ERROR = 2;

/** Ends a span as failed with a stable error code (OpenTelemetry's error.type). */
export function failSpan(span: Span, errorType: string, message: string): void {
  span.setAttribute('error.type', errorType);
  span.setStatus({ code: SPAN_ERROR, message });
}
