// The jobs of an account, newest first, kept current from WatchJobs: a new
// job appears and a running one moves without a reload or a polling loop.

import { useEffect, useRef, useState } from "preact/hooks";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampMs } from "@bufbuild/protobuf/wkt";

import { Code, ConnectError } from "@connectrpc/connect";

import type { JobDescriptor, JobListDescriptor, JobProgressSummary } from "./gen/batchops/v1/job_pb";
import { JobStatus } from "./gen/batchops/v1/job_pb";
import { STATUSES, count, jobs, problem, when } from "./api";
import { LiveIndicator, Problem, Progress, ShortId, StatusBadge } from "./components";
import { type Connection, debounced, follow, showConnection } from "./live";

/** What the list shows of a job. */
interface Row {
  jobId: string;
  description: string;
  status: JobStatus;
  priority: number;
  createTime?: Timestamp;
  terminationTime?: Timestamp;
  progress?: JobProgressSummary;
  dryRun: boolean;
}

const row = (job: JobListDescriptor | JobDescriptor): Row => ({
  jobId: job.jobId,
  description: job.description,
  status: job.status,
  priority: job.priority,
  createTime: job.createTime,
  terminationTime: job.terminationTime,
  progress: job.progressSummary,
  dryRun: job.dryRun,
});

const newestFirst = (a: Row, b: Row) => {
  const age = (r: Row) => (r.createTime ? Number(timestampMs(r.createTime)) : 0);
  return age(b) - age(a) || b.jobId.localeCompare(a.jobId);
};

const PAGE = 50;

export function JobsPage({ account, onNeedToken }: { account: string; onNeedToken: () => void }) {
  const [rows, setRows] = useState<Map<string, Row>>(new Map());
  const [filter, setFilter] = useState<JobStatus | 0>(0);
  const [next, setNext] = useState("");
  const [error, setError] = useState("");
  const [connection, setConnection] = useState<Connection>("connecting");
  const [loaded, setLoaded] = useState(false);
  const filterRef = useRef(filter);
  filterRef.current = filter;

  const put = (changed: Row) =>
    setRows((current) => {
      const copy = new Map(current);
      if (filterRef.current === 0 || changed.status === filterRef.current) {
        copy.set(changed.jobId, changed);
      } else {
        copy.delete(changed.jobId);
      }
      return copy;
    });

  const loadPage = async (pageToken: string, replace: boolean) => {
    const statuses = filterRef.current === 0 ? [] : [filterRef.current];
    const page = await jobs.listJobs({ accountId: account, statuses, pageSize: PAGE, pageToken });
    setRows((current) => {
      const copy = replace ? new Map<string, Row>() : new Map(current);
      for (const job of page.jobs) {
        copy.set(job.jobId, row(job));
      }
      return copy;
    });
    setNext(page.nextPageToken);
    setLoaded(true);
  };

  useEffect(() => {
    const stop = new AbortController();
    setRows(new Map());
    setLoaded(false);
    setError("");
    const loadedRef = { current: false };
    // Re-read a job after its events (at most every 200 ms per job): the
    // answer is never older than the event that asked for it.
    const refresh = debounced(async (jobId) => {
      try {
        const described = await jobs.describeJob({ accountId: account, jobId }, { signal: stop.signal });
        if (described.job) {
          put(row(described.job));
        }
      } catch (failure) {
        if (failure instanceof ConnectError && failure.code === Code.NotFound) {
          return;
        }
        if (!stop.signal.aborted) {
          setError(problem(failure));
        }
      }
    }, 200);
    follow(
      account,
      [],
      {
        caughtUp: async () => {
          // The first time: the list as it is now; after a reconnect the
          // events missed in between arrive before this and refresh their jobs.
          if (!loadedRef.current) {
            try {
              await loadPage("", true);
              loadedRef.current = true;
              setError("");
            } catch (failure) {
              setError(problem(failure));
            }
          }
        },
        event: (event) => refresh(event.jobId),
        progress: (progress) =>
          setRows((current) => {
            const known = current.get(progress.jobId);
            if (!known) {
              return current;
            }
            const copy = new Map(current);
            copy.set(progress.jobId, { ...known, status: progress.status, progress: progress.progressSummary });
            return copy;
          }),
        connection: showConnection(setConnection, onNeedToken),
        refused: setError,
      },
      stop.signal,
    );
    return () => stop.abort();
  }, [account, filter]);

  const sorted = [...rows.values()].sort(newestFirst);
  return (
    <section aria-labelledby="jobs-title">
      <div class="page-head">
        <h1 id="jobs-title">Jobs</h1>
        <LiveIndicator state={connection} />
        <label class="inline">
          Status{" "}
          <select
            value={filter}
            onChange={(event) => setFilter(Number((event.target as HTMLSelectElement).value) as JobStatus | 0)}
          >
            <option value={0}>All</option>
            {STATUSES.map(([value, name]) => (
              <option value={value}>{name}</option>
            ))}
          </select>
        </label>
        <a class="button primary" href="#/create">
          Create job
        </a>
      </div>
      <Problem message={error} />
      {loaded && sorted.length === 0 && (
        <p class="empty">
          No {filter === 0 ? "" : STATUSES.find(([v]) => v === filter)?.[1] + " "}jobs in account {account} yet.{" "}
          <a href="#/create">Create one</a>.
        </p>
      )}
      {sorted.length > 0 && (
        <table class="jobs">
          <thead>
            <tr>
              <th scope="col">Job</th>
              <th scope="col">Status</th>
              <th scope="col">Priority</th>
              <th scope="col">Progress</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {sorted.map((job) => (
              <tr key={job.jobId} data-job-id={job.jobId} data-status={JobStatus[job.status]}>
                <td data-label="Job">
                  <a href={`#/jobs/${job.jobId}`}>
                    <ShortId id={job.jobId} /> {job.description || <span class="muted">(no description)</span>}
                  </a>
                  {job.dryRun && <span class="badge tone-dry">dry run</span>}
                </td>
                <td data-label="Status">
                  <StatusBadge status={job.status} />
                </td>
                <td data-label="Priority">{job.priority}</td>
                <td data-label="Progress">
                  {job.dryRun ? (
                    <span class="muted">
                      {job.status === JobStatus.DRY_RUN_COMPLETE
                        ? `${count(job.progress?.totalNumberOfTasks ?? 0n)} objects counted`
                        : "dry run"}
                    </span>
                  ) : (
                    <Progress summary={job.progress} label={`Tasks done of job ${job.jobId.slice(0, 8)}`} />
                  )}
                </td>
                <td data-label="Created">{when(job.createTime)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next && (
        <button type="button" onClick={() => loadPage(next, false).catch((failure) => setError(problem(failure)))}>
          Load more
        </button>
      )}
    </section>
  );
}
