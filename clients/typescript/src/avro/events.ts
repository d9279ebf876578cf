// A Node consumer of the events the relay publishes to RabbitMQ. It binds its own queue to the
// exchange, says so on stdout ({"ready": ...}), then reads the messages and decodes them knowing only
// what the service publishes: single-object framing (C3 01, CRC-64-AVRO fingerprint, datum), the writer
// schema from GET /v1/schemas/roomservice.Event, and each event's `entity`, framed the same way. Every
// event is checked against the JSON feed (GET /v1/events) for the same position. Each message is then
// processed in a CONSUMER span that continues the trace its `traceparent` header names (OpenTelemetry's
// W3C propagator and SDK, spans kept in memory): the trace of the request that wrote the event.
//
// ROOMS_URL=http://localhost:9090 AMQP_URL=amqp://guest:guest@localhost:5672/%2F EXCHANGE=rooms.events tsx src/avro/events.ts
import { ROOT_CONTEXT, SpanKind, defaultTextMapGetter } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { connect, type Channel, type ConsumeMessage } from "amqplib";
import type avro from "avsc";

import { env, main } from "../checks.js";
import { compareWithJson, fingerprintOf, splitSingleObject, typeFor } from "./avro.js";

interface SchemaInfo { name: string; version: number; fingerprint: string }
type JsonEvent = Record<string, unknown> & { event_id: string; type: string; key: string; position: number };

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;
const WAIT_MS = 20_000;
const GRACE_MS = 300; // after the last expected message, how long to watch for extra ones

