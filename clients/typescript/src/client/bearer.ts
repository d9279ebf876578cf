// The generated client (openapi-typescript types + openapi-fetch) with OAuth2 bearer tokens instead of an
// API key: a token with `rooms:write` creates, reads and deletes a room; a token without it gets the typed
// 403 problem naming the scope, with its RFC 6750 challenge; an expired token gets a 401 saying so.
//
// ROOMS_URL=http://localhost:9090 ROOMS_TOKEN=... ROOMS_TOKEN_WITHOUT_SCOPE=... ROOMS_TOKEN_EXPIRED=... \
//   tsx src/client/bearer.ts
import { randomUUID } from "node:crypto";

import createClient from "openapi-fetch";

import type { components, paths } from "../../generated/api.js";
import { env, main } from "../checks.js";

type NewRoom = components["schemas"]["NewRoom"];
type Problem = components["schemas"]["Problem"];
type JsonMedia = `${string}/${string}json`;

main(async (checks) => {
  const baseUrl = `${env("ROOMS_URL")}/v1`;
  const withToken = (token: string) =>
    createClient<paths, JsonMedia>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });
  const api = withToken(env("ROOMS_TOKEN"));
  const room: NewRoom = {
    name: "Room written with a bearer token",
    description: "Written by the generated TypeScript client with an OAuth2 access token.",
    price: 480,
    recurrency: "monthly",
    provider: "ts-bearer",
    url: `https://example.com/ts-bearer/${randomUUID()}`,
    monthly_price: 480,
    property_size: "12 m²",
    coordinates: { lat: 48.137, lon: 11.575 },
  };
  const statuses: Record<string, number> = {};

  const created = await api.POST("/rooms", { body: room });
  statuses.create = created.response.status;
  checks.equal(created.response.status, 201, "a token with rooms:write creates");
  const id = created.data?.id ?? "";
  checks.equal(created.data?.url, room.url, "the created room is the one sent");

  const read = await api.GET("/rooms/{room_id}", { params: { path: { room_id: id } } });
  statuses.read = read.response.status;
  checks.equal(read.data?.name, room.name, "the room reads back");

  const narrow = await withToken(env("ROOMS_TOKEN_WITHOUT_SCOPE")).POST("/rooms", { body: { ...room, url: `${room.url}/2` } });
  statuses.without_scope = narrow.response.status;
  const forbidden: Problem | undefined = narrow.error;
  checks.equal(narrow.response.status, 403, "a token without rooms:write answers 403");
  checks.equal(forbidden?.required_scopes, ["rooms:write"], "the 403 problem names the scope it needs");
  const challenge = narrow.response.headers.get("WWW-Authenticate") ?? "";
  checks.that(challenge.includes('error="insufficient_scope"') && challenge.includes('scope="rooms:write"'),
    "the 403 carries the insufficient_scope challenge", challenge);

  const expired = await withToken(env("ROOMS_TOKEN_EXPIRED")).DELETE("/rooms/{room_id}", {
    params: { path: { room_id: id } },
  });
  statuses.expired = expired.response.status;
  checks.equal(expired.response.status, 401, "an expired token answers 401");
  checks.that((expired.response.headers.get("WWW-Authenticate") ?? "").includes('error="invalid_token"'),
    "the 401 carries the invalid_token challenge", expired.response.headers.get("WWW-Authenticate"));
  checks.that((expired.error?.detail ?? "").includes("expired"), "the 401 problem says the token expired", expired.error);

  const deleted = await api.DELETE("/rooms/{room_id}", { params: { path: { room_id: id } } });
  statuses.delete = deleted.response.status;
  checks.equal(deleted.response.status, 204, "the token deletes the room");

  return { statuses, room_id: id };
});
