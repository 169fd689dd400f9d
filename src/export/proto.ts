// The official OTLP definitions (./proto, vendored unmodified) loaded with protobufjs.
// Loading the four small files takes a few milliseconds once per process; protobufjs then
// generates the encoder/decoder functions itself, which is as fast as a precompiled static
// module, so nothing is generated at build time and the .proto files stay the one source.
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import protobuf from 'protobufjs';

const PROTO_DIR = fileURLToPath(new URL('./proto/', import.meta.url));

export const OTLP_PROTO_FILES = [
  'opentelemetry/proto/common/v1/common.proto',
  'opentelemetry/proto/resource/v1/resource.proto',
  'opentelemetry/proto/trace/v1/trace.proto',
  'opentelemetry/proto/collector/trace/v1/trace_service.proto',
].map((f) => path.join(PROTO_DIR, f));

export interface OtlpTypes {
  root: protobuf.Root;
  ExportTraceServiceRequest: protobuf.Type;
  ExportTraceServiceResponse: protobuf.Type;
  Span: protobuf.Type;
}

let cached: OtlpTypes | undefined;

/** The OTLP message types, loaded once. Field names are protobufjs's camelCase (`traceId`). */
export function otlpTypes(): OtlpTypes {
  if (cached) return cached;
  const root = new protobuf.Root();
  // Imports are written relative to the repository root of opentelemetry-proto.
  root.resolvePath = (origin, target) => (path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
  root.loadSync(OTLP_PROTO_FILES);
  root.resolveAll();
  cached = {
    root,
    ExportTraceServiceRequest: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest'),
    ExportTraceServiceResponse: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse'),
    Span: root.lookupType('opentelemetry.proto.trace.v1.Span'),
  };
  return cached;
}
