// A job's task results from ListJobTaskResults: failed tasks by default,
// every task on request, filtered by error code on the server.

import { useEffect, useState } from "preact/hooks";

import type { TaskResult } from "./gen/batchops/v1/job_pb";
import { TaskStatus } from "./gen/batchops/v1/job_pb";
import { count, jobs, problem } from "./api";
import { Problem } from "./components";

/** Rows shown at most: the completion report has every one. */
const LIMIT = 500;

export function TasksView({ account, jobId }: { account: string; jobId: string }) {
  const [onlyFailed, setOnlyFailed] = useState(true);
  const [code, setCode] = useState("");
  const [applied, setApplied] = useState("");
  const [results, setResults] = useState<TaskResult[]>([]);
  const [more, setMore] = useState(false);
  const [codes, setCodes] = useState<Set<string>>(new Set());
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState("");

  useEffect(() => {
    const stop = new AbortController();
    setLoading(true);
    (async () => {
      const read: TaskResult[] = [];
      let truncated = false;
      try {
        for await (const message of jobs.listJobTaskResults(
          { accountId: account, jobId, onlyFailed, errorCode: applied },
          { signal: stop.signal },
        )) {
          if (read.length === LIMIT) {
            truncated = true;
            stop.abort();
            break;
          }
          if (message.result) {
            read.push(message.result);
          }
        }
        setError("");
      } catch (failure) {
        if (!truncated && !stop.signal.aborted) {
          setError(problem(failure));
        }
      }
      if (!truncated && stop.signal.aborted) {
        return;
      }
      setResults(read);
      setMore(truncated);
      setCodes((known) => new Set([...known, ...read.map((r) => r.errorCode).filter(Boolean)]));
      setLoading(false);
    })();
    return () => stop.abort();
  }, [account, jobId, onlyFailed, applied]);

  return (
    <div class="panel">
      <h2>Task results</h2>
      <form
        class="filters"
        onSubmit={(event) => {
          event.preventDefault();
          setApplied(code.trim());
        }}
      >
        <fieldset>
          <legend>Show</legend>
          <label class="inline">
            <input type="radio" name="scope" checked={onlyFailed} onChange={() => setOnlyFailed(true)} /> Failed tasks
          </label>
          <label class="inline">
            <input type="radio" name="scope" checked={!onlyFailed} onChange={() => setOnlyFailed(false)} /> All tasks
          </label>
        </fieldset>
        <label>
          Error code
          <input
            type="text"
            list="error-codes"
            maxLength={64}
            value={code}
            placeholder="e.g. NoSuchKey"
            onInput={(event) => setCode((event.target as HTMLInputElement).value)}
          />
          <datalist id="error-codes">
            {[...codes].sort().map((known) => (
              <option value={known} />
            ))}
          </datalist>
        </label>
        <button type="submit">Filter</button>
        {applied && (
          <button
            type="button"
            onClick={() => {
              setCode("");
              setApplied("");
            }}
          >
            Clear filter
          </button>
        )}
      </form>
      <Problem message={error} />
      <p class="muted" aria-live="polite">
        {loading
          ? "Loading…"
          : more
            ? `Showing the first ${count(LIMIT)} results; the completion report lists them all.`
            : `${count(results.length)} ${onlyFailed || applied ? "failed " : ""}task${results.length === 1 ? "" : "s"}${applied ? ` with error code ${applied}` : ""}.`}
      </p>
      {results.length > 0 && (
        <table class="tasks">
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">Object</th>
              <th scope="col">Status</th>
              <th scope="col">HTTP</th>
              <th scope="col">Error code</th>
              <th scope="col">Message</th>
            </tr>
          </thead>
          <tbody>
            {results.map((result) => (
              <tr key={String(result.taskNumber)}>
                <td data-label="#">{String(result.taskNumber)}</td>
                <td data-label="Object" class="object">
                  {result.bucket}/{result.key}
                  {result.versionId && <span class="muted"> (version {result.versionId})</span>}
                </td>
                <td data-label="Status">{result.taskStatus === TaskStatus.SUCCEEDED ? "Succeeded" : "Failed"}</td>
                <td data-label="HTTP">{result.httpStatusCode}</td>
                <td data-label="Error code">{result.errorCode || "—"}</td>
                <td data-label="Message" class="message">
                  {result.resultMessage}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
