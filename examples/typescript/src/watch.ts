// Follows one job over a WatchJobs stream until it reaches a terminal status,
// confirming it on the way when it waits in Suspended.

import type * as grpc from '@grpc/grpc-js';

import { type BatchOpsClient, statusName } from './client';
import type { JobEvent__Output } from './generated/batchops/v1/JobEvent';
import type { JobProgress__Output } from './generated/batchops/v1/JobProgress';
import { JobStatus, type JobStatus__Output } from './generated/batchops/v1/JobStatus';
import type { WatchJobsResponse__Output } from './generated/batchops/v1/WatchJobsResponse';

/** The statuses a job never leaves. */
const TERMINAL_STATUSES: ReadonlySet<JobStatus__Output> = new Set([
  JobStatus.JOB_STATUS_COMPLETE,
  JobStatus.JOB_STATUS_FAILED,
  JobStatus.JOB_STATUS_CANCELLED,
]);

/** The watch gives up (DEADLINE_EXCEEDED) when the job takes longer than this. */
const WATCH_TIMEOUT_MS = 5 * 60_000;

/**
 * The messages of a server stream, typed. A grpc-js stream is a Node.js
 * Readable, so `for await` reads it, but its iterator yields `any`.
 */
function messages<T>(stream: grpc.ClientReadableStream<T>): AsyncIterable<T> {
  return stream;
}

/** "[position] text", the prefix telling where in the log a message is. */
function log(position: string, text: string): void {
  console.log(`  [${position.padStart(4)}] ${text}`);
}

/** Prints a progress message: the job's status and task counts. */
function printProgress(position: string, progress: JobProgress__Output): void {
  const summary = progress.progress_summary;
  const counts = summary
    ? `${summary.number_of_tasks_succeeded}/${summary.total_number_of_tasks} tasks succeeded, ` +
      `${summary.number_of_tasks_failed} failed`
    : 'no counts yet';
  log(position, `progress: ${statusName(progress.status)}, ${counts}`);
}

/**
 * Watches job `jobId` from the start of the log and returns its terminal
 * status (Complete, Failed or Cancelled). When the job waits in Suspended it
 * is confirmed with UpdateJobStatus READY.
 */
export async function watchJob(
  client: BatchOpsClient,
  accountId: string,
  jobId: string,
): Promise<JobStatus__Output> {
  // after_position 0 replays the job's whole history first, so no status
  // change is missed even if the job moved on before the stream opened.
  const stream = client.watchJobs(
    { account_id: accountId, job_ids: [jobId], after_position: 0 },
    WATCH_TIMEOUT_MS,
  );
  // Cancelling the stream (in `finally` below) ends the call with a CANCELLED
  // error event. The `for await` loop reports errors while it runs; this
  // handler keeps the one that arrives after it from going unhandled.
  stream.on('error', () => {});

  let confirmed = false;
  try {
    for await (const response of messages<WatchJobsResponse__Output>(stream)) {
      // Exactly one member of the `message` oneof is set;
      // `response.message` names it.
      if (response.event) {
        const status = printEvent(response.event);
        if (status === JobStatus.JOB_STATUS_SUSPENDED && !confirmed) {
          // Confirm once: after a reconnect the replay would show Suspended again.
          confirmed = true;
          log(response.position, 'confirming the job: UpdateJobStatus(JOB_STATUS_READY)');
          const answer = await client.updateJobStatus({
            account_id: accountId,
            job_id: jobId,
            requested_job_status: JobStatus.JOB_STATUS_READY,
            status_update_reason: 'confirmed by the TypeScript example',
          });
          log(response.position, `UpdateJobStatus answered ${statusName(answer.status)}`);
        }
        if (status !== undefined && TERMINAL_STATUSES.has(status)) {
          return status;
        }
      } else if (response.caught_up) {
        log(response.position, 'caught up: the history is replayed, live events follow');
      } else if (response.progress) {
        printProgress(response.position, response.progress);
      } else if (response.heartbeat) {
        log(response.position, 'heartbeat');
      }
    }
  } finally {
    // Returning from inside `for await` stops reading, but only cancelling
    // tells the server to close the stream.
    stream.cancel();
  }
  throw new Error('the WatchJobs stream ended before the job finished');
}

/**
 * Prints one job event and returns the job's status after it, when the event
 * changed the status.
 */
function printEvent(event: JobEvent__Output): JobStatus__Output | undefined {
  const change = event.status_changed;
  if (!change) {
    // Job created, priority or tags changed, report written or failed.
    const what = event.job_created ? 'job created (New)' : event.event_type;
    log(event.position, what);
    return undefined;
  }
  let line = `${statusName(change.previous_status)} -> ${statusName(change.status)}`;
  line += `  (${event.event_type})`;
  if (change.total_number_of_tasks !== undefined) {
    line += `, ${change.total_number_of_tasks} tasks`;
  }
  if (change.suspended_cause) {
    line += `: ${change.suspended_cause}`;
  }
  log(event.position, line);
  for (const reason of change.failure_reasons) {
    log(event.position, `  failure ${reason.failure_code}: ${reason.failure_reason}`);
  }
  return change.status;
}
