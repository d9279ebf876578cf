// What a Node consumer of the service's Avro contract needs beyond avsc: the CRC-64-AVRO fingerprint
// (avsc's Type#fingerprint only offers the hashes of node:crypto), the uuid and timestamp-micros
// logical types, container files in and out of Buffers, single-object framing, and a field-by-field
// comparison of a decoded record with the service's JSON for the same entity.
import { Buffer } from "node:buffer";
import { deflateRaw, inflateRaw } from "node:zlib";

import avro from "avsc";

import type { Checks } from "../checks.js";

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const SINGLE_OBJECT_MARKER = Buffer.from([0xc3, 0x01]);

// --- fingerprints ----------------------------------------------------------------------------------

const EMPTY = 0xc15d213aa4d7a795n;
const TABLE = Array.from({ length: 256 }, (_, byte) => {
  let fp = BigInt(byte);
  for (let bit = 0; bit < 8; bit += 1) {
    fp = (fp >> 1n) ^ (EMPTY & -(fp & 1n));
  }
  return fp;
});

/** CRC-64-AVRO (the Avro specification's Rabin fingerprint) of a text, as the 16 hex digits of its little-endian bytes. */
export function rabinFingerprint(text: string): string {
  let fp = EMPTY;
  for (const byte of Buffer.from(text, "utf8")) {
    fp = (fp >> 8n) ^ (TABLE[Number((fp ^ BigInt(byte)) & 0xffn)] ?? 0n);
  }
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64LE(fp);
  return bytes.toString("hex");
}

/** The Parsing Canonical Form of a type: avsc's schema() keeps exactly the attributes the form keeps, with full names. */
export function canonicalForm(type: avro.Type): string {
  return JSON.stringify(type.schema());
}

/** The fingerprint a schema is known by on the wire (single-object framing, Avro-Schema-Fingerprint, /v1/schemas). */
export function fingerprintOf(type: avro.Type): string {
  return rabinFingerprint(canonicalForm(type));
}

// --- logical types ---------------------------------------------------------------------------------

/** A timestamp-micros value: JavaScript's Date would drop the microseconds, so they are kept as a bigint. */
export class Timestamp {
  constructor(readonly micros: bigint) {}

  toJSON(): string {
    const millis = this.micros / 1000n;
    const fraction = (this.micros % 1000000n).toString().padStart(6, "0");
    return new Date(Number(millis)).toISOString().replace(/\.\d{3}Z$/, `.${fraction}Z`);
  }
}

class UuidType extends avro.types.LogicalType {
  protected override _fromValue(value: string): string {
    if (!UUID.test(value)) {
      throw new Error(`not a lowercase UUID: ${value}`);
    }
    return value;
  }

  protected override _toValue(value: unknown): string | undefined {
    return typeof value === "string" && UUID.test(value) ? value : undefined;
  }
}

class TimestampMicrosType extends avro.types.LogicalType {
  protected override _fromValue(value: number): Timestamp {
    if (!Number.isSafeInteger(value)) {
      throw new Error(`timestamp-micros beyond 2^53: ${value}`);
    }
    return new Timestamp(BigInt(value));
  }

  protected override _toValue(value: unknown): number | undefined {
    return value instanceof Timestamp ? Number(value.micros) : undefined;
  }
}

export const LOGICAL_TYPES = { uuid: UuidType, "timestamp-micros": TimestampMicrosType };

/** An avsc type for a schema the service published, with its logical types decoded. */
export function typeFor(schema: avro.Schema): avro.Type {
  return avro.Type.forSchema(schema, { logicalTypes: LOGICAL_TYPES });
}

/** Microseconds since the epoch of an RFC 3339 timestamp with up to six fractional digits, exactly. */
export function microsFromIso(text: unknown): bigint | undefined {
  const match = typeof text === "string"
    ? /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})$/.exec(text)
    : null;
  if (!match) {
    return undefined;
  }
  const [, seconds, fraction = "", zone] = match;
  const millis = Date.parse(`${seconds}${zone}`);
  return Number.isNaN(millis) ? undefined : BigInt(millis) * 1000n + BigInt(fraction.padEnd(6, "0"));
}

// --- container files and single-object encoding ----------------------------------------------------

const CODECS = {
  null: (data: Buffer, callback: (error: Error | null, data: Buffer) => void) => callback(null, data),
  deflate: deflateRaw,
};

