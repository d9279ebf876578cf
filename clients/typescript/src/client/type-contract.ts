// Compile-time only (never run): the generated types are the contract's, not `any`. Each
// `@ts-expect-error` line must fail to type-check; if the generated types ever became loose enough to
// accept it, tsc reports the directive as unused and the type check fails.
import type { Client } from "openapi-fetch";

import type { components, paths } from "../../generated/api.js";

type NewRoom = components["schemas"]["NewRoom"];
type Room = components["schemas"]["Room"];
type Problem = components["schemas"]["Problem"];
type JsonMedia = `${string}/${string}json`;

declare const api: Client<paths, JsonMedia>;

const valid: NewRoom = {
  name: "n", description: "d", price: 1, recurrency: "weekly", provider: "p", url: "https://example.com/x",
  monthly_price: 4, property_size: "9 m²", coordinates: { lat: 1, lon: 2 },
};

export async function contract(room: Room): Promise<Problem | undefined> {
  // @ts-expect-error price is an integer in the contract, not a string
  const priceAsText: NewRoom = { ...valid, price: "650" };
  // @ts-expect-error recurrency is one of daily, weekly, monthly
  const yearly: NewRoom = { ...valid, recurrency: "yearly" };
  // @ts-expect-error id is assigned by the server: NewRoom does not have it (additionalProperties: false)
  const withId: NewRoom = { ...valid, id: room.id };
  const { url: _url, ...withoutUrl } = valid;
  // @ts-expect-error url is required
  const noUrl: NewRoom = withoutUrl;
  // @ts-expect-error a Room's created_at is read-only
  room.created_at = "2020-01-01T00:00:00Z";
  // @ts-expect-error the path is /rooms/{room_id}, not /room/{room_id}
  await api.GET("/room/{room_id}", { params: { path: { room_id: room.id } } });
  // @ts-expect-error room_id is a path parameter the call must give
  await api.GET("/rooms/{room_id}", {});
  // @ts-expect-error limit is an integer query parameter
  await api.GET("/rooms", { params: { query: { limit: "20" } } });
  // @ts-expect-error sort is one of created_at, -created_at, price, -price
  await api.GET("/rooms", { params: { query: { sort: "name" } } });
  const answer = await api.GET("/rooms/{room_id}", { params: { path: { room_id: room.id } } });
  // @ts-expect-error data is a Room or undefined: it must be checked before use
  const price: number = answer.data.price;
  // @ts-expect-error error is a Problem, whose status is a number
  const status: string | undefined = answer.error?.status;
  void [priceAsText, yearly, withId, noUrl, price, status];
  return answer.error;
}
