// Parses AsyncAPI documents with the AsyncAPI parser, its Avro schema parser registered so that Avro
// payloads are converted (and validated: see below). Prints every diagnostic to stderr and, as the last
// line of stdout, a summary: for each document its diagnostics and what it holds (channels, operations,
// and each message's payload as the Avro schema parser converted it). Exits non-zero on any diagnostic
// of severity error.
//
// Parser 3.6.6 validates a payload in another schema format (Avro) with that format's schema parser only
// in AsyncAPI 2 documents; in a 3.x document it converts it without validating it, and says nothing about
// a format no parser is registered for (asyncapi/cli#1813, open). This script does both for 3.x as the
// parser does for 2.x: an unknown format, or a schema its format's parser rejects, is an error.
//
// ASYNCAPI is one or more files or URLs, separated by spaces (a file's relative $refs resolve from its folder):
// ASYNCAPI=../../swagger/asyncapi.yaml tsx src/asyncapi/validate.ts          (or: npm run validate-asyncapi)
// ASYNCAPI=http://localhost:9090/v1/asyncapi.yaml tsx src/asyncapi/validate.ts   (the served document)
import path from "node:path";

import { AvroSchemaParser } from "@asyncapi/avro-schema-parser";
import {
  DiagnosticSeverity, Parser, fromFile, fromURL, type Diagnostic, type MessageInterface, type ValidateSchemaInput,
} from "@asyncapi/parser";

import { env, main, type Checks } from "../checks.js";

const SEVERITY: Record<DiagnosticSeverity, string> = {
  [DiagnosticSeverity.Error]: "error",
  [DiagnosticSeverity.Warning]: "warning",
  [DiagnosticSeverity.Information]: "information",
  [DiagnosticSeverity.Hint]: "hint",
};
const ORIGINAL_PAYLOAD = "x-parser-original-payload"; // where the parser keeps a payload it converted

type Reported = { severity: string; code: string | number; message: string; path: string };

function described(diagnostic: Diagnostic): Reported {
  return {
    severity: SEVERITY[diagnostic.severity],
    code: diagnostic.code,
    message: diagnostic.message,
    path: diagnostic.path.join("/"),
  };
}

/** Diagnostics for a message's payload from the schema parser of its format, as the parser gives them for 2.x. */
async function payloadDiagnostics(parser: Parser, message: MessageInterface): Promise<Reported[]> {
  const schemaFormat = message.schemaFormat();
  const payload = message.json().payload as Record<string, unknown> | undefined;
  if (schemaFormat === undefined || payload === undefined) {
    return [];
  }
  const where = `components/messages/${message.id()}/payload`;
  const schemaParser = parser.parserRegistry.get(schemaFormat);
  if (schemaParser === undefined) {
    return [{ severity: "error", code: "schema-format", message: `No schema parser registered for "${schemaFormat}"`, path: where }];
  }
  if (!(ORIGINAL_PAYLOAD in payload)) {
    return []; // an AsyncAPI (JSON) Schema, which the parser's own rules validate
  }
  // The Avro schema parser reads only `data` and `path`; `asyncapi` (the whole parsed document) is not needed.
  const input = { data: payload[ORIGINAL_PAYLOAD], meta: {}, path: where.split("/"), schemaFormat,
                  defaultSchemaFormat: schemaFormat } as unknown as ValidateSchemaInput;
  const results = (await schemaParser.validate(input)) ?? [];
  return results.map((result) => ({ severity: "error", code: "schema-format", message: result.message, path: where }));
}

async function check(parser: Parser, source: string, checks: Checks): Promise<Record<string, unknown>> {
  const input = /^https?:\/\//.test(source) ? fromURL(parser, source) : fromFile(parser, path.resolve(source));
  const { document, diagnostics } = await input.parse();
  const reported = diagnostics.map(described);
  for (const message of document?.messages().all() ?? []) {
    reported.push(...(await payloadDiagnostics(parser, message)));
  }
  for (const diagnostic of reported) {
    process.stderr.write(`${source}: ${diagnostic.severity} ${diagnostic.code} at /${diagnostic.path}: ${diagnostic.message}\n`);
  }
  for (const diagnostic of reported.filter((d) => d.severity === "error")) {
    checks.that(false, `${source}: no diagnostic of severity error`, diagnostic);
  }
  if (document === undefined) {
    checks.that(false, `${source}: the parser returned a document`);
    return { source, diagnostics: reported };
  }

  const channels = document.channels().all().map((channel) => ({
    id: channel.id(),
    address: channel.address(),
    parameters: Object.fromEntries(channel.parameters().all().map((p) => [p.id(), {
      enum: p.schema()?.enum() ?? null,
      location: p.location() ?? null,
    }])),
    bindings: channel.bindings().all().map((b) => ({ protocol: b.protocol(), value: b.value() })),
  }));
  const operations = document.operations().all().map((operation) => ({
    id: operation.id(),
    action: operation.action(),
    channels: operation.channels().all().map((c) => c.id()),
    messages: operation.messages().all().map((m) => m.id()),
  }));
  const messages = document.messages().all().map((message) => {
    const payload = message.payload();
    return {
      id: message.id(),
      contentType: message.contentType() ?? null,
      schemaFormat: message.schemaFormat(),
      // The payload as the Avro schema parser converted it to the parser's JSON Schema model.
      payload: payload === undefined ? null : {
        schemaId: payload.id(),
        type: payload.type() ?? null,
        properties: Object.keys(payload.properties() ?? {}),
        required: payload.required() ?? [],
      },
      headers: Object.keys(message.headers()?.properties() ?? {}),
    };
  });
  checks.that(messages.length > 0, `${source}: the document has messages`);
  return { source, diagnostics: reported, channels, operations, messages };
}

main(async (checks) => {
  const parser = new Parser();
  parser.registerSchemaParser(AvroSchemaParser());
  const documents = [];
  for (const source of env("ASYNCAPI").split(/\s+/).filter(Boolean)) {
    documents.push(await check(parser, source, checks));
  }
  return { documents };
});