/** Every record of an Object Container File, decoded with the writer schema embedded in it. */
export function readContainer(bytes: Buffer): Promise<{ type: avro.Type; codec: string; records: unknown[] }> {
  return new Promise((resolve, reject) => {
    const decoder = new avro.streams.BlockDecoder({ parseHook: typeFor, codecs: { ...CODECS, deflate: inflateRaw } });
    const records: unknown[] = [];
    let type: avro.Type | undefined;
    let codec = "";
    decoder.on("metadata", (writerType: avro.Type, writerCodec: string) => {
      type = writerType;
      codec = writerCodec;
    });
    decoder.on("data", (record: unknown) => records.push(record));
    decoder.on("error", reject);
    decoder.on("end", () => (type ? resolve({ type, codec, records }) : reject(new Error("no container header"))));
    decoder.end(bytes);
  });
}

/** An Object Container File of the records, with the type's schema embedded as the writer schema. */
export function writeContainer(type: avro.Type, records: unknown[], codec: "null" | "deflate" = "null"): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const encoder = new avro.streams.BlockEncoder(type, { codec, codecs: CODECS });
    const chunks: Buffer[] = [];
    encoder.on("data", (chunk: Buffer) => chunks.push(chunk));
    encoder.on("error", reject);
    encoder.on("end", () => resolve(Buffer.concat(chunks)));
    for (const record of records) {
      encoder.write(record);
    }
    encoder.end();
  });
}

/** Split single-object encoded bytes (C3 01, 8-byte fingerprint, datum); undefined if they are not framed so. */
export function splitSingleObject(bytes: Buffer): { fingerprint: string; datum: Buffer } | undefined {
  if (bytes.length < 10 || !bytes.subarray(0, 2).equals(SINGLE_OBJECT_MARKER)) {
    return undefined;
  }
  return { fingerprint: bytes.subarray(2, 10).toString("hex"), datum: bytes.subarray(10) };
}

// --- comparing a decoded record with the service's JSON -------------------------------------------

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Check a decoded Avro value against the JSON the service answers for the same entity, field by field,
 * following the writer's type: a null union branch is a member absent from the JSON (or null), uuids
 * are equal strings, timestamp-micros equal to the microsecond, longs safe integers, doubles equal.
 */
export function compareWithJson(checks: Checks, type: avro.Type, value: unknown, json: unknown, path: string): void {
  if (type instanceof avro.types.RecordType) {
    if (!checks.that(isObject(json) && isObject(value), `${path} is a record in both`, { value, json }) || !isObject(json)) {
      return;
    }
    const names = type.fields.map((field) => field.name);
    checks.equal(Object.keys(json).filter((key) => !names.includes(key)), [], `${path}: the JSON has no member the record lacks`);
    for (const field of type.fields) {
      compareWithJson(checks, field.type, (value as Record<string, unknown>)[field.name], json[field.name], `${path}.${field.name}`);
    }
  } else if (type instanceof avro.types.UnwrappedUnionType) {
    if (value === null) {
      checks.that(json === undefined || json === null, `${path} is null in Avro, so absent or null in JSON`, json);
      return;
    }
    const branches = type.types.filter((branch) => branch.typeName !== "null" && branch.isValid(value));
    if (checks.equal(branches.length, 1, `${path}: the value fits one branch of the union`)) {
      compareWithJson(checks, branches[0] as avro.Type, value, json, path);
    }
  } else if (type instanceof avro.types.ArrayType) {
    if (!checks.that(Array.isArray(value) && Array.isArray(json) && value.length === json.length, `${path}: arrays of one length`, { value, json })) {
      return;
    }
    (value as unknown[]).forEach((item, i) => compareWithJson(checks, type.itemsType, item, (json as unknown[])[i], `${path}[${i}]`));
  } else if (type instanceof avro.types.LogicalType) {
    if (value instanceof Timestamp) {
      checks.equal(value.micros, microsFromIso(json), `${path}: the same instant to the microsecond`);
    } else {
      checks.that(typeof value === "string" && UUID.test(value) && value === json, `${path}: the same UUID`, { value, json });
    }
  } else if (type instanceof avro.types.EnumType) {
    checks.that(typeof value === "string" && type.symbols.includes(value) && value === json, `${path}: the same symbol`, { value, json });
  } else if (type.typeName === "long" || type.typeName === "int") {
    checks.that(Number.isSafeInteger(value) && value === json, `${path}: the same integer`, { value, json });
  } else if (type.typeName === "double" || type.typeName === "float") {
    checks.that(typeof value === "number" && value === json, `${path}: the same number`, { value, json });
  } else if (type.typeName === "string" || type.typeName === "boolean") {
    checks.that(typeof value === typeof json && value === json, `${path}: the same ${type.typeName}`, { value, json });
  } else {
    checks.that(false, `${path}: no JSON comparison for Avro ${type.typeName}`);
  }
}
