// A job's audit trail from GetJobHistory: every event in sequence order,
// status changes with their times and reasons.

import { useEffect, useState } from "preact/hooks";

import type { JobEvent } from "./gen/batchops/v1/job_pb";
import { jobs, problem, statusName, when } from "./api";
import { Problem, StatusBadge } from "./components";

/** What an event says, in a line. */
function detail(event: JobEvent): string {
  switch (event.event.case) {
    case "jobCreated": {
      const job = event.event.value.job;
      return job ? `created with priority ${job.priority}${job.description ? `: ${job.description}` : ""}` : "created";
    }
    case "statusChanged": {
      const change = event.event.value;
      const parts = [`${statusName(change.previousStatus)} → ${statusName(change.status)}`];
      if (change.totalNumberOfTasks !== undefined) {
        parts.push(`${change.totalNumberOfTasks} tasks`);
      }
      if (change.suspendedCause) {
        parts.push(change.suspendedCause);
      }
      if (change.statusUpdateReason) {
        parts.push(`reason: ${change.statusUpdateReason}`);
      }
      for (const reason of change.failureReasons) {
        parts.push(`${reason.failureCode}: ${reason.failureReason}`);
      }
      return parts.join(" · ");
    }
    case "priorityChanged":
      return `priority ${event.event.value.previousPriority} → ${event.event.value.priority}`;
    case "tagsChanged":
      return event.event.value.tags.length === 0
        ? "tags removed"
        : `tags: ${event.event.value.tags.map((t) => `${t.key}=${t.value}`).join(", ")}`;
    case "reportWritten": {
      const location = event.event.value.location;
      return `report written to s3://${location?.bucket}/${location?.manifestKey}`;
    }
    case "reportFailed": {
      const reason = event.event.value.failureReason;
      return `report failed: ${reason?.failureCode}: ${reason?.failureReason}`;
    }
    default:
      return "";
  }
}

export function HistoryView({ account, jobId, changes }: { account: string; jobId: string; changes: number }) {
  const [events, setEvents] = useState<JobEvent[]>([]);
  const [error, setError] = useState("");
  useEffect(() => {
    const stop = new AbortController();
    (async () => {
      try {
        const read: JobEvent[] = [];
        for await (const message of jobs.getJobHistory(
          { accountId: account, jobId, afterSequence: 0n },
          { signal: stop.signal },
        )) {
          if (message.event) {
            read.push(message.event);
          }
        }
        setEvents(read);
        setError("");
      } catch (failure) {
        if (!stop.signal.aborted) {
          setError(problem(failure));
        }
      }
    })();
    return () => stop.abort();
  }, [account, jobId, changes]);
  return (
    <div class="panel">
      <h2>History</h2>
      <Problem message={error} />
      <ol class="timeline">
        {events.map((event) => (
          <li key={String(event.sequence)} data-event={event.eventType}>
            <time>{when(event.eventTime)}</time>
            <span class="event-type">
              {event.event.case === "statusChanged" ? <StatusBadge status={event.event.value.status} /> : null}{" "}
              {event.eventType}
            </span>
            <span class="event-detail">{detail(event)}</span>
          </li>
        ))}
      </ol>
    </div>
  );
}
