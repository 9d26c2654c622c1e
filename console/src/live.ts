// Following an account's jobs live with WatchJobs: one stream, resumed from
// its last log position after a disconnect so that no event is missed.

import type { JobEvent } from "./gen/batchops/v1/job_pb";
import type { JobProgress } from "./gen/batchops/v1/job_service_pb";
import { Code, ConnectError } from "@connectrpc/connect";

import { jobs, needsToken, problem, sleep, wasAborted } from "./api";

/** Refusals that asking again would not change. */
const isFinal = (error: unknown) =>
  error instanceof ConnectError &&
  [Code.PermissionDenied, Code.InvalidArgument, Code.NotFound, Code.FailedPrecondition].includes(error.code);

export type Connection = "connecting" | "live" | "reconnecting" | "needs-token";

export interface Follower {
  /** Every event up to now has been delivered: what follows is live. */
  caughtUp(): void | Promise<void>;
  /** A job event (a status change, a new job, a priority or tag change). */
  event(event: JobEvent): void;
  /** A job's counts changed. */
  progress(progress: JobProgress): void;
  /** The stream's state, for the page to show. */
  connection(state: Connection): void;
  /** The server refused the stream for good (another account, a bad id). */
  refused(message: string): void;
}

/**
 * Follows `accountId`'s jobs (only `jobIds` when given) from now until
 * `signal` aborts. After a disconnect it resumes after the last position it
 * saw, so the events in between are delivered, then `caughtUp` again.
 */
export async function follow(
  accountId: string,
  jobIds: string[],
  follower: Follower,
  signal: AbortSignal,
): Promise<void> {
  let position: bigint | undefined;
  let delay = 500;
  while (!signal.aborted) {
    follower.connection(position === undefined ? "connecting" : "reconnecting");
    try {
      const stream = jobs.watchJobs({ accountId, jobIds, afterPosition: position }, { signal });
      for await (const message of stream) {
        position = message.position;
        delay = 500;
        switch (message.message.case) {
          case "caughtUp":
            await follower.caughtUp();
            follower.connection("live");
            break;
          case "event":
            follower.event(message.message.value);
            break;
          case "progress":
            follower.progress(message.message.value);
            break;
          default:
            break;
        }
      }
    } catch (error) {
      if (signal.aborted || wasAborted(error)) {
        return;
      }
      if (needsToken(error)) {
        follower.connection("needs-token");
        return;
      }
      if (isFinal(error)) {
        follower.refused(problem(error));
        return;
      }
    }
    follower.connection("reconnecting");
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 10_000);
  }
}

/** A `connection` callback that shows the state and asks for a token. */
export const showConnection =
  (show: (state: Connection) => void, askForToken: () => void) => (state: Connection) => {
    show(state);
    if (state === "needs-token") {
      askForToken();
    }
  };

/**
 * Calls `run(key)` at most once per `ms` per key, with the latest call
 * always followed by a run: for re-reading a job after its events.
 */
export function debounced(run: (key: string) => void, ms: number): (key: string) => void {
  const timers = new Map<string, number>();
  return (key) => {
    if (timers.has(key)) {
      return;
    }
    timers.set(
      key,
      window.setTimeout(() => {
        timers.delete(key);
        run(key);
      }, ms),
    );
  };
}
