// A Node client of the service's Avro contract over HTTP, knowing only the schemas the service
// publishes: it writes rooms as Avro container files with avsc (POST /v1/rooms, application/avro) and
// reads rooms and search pages back as container files, checking every field against the JSON answer
// to the same request.
//
// ROOMS_URL=http://localhost:9090 ROOMS_API_KEY=... tsx src/avro/http.ts
import { Buffer } from "node:buffer";
import { randomUUID } from "node:crypto";

import type avro from "avsc";

import { env, main, type Checks } from "../checks.js";
import { compareWithJson, fingerprintOf, readContainer, typeFor, writeContainer } from "./avro.js";

const AVRO = "application/avro";

interface SchemaInfo { name: string; version: number; fingerprint: string }

main(async (checks) => {
  const root = env("ROOMS_URL");
  const writeHeaders = { "X-API-Key": env("ROOMS_API_KEY") };
  const published = new Map(
    ((await (await fetch(`${root}/v1/schemas`)).json()) as { data: SchemaInfo[] }).data.map((s) => [s.name, s.fingerprint]),
  );

  // --- the writer schema, from the service ---------------------------------------------------------
  const schemaAnswer = await fetch(`${root}/v1/schemas/roomservice.NewRoom`);
  const newRoomType = typeFor((await schemaAnswer.json()) as avro.Schema);
  const newRoomFingerprint = fingerprintOf(newRoomType);
  checks.equal(newRoomFingerprint, published.get("roomservice.NewRoom"), "Node's CRC-64-AVRO of NewRoom is the published fingerprint");
  checks.equal(schemaAnswer.headers.get("ETag"), `"${newRoomFingerprint}"`, "the schema's ETag is its fingerprint");

  // --- (c) rooms written by avsc, created from the container file ----------------------------------
  const provider = `node-avro-${randomUUID().slice(0, 8)}`;
  const base = {
    description: "Encoded by avsc.", recurrency: "weekly", provider, monthly_price: 1200, property_size: "20 m²",
  };
  const written = [
    { // every optional part present, hidden
      codec: "null" as const,
      record: {
        ...base, name: "Avro room 1", price: 300, url: `https://example.com/${provider}/1`,
        coordinates: { lat: 52.5219, lon: 13.4132 },
        area: { name: "Mitte", country: "Germany", city: "Berlin", coordinates: { lat: 52.52, lon: 13.405 } },
        is_visible: false,
        images: [{ url: `https://example.com/${provider}/1/a.jpg` }, { url: `https://example.com/${provider}/1/b.jpg` }],
      },
    },
    { // area null, is_visible and images left to the schema's defaults
      codec: "deflate" as const,
      record: { ...base, name: "Avro room 2", price: 100, url: `https://example.com/${provider}/2`, coordinates: { lat: -33.8688, lon: 151.2093 }, area: null },
    },
    { // an area without coordinates, one image
      codec: "null" as const,
      record: {
        ...base, name: "Avro room 3 – ümlaut", price: 200, url: `https://example.com/${provider}/3`,
        coordinates: { lat: 0.1, lon: -0.2 }, area: { name: "Kreuzberg", country: "Germany", city: "Berlin", coordinates: null },
        is_visible: true, images: [{ url: `https://example.com/${provider}/3/a.jpg` }],
      },
    },
  ];
  const created: { id: string; sent: Record<string, unknown> }[] = [];
  for (const { codec, record } of written) {
    checks.that(newRoomType.isValid(record), `${record.name} is a valid NewRoom for avsc`);
    const body = await writeContainer(newRoomType, [record], codec);
    const answer = await fetch(`${root}/v1/rooms`, {
      method: "POST", headers: { ...writeHeaders, "Content-Type": AVRO }, body,
    });
    checks.equal(answer.status, 201, `${record.name} (${codec} codec) is created: 201`);
    const room = (await answer.json()) as Record<string, unknown>;
    const { id, created_at: _c, updated_at: _u, ...stored } = room;
    // The JSON form of what was written: defaults applied, a null area (and area coordinates) left out.
    const expected = JSON.parse(JSON.stringify(newRoomType.clone(record), (_k, v: unknown) => (v === null ? undefined : v)));
    checks.equal(stored, expected, `${record.name} is stored as written`);
    created.push({ id: String(id), sent: expected });
  }

  // --- (a) one room as a container file, against its JSON ------------------------------------------
  const roomFingerprint = published.get("roomservice.Room");
  for (const { id } of created) {
    const json = await (await fetch(`${root}/v1/rooms/${id}`)).json();
    const answer = await fetch(`${root}/v1/rooms/${id}`, { headers: { Accept: AVRO } });
    const file = await readAvroAnswer(checks, answer, "roomservice.Room", roomFingerprint, `room ${id}`);
    if (file && checks.equal(file.records.length, 1, `room ${id}: one record`)) {
      compareWithJson(checks, file.type, file.records[0], json, `room ${id}`);
    }
  }

  // --- (a) a search page as a container file, against the JSON page --------------------------------
  const query = `provider=${provider}&sort=-price&limit=2`;
  const pages: number[] = [];
  let jsonUrl: string | undefined = `${root}/v1/rooms?${query}`;
  let avroUrl: string | undefined = jsonUrl;
  const order: string[] = [];
  while (jsonUrl && avroUrl && pages.length < 5) {
    const jsonPage = (await (await fetch(jsonUrl)).json()) as { data: { id: string }[]; next_cursor: string | null };
    const answer = await fetch(avroUrl, { headers: { Accept: AVRO } });
    const link = answer.headers.get("Link");
    const file = await readAvroAnswer(checks, answer, "roomservice.Room", roomFingerprint, `page ${pages.length}`);
    if (!file) break;
    pages.push(file.records.length);
    checks.equal(file.records.length, jsonPage.data.length, `page ${pages.length}: as many records as JSON rooms`);
    file.records.forEach((record, i) => compareWithJson(checks, file.type, record, jsonPage.data[i], `page ${pages.length}[${i}]`));
    order.push(...jsonPage.data.map((room) => room.id));
    // JSON pages follow next_cursor; Avro pages follow the Link header, which is all a container has.
    jsonUrl = jsonPage.next_cursor === null ? undefined : `${root}/v1/rooms?${query}&cursor=${jsonPage.next_cursor}`;
    avroUrl = link === null ? undefined : new URL(/^<([^>]+)>; rel="next"$/.exec(link)?.[1] ?? "", root).href;
    checks.equal(avroUrl === undefined, jsonUrl === undefined, `page ${pages.length}: Link and next_cursor agree on a next page`);
  }
  checks.equal(pages, [2, 1], "three rooms come in Avro pages of 2 and 1");
  checks.equal(order, [created[0]?.id, created[2]?.id, created[1]?.id], "the pages hold the rooms dearest first");

  return { provider, fingerprints: { NewRoom: newRoomFingerprint, Room: roomFingerprint }, created, pages, order };
});

/** Check an Avro answer's headers and read its container file. */
async function readAvroAnswer(checks: Checks, answer: Response, name: string, fingerprint: string | undefined, what: string) {
  checks.equal(answer.status, 200, `${what}: 200`);
  checks.equal(answer.headers.get("Content-Type"), AVRO, `${what}: Content-Type application/avro`);
  checks.equal(answer.headers.get("Avro-Schema-Name"), name, `${what}: Avro-Schema-Name`);
  const file = await readContainer(Buffer.from(await answer.arrayBuffer()));
  checks.equal(file.type.name, name, `${what}: the embedded writer schema is ${name}`);
  checks.equal(fingerprintOf(file.type), fingerprint, `${what}: the writer schema has the published fingerprint`);
  checks.equal(answer.headers.get("Avro-Schema-Fingerprint"), fingerprint, `${what}: Avro-Schema-Fingerprint is the published fingerprint`);
  return file;
}
