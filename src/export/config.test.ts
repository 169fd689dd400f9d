import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SeqError } from '../errors.js';
import { describeExportConfig, loadExportConfig } from './config.js';

function configError(env: NodeJS.ProcessEnv): SeqError {
  try {
    loadExportConfig(env);
  } catch (e) {
    assert.ok(e instanceof SeqError, `expected a SeqError, got ${e}`);
    assert.equal(e.code, 'SEQ_ERR_CONFIG');
    return e;
  }
  assert.fail('expected a configuration error');
}

describe('export config (OTEL_EXPORTER_OTLP_*)', () => {
  it('is disabled, not an error, without an endpoint', () => {
    assert.equal(loadExportConfig({}), undefined);
    assert.equal(loadExportConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_ENDPOINT: ' ' }), undefined);
    assert.match(describeExportConfig(undefined), /disabled/);
  });

  it('appends /v1/traces to OTEL_EXPORTER_OTLP_ENDPOINT, keeping its path', () => {
    assert.equal(loadExportConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })!.url, 'http://collector:4318/v1/traces');
    assert.equal(loadExportConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' })!.url, 'http://collector:4318/v1/traces');
    assert.equal(loadExportConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://gw.example/otlp/' })!.url, 'https://gw.example/otlp/v1/traces');
  });

  it('uses OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, over the general one', () => {
    const cfg = loadExportConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://b:9999/custom' })!;
    assert.equal(cfg.url, 'http://b:9999/custom');
  });

  it('defaults to http/protobuf, no compression, 10 s timeout', () => {
    const cfg = loadExportConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })!;
    assert.equal(cfg.protocol, 'http/protobuf');
    assert.equal(cfg.compression, 'none');
    assert.equal(cfg.timeoutMs, 10_000);
    assert.deepEqual(cfg.headers, {});
  });

  it('accepts http/json and gzip; the signal-specific variable wins', () => {
    const cfg = loadExportConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip', OTEL_EXPORTER_OTLP_TIMEOUT: '2500',
    })!;
    assert.equal(cfg.protocol, 'http/json');
    assert.equal(cfg.compression, 'gzip');
    assert.equal(cfg.timeoutMs, 2500);
  });

  it('rejects grpc (and anything else) naming what is accepted', () => {
    const e = configError({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' });
    assert.match(e.message, /OTEL_EXPORTER_OTLP_PROTOCOL = "grpc"/);
    assert.match(e.message, /"http\/protobuf" or "http\/json"/);
    assert.match(e.message, /4318/);
    assert.match(configError({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'thrift' }).message, /OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = "thrift"/);
  });

  it('rejects bad endpoint, timeout, compression and batch values with the variable name', () => {
    assert.match(configError({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }).message, /OTEL_EXPORTER_OTLP_ENDPOINT.*http:\/\/ or https:\/\//);
    assert.match(configError({ OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://c' }).message, /OTEL_EXPORTER_OTLP_ENDPOINT = "ftp:\/\/c"/);
    assert.match(configError({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'not a url' }).message, /OTEL_EXPORTER_OTLP_TRACES_ENDPOINT/);
    assert.match(configError({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_EXPORTER_OTLP_TIMEOUT: '10s' }).message, /OTEL_EXPORTER_OTLP_TIMEOUT = "10s".*milliseconds/);
    assert.match(configError({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_EXPORTER_OTLP_COMPRESSION: 'zstd' }).message, /"gzip" or "none"/);
    assert.match(configError({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '0' }).message, /OTEL_BSP_MAX_EXPORT_BATCH_SIZE/);
    assert.match(configError({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '900', OTEL_BSP_MAX_QUEUE_SIZE: '100' }).message, /no larger than OTEL_BSP_MAX_QUEUE_SIZE/);
  });

  it('parses headers as URL-encoded k=v pairs', () => {
    const cfg = loadExportConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
      OTEL_EXPORTER_OTLP_HEADERS: 'api-key=s3cr%3Dt%2C1 , x-tenant = acme%20corp,',
    })!;
    assert.deepEqual(cfg.headers, { 'api-key': 's3cr=t,1', 'x-tenant': 'acme corp' });
  });

  it('never puts a header value in an error or a description', () => {
    const secret = 'TOPSECRET';
    for (const bad of [`authorization Bearer ${secret}`, `=${secret}`, `bad key=${secret}`, `k=${secret}%zz`]) {
      const e = configError({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_EXPORTER_OTLP_HEADERS: bad });
      assert.match(e.message, /OTEL_EXPORTER_OTLP_HEADERS/);
      assert.doesNotMatch(e.message, new RegExp(secret), `leaked in: ${e.message}`);
    }
    const cfg = loadExportConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://user:pw@c:4318', OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer ${secret}` });
    const text = describeExportConfig(cfg);
    assert.match(text, /headers: authorization/);
    assert.doesNotMatch(text, new RegExp(`${secret}|pw`));
  });
});
