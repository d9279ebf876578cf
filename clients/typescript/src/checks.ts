// A tiny check recorder for the Node scripts: every check is counted, every mismatch is kept, and the
// script ends by printing one JSON summary line and exiting non-zero if anything did not match.
import { isDeepStrictEqual, inspect } from "node:util";

export class Checks {
  readonly failures: string[] = [];
  passed = 0;

  /** Record a condition; the message says what was expected. */
  that(condition: boolean, what: string, detail?: unknown): boolean {
    if (condition) {
      this.passed += 1;
    } else {
      this.failures.push(detail === undefined ? what : `${what}: ${show(detail)}`);
    }
    return condition;
  }

  /** Record that two values are deeply (and strictly) equal. */
  equal(actual: unknown, expected: unknown, what: string): boolean {
    return this.that(isDeepStrictEqual(actual, expected), what, { actual, expected });
  }

  /** Print the summary as the last line of stdout, then exit: 0 when every check passed, 1 otherwise. */
  finish(summary: Record<string, unknown>): void {
    if (this.passed === 0 && this.failures.length === 0) {
      this.failures.push("no check ran");
    }
    const line = JSON.stringify({ ...summary, checks: this.passed, failures: this.failures }, jsonSafe);
    // Exit from the write callback: stdout to a pipe is asynchronous, and the line must get out first.
    process.stdout.write(line + "\n", () => process.exit(this.failures.length === 0 ? 0 : 1));
  }
}

/** Run a script's main function; an exception is a failure reported in the same summary format. */
export function main(run: (checks: Checks) => Promise<Record<string, unknown>>): void {
  const checks = new Checks();
  run(checks).then(
    (summary) => checks.finish(summary),
    (error: unknown) => {
      checks.failures.push(`uncaught: ${error instanceof Error ? error.stack ?? error.message : show(error)}`);
      checks.finish({});
    },
  );
}

function show(value: unknown): string {
  return inspect(value, { depth: 6, breakLength: Infinity });
}

function jsonSafe(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

/** The value of a required environment variable. */
export function env(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}
