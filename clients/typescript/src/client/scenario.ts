// The rooms API through the client generated from the service's OpenAPI document (openapi-typescript
// types + openapi-fetch), as a TypeScript user would call it: every request goes through `api` or
// `anonymous`, and every body and answer has the contract's types.
//
// ROOMS_URL=http://localhost:9090 ROOMS_API_KEY=... tsx src/client/scenario.ts
import { randomUUID } from "node:crypto";

import createClient from "openapi-fetch";

import type { components, paths } from "../../generated/api.js";
import { env, main } from "../checks.js";

type Room = components["schemas"]["Room"];
type NewRoom = components["schemas"]["NewRoom"];
type RoomPatch = components["schemas"]["RoomPatch"];
type Problem = components["schemas"]["Problem"];

// The JSON media types of the contract (application/json, application/problem+json): the operations
// also answer application/avro, which this client does not ask for.
type JsonMedia = `${string}/${string}json`;

const MERGE_PATCH = { "Content-Type": "application/merge-patch+json" } as const;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

main(async (checks) => {
  const baseUrl = `${env("ROOMS_URL")}/v1`; // the document's `servers` entry is the relative /v1
  const api = createClient<paths, JsonMedia>({ baseUrl, headers: { "X-API-Key": env("ROOMS_API_KEY") } });
  const anonymous = createClient<paths, JsonMedia>({ baseUrl });
  const run = randomUUID().slice(0, 8);
  const newRoom = (n: number, changes: Partial<NewRoom> = {}): NewRoom => ({
    name: `TS room ${n}`,
    description: "Written by the generated TypeScript client.",
    price: 100 * n,
    recurrency: "monthly",
    provider: `ts-client-${run}`,
    url: `https://example.com/ts/${run}/${n}`,
    monthly_price: 100 * n,
    property_size: "14 m²",
    coordinates: { lat: 52.52, lon: 13.405 },
    area: { name: "Mitte", country: "Germany", city: "Berlin" },
    ...changes,
  });
  const statuses: Record<string, number> = {};

  // --- create: 201, the stored room, Location and ETag -------------------------------------------
  // Its own provider, so that the search below sees only the five rooms made for it.
  const body = newRoom(0, { provider: `ts-client-${run}-first`, images: [{ url: "https://example.com/ts/image.jpg" }] });
  const created = await api.POST("/rooms", { body });
  statuses.create = created.response.status;
  checks.equal(created.response.status, 201, "create answers 201");
  if (!created.data) {
    checks.that(false, "create returns the room", created.error);
    return { statuses };
  }
  const room: Room = created.data;
  checks.that(UUID.test(room.id), "the server assigns a UUID id", room.id);
  const { id: _id, created_at: _created, updated_at: _updated, ...stored } = room;
  checks.equal(stored, { ...body, is_visible: true }, "the room is stored as sent, is_visible defaulted to true");
  checks.equal(room.created_at, room.updated_at, "a new room was last updated when it was created");
  checks.equal(created.response.headers.get("Location"), `/v1/rooms/${room.id}`, "Location names the new room");
  const firstTag = created.response.headers.get("ETag");
  checks.equal(firstTag, '"1"', "a new room's ETag is \"1\"");

  // --- read it back --------------------------------------------------------------------------------
  const read = await api.GET("/rooms/{room_id}", { params: { path: { room_id: room.id } } });
  statuses.read = read.response.status;
  checks.equal(read.response.status, 200, "read answers 200");
  checks.equal(read.data, room, "read returns what create returned");
  checks.equal(read.response.headers.get("ETag"), firstTag, "read has the same ETag");

  // --- conditional update: JSON merge patch with If-Match ------------------------------------------
  const patch: RoomPatch = { price: 700, monthly_price: 700, area: null };
  const patched = await api.PATCH("/rooms/{room_id}", {
    params: { path: { room_id: room.id }, header: { "If-Match": firstTag ?? "" } },
    body: patch,
    headers: MERGE_PATCH,
  });
  statuses.patch = patched.response.status;
  checks.equal(patched.response.status, 200, "a patch with the current ETag answers 200");
  checks.equal(patched.data?.price, 700, "the patch changed the price");
  checks.that(patched.data !== undefined && !("area" in patched.data), "null in a merge patch removes the area", patched.data);
  checks.that((patched.data?.updated_at ?? "") > room.updated_at, "updated_at moved on", patched.data?.updated_at);
  const secondTag = patched.response.headers.get("ETag");
  checks.equal(secondTag, '"2"', "the ETag changed to \"2\"");

  const stale = await api.PATCH("/rooms/{room_id}", {
    params: { path: { room_id: room.id }, header: { "If-Match": firstTag ?? "" } },
    body: { price: 1 },
    headers: MERGE_PATCH,
  });
  statuses.stale_patch = stale.response.status;
  checks.equal(stale.response.status, 412, "a patch with a stale ETag answers 412");
  checks.equal(stale.error?.status, 412, "the 412 problem carries its status");
  checks.equal(stale.data, undefined, "a 412 has no data");

  // openapi-fetch sends application/json unless told otherwise: the operation takes only a merge patch.
  const plainJson = await api.PATCH("/rooms/{room_id}", {
    params: { path: { room_id: room.id } },
    body: { price: 2 },
  });
  statuses.patch_as_json = plainJson.response.status;
  checks.equal(plainJson.response.status, 415, "a patch sent as application/json answers 415");

  const unchanged = await api.GET("/rooms/{room_id}", { params: { path: { room_id: room.id } } });
  checks.equal(unchanged.data?.price, 700, "the refused patches changed nothing");
  checks.equal(unchanged.response.headers.get("ETag"), secondTag, "the refused patches left the ETag");

  // --- search, several pages: follow next_cursor --------------------------------------------------
  const searched: Room[] = [];
  for (const n of [3, 1, 5, 2, 4]) {
    const answer = await api.POST("/rooms", { body: newRoom(n) });
    checks.equal(answer.response.status, 201, `create room ${n} answers 201`);
    if (answer.data) searched.push(answer.data);
  }
  const expectedOrder = [...searched].sort((a, b) => a.price - b.price).map((r) => r.id);
  const pageSizes: number[] = [];
  const seen: string[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 10; page += 1) {
    const answer = await api.GET("/rooms", {
      params: { query: { provider: `ts-client-${run}`, min_price: 100, sort: "price", limit: 2, cursor } },
    });
    statuses.search = answer.response.status;
    checks.equal(answer.response.status, 200, `search page ${page} answers 200`);
    if (!answer.data) break;
    pageSizes.push(answer.data.data.length);
    seen.push(...answer.data.data.map((r) => r.id));
    const next = answer.data.next_cursor;
    checks.equal(answer.response.headers.has("Link"), next !== null, `page ${page} has a Link header exactly when it has a next_cursor`);
    if (next === null) break;
    cursor = next;
  }
  checks.equal(pageSizes, [2, 2, 1], "five rooms come in pages of 2, 2 and 1");
  checks.equal(seen, expectedOrder, "every room is seen once, cheapest first");

  // --- errors, as the generated client exposes them ------------------------------------------------
  // Well-typed values that break the contract's constraints: only the server can refuse them.
  const invalid = await api.POST("/rooms", {
    body: newRoom(9, { name: "", price: -1, url: "not a url", coordinates: { lat: 91, lon: 13.4 } }),
  });
  statuses.invalid_body = invalid.response.status;
  const invalidProblem: Problem | undefined = invalid.error;
  checks.equal(invalid.response.status, 400, "an invalid body answers 400");
  checks.equal(invalid.response.headers.get("Content-Type"), "application/problem+json", "errors are problem+json");
  const bodyErrors = invalidProblem?.errors ?? [];
  const bodyPaths = [...new Set(bodyErrors.map((e) => e.path))].sort(); // "not a url" fails two rules
  checks.equal(bodyPaths, ["$.coordinates.lat", "$.name", "$.price", "$.url"], "the 400 lists every failing field");
  checks.that(bodyErrors.every((e) => e.message.length > 0), "every listed error says what is wrong", bodyErrors);

  const badQuery = await api.GET("/rooms", { params: { query: { limit: 0, min_price: -5 } } });
  statuses.invalid_query = badQuery.response.status;
  const queryPaths = (badQuery.error?.errors ?? []).map((e) => e.path).sort();
  checks.equal(badQuery.response.status, 400, "invalid query parameters answer 400");
  checks.equal(queryPaths, ["query.limit", "query.min_price"], "the 400 lists every failing parameter");

  const badId = await api.GET("/rooms/{room_id}", { params: { path: { room_id: "not-a-uuid" } } });
  statuses.invalid_id = badId.response.status;
  checks.equal((badId.error?.errors ?? []).map((e) => e.path), ["path.room_id"], "a malformed id is a 400 naming path.room_id");

  const withoutKey = await anonymous.POST("/rooms", { body: newRoom(10) });
  statuses.without_key = withoutKey.response.status;
  checks.equal(withoutKey.response.status, 401, "a write without the API key answers 401");
  checks.equal(withoutKey.error?.status, 401, "the 401 problem carries its status");

  const unknown = randomUUID();
  const missing = await api.GET("/rooms/{room_id}", { params: { path: { room_id: unknown } } });
  statuses.unknown = missing.response.status;
  checks.equal(missing.response.status, 404, "an unknown room answers 404");
  checks.that((missing.error?.detail ?? "").includes(unknown), "the 404 names the room", missing.error);

  const duplicate = await api.POST("/rooms", { body: newRoom(11, { url: body.url }) });
  statuses.duplicate = duplicate.response.status;
  checks.equal(duplicate.response.status, 409, "a second room with the same url answers 409");
  checks.equal(duplicate.error?.conflicting_id, room.id, "the 409 names the room that has the url");

  // --- delete --------------------------------------------------------------------------------------
  const deleted = await api.DELETE("/rooms/{room_id}", {
    params: { path: { room_id: room.id }, header: { "If-Match": secondTag ?? "" } },
  });
  statuses.delete = deleted.response.status;
  checks.equal(deleted.response.status, 204, "delete with the current ETag answers 204");
  const gone = await api.GET("/rooms/{room_id}", { params: { path: { room_id: room.id } } });
  statuses.after_delete = gone.response.status;
  checks.equal(gone.response.status, 404, "a deleted room is gone");

  return {
    provider: `ts-client-${run}`,
    deleted_id: room.id,
    duplicate_url: body.url,
    search_ids: seen,
    search_prices: expectedOrder.map((id) => searched.find((r) => r.id === id)?.price),
    page_sizes: pageSizes,
    statuses,
    problem_paths: { body: bodyPaths, query: queryPaths },
  };
});