main(async (checks) => {
  const root = env("ROOMS_URL");
  const exchange = env("EXCHANGE");
  const listing = ((await (await fetch(`${root}/v1/schemas`)).json()) as { data: SchemaInfo[] }).data;
  const nameByFingerprint = new Map(listing.map((s) => [s.fingerprint, s.name]));
  const types = new Map<string, avro.Type>(); // schema name -> avsc type, fetched once
  const schemaType = async (name: string): Promise<avro.Type> => {
    let type = types.get(name);
    if (!type) {
      const answer = await fetch(`${root}/v1/schemas/${name}`);
      type = typeFor((await answer.json()) as avro.Schema);
      checks.equal(answer.headers.get("ETag"), `"${fingerprintOf(type)}"`, `${name}: Node's fingerprint is the schema's ETag`);
      checks.equal(fingerprintOf(type), listing.find((s) => s.name === name)?.fingerprint, `${name}: Node's fingerprint is the published one`);
      types.set(name, type);
    }
    return type;
  };
  const eventType = await schemaType("roomservice.Event");
  const eventFingerprint = fingerprintOf(eventType);
  const feed = ((await (await fetch(`${root}/v1/events?after=0&limit=1000`)).json()) as { data: JsonEvent[] }).data;

  const connection = await connect(env("AMQP_URL"));
  let messages: ConsumeMessage[];
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange(exchange, "topic", { durable: true });
    const { queue } = await channel.assertQueue("", { exclusive: true });
    await channel.bindQueue(queue, exchange, "#");
    // Bound before anything is published: the test starts the relay only after this line.
    process.stdout.write(JSON.stringify({ ready: true, queue, expecting: feed.length }) + "\n");
    messages = await receive(channel, queue, feed.length);
  } finally {
    await connection.close();
  }

  checks.equal(messages.length, feed.length, "one message per event of the feed, and no more");
  // How a consumer continues the writer's trace: extract the W3C context from the message's headers and
  // start its span in it. Only traceparent and tracestate are read; every other header is the service's.
  const spans = new InMemorySpanExporter();
  const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }).getTracer("rooms-events-consumer");
  const w3c = new W3CTraceContextPropagator();
  const headerTraceparents: (string | null)[] = [];
  const decoded: Record<string, unknown>[] = [];
  for (const [i, message] of messages.entries()) {
    const what = `message ${i}`;
    const { properties, fields } = message;
    const carrier: Record<string, string> = {};
    for (const name of ["traceparent", "tracestate"]) {
      const value: unknown = properties.headers?.[name];
      if (value !== undefined) carrier[name] = String(value);
    }
    const parent = w3c.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
    const span = tracer.startSpan(`process ${exchange}`, {
      kind: SpanKind.CONSUMER,
      attributes: { "messaging.system": "rabbitmq", "messaging.operation.type": "process", "messaging.destination.name": exchange,
                    "messaging.rabbitmq.destination.routing_key": fields.routingKey, "messaging.message.id": String(properties.messageId) },
    }, parent);
    headerTraceparents.push(carrier.traceparent ?? null);
    const framed = splitSingleObject(message.content);
    if (!checks.that(framed !== undefined, `${what} is single-object encoded (C3 01 + fingerprint)`, message.content.subarray(0, 10))) {
      continue;
    }
    checks.equal(framed?.fingerprint, eventFingerprint, `${what}: the framing names roomservice.Event's fingerprint`);
    checks.equal(properties.headers?.["avro-fingerprint"], eventFingerprint, `${what}: the avro-fingerprint header agrees`);
    checks.equal(properties.headers?.["avro-schema"], "roomservice.Event", `${what}: avro-schema header`);
    checks.equal(properties.headers?.["avro-encoding"], "single-object", `${what}: avro-encoding header`);
    checks.equal(properties.contentType, "application/avro", `${what}: content type`);
    checks.equal(properties.deliveryMode, 2, `${what}: persistent`);
    // fromBuffer throws on a truncated datum and on trailing bytes: the whole body is one event.
    const event = eventType.fromBuffer(framed!.datum) as Record<string, unknown>;
    span.end();
    const header = carrier.traceparent === undefined ? undefined : TRACEPARENT.exec(carrier.traceparent);
    const stored = typeof event.traceparent === "string" ? TRACEPARENT.exec(event.traceparent) : null;
    if (carrier.traceparent !== undefined) {
      checks.that(header !== null, `${what}: the traceparent header is a W3C traceparent`, carrier.traceparent);
    }
    if (stored) {
      // The header may name the relay's publish span, but the trace is the one the event recorded.
      checks.equal(header?.[1], stored[1], `${what}: the traceparent header continues the trace the event recorded`);
    }
    const json = feed[i];
    if (json === undefined) {
      checks.that(false, `${what} has an event in the feed`);
      continue;
    }
    checks.equal(properties.messageId, event.event_id, `${what}: message_id is the event_id`);
    checks.equal(properties.type, event.type, `${what}: the AMQP type is the event type`);
    checks.equal(fields.routingKey, event.type, `${what}: the routing key is the event type`);
    checks.equal(properties.headers?.position, event.position, `${what}: the position header`);
    // Every field but entity compares directly; entity is bytes in Avro and an object in JSON.
    for (const field of (eventType as avro.types.RecordType).fields) {
      if (field.name !== "entity") {
        compareWithJson(checks, field.type, event[field.name], json[field.name], `${what}.${field.name}`);
      }
    }
    const entity = event.entity as Buffer | null;
    let entityJson: unknown = null;
    if (entity === null) {
      checks.that(String(event.type).endsWith(".deleted"), `${what}: only a delete has no entity`, event.type);
      // A delete still names the schema of the entity it removed.
      checks.equal(nameByFingerprint.get(String(event.entity_fingerprint)), event.subject, `${what}: entity_fingerprint is the subject's schema`);
    } else {
      const inner = splitSingleObject(entity);
      if (checks.that(inner !== undefined, `${what}: the entity is single-object encoded`)) {
        checks.equal(inner!.fingerprint, event.entity_fingerprint, `${what}: entity_fingerprint is the entity's framing`);
        const name = nameByFingerprint.get(inner!.fingerprint);
        checks.equal(name, event.subject, `${what}: the entity's fingerprint is the subject's schema`);
        if (name) {
          const type = await schemaType(name);
          const value = type.fromBuffer(inner!.datum);
          compareWithJson(checks, type, value, json.entity, `${what}.entity`);
          entityJson = JSON.parse(JSON.stringify(value));
        }
      }
    }
    decoded.push({ ...event, entity: entityJson });
  }
  const consumerSpans = spans.getFinishedSpans().map((span) => ({
    trace_id: span.spanContext().traceId,
    parent_id: span.parentSpanContext?.spanId ?? null,
    remote_parent: span.parentSpanContext?.isRemote ?? null,
  }));
  const positions = decoded.map((event) => Number(event.position));
  checks.that(positions.every((p, i) => i === 0 || p > (positions[i - 1] ?? Infinity)), "positions strictly increase", positions);
  checks.equal(decoded.map((event) => event.event_id), feed.map((event) => event.event_id), "the broker's order is the feed's");

  return {
    exchange,
    event_fingerprint: eventFingerprint,
    event_ids: decoded.map((event) => event.event_id),
    types: decoded.map((event) => event.type),
    keys: decoded.map((event) => event.key),
    subjects: decoded.map((event) => event.subject),
    positions,
    entities: decoded.map((event) => event.entity),
    traceparents: decoded.map((event) => event.traceparent),
    header_traceparents: headerTraceparents,
    consumer_spans: consumerSpans,
  };
});

/** Consume until `count` messages arrived (then a short grace period for extras) or the wait ran out. */
function receive(channel: Channel, queue: string, count: number): Promise<ConsumeMessage[]> {
  return new Promise((resolve, reject) => {
    const messages: ConsumeMessage[] = [];
    let timer = setTimeout(() => resolve(messages), count === 0 ? GRACE_MS : WAIT_MS);
    channel.consume(queue, (message) => {
      if (message === null) return; // the broker cancelled the consumer
      messages.push(message);
      channel.ack(message);
      if (messages.length === count) {
        clearTimeout(timer);
        timer = setTimeout(() => resolve(messages), GRACE_MS);
      }
    }).catch(reject);
  });
}
