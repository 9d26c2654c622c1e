// Small pieces every page uses.

import type { ComponentChildren } from "preact";

import type { JobProgressSummary, JobStatus } from "./gen/batchops/v1/job_pb";
import { count, statusName, statusTone } from "./api";
import type { Connection } from "./live";

/** A status as text on a coloured badge: the colour is never the only sign. */
export function StatusBadge({ status }: { status: JobStatus }) {
  return <span class={`badge tone-${statusTone(status)}`}>{statusName(status)}</span>;
}

/** Succeeded and failed shares of all tasks, with the counts as text. */
export function Progress({ summary, label }: { summary?: JobProgressSummary; label?: string }) {
  const total = Number(summary?.totalNumberOfTasks ?? 0n);
  const succeeded = Number(summary?.numberOfTasksSucceeded ?? 0n);
  const failed = Number(summary?.numberOfTasksFailed ?? 0n);
  const done = succeeded + failed;
  const percent = total > 0 ? Math.floor((done * 100) / total) : 0;
  const share = (part: number) => (total > 0 ? `${(part * 100) / total}%` : "0%");
  return (
    <div class="progress">
      <div
        class="bar"
        role="progressbar"
        aria-label={label ?? "Tasks done"}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent}
      >
        <span class="succeeded" style={{ width: share(succeeded) }} />
        <span class="failed" style={{ width: share(failed) }} />
      </div>
      <span class="progress-text">
        <span class="percent">{percent}%</span> {count(done)}/{count(total)}
        {failed > 0 && <span class="failed-count"> · {count(failed)} failed</span>}
      </span>
    </div>
  );
}

/** A refusal or failure, in the server's words. */
export function Problem({ message }: { message?: string }) {
  if (!message) {
    return null;
  }
  return (
    <p class="problem" role="alert">
      {message}
    </p>
  );
}

/** Whether the page is following the server live. */
export function LiveIndicator({ state }: { state: Connection }) {
  const text = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting…",
    "needs-token": "Needs a token",
  }[state];
  return (
    <span class={`live live-${state}`} aria-live="polite">
      {text}
    </span>
  );
}

/** A term and its value in a description list. */
export function Item({ term, children }: { term: string; children: ComponentChildren }) {
  return (
    <>
      <dt>{term}</dt>
      <dd>{children}</dd>
    </>
  );
}

/** A short job id for lists: its first 8 characters, the rest on hover. */
export function ShortId({ id }: { id: string }) {
  return (
    <code class="job-id" title={id}>
      {id.slice(0, 8)}
    </code>
  );
}
